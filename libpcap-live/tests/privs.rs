//! Which capabilities the live sources need once they are set up,
//! measured: a source is opened with every privilege, then read (and
//! closed) by a thread that has dropped capabilities. Capabilities belong
//! to a thread, so the test process keeps its own and the other tests are
//! not affected. Each test builds its own pair of network namespaces;
//! without root (or `ip`, `iptables`), each prints one `SKIP <test>:
//! <reason>` line and passes.
//!
//! Findings (see `libpcap_live::privs`):
//! - AF_PACKET: nothing after setup (reading, statistics, closing the
//!   sockets: ring unmapped, promiscuous membership dropped).
//! - NFQUEUE: `CAP_NET_ADMIN`, checked by the kernel on every verdict
//!   against the thread that sends it.
//!
//! And the Landlock write confinement, on a thread of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // tests fail loudly

use caps::{CapSet, Capability, CapsHashSet};
use libpcap_analyzer::build;
use libpcap_live::afpacket::{self, CaptureLimits, LiveConfig};
use libpcap_live::nfqueue::{self, NfqueueConfig};
use libpcap_live::privs::{Keep, LandlockStatus, ProcStatus};
use libpcap_live::testing::{self, CAP_IP4, GEN_IP4, VethBed};
use libpcap_tools::{PacketSource, SourceEvent, Verdict};
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Warnings logged by the sources, to see the kernel's answers.
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Collect;

impl log::Log for Collect {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            LOGGED.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn collect_logs() {
    static LOGGER: Collect = Collect;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

/// Drops every capability of the calling thread but `keep`, from every
/// set (bounding and ambient included), and checks it in
/// `/proc/thread-self/status`.
fn drop_thread_caps(keep: &[Capability]) -> ProcStatus {
    let keep: CapsHashSet = keep.iter().copied().collect();
    for cap in caps::runtime::thread_all_supported() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).unwrap();
        }
    }
    caps::clear(None, CapSet::Ambient).unwrap();
    caps::set(None, CapSet::Effective, &keep).unwrap();
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new()).unwrap();
    caps::set(None, CapSet::Permitted, &keep).unwrap();
    let st = ProcStatus::of_this_thread().unwrap();
    let mask = keep.iter().fold(0, |m, c| m | c.bitmask());
    assert_eq!(
        (st.cap_eff, st.cap_prm, st.cap_bnd, st.cap_amb),
        (mask, mask, mask, 0),
        "{st:?}"
    );
    st
}

fn udp(sport: u16, payload: &[u8]) -> Vec<u8> {
    build::eth_udp4(
        testing::GEN_MAC,
        testing::NOBODY_MAC,
        None,
        [10, 9, 0, 1],
        [10, 9, 0, 2],
        sport,
        53,
        payload,
    )
}

fn promiscuity(bed: &VethBed) -> u32 {
    let d = bed.cap_link_details().unwrap();
    d.split_whitespace()
        .skip_while(|w| *w != "promiscuity")
        .nth(1)
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no promiscuity in {d}"))
}

#[test]
fn afpacket_needs_no_capability_after_setup() {
    let test = "afpacket_needs_no_capability_after_setup";
    if let Some(why) = testing::skip_reason() {
        eprintln!("SKIP {test}: {why}");
        return;
    }
    let bed = VethBed::new("prv").unwrap();
    let ifname = bed.cap_if.clone();
    let group = testing::in_namespace(&bed.cap_ns, || {
        afpacket::open(&ifname, &LiveConfig::default(), 2, CaptureLimits::default())
    })
    .unwrap()
    .unwrap();
    assert_eq!(promiscuity(&bed), 2);
    let handle = group.handle.clone();
    let tx = bed.sender().unwrap();
    let frames: Vec<Vec<u8>> = (0..40u16).map(|i| udp(3000 + i % 8, b"nocap")).collect();
    for f in &frames {
        tx.send(f).unwrap();
    }
    // a thread without any capability reads both rings, then closes them
    let (got, status) = std::thread::scope(|s| {
        s.spawn(|| {
            let status = drop_thread_caps(&[]);
            let mut sources = group.sources;
            let mut got = 0;
            for src in &mut sources {
                let t = Instant::now();
                loop {
                    assert!(t.elapsed() < Duration::from_secs(10), "no end");
                    match src.next_event().unwrap() {
                        SourceEvent::Packet(_) => got += 1,
                        SourceEvent::Timeout { .. } => break,
                        SourceEvent::End => panic!("not stopped"),
                    }
                }
            }
            handle.stop();
            for src in &mut sources {
                let t = Instant::now();
                while src.next_event().unwrap() != SourceEvent::End {
                    assert!(t.elapsed() < Duration::from_secs(10), "no end");
                }
            }
            // unmaps the rings, closes the sockets: the kernel undoes the
            // promiscuous memberships
            drop(sources);
            (got, status)
        })
        .join()
        .unwrap()
    });
    assert_eq!(status.cap_eff, 0);
    assert_eq!(got, frames.len());
    let k = handle.kernel_stats();
    assert_eq!((k.packets, k.drops), (40, 0), "{k:?}");
    assert_eq!(
        promiscuity(&bed),
        0,
        "undone by a thread without capabilities"
    );
}

fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// Datagrams waiting on `s` (until 300 ms pass without one; at most 10 s).
fn drain(s: &UdpSocket) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) && s.recv(&mut buf).is_ok() {
        n += 1;
    }
    n
}

/// Sends `n` datagrams to port 7001 from `s` (bound in the generator
/// namespace, so that a thread without the right to enter it can send).
fn send(s: &UdpSocket, n: usize) {
    for _ in 0..n {
        s.send_to(b"verdict?", addr(CAP_IP4, 7001)).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Packets waiting for a verdict in `queue`: the third column of
/// `/proc/net/netfilter/nfnetlink_queue` of the capture namespace (`f`,
/// opened there).
fn waiting(f: &mut std::fs::File, queue: u16) -> u64 {
    use std::io::{Read, Seek};
    let mut text = String::new();
    f.rewind().unwrap();
    f.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first()?.parse::<u16>().ok()? == queue).then(|| f.get(2)?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("queue {queue} not in {text}"))
}

/// Reads `n` packets from `src` (10 s at most) and accepts each; an idle
/// poll after them sends the accepts held back.
fn accept_n(src: &mut dyn PacketSource, n: usize) {
    let t = Instant::now();
    let mut got = 0;
    while got < n {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{got} of {n} packets"
        );
        let index = match src.next_event().unwrap() {
            SourceEvent::Packet(p) => p.index,
            SourceEvent::Timeout { .. } => continue,
            SourceEvent::End => panic!("ended"),
        };
        src.set_verdict(index, Verdict::Accept).unwrap();
        got += 1;
    }
    // one more poll: the batch verdict goes out, the kernel's answer comes in
    for _ in 0..3 {
        if let SourceEvent::End = src.next_event().unwrap() {
            break;
        }
    }
}

#[test]
fn nfqueue_verdicts_need_cap_net_admin() {
    let test = "nfqueue_verdicts_need_cap_net_admin";
    if let Some(why) = testing::nfqueue_skip_reason() {
        eprintln!("SKIP {test}: {why}");
        return;
    }
    collect_logs();
    let bed = VethBed::new("prvq").unwrap();
    bed.add_ipv4().unwrap();
    bed.cap_exec(
        "iptables",
        &[
            "-A",
            "INPUT",
            "-p",
            "udp",
            "-j",
            "NFQUEUE",
            "--queue-num",
            "21",
            "--queue-bypass",
        ],
    )
    .unwrap();
    let r = testing::in_namespace(&bed.cap_ns, || {
        let s = UdpSocket::bind(addr(CAP_IP4, 7001)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s
    })
    .unwrap();
    let mut group = testing::in_namespace(&bed.cap_ns, || {
        nfqueue::open(21, 1, &NfqueueConfig::default(), CaptureLimits::default())
    })
    .unwrap()
    .unwrap();
    assert_eq!(nfqueue::KEEP_AFTER_SETUP, &[Keep::NetAdmin]);
    let tx = testing::in_namespace(&bed.gen_ns, || UdpSocket::bind(addr(GEN_IP4, 45000)))
        .unwrap()
        .unwrap();
    let mut proc_file = testing::in_namespace(&bed.cap_ns, || {
        std::fs::File::open("/proc/thread-self/net/netfilter/nfnetlink_queue")
    })
    .unwrap()
    .unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let src = &mut group.sources[0];
            // 1. without CAP_NET_ADMIN (still permitted, not effective)
            caps::drop(None, CapSet::Effective, Capability::CAP_NET_ADMIN).unwrap();
            let st = ProcStatus::of_this_thread().unwrap();
            assert_eq!(st.cap_eff & Keep::NetAdmin.mask(), 0, "{st:?}");
            send(&tx, 5);
            accept_n(src, 5);
            assert_eq!(drain(&r), 0, "verdicts refused: nothing delivered");
            assert_eq!(
                waiting(&mut proc_file, 21),
                5,
                "the 5 packets still wait for a verdict"
            );
            let refused = LOGGED
                .lock()
                .unwrap()
                .iter()
                .filter(|l| {
                    l.contains("nfqueue:21: the kernel refused a message")
                        && l.contains("Operation not permitted")
                })
                .count();
            assert!(
                refused >= 1,
                "no EPERM logged: {:?}",
                LOGGED.lock().unwrap()
            );
            // 2. with CAP_NET_ADMIN again: the next batch verdict (up to the
            // newest id) accepts the 5 waiting ones too
            caps::raise(None, CapSet::Effective, Capability::CAP_NET_ADMIN).unwrap();
            send(&tx, 1);
            accept_n(src, 1);
            assert_eq!(drain(&r), 6, "every datagram delivered once allowed");
            assert_eq!(waiting(&mut proc_file, 21), 0);
            // 3. only CAP_NET_ADMIN left, in every set: verdicts still work
            let st = drop_thread_caps(&[Capability::CAP_NET_ADMIN]);
            assert_eq!(st.cap_eff, 0x1000);
            send(&tx, 4);
            accept_n(src, 4);
            assert_eq!(drain(&r), 4);
            // the end (queue length 0, fail-open) is a message too
            group.handle.stop();
            let t = Instant::now();
            while src.next_event().unwrap() != SourceEvent::End {
                assert!(t.elapsed() < Duration::from_secs(10), "no end");
            }
        })
        .join()
        .unwrap();
    });
    let k = group.handle.stats();
    assert_eq!(k.accepted, 10, "{k:?}");
}

#[test]
fn landlock_confines_writes_to_the_write_directories() {
    let test = "landlock_confines_writes_to_the_write_directories";
    let tmp = tempfile::tempdir().unwrap();
    let allowed = tmp.path().join("out");
    let other = tmp.path().join("elsewhere");
    std::fs::create_dir(&allowed).unwrap();
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("input"), b"read me").unwrap();
    let before = std::fs::File::create(other.join("opened-before")).unwrap();
    // Landlock binds the thread that asks (and the threads it starts)
    let (status, results) = std::thread::scope(|s| {
        s.spawn(|| {
            let status =
                libpcap_live::privs::confine_writes(std::slice::from_ref(&allowed)).unwrap();
            let mut before = before;
            let results = [
                std::fs::write(allowed.join("report.txt"), b"ok").is_ok(),
                std::fs::rename(allowed.join("report.txt"), allowed.join("renamed.txt")).is_ok(),
                std::fs::write(other.join("new"), b"no").is_ok(),
                std::fs::remove_file(other.join("input")).is_ok(),
                std::fs::read(other.join("input")).is_ok(),
                before.write_all(b"still").is_ok(),
            ];
            (status, results)
        })
        .join()
        .unwrap()
    });
    if status == LandlockStatus::NotSupported {
        eprintln!("SKIP {test}: this kernel has no Landlock");
        assert_eq!(results, [true; 6]);
        return;
    }
    assert_eq!(
        results,
        [true, true, false, false, true, true],
        "write+rename inside, write and remove outside, read outside, write to a file opened before"
    );
    assert!(allowed.join("renamed.txt").exists());
    assert!(!other.join("new").exists());
    // this test's own thread was not confined
    std::fs::write(other.join("new"), b"free").unwrap();
}
