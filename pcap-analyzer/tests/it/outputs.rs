//! Inputs are never overwritten, result sets are complete or absent, cut
//! compressed input is partial, and the configuration is checked (issue
//! 13).

use crate::{bin, corpus, fixture, output_within, run, stderr};
use libpcap_analyzer::build;
use libpcap_tools::{LinkType, OwnedPacket, PcapWriterOptions, Timestamp};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Hidden names of the forms our temporaries and spool parts take.
fn temporaries(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with('.') && (n.contains(".tmp") || n.ends_with(".part")))
        .collect()
}

/// `sha256sum FILE` (the system's), `None` without the tool.
fn sha256sum(p: &Path) -> Option<String> {
    let o = std::process::Command::new("sha256sum")
        .arg(p)
        .output()
        .ok()?;
    o.status.success().then(|| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    })
}

/// The manifest of `dir`, if any, after checking that every file it lists
/// is there with the listed size (and sha256 when `digests`).
fn check_manifest(dir: &Path, digests: bool) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join("run.json")).ok()?;
    let m: Value = serde_json::from_str(&text).expect("run.json is whole JSON");
    assert_eq!(m["complete"], true);
    for f in m["files"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let p = dir.join(name);
        let meta =
            std::fs::metadata(&p).unwrap_or_else(|e| panic!("run.json lists {name}, missing: {e}"));
        assert_eq!(meta.len(), f["size"].as_u64().unwrap(), "{name}: size");
        if digests && let Some(sum) = sha256sum(&p) {
            assert_eq!(sum, f["sha256"].as_str().unwrap(), "{name}: sha256");
        }
    }
    Some(m)
}

#[test]
fn outputs_that_are_inputs_are_refused_with_exit_2_and_the_input_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let input = d.join("in.pcap");
    std::fs::copy(fixture("sample.pcap"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let out = d.join("out");
    std::fs::create_dir(&out).unwrap();
    let conf = d.join("pal.conf");
    std::fs::write(&conf, "[log]\nfile = \"run.log\"\n").unwrap();
    let conf_before = std::fs::read(&conf).unwrap();
    let i = input.to_str().unwrap();
    let (o, c) = (out.to_str().unwrap(), conf.to_str().unwrap());
    // a hard link and a symlink to the input where outputs go
    std::fs::hard_link(&input, out.join("connections.txt")).unwrap();
    std::os::unix::fs::symlink(&input, d.join("stats.json")).unwrap();
    let link_dir = d.join("logdir");
    std::fs::create_dir(&link_dir).unwrap();
    std::fs::hard_link(&input, link_dir.join("run.log")).unwrap();
    let stats = d.join("stats.json");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-o", o, i], "connections.txt' is the input"),
        (
            vec!["--stats-json", stats.to_str().unwrap(), i],
            "a symlink to it",
        ),
        (
            vec!["-c", c, "-o", link_dir.to_str().unwrap(), i],
            "the log file",
        ),
        (
            vec!["--stats-json", c, "-c", c, i],
            "is the configuration file",
        ),
        (vec!["--stats-json", i, i], "the same file"),
    ];
    for (args, says) in cases {
        let r = run(&args);
        let err = stderr(&r);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(err.contains("would destroy it"), "{args:?}: {err}");
        assert_eq!(std::fs::read(&input).unwrap(), before, "{args:?}");
        assert_eq!(std::fs::read(&conf).unwrap(), conf_before, "{args:?}");
    }
    // nothing was written anywhere
    assert_eq!(names(&out), ["connections.txt"]);
    assert_eq!(names(&link_dir), ["run.log"]);
    // two outputs that are one file
    let fresh = d.join("fresh");
    let r = run([
        "-o",
        fresh.to_str().unwrap(),
        "--stats-json",
        fresh.join("flows.jsonl").to_str().unwrap(),
        i,
    ]);
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    assert!(stderr(&r).contains("are the same file"), "{}", stderr(&r));
    assert!(!fresh.exists(), "the output directory was created");
}

#[test]
fn names_from_the_configuration_stay_inside_the_output_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("pal.conf");
    for (toml, says) in [
        (
            "[log]\nfile = \"../escape.log\"",
            "[log] file = \"../escape.log\"",
        ),
        (
            "[log]\nfile = \"/tmp/abs.log\"",
            "[log] file = \"/tmp/abs.log\"",
        ),
        (
            "[plugin.connections]\nfile = \"../report\"",
            "[plugin.connections] file = \"../report\"",
        ),
        ("[log]\nfile = \"..\"", "[log] file = \"..\""),
    ] {
        std::fs::write(&conf, toml).unwrap();
        let out = tmp.path().join("out");
        let r = run([
            "-q",
            "-c",
            conf.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            fixture("sample.pcap").to_str().unwrap(),
        ]);
        let err = stderr(&r);
        assert_eq!(r.status.code(), Some(1), "{toml}: {err}");
        assert!(err.contains(says), "{toml}: {err}");
        assert!(!out.exists(), "{toml}");
    }
    assert!(!tmp.path().join("escape.log").exists());
}

#[test]
fn the_manifest_lists_the_set_and_the_next_run_tidies_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let input = fixture("sample.pcap");
    let i = input.to_str().unwrap();
    let o = out.to_str().unwrap();
    let stats = out.join("stats.json");
    let r = run(["-q", "-o", o, "--stats-json", stats.to_str().unwrap(), i]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let m = check_manifest(&out, true).expect("a manifest");
    let listed: Vec<&str> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [
            "basic-stats.json",
            "community-id.jsonl",
            "connections.txt",
            "dns.jsonl",
            "flows.jsonl",
            "stats.json",
            "tls.jsonl"
        ]
    );
    assert_eq!(m["log"], "pcap-analyzer.log");
    assert_eq!(m["input_complete"], true);
    assert_eq!(m["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(m["inputs"][0]["path"], i);
    assert_eq!(
        m["inputs"][0]["size"].as_u64(),
        Some(std::fs::metadata(&input).unwrap().len())
    );
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(m["summary"]["packets"], summary["packets"]);
    assert!(m["started"].as_str().unwrap() <= m["ended"].as_str().unwrap());

    // leftovers of a killed run (a dead process id: above pid_max), a user's
    // files, and a stray file named like a plugin's output
    for n in [
        ".flows.jsonl.tmp4194304-7",
        ".dns.4194304.2.part",
        ".mine",
        "notes.txt",
    ] {
        std::fs::write(out.join(n), b"x").unwrap();
    }
    std::fs::write(out.join("connections.csv"), b"old").unwrap();
    // second run with fewer plugins and no --stats-json: the files of the
    // first one it does not write are removed (the manifest named them)
    let r = run(["-q", "-o", o, "-p", "connections,flows", i]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let m = check_manifest(&out, true).expect("a manifest");
    assert_eq!(
        names(&out),
        [
            ".mine",
            "connections.csv",
            "connections.txt",
            "flows.jsonl",
            "notes.txt",
            "pcap-analyzer.log",
            "run.json"
        ]
    );
    assert_eq!(
        m["removed"],
        serde_json::json!([
            "basic-stats.json",
            "community-id.jsonl",
            "dns.jsonl",
            "stats.json",
            "tls.jsonl"
        ])
    );
    assert_eq!(m["stale"], serde_json::json!(["connections.csv"]));
    assert_eq!(
        m["leftovers_removed"],
        serde_json::json!([".dns.4194304.2.part", ".flows.jsonl.tmp4194304-7"])
    );
}

#[test]
fn issue_13_a_gzip_file_cut_at_99_percent_is_analysed_with_exit_3() {
    let Some(c) = corpus() else { return };
    let gz = std::fs::read(c.join("formats/scapy_http_chunk.pcap.gz")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cut = tmp.path().join("cut.pcap.gz");
    std::fs::write(&cut, &gz[..gz.len() * 99 / 100]).unwrap();
    let out = tmp.path().join("out");
    let stats = tmp.path().join("s.json");
    let r = run([
        "-q",
        "-o",
        out.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
        cut.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(3), "{}", stderr(&r));
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert!(s["packets"].as_u64().unwrap() > 50, "{s}");
    let w = s["warnings"][0].as_str().unwrap();
    assert!(w.contains("gzip data ends early"), "{w}");
    let m = check_manifest(&out, false).expect("a manifest");
    assert_eq!(m["input_complete"], false);
}

/// A capture of `flows` TCP and UDP flows of `per_flow` packets each.
fn big_capture(path: &Path, flows: u32, per_flow: u32) {
    let mut packets = Vec::with_capacity((flows * per_flow) as usize);
    let mut t = 0i64;
    for f in 0..flows {
        let c: std::net::IpAddr = [10, (f >> 16) as u8, (f >> 8) as u8, f as u8].into();
        let s: std::net::IpAddr = [192, 168, (f >> 8) as u8, f as u8].into();
        for k in 0..per_flow {
            let seg = if f % 2 == 0 {
                build::tcp(
                    c,
                    s,
                    1024 + (f % 60000) as u16,
                    80,
                    k,
                    0,
                    0x18,
                    b"GET / HTTP/1.0\r\n",
                )
            } else {
                build::udp(c, s, 2000 + (f % 60000) as u16, 5353, &[k as u8; 40])
            };
            let proto = if f % 2 == 0 { 6 } else { 17 };
            let data = build::eth_ip(c, s, proto, &seg);
            t += 1000;
            packets.push(OwnedPacket {
                index: packets.len() as u64,
                interface: 0,
                linktype: LinkType::ETHERNET,
                ts: Some(Timestamp(1_600_000_000_000_000_000 + t)),
                origlen: data.len() as u32,
                data,
            });
        }
    }
    let bytes = libpcap_tools::synth::pcap_bytes(
        &packets,
        LinkType::ETHERNET,
        PcapWriterOptions::default(),
    )
    .unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A small pseudo-random generator (xorshift), seeded from the clock; the
/// seed is printed so that a failure can be replayed (`PAL_KILL_SEED`).
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("PAL_KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        println!("kill test seed: PAL_KILL_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[test]
fn a_run_killed_at_random_moments_never_leaves_a_manifest_beside_an_incomplete_set() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("big.pcap");
    big_capture(&input, 6_000, 4);
    // periodic reports too: files are rewritten during the run
    let conf = tmp.path().join("pal.conf");
    std::fs::write(&conf, "[plugin.connections]\ninterval = 0.1\n").unwrap();
    let out = tmp.path().join("out");
    let args = |stats: &Path| {
        vec![
            "-q".to_string(),
            "-j".to_string(),
            "2".to_string(),
            "-c".to_string(),
            conf.display().to_string(),
            "-o".to_string(),
            out.display().to_string(),
            "--stats-json".to_string(),
            stats.display().to_string(),
            input.display().to_string(),
        ]
    };
    let stats = out.join("stats.json");
    // one whole run: its length sets the range of the kill moments
    let started = Instant::now();
    let r = output_within(bin().args(args(&stats)), Duration::from_secs(60));
    let whole = started.elapsed();
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let reference = check_manifest(&out, true).expect("a manifest");
    println!("a whole run takes {whole:?}");
    let listed = |m: &Value| -> Vec<String> {
        m["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    let mut rng = Rng::new();
    let (mut with_manifest, mut with_leftovers) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(25);
    for round in 0..20 {
        if Instant::now() > deadline {
            println!("stopped after {round} kills: time budget spent");
            break;
        }
        let wait = Duration::from_micros(rng.below(whole.as_micros() as u64 * 11 / 10));
        let mut child = bin()
            .args(args(&stats))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(wait);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // the invariant: a manifest always describes a whole set
        if let Some(m) = check_manifest(&out, false) {
            with_manifest += 1;
            assert_eq!(listed(&m), listed(&reference), "round {round}: another set");
        }
        if !temporaries(&out).is_empty() {
            with_leftovers += 1;
        }
    }
    println!("{with_manifest} kills left a (whole) manifest, {with_leftovers} left temporaries");
    // the next run tidies up and writes the same set
    let left = temporaries(&out);
    let r = output_within(bin().args(args(&stats)), Duration::from_secs(60));
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let m = check_manifest(&out, true).expect("a manifest");
    assert_eq!(temporaries(&out), Vec::<String>::new());
    let removed: Vec<String> = m["leftovers_removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(removed, left);
    assert_eq!(listed(&m), listed(&reference));
    let mut expect: Vec<String> = listed(&m);
    expect.extend(["pcap-analyzer.log".to_string(), "run.json".to_string()]);
    expect.sort();
    assert_eq!(names(&out), expect);
}

/// The bad values tried for each key of conf/pcap-analyzer.conf (TOML
/// literals), and the text the error must hold; keys whose type admits no
/// bad value (booleans) have none.
fn bad_values(section: &str, key: &str) -> Option<Vec<&'static str>> {
    let v: &[&str] = match (section, key) {
        ("reader", "buffer_size") => &["0", "-1", "63", "300000000"],
        ("reader", "max_block_size") => &["0", "63", "5000000000"],
        ("reader", "shared_chunks") => &[],
        ("run", "jobs") => &["-1", "100000"],
        ("run", "worker_nice") => &["-1", "20"],
        ("live", "block_size") => &["0", "1000", "3000", "2147483648"],
        ("live", "block_count") => &["0", "-1"],
        ("live", "frame_size") => &["0", "79", "100"],
        ("live", "block_timeout_ms") => &["-1", "60001"],
        ("live", "poll_timeout_ms") => &["0", "60001"],
        ("live", "promiscuous") => &[],
        ("nfqueue", "copy_range") => &["0", "65536"],
        ("nfqueue", "queue_maxlen") => &["0", "-1"],
        ("nfqueue", "fail_open") => &[],
        ("nfqueue", "receive_buffer") => &["0", "65535", "2000000000"],
        ("nfqueue", "poll_timeout_ms") => &["0", "60001"],
        ("output", "dir") => &[],
        ("output", "format") => &["\"xml\"", "\"text\""],
        ("output", "spool_memory") => &["0", "1000", "2000000000000"],
        ("output", "format_runs") => &[],
        ("output", "spill_dir") => &["\"/nonexistent/pal-spill\"", "\"/dev/null\""],
        ("log", "file") => &["\"../x.log\"", "\"/tmp/x.log\"", "\"a/b\""],
        ("log", "level") => &["\"loud\""],
        ("analyzer", "do_checksums") => &[],
        ("analyzer", "max_tunnel_depth") => &["-1", "33", "256"],
        ("analyzer", k) if k.ends_with("_ports") => &["[-1]", "[65536]"],
        ("analyzer", "max_plugin_errors") => &["-1"],
        ("flows", "max_flows") => &["0", "-1", "2000000000"],
        ("flows", "tcp_close_timeout") => &["-1.0", "nan", "inf", "40000000.0"],
        ("flows", _) => &["0.0", "-1.0", "nan", "inf", "-inf", "40000000.0"],
        ("defrag", "timeout") => &["0.0", "-5.0", "nan", "inf"],
        ("defrag", "max_datagrams") => &["0", "-1"],
        ("defrag", "max_bytes") => &["0", "2000000000000"],
        ("defrag", "max_fragments_per_datagram") => &["0", "65536"],
        ("defrag", "overlap_policy") => &["\"newest\""],
        ("tcp_reassembly", "max_buffered_per_direction") => &["0", "300000000"],
        ("tcp_reassembly", "max_buffered_total") => &["0", "-1"],
        ("tcp_reassembly", "max_window_ahead") => &["0", "4294967296"],
        ("plugin.connections", "format") => &["\"xml\""],
        ("plugin.connections", "interval") => &["-1.0", "nan", "inf", "86401.0"],
        ("plugin.connections", "file") => &["\"\"", "\"../c\"", "\"/tmp/c\""],
        ("plugin.connections", "max_connections") => &["-1", "2000000000"],
        ("plugin.basic-stats", "max_conversations") => &["0", "-1"],
        ("plugin.community-id", "seed") => &["-1", "65536"],
        ("plugin.community-id", "base64") => &[],
        ("plugin.dns", "ports") => &["[]", "[70000]"],
        ("plugin.dns", "max_tcp_buffer") => &["0", "100", "100000000"],
        ("plugin.dns", "max_tcp_total") => &["0", "1000"],
        ("plugin.dns", "max_pending") => &["0", "-1", "2000000000"],
        ("plugin.tls", "max_buffer") => &["0", "2000000000"],
        ("plugin.tls", "max_total_buffer") => &["0", "1000"],
        ("plugin.tls", "max_preamble") => &["-1", "2000000000"],
        ("memory", "max_bytes") => &["0", "-1", "1000"],
        ("memory", "flows" | "fragments" | "tcp_reassembly" | "connections") => &["0", "101"],
        ("memory", "basic_stats" | "dns" | "spool") => &["0", "101", "-1"],
        ("plugin.hexdump", "layers") => &["[\"stream\"]"],
        ("plugin.hexdump", "max_bytes") => &["0", "65536"],
        ("plugin.hexdump", "max_packets") => &["0", "-1"],
        _ => return None,
    };
    Some(v.to_vec())
}

/// The documented keys of the example configuration: `key = value` lines,
/// commented out or not, under their section.
fn documented_keys() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/pcap-analyzer.conf"),
    )
    .unwrap();
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let l = l.trim_start_matches('#').trim();
        if let Some((k, _)) = l.split_once(" = ")
            && !k.is_empty()
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            keys.push((section.clone(), k.to_string()));
        }
    }
    keys
}

#[test]
fn every_documented_key_refuses_bad_values_naming_the_key() {
    let keys = documented_keys();
    assert!(keys.len() > 40, "{keys:?}");
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("bad.conf");
    let input = fixture("sample.pcap");
    let mut tried = 0;
    for (section, key) in &keys {
        let values = bad_values(section, key)
            .unwrap_or_else(|| panic!("no bad values listed for [{section}] {key}"));
        for v in values {
            std::fs::write(&conf, format!("[{section}]\n{key} = {v}\n")).unwrap();
            let out = tmp.path().join("out");
            let r = run([
                "-q",
                "-c",
                conf.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                input.to_str().unwrap(),
            ]);
            let err = stderr(&r);
            assert_eq!(r.status.code(), Some(1), "[{section}] {key} = {v}: {err}");
            // the key is named, with the range or the values accepted
            assert!(err.contains(key.as_str()), "[{section}] {key} = {v}: {err}");
            assert!(
                err.contains("give ")
                    || err.contains("between")
                    || err.contains("at least")
                    || err.contains("at most")
                    || err.contains("must be")
                    || err.contains("expected one of"),
                "[{section}] {key} = {v}: no range in: {err}"
            );
            assert!(!out.exists(), "[{section}] {key} = {v}: output written");
            tried += 1;
        }
    }
    println!("{tried} bad values of {} keys refused", keys.len());
}

#[test]
fn error_messages_say_each_reason_once() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.pcap");
    let r = run([missing.to_str().unwrap()]);
    let err = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(!err.contains("os error"), "{err}");
    let gz = tmp.path().join("x.pcap.gz");
    let plain = std::fs::read(fixture("sample.pcap")).unwrap();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut e, &plain).unwrap();
    let bytes = e.finish().unwrap();
    std::fs::write(&gz, &bytes[..12]).unwrap();
    let r = run([gz.to_str().unwrap()]);
    let err = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("gzip").count(), 1, "{err}");
    // a write error says write
    let r = run([
        "-q",
        "--stats-json",
        "/dev/full",
        fixture("sample.pcap").to_str().unwrap(),
    ]);
    let err = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write '/dev/full'"), "{err}");
    assert_eq!(err.matches("No space left on device").count(), 1, "{err}");
}
