//! Records on standard output (`--stdout KIND`, `-o -`) and plugins whose
//! results have nowhere to go.
//!
//! # `--stdout KIND` and `-o -`
//! One record kind goes to standard output, in the `--format` (JSON lines
//! when none is given), and nothing else does: the progress bar, the
//! summary and the log stay on standard error. The records are those of the
//! file the run writes (the run writes into `-o DIR`, or into a temporary
//! directory removed at the end), copied to standard output once the run
//! is over: they are ordered by time then flow id, the same for any `-j`,
//! and that order is known only at the end.
//!
//! `-o -` is `--stdout` with the kind chosen for the user: the record kind
//! of the plugins given with `-p` when they write exactly one, else (no
//! `-p`) the connection report. Several record kinds with `-p` and `-o -`
//! is a usage error asking for `--stdout KIND`.
//!
//! # Results with nowhere to go
//! A plugin named with `-p` writes its results only into an output
//! directory; without `-o DIR` (or `[output] dir`) they would be lost
//! silently. The run goes on (its counters are in the summary), with a
//! warning naming the plugin and the option that keeps its results; the
//! exit code is not changed by it (0 for a complete run). The connection
//! report is exempt while it goes to standard output, and so is the kind
//! given to `--stdout`.

use crate::UsageError;
use anyhow::{Context, Result};
use libpcap_analyzer::output::{Kind, schema};
use libpcap_analyzer::plugin::Plugin;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The record kind named `name` (its file name or its kind name:
/// `flows`/`flow`, `connections`/`connection`, `dns`, `tls`,
/// `community-id`/`community_id`).
pub(crate) fn kind_named(name: &str) -> Option<&'static Kind> {
    schema::ALL
        .iter()
        .copied()
        .find(|k| k.file == name || k.name == name)
}

/// The record kinds a plugin writes: the kinds whose file name is the stem
/// of one of its output names (the connection report under any name).
fn kinds_of(p: &dyn Plugin) -> Vec<&'static Kind> {
    if p.name() == "connections" {
        return vec![&schema::CONNECTION];
    }
    let mut v: Vec<&'static Kind> = p
        .output_names()
        .iter()
        .filter_map(|n| Path::new(n).file_stem()?.to_str().map(str::to_string))
        .filter_map(|stem| schema::ALL.iter().copied().find(|k| k.file == stem))
        .collect();
    v.sort_by_key(|k| k.name);
    v.dedup_by_key(|k| k.name);
    v
}

/// What goes to standard output: a record kind and the names of the files
/// of the plugin that writes it.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    /// The record kind.
    pub(crate) kind: &'static Kind,
    /// The plugin that writes it.
    pub(crate) plugin: String,
    /// The file names that plugin may write (one is the kind's file).
    names: Vec<String>,
}

/// The kind `--stdout`/`-o -` asks for, checked against the plugins of the
/// run (`None` when neither is given).
///
/// # Errors
/// A [`UsageError`] for an unknown kind, a kind no plugin of the run
/// writes, or `-o -` with several record kinds.
pub(crate) fn resolve(
    stdout: Option<&str>,
    dash: bool,
    explicit_plugins: bool,
    plugins: &[Box<dyn Plugin>],
) -> Result<Option<Stream>> {
    let names = || {
        schema::ALL
            .iter()
            .map(|k| k.file)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kind = match stdout {
        Some(n) => Some(kind_named(n).ok_or_else(|| {
            UsageError(format!(
                "--stdout {n}: unknown record kind; give one of {}",
                names()
            ))
        })?),
        None if dash => {
            let mut all: Vec<&'static Kind> = plugins.iter().flat_map(|p| kinds_of(&**p)).collect();
            all.sort_by_key(|k| k.name);
            all.dedup_by_key(|k| k.name);
            match (explicit_plugins, all.as_slice()) {
                (true, [one]) => Some(*one),
                (false, _) if all.iter().any(|k| k.name == schema::CONNECTION.name) => {
                    Some(&schema::CONNECTION)
                }
                (_, []) => {
                    return Err(UsageError(
                        "-o -: no plugin of this run writes records; give -p with one of \
                         flows, connections, dns, tls, community-id, or -o DIR"
                            .to_string(),
                    )
                    .into());
                }
                _ => {
                    return Err(UsageError(format!(
                        "-o -: the plugins of this run write several record kinds ({}); choose \
                         one with --stdout KIND, or give -p with one plugin",
                        all.iter().map(|k| k.file).collect::<Vec<_>>().join(", ")
                    ))
                    .into());
                }
            }
        }
        None => None,
    };
    let Some(kind) = kind else {
        return Ok(None);
    };
    let Some(p) = plugins
        .iter()
        .find(|p| kinds_of(&***p).iter().any(|k| k.name == kind.name))
    else {
        return Err(UsageError(format!(
            "--stdout {}: no plugin of this run writes {} records; add its plugin with -p",
            kind.file, kind.name
        ))
        .into());
    };
    Ok(Some(Stream {
        kind,
        plugin: p.name().to_string(),
        names: p.output_names(),
    }))
}

/// The warnings for plugins named with `-p` whose results have nowhere to
/// go (see the module docs): no output directory, and neither standard
/// output nor the connection report on it.
pub(crate) fn nowhere_warnings(
    explicit_plugins: bool,
    outdir: bool,
    stream: Option<&Stream>,
    plugins: &[Box<dyn Plugin>],
) -> Vec<String> {
    if !explicit_plugins || outdir {
        return Vec::new();
    }
    plugins
        .iter()
        .filter(|p| !p.output_names().is_empty())
        .filter(|p| match stream {
            Some(s) => s.plugin != p.name(),
            // the connection report goes to standard output
            None => p.name() != "connections",
        })
        .map(|p| {
            let kinds = kinds_of(&**p);
            let how = match kinds.first() {
                Some(k) => format!("-o DIR, or --stdout {} for its records", k.file),
                None => "-o DIR".to_string(),
            };
            let what = if stream.is_some() && kinds.is_empty() {
                "its results are not written (standard output has another record kind)"
            } else if stream.is_some() {
                "its records are not written (standard output has another record kind)"
            } else {
                "its results are not written (no output directory)"
            };
            format!(
                "plugin '{}': {what}; the run only counts (see the summary); give {how}",
                p.name()
            )
        })
        .collect()
}

/// Copies the file of the stream's kind, among the files the run wrote,
/// to `out`. Nothing is written when the run wrote no such file.
///
/// # Errors
/// When the file cannot be read or `out` written (a closed pipe included:
/// see [`crate::is_broken_pipe`]).
pub(crate) fn copy(stream: &Stream, files: &[PathBuf], out: &mut dyn Write) -> Result<()> {
    let Some(path) = files.iter().find(|f| {
        f.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| stream.names.iter().any(|m| m == n))
    }) else {
        log::debug!(
            "no {} file written: nothing for standard output",
            stream.kind.name
        );
        return Ok(());
    };
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("reading '{}' for standard output", path.display()))?;
    std::io::copy(&mut f, out)
        .and_then(|_| out.flush())
        .context("writing the records to standard output")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_by_file_or_kind() {
        assert_eq!(kind_named("flows").map(|k| k.name), Some("flow"));
        assert_eq!(kind_named("flow").map(|k| k.name), Some("flow"));
        assert_eq!(
            kind_named("community-id").map(|k| k.name),
            Some("community_id")
        );
        assert_eq!(
            kind_named("connections").map(|k| k.name),
            Some("connection")
        );
        assert!(kind_named("conn.log").is_none());
    }
}
