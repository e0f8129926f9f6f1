//! Every loss where the user looks (issue 13): what plugins and TCP
//! reassembly could not analyse, flows evicted at the cap, and a link type
//! with no decoder, in `--stats-json`, the text summary and the exit code.
//! Captures built here (libpcap_analyzer::build, libpcap_tools writers).

use crate::{run, stderr};
use libpcap_analyzer::build;
use libpcap_tools::{LinkType, Packet, PcapWriter, PcapWriterOptions, Timestamp};
use std::path::Path;

/// Writes `frames` (with their link type) as a pcap file, 1 ms apart.
pub(crate) fn write_pcap(path: &Path, linktype: LinkType, frames: &[Vec<u8>]) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(f, linktype, PcapWriterOptions::default()).unwrap();
    for (i, data) in frames.iter().enumerate() {
        let p = Packet {
            index: i as u64,
            interface: 0,
            linktype,
            ts: Some(Timestamp::from_secs_nanos(
                1_700_000_000,
                i as i64 * 1_000_000,
            )),
            origlen: data.len() as u32,
            data,
        };
        w.write_packet(&p).unwrap();
    }
    w.finish().unwrap();
}

fn stats(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs the binary on `input` with `args`, `--stats-json` and `-o`;
/// returns the exit code, standard error and the summary.
fn analyse(dir: &Path, input: &Path, args: &[&str]) -> (Option<i32>, String, serde_json::Value) {
    let json = dir.join("stats.json");
    let out = dir.join("out");
    let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    all.extend([
        "--stats-json".into(),
        json.clone().into(),
        "-o".into(),
        out.into(),
        input.into(),
    ]);
    let o = run(all);
    (o.status.code(), stderr(&o), stats(&json))
}

/// A DNS response whose question name is a compression pointer: to itself
/// (a loop) when `looping`, else past the end of the message.
pub(crate) fn malformed_dns(id: u16, looping: bool) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(if looping {
        &[0xc0, 0x0c]
    } else {
        &[0xc0, 0xff]
    });
    m.extend_from_slice(&[0, 1, 0, 1]);
    m
}

fn dns_frame(port: u16, payload: &[u8]) -> Vec<u8> {
    build::eth_udp4(
        build::MAC_B,
        build::MAC_A,
        None,
        [192, 0, 2, 53],
        [10, 0, 0, 1],
        53,
        port,
        payload,
    )
}

#[test]
fn malformed_dns_is_counted_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("dns.pcap");
    let mut frames: Vec<Vec<u8>> = (0..1000u16)
        .map(|i| dns_frame(20000 + i % 500, &malformed_dns(i, i % 2 == 0)))
        .collect();
    let ok = build::dns_response(
        7,
        "www.example.org",
        1,
        0,
        &["192.0.2.1".parse().unwrap()],
        60,
    );
    frames.extend((0..10).map(|i| dns_frame(30000 + i, &ok)));
    write_pcap(&pcap, LinkType::ETHERNET, &frames);
    // tshark: the pointers past the end are malformed, the loops get a
    // name saying so
    let filter =
        r#"dns && (_ws.malformed || dns.qry.name == "<Name contains a pointer that loops>")"#;
    if let Some(n) = tshark_count(&pcap, filter) {
        assert_eq!(n, 1000, "tshark's malformed DNS messages");
    }
    for jobs in ["1", "2"] {
        let (code, err, s) = analyse(tmp.path(), &pcap, &["-p", "dns", "-j", jobs]);
        assert_eq!(code, Some(0), "{err}");
        let dns = &s["plugins"]["dns"];
        assert_eq!(dns["malformed"], 1000, "{s}");
        assert_eq!(dns["messages"], 10, "{s}");
        assert_eq!(dns["responses"], 10, "{s}");
        assert_eq!(s["losses"]["dns.malformed"], 1000, "{s}");
        assert!(
            err.contains("plugin dns: messages=10 records=10 responses=10 unsolicited=10; not analysed: malformed=1000"),
            "{err}"
        );
        assert!(
            err.contains("dns.malformed: 1000 not analysed"),
            "the log: {err}"
        );
        let lines = std::fs::read_to_string(tmp.path().join("out/dns.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 10);
    }
}

/// A TCP segment of the connection 10.0.0.1:40000 -> 10.0.0.2:80.
fn seg(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    build::eth_tcp4(
        build::MAC_A,
        build::MAC_B,
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        40000,
        80,
        seq,
        1,
        flags,
        payload,
    )
}

#[test]
fn far_ahead_tcp_segments_show_as_reassembly_drops() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("tcp.pcap");
    let conf = tmp.path().join("pal.conf");
    std::fs::write(
        &conf,
        "[tcp_reassembly]\nmax_buffered_per_direction = 4000\nmax_window_ahead = 1000000\n",
    )
    .unwrap();
    let isn = 1000u32;
    let data = [0x41u8; 500];
    let mut frames = vec![seg(isn, 0x02, &[])];
    // 5 segments more than the window (1 MB) ahead of the next byte: dropped
    for k in 0..5u32 {
        frames.push(seg(isn + 1 + 1_000_001 + k * 100_000_000, 0x18, &data));
    }
    // a hole at offset 0, then 20 segments of 500 bytes within the window:
    // over the 4000-byte cap the stream skips forward
    for k in 1..=20u32 {
        frames.push(seg(isn + 1 + k * 500, 0x18, &data));
    }
    write_pcap(&pcap, LinkType::ETHERNET, &frames);
    let (code, err, s) = analyse(
        tmp.path(),
        &pcap,
        &["-c", conf.to_str().unwrap(), "-p", "tls"],
    );
    assert_eq!(code, Some(0), "{err}");
    let r = &s["reassembly"];
    assert_eq!(r["segments"], 26, "{s}");
    assert_eq!(r["out_of_window_segments"], 5, "{s}");
    let over_cap = r["dropped_over_cap"].as_u64().unwrap();
    assert!(over_cap >= 1, "{s}");
    assert_eq!(s["losses"]["reassembly.out_of_window_segments"], 5, "{s}");
    assert_eq!(s["losses"]["reassembly.dropped_over_cap"], over_cap, "{s}");
    assert!(err.contains("tcp reassembly: "), "{err}");
    assert!(err.contains(" segments=26 "), "{err}");
    // tls, the only stream plugin, leaves the direction at the gap: every
    // byte of the 20 segments is either delivered or counted as unwanted
    let (delivered, unwanted) = (
        r["bytes_delivered"].as_u64().unwrap(),
        r["unwanted_bytes"].as_u64().unwrap(),
    );
    assert!(unwanted > 0, "{s}");
    assert_eq!(delivered + unwanted, 20 * 500, "{s}");
    assert!(
        err.contains(&format!(
            "not analysed: dropped_over_cap={over_cap} out_of_window_segments=5"
        )),
        "{err}"
    );
}

#[test]
fn flows_evicted_at_the_cap_show_in_the_text_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("udp.pcap");
    let conf = tmp.path().join("pal.conf");
    std::fs::write(&conf, "[flows]\nmax_flows = 10\n").unwrap();
    let frames: Vec<Vec<u8>> = (0..50u16)
        .map(|i| {
            build::eth_udp4(
                build::MAC_A,
                build::MAC_B,
                None,
                [10, 0, 0, 1],
                [10, 0, 0, 2],
                1000 + i,
                9,
                b"x",
            )
        })
        .collect();
    write_pcap(&pcap, LinkType::ETHERNET, &frames);
    let (code, err, s) = analyse(
        tmp.path(),
        &pcap,
        &["-c", conf.to_str().unwrap(), "-j", "1", "-p", "flows"],
    );
    assert_eq!(code, Some(0), "{err}");
    // 50 flows in a table of 10: 40 evicted, 10 left at the end
    assert_eq!(s["flows_ended"]["eviction"], 40, "{s}");
    assert_eq!(s["flows_ended"]["end_of_input"], 10, "{s}");
    assert_eq!(s["losses"]["flows.eviction"], 40, "{s}");
    // the flows pool: its limit is max_flows, all of it held at the end
    let flows = &s["memory"]["pools"]["flows"];
    assert_eq!(
        (&flows["limit"], &flows["peak"]),
        (&10.into(), &10.into()),
        "{s}"
    );
    // the process's peak RSS: at least the binary's pages, below a GiB
    let rss = s["memory"]["peak_rss_bytes"].as_u64().unwrap_or(0);
    assert!((1 << 20..1 << 30).contains(&rss), "{s}");
    assert!(
        err.contains("eviction=40 end-of-input=10 (evicted before their end"),
        "{err}"
    );
    assert!(
        err.contains("40 flows were evicted before their end"),
        "the log: {err}"
    );
}

#[test]
fn a_link_type_without_decoder_is_a_warning_and_exit_3() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("radiotap.pcap");
    // radiotap headers (version 0, length 8) before 802.11 frames
    let frames: Vec<Vec<u8>> = (0..5u8)
        .map(|i| [vec![0, 0, 8, 0, 0, 0, 0, 0], vec![0x80, 0, 0, 0, i]].concat())
        .collect();
    write_pcap(&pcap, LinkType::IEEE802_11_RADIOTAP, &frames);
    let (code, err, s) = analyse(tmp.path(), &pcap, &[]);
    assert_eq!(code, Some(3), "{err}");
    let expect = "PAL has no decoder for link type 127 (IEEE802_11_RADIOTAP): 5 frames";
    assert!(err.contains(expect), "{err}");
    let warnings = s["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains(expect)),
        "{s}"
    );
    assert_eq!(s["packets"], 5);
}

#[test]
fn a_link_type_without_decoder_among_others_is_no_failure() {
    // a pcapng with an Ethernet interface and a radiotap one: the Ethernet
    // packets are analysed, the run is complete (the frames not analysed
    // are in the anomalies and the log)
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("mixed.pcapng");
    let f = std::fs::File::create(&path).unwrap();
    let mut w = libpcap_tools::PcapNgWriter::new(f, false).unwrap();
    let eth = w
        .add_interface(&libpcap_tools::InterfaceSpec::new(LinkType::ETHERNET))
        .unwrap();
    let rt = w
        .add_interface(&libpcap_tools::InterfaceSpec::new(
            LinkType::IEEE802_11_RADIOTAP,
        ))
        .unwrap();
    let udp = build::eth_udp4(
        build::MAC_A,
        build::MAC_B,
        None,
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        1,
        2,
        b"x",
    );
    let radio = vec![0, 0, 8, 0, 0, 0, 0, 0, 0x80, 0];
    for (i, (iface, data, lt)) in [
        (eth, &udp, LinkType::ETHERNET),
        (rt, &radio, LinkType::IEEE802_11_RADIOTAP),
    ]
    .into_iter()
    .enumerate()
    {
        w.write_packet(&Packet {
            index: i as u64,
            interface: iface,
            linktype: lt,
            ts: Some(Timestamp::from_secs_nanos(1_700_000_000, 0)),
            origlen: data.len() as u32,
            data,
        })
        .unwrap();
    }
    w.finish().unwrap();
    let (code, err, s) = analyse(tmp.path(), &path, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s["anomalies"]["unsupported_linktype_127"], 1, "{s}");
    assert!(err.contains("no decoder for link type 127"), "{err}");
}

/// Frames matching `filter` according to tshark, if it is installed.
pub(crate) fn tshark_count(path: &Path, filter: &str) -> Option<usize> {
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .output();
    let Some(out) = out.ok().filter(|o| o.status.success()) else {
        eprintln!("SKIP tshark cross-check: tshark not available");
        return None;
    };
    Some(String::from_utf8_lossy(&out.stdout).lines().count())
}

/// A TCP connection from `port` to 443 with a TLS ClientHello and
/// ServerHello and a FIN each way, 10 frames 20 ms apart from `t0` (s).
fn tls_connection(port: u16, t0: i64) -> Vec<(Timestamp, Vec<u8>)> {
    let (c, s) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let (a, b) = (build::MAC_A, build::MAC_B);
    let ch = build::tls_client_hello("example.org", &["h2"]);
    let sh = build::tls_server_hello(0x1301, Some("h2"));
    let (cl, sl) = (ch.len() as u32, sh.len() as u32);
    let frames = [
        build::eth_tcp4(a, b, c, s, port, 443, 100, 0, 0x02, &[]),
        build::eth_tcp4(b, a, s, c, 443, port, 900, 101, 0x12, &[]),
        build::eth_tcp4(a, b, c, s, port, 443, 101, 901, 0x10, &[]),
        build::eth_tcp4(a, b, c, s, port, 443, 101, 901, 0x18, &ch),
        build::eth_tcp4(b, a, s, c, 443, port, 901, 101 + cl, 0x10, &[]),
        build::eth_tcp4(b, a, s, c, 443, port, 901, 101 + cl, 0x18, &sh),
        build::eth_tcp4(a, b, c, s, port, 443, 101 + cl, 901 + sl, 0x10, &[]),
        build::eth_tcp4(a, b, c, s, port, 443, 101 + cl, 901 + sl, 0x11, &[]),
        build::eth_tcp4(b, a, s, c, 443, port, 901 + sl, 102 + cl, 0x11, &[]),
        build::eth_tcp4(a, b, c, s, port, 443, 102 + cl, 902 + sl, 0x10, &[]),
    ];
    frames
        .into_iter()
        .enumerate()
        .map(|(i, f)| (Timestamp::from_secs_nanos(t0, i as i64 * 20_000_000), f))
        .collect()
}

fn write_timed(path: &Path, frames: &[(Timestamp, Vec<u8>)]) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(f, LinkType::ETHERNET, PcapWriterOptions::default()).unwrap();
    for (i, (ts, data)) in frames.iter().enumerate() {
        w.write_packet(&Packet {
            index: i as u64,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: Some(*ts),
            origlen: data.len() as u32,
            data,
        })
        .unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn files_given_out_of_order_keep_their_flows_whole() {
    // a.pcap at T0, b.pcap an hour later, given as `b.pcap a.pcap`
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.pcap"), tmp.path().join("b.pcap"));
    write_timed(&a, &tls_connection(40000, 1_742_291_025));
    write_timed(&b, &tls_connection(40001, 1_742_291_025 + 3600));
    for jobs in ["1", "2"] {
        let out = tmp.path().join(format!("out{jobs}"));
        let json = tmp.path().join(format!("stats{jobs}.json"));
        let o = run([
            "-j".as_ref(),
            jobs.as_ref(),
            "-p".as_ref(),
            "flows,tls".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            "--stats-json".as_ref(),
            json.as_os_str(),
            b.as_os_str(),
            a.as_os_str(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let flows: Vec<serde_json::Value> = std::fs::read_to_string(out.join("flows.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(flows.len(), 2, "-j {jobs}: {flows:?}");
        for f in &flows {
            assert_eq!(
                f["orig_pkts"].as_u64().unwrap() + f["resp_pkts"].as_u64().unwrap(),
                10
            );
            assert_eq!(f["end_reason"], "fin");
        }
        let tls = std::fs::read_to_string(out.join("tls.jsonl")).unwrap();
        // a ClientHello and a ServerHello record per connection
        assert_eq!(tls.lines().count(), 4, "-j {jobs}");
        let servers: Vec<serde_json::Value> = tls
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["hello"] == "server_hello")
            .collect();
        assert_eq!(servers.len(), 2, "-j {jobs}: {tls}");
        for v in servers {
            assert_eq!(v["cipher"], 0x1301, "-j {jobs}: {v}");
        }
        assert_eq!(stats(&json)["anomalies"]["clock_step_back"], 1, "-j {jobs}");
    }
}
