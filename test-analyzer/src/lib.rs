//! `test-analyzer`: the PAL analysis engine for plugin authors.
//!
//! - Every plugin is available: the built-in ones (including the debug
//!   plugin `hexdump`), the `port-scan` plugin of `explugin-example`, and
//!   [`trace`], which prints one line per packet with its decoded layers and
//!   the flow it joined (`--trace`).
//! - Logs go to standard error at the level of `PCAP_ANALYZER_LOG` (default
//!   `warn`); setting it also forces one worker (`-j 1`), so that log lines
//!   come in packet order.
//! - Golden cases ([`case`]): `--check CASE_DIR` runs a capture with a
//!   configuration and compares the saved plugin results with the expected
//!   ones stored in the case; `--update` rewrites them.
//!
//! Exit codes: 0 success; 1 error, or a case whose results differ; 2 usage
//! error.

pub mod case;
pub mod compare;
pub mod trace;

use anyhow::{Context, Result};
use clap::Parser;
use libpcap_analyzer::Engine;
use libpcap_analyzer::plugin::{Plugin, PluginRegistry, PluginResult};
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_tools::{CaptureReader, Config, LenientSource, ReaderConfig};
use std::io::Write;
use std::path::PathBuf;

/// Exit code: an error in how the tool was called.
pub const EXIT_USAGE: u8 = 2;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "test-analyzer",
    version,
    about = "Run PAL plugins on a capture for plugin development: trace, debug plugins, golden cases"
)]
pub struct Args {
    /// Capture file (pcap or pcapng, optionally compressed); `-` reads
    /// standard input.
    #[arg(value_name = "INPUT")]
    pub input: Option<PathBuf>,
    /// Configuration file (TOML, as for pcap-analyzer).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Plugins to run, comma-separated (default: the default plugins; none
    /// with --trace).
    #[arg(
        short = 'p',
        long = "plugins",
        value_name = "A,B",
        value_delimiter = ','
    )]
    pub plugins: Option<Vec<String>>,
    /// Output directory for the plugins' results (created if missing).
    /// Without it the results are printed as JSON lines.
    #[arg(short = 'o', long = "outdir", value_name = "DIR")]
    pub outdir: Option<PathBuf>,
    /// Worker threads (forced to 1 when PCAP_ANALYZER_LOG is set).
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Print one line per packet: decoded layers (tunnel depth, ethertype,
    /// protocol, 5-tuple) and the flow it joined (id, direction).
    #[arg(long = "trace")]
    pub trace: bool,
    /// List the plugins and exit.
    #[arg(long = "list-plugins")]
    pub list_plugins: bool,
    /// Run the golden case in DIR (or every case under DIR) and compare its
    /// results with the expected ones. Repeatable.
    #[arg(long = "check", value_name = "CASE_DIR")]
    pub check: Vec<PathBuf>,
    /// With --check: rewrite the expected results instead of comparing.
    #[arg(long = "update", requires = "check")]
    pub update: bool,
}

/// Every plugin builder: the built-in ones, `port-scan` and `trace`.
pub fn registry() -> PluginRegistry {
    let mut r = builtin_registry();
    explugin_example::register(&mut r);
    r.add_builder(Box::new(TraceBuilder));
    r
}

/// Builder of [`trace::TracePlugin`] (off by default).
#[derive(Debug)]
pub struct TraceBuilder;

impl libpcap_analyzer::plugin::PluginBuilder for TraceBuilder {
    fn name(&self) -> &str {
        trace::NAME
    }
    fn description(&self) -> &str {
        "one line per packet with its decoded layers and flow (trace.txt)"
    }
    fn enabled_by_default(&self) -> bool {
        false
    }
    fn build(&self, _config: &Config) -> PluginResult<Box<dyn Plugin>> {
        Ok(Box::new(trace::TracePlugin::new()))
    }
}

/// Sets up logging to standard error at the level of `PCAP_ANALYZER_LOG`
/// (`warn` when unset or invalid); the handle must live until the end.
pub fn setup_logging() -> Option<flexi_logger::LoggerHandle> {
    let level = std::env::var("PCAP_ANALYZER_LOG")
        .ok()
        .filter(|l| !l.trim().is_empty())
        .unwrap_or_else(|| "warn".to_string());
    let logger = flexi_logger::Logger::try_with_str(&level)
        .or_else(|_| flexi_logger::Logger::try_with_str("warn"))
        .ok()?;
    logger.log_to_stderr().start().ok()
}

/// `true` when `PCAP_ANALYZER_LOG` is set (one worker then).
fn log_env_set() -> bool {
    std::env::var_os("PCAP_ANALYZER_LOG").is_some_and(|v| !v.is_empty())
}

/// Runs the tool; returns the exit code.
///
/// # Errors
/// An error that ends the run with exit code 1.
pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<u8> {
    let registry = registry();
    if args.list_plugins {
        for b in registry.builders() {
            let d = if b.enabled_by_default() {
                "default"
            } else {
                "optional"
            };
            writeln!(stdout, "{:<14} {:<8} {}", b.name(), d, b.description())?;
        }
        return Ok(0);
    }
    let jobs = if log_env_set() { 1 } else { args.jobs };
    if !args.check.is_empty() {
        let forced = log_env_set().then_some(1);
        return check(args, &registry, forced, stdout);
    }
    let Some(input) = &args.input else {
        eprintln!("test-analyzer: error: no input given: pass a capture file, or --check CASE_DIR");
        return Ok(EXIT_USAGE);
    };
    let mut config = match &args.config {
        Some(p) => Config::from_file(p)?,
        None => Config::new(),
    };
    if let Some(dir) = &args.outdir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output directory '{}'", dir.display()))?;
        config.set("output", "dir", dir.display().to_string());
    }
    let mut names = match (&args.plugins, args.trace) {
        (Some(p), _) => p.clone(),
        (None, true) => Vec::new(),
        (None, false) => registry
            .select(None)
            .map_err(|e| anyhow::anyhow!("{}", e.source))?,
    };
    if args.trace && !names.iter().any(|n| n == trace::NAME) {
        names.push(trace::NAME.to_string());
    }
    let selected = match registry.select(Some(&names)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("test-analyzer: error: {}", e.source);
            return Ok(EXIT_USAGE);
        }
    };
    let engine = Engine::new(&config, jobs)?;
    log::info!(
        "reading {} with {} worker(s), plugins: {}",
        input.display(),
        engine.jobs(),
        selected.join(",")
    );
    let factory = || registry.build(&selected, &config);
    let reader_cfg: ReaderConfig = config.section("reader")?;
    let reader = CaptureReader::open(input, &reader_cfg)
        .with_context(|| format!("cannot read '{}'", input.display()))?;
    let mut src = LenientSource::new(reader);
    let mut output = engine
        .run(&factory, &mut src)
        .with_context(|| format!("analysing '{}'", input.display()))?;
    for w in src.warnings() {
        log::warn!("{}: {w}", input.display());
    }
    let mut text = String::new();
    if args.trace
        && let Some(t) = output.plugins.iter().find_map(|p| {
            let any: &dyn std::any::Any = p.as_ref();
            any.downcast_ref::<trace::TracePlugin>()
        })
    {
        text.push_str(&t.render(Some(output.stats.packets)));
    }
    match &args.outdir {
        Some(dir) => {
            output
                .save_results(dir)
                .map_err(|e| anyhow::anyhow!("saving results in '{}': {e}", dir.display()))?;
        }
        None => {
            for p in &output.plugins {
                if args.trace && p.name() == trace::NAME {
                    continue;
                }
                if let Some(r) = p.results() {
                    let line = serde_json::json!({ "plugin": p.name(), "results": r });
                    text.push_str(&line.to_string());
                    text.push('\n');
                }
            }
        }
    }
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(if src.warnings().is_empty() { 0 } else { 3 })
}

/// `--check`: runs every case (with `jobs` workers instead of the case's
/// when given); 0 when all pass.
fn check(
    args: &Args,
    registry: &PluginRegistry,
    jobs: Option<usize>,
    stdout: &mut dyn Write,
) -> Result<u8> {
    let mut failed = 0;
    let mut total = 0;
    for dir in &args.check {
        for case in case::find_cases(dir)? {
            total += 1;
            let r = case::run_case(&case, registry, jobs, args.update)?;
            if r.updated {
                writeln!(stdout, "updated {} ({} files)", case.display(), r.files)?;
            } else if r.passed() {
                writeln!(stdout, "ok      {} ({} files)", case.display(), r.files)?;
            } else {
                failed += 1;
                writeln!(stdout, "FAILED  {}", case.display())?;
                write!(stdout, "{}", r.render())?;
            }
        }
    }
    writeln!(
        stdout,
        "{total} case(s), {failed} failed{}",
        if args.update {
            " (expected results rewritten)"
        } else {
            ""
        }
    )?;
    Ok(if failed > 0 { 1 } else { 0 })
}
