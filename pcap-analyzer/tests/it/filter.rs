//! `-f/--filter`: the packets analysed are exactly those tcpdump keeps with
//! the same expression (files, several files, standard input), the kernel
//! filter on `-i` keeps the others out of the ring, NFQUEUE accepts them
//! unanalysed; a bad expression or a missing libpcap is a clear error
//! before any output. Without tcpdump, libpcap, root or iptables, the tests
//! that need them print a SKIP line.

use crate::live::{Capture, Key, Row, bed, now_ms, rows, stats_of, traffic};
use crate::nfqueue::{self, drain, inline, queue_rule, receiver, send_flows};
use crate::{bin, fixture, stderr, stdout};
use libpcap_live::testing::output_with_deadline;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Why the tests comparing with tcpdump cannot run here, if they cannot.
fn tcpdump_skip() -> Option<String> {
    if libpcap_live::libpcap::Libpcap::load().is_err() {
        return Some("libpcap is not installed".into());
    }
    match Command::new("tcpdump").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("tcpdump is not installed".into()),
    }
}

/// Runs the binary with `args` (120 s at most).
fn pal(args: &[&str]) -> Output {
    output_with_deadline(bin().args(args), Duration::from_secs(120)).unwrap()
}

/// `tcpdump -r input -w out EXPR`.
fn tcpdump_filter(input: &Path, expr: &str, out: &Path) {
    let o = output_with_deadline(
        Command::new("tcpdump")
            .arg("-r")
            .arg(input)
            .arg("-w")
            .arg(out)
            .arg(expr),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(
        o.status.success(),
        "tcpdump: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Packets in a capture file.
fn count(file: &Path) -> u64 {
    let mut r =
        libpcap_tools::CaptureReader::open(file, &libpcap_tools::ReaderConfig::default()).unwrap();
    let mut n = 0;
    while r.next_packet().unwrap().is_some() {
        n += 1;
    }
    n
}

const EXPRESSIONS: [&str; 5] = [
    "udp",
    "tcp and port 80",
    "not udp port 53",
    "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0",
    "greater 100 or icmp",
];

#[test]
fn a_filtered_file_reports_what_tcpdump_keeps() {
    if let Some(why) = tcpdump_skip() {
        eprintln!("SKIP a_filtered_file_reports_what_tcpdump_keeps: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["sample.pcap", "sample.pcapng"] {
        let input = fixture(name);
        let total = stats_packets(&pal_stats(&dir, &["-p", "connections"], &[&input]));
        for expr in EXPRESSIONS {
            let kept = dir.path().join("kept.pcap");
            tcpdump_filter(&input, expr, &kept);
            let want = pal(&["-q", "-p", "connections", kept.to_str().unwrap()]);
            let got = pal(&[
                "-q",
                "-p",
                "connections",
                "-f",
                expr,
                input.to_str().unwrap(),
            ]);
            assert_eq!(got.status.code(), Some(0), "{expr}: {}", stderr(&got));
            assert_eq!(stdout(&got), stdout(&want), "{name}: '{expr}'");
            // the counters say what was kept and what was not
            let s = pal_stats(&dir, &["-p", "connections", "-f", expr], &[&input]);
            let matched = count(&kept);
            assert_eq!(s["packets"], matched, "{name} '{expr}': {s}");
            assert_eq!(s["filter"]["matched"], matched, "{s}");
            assert_eq!(s["filter"]["rejected"], total - matched, "{s}");
            assert_eq!(s["filter"]["expression"], expr);
        }
    }
}

/// Runs with `--stats-json` and returns the summary.
fn pal_stats(dir: &tempfile::TempDir, args: &[&str], inputs: &[&Path]) -> serde_json::Value {
    let stats = dir.path().join("stats.json");
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend([
        "-q".into(),
        "--stats-json".into(),
        stats.display().to_string(),
    ]);
    all.extend(inputs.iter().map(|p| p.display().to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let o = pal(&refs);
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
    stats_of(&stats)
}

fn stats_packets(v: &serde_json::Value) -> u64 {
    v["packets"].as_u64().unwrap()
}

#[test]
fn several_files_and_standard_input_are_filtered_the_same_way() {
    if let Some(why) = tcpdump_skip() {
        eprintln!("SKIP several_files_and_standard_input_are_filtered_the_same_way: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (fixture("sample.pcap"), fixture("sample.pcapng"));
    let expr = "udp or tcp port 443";
    let (ka, kb) = (dir.path().join("a.pcap"), dir.path().join("b.pcap"));
    tcpdump_filter(&a, expr, &ka);
    tcpdump_filter(&b, expr, &kb);
    let want = pal(&[
        "-q",
        "-p",
        "connections",
        ka.to_str().unwrap(),
        kb.to_str().unwrap(),
    ]);
    let got = pal(&[
        "-q",
        "-p",
        "connections",
        "-f",
        expr,
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert_eq!(got.status.code(), Some(0), "{}", stderr(&got));
    assert_eq!(stdout(&got), stdout(&want));
    // standard input
    let mut child = bin()
        .args(["-q", "-p", "connections", "-f", expr, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, &std::fs::read(&a).unwrap()).unwrap();
    drop(stdin);
    let got = libpcap_live::testing::wait_with_deadline(child, Duration::from_secs(60)).unwrap();
    let want = pal(&["-q", "-p", "connections", ka.to_str().unwrap()]);
    assert_eq!(got.status.code(), Some(0), "{}", stderr(&got));
    assert_eq!(stdout(&got), stdout(&want));
}

#[test]
fn a_bad_expression_is_a_usage_error_before_any_output() {
    if libpcap_live::libpcap::Libpcap::load().is_err() {
        eprintln!("SKIP a_bad_expression_is_a_usage_error_before_any_output: no libpcap");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let input = fixture("sample.pcap");
    for expr in ["tcp port", "host 999.1.1.1", "udp and and", "portrange 9-"] {
        let o = pal(&[
            "-f",
            expr,
            "-o",
            out.to_str().unwrap(),
            input.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "'{expr}': {}", stderr(&o));
        assert!(stderr(&o).contains("--filter"), "{}", stderr(&o));
        assert!(stdout(&o).is_empty());
        assert!(!out.exists(), "'{expr}': the output directory was created");
    }
    // libpcap's own words
    let o = pal(&["-f", "tcp port", input.to_str().unwrap()]);
    assert!(stderr(&o).contains("syntax error"), "{}", stderr(&o));
}

#[test]
fn without_libpcap_a_filter_is_an_error_naming_the_package_and_the_rest_works() {
    let input = fixture("sample.pcap");
    let run = |args: &[&str]| {
        output_with_deadline(
            bin()
                .env("PAL_LIBPCAP", "/nonexistent/libpcap.so.0.8")
                .args(args),
            Duration::from_secs(60),
        )
        .unwrap()
    };
    let o = run(&["-f", "udp", input.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("libpcap0.8"), "{}", stderr(&o));
    let o = run(&["-q", input.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("source ip;"));
}

/// The rows of `want` whose destination port is `port`.
fn only_port(want: &BTreeMap<Key, Row>, port: u16) -> BTreeMap<Key, Row> {
    want.iter()
        .filter(|(k, _)| k.3 == port)
        .map(|(k, r)| (k.clone(), r.clone()))
        .collect()
}

#[test]
fn a_live_kernel_filter_keeps_other_frames_out_of_the_ring() {
    if libpcap_live::libpcap::Libpcap::load().is_err() {
        eprintln!("SKIP a_live_kernel_filter_keeps_other_frames_out_of_the_ring: no libpcap");
        return;
    }
    let (frames, want) = traffic();
    let want = only_port(&want, 5353);
    let matching: u64 = want.values().map(|r| r.packets).sum();
    assert!(matching > 0 && matching < frames.len() as u64);
    for jobs in ["1", "2"] {
        let test = format!("a_live_kernel_filter_keeps_other_frames_out_of_the_ring (-j {jobs})");
        let Some(bed) = bed(&test) else {
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let stats: PathBuf = tmp.path().join("stats.json");
        let t0 = now_ms();
        let cap = Capture::spawn(
            &bed,
            &[
                "-i",
                &bed.cap_if,
                "-j",
                jobs,
                "-f",
                "udp port 5353",
                "--stats-json",
                stats.to_str().unwrap(),
            ],
            "capturing on",
        );
        let tx = bed.sender().unwrap();
        for f in &frames {
            tx.send(f).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        cap.interrupt();
        let (o, err) = cap.wait(Duration::from_secs(20));
        let t1 = now_ms();
        assert_eq!(o.status.code(), Some(0), "-j {jobs}: {err}");
        assert!(err.contains("filter 'udp port 5353'"), "{err}");
        let report = String::from_utf8(o.stdout).unwrap();
        assert_eq!(rows(&report, t0, t1), want, "-j {jobs}:\n{report}");
        let s = stats_of(&stats);
        // the kernel handed only the matching frames to the rings
        assert_eq!(s["live"]["kernel_packets"], matching, "-j {jobs}: {s}");
        assert_eq!(s["live"]["kernel_drops"], 0, "{s}");
        assert_eq!(s["packets"], matching, "{s}");
        assert_eq!(s["filter"]["in_kernel"], true, "{s}");
    }
}

#[test]
fn nfqueue_packets_that_do_not_match_are_accepted_unanalysed_and_counted() {
    let test = "nfqueue_packets_that_do_not_match_are_accepted_unanalysed_and_counted";
    if libpcap_live::libpcap::Libpcap::load().is_err() {
        eprintln!("SKIP {test}: no libpcap");
        return;
    }
    let Some(bed) = nfqueue::bed(test) else {
        return;
    };
    queue_rule(&bed, "5");
    let (r1, r2) = (receiver(&bed, 7101), receiver(&bed, 7102));
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("stats.json");
    let t0 = now_ms();
    let cap = inline(
        &bed,
        &[
            "--nfqueue",
            "5",
            "-f",
            "udp dst port 7101",
            "--stats-json",
            stats.to_str().unwrap(),
        ],
    );
    let sent = send_flows(&bed, &[(41001, 7101, 12, 80), (41002, 7102, 9, 300)]);
    assert_eq!(drain(&r1), 12);
    assert_eq!(drain(&r2), 9, "the others were accepted too");
    cap.interrupt();
    let (out, err) = cap.wait(Duration::from_secs(20));
    let t1 = now_ms();
    assert_eq!(out.status.code(), Some(0), "{err}");
    let report = String::from_utf8(out.stdout).unwrap();
    assert_eq!(rows(&report, t0, t1), only_port(&sent, 7101), "{report}");
    let s = stats_of(&stats);
    assert_eq!(s["packets"], 12, "{s}");
    assert_eq!(s["filter"]["matched"], 12, "{s}");
    assert_eq!(s["filter"]["rejected"], 9, "{s}");
    assert_eq!(s["nfqueue"]["accepted"], 21, "{s}");
}
