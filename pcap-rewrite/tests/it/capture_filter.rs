//! `--filter EXPR`: a tcpdump expression compiled by libpcap, ANDed with
//! the keep/drop rules, evaluated on the packets as read. The packets'
//! expected fate comes from how they were built; the differential test
//! against tcpdump itself is in `tcpdump_filter.rs`.

use crate::common::{bin, packets, pkt, run, write_pcap, write_pcapng};
use libpcap_analyzer::build;
use libpcap_tools::{LinkType, OwnedPacket};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;

/// `true` when libpcap can be loaded; else prints a SKIP line.
pub(crate) fn have_libpcap(test: &str) -> bool {
    match libpcap_live::libpcap::Libpcap::load() {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIP {test}: {e}");
            false
        }
    }
}

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];

fn ip(v: [u8; 4]) -> IpAddr {
    IpAddr::from(v)
}

/// Ethernet frames: UDP and TCP to ports 53 and 80, from A and B.
fn mixed() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for src in [A, B] {
        for dport in [53, 80] {
            v.push(build::eth_ip(
                ip(src),
                ip(B),
                17,
                &build::udp(ip(src), ip(B), 999, dport, b"u"),
            ));
            v.push(build::eth_ip(
                ip(src),
                ip(B),
                6,
                &build::tcp(ip(src), ip(B), 999, dport, 1, 0, 0x02, b"t"),
            ));
        }
    }
    v
}

fn write(dir: &std::path::Path, frames: &[Vec<u8>]) -> std::path::PathBuf {
    let p = dir.join("in.pcap");
    let v: Vec<OwnedPacket> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| pkt(i, LinkType::ETHERNET, f.clone()))
        .collect();
    write_pcap(&p, LinkType::ETHERNET, &v);
    p
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn filter_and_rules_must_both_match() {
    if !have_libpcap("filter_and_rules_must_both_match") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let frames = mixed();
    let input = write(dir.path(), &frames);
    let out = dir.path().join("o.pcap");
    let js = dir.path().join("s.json");
    let o = run(&[
        s(&input),
        s(&out),
        "-f",
        "udp",
        "-k",
        "dport=53",
        "-d",
        "src=10.0.0.2",
        "--stats-json",
        s(&js),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // UDP (filter) to port 53 (keep rule) not from B (drop rule): frame 0 only
    let got: Vec<_> = packets(&out).into_iter().map(|p| p.data).collect();
    assert_eq!(got, vec![frames[0].clone()]);
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    assert_eq!(st["packets_read"], 8);
    assert_eq!(st["bpf_rejected"], 4, "the four TCP frames");
    assert_eq!(st["dropped_by_filter"], 7);
    assert_eq!(st["bpf_unsupported_linktype"], 0);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--filter rejected 4 packets"), "{err}");

    // the filter alone; through standard input as well
    let out2 = dir.path().join("o2.pcap");
    let mut child = bin()
        .args([
            "-",
            s(&out2),
            "--filter",
            "tcp and dst port 80 and src host 10.0.0.1",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&input).unwrap())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got: Vec<_> = packets(&out2).into_iter().map(|p| p.data).collect();
    assert_eq!(got, vec![frames[3].clone()]);
}

#[test]
fn the_filter_sees_the_packet_as_read_before_reframing() {
    if !have_libpcap("the_filter_sees_the_packet_as_read_before_reframing") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let udp = |vlan| build::eth_udp4([2; 6], [4; 6], vlan, A, B, 1000, 53, b"v");
    let frames = vec![udp(Some(100)), udp(Some(200)), udp(None), udp(Some(100))];
    let input = write(dir.path(), &frames);
    let out = dir.path().join("o.pcap");
    let o = run(&[s(&input), s(&out), "--strip-vlan", "-f", "vlan 100"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got: Vec<_> = packets(&out).into_iter().map(|p| p.data).collect();
    // the tagged-100 frames, written without their tag
    assert_eq!(got, vec![udp(None), udp(None)]);
    // to raw IP: still decided on the Ethernet frame
    let o = run(&[
        s(&input),
        s(&out),
        "--link",
        "raw",
        "-f",
        "ether dst 04:04:04:04:04:04 and not vlan",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got = packets(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].linktype, LinkType::RAW);
    assert_eq!(got[0].data, udp(None)[14..]);
}

#[test]
fn a_rejected_first_fragment_still_gives_its_datagram_ports() {
    if !have_libpcap("a_rejected_first_fragment_still_gives_its_datagram_ports") {
        return;
    }
    let (a, b) = (Ipv4Addr::from(A), Ipv4Addr::from(B));
    let datagram = |id: u16, dport| {
        let seg = build::udp(a.into(), b.into(), 4444, dport, &[id as u8; 300]);
        build::ipv4_fragments(a, b, 17, id, &seg, 96)
            .into_iter()
            .map(|ip| build::ethernet([2; 6], [4; 6], 0x0800, &ip))
            .collect::<Vec<_>>()
    };
    let dns = datagram(1, 53);
    let web = datagram(2, 80);
    assert!(dns.len() >= 3);
    for reversed in [false, true] {
        let mut frames = Vec::new();
        for i in 0..dns.len() {
            let i = if reversed { dns.len() - 1 - i } else { i };
            frames.push(dns[i].clone());
            frames.push(web[i].clone());
        }
        let dir = tempfile::tempdir().unwrap();
        let input = write(dir.path(), &frames);
        let out = dir.path().join("o.pcap");
        // non-first fragments only (the filter), of the port-53 datagram
        // (the rule, which needs the first fragment the filter rejects)
        let o = run(&[
            s(&input),
            s(&out),
            "-f",
            "ip[6:2] & 0x1fff != 0",
            "-k",
            "port=53",
        ]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let mut got: Vec<_> = packets(&out).into_iter().map(|p| p.data).collect();
        got.sort();
        let mut want = dns[1..].to_vec();
        want.sort();
        assert_eq!(got, want, "reversed: {reversed}");
    }
}

#[test]
fn each_pcapng_link_type_gets_its_program() {
    if !have_libpcap("each_pcapng_link_type_gets_its_program") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let eth = build::eth_ip(ip(A), ip(B), 17, &build::udp(ip(A), ip(B), 1, 53, b"e"));
    let eth_tcp = build::eth_ip(
        ip(A),
        ip(B),
        6,
        &build::tcp(ip(A), ip(B), 1, 53, 1, 0, 2, b""),
    );
    let raw = eth[14..].to_vec();
    let raw_tcp = eth_tcp[14..].to_vec();
    let mut v = Vec::new();
    for (i, (iface, lt, d)) in [
        (0, LinkType::ETHERNET, eth.clone()),
        (1, LinkType::RAW, raw.clone()),
        (0, LinkType::ETHERNET, eth_tcp.clone()),
        (1, LinkType::RAW, raw_tcp.clone()),
    ]
    .into_iter()
    .enumerate()
    {
        let mut p = pkt(i, lt, d);
        p.interface = iface;
        v.push(p);
    }
    let input = dir.path().join("in.pcapng");
    write_pcapng(&input, &[LinkType::ETHERNET, LinkType::RAW], &v);
    let out = dir.path().join("o.pcapng");
    let o = run(&[s(&input), s(&out), "-f", "udp port 53"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got: Vec<_> = packets(&out)
        .into_iter()
        .map(|p| (p.linktype, p.data))
        .collect();
    assert_eq!(
        got,
        vec![(LinkType::ETHERNET, eth.clone()), (LinkType::RAW, raw)]
    );

    // an expression the second link type has no meaning for: its packets
    // do not match and are counted apart, with one warning
    let js = dir.path().join("s.json");
    let o = run(&[
        s(&input),
        s(&out),
        "-f",
        "ether src 02:00:00:00:00:0a",
        "--stats-json",
        s(&js),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got: Vec<_> = packets(&out).into_iter().map(|p| p.data).collect();
    assert_eq!(got, vec![eth, eth_tcp]);
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    assert_eq!(st["bpf_unsupported_linktype"], 2);
    assert_eq!(st["bpf_rejected"], 0);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.matches("cannot apply to packets of link type 101")
            .count(),
        1,
        "{err}"
    );
}

#[test]
fn a_bad_expression_exits_2_before_any_output() {
    if !have_libpcap("a_bad_expression_exits_2_before_any_output") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), &mixed());
    let out = dir.path().join("o.pcap");
    let split = dir.path().join("split");
    for (args, msg) in [
        (vec!["-f", "udp port"], "syntax error"),
        (vec!["-f", "tcp[tcpflags] & tcp-bogus != 0"], "tcp-bogus"),
        (vec!["-f", "port 70000"], "port"),
        (vec!["-f", "udp", "-o", "pcapng", "--split", "flow"], ""),
    ] {
        let target = if args.contains(&"--split") {
            &split
        } else {
            &out
        };
        let mut all = vec![s(&input), s(target)];
        all.extend(args.iter().copied());
        let o = run(&all);
        if msg.is_empty() {
            // a valid expression: the control case
            assert_eq!(o.status.code(), Some(0), "{args:?}");
            assert!(split.is_dir());
            continue;
        }
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(msg) && err.contains("--filter"),
            "{args:?}: {err}"
        );
        assert!(!out.exists(), "{args:?}: output created");
    }
    // valid syntax, but not for the input's link type (as tcpdump refuses it)
    let raw = dir.path().join("raw.pcap");
    write_pcap(
        &raw,
        LinkType::RAW,
        &[pkt(0, LinkType::RAW, mixed()[0][14..].to_vec())],
    );
    let o = run(&[s(&raw), s(&out), "-f", "ether host 02:02:02:02:02:02"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("ethernet addresses supported only"), "{err}");
    assert!(!out.exists());
    // an empty input still gets its expression checked
    let empty = dir.path().join("empty.pcap");
    write_pcap(&empty, LinkType::ETHERNET, &[]);
    let o = run(&[s(&empty), s(&out), "-f", "udp port"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn without_libpcap_the_error_names_the_package() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), &mixed());
    let out = dir.path().join("o.pcap");
    let o = bin()
        .env("PAL_LIBPCAP", "/nonexistent/libpcap.so")
        .args([s(&input), s(&out), "-f", "udp"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for part in [
        "/nonexistent/libpcap.so",
        "libpcap0.8",
        "dnf install libpcap",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    assert!(!out.exists());
    // without --filter, libpcap is not needed
    let o = bin()
        .env("PAL_LIBPCAP", "/nonexistent/libpcap.so")
        .args([s(&input), s(&out)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
}
