//! Inline mode (NFQUEUE) end to end: each test builds its own pair of
//! network namespaces joined by a veth pair with IPv4 addresses, adds an
//! iptables rule in the receiving namespace that queues incoming UDP
//! (`-j NFQUEUE ... --queue-bypass`: accepted while no program listens),
//! sends real datagrams from the other namespace, and checks what arrived
//! and what was reported. Without root, `ip` or `iptables`, each prints one
//! `SKIP <test>: <reason>` line and passes. Every wait has a deadline
//! (processes, socket reads, loops).

use crate::live::{Capture, Key, Row, now_ms, rows, stats_of};
use crate::{bin, output_within, stderr};
use libpcap_analyzer::Engine;
use libpcap_analyzer::plugin::{
    Decapsulated, Interest, Layers, PacketContext, Plugin, PluginResult, TransportLayer,
};
use libpcap_live::afpacket::CaptureLimits;
use libpcap_live::nfqueue::{self, NfqueueConfig};
use libpcap_live::testing::{self, CAP_IP4, GEN_IP4, VethBed};
use libpcap_tools::{Config, PacketSource};
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub(crate) fn bed(test: &str) -> Option<VethBed> {
    if let Some(why) = testing::nfqueue_skip_reason() {
        eprintln!("SKIP {test}: {why}");
        return None;
    }
    let bed = VethBed::new("nfq").unwrap_or_else(|e| panic!("building the veth bed: {e}"));
    bed.add_ipv4().unwrap();
    Some(bed)
}

/// Queues incoming UDP of the capture namespace to `queues` ("7" or "7:8").
pub(crate) fn queue_rule(bed: &VethBed, queues: &str) {
    let target: Vec<&str> = if queues.contains(':') {
        vec!["--queue-balance", queues]
    } else {
        vec!["--queue-num", queues]
    };
    let mut args = vec!["-A", "INPUT", "-p", "udp", "-j", "NFQUEUE"];
    args.extend(target);
    args.push("--queue-bypass");
    bed.cap_exec("iptables", &args).unwrap();
}

fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// A UDP socket listening on `port` in the capture namespace.
pub(crate) fn receiver(bed: &VethBed, port: u16) -> UdpSocket {
    testing::in_namespace(&bed.cap_ns, || {
        let s = UdpSocket::bind(addr(CAP_IP4, port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s
    })
    .unwrap()
}

/// Datagrams waiting on `s` (until 300 ms pass without one; 20 s at most).
pub(crate) fn drain(s: &UdpSocket) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) && s.recv(&mut buf).is_ok() {
        n += 1;
    }
    n
}

/// Sends `n` datagrams of `len` bytes from `sport` to `dport`, from the
/// generator namespace.
pub(crate) fn send(bed: &VethBed, sport: u16, dport: u16, n: usize, len: usize) {
    testing::in_namespace(&bed.gen_ns, || {
        let s = UdpSocket::bind(addr(GEN_IP4, sport)).unwrap();
        for _ in 0..n {
            s.send_to(&vec![0x42; len], addr(CAP_IP4, dport)).unwrap();
            // paced a little: the test is about verdicts, not about queue overflow
            std::thread::sleep(Duration::from_micros(200));
        }
    })
    .unwrap();
}

fn ip(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// Sends the flows `(sport, dport, count, payload length)` and returns the
/// rows they must give (raw IP: bytes are IP packet lengths).
pub(crate) fn send_flows(bed: &VethBed, flows: &[(u16, u16, usize, usize)]) -> BTreeMap<Key, Row> {
    let mut want = BTreeMap::new();
    for &(sport, dport, n, len) in flows {
        send(bed, sport, dport, n, len);
        want.insert(
            (ip(GEN_IP4), sport, ip(CAP_IP4), dport),
            Row {
                proto: "[UDP]".to_string(),
                bytes: (n * (20 + 8 + len)) as u64,
                packets: n as u64,
            },
        );
    }
    want
}

/// Runs the binary in inline mode with `args` until `ready`.
pub(crate) fn inline(bed: &VethBed, args: &[&str]) -> Capture {
    Capture::spawn(bed, args, "inline on NFQUEUE")
}

#[test]
fn nfqueue_accepting_run_passes_every_datagram_and_reports_exactly_them() {
    let Some(bed) = bed("nfqueue_accepting_run_passes_every_datagram_and_reports_exactly_them")
    else {
        return;
    };
    queue_rule(&bed, "3");
    let (r1, r2) = (receiver(&bed, 7001), receiver(&bed, 7002));
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let t0 = now_ms();
    let cap = inline(
        &bed,
        &[
            "--nfqueue",
            "3",
            "-j",
            "1",
            "--stats-json",
            stats.to_str().unwrap(),
        ],
    );
    let want = send_flows(
        &bed,
        &[
            (40001, 7001, 30, 100),
            (40002, 7002, 20, 500),
            (40003, 7001, 5, 1),
        ],
    );
    assert_eq!(drain(&r1), 35, "every datagram to 7001 passed");
    assert_eq!(drain(&r2), 20);
    cap.interrupt();
    let (out, err) = cap.wait(Duration::from_secs(10));
    let t1 = now_ms();
    assert_eq!(out.status.code(), Some(0), "{err}");
    let report = String::from_utf8(out.stdout).unwrap();
    assert_eq!(rows(&report, t0, t1), want, "{report}");
    let s = stats_of(&stats);
    assert_eq!(s["nfqueue"]["accepted"], 55, "{s}");
    assert_eq!(s["nfqueue"]["dropped_by_verdict"], 0, "{s}");
    assert_eq!(s["nfqueue"]["kernel_queue_dropped"], 0, "{s}");
    assert_eq!(s["packets"], 55, "{s}");
    assert!(err.contains("55 accepted, 0 dropped by verdict"), "{err}");
    // the queue is released: traffic still flows (--queue-bypass)
    send(&bed, 40001, 7001, 10, 10);
    assert_eq!(drain(&r1), 10);
}

/// Drops every UDP datagram to port 7001.
struct Drop7001;

impl Plugin for Drop7001 {
    fn name(&self) -> &str {
        "drop-7001"
    }
    fn interest(&self) -> Interest {
        Interest::new(Layers::TRANSPORT).ip_protocols(&[17])
    }
    fn handle_transport(
        &mut self,
        ctx: &PacketContext<'_>,
        t: &TransportLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        if t.key.dst_port == 7001 {
            ctx.drop_packet();
        }
        Ok(None)
    }
    fn merge(&mut self, _: Box<dyn Plugin>) -> PluginResult<()> {
        Ok(())
    }
}

#[test]
fn nfqueue_plugin_drop_verdict_keeps_those_datagrams_from_the_receiver() {
    let Some(bed) = bed("nfqueue_plugin_drop_verdict_keeps_those_datagrams_from_the_receiver")
    else {
        return;
    };
    queue_rule(&bed, "4:5");
    let (r1, r2) = (receiver(&bed, 7001), receiver(&bed, 7002));
    let group = testing::in_namespace(&bed.cap_ns, || {
        nfqueue::open(4, 2, &NfqueueConfig::default(), CaptureLimits::default())
    })
    .unwrap()
    .unwrap();
    let handle = group.handle.clone();
    let sources: Vec<Box<dyn PacketSource>> = group
        .sources
        .into_iter()
        .map(|s| Box::new(s) as Box<dyn PacketSource>)
        .collect();
    let engine = Engine::new(&Config::new(), 2).unwrap();
    let factory = || -> PluginResult<Vec<Box<dyn Plugin>>> { Ok(vec![Box::new(Drop7001)]) };
    let out = std::thread::scope(|s| {
        let run = s.spawn(|| engine.run_sources(&factory, sources));
        for k in 0..4 {
            send(&bed, 41000 + k, 7001, 10, 50);
            send(&bed, 42000 + k, 7002, 10, 50);
        }
        let got = (drain(&r1), drain(&r2));
        handle.stop();
        (got, run.join().unwrap().unwrap())
    });
    let ((got1, got2), output) = out;
    assert_eq!(got1, 0, "datagrams to 7001 were dropped");
    assert_eq!(got2, 40, "datagrams to 7002 passed");
    assert_eq!(output.stats.packets, 80);
    let k = handle.stats();
    assert_eq!((k.accepted, k.dropped), (40, 40), "{k:?}");
    // the sources are gone: traffic to 7001 flows again
    send(&bed, 41000, 7001, 5, 50);
    assert_eq!(drain(&r1), 5);
}

#[test]
fn nfqueue_two_queues_give_the_same_report_as_one() {
    let Some(bed) = bed("nfqueue_two_queues_give_the_same_report_as_one") else {
        return;
    };
    let r = receiver(&bed, 7001);
    let flows: Vec<(u16, u16, usize, usize)> = (0..8u16)
        .map(|k| (43000 + k, 7001, 3 + usize::from(k), 20 + usize::from(k)))
        .collect();
    let mut reports = Vec::new();
    for (jobs, queues) in [("1", "6"), ("2", "6:7")] {
        bed.cap_exec("iptables", &["-F", "INPUT"]).unwrap();
        queue_rule(&bed, queues);
        let dir = tempfile::tempdir().unwrap();
        let stats = dir.path().join("stats.json");
        let t0 = now_ms();
        let cap = inline(
            &bed,
            &[
                "--nfqueue",
                "6",
                "-j",
                jobs,
                "--stats-json",
                stats.to_str().unwrap(),
            ],
        );
        let want = send_flows(&bed, &flows);
        let sent: usize = flows.iter().map(|f| f.2).sum();
        assert_eq!(drain(&r), sent, "-j {jobs}");
        cap.interrupt();
        let (out, err) = cap.wait(Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(0), "{err}");
        let report = String::from_utf8(out.stdout).unwrap();
        let got = rows(&report, t0, now_ms());
        assert_eq!(got, want, "-j {jobs}: {report}");
        let s = stats_of(&stats);
        assert_eq!(s["nfqueue"]["queues"], jobs.parse::<u64>().unwrap(), "{s}");
        assert_eq!(s["nfqueue"]["accepted"], sent as u64, "{s}");
        reports.push(got);
    }
    assert_eq!(reports[0], reports[1]);
}

#[test]
fn nfqueue_count_ends_the_run_and_leaves_no_packet_stuck() {
    let Some(bed) = bed("nfqueue_count_ends_the_run_and_leaves_no_packet_stuck") else {
        return;
    };
    queue_rule(&bed, "9");
    let r = receiver(&bed, 7001);
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let cap = inline(
        &bed,
        &[
            "--nfqueue",
            "9",
            "--count",
            "5",
            "--stats-json",
            stats.to_str().unwrap(),
        ],
    );
    // 20 datagrams: the run ends after 5; the others are accepted while it
    // ends (held ones) or pass by --queue-bypass once it is gone
    send(&bed, 44000, 7001, 20, 30);
    assert_eq!(drain(&r), 20, "no datagram lost or stuck");
    let (out, err) = cap.wait(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0), "{err}");
    let s = stats_of(&stats);
    assert_eq!(s["packets"], 5, "{s}");
    assert_eq!(s["nfqueue"]["dropped_by_verdict"], 0, "{s}");
    send(&bed, 44000, 7001, 10, 30);
    assert_eq!(drain(&r), 10, "traffic flows after the run");
}

/// `true` when this process may bind NFQUEUE queues (`CAP_NET_ADMIN`).
fn has_net_admin() -> bool {
    libpcap_live::privs::ProcStatus::of_this_thread()
        .map(|s| s.cap_eff & libpcap_live::privs::Keep::NetAdmin.mask() != 0)
        .unwrap_or(false)
}

/// Runs `pcap-analyzer --nfqueue QUEUE` without privileges (as uid
/// nobody with no capability through `setpriv` when this process has
/// them), in namespace `ns` if given; bounded by `--duration` and a
/// deadline, so that a bind that wrongly succeeds cannot hang the test.
/// `None` (after a SKIP line) when `setpriv` is missing.
fn unprivileged_nfqueue(test: &str, ns: Option<&str>, queue: &str) -> Option<Output> {
    let mut c = if has_net_admin() {
        let mut c = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "setpriv"]);
                c
            }
            None => Command::new("setpriv"),
        };
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(bin().get_program());
        c
    } else {
        // already unprivileged: as it is
        bin()
    };
    c.args(["--nfqueue", queue, "-q", "--duration", "3"])
        .env_remove("PCAP_ANALYZER_LOG");
    let o = output_within(&mut c, Duration::from_secs(30));
    if o.status.code() == Some(127)
        || (stderr(&o).contains("setpriv") && !stderr(&o).contains("pcap-analyzer"))
    {
        eprintln!(
            "SKIP {test} (unprivileged part): setpriv unavailable: {}",
            stderr(&o)
        );
        return None;
    }
    Some(o)
}

#[test]
fn nfqueue_busy_queue_and_no_privilege_are_clear_errors() {
    let test = "nfqueue_busy_queue_and_no_privilege_are_clear_errors";
    let Some(bed) = bed(test) else {
        // no bed (no right, or no ip/iptables): the no-privilege error can
        // still be checked, without a namespace (nothing gets bound)
        if let Some(o) = unprivileged_nfqueue(test, None, "11") {
            assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
            assert!(
                stderr(&o).contains("inline mode needs root or the CAP_NET_ADMIN capability"),
                "{}",
                stderr(&o)
            );
        }
        return;
    };
    // queue 11 held by the test itself
    let _held = testing::in_namespace(&bed.cap_ns, || {
        nfqueue::open(11, 1, &NfqueueConfig::default(), CaptureLimits::default())
    })
    .unwrap()
    .unwrap();
    let exe = bin().get_program().to_owned();
    let o = output_within(
        Command::new("ip")
            .args(["netns", "exec", &bed.cap_ns])
            .arg(&exe)
            .args(["--nfqueue", "11", "-q", "--duration", "3"]),
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("queue 11 is already bound by another program"),
        "{}",
        stderr(&o)
    );
    // without privileges (uid nobody, no capabilities)
    let Some(o) = unprivileged_nfqueue(test, Some(&bed.cap_ns), "12") else {
        return;
    };
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("inline mode needs root or the CAP_NET_ADMIN capability"),
        "{}",
        stderr(&o)
    );
}
