//! Inputs are never overwritten, and outputs are complete or absent (issue
//! 13): an output that is an input (hard link, symlink, another spelling)
//! or another output is a usage error before anything is written; outputs
//! are temporaries renamed at the end, removed when the rewrite fails.

use crate::common::{packets, pkt, run, write_pcap, write_pcapng};
use libpcap_analyzer::build;
use libpcap_tools::LinkType;
use std::path::{Path, PathBuf};

fn sample(dir: &Path, n: usize) -> PathBuf {
    let p = dir.join("in.pcap");
    let a = "10.0.0.1".parse().unwrap();
    let b = "10.0.0.2".parse().unwrap();
    let v: Vec<_> = (0..n)
        .map(|i| {
            pkt(
                i,
                LinkType::ETHERNET,
                build::eth_ip(a, b, 17, &build::udp(a, b, 1000 + i as u16, 53, b"x")),
            )
        })
        .collect();
    write_pcap(&p, LinkType::ETHERNET, &v);
    p
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn an_output_that_is_the_input_is_refused_and_the_input_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = sample(d, 5);
    let before = std::fs::read(&input).unwrap();
    std::fs::hard_link(&input, d.join("hard.pcap")).unwrap();
    std::os::unix::fs::symlink(&input, d.join("soft.pcap")).unwrap();
    let keys = d.join("keys.csv");
    std::fs::write(&keys, "10.0.0.1\n").unwrap();
    let keys_before = std::fs::read(&keys).unwrap();
    let i = input.to_str().unwrap();
    let k = keys.to_str().unwrap();
    let dotted = format!("{}/./in.pcap", d.display());
    let hard = d.join("hard.pcap");
    let soft = d.join("soft.pcap");
    let out = d.join("out.pcap");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![i, hard.to_str().unwrap()], "a hard link to it"),
        (vec![i, soft.to_str().unwrap()], "a symlink to it"),
        (vec![i, &dotted], "the same file"),
        (
            vec![
                i,
                out.to_str().unwrap(),
                "--stats-json",
                hard.to_str().unwrap(),
            ],
            "a hard link to it",
        ),
        (vec![i, k, "--keep-keys", k], "the same file"),
        (
            vec![
                i,
                out.to_str().unwrap(),
                "--stats-json",
                out.to_str().unwrap(),
            ],
            "are the same file",
        ),
        // through the symlink: the input is written as the output
        (vec![soft.to_str().unwrap(), i], "the same file"),
    ];
    for (args, says) in cases {
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(std::fs::read(&input).unwrap(), before, "{args:?}");
        assert_eq!(std::fs::read(&keys).unwrap(), keys_before, "{args:?}");
        assert!(!out.exists(), "{args:?}: an output was written");
    }
    assert_eq!(
        names(d),
        ["hard.pcap", "in.pcap", "keys.csv", "soft.pcap"],
        "nothing else written"
    );
}

#[test]
fn a_failed_rewrite_leaves_the_old_output_and_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // two link types in one pcapng: classic pcap output fails at the
    // first packet of the second one, after 3 packets were written
    let a = "10.0.0.1".parse().unwrap();
    let b = "10.0.0.2".parse().unwrap();
    let mut v: Vec<_> = (0..4)
        .map(|i| {
            pkt(
                i,
                LinkType::ETHERNET,
                build::eth_ip(a, b, 17, &build::udp(a, b, 1, 2, b"x")),
            )
        })
        .collect();
    v[3].interface = 1;
    v[3].linktype = LinkType::RAW;
    let (a4, b4) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    v[3].data = build::ipv4(a4, b4, 17, 1, &build::udp(a, b, 1, 2, b"x"));
    let input = d.join("mixed.pcapng");
    write_pcapng(&input, &[LinkType::ETHERNET, LinkType::RAW], &v);
    let out = d.join("out.pcap");
    std::fs::write(&out, b"previous result").unwrap();
    let o = run(&[input.to_str().unwrap(), out.to_str().unwrap(), "-o", "pcap"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("link type"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"previous result");
    assert_eq!(names(d), ["mixed.pcapng", "out.pcap"]);
}

#[test]
fn outputs_appear_whole_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = sample(d, 50);
    let out = d.join("out.pcap");
    std::fs::write(&out, b"previous result").unwrap();
    let o = run(&[input.to_str().unwrap(), out.to_str().unwrap(), "-q"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(packets(&out).len(), 50);
    // split files too, with --max-open-files 1: closed and reopened
    // temporaries, renamed at the end
    let split = d.join("split");
    let o = run(&[
        input.to_str().unwrap(),
        split.to_str().unwrap(),
        "--split",
        "flow",
        "--max-open-files",
        "1",
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let files = names(&split);
    assert_eq!(files.len(), 50, "{files:?}");
    assert!(files.iter().all(|f| !f.starts_with('.')), "{files:?}");
    let total: usize = files.iter().map(|f| packets(&split.join(f)).len()).sum();
    assert_eq!(total, 50);
    assert_eq!(names(d), ["in.pcap", "out.pcap", "split"]);
    // /dev/null is written into, not replaced
    let o = run(&[input.to_str().unwrap(), "/dev/null", "-q"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
}

#[test]
fn a_split_file_that_would_replace_the_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = sample(d, 1);
    // the name the one flow's split file gets
    let probe = d.join("probe");
    let o = run(&[
        input.to_str().unwrap(),
        probe.to_str().unwrap(),
        "--split",
        "flow",
        "-q",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let name = names(&probe).pop().unwrap();
    let split = d.join("split");
    std::fs::create_dir(&split).unwrap();
    let moved = split.join(&name);
    std::fs::rename(&input, &moved).unwrap();
    let before = std::fs::read(&moved).unwrap();
    let o = run(&[
        moved.to_str().unwrap(),
        split.to_str().unwrap(),
        "--split",
        "flow",
        "-q",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("would replace the input"), "{err}");
    assert_eq!(std::fs::read(&moved).unwrap(), before);
    assert_eq!(names(&split), [name], "no temporary left");
}

#[test]
fn a_reversed_index_range_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample(dir.path(), 5);
    let out = dir.path().join("o.pcap");
    for r in ["5-2", "0-3"] {
        let o = run(&[
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            "--index-range",
            r,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{r}: {err}");
        assert!(err.contains(&format!("invalid index range '{r}'")), "{err}");
        assert!(!out.exists());
    }
}

#[test]
fn errors_say_write_and_each_reason_once() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample(dir.path(), 5);
    let o = run(&[input.to_str().unwrap(), "/dev/full", "-q"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("write error"), "{err}");
    assert_eq!(err.matches("No space left on device").count(), 1, "{err}");
    assert!(!err.contains("os error"), "{err}");
    let missing = dir.path().join("missing.pcap");
    let o = run(&[missing.to_str().unwrap(), "/dev/null"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    // a record over the cap names its declared captured length
    let mut big = std::fs::read(&input).unwrap()[..24].to_vec();
    big.extend_from_slice(&1u32.to_le_bytes());
    big.extend_from_slice(&0u32.to_le_bytes());
    big.extend_from_slice(&(300u32 << 20).to_le_bytes());
    big.extend_from_slice(&60u32.to_le_bytes());
    big.extend_from_slice(&[0; 60]);
    let bigp = dir.path().join("big.pcap");
    std::fs::write(&bigp, &big).unwrap();
    let o = run(&[bigp.to_str().unwrap(), "/dev/null", "-q"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("declares a captured length of 314572800 bytes (314572816 with its 16-byte record header)"),
        "{err}"
    );
}
