//! Output files that never destroy an input and are never seen half
//! written: the checks and the atomic writing shared by PAL's tools.
//!
//! - [`OutputPlan`] checks every output path of a run, before anything is
//!   written, against the run's inputs ([`Inputs`]) and against the other
//!   outputs. Two paths are the same file when they name the same device and
//!   inode (a hard link, a symlink, `./x` and `x`), or, for outputs that do
//!   not exist yet, when they resolve to the same path (the existing part of
//!   the path through its symlinks, the rest as written). An output that does
//!   not exist yet cannot be an input: an output in an input's directory is
//!   fine.
//! - [`AtomicFile`] writes a file as a temporary in the same directory
//!   ([`temporary_path`]: `.NAME.tmpPID-N`), synced and renamed into place
//!   on [`AtomicFile::commit`], and removed if dropped before: a reader of
//!   the path sees the old file or the new one, never a part. A path that is
//!   a symlink keeps its link (its target is replaced); a path that exists
//!   and is not a regular file (`/dev/null`, a FIFO, a terminal) is written
//!   directly, since it cannot be replaced.
//! - [`remove_leftovers`] removes the temporaries ([`temporary_path`]) and
//!   spool parts ([`spool_part_path`]) that a killed run left in a
//!   directory, and only those: names of exactly these patterns whose
//!   process is gone.
//! - [`check_file_name`] keeps names from a configuration file inside the
//!   output directory.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The identity of a file: its device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

impl FileId {
    /// The identity of the file `path` names (through symlinks), `None`
    /// when it does not exist (or is a dangling symlink).
    ///
    /// # Errors
    /// When the file exists but cannot be examined (no permission on a
    /// directory of the path).
    pub fn of(path: &Path) -> io::Result<Option<FileId>> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(FileId {
                dev: m.dev(),
                ino: m.ino(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Why an output path was refused by [`OutputPlan`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutputConflict {
    /// The output is one of the inputs.
    #[error(
        "{what} '{}' is the {input_what} '{}' ({how}): writing it would destroy it; choose \
         another output",
        output.display(),
        input.display()
    )]
    IsInput {
        /// What the output is (e.g. `--stats-json`).
        what: String,
        /// The output path as given.
        output: PathBuf,
        /// What the input is (e.g. `input`, `configuration file`).
        input_what: String,
        /// The input path as given.
        input: PathBuf,
        /// How they are the same (`the same file`, `a hard link to it`, …).
        how: &'static str,
    },
    /// Two outputs are the same file.
    #[error(
        "{what} '{}' and {other_what} '{}' are the same file: give them different names",
        output.display(),
        other.display()
    )]
    Collision {
        /// What the output is.
        what: String,
        /// The output path as given.
        output: PathBuf,
        /// What the other output is.
        other_what: String,
        /// The other output path as given.
        other: PathBuf,
    },
    /// The output cannot be examined.
    #[error("{what} '{}': {reason}", output.display())]
    Unusable {
        /// What the output is.
        what: String,
        /// The output path as given.
        output: PathBuf,
        /// Why.
        reason: String,
    },
}

/// An input (or output) path with its identity and resolved path.
#[derive(Debug, Clone)]
struct Known {
    what: String,
    given: PathBuf,
    id: Option<FileId>,
    resolved: PathBuf,
    symlink: bool,
}

impl Known {
    fn new(what: &str, path: &Path) -> io::Result<Known> {
        let symlink = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        Ok(Known {
            what: what.to_string(),
            given: path.to_path_buf(),
            id: FileId::of(path)?,
            resolved: resolve(path),
            symlink,
        })
    }

    fn same(&self, other: &Known) -> bool {
        match (self.id, other.id) {
            (Some(a), Some(b)) => a == b,
            _ => self.resolved == other.resolved,
        }
    }
}

/// `path` made absolute, its longest existing ancestor resolved through
/// its symlinks, the rest kept as written (`.` and `..` resolved by name).
fn resolve(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut base = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(base) {
            let mut out = c;
            for part in rest.iter().rev() {
                match part {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(n) => out.push(n),
                    _ => {}
                }
            }
            return out;
        }
        match (base.parent(), base.components().next_back()) {
            (Some(p), Some(last)) => {
                rest.push(last);
                base = p;
            }
            _ => return abs,
        }
    }
}

/// The regular-file inputs of a run, by identity.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    files: Vec<Known>,
}

impl Inputs {
    /// No input yet.
    pub fn new() -> Inputs {
        Inputs::default()
    }

    /// Adds an input file (`-`, standard input, is ignored; so is a path
    /// that does not exist: it is not read either).
    ///
    /// # Errors
    /// When the file exists but cannot be examined.
    pub fn add(&mut self, what: &str, path: &Path) -> io::Result<()> {
        if path.as_os_str() == "-" {
            return Ok(());
        }
        let k = Known::new(what, path)?;
        if k.id.is_some() {
            self.files.push(k);
        }
        Ok(())
    }

    /// The input that `path` is the same file as, if any.
    pub fn find(&self, path: &Path) -> Option<&Path> {
        let k = Known::new("", path).ok()?;
        self.files
            .iter()
            .find(|i| k.id.is_some() && i.id == k.id)
            .map(|i| i.given.as_path())
    }
}

/// The outputs of a run, each checked against the inputs and the outputs
/// added before it (see the [module docs](self)).
#[derive(Debug, Clone, Default)]
pub struct OutputPlan {
    inputs: Inputs,
    outputs: Vec<Known>,
}

impl OutputPlan {
    /// A plan for a run reading `inputs`.
    pub fn new(inputs: Inputs) -> OutputPlan {
        OutputPlan {
            inputs,
            outputs: Vec::new(),
        }
    }

    /// Adds output `path` (`what` names it in messages, e.g. `--stats-json`
    /// or `plugin file`). Standard output (`-`) is not checked.
    ///
    /// # Errors
    /// [`OutputConflict`] when it is an input or another output.
    pub fn add(&mut self, what: &str, path: &Path) -> Result<(), OutputConflict> {
        if path.as_os_str() == "-" {
            return Ok(());
        }
        let k = Known::new(what, path).map_err(|e| OutputConflict::Unusable {
            what: what.to_string(),
            output: path.to_path_buf(),
            reason: crate::error_text(&e),
        })?;
        if let Some(i) = self.inputs.files.iter().find(|i| k.same(i)) {
            let how = if k.symlink {
                "a symlink to it"
            } else if k.resolved != i.resolved {
                "a hard link to it"
            } else {
                "the same file"
            };
            return Err(OutputConflict::IsInput {
                what: what.to_string(),
                output: path.to_path_buf(),
                input_what: i.what.clone(),
                input: i.given.clone(),
                how,
            });
        }
        if let Some(o) = self.outputs.iter().find(|o| k.same(o)) {
            return Err(OutputConflict::Collision {
                what: what.to_string(),
                output: path.to_path_buf(),
                other_what: o.what.clone(),
                other: o.given.clone(),
            });
        }
        self.outputs.push(k);
        Ok(())
    }

    /// The inputs the plan checks against.
    pub fn inputs(&self) -> &Inputs {
        &self.inputs
    }
}

/// Checks that `name`, given by configuration key `key`, is a plain file
/// name: not empty, no path separator, not `.` or `..`, no NUL, and not a
/// name of PAL's temporaries (which [`remove_leftovers`] would remove).
///
/// # Errors
/// A message naming the key and what to give instead.
pub fn check_file_name(key: &str, name: &str) -> Result<(), String> {
    let bad = if name.is_empty() {
        Some("it is empty")
    } else if name.contains('/') || name.contains('\\') {
        Some("it holds a path separator")
    } else if name == "." || name == ".." {
        Some("it is not a file name")
    } else if name.contains('\0') {
        Some("it holds a NUL byte")
    } else if leftover_pid(name).is_some() {
        Some("it has the form of PAL's temporary files")
    } else {
        None
    };
    match bad {
        Some(why) => Err(format!(
            "{key} = {name:?}: {why}; give a plain file name (it is written in the output \
             directory)"
        )),
        None => Ok(()),
    }
}

static NEXT_TEMPORARY: AtomicU64 = AtomicU64::new(0);

/// A new temporary path for `path`, in the same directory:
/// `.NAME.tmpPID-N`, unique in this process.
pub fn temporary_path(path: &Path) -> PathBuf {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT_TEMPORARY.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.tmp{}-{n}", std::process::id()))
}

/// A new spool part path for plugin `plugin` in `dir`:
/// `.PLUGIN.PID.N.part`, unique in this process.
pub fn spool_part_path(dir: &Path, plugin: &str) -> PathBuf {
    let n = NEXT_TEMPORARY.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{plugin}.{}.{n}.part", std::process::id()))
}

/// The process id in a name of PAL's temporary files (`.NAME.tmpPID-N`,
/// `.PLUGIN.PID.N.part`, `.pcap-analyzer-probe-PID`), `None` for any other
/// name.
pub fn leftover_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(pid) = rest.strip_prefix("pcap-analyzer-probe-") {
        return pid.parse().ok().filter(|_| digits(pid));
    }
    if let Some(body) = rest.strip_suffix(".part") {
        let mut it = body.rsplitn(3, '.');
        let (n, pid, plugin) = (it.next()?, it.next()?, it.next()?);
        if digits(n) && digits(pid) && !plugin.is_empty() {
            return pid.parse().ok();
        }
        return None;
    }
    let (stem, tail) = rest.rsplit_once(".tmp")?;
    let (pid, n) = tail.split_once('-')?;
    if !stem.is_empty() && digits(pid) && digits(n) {
        return pid.parse().ok();
    }
    None
}

/// `true` when process `pid` is running (through `/proc`; `None` when
/// `/proc` is not there to tell).
fn process_alive(pid: u32) -> Option<bool> {
    if !Path::new("/proc/self").exists() {
        return None;
    }
    Some(Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes from `dir` (not its subdirectories) the regular files whose
/// names are PAL temporaries ([`leftover_pid`]) of a process that is not
/// running, or of this process (call it before this process makes any);
/// returns their paths. Nothing else is touched; without `/proc` only this
/// process's names are removed.
///
/// # Errors
/// When `dir` cannot be listed (a missing `dir` is no error).
pub fn remove_leftovers(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let me = std::process::id();
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(leftover_pid) else {
            continue;
        };
        let dead = pid == me || process_alive(pid) == Some(false);
        let regular = entry.file_type().is_ok_and(|t| t.is_file());
        if dead && regular {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    removed.sort();
    Ok(removed)
}

/// An error naming `path` and the action, keeping the kind of `e`.
fn context(action: &str, path: &Path, e: &io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "cannot {action} '{}': {}",
            path.display(),
            crate::error_text(e)
        ),
    )
}

/// A file written atomically (see the [module docs](self)).
#[derive(Debug)]
pub struct AtomicFile {
    /// The path given.
    path: PathBuf,
    /// Where the temporary is renamed to (the symlink's target for a
    /// symlink).
    target: PathBuf,
    /// The temporary, `None` when writing directly.
    tmp: Option<PathBuf>,
    file: Option<File>,
}

impl AtomicFile {
    /// Starts writing `path`: a temporary beside it (beside the target of a
    /// symlink), or `path` itself when it exists and is not a regular file.
    ///
    /// # Errors
    /// When the temporary (or the special file) cannot be created or
    /// opened: the operating system's error (the caller names the path).
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        let meta = std::fs::metadata(path);
        let special = meta.as_ref().is_ok_and(|m| !m.is_file());
        if special {
            let file = File::options().write(true).open(path)?;
            return Ok(AtomicFile {
                path: path.to_path_buf(),
                target: path.to_path_buf(),
                tmp: None,
                file: Some(file),
            });
        }
        let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        let target = if is_link {
            std::fs::canonicalize(path).unwrap_or_else(|_| resolve(path))
        } else {
            path.to_path_buf()
        };
        let tmp = temporary_path(&target);
        let file = File::options().write(true).create_new(true).open(&tmp)?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            target,
            tmp: Some(tmp),
            file: Some(file),
        })
    }

    /// The path given to [`AtomicFile::create`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary being written (`None` when writing a special file
    /// directly).
    pub fn temporary(&self) -> Option<&Path> {
        self.tmp.as_deref()
    }

    /// The open file.
    ///
    /// # Errors
    /// Never after [`AtomicFile::create`]; kept for a file already committed.
    pub fn file(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("file already committed"))
    }

    /// Syncs the file and renames the temporary into place.
    ///
    /// # Errors
    /// When syncing or renaming fails (the temporary is then removed): the
    /// operating system's error (the caller names the path).
    pub fn commit(mut self) -> io::Result<()> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        file.flush()?;
        if self.tmp.is_some() {
            file.sync_all()?;
        }
        drop(file);
        if let Some(tmp) = self.tmp.take()
            && let Err(e) = std::fs::rename(&tmp, &self.target)
        {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file()?.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file()?.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        self.file.take();
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Writes `path` atomically with `write` ([`AtomicFile`]).
///
/// # Errors
/// The first error of `write` or of the file operations, naming the path;
/// the temporary is removed.
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let named = |e: io::Error| context("write", path, &e);
    let mut f = AtomicFile::create(path).map_err(named)?;
    let mut w = io::BufWriter::with_capacity(1 << 16, f.file().map_err(named)?);
    write(&mut w).map_err(named)?;
    w.flush().map_err(named)?;
    drop(w);
    f.commit().map_err(named)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_names_are_recognised_and_nothing_else() {
        assert_eq!(leftover_pid(".connections.txt.tmp123-4"), Some(123));
        assert_eq!(leftover_pid(".flows.77.3.part"), Some(77));
        assert_eq!(leftover_pid(".community-id.77.3.part"), Some(77));
        assert_eq!(leftover_pid(".pcap-analyzer-probe-9"), Some(9));
        for other in [
            "connections.txt",
            ".connections.txt.tmp",
            ".x.tmp12-",
            ".x.tmp-3",
            "x.tmp1-2",
            ".tmp1-2",
            ".flows.a.3.part",
            ".77.3.part",
            ".flows.77.part",
            ".pcap-analyzer-probe-",
            ".hidden",
        ] {
            assert_eq!(leftover_pid(other), None, "{other}");
        }
        let t = temporary_path(Path::new("dir/run.json"));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert_eq!(leftover_pid(name), Some(std::process::id()));
        assert_eq!(t.parent(), Some(Path::new("dir")));
        let s = spool_part_path(Path::new("d"), "dns");
        assert_eq!(
            leftover_pid(s.file_name().unwrap().to_str().unwrap()),
            Some(std::process::id())
        );
    }

    #[test]
    fn config_names_stay_plain() {
        assert!(check_file_name("[log] file", "run.log").is_ok());
        for bad in ["", "a/b", "../x", "/etc/passwd", ".", "..", ".x.tmp1-2"] {
            let e = check_file_name("[log] file", bad).unwrap_err();
            assert!(e.starts_with("[log] file = "), "{e}");
        }
    }

    #[test]
    fn leftovers_of_dead_processes_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // pid 4194304 is above Linux's pid_max: never running
        let dead = [".a.txt.tmp4194304-1", ".dns.4194304.2.part"];
        let alive = format!(".b.txt.tmp{}-1", std::process::id());
        let keep = ["a.txt", ".hidden", "x.tmp1-2"];
        for n in dead.iter().chain(keep.iter()) {
            std::fs::write(d.join(n), b"x").unwrap();
        }
        std::fs::write(d.join(&alive), b"x").unwrap();
        // a directory of the same form is not a file: kept
        std::fs::create_dir(d.join(".c.tmp4194304-1")).unwrap();
        let removed = remove_leftovers(d).unwrap();
        // this process's own names go too (called before it makes any)
        assert_eq!(removed.len(), 3, "{removed:?}");
        let mut left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".c.tmp4194304-1", ".hidden", "a.txt", "x.tmp1-2"]);
    }

    #[test]
    fn a_temporary_of_a_running_process_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        // pid 1 runs on any Linux system
        let name = ".a.txt.tmp1-5";
        std::fs::write(dir.path().join(name), b"x").unwrap();
        if process_alive(1) == Some(true) {
            assert!(remove_leftovers(dir.path()).unwrap().is_empty());
            assert!(dir.path().join(name).exists());
        }
    }

    #[test]
    fn atomic_file_replaces_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        std::fs::write(&p, b"old").unwrap();
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"half").unwrap();
            // dropped without commit: the old file stays, no temporary left
        }
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        write_atomically_with(&p, |w| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let r = write_atomically_with(&p, |_| Err(io::Error::other("boom")));
        assert!(r.unwrap_err().to_string().contains("cannot write"));
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_file_keeps_a_symlink_and_writes_devices_directly() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.txt");
        let link = dir.path().join("link.txt");
        std::fs::write(&target, b"old").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomically_with(&link, |w| w.write_all(b"new")).unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        // /dev/null stays a device
        write_atomically_with(Path::new("/dev/null"), |w| w.write_all(b"x")).unwrap();
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
    }

    #[test]
    fn outputs_are_refused_when_they_are_inputs_or_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let input = d.join("in.pcap");
        std::fs::write(&input, b"data").unwrap();
        std::fs::hard_link(&input, d.join("hard.pcap")).unwrap();
        std::os::unix::fs::symlink(&input, d.join("soft.pcap")).unwrap();
        let mut inputs = Inputs::new();
        inputs.add("input", &input).unwrap();
        inputs.add("input", Path::new("-")).unwrap();
        let mut plan = OutputPlan::new(inputs);
        let dotted = d.join(".").join("in.pcap");
        for (p, how) in [
            (d.join("hard.pcap"), "a hard link to it"),
            (d.join("soft.pcap"), "a symlink to it"),
            (dotted, "the same file"),
        ] {
            match plan.add("output", &p) {
                Err(OutputConflict::IsInput { how: h, .. }) => assert_eq!(h, how, "{p:?}"),
                other => panic!("{p:?}: {other:?}"),
            }
        }
        // outputs that do not exist yet, in a directory that does not either
        plan.add("report", &d.join("new/report.txt")).unwrap();
        let e = plan
            .add("--stats-json", &d.join("new/../new/report.txt"))
            .unwrap_err();
        assert!(matches!(e, OutputConflict::Collision { .. }), "{e}");
        assert!(e.to_string().contains("are the same file"), "{e}");
        plan.add("other", &d.join("new/other.txt")).unwrap();
        plan.add("stdout", Path::new("-")).unwrap();
        plan.add("stdout again", Path::new("-")).unwrap();
    }
}
