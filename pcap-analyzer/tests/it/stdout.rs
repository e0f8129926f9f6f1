//! Records on standard output (`--stdout KIND`, `-o -`) and plugins whose
//! results have nowhere to go, on captures built here.

use crate::{bin, output_within, stderr, stdout};
use libpcap_analyzer::build;
use libpcap_tools::{LinkType, OwnedPacket, PcapWriterOptions, Timestamp};
use serde_json::Value;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// DNS transactions this capture holds (one per UDP flow).
const DNS: u32 = 600;

/// A capture of `DNS` DNS transactions (query and response, each its own
/// flow) and 200 three-packet TCP exchanges, interleaved, several packets
/// sharing one timestamp (so that records tie on time and are ordered by
/// flow id).
fn capture(dir: &Path) -> PathBuf {
    let mut packets = Vec::new();
    let mut push = |t: i64, data: Vec<u8>| {
        packets.push(OwnedPacket {
            index: packets.len() as u64,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: Some(Timestamp(1_700_000_000_000_000_000 + t)),
            origlen: data.len() as u32,
            data,
        });
    };
    let server: IpAddr = [192, 0, 2, 53].into();
    let web: IpAddr = [198, 51, 100, 80].into();
    for i in 0..DNS {
        let c: IpAddr = [10, 1, (i >> 8) as u8, i as u8].into();
        // four transactions start at the same microsecond
        let t = i64::from(i / 4) * 1_000_000;
        let name = format!("host{i}.example");
        let port = 40_000 + (i % 20_000) as u16;
        let q = build::udp(c, server, port, 53, &build::dns_query(i as u16, &name, 1));
        push(t, build::eth_ip(c, server, 17, &q));
        let answer: IpAddr = [203, 0, 113, (i % 250) as u8].into();
        let r = build::udp(
            server,
            c,
            53,
            port,
            &build::dns_response(i as u16, &name, 1, 0, &[answer], 300),
        );
        push(t + 700_000, build::eth_ip(server, c, 17, &r));
        if i % 3 == 0 {
            let sport = 50_000 + (i % 10_000) as u16;
            for (k, (from_client, flags)) in [(true, 0x02u8), (false, 0x12), (true, 0x10)]
                .into_iter()
                .enumerate()
            {
                let (a, b, pa, pb) = if from_client {
                    (c, web, sport, 443)
                } else {
                    (web, c, 443, sport)
                };
                let seg = build::tcp(a, b, pa, pb, k as u32, 0, flags, b"");
                push(t + 100_000 * k as i64, build::eth_ip(a, b, 6, &seg));
            }
        }
    }
    packets.sort_by_key(|p| p.ts.map(Timestamp::as_nanos));
    for (i, p) in packets.iter_mut().enumerate() {
        p.index = i as u64;
    }
    let bytes = libpcap_tools::synth::pcap_bytes(
        &packets,
        LinkType::ETHERNET,
        PcapWriterOptions::default(),
    )
    .unwrap();
    let path = dir.join("mix.pcap");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs the binary with `args` and `TMPDIR` set to `tmp` (two minutes at
/// most).
fn run_in(tmp: &Path, args: &[&str]) -> Output {
    output_within(
        bin().env("TMPDIR", tmp).args(args),
        Duration::from_secs(120),
    )
}

/// Every line of `text` parsed as a JSON object.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(v.is_object(), "{l}");
            v
        })
        .collect()
}

/// Nothing left in the temporary directory by a run.
fn assert_empty(tmp: &Path) {
    let left: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

#[test]
fn stdout_records_are_the_files_records_for_any_number_of_workers() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = capture(dir.path());
    let pcap = pcap.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = run_in(
        tmp.path(),
        &[
            "-q",
            "-j",
            "1",
            "--format",
            "jsonl",
            "-o",
            out.to_str().unwrap(),
            pcap,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut counts = Vec::new();
    for kind in ["flows", "dns", "connections", "tls", "community-id"] {
        let file = std::fs::read_to_string(out.join(format!("{kind}.jsonl"))).unwrap();
        let records = json_lines(&file);
        counts.push((kind, records.len()));
        for j in ["1", "2"] {
            // not quiet: the summary goes to standard error, not among the records
            let o = run_in(tmp.path(), &["-j", j, "--stdout", kind, pcap]);
            assert_eq!(o.status.code(), Some(0), "{kind} -j {j}: {}", stderr(&o));
            assert!(stderr(&o).contains("packets:"), "{}", stderr(&o));
            let text = stdout(&o);
            let lines = json_lines(&text);
            assert_eq!(lines.len(), records.len(), "{kind} -j {j}");
            assert!(
                lines == records,
                "{kind} -j {j}: other records than the file's"
            );
            assert!(
                text == file,
                "{kind} -j {j}: not the same bytes as the file"
            );
            assert_empty(tmp.path());
        }
    }
    // the capture's transactions and flows are all there (the connection
    // report has a record per direction; a Community ID per flow; no TLS:
    // its empty file is written all the same)
    let n = DNS as usize;
    assert_eq!(
        counts,
        [
            ("flows", n + n / 3),
            ("dns", n),
            ("connections", 2 * (n + n / 3)),
            ("tls", 0),
            ("community-id", n + n / 3),
        ]
    );
}

#[test]
fn dash_o_writes_the_one_record_kind_of_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = capture(dir.path());
    let pcap = pcap.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = run_in(
        tmp.path(),
        &["-q", "--format", "jsonl", "-o", out.to_str().unwrap(), pcap],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let file = |k: &str| std::fs::read_to_string(out.join(format!("{k}.jsonl"))).unwrap();
    // the one plugin given with -p
    let o = run_in(tmp.path(), &["-q", "-p", "dns", "-o", "-", pcap]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), file("dns"));
    assert_eq!(json_lines(&stdout(&o)).len(), DNS as usize);
    // no -p: the connection report, as JSON lines
    let o = run_in(tmp.path(), &["-q", "-o", "-", pcap]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), file("connections"));
    // with -o DIR, --stdout also gets the file of DIR
    let out2 = dir.path().join("out2");
    let o = run_in(
        tmp.path(),
        &["-q", "--stdout", "flow", "-o", out2.to_str().unwrap(), pcap],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), file("flows"));
    assert!(out2.join("run.json").is_file());
    // --format applies to standard output too
    let o = run_in(
        tmp.path(),
        &["-q", "--stdout", "dns", "--format", "csv", pcap],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let csv = stdout(&o);
    assert!(
        csv.starts_with("ts,flow_id,"),
        "{}",
        &csv[..csv.len().min(200)]
    );
    assert_eq!(csv.lines().count(), DNS as usize + 1);
    assert_empty(tmp.path());
}

#[test]
fn stdout_usage_errors_say_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = capture(dir.path());
    let pcap = pcap.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (args, says) in [
        (&["-p", "dns,flows", "-o", "-"][..], "--stdout KIND"),
        (&["--stdout", "conn.log"][..], "unknown record kind"),
        (
            &["-p", "dns", "--stdout", "tls"][..],
            "add its plugin with -p",
        ),
        (
            &["-p", "basic-stats", "-o", "-"][..],
            "no plugin of this run writes records",
        ),
    ] {
        let mut a = args.to_vec();
        a.push(pcap);
        let o = run_in(tmp.path(), &a);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    assert_empty(tmp.path());
}

#[test]
fn a_plugin_with_nowhere_to_write_is_a_warning_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = capture(dir.path());
    let pcap = pcap.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // dns records without -o or --stdout: warned, exit 0, the counters still
    // in the summary
    let o = run_in(tmp.path(), &["-p", "dns", pcap]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("plugin 'dns'") && err.contains("-o DIR") && err.contains("--stdout dns"),
        "{err}"
    );
    assert!(err.contains("records=600"), "{err}");
    assert!(o.stdout.is_empty());
    // basic-stats writes a file only: -o DIR
    let o = run_in(tmp.path(), &["-p", "basic-stats,connections", pcap]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("plugin 'basic-stats'"),
        "{}",
        stderr(&o)
    );
    assert!(
        !stderr(&o).contains("plugin 'connections'"),
        "{}",
        stderr(&o)
    );
    // the connection report goes to standard output: no warning for it
    assert!(stdout(&o).starts_with("source ip;"), "{}", stdout(&o));
    // with --stdout, the other plugins have nowhere to go
    let o = run_in(tmp.path(), &["-p", "dns,flows", "--stdout", "dns", pcap]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("plugin 'flows'"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("plugin 'dns'"), "{}", stderr(&o));
    // every result has a place: no warning
    let out = dir.path().join("out");
    for args in [
        &["-p", "dns", "-o", out.to_str().unwrap()][..],
        &["-p", "dns", "--stdout", "dns"][..],
        // no -p: the default plugins are not asked for by name
        &[][..],
    ] {
        let mut a = args.to_vec();
        a.push(pcap);
        let o = run_in(tmp.path(), &a);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("plugin '"), "{args:?}: {}", stderr(&o));
    }
    assert_empty(tmp.path());
}

/// The connection report on standard output, over a cap far below its
/// rows, writes sorted runs into a private directory of `$TMPDIR` and is
/// the report of a run without a cap, byte for byte, at -j 1 and 2, as
/// text and as CSV: no row dropped, nothing left in `$TMPDIR`. With -o,
/// the file is that report, and no run is left beside it.
#[test]
fn the_connection_report_over_its_cap_is_the_report_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = capture(dir.path());
    let pcap = pcap.to_str().unwrap();
    let conf = |name: &str, cap: u32| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!("[plugin.connections]\nmax_connections = {cap}\n"),
        )
        .unwrap();
        p.to_str().unwrap().to_string()
    };
    let (capped, whole) = (conf("capped.conf", 50), conf("whole.conf", 0));
    let tmp = tempfile::tempdir().unwrap();
    for format in ["text", "csv"] {
        let want = run_in(
            tmp.path(),
            &["-c", &whole, "-j", "1", "--format", format, pcap],
        );
        assert!(want.status.success(), "{}", stderr(&want));
        // 600 DNS transactions and 200 TCP exchanges, both directions
        let rows = stdout(&want).lines().count();
        assert!(rows > 1_600, "{rows}");
        for jobs in ["1", "2"] {
            let got = run_in(
                tmp.path(),
                &["-c", &capped, "-j", jobs, "--format", format, pcap],
            );
            assert!(got.status.success(), "{}", stderr(&got));
            assert!(got.stdout == want.stdout, "{format} -j {jobs}");
            let err = stderr(&got);
            assert!(!err.contains("dropped_keys"), "-j {jobs}: {err}");
            assert!(err.contains("connections=1600"), "-j {jobs}: {err}");
            assert_empty(tmp.path());
        }
    }
    let out = dir.path().join("out");
    let o = run_in(
        tmp.path(),
        &[
            "-q",
            "-c",
            &capped,
            "-j",
            "2",
            "-o",
            out.to_str().unwrap(),
            pcap,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let want = run_in(tmp.path(), &["-q", "-c", &whole, pcap]);
    assert_eq!(
        std::fs::read(out.join("connections.txt")).unwrap(),
        want.stdout
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_empty(tmp.path());
}

/// Without a directory for the runs ($TMPDIR cannot be written), the
/// report over its cap keeps rows by a hash of their key, and says so:
/// the run goes on, with a warning and the rows not kept counted.
#[test]
fn without_a_directory_for_its_runs_the_report_says_what_it_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = capture(dir.path());
    let conf = dir.path().join("capped.conf");
    std::fs::write(&conf, "[plugin.connections]\nmax_connections = 50\n").unwrap();
    let missing = dir.path().join("no-such-dir");
    let o = output_within(
        bin().env("TMPDIR", &missing).args([
            "-c",
            conf.to_str().unwrap(),
            "-j",
            "1",
            pcap.to_str().unwrap(),
        ]),
        Duration::from_secs(120),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("cannot create a temporary directory for the connection report"),
        "{err}"
    );
    assert!(err.contains("connections.dropped_keys"), "{err}");
    let rows = stdout(&o).lines().count() - 1;
    assert!((1..=50).contains(&rows), "{rows} rows");
    assert!(!missing.exists());
}
