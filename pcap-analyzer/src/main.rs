//! `pcap-analyzer`: see the library crate (and README.md) for the options
//! and exit codes.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = pcap_analyzer::Args::parse();
    // this process has one thread until the run starts its own
    args.drop_privileges = true;
    let mut stdout = std::io::stdout().lock();
    let result = pcap_analyzer::run(&args, &mut stdout);
    let code = pcap_analyzer::exit_code(&result);
    if let Err(e) = &result
        && !pcap_analyzer::is_broken_pipe(e)
    {
        eprintln!(
            "pcap-analyzer: error: {}",
            libpcap_tools::error_text(e.as_ref())
        );
    }
    ExitCode::from(code)
}
