//! The text report of the binary on corpus files against the tshark oracle
//! (`oracle/<file>.conn.tsv`, TCP and UDP rows).

use crate::{corpus, run, stderr, stdout};
use std::io::Read;
use std::path::Path;
use std::process::Stdio;

/// The TCP/UDP rows of a text report in the oracle's TSV form.
fn report_rows(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split("; ").collect();
            let [src, sp, dst, dp, protos, first, last, bytes, packets] = f.as_slice() else {
                panic!("bad report line {l:?}");
            };
            let names: Vec<&str> = protos
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(", ")
                .filter(|n| *n == "TCP" || *n == "UDP")
                .collect();
            if names.is_empty() {
                return None;
            }
            Some(format!(
                "{src}\t{sp}\t{dst}\t{dp}\t[{}]\t{first}\t{last}\t{bytes}\t{packets}",
                names.join(",")
            ))
        })
        .collect()
}

fn oracle_rows(dir: &Path, file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join(format!("oracle/{file}.conn.tsv"))).unwrap();
    text.lines().skip(1).map(str::to_string).collect()
}

#[test]
fn text_report_equals_the_tshark_oracle() {
    let Some(dir) = corpus() else { return };
    for (file, code) in [
        ("apps/ndpi_bad-dns-traffic.pcap", 0),
        ("tcp/pcapanalyzer_nmap_tcp_22_ipv6.pcap", 0),
        ("tcp/zeek_ssh.pcap", 0),
        ("apps/zeek_1000-requests-one-dropped-response.pcap.gz", 0),
        ("formats/derived_two-sections.pcapng", 0),
        ("formats/derived_truncated-mid-packet_ntp.pcap", 3),
    ] {
        let path = dir.join(file);
        for jobs in ["1", "2"] {
            let o = run([
                "-q".as_ref(),
                "-j".as_ref(),
                jobs.as_ref(),
                "-p".as_ref(),
                "connections".as_ref(),
                path.as_os_str(),
            ]);
            assert_eq!(o.status.code(), Some(code), "{file}: {}", stderr(&o));
            let ours = report_rows(&stdout(&o));
            let theirs = oracle_rows(&dir, file);
            assert!(!theirs.is_empty(), "{file}");
            assert_eq!(ours, theirs, "{file} with -j {jobs}");
        }
    }
}

#[test]
fn several_corpus_files_are_one_stream() {
    let Some(dir) = corpus() else { return };
    let a = "apps/ndpi_bad-dns-traffic.pcap";
    let b = "tcp/pcapanalyzer_nmap_tcp_22_ipv6.pcap";
    let o = run([
        "-q".as_ref(),
        "-p".as_ref(),
        "connections".as_ref(),
        dir.join(a).as_os_str(),
        dir.join(b).as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let ours = report_rows(&stdout(&o));
    // the two files have no connection key in common: the rows of both, in
    // report order
    let mut theirs = oracle_rows(&dir, a);
    theirs.extend(oracle_rows(&dir, b));
    assert_eq!(ours.len(), theirs.len());
    let mut sorted = ours.clone();
    sorted.sort();
    theirs.sort();
    assert_eq!(sorted, theirs);
}

#[test]
fn closed_stdout_pipe_on_a_large_report_is_not_an_error() {
    let Some(dir) = corpus() else { return };
    let path = dir.join("large/zeek_echo-connections.pcap.gz");
    let mut child = crate::bin()
        .args(["-q", "-p", "connections"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    let n = out.read(&mut first).unwrap();
    assert!(n > 0);
    drop(out);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("error"), "{}", stderr(&o));
}
