//! `test-analyzer`: see the library crate for the options and exit codes.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = test_analyzer::Args::parse();
    let _logger = test_analyzer::setup_logging();
    let mut stdout = std::io::stdout().lock();
    match test_analyzer::run(&args, &mut stdout) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("test-analyzer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
