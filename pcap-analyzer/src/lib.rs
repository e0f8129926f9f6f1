//! The `pcap-analyzer` command: argument parsing, logging, the run and the
//! summary. `main.rs` only maps the outcome to an exit code.
//!
//! Exit codes ([`exit_code`]): 0 success (also when standard output is a
//! closed pipe, and a live capture stopped by SIGINT/SIGTERM, `--duration`
//! or `--count`); 1 error (unreadable input, unknown interface, no right to
//! capture, bad configuration, plugin failure); 2 usage error (bad option,
//! unknown plugin, no input, `--filter`, which this build does not
//! support yet, `--nfqueue` with `-i` or input files); 3 input truncated or
//! partly corrupt, but results written.
//!
//! See `README.md` in this crate for every option.

pub mod privilege;
pub mod sources;

use anyhow::{Context, Result, bail};
use clap::Parser;
use libpcap_analyzer::plugin::{Interest, Layers, Plugin, PluginRegistry, PluginResult};
use libpcap_analyzer::plugins::connections::{ConnectionsPlugin, ReportFormat};
use libpcap_analyzer::plugins::{OutputConfig, builtin_registry};
use libpcap_analyzer::{Engine, EngineConfig, PluginFactory, RunOutput};
use libpcap_live::afpacket::{CaptureLimits, LiveConfig};
use libpcap_live::nfqueue::NfqueueConfig;
use libpcap_tools::{
    Config, Flow, PacketSource, ReaderConfig, SourceEvent, SourceProgress, ipproto,
};
use sources::MultiSource;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
                  unknown plugin, no input, --filter, --nfqueue with -i or files); 3 input truncated or partly \
                  corrupt, results written."
)]
pub struct Args {
    /// Capture files (pcap or pcapng, optionally gzip/xz/lz4/zstd), read one
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
    /// report goes to standard output and nothing else is written.
    #[arg(short = 'o', long = "outdir", value_name = "DIR")]
    pub outdir: Option<PathBuf>,
    /// Worker threads (default 0: one per CPU; 1: no extra thread, least memory)
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Skip the first N packets.
    #[arg(short = 's', long = "skip", value_name = "N", default_value_t = 0)]
    pub skip: u64,
    /// Format of the connection report: text, csv or jsonl.
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
    /// its privileges ([`privilege`]); a caller of [`run`] with threads of
    /// its own leaves it `false` (the drop needs a single thread).
    #[arg(skip)]
    pub drop_privileges: bool,
}

/// The sections the tool reads, for unknown-key warnings.
const TOOL_SECTIONS: &[&str] = &["reader", "output", "log", "run", "live", "nfqueue"];

/// Section `[log]`.
#[derive(Debug, Clone, serde::Deserialize, Default)]
#[serde(default)]
struct LogConfig {
    /// Log file name in the output directory.
    file: Option<String>,
    /// Level when `PCAP_ANALYZER_LOG` is not set.
    level: Option<String>,
}

/// Section `[run]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default)]
struct RunConfig {
    /// Worker threads when `-j` is not given.
    jobs: usize,
    /// Nice steps added to worker threads (0: none), so that the reading
    /// thread keeps a core when threads outnumber cores.
    worker_nice: i32,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            jobs: 0,
            worker_nice: 5,
        }
    }
}

/// What the run produced, for the exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything read.
    Complete,
    /// Some input was truncated or corrupt; results were written.
    Partial,
}

/// Names of the layers in `l` (`link`, `network`, `transport`, `stream`),
/// comma-separated, or `-`.
fn layer_names(l: Layers) -> String {
    let mut v = Vec::new();
    for (flag, name) in [
        (Layers::LINK, "link"),
        (Layers::NETWORK, "network"),
        (Layers::TRANSPORT, "transport"),
        (Layers::STREAM, "stream"),
    ] {
        if l.contains(flag) {
            v.push(name);
        }
    }
    if v.is_empty() {
        "-".to_string()
    } else {
        v.join(",")
    }
}

/// Prints the builders (or plugins with their interests) to `out`.
fn list(
    registry: &PluginRegistry,
    config: &Config,
    plugins: bool,
    out: &mut dyn Write,
) -> Result<()> {
    for b in registry.builders() {
        let default = if b.enabled_by_default() {
            "default"
        } else {
            "optional"
        };
        if plugins {
            let p = b
                .build(config)
                .with_context(|| format!("building plugin {}", b.name()))?;
            let i = p.interest();
            let events = if i.layers.contains(Layers::FLOW_EVENTS) {
                "flow-created,flow-destroyed"
            } else {
                "-"
            };
            let protocols = i.ip_protocols.as_ref().map_or_else(
                || "all".to_string(),
                |v| {
                    v.iter()
                        .map(|p| ipproto::name(*p).map_or_else(|| p.to_string(), str::to_lowercase))
                        .collect::<Vec<_>>()
                        .join(",")
                },
            );
            let ethertypes = i.ethertypes.as_ref().map_or_else(
                || "all".to_string(),
                |v| {
                    v.iter()
                        .map(|e| format!("0x{e:04x}"))
                        .collect::<Vec<_>>()
                        .join(",")
                },
            );
            writeln!(
                out,
                "{:<14} {:<8} layers: {}; events: {}; ethertypes: {}; protocols: {}{}",
                b.name(),
                default,
                layer_names(i.layers),
                events,
                ethertypes,
                protocols,
                if i.shared { "; shared instance" } else { "" }
            )?;
        } else {
            writeln!(out, "{:<14} {:<8} {}", b.name(), default, b.description())?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Starts the logger. The level is `PCAP_ANALYZER_LOG`, else `-v` (info,
/// debug, trace), else `[log] level`, else `info` with a log file and `warn`
/// without. With `outdir`, the log goes to a file there (`[log] file`,
/// default `pcap-analyzer.log`; empty for none) and its warnings also to
/// standard error (only errors with `-q`); without, to standard error (only
/// errors with `-q`).
fn setup_logging(
    args: &Args,
    lc: &LogConfig,
    outdir: Option<&Path>,
) -> Result<Option<flexi_logger::LoggerHandle>> {
    use flexi_logger::{Duplicate, FileSpec, Logger};
    let name = lc.file.as_deref().unwrap_or("pcap-analyzer.log");
    let to_file = outdir.filter(|_| !name.is_empty());
    let default_level = match args.verbose {
        0 if args.quiet && to_file.is_none() => "error".to_string(),
        0 => lc
            .level
            .clone()
            .unwrap_or_else(|| if to_file.is_some() { "info" } else { "warn" }.to_string()),
        1 => "info".to_string(),
        2 => "debug".to_string(),
        _ => "trace".to_string(),
    };
    let level = std::env::var("PCAP_ANALYZER_LOG")
        .ok()
        .filter(|l| !l.trim().is_empty())
        .unwrap_or(default_level);
    let mut logger = Logger::try_with_str(&level).map_err(|e| {
        UsageError(format!(
            "invalid log level '{level}' ({e}); use error, warn, info, debug or trace"
        ))
    })?;
    let dup = if args.quiet {
        Duplicate::Error
    } else {
        Duplicate::Warn
    };
    logger = match to_file {
        Some(dir) => {
            let path = dir.join(name);
            let spec = FileSpec::try_from(&path)
                .with_context(|| format!("invalid log file name '{}'", path.display()))?;
            logger
                .log_to_file(spec.suppress_timestamp())
                .append()
                .duplicate_to_stderr(dup)
        }
        _ => logger.log_to_stderr(),
    };
    match logger.start() {
        Ok(h) => Ok(Some(h)),
        Err(e) => {
            eprintln!("pcap-analyzer: warning: cannot start logging: {e}");
            Ok(None)
        }
    }
}

/// A plugin that only counts flows, for the progress bar.
struct FlowCounter(Arc<AtomicU64>);

impl Plugin for FlowCounter {
    fn name(&self) -> &str {
        "pcap-analyzer-progress"
    }
    fn interest(&self) -> Interest {
        Interest::new(Layers::FLOW_EVENTS)
    }
    fn flow_created(&mut self, _flow: &Flow) -> PluginResult<()> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn merge(&mut self, _other: Box<dyn Plugin>) -> PluginResult<()> {
        Ok(())
    }
}

/// A source wrapper that feeds a progress bar.
struct Progress<'a> {
    inner: &'a mut dyn PacketSource,
    bar: indicatif::ProgressBar,
    flows: Arc<AtomicU64>,
    n: u64,
    started: Instant,
}

impl Progress<'_> {
    fn update(&self) {
        let p = self.inner.progress();
        self.bar.set_position(p.bytes);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{} packets, {:.0} packets/s, {} flows",
            p.packets,
            p.packets as f64 / secs,
            self.flows.load(Ordering::Relaxed)
        ));
    }
}

impl PacketSource for Progress<'_> {
    fn next_event(&mut self) -> libpcap_tools::Result<SourceEvent<'_>> {
        self.n += 1;
        if self.n.is_multiple_of(4096) {
            self.update();
        }
        self.inner.next_event()
    }
    fn can_share(&self) -> bool {
        self.inner.can_share()
    }
    fn next_shared(&mut self) -> libpcap_tools::Result<libpcap_tools::SharedEvent<'_>> {
        self.n += 1;
        if self.n.is_multiple_of(4096) {
            self.update();
        }
        self.inner.next_shared()
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn progress(&self) -> SourceProgress {
        self.inner.progress()
    }
    fn warnings(&self) -> &[libpcap_tools::Error] {
        self.inner.warnings()
    }
}

/// The OS reason of an I/O error without the "(os error N)" suffix.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Reads section `name` of the configuration, naming the file on error.
/// An error of the configuration, naming the file it came from, if any.
fn invalid_config(file: Option<&Path>, e: impl std::fmt::Display) -> anyhow::Error {
    match file {
        Some(f) => anyhow::anyhow!("invalid configuration file '{}': {e}", f.display()),
        None => anyhow::anyhow!("{e}"),
    }
}

fn section<T: serde::de::DeserializeOwned>(
    config: &Config,
    name: &str,
    file: Option<&Path>,
) -> Result<T> {
    config.section(name).map_err(|e| match file {
        Some(f) => anyhow::anyhow!(
            "invalid configuration file '{}': {}; fix the value or remove the key",
            f.display(),
            e.to_string()
                .trim_start_matches("configuration: ")
                .trim_end()
                .replace('\n', " ")
        ),
        None => anyhow::anyhow!("{e}"),
    })
}

/// Loads the configuration file, if any.
fn load_config(path: Option<&Path>) -> Result<Config> {
    let Some(p) = path else {
        return Ok(Config::new());
    };
    Config::from_file(p).map_err(|e| match e {
        libpcap_tools::Error::Open { path, source } => anyhow::anyhow!(
            "cannot open configuration file '{}': {}; check the path given to --config",
            path.display(),
            io_reason(&source)
        ),
        libpcap_tools::Error::Config(m) => anyhow::anyhow!(
            "invalid configuration file: {}",
            m.trim_start_matches("configuration: ")
        ),
        other => anyhow::anyhow!("configuration file '{}': {other}", p.display()),
    })
}

/// Runs the tool with parsed arguments, writing reports to `stdout`.
///
/// # Errors
/// Any error that should end the run with exit code 1, or a [`UsageError`]
/// (exit code 2); see [`exit_code`].
pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<Outcome> {
    let cfg_file = args.config.as_deref();
    let mut config = load_config(cfg_file)?;
    let registry = builtin_registry();
    let output: OutputConfig = section(&config, "output", cfg_file)?;
    let outdir = args.outdir.clone().or(output.dir);
    if let Some(dir) = &outdir {
        config.set("output", "dir", dir.display().to_string());
        let mut t = toml::Table::new();
        t.insert("outdir".into(), dir.display().to_string().into());
        config.set(
            "plugin",
            "connections",
            toml::Value::Table(merge_table(&config, "connections", t)),
        );
    }
    if let Some(f) = args.format {
        let mut t = toml::Table::new();
        t.insert(
            "format".into(),
            toml::Value::String(
                match f {
                    ReportFormat::Text => "text",
                    ReportFormat::Csv => "csv",
                    ReportFormat::Jsonl => "jsonl",
                }
                .to_string(),
            ),
        );
        config.set(
            "plugin",
            "connections",
            toml::Value::Table(merge_table(&config, "connections", t)),
        );
    }

    if args.list_builders || args.list_plugins {
        list(&registry, &config, args.list_plugins, stdout)?;
        return Ok(Outcome::Complete);
    }
    if args.filter.is_some() {
        return Err(UsageError(
            "live capture filters (--filter) are not available in this build yet; capture \
             without a filter (-i IFACE), or record the traffic to a file (e.g. with tcpdump -w \
             and a filter) and analyse the file"
                .to_string(),
        )
        .into());
    }
    let nfqueue = args.nfqueue;
    if nfqueue.is_some() && (args.interface.is_some() || !args.inputs.is_empty() || args.skip > 0) {
        return Err(UsageError(
            "--nfqueue reads the packets of a netfilter queue: give no -i, no input file and no \
             --skip with it"
                .to_string(),
        )
        .into());
    }
    if (args.duration.is_some() || args.count.is_some() || args.no_promiscuous)
        && args.interface.is_none()
        && nfqueue.is_none()
    {
        return Err(UsageError(
            "--duration, --count and --no-promiscuous apply to live input: give -i IFACE or \
             --nfqueue QUEUE"
                .to_string(),
        )
        .into());
    }
    // live input: an interface or netfilter queues
    let live = args.interface.as_deref();
    let is_live = live.is_some() || nfqueue.is_some();
    if live.is_some() && (!args.inputs.is_empty() || args.skip > 0) {
        return Err(UsageError(
            "--interface captures live: give no input file and no --skip with it".to_string(),
        )
        .into());
    }
    if let Some(d) = args.duration
        && !(d.is_finite() && d > 0.0)
    {
        return Err(
            UsageError(format!("--duration {d}: give a positive number of seconds")).into(),
        );
    }
    let interval_set = config
        .table()
        .get("plugin")
        .and_then(|p| p.get("connections"))
        .and_then(|c| c.get("interval"))
        .is_some();
    if is_live && !interval_set {
        // a live report is rewritten every 5 s unless told otherwise
        let mut t = toml::Table::new();
        t.insert("interval".into(), toml::Value::Float(5.0));
        config.set(
            "plugin",
            "connections",
            toml::Value::Table(merge_table(&config, "connections", t)),
        );
    }
    if args.inputs.is_empty() && !is_live {
        return Err(UsageError(
            "no input given: pass one or more capture files, or '-' for standard input \
             (see --help)"
                .to_string(),
        )
        .into());
    }
    let selected = registry
        .select(args.plugins.as_deref())
        .map_err(|e| UsageError(e.source.to_string()))?;
    let reader_cfg: ReaderConfig = section(&config, "reader", cfg_file)?;
    let run_cfg: RunConfig = section(&config, "run", cfg_file)?;
    let log_cfg: LogConfig = section(&config, "log", cfg_file)?;
    let mut live_cfg: LiveConfig = section(&config, LiveConfig::SECTION, cfg_file)?;
    if args.no_promiscuous {
        live_cfg.promiscuous = false;
    }
    if live.is_some() {
        live_cfg
            .validate(libpcap_live::sys::page_size())
            .map_err(|e| invalid_config(cfg_file, e))?;
    }
    let nfq_cfg: NfqueueConfig = section(&config, NfqueueConfig::SECTION, cfg_file)?;
    if nfqueue.is_some() {
        nfq_cfg
            .validate()
            .map_err(|e| invalid_config(cfg_file, e))?;
    }
    let jobs = args.jobs.unwrap_or(run_cfg.jobs);
    let stdin_count = args.inputs.iter().filter(|p| p.as_os_str() == "-").count();
    if stdin_count > 1 {
        return Err(UsageError("standard input ('-') can be read only once".to_string()).into());
    }
    for p in &args.inputs {
        if p.as_os_str() == "-" {
            continue;
        }
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => bail!(
                "cannot read '{}': it is a directory; pass the capture files in it",
                p.display()
            ),
            Ok(_) => {
                std::fs::File::open(p).map_err(|e| {
                    anyhow::anyhow!("cannot open '{}': {}", p.display(), io_reason(&e))
                })?;
            }
            Err(e) => bail!(
                "cannot open '{}': {}; check the path",
                p.display(),
                io_reason(&e)
            ),
        }
    }
    // --- privileges (1/2): resolve --user before anything is opened
    let privileges = privilege::Privileges::prepare(args, outdir.as_deref())?;
    if let Some(dir) = &outdir {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create output directory '{}': {}; choose another one with -o",
                dir.display(),
                io_reason(&e)
            )
        })?;
    }
    // warnings about the configuration found before the logger started
    let early = config.take_warnings();
    let _logger = setup_logging(args, &log_cfg, outdir.as_deref())?;
    for w in early {
        log::warn!("{w}");
    }
    log::info!(
        "pcap-analyzer {}: inputs {}; plugins {}; {} worker(s)",
        env!("CARGO_PKG_VERSION"),
        match (live, nfqueue) {
            (Some(i), _) => format!("interface '{i}'"),
            (None, Some(q)) => format!("NFQUEUE queue {q}"),
            (None, None) => args
                .inputs
                .iter()
                .map(|p| format!("'{}'", p.display()))
                .collect::<Vec<_>>()
                .join(", "),
        },
        selected.join(","),
        jobs
    );
    let mut known: Vec<&str> = TOOL_SECTIONS.to_vec();
    known.extend_from_slice(EngineConfig::SECTIONS);
    let names = registry.names();
    config.check_sections(&known, Some(&names));

    // check the plugins build before reading anything
    registry
        .build(&selected, &privilege::without_writer_thread(&config))
        .map_err(|e| match cfg_file {
            Some(f) => anyhow::anyhow!("{e} (configuration file '{}')", f.display()),
            None => anyhow::anyhow!("{e}"),
        })?;
    let mut engine = Engine::new(&config, jobs).map_err(|e| invalid_config(cfg_file, e))?;
    // live: no reading thread to favour, each worker reads its own socket
    if engine.jobs() > 1 && run_cfg.worker_nice > 0 && !is_live {
        let nice = run_cfg.worker_nice;
        engine = engine.with_worker_init(Arc::new(move || {
            if let Err(e) = libpcap_live::sys::lower_thread_priority(nice) {
                log::debug!("cannot lower the priority of a worker thread: {e}");
            }
        }));
    }
    let show_bar = !args.quiet && std::io::stderr().is_terminal() && !is_live;
    let flows_seen = Arc::new(AtomicU64::new(0));
    let factory = || -> PluginResult<Vec<Box<dyn Plugin>>> {
        let mut v = registry.build(&selected, &config)?;
        if show_bar {
            v.push(Box::new(FlowCounter(flows_seen.clone())));
        }
        Ok(v)
    };
    // --- privileges (2/2): every input is opened here, then the one drop,
    // before any thread starts (the engine starts them)
    let nfq_group = match nfqueue {
        Some(first) => Some(
            libpcap_live::nfqueue::open(first, engine.jobs(), &nfq_cfg, limits(args))
                .map_err(|e| anyhow::anyhow!("cannot start inline mode: {e}"))?,
        ),
        None => None,
    };
    let live_group = match live {
        Some(iface) => Some(
            libpcap_live::afpacket::open(iface, &live_cfg, engine.jobs(), limits(args))
                .map_err(|e| anyhow::anyhow!("cannot capture on '{iface}': {e}"))?,
        ),
        None => None,
    };
    let single = match args.inputs.as_slice() {
        // classic pcap is read into shared chunks (no copy to the workers);
        // pcapng, compressed input and stdin through the streaming reader
        [path] if !is_live && args.skip == 0 => Some(
            libpcap_tools::open_capture(path, &reader_cfg)
                .with_context(|| format!("cannot read '{}'", path.display()))?,
        ),
        _ => None,
    };
    let multi = match (is_live, &single) {
        (false, None) => Some(MultiSource::open(
            args.inputs.clone(),
            reader_cfg,
            args.skip,
        )?),
        _ => None,
    };
    let mut dropped = privileges.drop_now(args, &config)?;
    // --- end of privileges
    let started = Instant::now();
    let mut capture = None;
    let mut inline = None;
    let (mut output, warnings, progress) = if let (Some(first), Some(group)) = (nfqueue, nfq_group)
    {
        let handle = group.handle.clone();
        let last = usize::from(first) + handle.queues() - 1;
        let ready = format!(
            "inline on NFQUEUE queue{} ({}fail-open); stop with Ctrl-C",
            if handle.queues() > 1 {
                format!("s {first}..{last}")
            } else {
                format!(" {first}")
            },
            if nfq_cfg.fail_open { "" } else { "not " },
        );
        let out = run_live(
            &engine,
            &factory,
            group.sources,
            handle.stop_flag(),
            &ready,
            args,
        )
        .with_context(|| format!("inline on NFQUEUE queue {first}"))?;
        let k = handle.stats();
        log::info!(
            "inline mode ended: {} packets delivered, {} accepted, {} dropped by verdict; kernel: \
             {} queue-full, {} socket-full",
            handle.delivered(),
            k.accepted,
            k.dropped,
            k.queue_dropped,
            k.user_dropped
        );
        let progress = live_progress(&out, k.queue_dropped + k.user_dropped);
        inline = Some(handle);
        (out, Vec::new(), progress)
    } else if let (Some(iface), Some(group)) = (live, live_group) {
        let handle = group.handle.clone();
        let ready = format!(
            "capturing on {iface} ({} socket{}{}, link type {}, {}promiscuous); stop with Ctrl-C",
            handle.sockets(),
            if handle.sockets() > 1 { "s" } else { "" },
            if handle.sockets() > 1 {
                " in a fanout group"
            } else {
                ""
            },
            handle.linktype(),
            if live_cfg.promiscuous { "" } else { "not " },
        );
        let out = run_live(
            &engine,
            &factory,
            group.sources,
            handle.stop_flag(),
            &ready,
            args,
        )
        .with_context(|| format!("capturing on '{iface}'"))?;
        let k = handle.kernel_stats();
        log::info!(
            "capture on {iface} ended: {} packets delivered; kernel: {} received, {} dropped, {} freezes",
            handle.delivered(),
            k.packets,
            k.drops,
            k.freeze_count
        );
        let progress = live_progress(&out, k.drops);
        capture = Some(handle);
        (out, Vec::new(), progress)
    } else if let (Some(mut src), [path]) = (single, args.inputs.as_slice()) {
        log::info!("reading {}", path.display());
        let out = run_engine(&engine, &factory, src.as_mut(), show_bar, &flows_seen)
            .with_context(|| format!("analysing '{}'", path.display()))?;
        let w: Vec<String> = src
            .warnings()
            .iter()
            .map(|e| format!("{}: {e}", path.display()))
            .collect();
        (out, w, src.progress())
    } else if let Some(mut src) = multi {
        let out = run_engine(&engine, &factory, &mut src, show_bar, &flows_seen)?;
        let w: Vec<String> = src.warnings().to_vec();
        (out, w, src.progress())
    } else {
        bail!("no input was opened");
    };
    let mut warnings = warnings;
    if let Some(w) = &output.warning {
        warnings.push(w.to_string());
    }
    let elapsed = started.elapsed();
    log::debug!("analysis done after {elapsed:?}");

    match &outdir {
        Some(dir) => {
            output.save_results(dir).map_err(|e| {
                anyhow::anyhow!("cannot save the results in '{}': {e}", dir.display())
            })?;
        }
        None => {
            // written piece by piece: a report of a million rows is ~100 MB
            if let Some(conn) = connections_plugin(&output)
                && let Err(e) = conn.write_report(stdout).and_then(|()| stdout.flush())
            {
                return Err(e).context("writing the report to standard output");
            }
        }
    }
    log::debug!("results written after {:?}", started.elapsed());
    let mut summary = summary_json(&output, &progress, elapsed, &warnings);
    if let (Some(h), Some(obj)) = (&capture, summary.as_object_mut()) {
        let k = h.kernel_stats();
        obj.insert(
            "live".to_string(),
            serde_json::json!({
                "interface": h.interface(),
                "sockets": h.sockets(),
                "kernel_packets": k.packets,
                "kernel_drops": k.drops,
                "kernel_freeze_count": k.freeze_count,
            }),
        );
    }
    if let (Some(h), Some(obj)) = (&inline, summary.as_object_mut()) {
        let k = h.stats();
        obj.insert(
            "nfqueue".to_string(),
            serde_json::json!({
                "first_queue": h.first_queue(),
                "queues": h.queues(),
                "accepted": k.accepted,
                "dropped_by_verdict": k.dropped,
                "kernel_queue_dropped": k.queue_dropped,
                "kernel_user_dropped": k.user_dropped,
                "enobufs": k.enobufs,
                "malformed": k.malformed,
            }),
        );
    }
    if let (Some(p), Some(obj)) = (dropped.json(), summary.as_object_mut()) {
        obj.insert("privileges".to_string(), p);
    }
    if args.stats_json.is_some() {
        // through the file opened before the privilege drop
        dropped.write_stats(&(serde_json::to_string_pretty(&summary)? + "\n"))?;
    }
    for w in &warnings {
        log::warn!("{w}; the results cover every packet before that point");
    }
    if !args.quiet {
        // a closed standard error is not worth failing the run for
        let _ = std::io::stderr().write_all(summary_text(&summary).as_bytes());
    }
    Ok(if warnings.is_empty() {
        Outcome::Complete
    } else {
        Outcome::Partial
    })
}

/// The `[plugin.NAME]` table of `config` with the keys of `extra` added
/// (command-line values override the file).
fn merge_table(config: &Config, plugin: &str, extra: toml::Table) -> toml::Table {
    let mut t = config
        .table()
        .get("plugin")
        .and_then(|p| p.get(plugin))
        .and_then(|v| v.as_table())
        .cloned()
        .unwrap_or_default();
    t.extend(extra);
    t
}

fn run_engine(
    engine: &Engine,
    factory: PluginFactory<'_>,
    src: &mut dyn PacketSource,
    show_bar: bool,
    flows: &Arc<AtomicU64>,
) -> Result<RunOutput> {
    if !show_bar {
        return Ok(engine.run(factory, src)?);
    }
    let total = src.progress().total_bytes;
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template = if total.is_some() {
        "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg}"
    } else {
        "{spinner} [{elapsed_precise}] {bytes} {msg}"
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut p = Progress {
        inner: src,
        bar: bar.clone(),
        flows: flows.clone(),
        n: 0,
        started: Instant::now(),
    };
    let out = engine.run(factory, &mut p);
    bar.finish_and_clear();
    Ok(out?)
}

/// The `--count` / `--duration` limits of a live run.
fn limits(args: &Args) -> CaptureLimits {
    CaptureLimits {
        max_packets: args.count,
        duration: args.duration.map(Duration::from_secs_f64),
    }
}

/// Runs live `sources` (one per worker) until they end: SIGINT/SIGTERM set
/// `stop` (the sources then end cleanly; a second signal ends the process
/// with code 130), and `ready` is said once they are up.
fn run_live<S: PacketSource + 'static>(
    engine: &Engine,
    factory: PluginFactory<'_>,
    sources: Vec<S>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    ready: &str,
    args: &Args,
) -> Result<RunOutput> {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, stop.clone()))
            .context("installing the signal handlers")?;
    }
    log::info!("{ready}");
    if !args.quiet {
        eprintln!("pcap-analyzer: {ready}");
    }
    let sources = sources
        .into_iter()
        .map(|s| Box::new(s) as Box<dyn PacketSource>)
        .collect();
    Ok(engine.run_sources(factory, sources)?)
}

/// The progress of a live run: what was analysed, what the kernel dropped.
fn live_progress(out: &RunOutput, dropped: u64) -> SourceProgress {
    SourceProgress {
        packets: out.stats.packets,
        bytes: out.stats.bytes,
        total_bytes: None,
        dropped: Some(dropped),
    }
}

/// The connection report of a run, if the plugin ran.
pub fn connection_report(output: &RunOutput) -> Option<String> {
    connections_plugin(output).map(ConnectionsPlugin::render)
}

/// The `connections` plugin of a run, if it ran.
fn connections_plugin(output: &RunOutput) -> Option<&ConnectionsPlugin> {
    output.plugins.iter().find_map(|p| {
        let any: &dyn std::any::Any = p.as_ref();
        any.downcast_ref::<ConnectionsPlugin>()
    })
}

/// The machine-readable summary of a run.
pub fn summary_json(
    output: &RunOutput,
    progress: &SourceProgress,
    elapsed: Duration,
    warnings: &[String],
) -> serde_json::Value {
    let s = &output.stats;
    let secs = elapsed.as_secs_f64();
    serde_json::json!({
        "packets": s.packets,
        "bytes": s.bytes,
        "input_bytes": progress.bytes,
        "flows": output.flows.created,
        "flows_ended": {
            "fin": output.flows.ended_fin, "rst": output.flows.ended_rst,
            "timeout": output.flows.ended_timeout, "eviction": output.flows.ended_eviction,
            "end_of_input": output.flows.ended_end_of_input,
        },
        "anomalies": s.anomalies,
        "plugin_errors": s.plugin_errors,
        "duration_s": secs,
        "packets_per_s": if secs > 0.0 { s.packets as f64 / secs } else { 0.0 },
        "warnings": warnings,
    })
}

fn summary_text(v: &serde_json::Value) -> String {
    let g = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let secs = v
        .get("duration_s")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    let mut s = format!(
        "packets: {}  bytes: {}  flows: {}  duration: {:.3} s  rate: {:.0} packets/s\n",
        g("packets"),
        g("bytes"),
        g("flows"),
        secs,
        v.get("packets_per_s")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    );
    if let Some(l) = v.get("live") {
        let n = |k: &str| l.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        s.push_str(&format!(
            "live capture on {} ({} socket(s)): {} packets received by the kernel, {} dropped \
             by the kernel (ring full), {} ring freezes\n",
            l.get("interface")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?"),
            n("sockets"),
            n("kernel_packets"),
            n("kernel_drops"),
            n("kernel_freeze_count"),
        ));
    }
    if let Some(l) = v.get("nfqueue") {
        let n = |k: &str| l.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        s.push_str(&format!(
            "inline on NFQUEUE queue {} ({} queue(s)): {} accepted, {} dropped by verdict; \
             kernel: {} not queued (queue full), {} not delivered (socket full){}\n",
            n("first_queue"),
            n("queues"),
            n("accepted"),
            n("dropped_by_verdict"),
            n("kernel_queue_dropped"),
            n("kernel_user_dropped"),
            if n("malformed") > 0 {
                format!(", {} malformed messages", n("malformed"))
            } else {
                String::new()
            },
        ));
    }
    if let Some(a) = v
        .get("anomalies")
        .and_then(|a| a.as_object())
        .filter(|a| !a.is_empty())
    {
        let list: Vec<String> = a.iter().map(|(k, n)| format!("{k}={n}")).collect();
        s.push_str(&format!("anomalies: {}\n", list.join(" ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("pcap-analyzer").chain(list.iter().copied())).unwrap()
    }

    fn fixture(name: &str) -> String {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/pcap")
            .join(name)
            .display()
            .to_string()
    }

    #[test]
    fn exit_codes_follow_the_outcome() {
        assert_eq!(exit_code(&Ok(Outcome::Complete)), EXIT_OK);
        assert_eq!(exit_code(&Ok(Outcome::Partial)), EXIT_PARTIAL);
        assert_eq!(exit_code(&Err(anyhow::anyhow!("x"))), EXIT_ERROR);
        let usage: anyhow::Error = UsageError("u".into()).into();
        assert_eq!(exit_code(&Err(usage.context("while starting"))), EXIT_USAGE);
        let pipe = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            .context("writing");
        assert_eq!(exit_code(&Err(pipe)), EXIT_OK);
    }

    #[test]
    fn io_reason_drops_the_os_error_number() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&e), "No such file or directory");
    }

    #[test]
    fn layer_names_are_listed_in_order() {
        assert_eq!(
            layer_names(Layers::TRANSPORT | Layers::LINK),
            "link,transport"
        );
        assert_eq!(layer_names(Layers::FLOW_EVENTS), "-");
    }

    #[test]
    fn run_writes_the_report_to_the_given_writer() {
        let mut out = Vec::new();
        let r = run(
            &args(&["-q", "-p", "connections", &fixture("sample.pcap")]),
            &mut out,
        );
        assert_eq!(r.unwrap(), Outcome::Complete);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("source ip;"), "{text}");
    }

    #[test]
    fn stdin_twice_is_a_usage_error() {
        let r = run(&args(&["-q", "-", "-"]), &mut Vec::new());
        assert_eq!(exit_code(&r), EXIT_USAGE);
    }

    #[test]
    fn a_directory_as_input_is_an_error_naming_it() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).display().to_string();
        let r = run(&args(&["-q", &dir]), &mut Vec::new());
        let e = r.unwrap_err();
        assert!(format!("{e:#}").contains("is a directory"), "{e:#}");
    }

    #[test]
    fn summary_text_lists_anomalies_by_kind() {
        let v = serde_json::json!({
            "packets": 3, "bytes": 180, "flows": 1, "duration_s": 0.5,
            "packets_per_s": 6.0, "anomalies": { "ipv4_truncated": 2 }
        });
        let s = summary_text(&v);
        assert!(s.contains("packets: 3"), "{s}");
        assert!(s.contains("anomalies: ipv4_truncated=2"), "{s}");
    }
}
