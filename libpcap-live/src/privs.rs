//! The privilege drop of a capture program: once its sockets and output
//! files are open, switch to an unprivileged user, keep only the
//! capabilities the capture still needs, forbid gaining privileges again
//! (`no_new_privs`) and, where the kernel has Landlock, confine file writes
//! to the output directories.
//!
//! # What a capture needs after its setup
//!
//! - **AF_PACKET** ([`crate::afpacket`]): nothing. Reading the ring (a
//!   memory mapping and `poll`), the statistics (`getsockopt`) and the end
//!   of the capture (closing the socket, which unmaps the ring and undoes
//!   the promiscuous membership) check no capability. Shown by the test
//!   `afpacket_needs_no_capability_after_setup` (`tests/privs.rs`): a thread
//!   without any capability reads the frames and closes the sockets, and
//!   the interface's promiscuity goes back to 0.
//! - **NFQUEUE** ([`crate::nfqueue`]): `CAP_NET_ADMIN`, for every message,
//!   verdicts included. The kernel's `nfnetlink_rcv` answers `EPERM` to any
//!   message whose sender fails `netlink_net_capable(skb, CAP_NET_ADMIN)`,
//!   which checks the opener of the socket *and* the task sending the
//!   message (`__netlink_ns_capable`: `file_ns_capable(...) &&
//!   ns_capable(...)`); the socket having been opened by root is not
//!   enough. Shown by the test `nfqueue_verdicts_need_cap_net_admin`
//!   (`tests/privs.rs`): a thread that drops `CAP_NET_ADMIN` after binding
//!   the queue sends verdicts the kernel refuses with `EPERM` (the
//!   datagrams stay queued), and they pass once the capability is raised
//!   again. [`crate::nfqueue::KEEP_AFTER_SETUP`] says so in code.
//!
//! # The order of the steps ([`drop_privileges`])
//!
//! 1. The process must have one thread: capabilities, `no_new_privs` and
//!    the Landlock domain belong to a thread, and threads started later
//!    inherit them from the one that starts them. With more than one
//!    thread the drop is refused ([`PrivError::Threads`]) rather than done
//!    on one thread only.
//! 2. Every capability not kept leaves the bounding set (needs
//!    `CAP_SETPCAP`, which root has) and the ambient set.
//! 3. With a user: `PR_SET_KEEPCAPS` when capabilities are kept, then the
//!    supplementary groups (the user's, as `initgroups` would set them,
//!    read when the user was resolved), the gid, then the uid, each with
//!    `setres*` so that the saved ids change too (no way back to root).
//! 4. Effective, inheritable and permitted sets: exactly the kept
//!    capabilities (effective first, so it stays within permitted).
//! 5. `PR_SET_NO_NEW_PRIVS`: no `execve` can give privileges back
//!    (set-user-id binaries, file capabilities).
//! 6. Landlock, when asked ([`DropPlan::confine_writes`]) and the kernel
//!    has it: writing, creating, removing and renaming files is allowed
//!    only beneath [`DropPlan::write_dirs`]; reading stays free (inputs,
//!    configuration and `/proc` may be read later). Files opened before
//!    (the log, a results file) keep working. A kernel without Landlock
//!    is reported ([`LandlockStatus::NotSupported`]), not an error.
//! 7. The result is read back from `/proc/thread-self/status` and checked;
//!    the [`DropReport`] says what holds.
//!
//! Started as root without a user, the process stays uid 0 but keeps only
//! the capabilities asked: uid 0 without capabilities has no more rights
//! over the kernel than any user (it still owns root's files). Started
//! without root and without capabilities, there is nothing to drop
//! ([`DropReport::capabilities_dropped`] is `false`); `no_new_privs` and
//! Landlock still apply.
//!
//! Crates: `caps` (capability sets, bounding and ambient sets), `nix` (user
//! and group lookup, `setgroups`/`setres[ug]id`, `prctl`), `landlock` (the
//! Landlock project's own crate).

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid};
use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

/// A capability a program may keep after the drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Keep {
    /// `CAP_NET_ADMIN`: NFQUEUE verdicts (see the module docs).
    #[serde(rename = "CAP_NET_ADMIN")]
    NetAdmin,
}

impl Keep {
    /// The kernel's name of the capability (`CAP_NET_ADMIN`).
    pub fn name(self) -> &'static str {
        match self {
            Keep::NetAdmin => "CAP_NET_ADMIN",
        }
    }

    /// The capability's bit in the masks of `/proc/PID/status`
    /// (`CAP_NET_ADMIN` is bit 12: `0x1000`).
    pub fn mask(self) -> u64 {
        self.capability().bitmask()
    }

    fn capability(self) -> Capability {
        match self {
            Keep::NetAdmin => Capability::CAP_NET_ADMIN,
        }
    }
}

/// The mask of the capabilities in `keep`.
pub fn mask_of(keep: &[Keep]) -> u64 {
    keep.iter().fold(0, |m, k| m | k.mask())
}

/// The user to switch to, resolved before anything changes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TargetUser {
    /// The user's name (the number as given when it has no entry in the
    /// user database).
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups, as `initgroups` sets them (the user's groups
    /// in the group database, and the primary group).
    pub groups: Vec<u32>,
}

impl TargetUser {
    /// Resolves `spec`, a user name or a numeric uid, in the user and group
    /// databases (`getpwnam`, `getpwuid`, `getgrouplist`). A numeric uid
    /// without an entry is taken as it is, with the same number as its
    /// group and no other group.
    ///
    /// # Errors
    /// [`PrivError::UnknownUser`] when no user has that name,
    /// [`PrivError::UserLookup`] when the database cannot be read.
    pub fn resolve(spec: &str) -> Result<TargetUser, PrivError> {
        let lookup = |source: nix::Error| PrivError::UserLookup {
            spec: spec.to_string(),
            source: io::Error::from(source),
        };
        let numeric = spec.parse::<u32>().ok();
        let user = match nix::unistd::User::from_name(spec).map_err(lookup)? {
            Some(u) => Some(u),
            None => match numeric {
                Some(n) => nix::unistd::User::from_uid(Uid::from_raw(n)).map_err(lookup)?,
                None => {
                    return Err(PrivError::UnknownUser {
                        spec: spec.to_string(),
                    });
                }
            },
        };
        let Some(user) = user else {
            // a bare number: no database entry, no other group
            let n = numeric.unwrap_or(0);
            return Ok(TargetUser {
                name: spec.to_string(),
                uid: n,
                gid: n,
                groups: vec![n],
            });
        };
        let name = CString::new(user.name.clone()).map_err(|_| PrivError::UnknownUser {
            spec: spec.to_string(),
        })?;
        let mut groups: Vec<u32> = nix::unistd::getgrouplist(&name, user.gid)
            .map_err(lookup)?
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        groups.sort_unstable();
        groups.dedup();
        Ok(TargetUser {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups,
        })
    }
}

/// What [`drop_privileges`] is to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropPlan {
    /// The user to become; `None` keeps the current ids.
    pub user: Option<TargetUser>,
    /// The capabilities to keep (effective and permitted); every other
    /// leaves every set, the bounding set included.
    pub keep: Vec<Keep>,
    /// Confine file writes with Landlock (when the kernel has it) to
    /// [`DropPlan::write_dirs`]; with no directory, no file can be written
    /// or created at all (files opened before still can).
    pub confine_writes: bool,
    /// The directories (and what is beneath them) where files may still be
    /// written, created, removed and renamed when writes are confined.
    pub write_dirs: Vec<PathBuf>,
    /// Directories beneath which empty directories may still be removed
    /// when writes are confined, and nothing else (a private work
    /// directory in the temporary directory, removed at the end of a run).
    pub remove_dirs_in: Vec<PathBuf>,
}

/// Whether Landlock confines the process after the drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LandlockStatus {
    /// Writes are confined to the write directories, every right asked
    /// enforced.
    Enforced,
    /// Writes are confined, but this kernel's Landlock lacks some of the
    /// rights asked (an older ABI: e.g. truncation or device ioctls stay
    /// free).
    Partial,
    /// This kernel has no Landlock (not built in, or not enabled at boot
    /// with `lsm=`): writes are not confined.
    NotSupported,
    /// No confinement was asked.
    NotRequested,
}

impl LandlockStatus {
    /// A word for logs and summaries (`enforced`, `partial`,
    /// `not supported by this kernel`, `not requested`).
    pub fn describe(self) -> &'static str {
        match self {
            LandlockStatus::Enforced => "enforced",
            LandlockStatus::Partial => "partly enforced (older kernel ABI)",
            LandlockStatus::NotSupported => "not supported by this kernel",
            LandlockStatus::NotRequested => "not requested",
        }
    }
}

/// What holds after [`drop_privileges`], read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DropReport {
    /// The user switched to, if any.
    pub user: Option<String>,
    /// Real, effective and saved user id (all equal after a switch).
    pub uid: u32,
    /// Real, effective and saved group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// `false` when there was nothing to drop (no capability at all, and
    /// no user to switch to).
    pub capabilities_dropped: bool,
    /// The capabilities kept.
    pub kept: Vec<Keep>,
    /// Effective capabilities (mask as in `/proc/PID/status`).
    pub effective: u64,
    /// Permitted capabilities.
    pub permitted: u64,
    /// Inheritable capabilities.
    pub inheritable: u64,
    /// Bounding set.
    pub bounding: u64,
    /// Ambient capabilities.
    pub ambient: u64,
    /// `PR_SET_NO_NEW_PRIVS` is set.
    pub no_new_privs: bool,
    /// Landlock confinement of writes.
    pub landlock: LandlockStatus,
    /// The directories writes are confined to (when Landlock confines).
    pub write_dirs: Vec<PathBuf>,
}

impl DropReport {
    /// One line for the log: ids, capabilities, `no_new_privs`, Landlock.
    pub fn summary(&self) -> String {
        let caps = if self.kept.is_empty() {
            "no capability".to_string()
        } else {
            self.kept
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
                + " only"
        };
        let who = match &self.user {
            Some(u) => format!("user {u} (uid {}, gid {})", self.uid, self.gid),
            None => format!("uid {}, gid {}", self.uid, self.gid),
        };
        let what = if self.capabilities_dropped {
            "privileges dropped"
        } else {
            "no privilege to drop"
        };
        format!(
            "{what}: {who}, groups {:?}, {caps} (effective {:#x}, bounding {:#x}), \
             no_new_privs {}, Landlock {}",
            self.groups,
            self.effective,
            self.bounding,
            if self.no_new_privs { "on" } else { "off" },
            self.landlock.describe(),
        )
    }
}

/// Why the privileges could not be dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivError {
    /// No user of that name (nor uid).
    #[error("no user '{spec}' in the user database (see `getent passwd`); give an existing user")]
    UnknownUser {
        /// The name or number given.
        spec: String,
    },
    /// The user or group database could not be read.
    #[error("cannot look up user '{spec}': {source}")]
    UserLookup {
        /// The name or number given.
        spec: String,
        /// The error.
        source: io::Error,
    },
    /// Switching user needs privileges the process lacks.
    #[error(
        "switching to user '{user}' needs root (or CAP_SETUID and CAP_SETGID), and this process \
         runs as uid {uid} without them; start it as root, or leave the user option out"
    )]
    CannotSwitchUser {
        /// The user asked.
        user: String,
        /// The current effective uid.
        uid: u32,
    },
    /// The process has more than one thread.
    #[error(
        "cannot drop privileges with {count} threads running: capabilities belong to each \
         thread, so the drop must come before any thread starts"
    )]
    Threads {
        /// Threads counted in `/proc/self/task`.
        count: usize,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Os {
        /// The step.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A capability set could not be changed.
    #[error("{what}: {message}")]
    Capabilities {
        /// The step.
        what: &'static str,
        /// The error of the `caps` crate.
        message: String,
    },
    /// Landlock failed (on a kernel that has it).
    #[error("Landlock: {0}")]
    Landlock(String),
    /// The state read back is not the one asked.
    #[error("after the privilege drop, {0}")]
    Verify(String),
}

fn os(what: &'static str) -> impl Fn(nix::Error) -> PrivError {
    move |e| PrivError::Os {
        what,
        source: io::Error::from(e),
    }
}

fn capsfail(what: &'static str) -> impl Fn(caps::errors::CapsError) -> PrivError {
    move |e| PrivError::Capabilities {
        what,
        message: e.to_string(),
    }
}

/// The effective user id of the process (0: root).
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The number of threads of this process (entries of `/proc/self/task`).
///
/// # Errors
/// When `/proc` cannot be read.
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Drops the privileges of the process as `plan` says (see the module docs
/// for the steps), and reports what holds after.
///
/// # Errors
/// [`PrivError::Threads`] with more than one thread,
/// [`PrivError::CannotSwitchUser`] when a user is asked without the right
/// to switch, the failing step otherwise (the process may then be half
/// way: a caller should end rather than go on).
pub fn drop_privileges(plan: &DropPlan) -> Result<DropReport, PrivError> {
    let count = thread_count().map_err(|source| PrivError::Os {
        what: "counting the threads in /proc/self/task",
        source,
    })?;
    if count != 1 {
        return Err(PrivError::Threads { count });
    }
    let keep: CapsHashSet = plan.keep.iter().map(|k| k.capability()).collect();
    let before = ProcStatus::of_this_thread().map_err(|source| PrivError::Os {
        what: "reading /proc/thread-self/status",
        source,
    })?;
    let effective =
        caps::read(None, CapSet::Effective).map_err(capsfail("reading capabilities"))?;
    if let Some(u) = &plan.user
        && !(effective.contains(&Capability::CAP_SETUID)
            && effective.contains(&Capability::CAP_SETGID))
    {
        return Err(PrivError::CannotSwitchUser {
            user: u.name.clone(),
            uid: before.uid[1],
        });
    }
    let had_caps = before.cap_eff | before.cap_prm | before.cap_inh | before.cap_amb != 0;
    let bounding_before = before.cap_bnd;

    // 2. bounding and ambient sets (the bounding set needs CAP_SETPCAP)
    if effective.contains(&Capability::CAP_SETPCAP) {
        for cap in caps::runtime::thread_all_supported() {
            if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(capsfail("dropping from the bounding set"))?;
            }
        }
    }
    if caps::runtime::ambient_set_supported().is_ok() {
        caps::clear(None, CapSet::Ambient).map_err(capsfail("clearing the ambient set"))?;
    }

    // 3. groups, gid, uid
    if let Some(u) = &plan.user {
        if !keep.is_empty() {
            nix::sys::prctl::set_keepcaps(true).map_err(os("PR_SET_KEEPCAPS"))?;
        }
        let groups: Vec<Gid> = u.groups.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&groups).map_err(os("setgroups"))?;
        let g = Gid::from_raw(u.gid);
        nix::unistd::setresgid(g, g, g).map_err(os("setresgid"))?;
        let id = Uid::from_raw(u.uid);
        nix::unistd::setresuid(id, id, id).map_err(os("setresuid"))?;
        if !keep.is_empty() {
            nix::sys::prctl::set_keepcaps(false).map_err(os("PR_SET_KEEPCAPS"))?;
        }
    }

    // 4. effective first (it must stay within permitted), then the others
    if had_caps || plan.user.is_some() {
        caps::set(None, CapSet::Effective, &keep).map_err(capsfail(
            "setting the effective capabilities (is every capability kept permitted?)",
        ))?;
        caps::set(None, CapSet::Inheritable, &CapsHashSet::new())
            .map_err(capsfail("clearing the inheritable capabilities"))?;
        caps::set(None, CapSet::Permitted, &keep)
            .map_err(capsfail("setting the permitted capabilities"))?;
    }

    // 5. no way back through execve
    nix::sys::prctl::set_no_new_privs().map_err(os("PR_SET_NO_NEW_PRIVS"))?;

    // 6. writes confined
    let landlock = if plan.confine_writes {
        confine_writes_with(&plan.write_dirs, &plan.remove_dirs_in)?
    } else {
        LandlockStatus::NotRequested
    };

    // 7. read back and check
    let after = ProcStatus::of_this_thread().map_err(|source| PrivError::Os {
        what: "reading /proc/thread-self/status",
        source,
    })?;
    let want = mask_of(&plan.keep);
    let mut wrong = Vec::new();
    if let Some(u) = &plan.user {
        if after.uid != [u.uid; 4] {
            wrong.push(format!("uids are {:?}, not {}", after.uid, u.uid));
        }
        if after.gid != [u.gid; 4] {
            wrong.push(format!("gids are {:?}, not {}", after.gid, u.gid));
        }
        let mut got = after.groups.clone();
        got.sort_unstable();
        if got != u.groups {
            wrong.push(format!("groups are {got:?}, not {:?}", u.groups));
        }
    }
    if had_caps || plan.user.is_some() {
        for (name, got, expected) in [
            ("effective", after.cap_eff, want),
            ("permitted", after.cap_prm, want),
            ("inheritable", after.cap_inh, 0),
            ("ambient", after.cap_amb, 0),
        ] {
            if got != expected {
                wrong.push(format!("the {name} set is {got:#x}, not {expected:#x}"));
            }
        }
        if effective.contains(&Capability::CAP_SETPCAP) && after.cap_bnd & !want != 0 {
            wrong.push(format!(
                "the bounding set is {:#x}, not within {want:#x}",
                after.cap_bnd
            ));
        }
    }
    if !after.no_new_privs {
        wrong.push("no_new_privs is not set".to_string());
    }
    if !wrong.is_empty() {
        return Err(PrivError::Verify(wrong.join("; ")));
    }
    log::debug!(
        "privileges: bounding set {bounding_before:#x} -> {:#x}, effective {:#x} -> {:#x}",
        after.cap_bnd,
        before.cap_eff,
        after.cap_eff
    );
    Ok(DropReport {
        user: plan.user.as_ref().map(|u| u.name.clone()),
        uid: after.uid[1],
        gid: after.gid[1],
        groups: after.groups,
        capabilities_dropped: had_caps || plan.user.is_some(),
        kept: plan.keep.clone(),
        effective: after.cap_eff,
        permitted: after.cap_prm,
        inheritable: after.cap_inh,
        bounding: after.cap_bnd,
        ambient: after.cap_amb,
        no_new_privs: after.no_new_privs,
        landlock,
        write_dirs: if matches!(landlock, LandlockStatus::Enforced | LandlockStatus::Partial) {
            plan.write_dirs.clone()
        } else {
            Vec::new()
        },
    })
}

/// Confines the file writes of the calling thread (and of the threads it
/// starts afterwards) to `dirs` with Landlock: writing, truncating,
/// creating, removing, renaming or linking files, and device ioctls, are
/// allowed only beneath them; reading is not restricted, and files opened
/// before keep their rights. [`drop_privileges`] calls it on the single
/// thread of the process. The rights are those of Landlock ABI v7 (Linux
/// 6.15, tested here); the crate lowers them on older kernels
/// ([`LandlockStatus::Partial`]).
///
/// # Errors
/// [`PrivError::Landlock`] when a directory is missing or the kernel
/// refuses the ruleset; a kernel without Landlock is not an error
/// ([`LandlockStatus::NotSupported`]).
pub fn confine_writes(dirs: &[PathBuf]) -> Result<LandlockStatus, PrivError> {
    confine_writes_with(dirs, &[])
}

/// As [`confine_writes`], also allowing empty directories beneath
/// `remove_dirs_in` to be removed (no other write there).
///
/// # Errors
/// As [`confine_writes`].
pub fn confine_writes_with(
    dirs: &[PathBuf],
    remove_dirs_in: &[PathBuf],
) -> Result<LandlockStatus, PrivError> {
    use landlock::{
        ABI, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, path_beneath_rules,
    };
    let ll = |e: landlock::RulesetError| PrivError::Landlock(e.to_string());
    let abi = ABI::V7;
    let write = AccessFs::from_write(abi);
    for d in dirs.iter().chain(remove_dirs_in) {
        if !d.is_dir() {
            return Err(PrivError::Landlock(format!(
                "'{}' is not a directory",
                d.display()
            )));
        }
    }
    let status = Ruleset::default()
        .handle_access(write)
        .map_err(ll)?
        .create()
        .map_err(ll)?
        .add_rules(path_beneath_rules(dirs, write))
        .map_err(ll)?
        .add_rules(path_beneath_rules(remove_dirs_in, AccessFs::RemoveDir))
        .map_err(ll)?
        .restrict_self()
        .map_err(ll)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockStatus::Enforced,
        RulesetStatus::PartiallyEnforced => LandlockStatus::Partial,
        // the kernel has no Landlock; newer variants are treated the same
        _ => LandlockStatus::NotSupported,
    })
}

/// The credential fields of `/proc/PID/status` (or of one thread's
/// `/proc/PID/task/TID/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcStatus {
    /// Real, effective, saved and filesystem uid.
    pub uid: [u32; 4],
    /// Real, effective, saved and filesystem gid.
    pub gid: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// `CapInh`.
    pub cap_inh: u64,
    /// `CapPrm`.
    pub cap_prm: u64,
    /// `CapEff`.
    pub cap_eff: u64,
    /// `CapBnd`.
    pub cap_bnd: u64,
    /// `CapAmb`.
    pub cap_amb: u64,
    /// `NoNewPrivs`.
    pub no_new_privs: bool,
}

impl ProcStatus {
    /// Parses the text of a status file; `None` when a field is missing or
    /// malformed.
    pub fn parse(text: &str) -> Option<ProcStatus> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let ids = |name: &str| -> Option<[u32; 4]> {
            let v: Vec<u32> = field(name)?
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            <[u32; 4]>::try_from(v).ok()
        };
        let mask = |name: &str| u64::from_str_radix(field(name)?, 16).ok();
        Some(ProcStatus {
            uid: ids("Uid")?,
            gid: ids("Gid")?,
            groups: field("Groups")?
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?,
            cap_inh: mask("CapInh")?,
            cap_prm: mask("CapPrm")?,
            cap_eff: mask("CapEff")?,
            cap_bnd: mask("CapBnd")?,
            cap_amb: mask("CapAmb")?,
            no_new_privs: field("NoNewPrivs")? == "1",
        })
    }

    /// Reads and parses the status file at `path`.
    ///
    /// # Errors
    /// When it cannot be read, or lacks a field.
    pub fn read(path: &Path) -> io::Result<ProcStatus> {
        let text = std::fs::read_to_string(path)?;
        ProcStatus::parse(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: missing or malformed credential fields", path.display()),
            )
        })
    }

    /// The status of the calling thread (`/proc/thread-self/status`).
    ///
    /// # Errors
    /// As [`ProcStatus::read`].
    pub fn of_this_thread() -> io::Result<ProcStatus> {
        ProcStatus::read(Path::new("/proc/thread-self/status"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_parsed() {
        let text = "Name:\tpcap-analyzer\nUid:\t65534\t65534\t65534\t65534\n\
                    Gid:\t65534\t65534\t65534\t65534\nGroups:\t65534 \n\
                    CapInh:\t0000000000000000\nCapPrm:\t0000000000001000\n\
                    CapEff:\t0000000000001000\nCapBnd:\t0000000000001000\n\
                    CapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t0\n";
        let s = ProcStatus::parse(text).unwrap();
        assert_eq!(s.uid, [65534; 4]);
        assert_eq!(s.groups, vec![65534]);
        assert_eq!(s.cap_eff, Keep::NetAdmin.mask());
        assert_eq!(s.cap_eff, 0x1000);
        assert!(s.no_new_privs);
        // a status without groups, and one with a field missing
        let empty = text.replace("Groups:\t65534 ", "Groups:\t");
        assert!(ProcStatus::parse(&empty).unwrap().groups.is_empty());
        assert!(ProcStatus::parse(&text.replace("NoNewPrivs:\t1\n", "")).is_none());
        assert!(ProcStatus::parse(&text.replace("Uid:\t65534\t", "Uid:\t")).is_none());
    }

    #[test]
    fn this_threads_status_matches_the_system_calls() {
        let s = ProcStatus::of_this_thread().unwrap();
        assert_eq!(s.uid[1], nix::unistd::geteuid().as_raw());
        assert_eq!(s.gid[1], nix::unistd::getegid().as_raw());
    }

    #[test]
    fn root_resolves_and_an_unknown_name_is_named() {
        let r = TargetUser::resolve("root").unwrap();
        assert_eq!((r.uid, r.gid), (0, 0));
        assert!(r.groups.contains(&0));
        // by number: the same entry
        assert_eq!(TargetUser::resolve("0").unwrap(), r);
        let e = TargetUser::resolve("pal-no-such-user").unwrap_err();
        assert!(matches!(e, PrivError::UnknownUser { .. }), "{e:?}");
        assert!(e.to_string().contains("'pal-no-such-user'"), "{e}");
        // a number nobody has: taken as it is
        let n = TargetUser::resolve("4000123").unwrap();
        assert_eq!(
            (n.uid, n.gid, n.groups.clone()),
            (4000123, 4000123, vec![4000123])
        );
    }

    #[test]
    fn the_drop_is_refused_while_other_threads_run() {
        // the test harness runs this test on a thread of its own: two at least
        let n = thread_count().unwrap();
        assert!(n >= 2, "{n}");
        let before = ProcStatus::of_this_thread().unwrap();
        let e = drop_privileges(&DropPlan::default()).unwrap_err();
        assert!(
            matches!(e, PrivError::Threads { count } if count >= 2),
            "{e:?}"
        );
        assert!(e.to_string().contains("threads running"), "{e}");
        // refused before any change
        assert_eq!(ProcStatus::of_this_thread().unwrap(), before);
    }
}
