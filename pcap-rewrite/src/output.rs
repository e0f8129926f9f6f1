//! Output files: one capture, or one file per flow or key (`--split`), with
//! a cap on the number of files open at once.
//!
//! # Interfaces
//!
//! Every (input section, input interface, output link type) combination
//! becomes one output interface, described by an [`InterfaceSpec`] that
//! carries over the input interface's name, snap length, timestamp
//! resolution and offset. A pcapng output declares the interfaces it uses
//! (in a single section); a classic pcap output has one link type, taken from
//! its first packet, and a packet of another link type is an error
//! ([`Error::LinkTypeMismatch`]).
//!
//! # Atomic output
//!
//! Every output file is written as a temporary in its directory
//! (`.NAME.tmpPID-N`, [`libpcap_tools::outfile`]) and renamed into place by
//! [`Outputs::finish`], split files included: until the rewrite has
//! finished, the output path keeps its old content (or does not exist), and
//! a failed rewrite removes its temporaries (dropping [`Outputs`] does). An
//! output that is a device or FIFO (`/dev/null`, standard output as `-`) is
//! written directly. A split file whose name turns out to be one of the
//! files given to [`Outputs::protect`] (the inputs) stops the rewrite before
//! any file is renamed.
//!
//! # Split mode
//!
//! Files are created in the output directory when their first packet comes
//! (an existing file of the same name is replaced at the end). When more than
//! [`SplitConfig::max_open`] files would be open, the least recently used one
//! is flushed and closed; it is reopened in append mode when it gets a packet
//! again. A reopened pcap file just gets more records after its header; a
//! reopened pcapng file gets more blocks in the section it has (the
//! interfaces it declared keep their ids; new ones are declared after it).
//!
//! At most [`SplitConfig::max_files`] distinct files are created (one per
//! label): once that many exist, the packets of a label not seen before go
//! to a single overflow file, [`OVERFLOW_NAME`] (`overflow.pcap` or
//! `overflow.pcapng`), counted in [`Outputs::overflow_packets`] and logged
//! once. Labels that already have a file keep writing to it. What is kept in
//! memory per label (its name, path and interface list) is therefore bounded
//! by that cap too.

use crate::{Error, Result};
use libpcap_tools::outfile::{AtomicFile, Inputs, temporary_path};
use libpcap_tools::{InterfaceSpec, LinkType, Packet, PcapNgWriter, PcapWriter, PcapWriterOptions};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Output container format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Classic pcap, microsecond timestamps.
    Pcap,
    /// Classic pcap, nanosecond timestamps.
    PcapNs,
    /// pcapng.
    PcapNg,
}

impl OutputFormat {
    /// File extension for split files.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Pcap | OutputFormat::PcapNs => "pcap",
            OutputFormat::PcapNg => "pcapng",
        }
    }
}

/// How `--split` names files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitBy {
    /// One file per bidirectional flow (5-tuple; address pair and protocol
    /// for packets without ports; `non-ip` for the rest).
    Flow,
    /// One file per keep rule or keep key that matched.
    Key,
    /// One file per period of this many seconds of capture time, named
    /// after the period's start (UTC, `20231114T235500Z`), as `tcpdump -G`
    /// rotates; packets without a time go to `no-time`.
    Time(u64),
    /// A new file (`part-000000`, `part-000001`, …) each time this many
    /// packet bytes were written, as `tcpdump -C` rotates; a packet is never
    /// cut.
    Size(u64),
}

/// Split settings (`--split`, `--max-open-files`, `--max-split-files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitConfig {
    /// How files are named.
    pub by: SplitBy,
    /// Most files open at once (at least 1): the least recently used one is
    /// closed when another must be opened, and reopened in append mode
    /// later.
    pub max_open: usize,
    /// Most distinct split files. The packets of a label first seen once
    /// this many files exist go to the overflow file ([`OVERFLOW_NAME`]);
    /// 0 sends every packet there.
    pub max_files: usize,
}

impl SplitConfig {
    /// Default of [`SplitConfig::max_open`].
    pub const DEFAULT_MAX_OPEN: usize = 64;
    /// Default of [`SplitConfig::max_files`].
    pub const DEFAULT_MAX_FILES: usize = 10_000;

    /// Settings splitting by `by`, with the default caps.
    pub fn new(by: SplitBy) -> SplitConfig {
        SplitConfig {
            by,
            max_open: Self::DEFAULT_MAX_OPEN,
            max_files: Self::DEFAULT_MAX_FILES,
        }
    }
}

/// Stem of the split file that receives the packets of the labels beyond
/// [`SplitConfig::max_files`] (`overflow.pcap` or `overflow.pcapng`). No
/// label file gets this name: a label `overflow` is written as `_overflow`.
pub const OVERFLOW_NAME: &str = "overflow";

/// Per-file output settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputConfig {
    /// Container format.
    pub format: OutputFormat,
    /// Big-endian classic pcap headers.
    pub big_endian: bool,
    /// Snapshot length written in classic pcap headers.
    pub snaplen: u32,
    /// Capacity of each file's write buffer.
    pub buffer_size: usize,
}

/// A writer that can be muted, so that reopening a file in append mode can
/// replay its headers through the library writers without writing them.
struct Gate {
    inner: BufWriter<Box<dyn Write>>,
    mute: Rc<Cell<bool>>,
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.mute.get() {
            Ok(buf.len())
        } else {
            self.inner.write(buf)
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.mute.get() {
            Ok(())
        } else {
            self.inner.write_all(buf)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Writer {
    Pcap(PcapWriter<Gate>, LinkType),
    Ng(PcapNgWriter<Gate>, Vec<Option<u32>>),
}

/// What is needed to reopen a file.
#[derive(Debug, Clone, Default)]
struct FileState {
    pcap_linktype: Option<LinkType>,
    /// Global interface ids in the order the file declared them.
    ng_ifaces: Vec<u32>,
}

struct OpenFile {
    w: Writer,
    state: FileState,
}

impl OpenFile {
    /// Creates a writer on `sink`; when `replay` is given, its headers are
    /// generated muted (the file already has them).
    fn start(
        sink: Box<dyn Write>,
        cfg: &OutputConfig,
        linktype: LinkType,
        replay: Option<&FileState>,
        ifaces: &[InterfaceSpec],
        path: &Path,
    ) -> Result<OpenFile> {
        let mute = Rc::new(Cell::new(replay.is_some()));
        let gate = Gate {
            inner: BufWriter::with_capacity(cfg.buffer_size, sink),
            mute: mute.clone(),
        };
        let err = |source| Error::Output {
            path: path.to_path_buf(),
            source,
        };
        let mut state = replay.cloned().unwrap_or_default();
        let w = match cfg.format {
            OutputFormat::Pcap | OutputFormat::PcapNs => {
                let lt = state.pcap_linktype.unwrap_or(linktype);
                state.pcap_linktype = Some(lt);
                let opts = PcapWriterOptions {
                    nanos: cfg.format == OutputFormat::PcapNs,
                    big_endian: cfg.big_endian,
                    snaplen: cfg.snaplen,
                };
                Writer::Pcap(PcapWriter::new(gate, lt, opts).map_err(err)?, lt)
            }
            OutputFormat::PcapNg => {
                let mut w = PcapNgWriter::new(gate, false).map_err(err)?;
                let mut map = Vec::new();
                for &g in &state.ng_ifaces {
                    let spec = ifaces
                        .get(g as usize)
                        .cloned()
                        .unwrap_or_else(|| InterfaceSpec::new(linktype));
                    let id = w.add_interface(&spec).map_err(err)?;
                    set_map(&mut map, g, id);
                }
                Writer::Ng(w, map)
            }
        };
        mute.set(false);
        Ok(OpenFile { w, state })
    }

    fn write(
        &mut self,
        p: &Packet<'_>,
        global_iface: u32,
        ifaces: &[InterfaceSpec],
        path: &Path,
    ) -> Result<()> {
        let err = |source| Error::Output {
            path: path.to_path_buf(),
            source,
        };
        match &mut self.w {
            Writer::Pcap(w, lt) => {
                if p.linktype != *lt {
                    return Err(Error::LinkTypeMismatch {
                        path: path.to_path_buf(),
                        index: p.index,
                        expected: *lt,
                        found: p.linktype,
                    });
                }
                w.write_packet(p).map_err(err)
            }
            Writer::Ng(w, map) => {
                let id = match map.get(global_iface as usize).copied().flatten() {
                    Some(id) => id,
                    None => {
                        let spec = ifaces
                            .get(global_iface as usize)
                            .cloned()
                            .unwrap_or_else(|| InterfaceSpec::new(p.linktype));
                        let id = w.add_interface(&spec).map_err(err)?;
                        set_map(map, global_iface, id);
                        self.state.ng_ifaces.push(global_iface);
                        id
                    }
                };
                w.write_packet(&Packet {
                    interface: id,
                    ..*p
                })
                .map_err(err)
            }
        }
    }

    fn finish(self, path: &Path) -> Result<FileState> {
        let err = |source| Error::Output {
            path: path.to_path_buf(),
            source,
        };
        match self.w {
            Writer::Pcap(w, _) => {
                w.finish().map_err(err)?;
            }
            Writer::Ng(w, _) => {
                w.finish().map_err(err)?;
            }
        }
        Ok(self.state)
    }
}

fn set_map(map: &mut Vec<Option<u32>>, global: u32, local: u32) {
    let g = global as usize;
    if map.len() <= g {
        map.resize(g + 1, None);
    }
    if let Some(slot) = map.get_mut(g) {
        *slot = Some(local);
    }
}

struct SplitEntry {
    path: PathBuf,
    /// The temporary written until [`Outputs::finish`] renames it to `path`.
    tmp: Option<PathBuf>,
    file: Option<OpenFile>,
    state: FileState,
    /// Last use (0: never written, the file is still to be created).
    tick: u64,
}

impl SplitEntry {
    fn new(path: PathBuf) -> SplitEntry {
        SplitEntry {
            path,
            tmp: None,
            file: None,
            state: FileState::default(),
            tick: 0,
        }
    }
}

enum Target {
    Single {
        path: PathBuf,
        file: Option<OpenFile>,
        /// The temporary behind `file` (`None` for standard output).
        atomic: Option<AtomicFile>,
    },
    Split {
        dir: PathBuf,
        split: SplitConfig,
        /// File name (sanitised label) -> index in `files`; at most
        /// `split.max_files` entries.
        index: HashMap<String, usize>,
        /// The labelled files, and the overflow file once it exists.
        files: Vec<SplitEntry>,
        /// Index of the overflow file in `files`.
        overflow: Option<usize>,
        /// Open files by last use (tick -> index in `files`).
        lru: BTreeMap<u64, usize>,
        tick: u64,
        /// Scratch for the sanitised label (no allocation per packet).
        name: String,
    },
}

/// The output side of a rewrite.
pub struct Outputs {
    cfg: OutputConfig,
    ifaces: Vec<InterfaceSpec>,
    target: Target,
    /// Files created.
    pub files_created: u64,
    /// Times a closed split file was reopened.
    pub files_reopened: u64,
    /// Packets written to the overflow file because their label came after
    /// [`SplitConfig::max_files`] files existed.
    pub overflow_packets: u64,
    /// Files no output may replace (the inputs).
    protected: Inputs,
}

impl Drop for Outputs {
    /// Removes the temporaries of an unfinished rewrite (the single output's
    /// goes with its [`AtomicFile`]).
    fn drop(&mut self) {
        if let Target::Split { files, .. } = &mut self.target {
            for e in files.iter_mut() {
                e.file = None;
                if let Some(tmp) = e.tmp.take() {
                    let _ = std::fs::remove_file(tmp);
                }
            }
        }
    }
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs")
            .field("cfg", &self.cfg)
            .field("interfaces", &self.ifaces.len())
            .finish_non_exhaustive()
    }
}

/// Writes into `out` the file name (without extension) of `label`: ASCII
/// letters, digits, `.`, `_` and `-` are kept, `:` becomes `-`, anything else
/// `_`; a name that would be empty, hidden or [`OVERFLOW_NAME`] gets a `_`
/// in front.
fn sanitize_into(label: &str, out: &mut String) {
    out.clear();
    out.extend(label.chars().map(|c| match c {
        'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
        ':' => '-',
        _ => '_',
    }));
    if out.is_empty() || out.starts_with('.') || out == OVERFLOW_NAME {
        out.insert(0, '_');
    }
}

impl Outputs {
    /// A single output file (`-` = standard output), created at the first
    /// packet or at [`Outputs::finish`].
    pub fn single(path: &Path, cfg: OutputConfig) -> Outputs {
        Outputs {
            cfg,
            ifaces: Vec::new(),
            target: Target::Single {
                path: path.to_path_buf(),
                file: None,
                atomic: None,
            },
            files_created: 0,
            files_reopened: 0,
            overflow_packets: 0,
            protected: Inputs::new(),
        }
    }

    /// Files that no output may replace: [`Outputs::finish`] fails (with
    /// [`Error::Usage`], before renaming anything) when a split file would
    /// take the place of one of them.
    pub fn protect(&mut self, inputs: Inputs) {
        self.protected = inputs;
    }

    /// Split output into directory `dir` (created if missing).
    ///
    /// # Errors
    /// [`Error::OutputIo`] if the directory cannot be created.
    pub fn split(dir: &Path, split: SplitConfig, cfg: OutputConfig) -> Result<Outputs> {
        std::fs::create_dir_all(dir).map_err(|source| Error::OutputIo {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Outputs {
            cfg,
            ifaces: Vec::new(),
            target: Target::Split {
                dir: dir.to_path_buf(),
                split: SplitConfig {
                    max_open: split.max_open.max(1),
                    ..split
                },
                index: HashMap::new(),
                files: Vec::new(),
                overflow: None,
                lru: BTreeMap::new(),
                tick: 0,
                name: String::new(),
            },
            files_created: 0,
            files_reopened: 0,
            overflow_packets: 0,
            protected: Inputs::new(),
        })
    }

    /// The output format.
    pub fn format(&self) -> OutputFormat {
        self.cfg.format
    }

    /// The split mode, if any.
    pub fn split_by(&self) -> Option<SplitBy> {
        match &self.target {
            Target::Split { split, .. } => Some(split.by),
            Target::Single { .. } => None,
        }
    }

    /// Declares an output interface; returns its global id.
    pub fn add_interface(&mut self, spec: InterfaceSpec) -> u32 {
        self.ifaces.push(spec);
        u32::try_from(self.ifaces.len() - 1).unwrap_or(u32::MAX)
    }

    /// In a single pcapng output, declares the global interfaces `gids` now
    /// and in this order (so that the output keeps the input's interface
    /// numbering); does nothing for classic pcap and split outputs.
    ///
    /// # Errors
    /// [`Error::Output`], [`Error::OutputIo`].
    pub fn declare_interfaces(&mut self, gids: &[u32]) -> Result<()> {
        if self.cfg.format != OutputFormat::PcapNg {
            return Ok(());
        }
        let Target::Single { path, file, atomic } = &mut self.target else {
            return Ok(());
        };
        if file.is_none() {
            let (f, a) = open_single(path, &self.cfg, LinkType::ETHERNET, &self.ifaces)?;
            *file = Some(f);
            *atomic = a;
            self.files_created += 1;
        }
        if let Some(OpenFile {
            w: Writer::Ng(w, map),
            state,
        }) = file
        {
            for &g in gids {
                if map.get(g as usize).copied().flatten().is_some() {
                    continue;
                }
                let Some(spec) = self.ifaces.get(g as usize) else {
                    continue;
                };
                let id = w.add_interface(spec).map_err(|source| Error::Output {
                    path: path.clone(),
                    source,
                })?;
                set_map(map, g, id);
                state.ng_ifaces.push(g);
            }
        }
        Ok(())
    }

    /// In a single pcapng output, starts a new section (the input started
    /// one): interfaces are declared again as they are used.
    ///
    /// # Errors
    /// [`Error::Output`].
    pub fn new_section(&mut self) -> Result<()> {
        if let Target::Single {
            path,
            file:
                Some(OpenFile {
                    w: Writer::Ng(w, map),
                    state,
                }),
            ..
        } = &mut self.target
        {
            w.new_section(false).map_err(|source| Error::Output {
                path: path.clone(),
                source,
            })?;
            map.clear();
            state.ng_ifaces.clear();
        }
        Ok(())
    }

    /// Writes a packet on global interface `iface`, into the file for `label`
    /// in split mode (ignored otherwise; the overflow file when `label` is new
    /// and [`SplitConfig::max_files`] files exist).
    ///
    /// # Errors
    /// [`Error::Output`], [`Error::OutputIo`], [`Error::LinkTypeMismatch`].
    pub fn write(&mut self, p: &Packet<'_>, iface: u32, label: &str) -> Result<()> {
        let cfg = self.cfg;
        match &mut self.target {
            Target::Single { path, file, atomic } => {
                if file.is_none() {
                    let (f, a) = open_single(path, &cfg, p.linktype, &self.ifaces)?;
                    *file = Some(f);
                    *atomic = a;
                    self.files_created += 1;
                }
                match file {
                    Some(f) => f.write(p, iface, &self.ifaces, path),
                    None => Ok(()),
                }
            }
            Target::Split {
                dir,
                split,
                index,
                files,
                overflow,
                lru,
                tick,
                name,
            } => {
                sanitize_into(label, name);
                let ext = cfg.format.extension();
                let mut to_overflow = false;
                let i = match index.get(name.as_str()) {
                    Some(&i) => i,
                    None if index.len() < split.max_files => {
                        let i = files.len();
                        files.push(SplitEntry::new(dir.join(format!("{name}.{ext}"))));
                        index.insert(name.clone(), i);
                        i
                    }
                    None => {
                        to_overflow = true;
                        match *overflow {
                            Some(i) => i,
                            None => {
                                let path = dir.join(format!("{OVERFLOW_NAME}.{ext}"));
                                log::warn!(
                                    "split: {} files created (the cap); the packets of further \
                                     labels go to '{}'",
                                    split.max_files,
                                    path.display()
                                );
                                files.push(SplitEntry::new(path));
                                *overflow = Some(files.len() - 1);
                                files.len() - 1
                            }
                        }
                    }
                };
                *tick += 1;
                let now = *tick;
                let is_open = files.get(i).is_some_and(|e| e.file.is_some());
                if !is_open {
                    // make room
                    while lru.len() >= split.max_open {
                        let Some((_, victim)) = lru.pop_first() else {
                            break;
                        };
                        if let Some(v) = files.get_mut(victim)
                            && let Some(f) = v.file.take()
                        {
                            v.state = f.finish(&v.path)?;
                        }
                    }
                    let Some(entry) = files.get_mut(i) else {
                        return Ok(());
                    };
                    let fresh = entry.tick == 0;
                    let io_err = |source| Error::OutputIo {
                        path: entry.path.clone(),
                        source,
                    };
                    let f = match &entry.tmp {
                        None => {
                            let tmp = temporary_path(&entry.path);
                            let f = OpenOptions::new()
                                .write(true)
                                .create_new(true)
                                .open(&tmp)
                                .map_err(io_err)?;
                            entry.tmp = Some(tmp);
                            f
                        }
                        Some(tmp) => OpenOptions::new().append(true).open(tmp).map_err(io_err)?,
                    };
                    let replay = (!fresh).then_some(&entry.state);
                    entry.file = Some(OpenFile::start(
                        Box::new(f),
                        &cfg,
                        p.linktype,
                        replay,
                        &self.ifaces,
                        &entry.path,
                    )?);
                    if fresh {
                        self.files_created += 1;
                    } else {
                        self.files_reopened += 1;
                    }
                }
                let Some(entry) = files.get_mut(i) else {
                    return Ok(());
                };
                if entry.tick != 0 {
                    lru.remove(&entry.tick);
                }
                entry.tick = now;
                lru.insert(now, i);
                match &mut entry.file {
                    Some(f) => f.write(p, iface, &self.ifaces, &entry.path)?,
                    None => return Ok(()),
                }
                if to_overflow {
                    self.overflow_packets += 1;
                }
                Ok(())
            }
        }
    }

    /// Flushes and closes everything, then renames every temporary into
    /// place. A single output that got no packet is still created, with
    /// `fallback_linktype` (and the interfaces declared, for pcapng).
    ///
    /// # Errors
    /// [`Error::Output`], [`Error::OutputIo`]; [`Error::Usage`] when a split
    /// file would replace a protected file (nothing is renamed then). The
    /// temporaries are removed on error.
    pub fn finish(mut self, fallback_linktype: LinkType) -> Result<u64> {
        let mut created = self.files_created;
        let ifaces = std::mem::take(&mut self.ifaces);
        match &mut self.target {
            Target::Single { path, file, atomic } => {
                let path = path.clone();
                let f = match file.take() {
                    Some(f) => f,
                    None => {
                        created += 1;
                        let (mut f, a) = open_single(&path, &self.cfg, fallback_linktype, &ifaces)?;
                        *atomic = a;
                        if let Writer::Ng(w, _) = &mut f.w {
                            for spec in &ifaces {
                                w.add_interface(spec).map_err(|source| Error::Output {
                                    path: path.clone(),
                                    source,
                                })?;
                            }
                        }
                        f
                    }
                };
                f.finish(&path)?;
                if let Some(a) = atomic.take() {
                    a.commit()
                        .map_err(|source| Error::OutputIo { path, source })?;
                }
            }
            Target::Split { files, .. } => {
                for e in files.iter_mut() {
                    if let Some(f) = e.file.take() {
                        e.state = f.finish(&e.path)?;
                    }
                }
                if let Some(e) = files
                    .iter()
                    .find(|e| e.tmp.is_some() && self.protected.find(&e.path).is_some())
                {
                    return Err(Error::Usage(format!(
                        "split file '{}' would replace the input '{}'; write the split files \
                         into another directory",
                        e.path.display(),
                        self.protected
                            .find(&e.path)
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    )));
                }
                for e in files.iter_mut() {
                    let Some(tmp) = e.tmp.take() else {
                        continue;
                    };
                    if let Err(source) = std::fs::rename(&tmp, &e.path) {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(Error::OutputIo {
                            path: e.path.clone(),
                            source,
                        });
                    }
                }
            }
        }
        Ok(created)
    }
}

/// Opens the single output: standard output for `-`, else a temporary beside
/// `path` (or `path` itself when it is a device or FIFO), whose
/// [`AtomicFile`] is returned to be committed at the end.
fn open_single(
    path: &Path,
    cfg: &OutputConfig,
    linktype: LinkType,
    ifaces: &[InterfaceSpec],
) -> Result<(OpenFile, Option<AtomicFile>)> {
    let io_err = |source| Error::OutputIo {
        path: path.to_path_buf(),
        source,
    };
    let (sink, atomic): (Box<dyn Write>, _) = if path.as_os_str() == "-" {
        (Box::new(io::stdout().lock()), None)
    } else {
        let mut a = AtomicFile::create(path).map_err(io_err)?;
        let f: File = a.file().and_then(|f| f.try_clone()).map_err(io_err)?;
        (Box::new(f), Some(a))
    };
    let f = OpenFile::start(sink, cfg, linktype, None, ifaces, path)?;
    Ok((f, atomic))
}

#[cfg(test)]
mod tests {
    use super::sanitize_into;

    fn sanitize(label: &str) -> String {
        let mut s = String::from("left over");
        sanitize_into(label, &mut s);
        s
    }

    #[test]
    fn labels_become_safe_file_names() {
        assert_eq!(sanitize("overflow"), "_overflow");
        assert_eq!(sanitize("overflow2"), "overflow2");
        assert_eq!(sanitize("tcp_10.0.0.1_80_::1_5"), "tcp_10.0.0.1_80_--1_5");
        assert_eq!(sanitize("port=53&proto=udp"), "port_53_proto_udp");
        assert_eq!(sanitize("../x"), "_.._x");
        assert_eq!(sanitize(""), "_");
    }
}
