//! Every golden case of `testdata/cases` must give its expected results,
//! with its own number of workers and with another one.

use crate::{cases_dir, copy_case};
use test_analyzer::case::{CaseSpec, find_cases, run_case};
use test_analyzer::registry;

#[test]
fn every_golden_case_gives_its_expected_results() {
    let cases = find_cases(&cases_dir()).unwrap();
    assert!(cases.len() >= 4, "{cases:?}");
    let reg = registry();
    let mut failures = String::new();
    for case in &cases {
        let r = run_case(case, &reg, None, false).unwrap();
        assert!(r.files >= 2, "{}: only {} files", case.display(), r.files);
        if !r.passed() {
            failures.push_str(&r.render());
        }
    }
    assert!(
        failures.is_empty(),
        "golden cases differ (rerun with `test-analyzer --check testdata/cases --update` \
         if the change is intended):\n{failures}"
    );
}

#[test]
fn every_golden_case_gives_the_same_results_with_another_number_of_workers() {
    let reg = registry();
    let mut failures = String::new();
    for case in find_cases(&cases_dir()).unwrap() {
        let spec = CaseSpec::load(&case).unwrap();
        let other = if spec.jobs == 1 { 2 } else { 1 };
        let r = run_case(&case, &reg, Some(other), false).unwrap();
        if !r.passed() {
            failures.push_str(&format!("with {other} worker(s):\n{}", r.render()));
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn a_changed_result_is_reported_with_a_diff() {
    let tmp = copy_case("dns-only");
    let dir = tmp.path().join("dns-only");
    let path = dir.join("expected/dns.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let changed = text.replacen("example.com", "example.org", 1);
    assert_ne!(text, changed);
    std::fs::write(&path, changed).unwrap();
    std::fs::write(dir.join("expected/extra.json"), "{}").unwrap();
    let r = run_case(&dir, &registry(), None, false).unwrap();
    assert!(!r.passed());
    let text = r.render();
    assert!(text.contains("dns.jsonl"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with('-') && l.contains("example.org")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with('+') && l.contains("example.com")),
        "{text}"
    );
    assert!(text.contains("extra.json"), "{text}");
    assert!(text.contains("missing"), "{text}");
}

#[test]
fn update_rewrites_the_expected_results_which_then_pass() {
    let tmp = copy_case("connections-csv");
    let dir = tmp.path().join("connections-csv");
    std::fs::remove_dir_all(dir.join("expected")).unwrap();
    let err = run_case(&dir, &registry(), None, false).unwrap_err();
    assert!(format!("{err:#}").contains("--update"), "{err:#}");
    let r = run_case(&dir, &registry(), None, true).unwrap();
    assert!(r.updated);
    assert!(dir.join("expected/connections.csv").is_file());
    assert!(run_case(&dir, &registry(), None, false).unwrap().passed());
}

#[test]
fn an_invalid_case_file_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("case.toml"), "pcap = 3\n").unwrap();
    let err = run_case(tmp.path(), &registry(), None, false).unwrap_err();
    assert!(format!("{err:#}").contains("case.toml"), "{err:#}");
}
