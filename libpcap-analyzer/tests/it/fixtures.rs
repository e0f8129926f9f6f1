//! The sample captures in `testdata/pcap` are exactly what the generator
//! writes (regenerate with
//! `cargo run -p libpcap-analyzer --example make_fixtures -- testdata/pcap`).

use libpcap_analyzer::samples::sample_files;
use std::path::Path;

#[test]
fn committed_samples_match_the_generator() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/pcap");
    for (name, bytes) in sample_files().unwrap() {
        let on_disk = std::fs::read(dir.join(name)).unwrap();
        assert!(
            on_disk == bytes,
            "{name} is stale: rerun the make_fixtures example"
        );
    }
}
