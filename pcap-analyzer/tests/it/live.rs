//! Live capture (`-i`) end to end: each test builds its own pair of network
//! namespaces joined by a veth pair (`libpcap_live::testing`), runs the
//! binary in the capture namespace with `ip netns exec`, waits for its
//! "capturing on" line, injects known frames from the other namespace and
//! checks the reports against what was sent. Without root (or `ip`), each
//! prints one `SKIP <test>: <reason>` line and passes. Every wait has a
//! deadline: the binary is killed (and the test fails with its output) if
//! it is not ready in 20 s or does not end in time.

use crate::{bin, output_within, stderr};
use libpcap_analyzer::build::{self, flags};
use libpcap_live::testing::{self, VethBed};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// An Ethernet/IPv4/UDP frame from the generator side to the MAC address
/// nobody answers, optionally VLAN-tagged.
pub(crate) fn gen_udp(
    vlan: Option<u16>,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    build::eth_udp4(
        testing::GEN_MAC,
        testing::NOBODY_MAC,
        vlan,
        src,
        dst,
        sport,
        dport,
        payload,
    )
}

/// The same with a TCP segment.
#[allow(clippy::too_many_arguments)] // a frame's fields, named at the call
fn gen_tcp(
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    build::eth_tcp4(
        testing::GEN_MAC,
        testing::NOBODY_MAC,
        src,
        dst,
        sport,
        dport,
        seq,
        ack,
        flags,
        payload,
    )
}

pub(crate) fn bed(test: &str) -> Option<VethBed> {
    if let Some(why) = testing::skip_reason() {
        eprintln!("SKIP {test}: {why}");
        return None;
    }
    Some(VethBed::new("cli").unwrap_or_else(|e| panic!("building the veth bed: {e}")))
}

/// The binary running in the capture namespace; killed if the test fails.
pub(crate) struct Capture {
    child: Option<Child>,
    lines: Receiver<String>,
    stderr: Vec<String>,
}

impl Capture {
    /// Starts `pcap-analyzer -i CAP_IF ARGS` in the capture namespace and
    /// waits for its readiness line.
    fn start(bed: &VethBed, args: &[&str]) -> Capture {
        let mut all = vec!["-i", bed.cap_if.as_str()];
        all.extend_from_slice(args);
        Capture::spawn(bed, &all, "capturing on")
    }

    /// Starts `pcap-analyzer ARGS` in the capture namespace and waits for
    /// a stderr line containing `ready`.
    pub(crate) fn spawn(bed: &VethBed, args: &[&str], ready: &str) -> Capture {
        let exe = bin().get_program().to_owned();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &bed.cap_ns])
            .arg(exe)
            .args(args)
            .env_remove("PCAP_ANALYZER_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut c = Capture {
            child: Some(child),
            lines,
            stderr: Vec::new(),
        };
        c.wait_line(ready, Duration::from_secs(20));
        c
    }

    /// Waits for a stderr line containing `what` (at most `limit`).
    pub(crate) fn wait_line(&mut self, what: &str, limit: Duration) {
        let t = Instant::now();
        loop {
            let left = limit.saturating_sub(t.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let found = l.contains(what);
                    self.stderr.push(l);
                    if found {
                        return;
                    }
                }
                // the process is killed when `self` is dropped
                Err(_) => panic!(
                    "no line '{what}' after {:?}: {:?}",
                    t.elapsed(),
                    self.stderr
                ),
            }
        }
    }

    /// Sends signal `sig` (`USR1`, `INT`, …).
    pub(crate) fn signal(&self, sig: &str) {
        let pid = self.pid().to_string();
        let o = output_within(
            Command::new("kill").args([&format!("-{sig}"), &pid]),
            Duration::from_secs(10),
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }

    /// The process id of the binary (`ip netns exec` execs it in place).
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends SIGINT, as Ctrl-C does.
    pub(crate) fn interrupt(&self) {
        self.signal("INT");
    }

    /// Waits for the process to end (at most `limit`), with all its output.
    pub(crate) fn wait(mut self, limit: Duration) -> (Output, String) {
        let child = self.child.take().unwrap();
        let out = libpcap_live::testing::wait_with_deadline(child, limit)
            .unwrap_or_else(|e| panic!("{e}; stderr before: {:?}", self.stderr));
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.stderr.push(l);
        }
        let err = self.stderr.join("\n");
        (out, err)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// What a connection-report row must say.
#[derive(Debug, Default, PartialEq, Eq, Clone)]
pub(crate) struct Row {
    pub(crate) proto: String,
    pub(crate) bytes: u64,
    pub(crate) packets: u64,
}

pub(crate) type Key = (String, u16, String, u16);

/// The rows of a text report, with their first/last times checked to be
/// within `t0..=t1` (ms).
pub(crate) fn rows(report: &str, t0: i64, t1: i64) -> BTreeMap<Key, Row> {
    let mut m = BTreeMap::new();
    for line in report.lines().skip(1) {
        let f: Vec<&str> = line.split("; ").collect();
        assert_eq!(f.len(), 9, "{line}");
        let (first, last): (i64, i64) = (f[5].parse().unwrap(), f[6].parse().unwrap());
        assert!(
            t0 <= first && first <= last && last <= t1,
            "{line} not in {t0}..{t1}"
        );
        let key = (
            f[0].to_string(),
            f[1].parse().unwrap(),
            f[2].to_string(),
            f[3].parse().unwrap(),
        );
        let row = Row {
            proto: f[4].to_string(),
            bytes: f[7].parse().unwrap(),
            packets: f[8].parse().unwrap(),
        };
        assert!(m.insert(key, row).is_none(), "duplicate row {line}");
    }
    m
}

pub(crate) fn ip(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// Known traffic: 6 UDP flows between 3 host pairs (3 to 8 packets of
/// different sizes) and one TCP connection (handshake, data both ways,
/// FIN both ways). Returns the frames and the expected rows.
pub(crate) fn traffic() -> (Vec<Vec<u8>>, BTreeMap<Key, Row>) {
    let mut frames = Vec::new();
    let mut want: BTreeMap<Key, Row> = BTreeMap::new();
    let mut add = |frames: &mut Vec<Vec<u8>>, f: Vec<u8>, k: Key, proto: &str| {
        let r = want.entry(k).or_default();
        r.proto = format!("[{proto}]");
        r.bytes += f.len() as u64;
        r.packets += 1;
        frames.push(f);
    };
    let hosts = [
        ([10, 9, 0, 1], [10, 9, 0, 2]),
        ([10, 9, 1, 1], [10, 9, 1, 2]),
        ([10, 9, 2, 7], [10, 9, 3, 9]),
    ];
    for round in 0..8u16 {
        for (i, (s, d)) in hosts.iter().enumerate() {
            for (j, dport) in [53u16, 5353].into_iter().enumerate() {
                let flow = (i * 2 + j) as u16;
                if round >= 3 + flow % 6 {
                    continue;
                }
                let sport = 40000 + flow;
                let payload = vec![0x5a; usize::from(10 + round * 7 + flow)];
                let f = gen_udp(None, *s, *d, sport, dport, &payload);
                add(&mut frames, f, (ip(*s), sport, ip(*d), dport), "UDP");
            }
        }
    }
    let (c, sv) = ([10, 9, 0, 1], [10, 9, 0, 2]);
    let (cp, sp) = (41000u16, 80u16);
    let to_s = (ip(c), cp, ip(sv), sp);
    let to_c = (ip(sv), sp, ip(c), cp);
    let tcp = [
        (true, 1000, 0, flags::SYN, 0usize),
        (false, 5000, 1001, flags::SYN | flags::ACK, 0),
        (true, 1001, 5001, flags::ACK, 0),
        (true, 1001, 5001, flags::ACK | flags::PSH, 120),
        (false, 5001, 1121, flags::ACK | flags::PSH, 700),
        (true, 1121, 5701, flags::ACK | flags::FIN, 0),
        (false, 5701, 1122, flags::ACK | flags::FIN, 0),
        (true, 1122, 5702, flags::ACK, 0),
    ];
    for (client, seq, ack, flags, len) in tcp {
        let payload = vec![b'h'; len];
        let (f, k) = if client {
            (
                gen_tcp(c, sv, cp, sp, seq, ack, flags, &payload),
                to_s.clone(),
            )
        } else {
            (
                gen_tcp(sv, c, sp, cp, seq, ack, flags, &payload),
                to_c.clone(),
            )
        };
        add(&mut frames, f, k, "TCP");
    }
    (frames, want)
}

pub(crate) fn stats_of(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn live_report_equals_the_frames_sent_with_1_2_and_3_workers() {
    let (frames, want) = traffic();
    let total = frames.len() as u64;
    for jobs in ["1", "2", "3"] {
        let test = format!("live_report_equals_the_frames_sent (-j {jobs})");
        let Some(bed) = bed(&test) else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let stats = tmp.path().join("stats.json");
        let t0 = now_ms();
        let cap = Capture::start(
            &bed,
            &[
                "-j",
                jobs,
                "-o",
                out.to_str().unwrap(),
                "--stats-json",
                stats.to_str().unwrap(),
            ],
        );
        let tx = bed.sender().unwrap();
        for f in &frames {
            tx.send(f).unwrap();
        }
        // longer than the ring's block timeout (10 ms), then Ctrl-C
        std::thread::sleep(Duration::from_millis(300));
        cap.interrupt();
        let (o, err) = cap.wait(Duration::from_secs(10));
        let t1 = now_ms();
        assert_eq!(o.status.code(), Some(0), "-j {jobs}: {err}");
        let report = std::fs::read_to_string(out.join("connections.txt")).unwrap();
        assert_eq!(rows(&report, t0, t1), want, "-j {jobs}:\n{report}");
        for f in [
            "flows.jsonl",
            "basic-stats.json",
            "community-id.jsonl",
            "pcap-analyzer.log",
        ] {
            assert!(out.join(f).exists(), "-j {jobs}: {f} missing");
        }
        let s = stats_of(&stats);
        assert_eq!(s["packets"], total, "-j {jobs}: {s}");
        assert_eq!(s["live"]["kernel_packets"], total, "-j {jobs}: {s}");
        assert_eq!(s["live"]["kernel_drops"], 0, "-j {jobs}: {s}");
        assert_eq!(s["live"]["sockets"], jobs.parse::<u64>().unwrap(), "{s}");
        assert_eq!(s["live"]["interface"], bed.cap_if.as_str());
        assert!(
            err.contains(&format!(
                "{total} packets received by the kernel, 0 dropped"
            )),
            "{err}"
        );
        // the TCP connection ended with FIN both ways
        let flows = std::fs::read_to_string(out.join("flows.jsonl")).unwrap();
        let tcp: Vec<&str> = flows
            .lines()
            .filter(|l| l.contains("\"proto\":\"tcp\""))
            .collect();
        assert_eq!(tcp.len(), 1, "{flows}");
        assert!(tcp[0].contains("\"end_reason\":\"fin\""), "{}", tcp[0]);
    }
}

#[test]
fn live_vlan_frame_is_reported_with_its_vlan() {
    let Some(bed) = bed("live_vlan_frame_is_reported_with_its_vlan") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let t0 = now_ms();
    let cap = Capture::start(
        &bed,
        &[
            "-j",
            "1",
            "-o",
            out.to_str().unwrap(),
            "--count",
            "2",
            "--duration",
            "20",
        ],
    );
    let tx = bed.sender().unwrap();
    let tagged = gen_udp(Some(100), [10, 9, 5, 1], [10, 9, 5, 2], 1234, 53, b"tagged");
    let plain = gen_udp(None, [10, 9, 5, 1], [10, 9, 5, 2], 1234, 53, b"plain");
    tx.send(&tagged).unwrap();
    tx.send(&plain).unwrap();
    let (o, err) = cap.wait(Duration::from_secs(10));
    let t1 = now_ms();
    assert_eq!(o.status.code(), Some(0), "{err}");
    let flows = std::fs::read_to_string(out.join("flows.jsonl")).unwrap();
    let mut vlans: Vec<(u64, u64)> = flows
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["src_port"], 1234, "{l}");
            (
                v["vlan"].as_u64().unwrap_or(0),
                v["orig_wire_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    vlans.sort();
    // the tag is on the wire (46 + 4 bytes); the untagged frame is another flow
    assert_eq!(
        vlans,
        vec![(0, plain.len() as u64), (100, tagged.len() as u64)],
        "{flows}"
    );
    assert_eq!(tagged.len(), plain.len() + 4 + 1);
    let report = std::fs::read_to_string(out.join("connections.txt")).unwrap();
    let r = rows(&report, t0, t1);
    assert_eq!(r.len(), 1, "{report}");
    let row = r.values().next().unwrap();
    assert_eq!(
        (row.packets, row.bytes),
        (2, (tagged.len() + plain.len()) as u64)
    );
}

#[test]
fn live_count_stops_after_exactly_n_packets() {
    let Some(bed) = bed("live_count_stops_after_exactly_n_packets") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let stats = tmp.path().join("stats.json");
    let cap = Capture::start(
        &bed,
        &[
            "-j",
            "2",
            "--count",
            "10",
            "--duration",
            "20",
            "--stats-json",
            stats.to_str().unwrap(),
        ],
    );
    let tx = bed.sender().unwrap();
    let t = Instant::now();
    for i in 0..30u16 {
        tx.send(&gen_udp(
            None,
            [10, 9, 6, 1],
            [10, 9, 6, 2],
            2000 + i % 3,
            99,
            b"count",
        ))
        .unwrap();
    }
    let (o, err) = cap.wait(Duration::from_secs(10));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stopped by --duration, not --count"
    );
    assert_eq!(o.status.code(), Some(0), "{err}");
    let report = String::from_utf8_lossy(&o.stdout).into_owned();
    let packets: u64 = rows(&report, 0, i64::MAX).values().map(|r| r.packets).sum();
    assert_eq!(packets, 10, "{report}");
    assert_eq!(stats_of(&stats)["packets"], 10);
}

#[test]
fn live_duration_stops_an_idle_capture() {
    let Some(bed) = bed("live_duration_stops_an_idle_capture") else {
        return;
    };
    let t = Instant::now();
    let cap = Capture::start(&bed, &["--duration", "0.5"]);
    let (o, err) = cap.wait(Duration::from_secs(10));
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let report = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(report.lines().count(), 1, "header only: {report}");
    assert!(err.contains("0 packets received by the kernel"), "{err}");
}

#[test]
fn live_unknown_interface_is_a_clear_error_with_exit_code_1() {
    let o = output_within(
        bin().args(["-i", "pal-nosuch0", "--duration", "1"]),
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    if libpcap_live::sys::packet_socket().is_err() {
        assert!(err.contains("CAP_NET_RAW"), "{err}");
    } else {
        assert!(
            err.contains("cannot capture on 'pal-nosuch0': no such interface"),
            "{err}"
        );
    }
}
