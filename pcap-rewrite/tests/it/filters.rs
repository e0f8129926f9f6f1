//! Every filter row of tests/data/filters.tsv keeps exactly the packets that
//! the tshark display filter of the same meaning keeps (counts made by
//! tests/data/make-expected.sh; tshark is not needed here).

use crate::common::{corpus_dir, packets, run};
use std::path::Path;

#[test]
fn filters_match_tshark_counts() {
    let Some(corpus) = corpus_dir() else { return };
    let table = include_str!("../data/filters.tsv");
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut rows = 0;
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [file, args, tshark, method, expected] = cols.as_slice() else {
            panic!("bad row {line:?}");
        };
        let expected: u64 = expected.parse().unwrap();
        rows += 1;
        let input = corpus.join(file);
        let out = dir.path().join(format!("out{rows}.pcapng"));
        let stats = dir.path().join(format!("stats{rows}.json"));
        let mut a = vec![
            input.to_str().unwrap(),
            out.to_str().unwrap(),
            "-q",
            "-o",
            "pcapng",
            "--stats-json",
            stats.to_str().unwrap(),
        ];
        a.extend(args.split(' '));
        let o = run(&a);
        assert!(
            o.status.success(),
            "{file} {args}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
        let written = s["packets_written"].as_u64().unwrap();
        // the output file holds exactly what the summary says
        let in_file = packets(Path::new(&out)).len() as u64;
        assert_eq!(written, in_file, "{file} {args}: summary vs file");
        let read = s["packets_read"].as_u64().unwrap();
        let dropped = s["dropped_by_filter"].as_u64().unwrap();
        assert_eq!(read, written + dropped, "{file} {args}: accounting");
        if written != expected {
            failures.push(format!(
                "{file} [{args}] wrote {written}, tshark '{tshark}' ({method}) keeps {expected}"
            ));
        }
    }
    assert!(rows >= 20, "only {rows} rows");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
