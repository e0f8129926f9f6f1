//! JSON-lines output that does not grow in memory with the capture: each
//! plugin instance appends its lines to a temporary file in the output
//! directory; merged instances pass their files on, and saving
//! concatenates them into the final file.

use crate::plugin::{PluginError, PluginResult};
use libpcap_tools::Config;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Section `[output]`: where plugins write (the tool sets `dir` from
/// `--outdir` and `format` from `--format`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct OutputConfig {
    /// Output directory; without one, record plugins only count.
    pub dir: Option<PathBuf>,
    /// Format of the record files (`jsonl`, `csv`, `zeek`, `parquet`).
    pub format: crate::output::Format,
    /// Bytes of records each plugin instance holds in memory before it
    /// spills a sorted run into the output directory.
    pub spool_memory: usize,
    /// Format the records of the text formats into the spilled runs, on
    /// the threads that write the runs, so that the merge at the end only
    /// copies lines: less time at the end when a core is left idle by the
    /// workers, more work in all (the runs are larger): on a 1M-packet DNS
    /// capture at `-j 1` on two cores, 0.95x the wall time and 1.16x the
    /// CPU time of row runs (medians of 11 paired rounds). Unset, the tool
    /// decides (pcap-analyzer: when `-j` is below the number of CPUs).
    pub format_runs: Option<bool>,
    /// Directory where reports over their memory share write sorted runs
    /// (the connection report, basic-stats' conversations), removed when
    /// merged; without one, `dir`.
    /// pcap-analyzer sets it: the output directory, or without one a
    /// private directory made in `$TMPDIR` and removed at the end.
    pub spill_dir: Option<PathBuf>,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            dir: None,
            format: crate::output::Format::Jsonl,
            spool_memory: crate::output::spool::DEFAULT_MEMORY,
            format_runs: None,
            spill_dir: None,
        }
    }
}

impl OutputConfig {
    /// Reads `[output]`.
    ///
    /// # Errors
    /// When `dir` is not a string.
    pub fn from_config(config: &Config, plugin: &str) -> PluginResult<OutputConfig> {
        config
            .section("output")
            .map_err(|e| PluginError::wrap(plugin, e))
    }

    /// Checks `spool_memory` (64 KiB to 1 TiB).
    ///
    /// # Errors
    /// A message naming the key, its value and the accepted range.
    pub fn validate(&self) -> Result<(), String> {
        crate::config::check_count(
            "[output] spool_memory",
            self.spool_memory as u64,
            64 << 10,
            crate::config::MAX_BYTES,
        )
    }

    /// A record spool of `kind` for this output.
    pub fn spool(&self, kind: &'static crate::output::Kind) -> crate::output::RecordSpool {
        let spool =
            crate::output::RecordSpool::new(kind, self.dir.clone()).with_memory(self.spool_memory);
        if self.format_runs == Some(true) {
            spool.with_format(self.format)
        } else {
            spool
        }
    }
}

/// `save_results` of a plugin whose records are in `spool`: the file
/// written into `dir` in `format`, if any (none without an output
/// directory), a failure named after `plugin`.
///
/// # Errors
/// When the records cannot be written ([`crate::output::RecordSpool::save`]).
pub(super) fn save_records(
    plugin: &str,
    spool: &mut crate::output::RecordSpool,
    dir: &Path,
    format: crate::output::Format,
) -> PluginResult<Vec<PathBuf>> {
    let saved = spool
        .save(dir, format)
        .map_err(|e| PluginError::wrap(plugin, e))?;
    Ok(saved.into_iter().collect())
}

/// A per-instance JSON-lines spool.
#[derive(Debug)]
pub struct Spool {
    plugin: &'static str,
    dir: Option<PathBuf>,
    current: Option<(PathBuf, BufWriter<std::fs::File>)>,
    done: Vec<PathBuf>,
    lines: u64,
    failed: bool,
}

impl Spool {
    /// A spool for `plugin` writing under `dir` (counting only when `None`).
    pub fn new(plugin: &'static str, dir: Option<PathBuf>) -> Spool {
        Spool {
            plugin,
            dir,
            current: None,
            done: Vec::new(),
            lines: 0,
            failed: false,
        }
    }

    /// `true` when lines are kept (an output directory is set).
    pub fn is_writing(&self) -> bool {
        self.dir.is_some() && !self.failed
    }

    /// Lines written so far (all merged instances).
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Appends one JSON value as a line.
    ///
    /// # Errors
    /// When the temporary file cannot be written (the spool then stops writing).
    pub fn push(&mut self, value: &serde_json::Value) -> PluginResult<()> {
        self.lines += 1;
        if self.failed {
            return Ok(());
        }
        let Some(dir) = self.dir.clone() else {
            return Ok(());
        };
        if self.current.is_none() {
            std::fs::create_dir_all(&dir).map_err(|e| self.fail(e))?;
            let path = libpcap_tools::outfile::spool_part_path(&dir, self.plugin);
            let f = std::fs::File::options()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| self.fail(e))?;
            self.current = Some((path, BufWriter::with_capacity(1 << 16, f)));
        }
        if let Some((_, w)) = self.current.as_mut() {
            let r = serde_json::to_writer(&mut *w, value)
                .map_err(std::io::Error::other)
                .and_then(|()| w.write_all(b"\n"));
            if let Err(e) = r {
                return Err(self.fail(e));
            }
        }
        Ok(())
    }

    fn fail(&mut self, e: std::io::Error) -> PluginError {
        self.failed = true;
        PluginError::wrap(self.plugin, e)
    }

    fn close(&mut self) -> std::io::Result<()> {
        if let Some((path, mut w)) = self.current.take() {
            w.flush()?;
            self.done.push(path);
        }
        Ok(())
    }

    /// Takes over the lines of another instance.
    ///
    /// # Errors
    /// When a temporary file cannot be flushed.
    pub fn merge(&mut self, mut other: Spool) -> PluginResult<()> {
        other
            .close()
            .map_err(|e| PluginError::wrap(self.plugin, e))?;
        self.done.append(&mut other.done);
        self.lines += other.lines;
        self.failed |= other.failed;
        Ok(())
    }

    /// Writes every line into `dir/name` (through a temporary file and a
    /// rename: [`crate::plugin::write_atomically_with`]) and removes the
    /// parts.
    ///
    /// # Errors
    /// When a file cannot be read or written.
    pub fn save(&mut self, dir: &Path, name: &str) -> PluginResult<Vec<PathBuf>> {
        let err = |e: std::io::Error| PluginError::wrap(self.plugin, e);
        self.close().map_err(err)?;
        let path = dir.join(name);
        let parts = &self.done;
        crate::plugin::write_atomically_with(&path, |out| {
            for part in parts {
                let mut f = std::fs::File::open(part).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "cannot read the spool part '{}': {}",
                            part.display(),
                            libpcap_tools::error_text(&e)
                        ),
                    )
                })?;
                std::io::copy(&mut f, out)?;
            }
            Ok(())
        })
        .map_err(err)?;
        for part in self.done.drain(..) {
            let _ = std::fs::remove_file(part);
        }
        Ok(vec![path])
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Some((path, _)) = self.current.take() {
            let _ = std::fs::remove_file(path);
        }
        for part in self.done.drain(..) {
            let _ = std::fs::remove_file(part);
        }
    }
}
