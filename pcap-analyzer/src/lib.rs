//! The `pcap-analyzer` command: argument parsing, logging, the run and the
//! summary. `main.rs` only maps the outcome to an exit code.
//!
//! Exit codes: 0 success; 1 error (unreadable input, bad configuration,
//! plugin failure); 2 usage error; 3 input truncated or partly corrupt, but
//! results written.

pub mod sources;

use anyhow::{Context, Result, bail};
use clap::Parser;
use libpcap_analyzer::plugin::PluginRegistry;
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_analyzer::plugins::connections::{ConnectionsPlugin, ReportFormat};
use libpcap_analyzer::{Engine, EngineConfig, RunOutput};
use libpcap_tools::{
    CaptureReader, Config, LenientSource, PacketSource, ReaderConfig, SourceEvent, SourceProgress,
};
use sources::MultiSource;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Exit code: input truncated or partly corrupt, results written.
pub const EXIT_PARTIAL: u8 = 3;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "pcap-analyzer",
    version,
    about = "Analyse network captures: connection report, flows, DNS, TLS"
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
    /// Worker threads (0: one per CPU; 1: no extra thread).
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
    /// Capture live from this interface (AF_PACKET).
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub interface: Option<String>,
    /// Capture filter (BPF syntax) for live capture.
    #[arg(short = 'f', long = "filter", value_name = "EXPR")]
    pub filter: Option<String>,
    /// Inline mode: read from this NFQUEUE queue number and give verdicts.
    #[arg(long = "nfqueue", value_name = "QUEUE")]
    pub nfqueue: Option<u16>,
    /// Write the run summary as JSON to this file.
    #[arg(long = "stats-json", value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
}

/// The sections the tool reads, for unknown-key warnings.
const TOOL_SECTIONS: &[&str] = &["reader", "output", "log", "run"];

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
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig { jobs: 1 }
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
            let filt = |v: &Option<Vec<u8>>| v.as_ref().map(|v| format!(" protocols {v:?}"));
            writeln!(
                out,
                "{:<14} {:<8} layers: {:?}{}{}{}",
                b.name(),
                default,
                i.layers,
                i.ethertypes
                    .as_ref()
                    .map(|e| format!(" ethertypes {e:04x?}"))
                    .unwrap_or_default(),
                filt(&i.ip_protocols).unwrap_or_default(),
                if i.shared { " (shared instance)" } else { "" }
            )?;
        } else {
            writeln!(out, "{:<14} {:<8} {}", b.name(), default, b.description())?;
        }
    }
    Ok(())
}

fn setup_logging(args: &Args, config: &Config) -> Result<Option<flexi_logger::LoggerHandle>> {
    use flexi_logger::{Duplicate, FileSpec, Logger};
    let lc: LogConfig = config.section("log")?;
    let default_level = match (args.quiet, args.verbose) {
        (true, _) => "error".to_string(),
        (false, 0) => lc.level.clone().unwrap_or_else(|| "warn".to_string()),
        (false, 1) => "info".to_string(),
        (false, 2) => "debug".to_string(),
        _ => "trace".to_string(),
    };
    let level = std::env::var("PCAP_ANALYZER_LOG").unwrap_or(default_level);
    let mut logger = Logger::try_with_str(&level).context("invalid PCAP_ANALYZER_LOG level")?;
    let dup = if args.quiet {
        Duplicate::Error
    } else {
        Duplicate::Warn
    };
    logger = match (
        &args.outdir,
        lc.file.as_deref().unwrap_or("pcap-analyzer.log"),
    ) {
        (Some(dir), name) if !name.is_empty() => {
            let spec = FileSpec::try_from(dir.join(name)).context("log file name")?;
            logger
                .log_to_file(spec.suppress_timestamp())
                .append()
                .duplicate_to_stderr(dup)
        }
        _ => logger.log_to_stderr(),
    };
    Ok(logger.start().ok())
}

/// A source wrapper that feeds a progress bar.
struct Progress<'a> {
    inner: &'a mut dyn PacketSource,
    bar: indicatif::ProgressBar,
    n: u64,
    started: Instant,
}

impl PacketSource for Progress<'_> {
    fn next_event(&mut self) -> libpcap_tools::Result<SourceEvent<'_>> {
        self.n += 1;
        if self.n.is_multiple_of(16384) {
            let p = self.inner.progress();
            self.bar.set_position(p.bytes);
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            self.bar.set_message(format!(
                "{} packets, {:.0} packets/s",
                p.packets,
                p.packets as f64 / secs
            ));
        }
        self.inner.next_event()
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn progress(&self) -> SourceProgress {
        self.inner.progress()
    }
}

/// Runs the tool with parsed arguments, writing reports to `stdout`.
///
/// # Errors
/// Any error that should end the run with exit code 1.
pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<Outcome> {
    let mut config = match &args.config {
        Some(p) => Config::from_file(p)?,
        None => Config::new(),
    };
    let registry = builtin_registry();
    if let Some(dir) = &args.outdir {
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
    let _logger = setup_logging(args, &config)?;
    let mut known: Vec<&str> = TOOL_SECTIONS.to_vec();
    known.extend_from_slice(EngineConfig::SECTIONS);
    let names = registry.names();
    config.check_sections(&known, Some(&names));

    if args.list_builders || args.list_plugins {
        list(&registry, &config, args.list_plugins, stdout)?;
        return Ok(Outcome::Complete);
    }
    if args.interface.is_some() || args.nfqueue.is_some() || args.filter.is_some() {
        bail!(
            "live capture (--interface, --filter, --nfqueue) is not available in this build yet; analyse a capture file instead"
        );
    }
    if args.inputs.is_empty() {
        bail!("no input given: pass one or more capture files, or '-' for standard input");
    }
    let selected = registry
        .select(args.plugins.as_deref())
        .map_err(|e| anyhow::anyhow!("{}", e.source))?;
    // check the plugins build before reading anything
    registry
        .build(&selected, &config)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let reader_cfg: ReaderConfig = config.section("reader")?;
    let run_cfg: RunConfig = config.section("run")?;
    let jobs = args.jobs.unwrap_or(run_cfg.jobs);
    for p in &args.inputs {
        if p.as_os_str() != "-" {
            std::fs::File::open(p).with_context(|| format!("cannot open '{}'", p.display()))?;
        }
    }
    if let Some(dir) = &args.outdir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory '{}'", dir.display()))?;
    }

    let engine = Engine::new(&config, jobs)?;
    let factory = || registry.build(&selected, &config);
    let started = Instant::now();
    let show_bar = !args.quiet && std::io::stderr().is_terminal();
    let (mut output, warnings, progress) = if args.inputs.len() == 1 && args.skip == 0 {
        let path = &args.inputs[0];
        let reader = CaptureReader::open(path, &reader_cfg)
            .with_context(|| format!("cannot read '{}'", path.display()))?;
        let mut src = LenientSource::new(reader);
        let out = run_engine(&engine, &factory, &mut src, show_bar)?;
        let w: Vec<String> = src
            .warnings()
            .iter()
            .map(|e| format!("{}: {e}", path.display()))
            .collect();
        (out, w, src.progress())
    } else {
        let mut src = MultiSource::new(args.inputs.clone(), reader_cfg, args.skip);
        let out = run_engine(&engine, &factory, &mut src, show_bar)?;
        let w: Vec<String> = src.warnings().iter().map(|e| e.to_string()).collect();
        (out, w, src.progress())
    };
    let mut warnings = warnings;
    if let Some(w) = &output.warning {
        warnings.push(w.to_string());
    }
    let elapsed = started.elapsed();

    match &args.outdir {
        Some(dir) => {
            output
                .save_results(dir)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        None => {
            if let Some(report) = connection_report(&output)
                && let Err(e) = stdout
                    .write_all(report.as_bytes())
                    .and_then(|()| stdout.flush())
                && e.kind() != std::io::ErrorKind::BrokenPipe
            {
                return Err(e).context("writing the report to standard output");
            }
        }
    }
    let summary = summary_json(&output, &progress, elapsed, &warnings);
    if let Some(path) = &args.stats_json {
        let text = serde_json::to_string_pretty(&summary)? + "\n";
        std::fs::write(path, text).with_context(|| format!("cannot write '{}'", path.display()))?;
    }
    if !args.quiet {
        eprint!("{}", summary_text(&summary));
    }
    for w in &warnings {
        log::warn!("{w}");
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
    factory: &(
         dyn Fn() -> libpcap_analyzer::plugin::PluginResult<
        Vec<Box<dyn libpcap_analyzer::plugin::Plugin>>,
    > + Sync
     ),
    src: &mut dyn PacketSource,
    show_bar: bool,
) -> Result<RunOutput> {
    if !show_bar {
        return Ok(engine.run(factory, src)?);
    }
    let total = src.progress().total_bytes;
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut p = Progress {
        inner: src,
        bar: bar.clone(),
        n: 0,
        started: Instant::now(),
    };
    let out = engine.run(factory, &mut p);
    bar.finish_and_clear();
    Ok(out?)
}

/// The connection report of a run, if the plugin ran.
pub fn connection_report(output: &RunOutput) -> Option<String> {
    output.plugins.iter().find_map(|p| {
        let any: &dyn std::any::Any = p.as_ref();
        any.downcast_ref::<ConnectionsPlugin>()
            .map(ConnectionsPlugin::render)
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
