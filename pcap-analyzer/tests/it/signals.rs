//! The capture session under the tool's signals: SIGUSR1 pauses and
//! resumes (live frames read while paused are discarded and counted, files
//! are not read), SIGUSR2 writes the current report, SIGINT stops (a file
//! run stopped early is partial, exit code 3). Each test has deadlines;
//! the live ones print a SKIP line without root.

use crate::live::{Capture, Key, Row, bed, gen_udp, ip, now_ms, rows, stats_of};
use crate::{bin, fixture, stderr, stdout};
use libpcap_live::testing::wait_with_deadline;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

/// `n` UDP frames of one flow from `sport`, and the row they give.
fn batch(sport: u16, n: usize) -> (Vec<Vec<u8>>, Key, Row) {
    let (s, d) = ([10, 8, 0, 1], [10, 8, 0, 2]);
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| gen_udp(None, s, d, sport, 6000, &vec![0x33; 20 + i]))
        .collect();
    let row = Row {
        proto: "[UDP]".into(),
        bytes: frames.iter().map(|f| f.len() as u64).sum(),
        packets: n as u64,
    };
    (frames, (ip(s), sport, ip(d), 6000), row)
}

/// Waits until `f` gives `Some` (20 s at most), calling it every 100 ms.
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigusr1_pauses_a_live_capture_discarding_exactly_what_was_sent_meanwhile() {
    let test = "sigusr1_pauses_a_live_capture_discarding_exactly_what_was_sent_meanwhile";
    let Some(bed) = bed(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let stats = tmp.path().join("stats.json");
    let conf = tmp.path().join("pal.conf");
    // no periodic rewrite: the reports come from SIGUSR2 and the end only
    std::fs::write(&conf, "[plugin.connections]\ninterval = 0\n").unwrap();
    let t0 = now_ms();
    let mut cap = Capture::spawn(
        &bed,
        &[
            "-i",
            &bed.cap_if,
            "-c",
            conf.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--stats-json",
            stats.to_str().unwrap(),
        ],
        "capturing on",
    );
    let report = out.join("connections.txt");
    let tx = bed.sender().unwrap();
    let (a, ka, ra) = batch(42001, 10);
    let (b, _, _) = batch(42002, 7);
    let (c, kc, rc) = batch(42003, 5);
    for f in &a {
        tx.send(f).unwrap();
    }
    // SIGUSR2 until the report shows every frame of A: A is analysed
    let want_a: BTreeMap<Key, Row> = [(ka.clone(), ra.clone())].into();
    poll("a report with batch A", || {
        cap.signal("USR2");
        std::thread::sleep(Duration::from_millis(100));
        let text = std::fs::read_to_string(&report).ok()?;
        (rows(&text, t0, now_ms()) == want_a).then_some(())
    });
    cap.signal("USR1");
    cap.wait_line("paused (SIGUSR1)", Duration::from_secs(20));
    for f in &b {
        tx.send(f).unwrap();
    }
    // longer than the ring's block timeout and the poll interval
    std::thread::sleep(Duration::from_millis(500));
    cap.signal("USR1");
    cap.wait_line("resumed (SIGUSR1)", Duration::from_secs(20));
    for f in &c {
        tx.send(f).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    cap.interrupt();
    let (o, err) = cap.wait(Duration::from_secs(20));
    let t1 = now_ms();
    assert_eq!(o.status.code(), Some(0), "{err}");
    let text = std::fs::read_to_string(&report).unwrap();
    let want: BTreeMap<Key, Row> = [(ka, ra), (kc, rc)].into();
    assert_eq!(
        rows(&text, t0, t1),
        want,
        "B (sent while paused) is not in:\n{text}"
    );
    let s = stats_of(&stats);
    assert_eq!(s["discarded_while_paused"], b.len(), "{s}");
    assert_eq!(s["packets"], a.len() + c.len(), "{s}");
    assert_eq!(
        s["live"]["kernel_packets"],
        a.len() + b.len() + c.len(),
        "{s}"
    );
    assert_eq!(s["live"]["kernel_drops"], 0, "{s}");
    assert!(s["reports_written"].as_u64().unwrap() >= 1, "{s}");
    assert!(err.contains("7 live packets read and discarded"), "{err}");
}

/// A stderr reader of a child: its lines on a channel.
fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let err = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(rx: &std::sync::mpsc::Receiver<String>, what: &str) {
    let t = Instant::now();
    let mut seen = Vec::new();
    while t.elapsed() < Duration::from_secs(20) {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            if l.contains(what) {
                return;
            }
            seen.push(l);
        }
    }
    panic!("no line '{what}': {seen:?}");
}

fn kill(pid: u32, sig: &str) {
    let o = crate::output_within(
        std::process::Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]),
        Duration::from_secs(10),
    );
    assert!(o.status.success());
}

#[test]
fn a_paused_file_run_reads_nothing_until_resumed_and_sigusr2_writes_what_it_has() {
    let input = std::fs::read(fixture("sample.pcap")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let full = bin()
        .args([
            "-q",
            "-p",
            "connections",
            &fixture("sample.pcap").display().to_string(),
        ])
        .output()
        .unwrap();
    let mut child = bin()
        .args(["-p", "connections", "-o", out.to_str().unwrap(), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let rx = lines_of(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    // the header and a first part; the reader waits for more
    let cut = input.len() / 2;
    stdin.write_all(&input[..cut]).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    kill(pid, "USR1");
    wait_for(&rx, "paused (SIGUSR1)");
    stdin.write_all(&input[cut..]).unwrap();
    drop(stdin);
    // the whole input is there, but a paused file is not read
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended while paused"
    );
    let report = out.join("connections.txt");
    kill(pid, "USR2");
    let partial = poll("the report written on SIGUSR2", || {
        std::fs::read_to_string(&report).ok()
    });
    assert!(partial.starts_with("source ip;"));
    kill(pid, "USR1");
    let o = wait_with_deadline(child, Duration::from_secs(60)).unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let last = std::fs::read_to_string(&report).unwrap();
    assert_eq!(last, stdout(&full), "the resumed run read everything");
    assert!(
        partial.lines().count() < last.lines().count(),
        "the report written while paused held only the first part"
    );
}

#[test]
fn sigint_stops_a_file_run_early_with_its_results_and_exit_code_3() {
    let input = std::fs::read(fixture("sample.pcap")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let stats = tmp.path().join("stats.json");
    let mut child = bin()
        .args([
            "-p",
            "connections",
            "--stats-json",
            stats.to_str().unwrap(),
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&input[..input.len() / 2]).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    kill(child.id(), "INT");
    // the reader may be blocked on the pipe: the next bytes wake it (the
    // run may be gone already)
    let _ = stdin.write_all(&input[input.len() / 2..]);
    drop(stdin);
    let o = wait_with_deadline(child, Duration::from_secs(60)).unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("stopped by a signal"), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("source ip;"),
        "the report is written"
    );
    let s = stats_of(Path::new(&stats));
    // what came before the signal was analysed
    assert!(s["packets"].as_u64().unwrap() > 0, "{s}");
}
