//! The command line on the repository's fixtures: inputs, options, files
//! written, messages and exit codes.

use crate::{bin, fixture, output_within, run, stderr, stdout};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;

/// Every built-in plugin and the file it writes in the output directory.
const PLUGIN_FILES: &[(&str, &str)] = &[
    ("connections", "connections.txt"),
    ("basic-stats", "basic-stats.json"),
    ("flows", "flows.jsonl"),
    ("community-id", "community-id.jsonl"),
    ("dns", "dns.jsonl"),
    ("tls", "tls.jsonl"),
    ("hexdump", "hexdump.txt"),
];

fn sample_packets() -> u64 {
    libpcap_analyzer::samples::sample_trace().len() as u64
}

fn stats(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn report_goes_to_stdout_with_a_summary_on_stderr() {
    let o = run([fixture("sample.pcap")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("source ip; source port;"), "{out}");
    assert!(
        out.contains("192.168.1.10; 40000; 192.168.1.1; 53; [UDP]"),
        "{out}"
    );
    let err = stderr(&o);
    assert!(
        err.contains(&format!("packets: {}", sample_packets())),
        "{err}"
    );
    assert!(err.contains("flows: "), "{err}");
    // no progress bar when standard error is not a terminal
    assert!(!err.contains('\r'), "{err:?}");
}

#[test]
fn quiet_prints_no_summary() {
    let o = run(["-q".as_ref(), fixture("sample.pcap").as_os_str()]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stderr(&o), "");
}

#[test]
fn pcap_and_pcapng_give_the_same_report() {
    let a = run(["-q".as_ref(), fixture("sample.pcap").as_os_str()]);
    let b = run(["-q".as_ref(), fixture("sample.pcapng").as_os_str()]);
    assert_eq!(stdout(&a), stdout(&b));
}

#[test]
fn standard_input_gives_the_same_report() {
    let bytes = std::fs::read(fixture("sample.pcap")).unwrap();
    let mut child = bin()
        .args(["-q", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&bytes).unwrap();
    });
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let direct = run(["-q".as_ref(), fixture("sample.pcap").as_os_str()]);
    assert_eq!(stdout(&o), stdout(&direct));
}

#[test]
fn gzip_compressed_input_gives_the_same_report() {
    let tmp = tempfile::tempdir().unwrap();
    let gz = tmp.path().join("sample.pcapng.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&std::fs::read(fixture("sample.pcapng")).unwrap())
        .unwrap();
    enc.finish().unwrap();
    let o = run(["-q".as_ref(), gz.as_os_str()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let direct = run(["-q".as_ref(), fixture("sample.pcapng").as_os_str()]);
    assert_eq!(stdout(&o), stdout(&direct));
}

#[test]
fn unknown_plugin_is_a_usage_error_listing_the_available_ones() {
    let o = run([
        "-p".as_ref(),
        "connections,nope".as_ref(),
        fixture("sample.pcap").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("unknown plugin 'nope'"), "{err}");
    for (name, _) in PLUGIN_FILES {
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn missing_file_is_named_with_the_reason() {
    let o = run(["no-such-file.pcap"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("cannot open 'no-such-file.pcap': No such file or directory"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_capture_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("notes.txt");
    std::fs::write(&p, "this is not a capture file at all").unwrap();
    let o = run([&p]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("notes.txt"), "{err}");
    assert!(err.contains("not a pcap or pcapng"), "{err}");
}

#[test]
fn bad_config_names_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("bad.conf");
    std::fs::write(&conf, "[run]\njobs = 2\n[reader\nbuffer_size = 1\n").unwrap();
    let o = run([
        "-c".as_ref(),
        conf.as_os_str(),
        fixture("sample.pcap").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("bad.conf"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn bad_config_value_names_the_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("bad.conf");
    std::fs::write(&conf, "[run]\njobs = \"many\"\n").unwrap();
    let o = run([
        "-c".as_ref(),
        conf.as_os_str(),
        fixture("sample.pcap").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("bad.conf") && err.contains("jobs"), "{err}");
}

#[test]
fn missing_config_file_is_named() {
    let o = run([
        "-c".as_ref(),
        "nope.conf".as_ref(),
        fixture("sample.pcap").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("'nope.conf'"), "{}", stderr(&o));
}

#[test]
fn command_line_overrides_the_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("pal.conf");
    std::fs::write(&conf, "[plugin.connections]\nformat = \"csv\"\n").unwrap();
    let csv = run([
        "-q".as_ref(),
        "-c".as_ref(),
        conf.as_os_str(),
        fixture("sample.pcap").as_os_str(),
    ]);
    assert!(
        stdout(&csv).starts_with("first,last,flow_id,src_ip,src_port,"),
        "{}",
        stdout(&csv)
    );
    let jsonl = run([
        "-q".as_ref(),
        "-c".as_ref(),
        conf.as_os_str(),
        "--format".as_ref(),
        "jsonl".as_ref(),
        fixture("sample.pcap").as_os_str(),
    ]);
    let out = stdout(&jsonl);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(first.get("src_ip").is_some(), "{out}");
    assert!(
        first["flow_id"].as_str().is_some_and(|s| s.len() == 16),
        "{out}"
    );
}

#[test]
fn truncated_capture_writes_results_and_exits_3() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("sample.pcap")).unwrap();
    let cut = tmp.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let outdir = tmp.path().join("out");
    let json = tmp.path().join("stats.json");
    let o = run([
        "-o".as_ref(),
        outdir.as_os_str(),
        "--stats-json".as_ref(),
        json.as_os_str(),
        cut.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("truncated"), "{}", stderr(&o));
    assert!(stderr(&o).contains("cut.pcap"), "{}", stderr(&o));
    let report = std::fs::read_to_string(outdir.join("connections.txt")).unwrap();
    assert!(report.lines().count() > 5, "{report}");
    let s = stats(&json);
    let packets = s["packets"].as_u64().unwrap();
    assert!(packets > 10 && packets < sample_packets(), "{s}");
    assert_eq!(s["warnings"].as_array().unwrap().len(), 1, "{s}");
    // the same without an output directory: the report on stdout
    let o = run(["-q".as_ref(), cut.as_os_str()]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(stdout(&o), report);
}

#[test]
fn several_inputs_are_read_as_one_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("stats.json");
    let o = run([
        "-q".as_ref(),
        "--stats-json".as_ref(),
        json.as_os_str(),
        fixture("sample.pcap").as_os_str(),
        fixture("sample.pcapng").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stats(&json)["packets"].as_u64(), Some(2 * sample_packets()));
    // every connection counted twice: same rows, doubled packets
    let single = run(["-q".as_ref(), fixture("sample.pcap").as_os_str()]);
    let (a, b) = (stdout(&single), stdout(&o));
    assert_eq!(a.lines().count(), b.lines().count());
    for (x, y) in a.lines().skip(1).zip(b.lines().skip(1)) {
        let px: u64 = x.rsplit("; ").next().unwrap().parse().unwrap();
        let py: u64 = y.rsplit("; ").next().unwrap().parse().unwrap();
        assert_eq!(2 * px, py, "{x} / {y}");
    }
}

#[test]
fn skip_leaves_out_the_first_packets() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("stats.json");
    let o = run([
        "-q".as_ref(),
        "-s".as_ref(),
        "100".as_ref(),
        "--stats-json".as_ref(),
        json.as_os_str(),
        fixture("sample.pcap").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stats(&json)["packets"].as_u64(),
        Some(sample_packets() - 100)
    );
    // the ARP and DNS packets at the start are gone from the report
    assert!(!stdout(&o).contains("; 53; [UDP]"), "{}", stdout(&o));
}

#[test]
fn stats_json_has_the_summary_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("stats.json");
    let o = run([
        "-q".as_ref(),
        "--stats-json".as_ref(),
        json.as_os_str(),
        fixture("sample.pcap").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let s = stats(&json);
    for key in ["packets", "bytes", "flows", "anomalies", "duration_s"] {
        assert!(s.get(key).is_some(), "{key} missing in {s}");
    }
    assert_eq!(s["packets"].as_u64(), Some(sample_packets()));
    let bytes: u64 = libpcap_analyzer::samples::sample_trace()
        .iter()
        .map(|p| u64::from(p.origlen))
        .sum();
    assert_eq!(s["bytes"].as_u64(), Some(bytes));
    assert!(s["flows"].as_u64().unwrap() > 10);
    assert!(s["anomalies"].is_object());
    assert!(s["duration_s"].as_f64().unwrap() >= 0.0);
}

#[test]
fn outdir_is_created_with_every_plugins_file_and_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let outdir = tmp.path().join("a/b");
    let all: Vec<&str> = PLUGIN_FILES.iter().map(|(n, _)| *n).collect();
    let o = bin()
        .env("PCAP_ANALYZER_LOG", "info")
        .args(["-p", &all.join(","), "-o"])
        .arg(&outdir)
        .arg(fixture("sample.pcap"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "", "the report goes to the directory");
    for (plugin, file) in PLUGIN_FILES {
        let p = outdir.join(file);
        let len = std::fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{plugin}: {}: {e}", p.display()))
            .len();
        assert!(len > 0, "{plugin}: {} is empty", p.display());
    }
    let log = std::fs::read_to_string(outdir.join("pcap-analyzer.log")).unwrap();
    assert!(log.contains("reading"), "{log}");
    // no stray temporary files
    for e in std::fs::read_dir(&outdir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "{name}");
    }
}

#[test]
fn log_file_name_comes_from_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("pal.conf");
    std::fs::write(&conf, "[log]\nfile = \"run.log\"\nlevel = \"info\"\n").unwrap();
    let outdir = tmp.path().join("out");
    let o = run([
        "-q".as_ref(),
        "-c".as_ref(),
        conf.as_os_str(),
        "-o".as_ref(),
        outdir.as_os_str(),
        fixture("sample.pcap").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(outdir.join("run.log").is_file());
}

#[test]
fn two_workers_give_the_same_results() {
    let a = run(["-q", "-j", "1", "--format", "csv"]
        .map(std::ffi::OsString::from)
        .into_iter()
        .chain([fixture("sample.pcap").into_os_string()]));
    let b = run(["-q", "-j", "2", "--format", "csv"]
        .map(std::ffi::OsString::from)
        .into_iter()
        .chain([fixture("sample.pcap").into_os_string()]));
    assert_eq!(a.status.code(), Some(0));
    assert_eq!(stdout(&a), stdout(&b));
}

#[test]
fn list_plugins_shows_layers_and_events() {
    let o = run(["--list-plugins"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for (name, _) in PLUGIN_FILES {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{out}"));
        assert!(
            line.contains("layers: ") && line.contains("events: "),
            "{line}"
        );
    }
    let conn = out.lines().find(|l| l.starts_with("connections")).unwrap();
    // the report is folded from flows as they end (no per-packet callback)
    assert!(conn.contains("flow-destroyed"), "{conn}");
    let flows = out.lines().find(|l| l.starts_with("flows")).unwrap();
    assert!(flows.contains("flow-created"), "{flows}");
    let o = run(["--list-builders"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).lines().count() >= PLUGIN_FILES.len());
}

#[test]
fn live_options_without_live_input_are_a_clear_usage_error() {
    // an interface and files, or live options without an interface
    for args in [
        vec!["-i", "lo", "x.pcap"],
        vec!["--count", "3", "x.pcap"],
        vec!["--duration", "1", "x.pcap"],
        vec!["-i", "lo", "--duration", "-1"],
        vec!["--nfqueue", "0", "x.pcap"],
        vec!["--nfqueue", "0", "-i", "lo"],
        vec!["--nfqueue", "0", "--skip", "3"],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn no_input_and_bad_options_are_usage_errors() {
    let o = run(Vec::<&str>::new());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no input"), "{}", stderr(&o));
    let o = run(["--no-such-option"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run([
        "--format".as_ref(),
        "xml".as_ref(),
        fixture("sample.pcap").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(2));
}

/// A capture of `n` one-packet UDP connections (a report longer than a
/// pipe's buffer when `n` is a few thousand).
fn many_connections(path: &Path, n: u16) {
    use libpcap_analyzer::build;
    use libpcap_tools::{LinkType, Packet, PcapWriter, PcapWriterOptions, Timestamp};
    use std::net::{IpAddr, Ipv4Addr};
    let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let mut w =
        PcapWriter::new(Vec::new(), LinkType::ETHERNET, PcapWriterOptions::default()).unwrap();
    for i in 0..n {
        let frame = build::eth_ip(src, dst, 17, &build::udp(src, dst, 10_000 + i, 9, b"x"));
        w.write_packet(&Packet {
            index: u64::from(i),
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: Some(Timestamp::from_secs_nanos(
                1_700_000_000,
                i64::from(i) * 1000,
            )),
            origlen: frame.len() as u32,
            data: &frame,
        })
        .unwrap();
    }
    std::fs::write(path, w.finish().unwrap()).unwrap();
}

#[test]
fn closed_stdout_pipe_is_not_an_error() {
    // 4000 rows: far more than a pipe holds, so the tool writes after the
    // reader has gone
    let tmp = tempfile::tempdir().unwrap();
    let cap = tmp.path().join("many.pcap");
    many_connections(&cap, 4000);
    let mut child = bin()
        .args(["-q", "--format", "jsonl"])
        .arg(&cap)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    assert!(line.starts_with(b"{"), "{}", String::from_utf8_lossy(&line));
    drop(out);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    // the whole report, read to the end, has every row
    let o = run(["-q".as_ref(), cap.as_os_str()]);
    assert_eq!(stdout(&o).lines().count(), 4001);
    // and --list-plugins into a closed pipe
    let mut child = bin()
        .arg("--list-plugins")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn output_dir_and_jobs_can_come_from_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let outdir = tmp.path().join("from-config");
    let conf = tmp.path().join("pal.conf");
    std::fs::write(
        &conf,
        format!(
            "[output]\ndir = {:?}\n[run]\njobs = 2\n",
            outdir.display().to_string()
        ),
    )
    .unwrap();
    let o = bin()
        .env("PCAP_ANALYZER_LOG", "info")
        .args(["-p", "connections,flows", "-c"])
        .arg(&conf)
        .arg(fixture("sample.pcap"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(outdir.join("connections.txt").is_file());
    assert!(outdir.join("flows.jsonl").is_file());
    let log = std::fs::read_to_string(outdir.join("pcap-analyzer.log")).unwrap();
    assert!(log.contains("2 worker(s)"), "{log}");
    // -o wins over the file
    let cli = tmp.path().join("from-cli");
    let o = run([
        "-q".as_ref(),
        "-p".as_ref(),
        "connections".as_ref(),
        "-c".as_ref(),
        conf.as_os_str(),
        "-o".as_ref(),
        cli.as_os_str(),
        fixture("sample.pcap").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(cli.join("connections.txt").is_file());
}

#[test]
fn unknown_config_keys_are_warnings_not_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("pal.conf");
    std::fs::write(&conf, "[reader]\nbufer_size = 4096\n[nonsense]\nx = 1\n").unwrap();
    let o = run([
        "-c".as_ref(),
        conf.as_os_str(),
        fixture("sample.pcap").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("reader.bufer_size"), "{err}");
    assert!(err.contains("nonsense"), "{err}");
}

#[test]
fn too_many_jobs_is_a_usage_error_naming_the_range() {
    let max = libpcap_analyzer::engine::max_jobs();
    let o = run([
        "-j".as_ref(),
        (max + 1).to_string().as_ref(),
        fixture("sample.pcap").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("-j {}", max + 1))
            && err.contains(&format!("0 (one per CPU) to {max}")),
        "{err}"
    );
    let o = run([
        "-j".as_ref(),
        max.to_string().as_ref(),
        fixture("sample.pcap").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_memory_share_out_of_range_names_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("mem.conf");
    std::fs::write(&conf, "[memory]\nflows = 95\n").unwrap();
    let o = run([
        "-c".as_ref(),
        conf.as_os_str(),
        fixture("sample.pcap").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("[memory] shares add up to 160 %"), "{err}");
}

/// A low soft limit on open files is raised towards the hard one (the
/// merges at the end of a long run read many sorted runs at once), and the
/// run goes on.
#[test]
fn a_low_soft_limit_on_open_files_is_raised() {
    let hard = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(4).map(str::to_string))
        })
        .and_then(|h| h.parse::<u64>().ok());
    if hard.is_none_or(|h| h <= 64) {
        eprintln!("SKIP a_low_soft_limit_on_open_files_is_raised: hard limit {hard:?}");
        return;
    }
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "ulimit -Sn 40 && exec \"$0\" -q \"$1\""])
        .arg(env!("CARGO_BIN_EXE_pcap-analyzer"))
        .arg(fixture("sample.pcap"))
        .env("PCAP_ANALYZER_LOG", "debug");
    let o = output_within(&mut cmd, std::time::Duration::from_secs(120));
    assert!(o.status.success(), "{}", stderr(&o));
    let want = format!(
        "open files: soft limit raised from 40 to {}",
        hard.unwrap_or(0).min(libpcap_live::sys::OPEN_FILES_WANTED)
    );
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
}
