//! `pcap-rewrite`: convert, re-frame, filter and split pcap/pcapng captures.
//!
//! Exit status: 0 success, 1 error, 2 usage error, 3 the input is truncated
//! or partly corrupt (everything read before the damage was written).

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use libpcap_tools::error_text;
use libpcap_tools::outfile::{FileId, OutputPlan};
use pcap_rewrite::convert::{ConvertConfig, TargetLink};
use pcap_rewrite::filter::{self, FilterSet, KeySet, Rule, Term};
use pcap_rewrite::frag::{FragConfig, OrphanPolicy};
use pcap_rewrite::output::{OutputFormat, SplitBy, SplitConfig};
use pcap_rewrite::{Error, Options, Summary};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    /// Classic pcap, microsecond timestamps.
    Pcap,
    /// Classic pcap, nanosecond timestamps.
    PcapNs,
    /// pcapng.
    Pcapng,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LinkArg {
    /// Raw IP (LINKTYPE_RAW): layer 2 removed, non-IP packets skipped.
    Raw,
    /// Ethernet: SLL/SLL2/NULL/LOOP/raw IP get a synthesised header
    /// (destination 02:00:00:00:00:02, source the SLL address or
    /// 02:00:00:00:00:01).
    Ethernet,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SplitArg {
    /// One file per flow (5-tuple, both directions).
    Flow,
    /// One file per keep rule or keep key that matched.
    Key,
    /// One file per --split-every SECONDS of capture time (named after the period's start, UTC).
    Time,
    /// A new file (part-000000, …) every --split-every BYTES of packets.
    Size,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OrphanArg {
    /// Apply the filter without ports (port terms do not match).
    Evaluate,
    /// Write them.
    Keep,
    /// Drop them.
    Drop,
}

/// Convert, re-frame, filter and split pcap/pcapng captures.
///
/// Filter rules (-k/--keep, -d/--drop) are terms joined by '&', all of which
/// must match: host=IP, src=IP, dst=IP, pair=IP1,IP2, net=CIDR, src-net=CIDR,
/// dst-net=CIDR, proto=tcp|udp|icmp|icmpv6|sctp|N, port=N, sport=N, dport=N,
/// tuple=PROTO,IP1,PORT1,IP2,PORT2 (either direction), time=START..END,
/// index=A-B (1-based). A packet is written if it matches a keep rule or key
/// (or none is given) and no drop rule or key. Fragments follow the decision
/// of their datagram. With -f/--filter EXPR it must also match the tcpdump
/// filter EXPR.
///
/// Exit status: 0 ok, 1 error, 2 usage, 3 input truncated or partly corrupt
/// (output written up to the damage).
#[derive(Debug, Parser)]
#[command(name = "pcap-rewrite", version)]
struct Cli {
    /// Input capture (pcap or pcapng, optionally gzip/xz/lz4/zstd/bzip2); '-' for stdin.
    input: PathBuf,
    /// Output file ('-' for stdout), or directory with --split.
    output: PathBuf,
    /// Output format (default: the input's).
    #[arg(short = 'o', long, value_enum)]
    output_format: Option<FormatArg>,
    /// Convert the link layer.
    #[arg(long, value_enum)]
    link: Option<LinkArg>,
    /// Remove 802.1Q/802.1ad VLAN tags from Ethernet frames.
    #[arg(long)]
    strip_vlan: bool,
    /// Decapsulate one tunnel level (VXLAN, GRE, Geneve, IP-in-IP); output
    /// is Ethernet unless --link raw.
    #[arg(long)]
    decap: bool,
    /// Recompute IPv4 header and TCP/UDP/ICMP/ICMPv6 checksums.
    #[arg(long)]
    fix_checksums: bool,
    /// Keep packets matching RULE (repeatable; any rule may match).
    #[arg(short = 'k', long = "keep", value_name = "RULE")]
    keep: Vec<String>,
    /// Drop packets matching RULE (repeatable).
    #[arg(short = 'd', long = "drop", value_name = "RULE")]
    drop: Vec<String>,
    /// Write only packets matching the tcpdump filter EXPR too (pcap-filter
    /// syntax, e.g. 'tcp port 80 and not host 10.0.0.1'). It is compiled by
    /// the installed libpcap (Debian/Ubuntu package libpcap0.8, Fedora/RHEL
    /// libpcap; PAL_LIBPCAP names another file) for the input's link type and
    /// tested on each packet as read, before any re-framing: the packets it
    /// keeps are those of `tcpdump -r INPUT -w - EXPR`.
    #[arg(short = 'f', long = "filter", value_name = "EXPR")]
    bpf: Option<String>,
    /// Keep packets matching a key of FILE (CSV: IP, CIDR, IP1,IP2 or
    /// PROTO,IP1,PORT1,IP2,PORT2 per line).
    #[arg(long, value_name = "FILE")]
    keep_keys: Option<PathBuf>,
    /// Drop packets matching a key of FILE.
    #[arg(long, value_name = "FILE")]
    drop_keys: Option<PathBuf>,
    /// Only packets captured at or after TIME (epoch seconds or RFC 3339).
    #[arg(long, value_name = "TIME")]
    start: Option<String>,
    /// Only packets captured before TIME.
    #[arg(long, value_name = "TIME")]
    end: Option<String>,
    /// Only packets A to B (1-based, inclusive; "A-", "-B" allowed).
    #[arg(long, value_name = "A-B")]
    index_range: Option<String>,
    /// Write one file per flow, per key, per period of time or per size into the OUTPUT directory.
    #[arg(long, value_enum)]
    split: Option<SplitArg>,
    /// With --split time: seconds per file; with --split size: bytes per
    /// file (suffixes k, M, G: powers of 1024).
    #[arg(long, value_name = "N")]
    split_every: Option<String>,
    /// Most split files open at once (least recently used closed first).
    #[arg(long, default_value_t = SplitConfig::DEFAULT_MAX_OPEN, value_name = "N")]
    max_open_files: usize,
    /// Most split files created; packets of further flows or keys go to
    /// one file, overflow.pcap (or .pcapng).
    #[arg(long, default_value_t = SplitConfig::DEFAULT_MAX_FILES, value_name = "N")]
    max_split_files: usize,
    /// Most fragments buffered while waiting for their first fragment.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    frag_buffer: usize,
    /// Seconds (capture time) a fragment waits for its first fragment.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    frag_timeout: f64,
    /// Most datagrams whose first-fragment ports are remembered (the
    /// oldest is forgotten first).
    #[arg(long, default_value_t = FragConfig::default().max_datagrams, value_name = "N")]
    frag_datagrams: usize,
    /// What to do with fragments whose first fragment never comes.
    #[arg(long, value_enum, default_value = "evaluate")]
    orphan_fragments: OrphanArg,
    /// Also write the summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    stats_json: Option<PathBuf>,
    /// Do not print the summary.
    #[arg(short, long)]
    quiet: bool,
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// The `--filter` expression with libpcap's compiler; compiled for each
/// link type when the rewrite meets it (the input's first link type before
/// any output is written).
fn capture_filter(expr: &str) -> Result<libpcap_tools::PacketFilter, Error> {
    let compiler = libpcap_live::libpcap::Libpcap::load()?;
    Ok(libpcap_tools::PacketFilter::new(
        expr,
        Arc::new(compiler),
        &[],
    )?)
}

fn build_options(cli: &Cli) -> Result<Options, Error> {
    let mut filter = FilterSet::default();
    for r in &cli.keep {
        filter.keep.push(Rule::parse(r)?);
    }
    for r in &cli.drop {
        filter.drop.push(Rule::parse(r)?);
    }
    if let Some(p) = &cli.keep_keys {
        filter.keep_keys = Some(KeySet::load(p)?);
    }
    if let Some(p) = &cli.drop_keys {
        filter.drop_keys = Some(KeySet::load(p)?);
    }
    let start = cli.start.as_deref().map(filter::parse_time).transpose()?;
    let end = cli.end.as_deref().map(filter::parse_time).transpose()?;
    if start.is_some() || end.is_some() {
        filter.require.push(Term::Time(start, end));
    }
    if let Some(r) = &cli.index_range {
        let (a, b) = filter::parse_index_range(r)?;
        filter.require.push(Term::Index(a, b));
    }
    let every = match (&cli.split, &cli.split_every) {
        (Some(SplitArg::Time | SplitArg::Size), None) => {
            return Err(Error::Usage(
                "--split time and --split size need --split-every".into(),
            ));
        }
        (Some(SplitArg::Time | SplitArg::Size), Some(n)) => parse_size(n)?,
        (_, Some(_)) => {
            return Err(Error::Usage(
                "--split-every goes with --split time or --split size".into(),
            ));
        }
        (_, None) => 0,
    };
    let split = cli.split.map(|s| match s {
        SplitArg::Flow => SplitBy::Flow,
        SplitArg::Key => SplitBy::Key,
        SplitArg::Time => SplitBy::Time(every),
        SplitArg::Size => SplitBy::Size(every),
    });
    if split == Some(SplitBy::Key) && filter.keep.is_empty() && filter.keep_keys.is_none() {
        return Err(Error::Usage(
            "--split key needs keep rules (-k) or --keep-keys".into(),
        ));
    }
    if split.is_some() && cli.output.as_os_str() == "-" {
        return Err(Error::Usage(
            "--split writes into a directory, not standard output".into(),
        ));
    }
    if !(cli.frag_timeout >= 0.0 && cli.frag_timeout.is_finite()) {
        return Err(Error::Usage(
            "--frag-timeout must be a positive number".into(),
        ));
    }
    let other_inputs: Vec<PathBuf> = cli
        .keep_keys
        .iter()
        .chain(cli.drop_keys.iter())
        .cloned()
        .collect();
    Ok(Options {
        other_inputs,
        output_format: cli.output_format.map(|f| match f {
            FormatArg::Pcap => OutputFormat::Pcap,
            FormatArg::PcapNs => OutputFormat::PcapNs,
            FormatArg::Pcapng => OutputFormat::PcapNg,
        }),
        convert: ConvertConfig {
            to: cli.link.map(|l| match l {
                LinkArg::Raw => TargetLink::Raw,
                LinkArg::Ethernet => TargetLink::Ethernet,
            }),
            strip_vlan: cli.strip_vlan,
            decap: cli.decap,
            fix_checksums: cli.fix_checksums,
        },
        filter,
        bpf: cli.bpf.as_deref().map(capture_filter).transpose()?,
        frag: FragConfig {
            max_buffered: cli.frag_buffer,
            max_datagrams: cli.frag_datagrams,
            timeout_ns: (cli.frag_timeout * 1e9) as i64,
            orphans: match cli.orphan_fragments {
                OrphanArg::Evaluate => OrphanPolicy::Evaluate,
                OrphanArg::Keep => OrphanPolicy::Keep,
                OrphanArg::Drop => OrphanPolicy::Drop,
            },
        },
        split: split.map(|by| SplitConfig {
            by,
            max_open: cli.max_open_files,
            max_files: cli.max_split_files,
        }),
        ..Options::default()
    })
}

fn print_summary(s: &Summary, bpf: bool) {
    eprintln!(
        "{}: {} packets read, {} written, {} dropped by filter, {} skipped as unreadable, \
         {} skipped as not convertible, {} skipped as not writable",
        s.input,
        s.packets_read,
        s.packets_written,
        s.dropped_by_filter,
        s.skipped_unreadable,
        s.skipped_unconvertible,
        s.skipped_unwritable
    );
    if bpf {
        eprintln!(
            "  --filter rejected {} packets{}",
            s.bpf_rejected,
            if s.bpf_unsupported_linktype > 0 {
                format!(
                    ", and {} of a link type it cannot apply to",
                    s.bpf_unsupported_linktype
                )
            } else {
                String::new()
            }
        );
    }
    if s.decapsulated + s.not_tunneled > 0 {
        eprintln!(
            "  decapsulated {}, not tunnelled {}",
            s.decapsulated, s.not_tunneled
        );
    }
    if s.timestamps_truncated > 0 {
        eprintln!(
            "  {} timestamps truncated to microseconds (use -o pcap-ns or pcapng to keep them)",
            s.timestamps_truncated
        );
    }
    if s.orphan_fragments + s.fragments_resolved_late > 0 {
        eprintln!(
            "  fragments: {} waited for their first fragment, {} orphans (peak buffered {})",
            s.fragments_resolved_late, s.orphan_fragments, s.fragments_buffered_peak
        );
    }
    if s.fragment_ports_forgotten > 0 {
        eprintln!(
            "  fragments: the ports of {} datagrams forgotten early (too many remembered)",
            s.fragment_ports_forgotten
        );
    }
    if s.files_reopened > 0 || s.files_written > 1 {
        eprintln!(
            "  {} files written ({} reopens)",
            s.files_written, s.files_reopened
        );
    }
    if s.split_overflow_packets > 0 {
        eprintln!(
            "  {} packets of flows or keys beyond --max-split-files written to the overflow file",
            s.split_overflow_packets
        );
    }
}

/// Checks every output (the output, or the split directory, and
/// `--stats-json`) against the inputs and each other, before anything is
/// written.
fn check_outputs(cli: &Cli, opts: &Options) -> Result<(), Error> {
    let inputs = pcap_rewrite::check_output(&cli.input, &cli.output, opts)?;
    let mut plan = OutputPlan::new(inputs);
    let usage = |e: libpcap_tools::outfile::OutputConflict| Error::Usage(e.to_string());
    if opts.split.is_none() {
        plan.add("output", &cli.output).map_err(usage)?;
    }
    if let Some(p) = &cli.stats_json {
        plan.add("--stats-json", p).map_err(usage)?;
        if opts.split.is_some() && p.parent().is_some_and(|d| same_dir(d, &cli.output)) {
            return Err(Error::Usage(format!(
                "--stats-json '{}' is in the --split directory '{}', whose files are the \
                 rewrite's: write it elsewhere",
                p.display(),
                cli.output.display()
            )));
        }
    }
    Ok(())
}

/// `true` when directories `a` and `b` are the same one.
fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    let a = if a.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        a
    };
    match (FileId::of(a), FileId::of(b)) {
        (Ok(Some(x)), Ok(Some(y))) => x == y,
        _ => false,
    }
}

fn run(cli: &Cli) -> anyhow::Result<Summary> {
    let opts = build_options(cli)?;
    check_outputs(cli, &opts)?;
    let summary = pcap_rewrite::rewrite(&cli.input, &cli.output, &opts)?;
    if let Some(p) = &cli.stats_json {
        let text = serde_json::to_string_pretty(&summary)? + "\n";
        libpcap_tools::outfile::write_atomically_with(p, |w| w.write_all(text.as_bytes()))
            .context("writing the statistics (--stats-json)")?;
    }
    Ok(summary)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let _logger = flexi_logger::Logger::try_with_env_or_str(level)
        .and_then(|l| l.log_to_stderr().start())
        .ok();
    match run(&cli) {
        Ok(s) => {
            if !cli.quiet {
                print_summary(&s, cli.bpf.is_some());
            }
            if let Some(e) = &s.input_error {
                eprintln!(
                    "pcap-rewrite: warning: input '{}' is truncated or corrupt: {e}; \
                     the packets before were written",
                    cli.input.display()
                );
                return ExitCode::from(3);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let Some(pe) = e.downcast_ref::<Error>() {
                if pe.is_broken_pipe() {
                    return ExitCode::SUCCESS;
                }
                if pe.is_usage() {
                    eprintln!("pcap-rewrite: {}", error_text(e.as_ref()));
                    return ExitCode::from(2);
                }
            }
            eprintln!("pcap-rewrite: error: {}", error_text(e.as_ref()));
            ExitCode::from(1)
        }
    }
}

/// A positive count with an optional k/M/G suffix (powers of 1024).
fn parse_size(s: &str) -> Result<u64, Error> {
    let bad = || {
        Error::Usage(format!(
            "--split-every '{s}': expected a positive number (suffix k, M or G)"
        ))
    };
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (t.get(..i), 1u64 << 10),
        Some((i, 'm' | 'M')) => (t.get(..i), 1 << 20),
        Some((i, 'g' | 'G')) => (t.get(..i), 1 << 30),
        _ => (Some(t), 1),
    };
    let n: u64 = num.and_then(|n| n.parse().ok()).ok_or_else(bad)?;
    match n.checked_mul(mul) {
        Some(v) if v > 0 => Ok(v),
        _ => Err(bad()),
    }
}
