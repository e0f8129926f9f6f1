//! The `pcap-analyzer` command: argument parsing, logging, the run and the
//! summary. `main.rs` only maps the outcome to an exit code.
//!
//! A run is a [`Session`] of the analysis library: the tool opens the
//! inputs (with the capture filter), drops its privileges, starts the
//! session, and then only watches it: SIGINT/SIGTERM stop it, SIGUSR1
//! pauses and resumes it, SIGUSR2 writes the current report, and the
//! progress bar reads its figures (the `control` module).
//!
//! Exit codes ([`exit_code`]): 0 success (also when standard output is a
//! closed pipe, and a live capture stopped by SIGINT/SIGTERM, `--duration`
//! or `--count`); 1 error (unreadable input, unknown interface, no right to
//! capture, bad configuration, plugin failure, libpcap missing for
//! `--filter`); 2 usage error (bad option, unknown plugin, no input, a
//! capture filter libpcap refuses, `--nfqueue` with `-i` or input files, an
//! unknown `--user`, an output that is an input or another output,
//! `--stdout` of a kind no plugin of the run writes, `-o -` with several
//! record kinds); 3
//! input truncated or partly corrupt, or a file run stopped by a signal,
//! but results written, or no packet analysed because the capture's link
//! type has no decoder.
//!
//! With `-o DIR` the result set is complete or visibly not: see the
//! `outputs` module (files written as temporaries and renamed, the manifest
//! `run.json` written last, leftovers of killed runs removed).
//!
//! `--stdout KIND` and `-o -` put one record kind on standard output; a
//! plugin named with `-p` whose results have nowhere to go is a warning:
//! see the `stream` module.
//!
//! See `README.md` in this crate for every option.

mod args;
mod capture_filter;
mod control;
mod outputs;
pub mod privilege;
mod settings;
pub mod sources;
mod stream;
mod summary;

pub use args::{
    Args, EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, Outcome, UsageError, exit_code,
    is_broken_pipe,
};
pub use summary::{connection_report, summary_json};

use anyhow::{Context, Result, bail};
use capture_filter::{CaptureFilter, Target};
use libpcap_analyzer::plugin::PluginRegistry;
use libpcap_analyzer::plugins::connections::{ConnectionsConfig, ReportFormat};
use libpcap_analyzer::plugins::{OutputConfig, builtin_registry};
use libpcap_analyzer::session::{Session, SessionInput, SharedFactory};
use libpcap_analyzer::{Engine, EngineConfig};
use libpcap_live::afpacket::{CaptureHandle, CaptureLimits, LiveConfig};
use libpcap_live::nfqueue::{NfqueueConfig, QueueHandle};
use libpcap_tools::{CaptureControl, Config, PacketSource, ReaderConfig};
use settings::{
    LogConfig, RunConfig, TOOL_SECTIONS, invalid_config, list, load_config, merge_table, section,
    setup_logging,
};
use sources::MultiSource;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) use settings::io_reason;

/// Runs the tool with parsed arguments and the built-in plugins, writing
/// reports to `stdout`.
///
/// # Errors
/// Any error that should end the run with exit code 1, or a [`UsageError`]
/// (exit code 2); see [`exit_code`].
pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<Outcome> {
    run_with(args, builtin_registry(), stdout)
}

/// The whole `pcap-analyzer` program with the plugins of `registry`: a
/// third-party plugin crate gets every option, format, input, live mode and
/// exit code of the tool by adding its builders to the built-in registry
/// and calling this from its `main` (see `explugin-example`'s
/// `pal-portscan`):
///
/// ```no_run
/// use libpcap_analyzer::plugins::builtin_registry;
/// fn main() -> std::process::ExitCode {
///     let registry = builtin_registry(); // plus registry.add_builder(...)
///     pcap_analyzer::main_with(registry)
/// }
/// ```
pub fn main_with(registry: PluginRegistry) -> std::process::ExitCode {
    use clap::Parser;
    let mut args = Args::parse();
    // the program has one thread until the run starts its own
    args.drop_privileges = true;
    let mut stdout = std::io::stdout().lock();
    let result = run_with(&args, registry, &mut stdout);
    let code = exit_code(&result);
    if let Err(e) = &result
        && !is_broken_pipe(e)
    {
        eprintln!(
            "pcap-analyzer: error: {}",
            libpcap_tools::error_text(e.as_ref())
        );
    }
    std::process::ExitCode::from(code)
}

/// As [`run`], with the plugins of `registry`.
///
/// # Errors
/// As [`run`].
pub fn run_with(args: &Args, registry: PluginRegistry, stdout: &mut dyn Write) -> Result<Outcome> {
    let cfg_file = args.config.as_deref();
    let mut config = load_config(cfg_file)?;
    let output: OutputConfig = section(&config, "output", cfg_file)?;
    output.validate().map_err(|m| anyhow::anyhow!("{m}"))?;
    // `-o -`: records on standard output (the `stream` module)
    let dash = args.outdir.as_deref() == Some(Path::new("-"));
    let streaming = dash || args.stdout.is_some();
    // the user's output directory
    let outdir = if dash {
        None
    } else {
        args.outdir.clone().or(output.dir)
    };
    // records for standard output without an output directory are
    // written into a private one, removed at the end; the connection
    // report on standard output writes the sorted runs of its rows over
    // its memory share into one (without it, such a report keeps rows by
    // a hash of their key, and says so)
    let mut notes = Vec::new();
    let chosen_spill = output.spill_dir.clone();
    if let Some(d) = &chosen_spill
        && !d.is_dir()
    {
        bail!(
            "[output] spill_dir '{}' is not a directory: give an existing directory, or leave \
             it unset (the output directory, else a private one in $TMPDIR)",
            d.display()
        );
    }
    let scratch = match (&outdir, streaming) {
        (None, true) => Some(
            tempfile::Builder::new()
                .prefix(".pcap-analyzer-stdout-")
                .tempdir()
                .context("cannot create a temporary directory for --stdout (set TMPDIR)")?,
        ),
        (None, false) if chosen_spill.is_none() => match tempfile::Builder::new()
            .prefix(".pcap-analyzer-spill-")
            .tempdir()
        {
            Ok(t) => Some(t),
            Err(e) => {
                notes.push(format!(
                    "cannot create a temporary directory for the connection report ({}; set \
                     TMPDIR): a report over its memory share keeps rows by a hash of their key",
                    io_reason(&e)
                ));
                None
            }
        },
        _ => None,
    };
    let private = scratch.as_ref().map(|t| t.path().to_path_buf());
    // where the plugins write their records: the user's directory or the
    // private one of --stdout
    let workdir = outdir.clone().or(private.clone().filter(|_| streaming));
    if let Some(dir) = &workdir {
        config.set("output", "dir", dir.display().to_string());
    }
    // where reports spill: the directory chosen, else the output
    // directory, else the private one
    let writable = outdir.clone().or(private);
    let spill_dir = chosen_spill.clone().or(writable.clone());
    if let Some(dir) = &spill_dir {
        config.set("output", "spill_dir", dir.display().to_string());
    }
    // JSON lines on standard output unless --format says otherwise
    let format = args.format.or(streaming.then_some(ReportFormat::Jsonl));
    if let Some(f) = format {
        // the connection report in that format; every other record kind
        // too (text is the connection report's only: the others stay JSON
        // lines)
        let records = f
            .records()
            .unwrap_or(libpcap_analyzer::output::Format::Jsonl);
        config.set("output", "format", records.name());
        let mut t = toml::Table::new();
        t.insert(
            "format".into(),
            toml::Value::String(
                match f {
                    ReportFormat::Text => "text",
                    _ => records.name(),
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
    let interval = report_interval(&config, is_live, cfg_file)?;
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
    let nfq_cfg: NfqueueConfig = section(&config, NfqueueConfig::SECTION, cfg_file)?;
    // every value is checked, also of sections this run does not use
    validate_config(
        &config,
        cfg_file,
        &reader_cfg,
        &run_cfg,
        &log_cfg,
        &live_cfg,
        &nfq_cfg,
    )?;
    let jobs = args.jobs.unwrap_or(run_cfg.jobs);
    if jobs > libpcap_analyzer::engine::max_jobs() {
        return Err(UsageError(format!(
            "-j {jobs}: give a number of worker threads from 0 (one per CPU) to {}",
            libpcap_analyzer::engine::max_jobs()
        ))
        .into());
    }
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
    // signals wait for the session instead of killing the process
    let mut signals = control::Signals::install()?;
    // the capture filter, checked before any input or output is opened
    let filter = match &args.filter {
        Some(expr) => Some(CaptureFilter::new(
            expr,
            match (live, nfqueue) {
                (Some(iface), _) => Target::Interface(iface),
                (None, Some(_)) => Target::Nfqueue,
                (None, None) => Target::Files(&args.inputs, &reader_cfg),
            },
        )?),
        None => None,
    };
    // check the plugins build before reading anything, and learn their file
    // names
    let plugin_error = |e: libpcap_analyzer::plugin::PluginError| invalid_config(cfg_file, e);
    let built = registry.build(&selected, &config).map_err(plugin_error)?;
    let plugin_files: Vec<String> = built.iter().flat_map(|p| p.output_names()).collect();
    let explicit = args.plugins.is_some();
    let stream = stream::resolve(args.stdout.as_deref(), dash, explicit, &built)?;
    let nowhere = stream::nowhere_warnings(explicit, outdir.is_some(), stream.as_ref(), &built);
    drop(built);
    // no output may be an input or another output: checked before anything
    // is written
    let inputs = outputs::inputs(args)?;
    outputs::check_outputs(
        args,
        inputs.clone(),
        outdir.as_deref(),
        &plugin_files,
        log_cfg.file_name(),
    )?;
    // --- privileges (1/2): resolve --user before anything is opened
    let mut privileges = privilege::Privileges::prepare(args, writable.as_deref())?;
    if let Some(d) = &chosen_spill {
        privileges.write_also(d);
    }
    if scratch.is_some() {
        // made by this run: handed to --user like a new output directory
        privileges.new_output_dir();
    }
    if let Some(dir) = &outdir {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create output directory '{}': {}; choose another one with -o",
                dir.display(),
                io_reason(&e)
            )
        })?;
    }
    // the previous manifest moved aside, leftovers of killed runs removed
    let prepared = outdir
        .as_deref()
        .map(outputs::OutputDir::prepare)
        .transpose()?;
    // warnings about the configuration found before the logger started
    let mut early = config.take_warnings();
    early.append(&mut notes);
    let _logger = setup_logging(args, &log_cfg, outdir.as_deref())?;
    for w in early {
        log::warn!("{w}");
    }
    for w in &nowhere {
        log::warn!("{w}");
    }
    // the merges at the end read every sorted run of a table or spool at
    // once: the usual soft limit (1024) is below what a long run needs
    match libpcap_live::sys::raise_open_files_limit() {
        Ok((was, now)) if now > was => {
            log::debug!("open files: soft limit raised from {was} to {now}");
        }
        Ok((was, _)) => log::debug!("open files: soft limit {was}"),
        Err(e) => log::warn!("cannot raise the limit on open files: {e}"),
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

    let known_names = known_output_names(&registry, &config);
    if output.format_runs.is_none() {
        // records are formatted by the threads writing the runs when a
        // core is left to them
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let workers = if jobs == 0 { cores } else { jobs };
        config.set("output", "format_runs", workers < cores);
    }
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
    // every input is opened here, then the one privilege drop, before any
    // thread starts (the session starts them)
    let opened = open_input(
        args,
        engine.jobs(),
        &reader_cfg,
        &live_cfg,
        &nfq_cfg,
        filter.as_ref(),
    )?;
    let mut dropped = privileges.drop_now(args)?;
    let show_bar = !args.quiet && std::io::stderr().is_terminal() && !is_live;
    let total = opened.total_bytes;
    let factory: SharedFactory = {
        let config = config.clone();
        let selected = selected.clone();
        Arc::new(move || registry.build(&selected, &config))
    };
    let mut session = Session::new(engine, factory);
    session.set_input(opened.input)?;
    session.set_output_dir(workdir.clone())?;
    session.set_report_interval(interval)?;
    if let Some(c) = opened.kind.control() {
        session.set_capture_control(c)?;
    }
    let started = Instant::now();
    session.start()?;
    if let Some(ready) = &opened.ready {
        log::info!("{ready}");
        if !args.quiet {
            eprintln!("pcap-analyzer: {ready}");
        }
    }
    signals.serve(session.handle(), args.quiet)?;
    let bar = show_bar.then(|| control::ProgressBar::start(session.handle(), total));
    let done = session.wait();
    if let Some(bar) = bar {
        bar.finish();
    }
    let stopped_by_signal = signals.stop_requested();
    signals.close();
    let done = done
        .map_err(anyhow::Error::from)
        .with_context(|| opened.kind.describe(args))?;
    let elapsed = started.elapsed();
    log::debug!("analysis and results done after {elapsed:?}");
    opened.kind.log_end();

    let mut warnings: Vec<String> = done
        .output
        .input_warnings
        .iter()
        .map(|w| match &opened.kind {
            // the reader of one file does not name it
            Kind::File(p) => format!("{}: {w}", p.display()),
            _ => w.clone(),
        })
        .collect();
    if let Some(w) = &done.output.warning {
        warnings.push(w.to_string());
    }
    if stopped_by_signal && !is_live {
        warnings.push("stopped by a signal before the end of the input".to_string());
    }
    if let Some(s) = &stream {
        stream::copy(s, &done.files, stdout)?;
    } else if outdir.is_none() {
        // written piece by piece: a report of a million rows is ~100 MB
        if let Some(conn) = summary::connections_plugin(&done.output)
            && let Err(e) = conn.write_report(stdout).and_then(|()| stdout.flush())
        {
            return Err(e).context("writing the report to standard output");
        }
    }
    // nothing analysed for want of a link-type decoder: the empty report
    // is no result (exit code 3)
    let unanalysed = summary::unanalysed_warning(&done.output);
    let all_warnings: Vec<String> = warnings.iter().chain(&unanalysed).cloned().collect();
    let mut summary = summary_json(&done, elapsed, &all_warnings);
    if let Some(obj) = summary.as_object_mut() {
        opened.kind.add_summary(obj);
        if let Some(f) = &filter {
            obj.insert("filter".to_string(), f.json());
        }
        if let Some(p) = dropped.json() {
            obj.insert("privileges".to_string(), p);
        }
    }
    if args.stats_json.is_some() {
        // through the file opened before the privilege drop
        dropped.write_stats(&(serde_json::to_string_pretty(&summary)? + "\n"))?;
    }
    if let Some(dir) = prepared {
        // the manifest, last: the set it lists is complete
        dir.finish(&outputs::RunRecord {
            args,
            plugins: &selected,
            effective_config: toml::to_string(config.table()).unwrap_or_default(),
            files: &done.files,
            stats_json: args.stats_json.as_deref(),
            log: log_cfg.file_name(),
            summary: &summary,
            input_complete: warnings.is_empty(),
            known_names: &known_names,
            inputs: &inputs,
        })?;
    }
    for w in &warnings {
        log::warn!("{w}; the results cover every packet before that point");
    }
    if let Some(w) = &unanalysed {
        log::warn!("{w}");
    }
    summary::log_counters(&summary);
    if !args.quiet {
        // a closed standard error is not worth failing the run for
        let _ = std::io::stderr().write_all(summary::summary_text(&summary).as_bytes());
    }
    Ok(if all_warnings.is_empty() {
        Outcome::Complete
    } else {
        Outcome::Partial
    })
}

/// Checks every value of the configuration against its range (the
/// sections of the analyzer, the reader, the tool, live capture and inline
/// mode, and the built-in plugins), naming the key.
///
/// # Errors
/// The first value out of range (exit code 1).
fn validate_config(
    config: &Config,
    cfg_file: Option<&Path>,
    reader: &ReaderConfig,
    run: &RunConfig,
    log: &LogConfig,
    live: &LiveConfig,
    nfq: &NfqueueConfig,
) -> Result<()> {
    let bad = |e: String| invalid_config(cfg_file, e);
    reader.validate().map_err(bad)?;
    run.validate().map_err(bad)?;
    log.validate().map_err(bad)?;
    live.validate(libpcap_live::sys::page_size())
        .map_err(|e| invalid_config(cfg_file, e))?;
    nfq.validate().map_err(|e| invalid_config(cfg_file, e))?;
    EngineConfig::from_config(config).map_err(|e| invalid_config(cfg_file, e))?;
    libpcap_analyzer::plugins::check_config(config).map_err(|e| invalid_config(cfg_file, e))?;
    Ok(())
}

/// The names of every file a known plugin may write (for the manifest's
/// `stale` list), the connection report in each of its formats.
fn known_output_names(
    registry: &libpcap_analyzer::plugin::PluginRegistry,
    config: &Config,
) -> Vec<String> {
    let mut names: Vec<String> = registry
        .builders()
        .filter_map(|b| b.build(config).ok())
        .flat_map(|p| p.output_names())
        .collect();
    if let Ok(c) = config.plugin::<ConnectionsConfig>("connections") {
        for f in [
            ReportFormat::Text,
            ReportFormat::Csv,
            ReportFormat::Jsonl,
            ReportFormat::Zeek,
            ReportFormat::Parquet,
        ] {
            names.push(format!("{}.{}", c.file, f.extension()));
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The time between two rewrites of the reports: `[plugin.connections]
/// interval`, else 5 s for live input and none for files.
fn report_interval(config: &Config, live: bool, file: Option<&Path>) -> Result<Option<Duration>> {
    let set = config
        .table()
        .get("plugin")
        .and_then(|p| p.get("connections"))
        .and_then(|c| c.get("interval"))
        .is_some();
    let secs = if set {
        let c: ConnectionsConfig = config
            .plugin("connections")
            .map_err(|e| invalid_config(file, e))?;
        c.interval
    } else if live {
        5.0
    } else {
        0.0
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(invalid_config(
            file,
            format!(
                "[plugin.connections] interval = {secs}: give seconds between 0 (off) and 86400"
            ),
        ));
    }
    Ok((secs > 0.0).then(|| Duration::from_secs_f64(secs)))
}

/// What kind of input a run reads, with the handle of a live one.
enum Kind {
    /// NFQUEUE queues.
    Inline(QueueHandle, u16),
    /// A live interface.
    Capture(CaptureHandle),
    /// One capture file (or standard input).
    File(std::path::PathBuf),
    /// Several files, one after another.
    Files,
}

impl Kind {
    /// The control of a live capture.
    fn control(&self) -> Option<Arc<dyn CaptureControl>> {
        match self {
            Kind::Inline(h, _) => Some(Arc::new(h.clone())),
            Kind::Capture(h) => Some(Arc::new(h.clone())),
            Kind::File(_) | Kind::Files => None,
        }
    }

    /// What the run was doing, for an error's context.
    fn describe(&self, args: &Args) -> String {
        match self {
            Kind::Inline(_, first) => format!("inline on NFQUEUE queue {first}"),
            Kind::Capture(h) => format!("capturing on '{}'", h.interface()),
            Kind::File(p) => format!("analysing '{}'", p.display()),
            Kind::Files => format!(
                "analysing {}",
                args.inputs
                    .iter()
                    .map(|p| format!("'{}'", p.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Logs the kernel's figures of a live run.
    fn log_end(&self) {
        match self {
            Kind::Inline(h, _) => {
                let k = h.stats();
                log::info!(
                    "inline mode ended: {} packets delivered, {} accepted, {} dropped by verdict; \
                     kernel: {} queue-full, {} socket-full",
                    h.delivered(),
                    k.accepted,
                    k.dropped,
                    k.queue_dropped,
                    k.user_dropped
                );
            }
            Kind::Capture(h) => {
                let k = h.kernel_stats();
                log::info!(
                    "capture on {} ended: {} packets delivered; kernel: {} received, {} dropped, \
                     {} freezes",
                    h.interface(),
                    h.delivered(),
                    k.packets,
                    k.drops,
                    k.freeze_count
                );
            }
            Kind::File(_) | Kind::Files => {}
        }
    }

    /// The `live` or `nfqueue` object of the summary.
    fn add_summary(&self, obj: &mut serde_json::Map<String, serde_json::Value>) {
        match self {
            Kind::Capture(h) => {
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
            Kind::Inline(h, _) => {
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
            Kind::File(_) | Kind::Files => {}
        }
    }
}

/// The opened input of a run.
struct Opened {
    input: SessionInput,
    kind: Kind,
    /// What to say once the capture is up (live input).
    ready: Option<String>,
    /// Size of the input files, when known.
    total_bytes: Option<u64>,
}

/// Opens the input: NFQUEUE queues, AF_PACKET sockets (with the kernel
/// filter), one file read into shared chunks, or several files; a
/// user-space filter wraps each source.
fn open_input(
    args: &Args,
    jobs: usize,
    reader_cfg: &ReaderConfig,
    live_cfg: &LiveConfig,
    nfq_cfg: &NfqueueConfig,
    filter: Option<&CaptureFilter>,
) -> Result<Opened> {
    let wrap = |s: Box<dyn PacketSource>| match filter {
        Some(f) => f.wrap(s),
        None => s,
    };
    if let Some(first) = args.nfqueue {
        let group = libpcap_live::nfqueue::open(first, jobs, nfq_cfg, limits(args))
            .map_err(|e| anyhow::anyhow!("cannot start inline mode: {e}"))?;
        let handle = group.handle.clone();
        let last = usize::from(first) + handle.queues() - 1;
        let ready = format!(
            "inline on NFQUEUE queue{} ({}fail-open{}); stop with Ctrl-C",
            if handle.queues() > 1 {
                format!("s {first}..{last}")
            } else {
                format!(" {first}")
            },
            if nfq_cfg.fail_open { "" } else { "not " },
            filter_note(args),
        );
        let sources = group
            .sources
            .into_iter()
            .map(|s| wrap(Box::new(s)))
            .collect();
        return Ok(Opened {
            input: SessionInput::PerWorker(sources),
            kind: Kind::Inline(handle, first),
            ready: Some(ready),
            total_bytes: None,
        });
    }
    if let Some(iface) = args.interface.as_deref() {
        let group = libpcap_live::afpacket::open_with_filter(
            iface,
            live_cfg,
            jobs,
            limits(args),
            filter.and_then(CaptureFilter::kernel_program),
        )
        .map_err(|e| anyhow::anyhow!("cannot capture on '{iface}': {e}"))?;
        let handle = group.handle.clone();
        let n = handle.sockets();
        let ready = format!(
            "capturing on {iface} ({n} socket{}{}, link type {}, {}promiscuous{}); stop with \
             Ctrl-C",
            if n > 1 { "s" } else { "" },
            if n > 1 { " in a fanout group" } else { "" },
            handle.linktype(),
            if live_cfg.promiscuous { "" } else { "not " },
            filter_note(args),
        );
        let sources = group
            .sources
            .into_iter()
            .map(|s| Box::new(s) as Box<dyn PacketSource>)
            .collect();
        return Ok(Opened {
            input: SessionInput::PerWorker(sources),
            kind: Kind::Capture(handle),
            ready: Some(ready),
            total_bytes: None,
        });
    }
    if let [path] = args.inputs.as_slice()
        && args.skip == 0
    {
        // classic pcap is read into shared chunks (no copy to the workers);
        // pcapng, compressed input and stdin through the streaming reader
        let src = libpcap_tools::open_capture(path, reader_cfg)
            .with_context(|| format!("cannot read '{}'", path.display()))?;
        log::info!("reading {}", path.display());
        let total_bytes = src.progress().total_bytes;
        return Ok(Opened {
            input: SessionInput::Source(wrap(src)),
            kind: Kind::File(path.clone()),
            ready: None,
            total_bytes,
        });
    }
    let src = MultiSource::open(args.inputs.clone(), reader_cfg.clone(), args.skip)?;
    let total_bytes = src.progress().total_bytes;
    Ok(Opened {
        input: SessionInput::Source(wrap(Box::new(src))),
        kind: Kind::Files,
        ready: None,
        total_bytes,
    })
}

/// `, filter 'EXPR'` for the readiness line.
fn filter_note(args: &Args) -> String {
    args.filter
        .as_deref()
        .map(|f| format!(", filter '{f}'"))
        .unwrap_or_default()
}

/// The `--count` / `--duration` limits of a live run.
fn limits(args: &Args) -> CaptureLimits {
    CaptureLimits {
        max_packets: args.count,
        duration: args.duration.map(Duration::from_secs_f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use libpcap_analyzer::plugin::Layers;
    use settings::layer_names;
    use summary::summary_text;

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
