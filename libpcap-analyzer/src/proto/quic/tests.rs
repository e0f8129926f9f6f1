//! Against the specifications' own samples (RFC 9001 Appendix A for
//! version 1, RFC 9369 Appendix A for version 2, in `testdata/quic/`).

use super::*;

fn vector(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/quic/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let hex: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

/// The client's then the server's secret, key, iv and header protection
/// key of `version` for [`DCID`] are `want` (hex).
fn assert_key_material(version: u32, want: [[&str; 4]; 2]) {
    for (client, w) in [true, false].into_iter().zip(want) {
        let m = key_material(version, &DCID, client).unwrap();
        let got = [
            m.secret.to_vec(),
            m.key.to_vec(),
            m.iv.to_vec(),
            m.hp.to_vec(),
        ];
        for (g, w) in got.iter().zip(w) {
            assert_eq!(*g, hex(w), "version {version:#x}, client {client}");
        }
    }
}

/// Opens the client Initial in `file` (`version`, DCID [`DCID`], packet
/// number 2) to RFC 9001 A.2's CRYPTO frame and PADDING up to 1162 bytes;
/// the packet and its plaintext.
fn open_client_initial(file: &str, version: u32) -> (Vec<u8>, Vec<u8>) {
    let packet = vector(file);
    let h = parse_long_header(&packet).unwrap();
    assert_eq!(h.version, version);
    assert_eq!(h.packet_type, Some(PacketType::Initial));
    assert_eq!(h.dcid, DCID);
    assert!(h.scid.is_empty() && h.token.is_empty());
    assert_eq!(h.len, 1200);
    let keys = InitialKeys::new(version, h.dcid, true).unwrap();
    let (pn, plain) = keys.open(&packet[..h.len], &h).unwrap();
    assert_eq!(pn, 2);
    let crypto = vector("rfc9001-a2-client-crypto.hex");
    assert_eq!(plain.len(), 1162);
    assert_eq!(&plain[..crypto.len()], &crypto[..]);
    assert!(plain[crypto.len()..].iter().all(|b| *b == 0));
    (packet, plain)
}

#[test]
fn the_initial_keys_are_those_of_rfc_9001_a1() {
    assert_key_material(
        VERSION_1,
        [
            [
                "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea",
                "1f369613dd76d5467730efcbe3b1a22d",
                "fa044b2f42a3fd3b46fb255c",
                "9f50449e04a0e810283a1e9933adedd2",
            ],
            [
                "3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b",
                "cf3a5331653c364c88f0f379b6067e37",
                "0ac1493ca1905853b0bba03e",
                "c206b8d9b9f0f37644430b490eeaa314",
            ],
        ],
    );
}

#[test]
fn the_client_initial_of_rfc_9001_a2_opens_to_its_crypto_frame() {
    let (_, plain) = open_client_initial("rfc9001-a2-client-initial.hex", VERSION_1);
    let frames = crypto_frames(&plain).unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].offset, 0);
    // the frame's data is the ClientHello: type 1, 0xed bytes after its
    // 4-byte header
    assert_eq!(frames[0].data.len(), 0xf1);
    assert_eq!(&frames[0].data[..4], &[0x01, 0x00, 0x00, 0xed]);
}

#[test]
fn the_server_initial_of_rfc_9001_a3_opens_with_the_clients_connection_id() {
    let packet = vector("rfc9001-a3-server-initial.hex");
    let h = parse_long_header(&packet).unwrap();
    assert_eq!(h.packet_type, Some(PacketType::Initial));
    assert!(h.dcid.is_empty());
    assert_eq!(h.scid, hex("f067a5502a4262b5"));
    let keys = InitialKeys::new(VERSION_1, &DCID, false).unwrap();
    let (pn, plain) = keys.open(&packet[..h.len], &h).unwrap();
    assert_eq!(pn, 1);
    assert_eq!(plain, vector("rfc9001-a3-server-payload.hex"));
    // an ACK frame, then the ServerHello in a CRYPTO frame
    let frames = crypto_frames(&plain).unwrap();
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].data[0], 0x02, "ServerHello");
    // the client's keys do not open the server's packet
    let wrong = InitialKeys::new(VERSION_1, &DCID, true).unwrap();
    assert_eq!(wrong.open(&packet[..h.len], &h), Err(QuicError::Decryption));
}

#[test]
fn the_retry_of_rfc_9001_a4_is_read() {
    let packet = hex("ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba");
    let h = parse_long_header(&packet).unwrap();
    assert_eq!(h.packet_type, Some(PacketType::Retry));
    assert!(h.dcid.is_empty());
    assert_eq!(h.scid, hex("f067a5502a4262b5"));
}

#[test]
fn a_changed_byte_or_a_short_packet_is_an_error_never_a_panic() {
    let packet = vector("rfc9001-a2-client-initial.hex");
    let h = parse_long_header(&packet).unwrap();
    let keys = InitialKeys::new(VERSION_1, h.dcid, true).unwrap();
    let mut bad = packet.clone();
    bad[600] ^= 1;
    assert_eq!(keys.open(&bad, &h), Err(QuicError::Decryption));
    for cut in 0..packet.len() {
        let d = &packet[..cut];
        if let Ok(h) = parse_long_header(d) {
            let _ = keys.open(&d[..h.len], &h);
        }
    }
    assert_eq!(
        parse_long_header(&[0x40, 1, 2]),
        Err(QuicError::NotLongHeader)
    );
}

#[test]
fn versions_have_their_salts_and_v2_its_packet_types() {
    assert!(is_known_version(VERSION_1) && is_known_version(VERSION_2));
    assert!(is_known_version(DRAFT_29) && is_known_version(0xff00_0017));
    assert!(!is_known_version(0x0a0a_0a0a) && !is_known_version(0x5130_3436));
    // the same connection id gives other keys in each version
    let v1 = key_material(VERSION_1, &DCID, true).unwrap();
    let v2 = key_material(VERSION_2, &DCID, true).unwrap();
    let d29 = key_material(DRAFT_29, &DCID, true).unwrap();
    assert!(v1.key != v2.key && v1.key != d29.key && v2.key != d29.key);
    // RFC 9369 §3.2: 0b01 is Initial in version 2, 0-RTT in version 1
    assert_eq!(packet_type(VERSION_2, 0xd0), Some(PacketType::Initial));
    assert_eq!(packet_type(VERSION_1, 0xd0), Some(PacketType::ZeroRtt));
    assert_eq!(packet_type(VERSION_2, 0xc0), Some(PacketType::Retry));
}

#[test]
fn version_negotiation_lists_its_versions() {
    let mut p = vec![0x80, 0, 0, 0, 0, 1, 0xaa, 1, 0xbb];
    p.extend_from_slice(&VERSION_1.to_be_bytes());
    p.extend_from_slice(&VERSION_2.to_be_bytes());
    let h = parse_long_header(&p).unwrap();
    assert_eq!(h.packet_type, Some(PacketType::VersionNegotiation));
    assert_eq!(h.versions, [VERSION_1, VERSION_2]);
}

#[test]
fn crypto_frames_come_back_in_order_bounded() {
    let data: Vec<u8> = (0..200u8).collect();
    let mut s = CryptoStream::new(1000);
    s.add(100, &data[100..150]);
    s.add(150, &data[150..]);
    assert!(s.contiguous().is_empty());
    s.add(0, &data[..60]);
    s.add(40, &data[40..120]); // overlaps both sides
    assert_eq!(s.contiguous(), &data[..]);
    s.add(0, &data[..10]); // a retransmission
    assert_eq!(s.contiguous(), &data[..]);
    // over the limit: refused and counted
    let mut s = CryptoStream::new(100);
    s.add(50, &data[50..]);
    assert_eq!(s.dropped, 150);
    s.add(0, &data[..100]);
    assert_eq!(s.contiguous(), &data[..100]);
}

#[test]
fn varints_of_each_length() {
    // RFC 9000 §A.1 examples
    for (bytes, want) in [
        (hex("c2197c5eff14e88c"), 151_288_809_941_952_652u64),
        (hex("9d7f3e7d"), 494_878_333),
        (hex("7bbd"), 15_293),
        (hex("25"), 37),
        (hex("4025"), 37),
    ] {
        let mut at = 0;
        assert_eq!(varint(&bytes, &mut at), Ok(want));
        assert_eq!(at, bytes.len());
    }
    let mut at = 0;
    assert_eq!(varint(&hex("c2197c"), &mut at), Err(QuicError::Truncated));
}

/// RFC 9369 Appendix A.1: the Initial secrets and keys of QUIC version 2
/// for the same client Destination Connection ID.
#[test]
fn the_initial_keys_of_version_2_are_those_of_rfc_9369_a1() {
    assert_key_material(
        VERSION_2,
        [
            [
                "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b",
                "8b1a0bc121284290a29e0971b5cd045d",
                "91f73e2351d8fa91660e909f",
                "45b95e15235d6f45a6b19cbcb0294ba9",
            ],
            [
                "0263db1782731bf4588e7e4d93b7463907cb8cd8200b5da55a8bd488eafc37c1",
                "82db637861d55e1d011f19ea71d5d2a7",
                "dd13c276499c0249d3310652",
                "edf6d05c83121201b436e16877593c3a",
            ],
        ],
    );
}

/// RFC 9369 Appendix A.2: the protected version 2 client Initial (type bits
/// 01, RFC 9369 §3.2) opens with the version 2 keys to the same payload as
/// RFC 9001 A.2: its CRYPTO frame, then PADDING.
#[test]
fn the_client_initial_of_rfc_9369_a2_opens_to_its_crypto_frame() {
    let (packet, _) = open_client_initial("rfc9369-a2-client-initial.hex", VERSION_2);
    let h = parse_long_header(&packet).unwrap();
    // version 1's keys (same connection id) do not open it
    let v1 = InitialKeys::new(VERSION_1, h.dcid, true).unwrap();
    assert_eq!(v1.open(&packet[..h.len], &h), Err(QuicError::Decryption));
}

/// RFC 9369 Appendix A.3: the version 2 server Initial opens, with keys
/// from the client's connection id, to the payload of RFC 9001 A.3.
#[test]
fn the_server_initial_of_rfc_9369_a3_opens_with_the_clients_connection_id() {
    let packet = vector("rfc9369-a3-server-initial.hex");
    let h = parse_long_header(&packet).unwrap();
    assert_eq!(h.version, VERSION_2);
    assert_eq!(h.packet_type, Some(PacketType::Initial));
    assert!(h.dcid.is_empty());
    assert_eq!(h.scid, hex("f067a5502a4262b5"));
    let keys = InitialKeys::new(VERSION_2, &DCID, false).unwrap();
    let (pn, plain) = keys.open(&packet[..h.len], &h).unwrap();
    assert_eq!(pn, 1);
    assert_eq!(plain, vector("rfc9001-a3-server-payload.hex"));
}

/// RFC 9369 Appendix A.4: the version 2 Retry (type bits 00 are Retry in
/// version 2).
#[test]
fn the_retry_of_rfc_9369_a4_is_read() {
    let packet = hex("cf6b3343cf0008f067a5502a4262b5746f6b656ec8646ce8bfe33952d955543665dcc7b6");
    let h = parse_long_header(&packet).unwrap();
    assert_eq!(h.version, VERSION_2);
    assert_eq!(h.packet_type, Some(PacketType::Retry));
    assert!(h.dcid.is_empty());
    assert_eq!(h.scid, hex("f067a5502a4262b5"));
}

/// A sealed Initial opens with the same keys to its packet number and
/// frames, in versions 1 and 2; with another connection id's keys it does
/// not.
#[test]
fn a_sealed_initial_opens_to_what_was_sealed() {
    // RFC 9001 A.2 and RFC 9369 A.2, byte for byte: packet number 2 in
    // four bytes, no token, a two-byte length
    for (file, version) in [
        ("rfc9001-a2-client-initial.hex", VERSION_1),
        ("rfc9369-a2-client-initial.hex", VERSION_2),
    ] {
        let (packet, plain) = open_client_initial(file, version);
        let keys = InitialKeys::new(version, &DCID, true).unwrap();
        let sealed = seal_initial(&keys, version, &DCID, &[], 2, &plain).unwrap();
        assert!(sealed == packet, "{file}");
    }
    let (_, rfc_plain) = open_client_initial("rfc9001-a2-client-initial.hex", VERSION_1);
    let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
    for version in [VERSION_1, VERSION_2] {
        let keys = InitialKeys::new(version, &dcid, true).unwrap();
        let packet = seal_initial(&keys, version, &dcid, &[7, 7], 0x0102_0304, &rfc_plain).unwrap();
        let h = parse_long_header(&packet).unwrap();
        assert_eq!(h.packet_type, Some(PacketType::Initial), "{version:x}");
        assert_eq!((h.dcid, h.scid), (&dcid[..], &[7u8, 7][..]));
        assert_eq!(h.len, packet.len());
        let (pn, plain) = keys.open(&packet, &h).unwrap();
        assert_eq!((pn, plain), (0x0102_0304, rfc_plain.clone()), "{version:x}");
        let other = InitialKeys::new(version, &[1, 2, 3, 4], true).unwrap();
        assert!(other.open(&packet, &h).is_err());
    }
}
