//! Measures inline mode: builds a private veth bed with IPv4 addresses
//! (root, `ip` and `iptables` needed), queues the capture namespace's
//! incoming UDP to NFQUEUE (`--queue-balance` over the workers' queues,
//! `--queue-bypass`), runs `pcap-analyzer --nfqueue` there, sends N UDP
//! datagrams (64 flows) flat out from the other namespace through real
//! sockets, and prints the send rate, what reached the receiving socket,
//! the packets analysed, the verdicts and the kernel's queue drops.
//!
//! `cargo run --release -p pcap-analyzer --example nfqueue_rate -- \
//!   target/release/pcap-analyzer 200000 1 2`

#![allow(clippy::print_stdout)] // a measuring tool prints its results

use libpcap_live::testing::{self, CAP_IP4, GEN_IP4, VethBed};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bin = args
        .next()
        .unwrap_or_else(|| "target/release/pcap-analyzer".into());
    let n: u64 = args.next().map_or(Ok(200_000), |v| v.parse())?;
    let jobs: Vec<usize> = args.map(|j| j.parse()).collect::<Result<_, _>>()?;
    let jobs = if jobs.is_empty() { vec![1, 2] } else { jobs };
    if let Some(why) = testing::nfqueue_skip_reason() {
        return Err(why.into());
    }
    for j in jobs {
        let bed = VethBed::new("nfqr")?;
        bed.add_ipv4()?;
        // one queue: --queue-num (iptables refuses a balance range of one)
        let queues = if j > 1 {
            vec!["--queue-balance".to_string(), format!("10:{}", 10 + j - 1)]
        } else {
            vec!["--queue-num".to_string(), "10".to_string()]
        };
        let mut rule = vec!["-A", "INPUT", "-p", "udp", "-j", "NFQUEUE"];
        rule.extend(queues.iter().map(String::as_str));
        rule.push("--queue-bypass");
        bed.cap_exec("iptables", &rule)?;
        // the receiver counts what got through
        let rx = testing::in_namespace(&bed.cap_ns, || {
            UdpSocket::bind(SocketAddr::from((CAP_IP4, 9000)))
        })??;
        rx.set_read_timeout(Some(Duration::from_millis(200)))?;
        let received = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let counter = {
            let (received, done) = (received.clone(), done.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !done.load(Ordering::Relaxed) {
                    if rx.recv(&mut buf).is_ok() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        let tmp = std::env::temp_dir().join(format!("pal-nfq-rate-{}.json", std::process::id()));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &bed.cap_ns, &bin, "--nfqueue", "10"])
            .args(["-j", &j.to_string(), "-p", "connections", "--stats-json"])
            .arg(&tmp)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let err = child.stderr.take().ok_or("no stderr")?;
        let mut lines = BufReader::new(err).lines();
        for l in lines.by_ref() {
            if l?.contains("inline on NFQUEUE") {
                break;
            }
        }
        let secs = testing::in_namespace(&bed.gen_ns, || -> std::io::Result<f64> {
            let socks: Vec<UdpSocket> = (0..64u16)
                .map(|i| UdpSocket::bind(SocketAddr::from((GEN_IP4, 20000 + i))))
                .collect::<Result<_, _>>()?;
            let to = SocketAddr::from((CAP_IP4, 9000));
            let payload = [0x42u8; 18];
            let t = Instant::now();
            for k in 0..n {
                if let Some(s) = socks.get((k % 64) as usize) {
                    // a full socket buffer: retry
                    while s.send_to(&payload, to).is_err() {}
                }
            }
            Ok(t.elapsed().as_secs_f64())
        })??;
        std::thread::sleep(Duration::from_millis(500));
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()?;
        child.wait()?;
        done.store(true, Ordering::Relaxed);
        let _ = counter.join();
        let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&tmp)?)?;
        let _ = std::fs::remove_file(&tmp);
        println!(
            "-j {j}: sent {n} datagrams in {secs:.2} s ({:.0}/s); received {}; analysed {}; \
             verdicts {} accepted {} dropped; kernel: {} queue-full, {} socket-full",
            n as f64 / secs,
            received.load(Ordering::Relaxed),
            s["packets"],
            s["nfqueue"]["accepted"],
            s["nfqueue"]["dropped_by_verdict"],
            s["nfqueue"]["kernel_queue_dropped"],
            s["nfqueue"]["kernel_user_dropped"],
        );
    }
    Ok(())
}
