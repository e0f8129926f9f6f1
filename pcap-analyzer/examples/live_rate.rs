//! Measures live capture: builds a private veth bed (root needed), runs
//! `pcap-analyzer -i` in the capture namespace, sends N 64-byte UDP frames
//! (64 flows, half to port 53 and half to port 5353) flat out from the
//! other namespace, stops it with SIGINT and prints the send rate, the
//! packets analysed and the kernel's counters. With `--filter EXPR` the
//! capture runs with that filter (attached in the kernel): e.g. `--filter
//! 'udp port 53'` keeps half of the frames out of the rings.
//!
//! `cargo run --release -p pcap-analyzer --example live_rate -- \
//!   target/release/pcap-analyzer 1000000 1 2 [--filter EXPR]`

#![allow(clippy::print_stdout)] // a measuring tool prints its results

use libpcap_analyzer::build;
use libpcap_live::testing::{self, VethBed};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut all: Vec<String> = std::env::args().skip(1).collect();
    let filter = match all.iter().position(|a| a == "--filter") {
        Some(i) if i + 1 < all.len() => {
            let f = all.remove(i + 1);
            all.remove(i);
            Some(f)
        }
        _ => None,
    };
    let mut args = all.into_iter();
    let bin = args
        .next()
        .unwrap_or_else(|| "target/release/pcap-analyzer".into());
    let n: u64 = args.next().map_or(Ok(1_000_000), |v| v.parse())?;
    let jobs: Vec<String> = args.collect();
    let jobs = if jobs.is_empty() {
        vec!["1".to_string(), "2".to_string()]
    } else {
        jobs
    };
    if let Some(why) = testing::skip_reason() {
        return Err(why.into());
    }
    let frames: Vec<Vec<u8>> = (0..64u16)
        .map(|i| {
            build::eth_udp4(
                testing::GEN_MAC,
                testing::NOBODY_MAC,
                None,
                [10, 9, 0, 1],
                [10, 9, 0, 2],
                1000 + i,
                if i % 2 == 0 { 53 } else { 5353 },
                &[0; 18],
            )
        })
        .collect();
    for j in jobs {
        let bed = VethBed::new("rate")?;
        let tmp = std::env::temp_dir().join(format!("pal-rate-{}.json", std::process::id()));
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &bed.cap_ns,
                &bin,
                "-i",
                &bed.cap_if,
                "-j",
                &j,
            ])
            .args(filter.iter().flat_map(|f| ["-f", f.as_str()]))
            .args(["-p", "connections", "--stats-json"])
            .arg(&tmp)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let err = child.stderr.take().ok_or("no stderr")?;
        let mut lines = BufReader::new(err).lines();
        for l in lines.by_ref() {
            if l?.contains("capturing on") {
                break;
            }
        }
        let tx = bed.sender()?;
        let t = Instant::now();
        for k in 0..n {
            let f = frames.get((k % 64) as usize).ok_or("frame")?;
            // a full device queue: retry the same frame
            while tx.send(f).is_err() {}
        }
        let secs = t.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(500));
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()?;
        child.wait()?;
        let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&tmp)?)?;
        let _ = std::fs::remove_file(&tmp);
        println!(
            "-j {j}{}: sent {n} frames in {secs:.2} s ({:.0} frames/s); analysed {}; kernel: {} received, {} dropped",
            filter
                .as_deref()
                .map(|f| format!(" -f '{f}'"))
                .unwrap_or_default(),
            n as f64 / secs,
            s["packets"],
            s["live"]["kernel_packets"],
            s["live"]["kernel_drops"]
        );
    }
    Ok(())
}
