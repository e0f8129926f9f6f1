//! Writes the repository's sample captures from the built sample trace:
//! `cargo run -p libpcap-analyzer --example make_fixtures -- testdata/pcap`.
//!
//! - `sample.pcap`: classic pcap, little-endian, microseconds, Ethernet.
//! - `sample.pcapng`: pcapng, nanosecond resolution, interface "eth0".

use libpcap_analyzer::samples::sample_files;
use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "testdata/pcap".to_string()),
    );
    let files = match sample_files() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("make_fixtures: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    for (name, bytes) in files {
        let path = dir.join(name);
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &bytes)) {
            eprintln!("make_fixtures: cannot write '{}': {e}", path.display());
            return std::process::ExitCode::FAILURE;
        }
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
    std::process::ExitCode::SUCCESS
}
