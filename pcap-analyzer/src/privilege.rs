//! The privilege drop of a run (`--user`, capabilities, `no_new_privs`,
//! Landlock), done with [`libpcap_live::privs`].
//!
//! `run` calls [`Privileges::prepare`] while it checks the options (the
//! user is resolved there: an unknown user, or `--user` without root, is a
//! usage error, exit code 2, before anything is opened), and
//! [`Privileges::drop_now`] once, after every input (the AF_PACKET sockets,
//! the NFQUEUE queues, or every input file), the output directory, the log
//! file and the `--stats-json` file are open, and before any thread starts.
//! Then:
//!
//! - with `--user NAME`: the process becomes that user (uid, gid, the
//!   user's supplementary groups);
//! - started as root without `--user`: it stays uid 0, without
//!   capabilities;
//! - capabilities kept: none for `-i` and files, `CAP_NET_ADMIN` for
//!   `--nfqueue` (the kernel checks it on every verdict:
//!   [`libpcap_live::nfqueue::KEEP_AFTER_SETUP`]);
//! - `no_new_privs` is set, and Landlock (where the kernel has it) allows
//!   file writes only in the output directory (none at all without one);
//! - without root and without capabilities there is nothing to drop, which
//!   the log and the summary say.
//!
//! Files after the drop:
//! - the output directory, when this run creates it and `--user` is given,
//!   is given to that user (chown); an existing one must be writable by
//!   the user: a probe file is created and removed right after the drop,
//!   and an error (exit code 1) says so before any packet is read;
//! - the log file and the `--stats-json` file are opened before the drop
//!   and written through their handles (the stats file is created then,
//!   emptied and written at the end, so it need not be writable by the
//!   user; a run that fails leaves a new one empty);
//! - the reports, spool files and periodic report rewrites are created in
//!   the output directory by the user.
//!
//! The drop is done by the `pcap-analyzer` program
//! ([`crate::Args::drop_privileges`], set by `main.rs`), or whenever
//! `--user` is given; a program that calls [`crate::run`] with threads of
//! its own (the unit tests) keeps its privileges.

use crate::{Args, UsageError, io_reason};
use anyhow::{Context, Result};
use libpcap_live::privs::{self, DropPlan, DropReport, Keep, TargetUser};
use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

/// What [`Privileges::prepare`] found: the user to become, and whether the
/// output directory exists yet.
#[derive(Debug)]
pub struct Privileges {
    user: Option<TargetUser>,
    enabled: bool,
    outdir: Option<PathBuf>,
    outdir_existed: bool,
    /// Where the output directory may be removed from (a private one).
    removable: Option<PathBuf>,
    /// Other directories written into (`[output] spill_dir`).
    also: Vec<PathBuf>,
}

/// The state after [`Privileges::drop_now`]: what was dropped, and the
/// `--stats-json` file opened before.
#[derive(Debug)]
pub struct Dropped {
    report: Option<DropReport>,
    stats: Option<(PathBuf, File)>,
}

impl Privileges {
    /// Resolves `--user` and checks the right to switch to it, before
    /// anything is opened (`outdir` is the output directory, if any).
    ///
    /// # Errors
    /// A [`UsageError`] (exit code 2) for an unknown user or `--user`
    /// without root.
    pub fn prepare(args: &Args, outdir: Option<&Path>) -> Result<Privileges> {
        let user = match &args.user {
            Some(spec) => {
                let u = TargetUser::resolve(spec)
                    .map_err(|e| UsageError(format!("--user {spec}: {e}")))?;
                let euid = privs::effective_uid();
                if euid != 0 {
                    return Err(UsageError(format!(
                        "--user {spec}: switching user needs root, and pcap-analyzer runs as \
                         uid {euid}; start it as root (e.g. with sudo), or leave --user out"
                    ))
                    .into());
                }
                Some(u)
            }
            None => None,
        };
        Ok(Privileges {
            enabled: args.drop_privileges || user.is_some(),
            user,
            outdir: outdir.map(Path::to_path_buf),
            outdir_existed: outdir.is_some_and(Path::exists),
            removable: None,
            also: Vec::new(),
        })
    }

    /// Marks the output directory as made by this run (handed to `--user`
    /// as a directory that did not exist).
    pub(crate) fn new_output_dir(&mut self) {
        self.outdir_existed = false;
        // and removed at the end of the run: its parent allows that
        self.removable = self
            .outdir
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf);
    }

    /// Keeps `dir` writable after the drop (checked then, like the output
    /// directory).
    pub(crate) fn write_also(&mut self, dir: &Path) {
        self.also.push(dir.to_path_buf());
    }

    /// Opens the `--stats-json` file, hands a new output directory to the
    /// user, drops the privileges (see the module docs) and checks the
    /// output directory is writable. Call it once, with every input and
    /// output open and no other thread.
    ///
    /// # Errors
    /// When the stats file cannot be opened, the drop fails, or the output
    /// directory is not writable after it (exit code 1).
    pub fn drop_now(self, args: &Args) -> Result<Dropped> {
        let stats = match &args.stats_json {
            Some(p) => {
                let f = File::options()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(p)
                    .map_err(|e| {
                        anyhow::anyhow!("cannot write '{}': {}", p.display(), io_reason(&e))
                    })?;
                Some((p.clone(), f))
            }
            None => None,
        };
        if !self.enabled {
            return Ok(Dropped {
                report: None,
                stats,
            });
        }
        if let (Some(u), Some(dir), false) = (&self.user, &self.outdir, self.outdir_existed) {
            std::os::unix::fs::chown(dir, Some(u.uid), Some(u.gid)).map_err(|e| {
                anyhow::anyhow!(
                    "cannot give the output directory '{}' to user {}: {}",
                    dir.display(),
                    u.name,
                    io_reason(&e)
                )
            })?;
        }
        let keep: &[Keep] = if args.nfqueue.is_some() {
            libpcap_live::nfqueue::KEEP_AFTER_SETUP
        } else if args.interface.is_some() {
            libpcap_live::afpacket::KEEP_AFTER_SETUP
        } else {
            &[]
        };
        let write_dirs: Vec<PathBuf> = self.outdir.iter().chain(&self.also).cloned().collect();
        let plan = DropPlan {
            user: self.user.clone(),
            keep: keep.to_vec(),
            confine_writes: true,
            write_dirs,
            remove_dirs_in: self.removable.iter().cloned().collect(),
        };
        let report = privs::drop_privileges(&plan).context("dropping privileges")?;
        log::info!("{}", report.summary());
        if let Some(dir) = &self.outdir {
            probe_writable(dir, &report, ("output directory", "choose another with -o"))?;
        }
        for dir in &self.also {
            probe_writable(
                dir,
                &report,
                ("directory", "choose another as [output] spill_dir"),
            )?;
        }
        Ok(Dropped {
            report: Some(report),
            stats,
        })
    }
}

/// Creates and removes a file in `dir`, as the process now is.
/// `what` names the directory in the error, with a hint.
fn probe_writable(dir: &Path, report: &DropReport, (what, hint): (&str, &str)) -> Result<()> {
    let probe = dir.join(format!(".pcap-analyzer-probe-{}", std::process::id()));
    let made = File::options().write(true).create_new(true).open(&probe);
    match made {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => {
            let who = match &report.user {
                Some(u) => format!("user {u} (uid {})", report.uid),
                None => format!("uid {} without capabilities", report.uid),
            };
            Err(anyhow::anyhow!(
                "{what} '{}' is not writable by {who}: {}; make it writable by that user \
                 (chown or chmod), or {hint}",
                dir.display(),
                io_reason(&e)
            ))
        }
    }
}

impl Dropped {
    /// The `privileges` object of the summary: ids, groups, capabilities
    /// kept (and the masks read back), `no_new_privs`, Landlock; `None`
    /// when no drop was done (a library call).
    pub fn json(&self) -> Option<serde_json::Value> {
        let r = self.report.as_ref()?;
        Some(serde_json::json!({
            "user": r.user,
            "uid": r.uid,
            "gid": r.gid,
            "groups": r.groups,
            "dropped": r.capabilities_dropped,
            "capabilities_kept": r.kept,
            "cap_effective": format!("{:016x}", r.effective),
            "cap_permitted": format!("{:016x}", r.permitted),
            "cap_bounding": format!("{:016x}", r.bounding),
            "no_new_privs": r.no_new_privs,
            "landlock": r.landlock,
            "write_dirs": r.write_dirs,
        }))
    }

    /// Writes `text` to the `--stats-json` file through the handle opened
    /// before the drop (emptied first when it is a regular file).
    ///
    /// # Errors
    /// When writing fails.
    pub fn write_stats(&mut self, text: &str) -> Result<()> {
        let Some((path, f)) = &mut self.stats else {
            return Ok(());
        };
        let regular = f.metadata().map(|m| m.is_file()).unwrap_or(false);
        let result = (|| {
            if regular {
                f.set_len(0)?;
                f.rewind()?;
            }
            f.write_all(text.as_bytes())?;
            f.flush()
        })();
        result.map_err(|e| anyhow::anyhow!("cannot write '{}': {}", path.display(), io_reason(&e)))
    }
}
