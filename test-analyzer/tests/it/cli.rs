//! The test-analyzer binary.

use crate::{cases_dir, copy_case, fixture};
use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_test-analyzer"));
    c.env_remove("PCAP_ANALYZER_LOG");
    c
}

#[test]
fn trace_prints_one_line_per_packet_with_layers_and_flow() {
    let out = bin()
        .arg("--trace")
        .arg(fixture("sample.pcap"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let packets = libpcap_analyzer::samples::sample_trace().len();
    assert_eq!(lines.len(), packets);
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("#{i} ")), "{l}");
    }
    // a DNS query: link, network and transport with its flow
    let dns = lines
        .iter()
        .find(|l| l.contains(":53 ") && l.contains("to-server"))
        .expect("a DNS query");
    assert!(dns.contains("d0 link"), "{dns}");
    assert!(dns.contains("ethertype=0x0800"), "{dns}");
    assert!(dns.contains("proto=17"), "{dns}");
    assert!(dns.contains("flow="), "{dns}");
    // the VXLAN tunnel: an inner TCP layer at depth 1
    assert!(lines.iter().any(|l| l.contains("d1 TCP")), "{text}");
    // the answer joins the same flow in the other direction
    let flow = dns
        .split("flow=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("flow={flow} to-client"))),
        "{text}"
    );
}

#[test]
fn log_level_comes_from_the_environment_and_forces_one_worker() {
    let out = bin()
        .env("PCAP_ANALYZER_LOG", "info")
        .args(["-j", "2", "-p", "dns"])
        .arg(fixture("sample.pcap"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("with 1 worker(s)"), "{err}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\"plugin\":\"dns\""), "{text}");
}

#[test]
fn port_scan_and_hexdump_are_available() {
    let out = bin().arg("--list-plugins").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for name in ["hexdump", "port-scan", "trace", "connections"] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{text}");
    }
    let out = bin()
        .args(["-p", "port-scan"])
        .arg(fixture("sample.pcapng"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("\"plugin\":\"port-scan\""), "{text}");
}

#[test]
fn unknown_plugin_is_a_usage_error_listing_the_plugins() {
    let out = bin()
        .args(["-p", "nope"])
        .arg(fixture("sample.pcap"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope") && err.contains("port-scan"), "{err}");
}

#[test]
fn check_passes_on_the_repository_cases() {
    let out = bin().arg("--check").arg(cases_dir()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(" 0 failed"), "{text}");
}

#[test]
fn check_fails_with_a_diff_then_update_fixes_it() {
    let tmp = copy_case("connections-csv");
    let dir = tmp.path().join("connections-csv");
    let path = dir.join("expected/connections.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let removed = lines.remove(3).to_string();
    std::fs::write(&path, lines.join("\n")).unwrap();
    let out = bin().arg("--check").arg(&dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAILED"), "{text}");
    assert!(text.contains(&format!("+{}", removed.trim_end())), "{text}");
    let out = bin()
        .arg("--check")
        .arg(&dir)
        .arg("--update")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = bin().arg("--check").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn outdir_gets_the_trace_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["-p", "trace,connections", "-o"])
        .arg(tmp.path())
        .arg(fixture("sample.pcap"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(tmp.path().join("trace.txt").is_file());
    assert!(tmp.path().join("connections.txt").is_file());
}
