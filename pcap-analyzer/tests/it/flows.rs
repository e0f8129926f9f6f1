//! The `flow` records (Zeek-grade `conn` records, issue 14): conn_state,
//! history, payload bytes and service on TCP and UDP exchanges built here;
//! packets, bytes and times against tshark's own TCP/UDP streams on corpus
//! captures; the inline Community ID against the specification's baseline.

use crate::{analyse_into, corpus, run, stderr};
use libpcap_analyzer::build;
use libpcap_tools::LinkType;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Longest a tshark run may take before the test fails.
const TSHARK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

/// Writes `frames` as an Ethernet pcap, 1 ms apart.
fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    write_pcap_of(path, LinkType::ETHERNET, frames);
}

fn write_pcap_of(path: &Path, linktype: LinkType, frames: &[Vec<u8>]) {
    crate::loss::write_pcap(path, linktype, frames);
}

/// The flow records of `dir/flows.jsonl`.
fn records(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("flows.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One TCP packet of the connection from client port `port` to 80:
/// `c2s` from the client, with its own sequence number `seq`.
fn seg(port: u16, c2s: bool, flags: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
    let (c, s) = ([10, 1, 0, 1], [10, 1, 0, 2]);
    let (a, b) = (build::MAC_A, build::MAC_B);
    if c2s {
        build::eth_tcp4(a, b, c, s, port, 80, seq, 0, flags, payload)
    } else {
        build::eth_tcp4(b, a, s, c, 80, port, seq, 0, flags, payload)
    }
}

#[test]
fn tcp_and_udp_exchanges_get_zeeks_state_history_bytes_and_service() {
    let req = b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let mut frames = Vec::new();
    // port 1000: a whole HTTP exchange (SF)
    frames.extend([
        seg(1000, true, SYN, 100, &[]),
        seg(1000, false, SYN | ACK, 900, &[]),
        seg(1000, true, ACK, 101, &[]),
        seg(1000, true, PSH | ACK, 101, req),
        seg(1000, false, ACK, 901, &[]),
        seg(1000, false, PSH | ACK, 901, resp),
        seg(1000, true, FIN | ACK, 101 + req.len() as u32, &[]),
        seg(1000, false, FIN | ACK, 901 + resp.len() as u32, &[]),
    ]);
    // 1001: no answer (S0); 1002: refused (REJ)
    frames.push(seg(1001, true, SYN, 100, &[]));
    frames.extend([
        seg(1002, true, SYN, 100, &[]),
        seg(1002, false, RST | ACK, 0, &[]),
    ]);
    // 1003: established then aborted by the client (RSTO)
    frames.extend([
        seg(1003, true, SYN, 100, &[]),
        seg(1003, false, SYN | ACK, 900, &[]),
        seg(1003, true, ACK, 101, &[]),
        seg(1003, true, RST, 101, &[]),
    ]);
    // 1004: seen midstream, with a 10-byte gap from the server (OTH)
    frames.extend([
        seg(1004, true, PSH | ACK, 5000, b"abcdef"),
        seg(1004, false, PSH | ACK, 7000, b"0123456789"),
        seg(1004, false, PSH | ACK, 7020, b"0123456789"),
    ]);
    // 1005: the SYN-ACK first (roles swapped), then the handshake's ACK
    frames.extend([
        seg(1005, false, SYN | ACK, 900, &[]),
        seg(1005, true, ACK, 101, &[]),
    ]);
    // a DNS query and its response over UDP, on a port that is not DNS's
    let q = build::dns_query(7, "www.example.org", 1);
    let r = build::dns_response(
        7,
        "www.example.org",
        1,
        0,
        &["192.0.2.1".parse().unwrap()],
        60,
    );
    let (c, s) = ([10, 1, 0, 1], [10, 1, 0, 3]);
    frames.push(build::eth_udp4(
        build::MAC_A,
        build::MAC_B,
        None,
        c,
        s,
        3333,
        5300,
        &q,
    ));
    frames.push(build::eth_udp4(
        build::MAC_B,
        build::MAC_A,
        None,
        s,
        c,
        5300,
        3333,
        &r,
    ));
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("x.pcap");
    write_pcap(&pcap, &frames);
    let out = tmp.path().join("out");
    let o = run([
        "-q".as_ref(),
        "-p".as_ref(),
        "flows".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        pcap.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let recs = records(&out);
    let by_port: HashMap<u64, &serde_json::Value> = recs
        .iter()
        .map(|r| {
            // the client's port: the servers listen on 80 and 5300
            (r["src_port"].as_u64().unwrap(), r)
        })
        .collect();
    let expect = [
        (1000, "SF", "ShADadFf", Some("http")),
        (1001, "S0", "S", None),
        (1002, "REJ", "Sr", None),
        (1003, "RSTO", "ShAR", None),
        (1004, "OTH", "Ddg", None),
        (1005, "OTH", "^hA", None),
        (3333, "SF", "Dd", Some("dns")),
    ];
    for (port, state, history, service) in expect {
        let r = by_port
            .get(&port)
            .unwrap_or_else(|| panic!("no flow of port {port}: {recs:?}"));
        assert_eq!(r["conn_state"], state, "{r}");
        assert_eq!(r["history"], history, "{r}");
        assert_eq!(r["service"].as_str(), service, "{r}");
        assert_eq!(r["flow_id"].as_str().map(str::len), Some(16), "{r}");
        assert!(r["community_id"].as_str().unwrap().starts_with("1:"), "{r}");
    }
    let http = by_port[&1000];
    assert_eq!(http["src_ip"], "10.1.0.1");
    assert_eq!(http["orig_bytes"], req.len());
    assert_eq!(http["resp_bytes"], resp.len());
    assert_eq!(http["orig_pkts"], 4);
    // IP bytes: 20 + 20 per packet, plus the payload
    assert_eq!(http["orig_ip_bytes"], 4 * 40 + req.len());
    assert_eq!(http["orig_wire_bytes"], 4 * 54 + req.len());
    assert_eq!(http["duration"].as_f64(), Some(0.007));
    assert_eq!(http["end_reason"], "fin");
    let mid = by_port[&1004];
    assert_eq!(mid["missed_bytes"], 10);
    assert_eq!(mid["resp_bytes"], 30, "sequence space with the gap");
    let swapped = by_port[&1005];
    assert_eq!(swapped["src_port"], 1005, "the client is the originator");
    let dns = by_port[&3333];
    assert_eq!(dns["orig_bytes"], q.len());
    assert_eq!(dns["resp_bytes"], r.len());
    assert_eq!(dns["proto"], "udp");
}

/// Per conversation (protocol and unordered endpoints): frames, bytes,
/// first and last time in ns.
type Conv = BTreeMap<(String, String, String), (u64, u64, i64, i64)>;

fn endpoints(a: String, b: String) -> (String, String) {
    if a <= b { (a, b) } else { (b, a) }
}

fn add(
    m: &mut Conv,
    key: (String, String, String),
    frames: u64,
    bytes: u64,
    first: i64,
    last: i64,
) {
    let e = m.entry(key).or_insert((0, 0, i64::MAX, i64::MIN));
    e.0 += frames;
    e.1 += bytes;
    e.2 = e.2.min(first);
    e.3 = e.3.max(last);
}

/// tshark's TCP and UDP streams of `path`, or `None` without tshark.
fn tshark_conversations(path: &Path) -> Option<Conv> {
    let out = libpcap_live::testing::output_with_deadline(
        std::process::Command::new("tshark")
            .arg("-r")
            .arg(path)
            .args([
                "-Y",
                "(tcp || udp) && !icmp && !icmpv6",
                "-T",
                "fields",
                "-E",
                "separator=|",
                "-e",
                "ip.src",
                "-e",
                "ipv6.src",
                "-e",
                "ip.dst",
                "-e",
                "ipv6.dst",
                "-e",
                "tcp.srcport",
                "-e",
                "udp.srcport",
                "-e",
                "tcp.dstport",
                "-e",
                "udp.dstport",
                "-e",
                "frame.len",
                "-e",
                "frame.time_epoch",
            ]),
        TSHARK_DEADLINE,
    )
    .ok()
    .filter(|o| o.status.success())?;
    let mut m = Conv::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('|').collect();
        let pick = |a: &str, b: &str| if a.is_empty() { b } else { a }.to_string();
        // tunnelled packets list several addresses: keep plain ones only
        if f.len() != 10 || f.iter().take(8).any(|x| x.contains(',')) {
            continue;
        }
        let proto = if f[4].is_empty() { "udp" } else { "tcp" };
        let src = format!("{}:{}", pick(f[0], f[1]), pick(f[4], f[5]));
        let dst = format!("{}:{}", pick(f[2], f[3]), pick(f[6], f[7]));
        let (a, b) = endpoints(src, dst);
        let (secs, frac) = f[9].split_once('.').unwrap();
        let ns = secs.parse::<i64>().unwrap() * 1_000_000_000
            + format!("{frac:0<9}")[..9].parse::<i64>().unwrap();
        add(
            &mut m,
            (proto.to_string(), a, b),
            1,
            f[8].parse().unwrap(),
            ns,
            ns,
        );
    }
    Some(m)
}

fn rfc3339_ns(s: &str) -> i64 {
    // 2023-11-14T22:13:20.149060000Z
    let (date, time) = s.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap();
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    // days from the civil date (Howard Hinnant's algorithm)
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1_000_000_000)
        + frac.parse::<i64>().unwrap()
}

#[test]
fn flows_agree_with_tsharks_streams_on_the_corpus() {
    let Some(dir) = corpus() else { return };
    let files = [
        "apps/zeek_methods.pcap",
        "apps/zeek_tls1.2.pcap",
        "apps/ndpi_http_ipv6.pcap",
        "apps/tcpdump_dns_udp.pcap",
        "apps/ndpi_quic_interop_V.pcapng",
        "apps/ndpi_gnutella.pcap",
        "apps/zeek_1000-requests-one-dropped-response.pcap.gz",
    ];
    let tmp = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for name in files {
        let path = dir.join(name);
        if !path.exists() {
            eprintln!("SKIP {name}: not in the corpus");
            continue;
        }
        let Some(theirs) = tshark_conversations(&path) else {
            eprintln!("SKIP flows_agree_with_tsharks_streams_on_the_corpus: tshark not available");
            return;
        };
        let out = tmp.path().join(name.replace('/', "_"));
        analyse_into("flows", &out, &path);
        let mut ours = Conv::new();
        for r in records(&out) {
            let proto = r["proto"].as_str().unwrap();
            if (proto != "tcp" && proto != "udp") || r["tunnel_depth"] != 0 {
                continue;
            }
            let src = format!("{}:{}", r["src_ip"].as_str().unwrap(), r["src_port"]);
            let dst = format!("{}:{}", r["dst_ip"].as_str().unwrap(), r["dst_port"]);
            let (a, b) = endpoints(src, dst);
            let frames = r["orig_pkts"].as_u64().unwrap() + r["resp_pkts"].as_u64().unwrap();
            let bytes =
                r["orig_wire_bytes"].as_u64().unwrap() + r["resp_wire_bytes"].as_u64().unwrap();
            let first = rfc3339_ns(r["first"].as_str().unwrap());
            let last = rfc3339_ns(r["last"].as_str().unwrap());
            // the record's duration is last - first
            let d = r["duration"].as_f64().unwrap();
            assert!(((last - first) as f64 / 1e9 - d).abs() < 1e-6, "{r}");
            add(
                &mut ours,
                (proto.to_string(), a, b),
                frames,
                bytes,
                first,
                last,
            );
        }
        // every conversation tshark sees, with the same frames, bytes and
        // times (so the same duration, to the nanosecond)
        for (k, v) in &theirs {
            let mine = ours.get(k);
            assert_eq!(mine, Some(v), "{name}: {k:?}");
            compared += 1;
        }
        let extra: HashSet<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
        assert!(
            extra.is_empty(),
            "{name}: conversations tshark does not see: {extra:?}"
        );
    }
    println!("{compared} conversations agree with tshark");
}

#[test]
fn inline_community_ids_are_the_specifications() {
    let Some(dir) = corpus() else { return };
    let pcap = dir.join("community-id/combined.pcap");
    let base = dir.join("community-id/baseline_deflt.json");
    if !pcap.exists() || !base.exists() {
        eprintln!("SKIP inline_community_ids_are_the_specifications: no community-id baseline");
        return;
    }
    let baseline: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(base).unwrap()).unwrap();
    // (proto, src, dst, sport, dport) -> id
    let expected: HashMap<(u64, String, String, u64, u64), String> = baseline
        .iter()
        .map(|b| {
            (
                (
                    b["proto"].as_u64().unwrap(),
                    b["saddr"].as_str().unwrap().to_string(),
                    b["daddr"].as_str().unwrap().to_string(),
                    b["sport"].as_u64().unwrap_or(0),
                    b["dport"].as_u64().unwrap_or(0),
                ),
                b["communityid"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    analyse_into("flows", &out, &pcap);
    let mut checked = 0;
    let mut emitted = HashSet::new();
    for r in records(&out) {
        let proto = r["proto_num"].as_u64().unwrap();
        let (src, dst) = (r["src_ip"].as_str().unwrap(), r["dst_ip"].as_str().unwrap());
        let got = r["community_id"].as_str().unwrap();
        // ICMP flows too: their ports are the specification's mapped ones
        // (type, counterpart type or code), one flow per exchange
        let key = (
            proto,
            src.to_string(),
            dst.to_string(),
            r["src_port"].as_u64().unwrap(),
            r["dst_port"].as_u64().unwrap(),
        );
        let want = expected
            .get(&key)
            .unwrap_or_else(|| panic!("flow not in the baseline: {r}"));
        assert_eq!(got, want.as_str(), "{r}");
        emitted.insert(got.to_string());
        checked += 1;
    }
    // every id of the baseline is some flow's: a second neighbour discovery
    // exchange between the same hosts, in the other direction, gets its own
    let missing: Vec<&String> = expected
        .values()
        .filter(|id| !emitted.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "ids of the baseline no flow has: {missing:?}"
    );
    assert!(checked >= 10, "{checked} flows checked");
    println!("{checked} community ids agree with the specification's baseline");
}

/// An inner TCP segment between 10.9.0.1:40000 (client) and 10.9.0.2:443,
/// as an IPv4 packet.
fn inner_tcp(c2s: bool, flags: u8, seq: u32) -> Vec<u8> {
    use std::net::Ipv4Addr;
    let (c, s) = (Ipv4Addr::new(10, 9, 0, 1), Ipv4Addr::new(10, 9, 0, 2));
    let (src, dst, sp, dp) = if c2s {
        (c, s, 40000, 443)
    } else {
        (s, c, 443, 40000)
    };
    build::ipv4(
        src,
        dst,
        6,
        1,
        &build::tcp(src.into(), dst.into(), sp, dp, seq, 0, flags, &[]),
    )
}

/// `inner` in a GTP-U G-PDU (TS 29.281 §5.1, no optional fields) with `teid`,
/// over UDP 2152 between `a` and `b`.
fn gtp(a: [u8; 4], b: [u8; 4], teid: u32, inner: &[u8]) -> Vec<u8> {
    use std::net::Ipv4Addr;
    let mut g = vec![0x30, 0xff];
    g.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    g.extend_from_slice(&teid.to_be_bytes());
    g.extend_from_slice(inner);
    let (a, b) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
    build::ethernet(
        build::MAC_A,
        build::MAC_B,
        0x0800,
        &build::ipv4(a, b, 17, 1, &build::udp(a.into(), b.into(), 2152, 2152, &g)),
    )
}

/// `inner` in VXLAN `vni` over UDP between 192.0.2.1 and 192.0.2.2.
fn vxlan(vni: u32, c2s: bool, inner: &[u8]) -> Vec<u8> {
    use std::net::Ipv4Addr;
    let eth = build::ethernet(build::MAC_A, build::MAC_B, 0x0800, inner);
    let (a, b) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let (a, b) = if c2s { (a, b) } else { (b, a) };
    let udp = build::udp(a.into(), b.into(), 50000, 4789, &build::vxlan(vni, &eth));
    build::ethernet(
        build::MAC_A,
        build::MAC_B,
        0x0800,
        &build::ipv4(a, b, 17, 1, &udp),
    )
}

#[test]
fn both_directions_of_a_tunnelled_connection_are_one_flow_and_tunnels_stay_apart() {
    let (enb, sgw) = ([172, 16, 0, 1], [172, 16, 0, 2]);
    // GTP-U: uplink on TEID 0x100 (chosen by the gateway), downlink on 0x200
    // (chosen by the base station); outer addresses swap with the direction
    let mut frames = vec![
        gtp(enb, sgw, 0x100, &inner_tcp(true, SYN, 1000)),
        gtp(sgw, enb, 0x200, &inner_tcp(false, SYN | ACK, 5000)),
        gtp(enb, sgw, 0x100, &inner_tcp(true, ACK, 1001)),
        // a second tunnel, from another base station, carrying the same
        // inner 5-tuple: its own flow
        gtp([172, 16, 0, 3], sgw, 0x300, &inner_tcp(true, SYN, 1000)),
        gtp(
            sgw,
            [172, 16, 0, 3],
            0x400,
            &inner_tcp(false, SYN | ACK, 5000),
        ),
    ];
    // the same inner connection in two VXLAN segments: two flows
    for vni in [7, 8] {
        frames.push(vxlan(vni, true, &inner_tcp(true, SYN, 1000)));
        frames.push(vxlan(vni, false, &inner_tcp(false, SYN | ACK, 5000)));
    }
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("tunnels.pcap");
    write_pcap(&pcap, &frames);
    let out = tmp.path().join("out");
    let o = run([
        "-q".as_ref(),
        "-p".as_ref(),
        "flows".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        pcap.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let inner: Vec<_> = records(&out)
        .into_iter()
        .filter(|r| r["src_ip"] == "10.9.0.1" && r["dst_port"] == 443)
        .map(|r| {
            (
                r["tunnel_depth"].as_u64().unwrap(),
                r["orig_pkts"].as_u64().unwrap(),
                r["resp_pkts"].as_u64().unwrap(),
                r["history"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // one flow of 2 + 1 packets and one of 1 + 1 for the GTP tunnels, one
    // flow per VXLAN segment
    let mut counts: Vec<_> = inner.iter().map(|(_, o, r, _)| (*o, *r)).collect();
    counts.sort_unstable();
    assert_eq!(counts, [(1, 1), (1, 1), (1, 1), (2, 1)], "{inner:?}");
    assert!(inner.iter().all(|(d, ..)| *d == 1), "{inner:?}");
    assert!(inner.iter().any(|(.., h)| h == "ShA"), "{inner:?}");
}

#[test]
fn the_gtp_connection_of_the_corpus_is_one_flow_as_tshark_sees_it() {
    let Some(dir) = corpus() else { return };
    let path = dir.join("tunnels/zeek_gtp6_gtp_0x32.pcap");
    if !path.exists() {
        eprintln!(
            "SKIP the_gtp_connection_of_the_corpus: tunnels/zeek_gtp6_gtp_0x32.pcap not in the corpus"
        );
        return;
    }
    // tshark: frames of the inner connection, by direction
    let count = |filter: &str| -> Option<u64> {
        let o = libpcap_live::testing::output_with_deadline(
            std::process::Command::new("tshark")
                .arg("-r")
                .arg(&path)
                .args(["-Y", filter, "-T", "fields", "-e", "frame.number"]),
            TSHARK_DEADLINE,
        )
        .ok()
        .filter(|o| o.status.success())?;
        Some(String::from_utf8_lossy(&o.stdout).lines().count() as u64)
    };
    let Some(to_server) = count("tcp.srcport == 44960 && tcp.dstport == 5228") else {
        eprintln!("SKIP the_gtp_connection_of_the_corpus: tshark not available");
        return;
    };
    let to_client = count("tcp.srcport == 5228 && tcp.dstport == 44960").unwrap();
    assert!(to_server > 0 && to_client > 0);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    analyse_into("flows,tls", &out, &path);
    let ours: Vec<_> = records(&out)
        .into_iter()
        .filter(|r| {
            let ports = [r["src_port"].as_u64(), r["dst_port"].as_u64()];
            ports.contains(&Some(44960)) && ports.contains(&Some(5228))
        })
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    let r = &ours[0];
    assert_eq!(r["src_ip"], "10.222.10.10", "{r}");
    assert_eq!(
        (r["orig_pkts"].as_u64(), r["resp_pkts"].as_u64()),
        (Some(to_server), Some(to_client)),
        "{r}"
    );
    // its ClientHello and ServerHello are records of that one flow
    let tls = std::fs::read_to_string(out.join("tls.jsonl")).unwrap();
    let mut hellos: Vec<String> = tls
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|t| t["flow_id"] == r["flow_id"])
        .map(|t| t["hello"].as_str().unwrap().to_string())
        .collect();
    hellos.sort();
    assert_eq!(hellos, ["client_hello", "server_hello"], "{tls}");
}

#[test]
fn an_icmp_exchange_is_one_flow_and_other_messages_their_own() {
    use std::net::Ipv4Addr;
    let (a, b) = (Ipv4Addr::new(10, 2, 0, 1), Ipv4Addr::new(10, 2, 0, 2));
    let icmp = |src: Ipv4Addr, dst: Ipv4Addr, msg: &[u8]| {
        build::ethernet(
            build::MAC_A,
            build::MAC_B,
            0x0800,
            &build::ipv4(src, dst, 1, 1, msg),
        )
    };
    // destination unreachable (3/3) quoting a UDP header, checksum left 0
    let mut unreachable = vec![3, 3, 0, 0, 0, 0, 0, 0];
    unreachable.extend_from_slice(&build::ipv4(a, b, 17, 9, &[0; 8]));
    let frames = vec![
        icmp(a, b, &build::icmpv4_echo(false, 1, 1, b"ping")),
        icmp(b, a, &build::icmpv4_echo(true, 1, 1, b"ping")),
        icmp(b, a, &unreachable),
        // an echo the other way round: the exchange of the other host
        icmp(b, a, &build::icmpv4_echo(false, 2, 1, b"ping")),
        icmp(a, b, &build::icmpv4_echo(true, 2, 1, b"ping")),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("icmp.pcap");
    write_pcap(&pcap, &frames);
    let out = tmp.path().join("out");
    let o = run([
        "-q".as_ref(),
        "-p".as_ref(),
        "flows".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        pcap.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut got: Vec<_> = records(&out)
        .iter()
        .map(|r| {
            // the Community ID of a flow is the specification's for its key
            let cid = libpcap_analyzer::proto::community_id::community_id_v1(
                0,
                r["src_ip"].as_str().unwrap().parse().unwrap(),
                r["dst_ip"].as_str().unwrap().parse().unwrap(),
                1,
                r["src_port"].as_u64().unwrap() as u16,
                r["dst_port"].as_u64().unwrap() as u16,
            );
            assert_eq!(r["community_id"], cid.as_str(), "{r}");
            (
                r["src_ip"].as_str().unwrap().to_string(),
                r["src_port"].as_u64().unwrap(),
                r["dst_port"].as_u64().unwrap(),
                r["orig_pkts"].as_u64().unwrap(),
                r["resp_pkts"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    // (originator, type, counterpart type or code, packets each way), as
    // Zeek's conn.log keys ICMP
    let want = vec![
        ("10.2.0.1".to_string(), 8, 0, 1, 1),
        ("10.2.0.2".to_string(), 3, 3, 1, 0),
        ("10.2.0.2".to_string(), 8, 0, 1, 1),
    ];
    assert_eq!(got, want);
}

#[test]
fn dns_is_decoded_on_the_llmnr_and_mdns_ports_by_default() {
    use std::net::{IpAddr, Ipv4Addr};
    let (c, s) = ([10, 3, 0, 1], [10, 3, 0, 2]);
    let addr = IpAddr::V4(Ipv4Addr::new(10, 3, 0, 9));
    let (a, b) = (build::MAC_A, build::MAC_B);
    let mut frames = Vec::new();
    for (port, id) in [(5355, 7), (5353, 8), (53, 9)] {
        let q = build::dns_query(id, "printer.local", 1);
        let r = build::dns_response(id, "printer.local", 1, 0, &[addr], 120);
        frames.push(build::eth_udp4(a, b, None, c, s, 40000 + id, port, &q));
        frames.push(build::eth_udp4(b, a, None, s, c, port, 40000 + id, &r));
    }
    let tmp = tempfile::tempdir().unwrap();
    let pcap = tmp.path().join("ports.pcap");
    write_pcap(&pcap, &frames);
    let out = tmp.path().join("out");
    let o = run([
        "-q".as_ref(),
        "-p".as_ref(),
        "dns".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        pcap.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(out.join("dns.jsonl")).unwrap();
    let mut got: Vec<(u64, u64, String)> = text
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(r["rtt"].is_number(), "a query with its response: {r}");
            (
                r["dst_port"].as_u64().unwrap(),
                r["trans_id"].as_u64().unwrap(),
                r["answers"][0].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(u64, u64, String)> = [(53, 9), (5353, 8), (5355, 7)]
        .into_iter()
        .map(|(p, i)| (p, i, "10.3.0.9".to_string()))
        .collect();
    assert_eq!(got, want);
}

/// An NSH header (RFC 8300 §2.2, MD type 2 without metadata: 2 words) with
/// next protocol `next` (1 IPv4, 2 IPv6, 3 Ethernet).
fn nsh(next: u8, inner: &[u8]) -> Vec<u8> {
    let mut h = vec![0x0f, 0x02, 0x02, next, 0x00, 0x00, 0x2a, 0xff];
    h.extend_from_slice(inner);
    h
}

#[test]
fn cisco_hdlc_and_nsh_frames_are_decoded() {
    use std::net::Ipv4Addr;
    let (c, s) = (Ipv4Addr::new(10, 4, 0, 1), Ipv4Addr::new(10, 4, 0, 2));
    let udp = |sp: u16| {
        build::ipv4(
            c,
            s,
            17,
            1,
            &build::udp(c.into(), s.into(), sp, 9999, b"hi"),
        )
    };
    let tmp = tempfile::tempdir().unwrap();
    // Cisco HDLC (link type 104): unicast address, control 0, ethertype
    let hdlc_pcap = tmp.path().join("chdlc.pcap");
    let mut hdlc = vec![0x0f, 0x00, 0x08, 0x00];
    hdlc.extend_from_slice(&udp(1001));
    let slarp = vec![
        0x8f, 0x00, 0x80, 0x35, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff,
    ];
    write_pcap_of(&hdlc_pcap, LinkType::C_HDLC, &[hdlc.clone(), hdlc, slarp]);
    // NSH over Ethernet (ethertype 0x894f) carrying IPv4, and over GRE
    // (protocol 0x894f) carrying an Ethernet frame
    let nsh_pcap = tmp.path().join("nsh.pcap");
    let inner_eth = build::ethernet(build::MAC_A, build::MAC_B, 0x0800, &udp(1003));
    let (o1, o2) = (Ipv4Addr::new(192, 0, 2, 7), Ipv4Addr::new(192, 0, 2, 8));
    write_pcap(
        &nsh_pcap,
        &[
            build::ethernet(build::MAC_A, build::MAC_B, 0x894f, &nsh(1, &udp(1002))),
            build::ethernet(
                build::MAC_A,
                build::MAC_B,
                0x0800,
                &build::ipv4(
                    o1,
                    o2,
                    47,
                    1,
                    &build::gre(0x894f, None, &nsh(3, &inner_eth)),
                ),
            ),
        ],
    );
    let mut seen = Vec::new();
    for pcap in [&hdlc_pcap, &nsh_pcap] {
        let out = tmp.path().join(format!("out-{}", seen.len()));
        let o = run([
            "-q".as_ref(),
            "-p".as_ref(),
            "flows".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            pcap.as_os_str(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        for r in records(&out) {
            if r["dst_port"] == 9999 {
                seen.push((
                    r["src_port"].as_u64().unwrap(),
                    r["orig_pkts"].as_u64().unwrap(),
                    r["tunnel_depth"].as_u64().unwrap(),
                ));
            }
        }
    }
    seen.sort_unstable();
    // the HDLC flow with its two packets (the keepalive is no flow), the
    // NSH-steered packet on the Ethernet link, the one inside GRE at depth 1
    assert_eq!(seen, [(1001, 2, 0), (1002, 1, 0), (1003, 1, 1)]);
    // tshark reads the same UDP packets out of these frames
    let count = |pcap: &Path| -> Option<usize> {
        let o = libpcap_live::testing::output_with_deadline(
            std::process::Command::new("tshark")
                .arg("-r")
                .arg(pcap)
                .args([
                    "-Y",
                    "udp.dstport == 9999",
                    "-T",
                    "fields",
                    "-e",
                    "udp.srcport",
                ]),
            TSHARK_DEADLINE,
        )
        .ok()
        .filter(|o| o.status.success())?;
        Some(String::from_utf8_lossy(&o.stdout).lines().count())
    };
    match (count(&hdlc_pcap), count(&nsh_pcap)) {
        (Some(h), Some(n)) => assert_eq!((h, n), (2, 2), "tshark's UDP packets"),
        _ => eprintln!("SKIP tshark cross-check of the C_HDLC/NSH frames: tshark not available"),
    }
}
