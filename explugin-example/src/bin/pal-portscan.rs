//! `pal-portscan`: the whole `pcap-analyzer` tool (every option, input,
//! format, live and inline mode, exit code) with the `port-scan` plugin
//! added to the built-in ones, in four lines.

fn main() -> std::process::ExitCode {
    let mut registry = libpcap_analyzer::plugins::builtin_registry();
    explugin_example::register(&mut registry);
    pcap_analyzer::main_with(registry)
}
