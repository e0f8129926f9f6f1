//! Golden cases: a capture, plugins and configuration, and the results they
//! are expected to give.
//!
//! A case is a directory holding `case.toml` and `expected/`:
//!
//! ```toml
//! description = "dns plugin alone"
//! pcap = "../../pcap/sample.pcap"   # relative to the case directory
//! plugins = ["dns"]                 # optional: the default plugins
//! jobs = 1                          # optional: worker threads (default 1)
//!
//! [config]                          # optional: configuration, as in a
//! [config.flows]                    # pcap-analyzer configuration file
//! udp_timeout = 1.0
//! ```
//!
//! Running a case analyses the capture into a temporary directory and
//! compares every file the plugins saved, plus `analyzer-stats.json` (the
//! engine's counters), with the files in `expected/`, in the canonical form
//! of [`crate::compare`]. `--update` rewrites `expected/` instead.

use crate::compare;
use anyhow::{Context, Result, bail};
use libpcap_analyzer::Engine;
use libpcap_analyzer::plugin::{Plugin, PluginRegistry, PluginResult};
use libpcap_tools::{CaptureReader, Config, LenientSource, ReaderConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Name of the file with the engine's counters, saved with the plugin results.
pub const STATS_FILE: &str = "analyzer-stats.json";

/// The contents of `case.toml`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSpec {
    /// What the case checks.
    #[serde(default)]
    pub description: String,
    /// The capture, relative to the case directory.
    pub pcap: PathBuf,
    /// Plugins to run (`None`: the default plugins).
    #[serde(default)]
    pub plugins: Option<Vec<String>>,
    /// Worker threads.
    #[serde(default = "one")]
    pub jobs: usize,
    /// Configuration (the same tables as a configuration file).
    #[serde(default)]
    pub config: toml::Table,
}

fn one() -> usize {
    1
}

impl CaseSpec {
    /// Reads `dir/case.toml`.
    ///
    /// # Errors
    /// When the file cannot be read or is not a valid case.
    pub fn load(dir: &Path) -> Result<CaseSpec> {
        let path = dir.join("case.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read '{}'", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid case file '{}'", path.display()))
    }
}

/// A difference between a saved file and the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    /// File name.
    pub file: String,
    /// What differs (a diff, or "missing"/"unexpected").
    pub diff: String,
}

/// The outcome of running one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReport {
    /// The case directory.
    pub dir: PathBuf,
    /// Number of files compared (or written with `update`).
    pub files: usize,
    /// Differences found (always empty with `update`).
    pub diffs: Vec<FileDiff>,
    /// `true` when `expected/` was rewritten.
    pub updated: bool,
}

impl CaseReport {
    /// `true` if the results equal the expected ones (or were updated).
    pub fn passed(&self) -> bool {
        self.diffs.is_empty()
    }

    /// A human-readable account of the differences.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for d in &self.diffs {
            s.push_str(&format!(
                "--- {}/expected/{}\n+++ (this run)\n{}",
                self.dir.display(),
                d.file,
                d.diff
            ));
            if !d.diff.ends_with('\n') {
                s.push('\n');
            }
        }
        s
    }
}

/// The case directories under `dir`: `dir` itself if it holds `case.toml`,
/// else its subdirectories that do, sorted by name.
///
/// # Errors
/// When `dir` cannot be read.
pub fn find_cases(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.join("case.toml").is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read '{}'", dir.display()))?;
    for e in entries {
        let p = e?.path();
        if p.join("case.toml").is_file() {
            out.push(p);
        }
    }
    if out.is_empty() {
        bail!(
            "no case in '{}': a case is a directory with a case.toml",
            dir.display()
        );
    }
    out.sort();
    Ok(out)
}

/// Runs the case in `dir` with `registry`'s plugins, with `jobs` workers
/// instead of the case's own number when given, and compares (or, with
/// `update`, rewrites) the expected results.
///
/// # Errors
/// When the case is invalid, the capture unreadable, or the run fails.
pub fn run_case(
    dir: &Path,
    registry: &PluginRegistry,
    jobs: Option<usize>,
    update: bool,
) -> Result<CaseReport> {
    let spec = CaseSpec::load(dir)?;
    let out = tempfile::tempdir().context("cannot create a temporary directory")?;
    let actual = analyse(dir, &spec, registry, jobs, out.path())?;
    let expected_dir = dir.join("expected");
    if update {
        if expected_dir.exists() {
            std::fs::remove_dir_all(&expected_dir)
                .with_context(|| format!("cannot remove '{}'", expected_dir.display()))?;
        }
        std::fs::create_dir_all(&expected_dir)
            .with_context(|| format!("cannot create '{}'", expected_dir.display()))?;
        for (name, bytes) in &actual {
            let p = expected_dir.join(name);
            std::fs::write(&p, bytes).with_context(|| format!("cannot write '{}'", p.display()))?;
        }
        return Ok(CaseReport {
            dir: dir.to_path_buf(),
            files: actual.len(),
            diffs: Vec::new(),
            updated: true,
        });
    }
    let expected = read_dir_files(&expected_dir).with_context(|| {
        format!(
            "no expected results in '{}'; create them with --update",
            expected_dir.display()
        )
    })?;
    let mut diffs = Vec::new();
    let names: std::collections::BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    for name in &names {
        match (expected.get(*name), actual.get(*name)) {
            (Some(e), Some(a)) => {
                let d = compare::diff(&compare::canonical(name, e), &compare::canonical(name, a));
                if !d.is_empty() {
                    diffs.push(FileDiff {
                        file: (*name).clone(),
                        diff: d,
                    });
                }
            }
            (Some(_), None) => diffs.push(FileDiff {
                file: (*name).clone(),
                diff: "missing: expected but not written by this run\n".to_string(),
            }),
            (None, Some(_)) => diffs.push(FileDiff {
                file: (*name).clone(),
                diff: "unexpected: written by this run but not in expected/\n".to_string(),
            }),
            (None, None) => {}
        }
    }
    Ok(CaseReport {
        dir: dir.to_path_buf(),
        files: names.len(),
        diffs,
        updated: false,
    })
}

/// The regular, non-hidden files of `dir` by name.
fn read_dir_files(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.file_type()?.is_file() {
            continue;
        }
        out.insert(name, std::fs::read(e.path())?);
    }
    Ok(out)
}

/// Runs the analysis of a case into `outdir` and returns the saved files.
fn analyse(
    dir: &Path,
    spec: &CaseSpec,
    registry: &PluginRegistry,
    jobs: Option<usize>,
    outdir: &Path,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let text = toml::to_string(&spec.config).context("case configuration")?;
    let mut config = Config::from_toml(&text)
        .map_err(|e| anyhow::anyhow!("case configuration in '{}': {e}", dir.display()))?;
    config.set("output", "dir", outdir.display().to_string());
    let selected = registry
        .select(spec.plugins.as_deref())
        .map_err(|e| anyhow::anyhow!("{}", e.source))?;
    let engine = Engine::new(&config, jobs.unwrap_or(spec.jobs))?;
    let factory = || -> PluginResult<Vec<Box<dyn Plugin>>> { registry.build(&selected, &config) };
    let pcap = dir.join(&spec.pcap);
    let reader_cfg: ReaderConfig = config.section("reader")?;
    let reader = CaptureReader::open(&pcap, &reader_cfg)
        .with_context(|| format!("cannot read '{}'", pcap.display()))?;
    let mut src = LenientSource::new(reader);
    let mut output = engine
        .run(&factory, &mut src)
        .with_context(|| format!("analysing '{}'", pcap.display()))?;
    output
        .save_results(outdir)
        .map_err(|e| anyhow::anyhow!("saving results: {e}"))?;
    let stats = serde_json::to_vec_pretty(&output.stats)?;
    std::fs::write(outdir.join(STATS_FILE), stats)?;
    read_dir_files(outdir).with_context(|| format!("reading '{}'", outdir.display()))
}
