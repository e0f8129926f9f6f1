use super::*;

const S: u8 = flag::SYN;
const A: u8 = flag::ACK;
const F: u8 = flag::FIN;
const R: u8 = flag::RST;
const P: u8 = 0x08;

/// One TCP packet: from the originator?, flags, sequence number, payload.
fn tcp(c: &mut ConnTrack, orig: bool, flags: u8, seq: u32, len: u32) {
    c.update(
        orig,
        &Segment {
            flags,
            seq,
            zero_window: false,
            tcp: true,
            payload_len: len,
            ip_bytes: 40 + u64::from(len),
        },
    );
}

/// A connection through a list of packets; its state and history.
fn run(packets: &[(bool, u8, u32, u32)]) -> (String, &'static str, ConnTrack) {
    let mut c = ConnTrack::default();
    for &(o, f, seq, len) in packets {
        tcp(&mut c, o, f, seq, len);
    }
    c.finish();
    (c.history().to_string(), c.conn_state(6), c)
}

// the client's sequence numbers start at 1000, the server's at 5000
/// (from the originator, flags, seq, payload length)
type Pkt = (bool, u8, u32, u32);

const SYN: Pkt = (true, S, 1000, 0);
const SYNACK: Pkt = (false, S | A, 5000, 0);
const ACK: (bool, u8, u32, u32) = (true, A, 1001, 0);

#[test]
fn a_normal_exchange_is_sf_with_zeeks_usual_history() {
    let (h, st, c) = run(&[
        SYN,
        SYNACK,
        ACK,
        (true, P | A, 1001, 100),
        (false, A, 5001, 0),
        (false, P | A, 5001, 300),
        (true, F | A, 1101, 0),
        (false, F | A, 5301, 0),
        (true, A, 1102, 0),
    ]);
    assert_eq!(h, "ShADadFf");
    assert_eq!(st, "SF");
    assert_eq!(c.orig.payload_bytes, 100);
    assert_eq!(c.resp.payload_bytes, 300);
    assert_eq!(c.orig.ip_bytes, 4 * 40 + 100 + 40);
    assert_eq!(c.orig.missed + c.resp.missed, 0);
}

#[test]
fn the_states_of_short_exchanges() {
    // (packets, history, conn_state): the table of Zeek's conn.log
    let cases: &[(&[Pkt], &str, &str)] = &[
        (&[SYN], "S", "S0"),
        (&[SYN, (true, S, 1000, 0)], "S", "S0"),
        (&[SYN, (false, R | A, 0, 0)], "Sr", "REJ"),
        (&[SYN, SYNACK, ACK], "ShA", "S1"),
        (&[SYN, SYNACK, ACK, (true, R, 1001, 0)], "ShAR", "RSTO"),
        (&[SYN, SYNACK, ACK, (false, R, 5001, 0)], "ShAr", "RSTR"),
        (&[SYN, (true, R, 1001, 0)], "SR", "RSTOS0"),
        (
            &[(false, S | A, 5000, 0), (false, R, 5001, 0)],
            "^hr",
            "RSTRH",
        ),
        (&[SYN, (true, F, 1001, 0)], "SF", "SH"),
        (
            &[(false, S | A, 5000, 0), (false, F, 5001, 0)],
            "^hf",
            "SHR",
        ),
        (&[SYN, SYNACK, ACK, (true, F | A, 1001, 0)], "ShAF", "S2"),
        (&[SYN, SYNACK, ACK, (false, F | A, 5001, 0)], "ShAf", "S3"),
        (&[(true, A | P, 1, 10), (false, A | P, 9, 20)], "Dd", "OTH"),
        (&[(true, S | F, 1, 0)], "Q", "SH"),
        (&[SYN, (true, F | R, 1001, 0)], "SI", "OTH"),
    ];
    for (packets, history, state) in cases {
        let (h, st, _) = run(packets);
        assert_eq!((h.as_str(), st), (*history, *state), "{packets:?}");
    }
}

#[test]
fn a_gap_is_missed_unless_filled_and_a_resend_is_a_retransmission() {
    // 100 bytes, then 100 more after a 50-byte gap: G, 50 missed
    let (h, _, c) = run(&[SYN, SYNACK, ACK, (true, A, 1001, 100), (true, A, 1151, 100)]);
    assert_eq!(h, "ShADG");
    assert_eq!(c.orig.missed, 50);
    assert_eq!(
        c.orig.payload_bytes, 250,
        "the sequence space, gap included"
    );
    // the gap filled later: nothing missed, no retransmission
    let (h, _, c) = run(&[
        SYN,
        SYNACK,
        ACK,
        (true, A, 1001, 100),
        (true, A, 1151, 100),
        (true, A, 1101, 50),
    ]);
    assert_eq!(h, "ShADG");
    assert_eq!(c.orig.missed, 0);
    assert_eq!(c.orig.payload_bytes, 250);
    // the same 100 bytes sent again: T, counted once
    let (h, _, c) = run(&[SYN, SYNACK, ACK, (true, A, 1001, 100), (true, A, 1001, 100)]);
    assert_eq!(h, "ShADT");
    assert_eq!(c.orig.payload_bytes, 100);
}

#[test]
fn repeated_letters_are_logarithmic_and_the_history_is_bounded() {
    let mut packets = vec![SYN, SYNACK, ACK, (true, A, 1001, 10)];
    // 150 retransmissions: T at the 1st, 10th and 100th
    packets.extend(std::iter::repeat_n((true, A, 1001, 10), 150));
    let (h, _, _) = run(&packets);
    assert_eq!(h, "ShADTTT");
    // SYNs with ever new sequence numbers: one S each, up to the bound
    let flood: Vec<_> = (0..1000).map(|i| (true, S, i * 7, 0)).collect();
    let (h, st, _) = run(&flood);
    assert_eq!(h.len(), HISTORY_MAX);
    assert!(h.bytes().all(|b| b == b'S'));
    assert_eq!(st, "S0");
}

#[test]
fn a_flip_recases_the_letters_and_marks_it() {
    let mut c = ConnTrack::default();
    // seen first: the server's SYN-ACK, taken for the originator's
    tcp(&mut c, true, S | A, 5000, 0);
    c.flip();
    tcp(&mut c, true, A, 1001, 0);
    tcp(&mut c, true, F | A, 1001, 0);
    tcp(&mut c, false, F | A, 5001, 0);
    assert_eq!(c.history(), "h^AFf");
    assert_eq!(c.conn_state(6), "SF");
}

#[test]
fn udp_states_and_payload() {
    let mut c = ConnTrack::default();
    let seg = |len| Segment {
        payload_len: len,
        ip_bytes: 28 + u64::from(len),
        ..Segment::default()
    };
    c.update(true, &seg(30));
    assert_eq!((c.history(), c.conn_state(17)), ("D", "S0"));
    c.update(false, &seg(90));
    assert_eq!((c.history(), c.conn_state(17)), ("Dd", "SF"));
    assert_eq!((c.orig.payload_bytes, c.resp.ip_bytes), (30, 118));
    assert_eq!(c.conn_state(1), "OTH");
}

#[test]
fn sequence_wraparound_is_not_a_gap() {
    let (h, _, c) = run(&[
        (true, S, u32::MAX - 10, 0),
        (false, S | A, 5000, 0),
        (true, A, u32::MAX - 9, 0),
        (true, A, u32::MAX - 9, 100),
        (true, A, 90, 100),
    ]);
    assert_eq!(h, "ShAD");
    assert_eq!(c.orig.missed, 0);
    assert_eq!(c.orig.payload_bytes, 200);
}

#[test]
fn service_names_join_every_service_in_output_order() {
    let mut c = ConnTrack::default();
    assert_eq!(c.service_names(), None);
    c.service = service::SSL;
    assert_eq!(c.service_names().as_deref(), Some("ssl"));
    assert!(matches!(
        c.service_text(),
        Some(std::borrow::Cow::Borrowed("ssl"))
    ));
    c.service = service::QUIC | service::DNS;
    assert_eq!(c.service_names().as_deref(), Some("dns,quic"));
    c.service = service::DNS | service::SSL | service::HTTP | service::SSH | service::QUIC;
    assert_eq!(c.service_names().as_deref(), Some("dns,ssl,http,ssh,quic"));
}
