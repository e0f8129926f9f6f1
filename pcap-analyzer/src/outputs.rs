//! The outputs of a run: checked before anything is written, and with
//! `-o DIR` a result set that is complete or visibly not.
//!
//! # Inputs are never overwritten
//! [`check_outputs`] runs before anything is written (a usage error, exit
//! code 2, otherwise): `--stats-json`, every file a selected plugin may
//! write in `-o DIR` ([`libpcap_analyzer::plugin::Plugin::output_names`]),
//! the log file and `DIR/run.json` must not be an input (a capture file or
//! the `-c` configuration file: the same device and inode, through a hard
//! link, a symlink or another spelling) nor another of these outputs. An
//! output that does not exist yet cannot be an input, so writing into the
//! directory an input is in is fine. Names from the configuration (`[log]
//! file`, `[plugin.connections] file`) are plain file names, checked when
//! the configuration is read.
//!
//! # Result sets are complete or absent
//! Every file of the run in `DIR` is written as a temporary
//! (`.NAME.tmpPID-N`) and renamed into place. The manifest `run.json` is
//! written last (atomically too); a `run.json` therefore always describes a
//! finished set: every file it lists is there with the listed size and
//! sha256. [`OutputDir::prepare`], before the run writes anything into
//! `DIR`, moves the previous `run.json` aside (to `.run.json.prev`, read by
//! the next run if this one dies), and removes the temporaries and spool
//! parts of killed runs (only names of exactly those forms, of processes
//! that are gone). [`OutputDir::finish`] then:
//! - removes the files the previous manifest listed that this run did not
//!   write (files of plugins not run this time, a `--stats-json` not given
//!   again): they were ours;
//! - lists as `stale` the files in `DIR` named like an output of a known
//!   plugin that this run did not write and no manifest claimed (left by a
//!   run that died, or by an older version): they are not part of this
//!   result set;
//! - names the log file under `log`: it is appended to, by this run and
//!   the next ones, also after the manifest is written; it is not a result.

use crate::{Args, UsageError};
use anyhow::{Context, Result};
use libpcap_tools::outfile::{Inputs, OutputPlan, remove_leftovers, write_atomically_with};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The manifest's file name.
pub(crate) const MANIFEST: &str = "run.json";
/// Where the previous manifest waits while a run rewrites the set.
const PREVIOUS: &str = ".run.json.prev";

/// The inputs of a run that no output may be: the capture files and the
/// configuration file.
///
/// # Errors
/// When an input exists but cannot be examined.
pub(crate) fn inputs(args: &Args) -> Result<Inputs> {
    let mut inputs = Inputs::new();
    for p in &args.inputs {
        inputs
            .add("input", p)
            .with_context(|| format!("cannot examine '{}'", p.display()))?;
    }
    if let Some(c) = &args.config {
        inputs
            .add("configuration file", c)
            .with_context(|| format!("cannot examine '{}'", c.display()))?;
    }
    Ok(inputs)
}

/// Checks every output of the run (see the module docs) before anything
/// is written.
///
/// # Errors
/// A [`UsageError`] naming the output and the input or output it is.
pub(crate) fn check_outputs(
    args: &Args,
    inputs: Inputs,
    outdir: Option<&Path>,
    plugin_files: &[String],
    log_file: Option<&str>,
) -> Result<()> {
    let mut plan = OutputPlan::new(inputs);
    let usage = |e: libpcap_tools::outfile::OutputConflict| UsageError(e.to_string());
    if let Some(dir) = outdir {
        plan.add("the run manifest", &dir.join(MANIFEST))
            .map_err(usage)?;
        if let Some(log) = log_file {
            plan.add("the log file", &dir.join(log)).map_err(usage)?;
        }
        for name in plugin_files {
            plan.add("the plugin output", &dir.join(name))
                .map_err(usage)?;
        }
    }
    if let Some(p) = &args.stats_json {
        plan.add("--stats-json", p).map_err(usage)?;
    }
    Ok(())
}

/// The output directory of a run, between [`OutputDir::prepare`] and
/// [`OutputDir::finish`].
#[derive(Debug)]
pub(crate) struct OutputDir {
    dir: PathBuf,
    started: SystemTime,
    /// Files the previous manifest listed as the run's.
    previous: Vec<String>,
    /// Leftovers of killed runs removed.
    leftovers: Vec<String>,
}

/// The names of the files a manifest lists (`files[].name`); plain names
/// only.
fn listed_files(manifest: &Value) -> Vec<String> {
    manifest
        .get("files")
        .and_then(Value::as_array)
        .map(|v| {
            v.iter()
                .filter_map(|f| f.get("name").and_then(Value::as_str))
                .filter(|n| libpcap_tools::outfile::check_file_name("", n).is_ok())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a manifest, `None` when it is missing or not one of ours.
fn read_manifest(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    (v.get("manifest").and_then(Value::as_str) == Some(MANIFEST_FORMAT)).then_some(v)
}

/// The value of the manifest's `manifest` key.
const MANIFEST_FORMAT: &str = "pal-run/1";

impl OutputDir {
    /// Makes `dir` ready for a run: the previous manifest is moved aside,
    /// the leftovers of killed runs removed. Call it after creating `dir`
    /// and before anything is written into it.
    ///
    /// # Errors
    /// When the directory cannot be listed or a file in it moved.
    pub(crate) fn prepare(dir: &Path) -> Result<OutputDir> {
        let started = SystemTime::now();
        let manifest = dir.join(MANIFEST);
        let previous = dir.join(PREVIOUS);
        // a run.json next to a .run.json.prev is the newer one
        if manifest.exists() {
            std::fs::rename(&manifest, &previous).with_context(|| {
                format!(
                    "cannot move the previous run manifest '{}' aside",
                    manifest.display()
                )
            })?;
        }
        let previous = read_manifest(&previous)
            .map(|m| listed_files(&m))
            .unwrap_or_default();
        let leftovers = remove_leftovers(dir)
            .with_context(|| format!("cannot clean the output directory '{}'", dir.display()))?
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect::<Vec<_>>();
        for l in &leftovers {
            log::debug!("removed '{l}', left by a run that did not finish");
        }
        Ok(OutputDir {
            dir: dir.to_path_buf(),
            started,
            previous,
            leftovers,
        })
    }

    /// Writes the manifest of a finished run (see the module docs): after
    /// every file of the run, and the `--stats-json` file, are written.
    ///
    /// # Errors
    /// When a file cannot be read for its digest or the manifest cannot be
    /// written.
    pub(crate) fn finish(self, run: &RunRecord<'_>) -> Result<()> {
        let dir = &self.dir;
        let mut written: Vec<PathBuf> = run.files.to_vec();
        if let Some(s) = run.stats_json
            && same_dir(s.parent(), dir)
        {
            written.push(s.to_path_buf());
        }
        let mut names: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names.dedup();
        // files of the previous run that this one did not write
        let mut removed = Vec::new();
        for old in &self.previous {
            let p = dir.join(old);
            let regular = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file());
            if names.contains(old)
                || Some(old.as_str()) == run.log
                || old == MANIFEST
                || !regular
                || run.inputs.find(&p).is_some()
            {
                continue;
            }
            match std::fs::remove_file(&p) {
                Ok(()) => removed.push(old.clone()),
                Err(e) => log::warn!(
                    "cannot remove '{}', a file of the previous run: {}",
                    p.display(),
                    libpcap_tools::error_text(&e)
                ),
            }
        }
        // files named like a known plugin's output that nobody claims
        let mut stale: Vec<String> = run
            .known_names
            .iter()
            .filter(|n| !names.contains(n) && Some(n.as_str()) != run.log)
            .filter(|n| dir.join(n).is_file())
            .cloned()
            .collect();
        stale.sort();
        stale.dedup();
        let mut files = Vec::with_capacity(names.len());
        for name in &names {
            let p = dir.join(name);
            // the record files were digested as they were written
            let (size, sha256) = match libpcap_analyzer::output::written_digest(&p) {
                Some(d) => d,
                None => digest(&p)
                    .with_context(|| format!("reading '{}' for the manifest", p.display()))?,
            };
            files.push(json!({ "name": name, "size": size, "sha256": sha256 }));
        }
        let manifest = json!({
            "manifest": MANIFEST_FORMAT,
            "complete": true,
            "input_complete": run.input_complete,
            "tool": "pcap-analyzer",
            "version": env!("CARGO_PKG_VERSION"),
            "started": rfc3339(self.started),
            "ended": rfc3339(SystemTime::now()),
            "inputs": inputs_json(run.args),
            "options": options_json(run.args, run.plugins),
            "configuration": {
                "file": run.args.config.as_ref().map(|p| p.display().to_string()),
                "sha256": run.args.config.as_deref().and_then(|p| digest(p).ok()).map(|d| d.1),
                "effective_sha256": sha256_hex(run.effective_config.as_bytes()),
            },
            "files": files,
            "stale": stale,
            "removed": removed,
            "leftovers_removed": self.leftovers,
            "log": run.log,
            "summary": run.summary,
        });
        let mut text = serde_json::to_vec_pretty(&manifest)?;
        text.push(b'\n');
        write_atomically_with(&dir.join(MANIFEST), |w| w.write_all(&text))
            .context("writing the run manifest")?;
        let _ = std::fs::remove_file(dir.join(PREVIOUS));
        for s in &stale {
            log::warn!(
                "'{}' in the output directory was not written by this run (listed as stale in \
                 {MANIFEST})",
                dir.join(s).display()
            );
        }
        Ok(())
    }
}

/// What [`OutputDir::finish`] records of a run.
pub(crate) struct RunRecord<'a> {
    /// The command line.
    pub(crate) args: &'a Args,
    /// The plugins run.
    pub(crate) plugins: &'a [String],
    /// The configuration in effect, as TOML (digested).
    pub(crate) effective_config: String,
    /// The files the session wrote.
    pub(crate) files: &'a [PathBuf],
    /// The `--stats-json` file.
    pub(crate) stats_json: Option<&'a Path>,
    /// The log file's name in the directory, if any.
    pub(crate) log: Option<&'a str>,
    /// The run summary (`--stats-json`'s object).
    pub(crate) summary: &'a Value,
    /// `false` when the input was cut, damaged or the run stopped early.
    pub(crate) input_complete: bool,
    /// The output names of every known plugin.
    pub(crate) known_names: &'a [String],
    /// The inputs (never removed).
    pub(crate) inputs: &'a Inputs,
}

/// `true` when `a` (a file's parent; empty means `.`) is directory `dir`.
fn same_dir(a: Option<&Path>, dir: &Path) -> bool {
    let a = match a {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    matches!(
        (
            libpcap_tools::outfile::FileId::of(a),
            libpcap_tools::outfile::FileId::of(dir)
        ),
        (Ok(Some(x)), Ok(Some(y))) if x == y
    )
}

/// Size and sha256 (hex) of a file.
fn digest(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        size += n as u64;
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok((size, hex(&h.finalize())))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// A time as RFC 3339, UTC, milliseconds.
fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The inputs: files with their size and modification time, standard
/// input, an interface or NFQUEUE queues.
fn inputs_json(args: &Args) -> Vec<Value> {
    if let Some(i) = &args.interface {
        return vec![json!({ "interface": i })];
    }
    if let Some(q) = args.nfqueue {
        return vec![json!({ "nfqueue": q })];
    }
    args.inputs
        .iter()
        .map(|p| {
            let m = (p.as_os_str() != "-")
                .then(|| std::fs::metadata(p).ok())
                .flatten();
            json!({
                "path": p.display().to_string(),
                "size": m.as_ref().map(std::fs::Metadata::len),
                "mtime": m.and_then(|m| m.modified().ok()).map(rfc3339),
            })
        })
        .collect()
}

/// The options that shape the results.
fn options_json(args: &Args, plugins: &[String]) -> Value {
    json!({
        "plugins": plugins,
        "jobs": args.jobs,
        "skip": args.skip,
        "format": args.format.map(|f| format!("{f:?}").to_lowercase()),
        "filter": args.filter,
        "outdir": args.outdir.as_ref().map(|p| p.display().to_string()),
        "stdout": args.stdout,
        "stats_json": args.stats_json.as_ref().map(|p| p.display().to_string()),
        "duration": args.duration,
        "count": args.count,
        "user": args.user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_files_are_plain_names_only() {
        let m = json!({ "files": [
            { "name": "flows.jsonl" }, { "name": "../etc/passwd" }, { "name": "/x" },
            { "size": 3 }, { "name": "dns.jsonl" }
        ]});
        assert_eq!(listed_files(&m), ["flows.jsonl", "dns.jsonl"]);
    }

    #[test]
    fn digest_is_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            digest(&p).unwrap(),
            (
                3,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_string()
            )
        );
    }
}
