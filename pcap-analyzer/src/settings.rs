//! The configuration file and its sections, logging, the plugin lists.

use crate::{Args, UsageError};
use anyhow::{Context, Result};
use libpcap_analyzer::plugin::{Layers, PluginRegistry};
use libpcap_tools::{Config, ipproto};
use std::io::Write;
use std::path::Path;

/// The sections the tool reads, for unknown-key warnings.
pub(crate) const TOOL_SECTIONS: &[&str] = &["reader", "output", "log", "run", "live", "nfqueue"];

/// Section `[log]`.
#[derive(Debug, Clone, serde::Deserialize, Default)]
#[serde(default)]
pub(crate) struct LogConfig {
    /// Log file name in the output directory.
    pub(crate) file: Option<String>,
    /// Level when `PCAP_ANALYZER_LOG` is not set.
    pub(crate) level: Option<String>,
}

/// Section `[run]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default)]
pub(crate) struct RunConfig {
    /// Worker threads when `-j` is not given.
    pub(crate) jobs: usize,
    /// Nice steps added to worker threads (0: none), so that the reading
    /// thread keeps a core when threads outnumber cores.
    pub(crate) worker_nice: i32,
}

/// The most worker threads `[run] jobs` and `-j` may ask for
/// ([`libpcap_analyzer::engine::max_jobs`]).
pub(crate) fn max_jobs() -> usize {
    libpcap_analyzer::engine::max_jobs()
}

impl RunConfig {
    /// Checks `jobs` (0 to [`max_jobs`]) and `worker_nice` (0 to 19).
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.jobs > max_jobs() {
            return Err(format!(
                "[run] jobs = {}: give a number of worker threads from 0 (one per CPU) to {}",
                self.jobs,
                max_jobs()
            ));
        }
        if !(0..=19).contains(&self.worker_nice) {
            return Err(format!(
                "[run] worker_nice = {}: give nice steps from 0 (none) to 19",
                self.worker_nice
            ));
        }
        Ok(())
    }
}

impl LogConfig {
    /// The log file's name in the output directory (`None`: no log file).
    pub(crate) fn file_name(&self) -> Option<&str> {
        Some(self.file.as_deref().unwrap_or("pcap-analyzer.log")).filter(|n| !n.is_empty())
    }

    /// Checks that `file` is a plain file name (it is written in the
    /// output directory) and `level` a log level.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if let Some(n) = self.file_name() {
            libpcap_tools::outfile::check_file_name("[log] file", n)?;
        }
        const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
        if let Some(l) = &self.level
            && (flexi_logger::LogSpecification::parse(l).is_err()
                || (!l.contains('=') && !l.contains(',') && !LEVELS.contains(&l.trim())))
        {
            return Err(format!(
                "[log] level = {l:?}: give off, error, warn, info, debug or trace (or a \
                 flexi_logger spec such as 'info,libpcap_analyzer=debug')"
            ));
        }
        Ok(())
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            jobs: 0,
            worker_nice: 5,
        }
    }
}

/// Names of the layers in `l` (`link`, `network`, `transport`, `stream`),
/// comma-separated, or `-`.
pub(crate) fn layer_names(l: Layers) -> String {
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
pub(crate) fn list(
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
pub(crate) fn setup_logging(
    args: &Args,
    lc: &LogConfig,
    outdir: Option<&Path>,
) -> Result<Option<flexi_logger::LoggerHandle>> {
    use flexi_logger::{Duplicate, FileSpec, Logger};
    let name = lc.file_name().unwrap_or_default();
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

/// The OS reason of an I/O error without the "(os error N)" suffix.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Reads section `name` of the configuration, naming the file on error.
/// An error of the configuration, naming the file it came from, if any.
pub(crate) fn invalid_config(file: Option<&Path>, e: impl std::fmt::Display) -> anyhow::Error {
    let e = config_message(&e.to_string());
    match file {
        Some(f) => anyhow::anyhow!("invalid configuration file '{}': {e}", f.display()),
        None => anyhow::anyhow!("{e}"),
    }
}

/// A configuration error on one line, without the `configuration: ` the
/// layers below put in front.
pub(crate) fn config_message(m: &str) -> String {
    m.replace("configuration: ", "")
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn section<T: serde::de::DeserializeOwned>(
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
pub(crate) fn load_config(path: Option<&Path>) -> Result<Config> {
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

/// The `[plugin.NAME]` table of `config` with the keys of `extra` added
/// (command-line values override the file).
pub(crate) fn merge_table(config: &Config, plugin: &str, extra: toml::Table) -> toml::Table {
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
