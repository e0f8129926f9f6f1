//! A record spool: the records of one kind from one worker, kept in memory
//! up to a budget, sorted and spilled to the output directory as runs
//! beyond it; the spools of all workers are merged (k-way) into one file in
//! the chosen format at the end. Records come out ordered by time, then
//! flow id, then content, so the file is the same whatever the number of
//! workers, and memory does not grow with the capture.
//!
//! A run is sorted and written by a thread of its own while the analysis
//! goes on (one run in flight per spool: the next spill waits for it, and
//! its memory stays counted until it is written). For the text formats
//! ([`RecordSpool::with_format`]) the run holds the records already
//! formatted, so the merge at the end only copies lines.

use super::format::{Format, LineFormat, writer};
use super::row::{RowBuf, Value, decode};
use super::schema::Kind;
use crate::memory::Lease;
use libpcap_tools::Timestamp;
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Default bytes of rows a spool holds before it spills a run.
pub const DEFAULT_MEMORY: usize = 8 << 20;

/// The sort key of a record: time, flow id, and the number of records the
/// spool had taken before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    ts: i64,
    flow: u64,
    seq: u64,
}

/// The records of one kind from one worker (see the module docs).
#[derive(Debug)]
pub struct RecordSpool {
    kind: &'static Kind,
    dir: Option<PathBuf>,
    max_memory: usize,
    /// Rows in memory, one after another.
    arena: Vec<u8>,
    /// Key, offset and length of each row in `arena`.
    index: Vec<(Key, u32, u32)>,
    /// Sorted runs spilled to the output directory.
    runs: Vec<PathBuf>,
    records: u64,
    /// Rows a plugin left incomplete (not written).
    bad_rows: u64,
    /// The first write error; the spool then only counts.
    failed: Option<String>,
    /// This spool's part of the run's spool memory ([`crate::memory`]).
    lease: Lease,
    /// The text format its runs are written in (rows otherwise).
    lines: Option<Format>,
    /// The run being written by its thread, and the bytes it holds.
    inflight: Option<(std::thread::JoinHandle<io::Result<Spilled>>, u64)>,
}

/// What a spill thread gives back: its run's file, and the buffers it
/// held, emptied, for the spool to fill again (so that each run does not
/// grow fresh buffers, copying every row once more as they double).
type Spilled = (PathBuf, Vec<u8>, Vec<(Key, u32, u32)>);

/// The emptied buffers of a run written: arena and index.
type Buffers = (Vec<u8>, Vec<(Key, u32, u32)>);

/// Bytes a spool may hold without drawing on its lease (so that a spool
/// never spills runs of a few rows).
pub const FREE_MEMORY: usize = 64 << 10;

/// Bytes of an index entry.
const ENTRY: usize = std::mem::size_of::<(Key, u32, u32)>();

impl RecordSpool {
    /// A spool of `kind` records spilling into `dir` (without one, records
    /// are only counted).
    pub fn new(kind: &'static Kind, dir: Option<PathBuf>) -> RecordSpool {
        RecordSpool {
            kind,
            dir,
            max_memory: DEFAULT_MEMORY,
            arena: Vec::new(),
            index: Vec::new(),
            runs: Vec::new(),
            records: 0,
            bad_rows: 0,
            failed: None,
            lease: Lease::unlimited(),
            lines: None,
            inflight: None,
        }
    }

    /// Writes its runs formatted in `format` when it is a text format
    /// (JSON lines, CSV, Zeek): the formatting then happens while the
    /// analysis goes on, and [`RecordSpool::save`] must be given the same
    /// format.
    pub fn with_format(mut self, format: Format) -> RecordSpool {
        self.lines = LineFormat::new(format, self.kind).map(|_| format);
        self
    }

    /// Draws the rows held in memory from `lease`, a pool of the whole run
    /// shared by every spool of every worker (the `[memory] spool` share),
    /// beyond the first [`FREE_MEMORY`] bytes: when the lease cannot cover
    /// a larger buffer, the rows are spilled as a sorted run first (nothing
    /// is lost; runs are merged at the end).
    pub fn share_memory(&mut self, lease: Lease) {
        self.lease = lease;
    }

    /// Sets the bytes of rows held before a run is spilled (64 KiB to
    /// 1 GiB).
    pub fn with_memory(mut self, bytes: usize) -> RecordSpool {
        self.max_memory = bytes.clamp(64 << 10, 1 << 30);
        self
    }

    /// The kind of its records.
    pub fn kind(&self) -> &'static Kind {
        self.kind
    }

    /// `true` when records are kept (an output directory is set and no
    /// write failed).
    pub fn is_writing(&self) -> bool {
        self.dir.is_some() && self.failed.is_none()
    }

    /// Records pushed (all merged spools).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Rows left incomplete by a plugin and therefore not written.
    pub fn bad_rows(&self) -> u64 {
        self.bad_rows
    }

    /// The first write error, if any (the records after it were counted,
    /// not kept).
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Adds a record with its time and flow id (the sort key).
    pub fn push(&mut self, ts: Option<Timestamp>, flow: u64, row: &RowBuf) {
        let Some(bytes) = row.finish() else {
            self.records += 1;
            self.bad_rows += 1;
            return;
        };
        self.records += 1;
        if !self.is_writing() {
            return;
        }
        let key = Key {
            ts: ts.map_or(i64::MIN, Timestamp::as_nanos),
            flow,
            seq: self.records,
        };
        let grows = self.arena.len() + bytes.len() > self.arena.capacity()
            || self.index.len() == self.index.capacity();
        if grows && !self.index.is_empty() {
            // the buffers double: the lease must cover them first
            let after = (self.arena.capacity() * 2).max(self.arena.len() + bytes.len())
                + (self.index.capacity() * 2).max(4) * ENTRY;
            let held = after.saturating_sub(FREE_MEMORY) as u64 + self.inflight_bytes();
            if !self.lease.cover(held) {
                self.spill_or_fail();
                if !self.is_writing() {
                    return;
                }
            }
        }
        // the arena stays under 1 GiB (`with_memory`), a row under 4 GiB
        let (Ok(off), Ok(len)) = (u32::try_from(self.arena.len()), u32::try_from(bytes.len()))
        else {
            self.bad_rows += 1;
            return;
        };
        self.arena.extend_from_slice(bytes);
        self.index.push((key, off, len));
        if self.arena.len() >= self.max_memory {
            self.spill_or_fail();
        }
    }

    fn spill_or_fail(&mut self) {
        if let Err(e) = self.spill() {
            log::warn!("{}: cannot spill records: {e}", self.kind.name);
            self.failed = Some(e.to_string());
            self.arena = Vec::new();
            self.index = Vec::new();
        }
    }

    /// Bytes held by the run being written.
    fn inflight_bytes(&self) -> u64 {
        self.inflight.as_ref().map_or(0, |f| f.1)
    }

    /// Bytes held in memory, beyond the free part, and by the run in flight.
    fn held(&self) -> u64 {
        (self.arena.capacity() + self.index.capacity() * ENTRY).saturating_sub(FREE_MEMORY) as u64
            + self.inflight_bytes()
    }

    /// Waits for the run in flight; its file joins the runs. Returns the
    /// emptied buffers the thread held.
    fn join_inflight(&mut self) -> io::Result<Option<Buffers>> {
        let Some((handle, _)) = self.inflight.take() else {
            return Ok(None);
        };
        let result = handle
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the thread writing a run stopped")));
        self.lease.cover(self.held());
        let (path, arena, index) = result?;
        self.runs.push(path);
        Ok(Some((arena, index)))
    }

    /// Waits for the run in flight; a failure makes the spool fail.
    fn settle(&mut self) {
        if let Err(e) = self.join_inflight()
            && self.failed.is_none()
        {
            log::warn!("{}: cannot spill records: {e}", self.kind.name);
            self.failed = Some(e.to_string());
        }
    }

    /// Sorts the rows in memory (time, flow, content).
    fn sort(&mut self) {
        sort_rows(&self.arena, &mut self.index);
    }

    /// Hands the rows in memory to a thread that sorts them and writes
    /// them as a run (after the previous run is written).
    fn spill(&mut self) -> io::Result<()> {
        let recycled = self.join_inflight()?;
        if self.index.is_empty() {
            return Ok(());
        }
        let Some(dir) = self.dir.clone() else {
            return Ok(());
        };
        let job = SpillJob {
            kind: self.kind,
            path: libpcap_tools::outfile::spool_part_path(&dir, self.kind.file),
            arena: std::mem::take(&mut self.arena),
            index: std::mem::take(&mut self.index),
            lines: self.lines,
        };
        let bytes = (job.arena.capacity() + job.index.capacity() * ENTRY) as u64;
        let handle = std::thread::Builder::new()
            .name(format!("pal-spill-{}", self.kind.file))
            .spawn(move || job.run())?;
        self.inflight = Some((handle, bytes));
        // the next rows go into the buffers of the run written before, when
        // the share covers them along with the rows now in flight
        if let Some((arena, index)) = recycled {
            let reused = (arena.capacity() + index.capacity() * ENTRY).saturating_sub(FREE_MEMORY);
            if self.lease.cover(reused as u64 + bytes) {
                self.arena = arena;
                self.index = index;
            }
        }
        // the rows now held by the thread stay counted until it is done;
        // when the run's share cannot cover them, the analysis waits for the
        // thread (back-pressure) rather than hold memory nobody counted
        if !self.lease.cover(self.held()) {
            self.join_inflight()?;
        }
        Ok(())
    }

    /// Takes over the records of another spool of the same kind.
    pub fn merge(&mut self, mut other: RecordSpool) {
        other.settle();
        if other.lines != self.lines && !other.runs.is_empty() && other.failed.is_none() {
            other.failed = Some("internal: spools of one kind in two formats".into());
        }
        self.records += other.records;
        self.bad_rows += other.bad_rows;
        if self.failed.is_none() {
            self.failed = other.failed.take();
        }
        // the other's memory becomes a run (or joins ours when small)
        if other.arena.len() + self.arena.len() < self.max_memory {
            for &(key, off, len) in &other.index {
                let Some(row) = other.arena.get(off as usize..off as usize + len as usize) else {
                    continue;
                };
                let Ok(o) = u32::try_from(self.arena.len()) else {
                    continue;
                };
                self.arena.extend_from_slice(row);
                self.index.push((key, o, len));
            }
            other.arena.clear();
            other.index.clear();
        } else {
            other.spill_or_fail();
            other.settle();
            if self.failed.is_none() {
                self.failed = other.failed.take();
            }
        }
        self.runs.append(&mut other.runs);
    }

    /// Writes every record, in order, into `dir/FILE.EXT` in `format`
    /// (through a temporary file renamed into place) and removes the runs.
    /// Without an output directory nothing is written (`Ok(None)`).
    ///
    /// # Errors
    /// When a run cannot be read or the file written (the temporary file
    /// is then removed).
    pub fn save(&mut self, dir: &Path, format: Format) -> io::Result<Option<PathBuf>> {
        if self.dir.is_none() {
            return Ok(None);
        }
        self.settle();
        if let Some(e) = &self.failed {
            return Err(io::Error::other(format!(
                "an earlier write failed ({e}): the records are incomplete"
            )));
        }
        if self.lines.is_some_and(|f| f != format) && !self.runs.is_empty() {
            return Err(io::Error::other(format!(
                "internal: {} runs were written for another format than {format}",
                self.kind.name
            )));
        }
        self.sort();
        let path = dir.join(format!("{}.{}", self.kind.file, format.extension()));
        let mut file = libpcap_tools::outfile::AtomicFile::create(&path)?;
        let (out, digest) = super::DigestWriter::new(file.file()?.try_clone()?);
        self.write_all(out, format)?;
        file.commit()?;
        let (size, sha256) = digest.result();
        super::note_written(&path, size, sha256);
        for r in self.runs.drain(..) {
            let _ = std::fs::remove_file(r);
        }
        self.arena = Vec::new();
        self.index = Vec::new();
        Ok(Some(path))
    }

    /// The k-way merge of the runs and the rows in memory into `file`.
    fn write_all(
        &self,
        file: super::DigestWriter<std::fs::File>,
        format: Format,
    ) -> io::Result<()> {
        let mut out = writer(format, self.kind, super::PipeWriter::new(file, "pal-write"))?;
        let mut sources: Vec<Source<'_>> = Vec::with_capacity(self.runs.len() + 1);
        let buffer = merge_buffer(self.runs.len());
        for r in &self.runs {
            sources.push(Source::Run(BufReader::with_capacity(
                buffer,
                std::fs::File::open(r)?,
            )));
        }
        sources.push(Source::Memory(self, 0));
        let mut heap = BinaryHeap::with_capacity(sources.len());
        for (i, s) in sources.iter_mut().enumerate() {
            let mut row = Vec::new();
            if let Some(key) = s.next(&mut row)? {
                heap.push(Head { key, row, src: i });
            }
        }
        let runs_hold_lines = self.lines == Some(format);
        let mut vals: Vec<Value<'static>> = Vec::with_capacity(self.kind.fields.len());
        // the smallest head is written, then replaced in place by the next
        // entry of its source (one sift of the heap, not a pop and a push)
        while let Some(mut top) = heap.peek_mut() {
            let src = top.src;
            if runs_hold_lines && src < self.runs.len() {
                out.write_line(&top.row)?;
            } else {
                let mut v = recycle(std::mem::take(&mut vals));
                decode(self.kind, &top.row, &mut v)
                    .map_err(|e| io::Error::other(format!("{}: {e}", self.kind.name)))?;
                out.write_row(&v)?;
                vals = recycle(v);
            }
            let next = match sources.get_mut(src) {
                Some(s) => s.next(&mut top.row)?,
                None => None,
            };
            match next {
                Some(key) => top.key = key,
                None => {
                    PeekMut::pop(top);
                }
            }
        }
        out.finish()?;
        Ok(())
    }
}

impl Drop for RecordSpool {
    fn drop(&mut self) {
        self.settle();
        for r in self.runs.drain(..) {
            let _ = std::fs::remove_file(r);
        }
    }
}

/// `v` emptied, its allocation kept for values of another lifetime (the
/// collect reuses the buffer in place: same type, same size).
fn recycle<'b>(mut v: Vec<Value<'_>>) -> Vec<Value<'b>> {
    v.clear();
    v.into_iter().map(|_| Value::Null).collect()
}

/// Bytes of the read buffers of one merge, all runs together (each run
/// gets its part, from [`MIN_RUN_BUFFER`] to [`MAX_RUN_BUFFER`]): a long
/// capture leaves hundreds of runs per kind, and the kinds are saved side
/// by side, so buffers of a fixed size would take tens of MiB past the
/// run's memory budget at its very end.
const MERGE_BUFFERS: usize = 4 << 20;

/// Smallest read buffer of a run in a merge.
const MIN_RUN_BUFFER: usize = 4 << 10;

/// Largest read buffer of a run in a merge.
const MAX_RUN_BUFFER: usize = 64 << 10;

/// The read buffer of each of `runs` runs merged together (also the
/// report tables' runs, [`crate::plugins`]).
pub(crate) fn merge_buffer(runs: usize) -> usize {
    (MERGE_BUFFERS / runs.max(1)).clamp(MIN_RUN_BUFFER, MAX_RUN_BUFFER)
}

/// Sorts `index` by key, then by the row content in `arena`.
fn sort_rows(arena: &[u8], index: &mut [(Key, u32, u32)]) {
    let row = |off: u32, len: u32| {
        arena
            .get(off as usize..off as usize + len as usize)
            .unwrap_or(&[])
    };
    index.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| row(a.1, a.2).cmp(row(b.1, b.2))));
}

/// Rows handed to a spill thread.
struct SpillJob {
    kind: &'static Kind,
    path: PathBuf,
    arena: Vec<u8>,
    index: Vec<(Key, u32, u32)>,
    lines: Option<Format>,
}

impl SpillJob {
    /// Sorts the rows and writes them as a run (formatted when the spool
    /// has a text format); the file is removed when that fails.
    fn run(mut self) -> io::Result<Spilled> {
        sort_rows(&self.arena, &mut self.index);
        let result = self.write();
        if result.is_err() {
            let _ = std::fs::remove_file(&self.path);
        }
        result?;
        self.arena.clear();
        self.index.clear();
        Ok((self.path, self.arena, self.index))
    }

    fn write(&self) -> io::Result<()> {
        let f = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&self.path)?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut format = self.lines.and_then(|f| LineFormat::new(f, self.kind));
        let mut vals = Vec::with_capacity(self.kind.fields.len());
        let mut line = Vec::with_capacity(1024);
        for &(key, off, len) in &self.index {
            let row = self
                .arena
                .get(off as usize..off as usize + len as usize)
                .unwrap_or(&[]);
            match &mut format {
                Some(format) => {
                    vals.clear();
                    decode(self.kind, row, &mut vals)
                        .map_err(|e| io::Error::other(format!("{}: {e}", self.kind.name)))?;
                    line.clear();
                    format.push_line(&vals, &mut line);
                    write_entry(&mut w, key, &line)?;
                }
                None => write_entry(&mut w, key, row)?,
            }
        }
        w.flush()
    }
}

fn put_varint(w: &mut impl Write, v: u64) -> io::Result<()> {
    w.write_all(super::row::varint(v).as_slice())
}

fn write_entry(w: &mut impl Write, key: Key, row: &[u8]) -> io::Result<()> {
    w.write_all(&key.ts.to_le_bytes())?;
    w.write_all(&key.flow.to_le_bytes())?;
    w.write_all(&key.seq.to_le_bytes())?;
    put_varint(w, row.len() as u64)?;
    w.write_all(row)
}

fn read_varint(r: &mut impl BufRead) -> io::Result<u64> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        v |= u64::from(b[0] & 0x7f) << shift.min(63);
        if b[0] & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(io::Error::other("bad varint in a spool run"))
}

/// The longest row a run's entry may hold (a longer one is damage).
const MAX_ENTRY: usize = 64 << 20;

/// Bytes of a run entry's key ([`write_entry`]).
const KEY_BYTES: usize = 24;

/// The key written first in a run's entry ([`write_entry`]).
fn key_of(b: &[u8; KEY_BYTES]) -> Key {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        if let Some(s) = b.get(i..i + 8) {
            w.copy_from_slice(s);
        }
        w
    };
    Key {
        ts: i64::from_le_bytes(word(0)),
        flow: u64::from_le_bytes(word(8)),
        seq: u64::from_le_bytes(word(16)),
    }
}

/// The length of an entry's row, checked against [`MAX_ENTRY`].
fn entry_len(len: u64) -> io::Result<usize> {
    usize::try_from(len)
        .ok()
        .filter(|&l| l <= MAX_ENTRY)
        .ok_or_else(|| io::Error::other("bad length in a spool run"))
}

/// The key of a run's entry at the start of `buf`, the bytes of its
/// header and the length of its row, when the header lies whole in `buf`
/// and is sound (`None` otherwise: it is then read piece by piece, and a
/// damaged one is an error there).
fn entry_at(buf: &[u8]) -> Option<(Key, usize, usize)> {
    let key = key_of(buf.get(..KEY_BYTES)?.try_into().ok()?);
    let mut len = 0u64;
    for (i, b) in buf.get(KEY_BYTES..KEY_BYTES + 10)?.iter().enumerate() {
        len |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((key, KEY_BYTES + i + 1, entry_len(len).ok()?));
        }
    }
    None
}

/// Where the merge takes rows from.
enum Source<'a> {
    Run(BufReader<std::fs::File>),
    /// The spool's sorted rows in memory, and the next one.
    Memory(&'a RecordSpool, usize),
}

impl Source<'_> {
    /// The next entry into `row`; `None` at the end.
    fn next(&mut self, row: &mut Vec<u8>) -> io::Result<Option<Key>> {
        match self {
            Source::Run(r) => {
                let buf = r.fill_buf()?;
                if buf.is_empty() {
                    return Ok(None);
                }
                // most entries lie whole in the read buffer: taken from it
                if let Some((key, head, len)) = entry_at(buf)
                    && let Some(bytes) = buf.get(head..head + len)
                {
                    row.clear();
                    row.extend_from_slice(bytes);
                    r.consume(head + len);
                    return Ok(Some(key));
                }
                let mut b = [0u8; KEY_BYTES];
                r.read_exact(&mut b)?;
                let len = entry_len(read_varint(r)?)?;
                row.clear();
                row.resize(len, 0);
                r.read_exact(row)?;
                Ok(Some(key_of(&b)))
            }
            Source::Memory(spool, next) => {
                let Some(&(key, off, len)) = spool.index.get(*next) else {
                    return Ok(None);
                };
                *next += 1;
                row.clear();
                row.extend_from_slice(
                    spool
                        .arena
                        .get(off as usize..off as usize + len as usize)
                        .unwrap_or(&[]),
                );
                Ok(Some(key))
            }
        }
    }
}

/// The current row of one source in the merge heap (smallest first).
struct Head {
    key: Key,
    row: Vec<u8>,
    src: usize,
}

impl PartialEq for Head {
    fn eq(&self, o: &Head) -> bool {
        self.cmp(o) == CmpOrdering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Head) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Head {
    fn cmp(&self, o: &Head) -> CmpOrdering {
        // reversed: BinaryHeap pops the largest
        o.key.cmp(&self.key).then_with(|| o.src.cmp(&self.src))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::schema::COMMUNITY_ID;

    fn row(ts: i64, flow: u64, cid: &str) -> RowBuf {
        let mut r = RowBuf::new(&COMMUNITY_ID);
        r.time(Timestamp(ts))
            .str(&format!("{flow:016x}"))
            .ip("10.0.0.1".parse().unwrap())
            .u64(1)
            .ip("10.0.0.2".parse().unwrap())
            .u64(2)
            .str("tcp")
            .u64(6)
            .str(cid);
        r
    }

    /// Records pushed in a scrambled order, split by flow over `workers`
    /// spools that spill often, merged and saved.
    fn run(workers: usize, n: u64, dir: &Path) -> String {
        let mut spools: Vec<RecordSpool> = (0..workers)
            .map(|_| RecordSpool::new(&COMMUNITY_ID, Some(dir.to_path_buf())).with_memory(1))
            .collect();
        for i in 0..n {
            let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
            let ts = (x % 1000) as i64;
            let flow = x % 7;
            // a flow is always handled by the same worker, as in the engine
            let w = (flow % workers as u64) as usize;
            // several records of one (ts, flow) keep the order they came in
            spools[w].push(
                Some(Timestamp(ts)),
                flow,
                &row(ts, flow, &format!("c{}", x % 3)),
            );
        }
        let mut all = spools.remove(0);
        for s in spools {
            all.merge(s);
        }
        assert_eq!(all.records(), n);
        let path = all.save(dir, Format::Jsonl).unwrap().unwrap();
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn the_file_is_sorted_and_the_same_for_any_number_of_workers() {
        let dir = tempfile::tempdir().unwrap();
        let one = run(1, 30_000, dir.path());
        let three = run(3, 30_000, dir.path());
        assert_eq!(one, three);
        let lines: Vec<&str> = one.lines().collect();
        assert_eq!(lines.len(), 30_000);
        let ts: Vec<String> = lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["ts"].to_string())
            .collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]), "sorted by time");
        // no run or temporary file is left
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    /// The same records through spools that spill formatted runs give the
    /// file that spools of rows give, in every text format.
    #[test]
    fn formatted_runs_give_the_same_file_as_row_runs() {
        for format in [Format::Jsonl, Format::Csv, Format::Zeek] {
            let mut files = Vec::new();
            for formatted in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let mut spools: Vec<RecordSpool> = (0..2)
                    .map(|_| {
                        let s = RecordSpool::new(&COMMUNITY_ID, Some(dir.path().to_path_buf()))
                            .with_memory(1);
                        if formatted { s.with_format(format) } else { s }
                    })
                    .collect();
                for i in 0..20_000u64 {
                    let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
                    let (ts, flow) = ((x % 500) as i64, x % 5);
                    let r = row(ts, flow, &format!("c,\t{}", x % 4));
                    spools[(flow % 2) as usize].push(Some(Timestamp(ts)), flow, &r);
                }
                let mut all = spools.remove(0);
                all.merge(spools.remove(0));
                all.settle();
                assert!(all.runs.len() > 5, "runs were spilled: {}", all.runs.len());
                let p = all.save(dir.path(), format).unwrap().unwrap();
                files.push(std::fs::read(p).unwrap());
            }
            assert_eq!(files[0].len(), files[1].len(), "{format}");
            assert!(files[0] == files[1], "{format}");
        }
    }

    /// A spool whose runs hold lines of one format refuses to save another.
    #[test]
    fn formatted_runs_are_saved_in_their_format_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RecordSpool::new(&COMMUNITY_ID, Some(dir.path().to_path_buf()))
            .with_memory(1)
            .with_format(Format::Csv);
        for i in 0..3_000 {
            s.push(Some(Timestamp(i)), 1, &row(i, 1, "x"));
        }
        s.settle();
        assert!(!s.runs.is_empty());
        assert!(s.save(dir.path(), Format::Jsonl).is_err());
    }

    /// A run is written by its thread while the analysis goes on, unless
    /// the memory share cannot cover the rows it holds: then the spool waits
    /// for it, and the pool is never overdrawn.
    #[test]
    fn a_run_the_share_cannot_cover_is_waited_for() {
        for (limit, overlaps) in [(u64::MAX, true), (0, false)] {
            let dir = tempfile::tempdir().unwrap();
            let pool = crate::memory::Pool::new("spool", limit);
            let mut s =
                RecordSpool::new(&COMMUNITY_ID, Some(dir.path().to_path_buf())).with_memory(1);
            s.share_memory(pool.lease());
            let mut in_flight = false;
            for i in 0..20_000 {
                s.push(Some(Timestamp(i)), 1, &row(i, 1, "some text"));
                in_flight |= s.inflight.is_some();
                assert!(pool.used() <= limit);
            }
            assert_eq!(in_flight, overlaps, "limit {limit}");
            s.settle();
            assert!(s.runs.len() > 2, "runs were spilled: {}", s.runs.len());
            let p = s.save(dir.path(), Format::Jsonl).unwrap().unwrap();
            assert_eq!(std::fs::read_to_string(p).unwrap().lines().count(), 20_000);
        }
    }

    /// Hundreds of runs share the merge's read buffers; a few get whole
    /// ones.
    #[test]
    fn the_read_buffers_of_a_merge_stay_within_their_budget() {
        assert_eq!(merge_buffer(0), MAX_RUN_BUFFER);
        assert_eq!(merge_buffer(3), MAX_RUN_BUFFER);
        for runs in [64, 65, 100, 462, 1000, 1024] {
            assert!(runs * merge_buffer(runs) <= MERGE_BUFFERS, "{runs}");
            assert!(merge_buffer(runs) >= MIN_RUN_BUFFER, "{runs}");
        }
        assert_eq!(merge_buffer(100_000), MIN_RUN_BUFFER);
    }

    /// A run's entries read back the same whether they lie whole in the
    /// read buffer (taken from it) or cross its end (read piece by piece).
    #[test]
    fn run_entries_read_back_whatever_the_read_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run");
        let mut entries = Vec::new();
        let mut w = Vec::new();
        for i in 0..500u64 {
            let key = Key {
                ts: i as i64 * 1_000_003 - 7,
                flow: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                seq: i,
            };
            // lengths across the one- and two-byte varints
            let row: Vec<u8> = (0..(i * 37 % 300)).map(|b| b as u8).collect();
            write_entry(&mut w, key, &row).unwrap();
            entries.push((key, row));
        }
        std::fs::write(&path, &w).unwrap();
        for capacity in [1, 7, 33, 100, 1 << 16] {
            let mut src = Source::Run(BufReader::with_capacity(
                capacity,
                std::fs::File::open(&path).unwrap(),
            ));
            let mut row = Vec::new();
            for (key, want) in &entries {
                assert_eq!(src.next(&mut row).unwrap(), Some(*key), "{capacity}");
                assert_eq!(&row, want, "{capacity}");
            }
            assert_eq!(src.next(&mut row).unwrap(), None, "{capacity}");
        }
        // a length past MAX_ENTRY is damage: an error, on either path
        let mut bad = vec![0u8; KEY_BYTES];
        bad.extend_from_slice(super::super::row::varint(MAX_ENTRY as u64 + 1).as_slice());
        bad.extend_from_slice(&[0; 64]);
        std::fs::write(&path, &bad).unwrap();
        for capacity in [7, 1 << 16] {
            let mut src = Source::Run(BufReader::with_capacity(
                capacity,
                std::fs::File::open(&path).unwrap(),
            ));
            assert!(src.next(&mut Vec::new()).is_err(), "{capacity}");
        }
    }

    #[test]
    fn without_a_directory_records_are_counted_only() {
        let mut s = RecordSpool::new(&COMMUNITY_ID, None);
        s.push(Some(Timestamp(1)), 1, &row(1, 1, "x"));
        assert_eq!(s.records(), 1);
        assert!(!s.is_writing());
        let dir = tempfile::tempdir().unwrap();
        assert!(s.save(dir.path(), Format::Csv).unwrap().is_none());
    }

    #[test]
    fn an_incomplete_row_is_counted_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RecordSpool::new(&COMMUNITY_ID, Some(dir.path().to_path_buf()));
        let mut r = RowBuf::new(&COMMUNITY_ID);
        r.time(Timestamp(0));
        s.push(None, 0, &r);
        s.push(Some(Timestamp(2)), 2, &row(2, 2, "ok"));
        assert_eq!((s.records(), s.bad_rows()), (2, 1));
        let p = s.save(dir.path(), Format::Jsonl).unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(p).unwrap().lines().count(), 1);
    }
}
