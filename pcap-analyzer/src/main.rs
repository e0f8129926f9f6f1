//! `pcap-analyzer`: see the library crate for the options and exit codes.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = pcap_analyzer::Args::parse();
    let mut stdout = std::io::stdout().lock();
    match pcap_analyzer::run(&args, &mut stdout) {
        Ok(pcap_analyzer::Outcome::Complete) => ExitCode::SUCCESS,
        Ok(pcap_analyzer::Outcome::Partial) => ExitCode::from(pcap_analyzer::EXIT_PARTIAL),
        Err(e) => {
            // a closed standard output pipe is not an error
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("pcap-analyzer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
