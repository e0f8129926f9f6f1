//! The binary: exit codes, messages, standard input/output, the summary.

use crate::common::{corpus_dir, packets, pkt, run, write_pcap};
use libpcap_analyzer::build;
use libpcap_tools::LinkType;
use std::io::Write;
use std::process::Stdio;

fn sample(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("s.pcap");
    let a = "10.0.0.1".parse().unwrap();
    let b = "10.0.0.2".parse().unwrap();
    let v: Vec<_> = (0..5)
        .map(|i| {
            pkt(
                i,
                LinkType::ETHERNET,
                build::eth_ip(a, b, 17, &build::udp(a, b, 1, 53 + i as u16, b"x")),
            )
        })
        .collect();
    write_pcap(&p, LinkType::ETHERNET, &v);
    p
}

#[test]
fn summary_on_stderr_and_stats_json() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample(dir.path());
    let out = dir.path().join("o.pcap");
    let js = dir.path().join("s.json");
    let o = run(&[
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        "-k",
        "dport=53",
        "--stats-json",
        js.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("5 packets read, 1 written, 4 dropped by filter"),
        "{err}"
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    assert_eq!(s["packets_read"], 5);
    assert_eq!(s["packets_written"], 1);
    assert_eq!(s["dropped_by_filter"], 4);
    assert_eq!(s["skipped_unreadable"], 0);
    assert_eq!(packets(&out).len(), 1);
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample(dir.path());
    let out = dir.path().join("o.pcap");
    for args in [
        vec!["-k", "prot=tcp"],
        vec!["--start", "yesterday"],
        vec!["--index-range", "x-y"],
        vec!["--split", "key"],
        vec!["--bogus"],
    ] {
        let mut a = vec![input.to_str().unwrap(), out.to_str().unwrap()];
        a.extend(args.iter());
        let o = run(&a);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = run(&[input.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let before = std::fs::read(&input).unwrap();
    let o = run(&[input.to_str().unwrap(), input.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "writing over the input is refused"
    );
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

#[test]
fn errors_exit_1_and_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.pcap");
    let missing = dir.path().join("missing.pcap");
    let o = run(&[missing.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.pcap"));
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello, not a capture").unwrap();
    let o = run(&[text.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("notes.txt") && err.contains("not a pcap"),
        "{err}"
    );
    let input = sample(dir.path());
    let bad_out = dir.path().join("no/such/dir/o.pcap");
    let o = run(&[input.to_str().unwrap(), bad_out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no/such/dir/o.pcap"));
    let keys = dir.path().join("keys.csv");
    std::fs::write(&keys, "10.0.0.1\nnot,a,key\n").unwrap();
    let o = run(&[
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        "--keep-keys",
        keys.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("keys.csv', line 2"));
}

#[test]
fn truncated_input_exits_3_with_output_written() {
    let Some(corpus) = corpus_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.pcap");
    let f = corpus.join("formats/derived_truncated-mid-packet_ntp.pcap");
    let o = run(&[f.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("truncated"));
    assert_eq!(packets(&out).len(), 5, "the 5 complete packets");
}

#[test]
fn stdin_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample(dir.path());
    let mut child = crate::common::bin()
        .args(["-", "-", "-o", "pcapng", "-q", "-k", "dport=55"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&input).unwrap())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let outp = dir.path().join("piped.pcapng");
    std::fs::write(&outp, &o.stdout).unwrap();
    let v = packets(&outp);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].index, 0);
}

#[test]
fn nanosecond_timestamps_written_as_microseconds_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ns.pcapng");
    let mut p = pkt(0, LinkType::RAW, vec![0x45; 20]);
    p.ts = Some(libpcap_tools::Timestamp(1_600_000_000_123_456_789));
    crate::common::write_pcapng(&input, &[LinkType::RAW], &[p]);
    let js = dir.path().join("s.json");
    for (fmt, truncated, ns) in [("pcap", 1, 123_456_000), ("pcap-ns", 0, 123_456_789)] {
        let out = dir.path().join(format!("o-{fmt}.pcap"));
        let o = run(&[
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            "-o",
            fmt,
            "--stats-json",
            js.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0));
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
        assert_eq!(s["timestamps_truncated"], truncated, "{fmt}");
        let back = packets(&out);
        assert_eq!(back[0].ts.unwrap().subsec_nanos(), ns, "{fmt}");
    }
}

#[test]
fn max_split_files_caps_the_files_and_reports_the_overflow() {
    let dir = tempfile::tempdir().unwrap();
    // 5 UDP flows (destination ports 53..58), one packet each
    let input = sample(dir.path());
    let out = dir.path().join("flows");
    let js = dir.path().join("s.json");
    let o = run(&[
        input.to_str().unwrap(),
        out.to_str().unwrap(),
        "--split",
        "flow",
        "--max-split-files",
        "2",
        "--stats-json",
        js.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("3 packets of flows or keys beyond --max-split-files"),
        "{err}"
    );
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "overflow.pcap",
            "udp_10.0.0.1_1_10.0.0.2_53.pcap",
            "udp_10.0.0.1_1_10.0.0.2_54.pcap"
        ]
    );
    assert_eq!(packets(&out.join("overflow.pcap")).len(), 3);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    assert_eq!(s["split_overflow_packets"], 3);
    assert_eq!(s["files_written"], 3);
}

#[test]
fn frag_datagrams_caps_the_first_fragment_ports_remembered() {
    // the first fragments of two datagrams to port 53, then the rest of
    // each: with room for one datagram's ports, the first is forgotten and
    // its later fragments can no longer be matched to port 53
    let (a, b) = (
        std::net::Ipv4Addr::new(10, 1, 0, 1),
        std::net::Ipv4Addr::new(10, 1, 0, 2),
    );
    let frags = |id: u16| -> Vec<Vec<u8>> {
        let seg = build::udp(a.into(), b.into(), 4444, 53, &[id as u8; 300]);
        build::ipv4_fragments(a, b, 17, id, &seg, 96)
            .into_iter()
            .map(|ip| build::ethernet([2; 6], [4; 6], 0x0800, &ip))
            .collect()
    };
    let (d1, d2) = (frags(1), frags(2));
    assert_eq!(d1.len(), 4);
    let order = [
        &d1[0], &d2[0], &d1[1], &d1[2], &d1[3], &d2[1], &d2[2], &d2[3],
    ];
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("f.pcap");
    let v: Vec<_> = order
        .iter()
        .enumerate()
        .map(|(i, f)| pkt(i, LinkType::ETHERNET, (*f).clone()))
        .collect();
    write_pcap(&input, LinkType::ETHERNET, &v);
    let run_with = |cap: Option<&str>| {
        let out = dir.path().join("o.pcap");
        let js = dir.path().join("s.json");
        let mut args = vec![
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            "-k",
            "dport=53",
            "--stats-json",
            js.to_str().unwrap(),
        ];
        if let Some(n) = cap {
            args.extend(["--frag-datagrams", n]);
        }
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
        (s["fragment_ports_forgotten"].clone(), packets(&out).len())
    };
    assert_eq!(run_with(None), (0.into(), 8));
    assert_eq!(run_with(Some("1")), (1.into(), 5));
}
