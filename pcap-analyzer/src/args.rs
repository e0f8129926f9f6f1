//! The command line: options, exit codes, usage errors.

use anyhow::Result;
use clap::Parser;
use libpcap_analyzer::plugins::connections::ReportFormat;
use std::path::PathBuf;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: an error (unreadable input, bad configuration, plugin failure).
pub const EXIT_ERROR: u8 = 1;
/// Exit code: a usage error (bad option, unknown plugin, no input,
/// `--filter`, `--nfqueue` with other inputs). clap uses the same code for
/// its own errors.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: input truncated or partly corrupt, results written.
pub const EXIT_PARTIAL: u8 = 3;

/// An error in how the tool was called (exit code [`EXIT_USAGE`]).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `true` if `e` comes from writing to a closed pipe (not an error for us).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The exit code of a run's result (see the crate docs).
pub fn exit_code(result: &Result<Outcome>) -> u8 {
    match result {
        Ok(Outcome::Complete) => EXIT_OK,
        Ok(Outcome::Partial) => EXIT_PARTIAL,
        Err(e) if is_broken_pipe(e) => EXIT_OK,
        Err(e) if e.chain().any(|c| c.downcast_ref::<UsageError>().is_some()) => EXIT_USAGE,
        Err(_) => EXIT_ERROR,
    }
}

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "pcap-analyzer",
    version,
    about = "Analyse network captures: connection report, flows, DNS, TLS",
    after_help = "Environment: PCAP_ANALYZER_LOG sets the log level (error, warn, info, debug, trace, \
                  or a flexi_logger spec such as 'info,libpcap_analyzer=debug').\n\
                  Live capture (-i) needs root or CAP_NET_RAW; it ends on SIGINT/SIGTERM (Ctrl-C), \
                  --duration or --count, and the results are written as for a file ([live] in the \
                  configuration sets the ring sizes).\n\
                  Inline mode (--nfqueue N) reads packets queued by an iptables NFQUEUE rule \
                  (with -j K, queues N..N+K-1: use --queue-balance N:N+K-1) and gives each a \
                  verdict; plugins may drop packets. Needs root or CAP_NET_ADMIN ([nfqueue] in the \
                  configuration).\n\
                  Exit codes: 0 success (also when standard output is a closed pipe, and a live \
                  capture stopped by a signal or a limit); 1 error (unreadable input, unknown \
                  interface, no right to capture, bad configuration); 2 usage error (bad option, \
                  unknown plugin, no input, a capture filter libpcap refuses, --nfqueue with -i or files, \
                  an output that is an input or another output, --stdout of a kind no plugin of the \
                  run writes, -o - with several record kinds); 3 input truncated or partly \
                  corrupt, results written, a file run stopped by a signal, or nothing analysed for want \
                  of a decoder of the capture's link type.\n\
                  With -o DIR, every file is written as a temporary renamed into place, and the \
                  manifest DIR/run.json (files with sizes and sha256, inputs, options, summary) is \
                  written last: a run.json is only ever beside a complete set.\n\
                  A plugin named with -p whose results have nowhere to go (no -o DIR, not the \
                  --stdout kind) is a warning on standard error, not an error (exit code unchanged)."
)]
pub struct Args {
    /// Capture files (pcap or pcapng, optionally gzip/xz/lz4/zstd/bzip2), read one
    /// after another as one stream; `-` reads standard input.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Configuration file (TOML; see conf/pcap-analyzer.conf).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Plugins to run, comma-separated (default: every plugin enabled by default).
    #[arg(
        short = 'p',
        long = "plugins",
        value_name = "A,B",
        value_delimiter = ','
    )]
    pub plugins: Option<Vec<String>>,
    /// List the plugin builders and exit.
    #[arg(long = "list-builders")]
    pub list_builders: bool,
    /// List the plugins with the layers and events they register, and exit.
    #[arg(long = "list-plugins")]
    pub list_plugins: bool,
    /// Output directory (created if missing). Without it, the connection
    /// report goes to standard output and nothing else is written. `-o -`:
    /// one record kind to standard output, as `--stdout` does: the kind of
    /// the one record plugin given with -p, else the connection report.
    #[arg(short = 'o', long = "outdir", value_name = "DIR")]
    pub outdir: Option<PathBuf>,
    /// Write the records of KIND (flows, connections, dns, tls,
    /// community-id) to standard output, in the --format (JSON lines when
    /// none is given), and nothing else there; progress and summary stay on
    /// standard error. The records come out when the run ends, ordered by
    /// time then flow id as in the files. With -o DIR the files are written
    /// there too; without it, into a temporary directory removed at the end.
    #[arg(long = "stdout", value_name = "KIND")]
    pub stdout: Option<String>,
    /// Worker threads (default 0: one per CPU; 1: no extra thread, least
    /// memory; at most 256)
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Skip the first N packets.
    #[arg(short = 's', long = "skip", value_name = "N", default_value_t = 0)]
    pub skip: u64,
    /// Format of the outputs: text (the connection report as the seed's
    /// text, every other record kind as JSON lines; the default), jsonl,
    /// csv, zeek (Zeek TSV logs) or parquet (every record kind, the
    /// connection report included, in that format).
    #[arg(long = "format", value_name = "FORMAT")]
    pub format: Option<ReportFormat>,
    /// More log output (repeat for more).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on standard error; no progress bar, no summary.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Capture live from this interface (AF_PACKET with TPACKET_V3 rings;
    /// with -j N, N sockets in one kernel fanout group, one per worker).
    /// Needs root or CAP_NET_RAW. Ends on Ctrl-C/SIGTERM, --duration or
    /// --count; the results are then written as for a file.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interface: Option<String>,
    /// Live capture or inline mode: stop after this many seconds (decimals
    /// allowed).
    #[arg(long = "duration", value_name = "SECS")]
    pub duration: Option<f64>,
    /// Live capture or inline mode: stop after this many packets (all
    /// workers together).
    #[arg(long = "count", value_name = "N")]
    pub count: Option<u64>,
    /// Live capture: do not put the interface in promiscuous mode (also
    /// `[live] promiscuous = false`).
    #[arg(long = "no-promiscuous", requires = "interface")]
    pub no_promiscuous: bool,
    /// Capture filter (BPF syntax) for live capture (not available yet: exit code 2).
    #[arg(short = 'f', long = "filter", value_name = "EXPR")]
    pub filter: Option<String>,
    /// Inline mode: read the packets an iptables/nft rule queues to this
    /// NFQUEUE queue number and give each a verdict (accept, or drop when a
    /// plugin asks). With -j K, queues QUEUE..QUEUE+K-1, one per worker
    /// (rule: `--queue-balance QUEUE:QUEUE+K-1`). Needs root or
    /// CAP_NET_ADMIN. Ends like -i; packets still held are accepted.
    #[arg(long = "nfqueue", value_name = "QUEUE")]
    pub nfqueue: Option<u16>,
    /// Write the run summary as JSON to this file.
    #[arg(long = "stats-json", value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Once the capture sockets (or input files) and output files are
    /// open, run as this user (name or uid: its uid, gid and groups), as
    /// tcpdump -Z does. Needs root. Without it, a run started as root stays
    /// uid 0 but drops its capabilities. See the README (privileges).
    #[arg(short = 'Z', long = "user", value_name = "NAME")]
    pub user: Option<String>,
    /// Not an option: set by the program (`main.rs`) so that the run drops
    /// its privileges ([`crate::privilege`]); a caller of [`crate::run`] with threads of
    /// its own leaves it `false` (the drop needs a single thread).
    #[arg(skip)]
    pub drop_privileges: bool,
}

/// What the run produced, for the exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything read.
    Complete,
    /// Some input was truncated or corrupt; results were written.
    Partial,
}
