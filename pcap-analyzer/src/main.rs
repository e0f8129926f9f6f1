//! `pcap-analyzer`: see the library crate (and README.md) for the options
//! and exit codes.

fn main() -> std::process::ExitCode {
    pcap_analyzer::main_with(libpcap_analyzer::plugins::builtin_registry())
}
