//! Sorted runs of a report table: the rows a table over its cap writes to
//! disk in key order ([`write_run`]), read back and merged with the rows
//! still in memory, the rows of one key in several places folded into one
//! ([`Merged`]). The report is then the one a table without a cap would
//! give, byte for byte (the connection report, basic-stats'
//! conversations).
//!
//! A run is private to the run of the tool that writes it: the file is
//! named as the record spools' runs are
//! ([`libpcap_tools::outfile::spool_part_path`], so that the leftovers of a
//! killed run are removed by the next one in the same directory), and it
//! is removed when the last table holding it is dropped.
//!
//! A row is its key's bytes then its value's ([`RunRow`]), little-endian,
//! an address as a family byte (4 or 6) and its 4 or 16 bytes. A run is
//! read back only by the process that wrote it; a damaged one is an error,
//! never a panic.

use crate::shards::{Compact, Side, SplitMap, in_key_order};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes of buffer of a run being written (one at a time); a merge reads
/// its runs through the buffers the record spools' merges use
/// ([`crate::output::spool::merge_buffer`]: 4 MiB in all).
const BUFFER: usize = 64 << 10;

/// A key or a value of a table that spills runs.
pub(crate) trait RunRow: Sized {
    /// Appends the bytes of `self`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads what [`RunRow::encode`] wrote.
    ///
    /// # Errors
    /// When the run ends or is damaged.
    fn decode(r: &mut Reader) -> io::Result<Self>;
}

/// A value of a table that spills runs: the values of one key fold into
/// one (in any order: the same result).
pub(crate) trait Fold: RunRow {
    /// Adds `o` to `self`.
    fn fold(&mut self, o: &Self);
}

/// Rows of a run between two of its marks.
pub(crate) const MARK_EVERY: u64 = 128;

/// Runs of one level a table holds before it merges them into one run of
/// the next level: a table holds fewer than `FAN` runs a level, so a merge
/// at the end opens at most a few hundred files however long the capture
/// (fewer than `FAN` a level, a thread), and a row is written again once a
/// level (about log_FAN(rows / cap) times). A merge is a pause of the
/// worker that spills (16 runs, 3.56 M rows: 1.05 s), so it comes late:
/// the 4M-packet capture writes 17 runs of its report at `-j 1` and none
/// is merged before the end.
pub(crate) const FAN: usize = 64;

/// A run on disk: removed when dropped.
#[derive(Debug)]
pub(crate) struct Run {
    path: PathBuf,
    rows: u64,
    /// Every [`MARK_EVERY`]th row: its key's bytes, where it starts, and
    /// its number (so that a merge of a range of keys starts near it).
    marks: Vec<Mark>,
    /// 0 for a run written from a table, n + 1 for [`FAN`] runs of level
    /// n merged into one.
    level: u8,
}

/// A row of a run that a merge can start at.
#[derive(Debug)]
struct Mark {
    key: Box<[u8]>,
    offset: u64,
    row: u64,
}

impl Run {
    /// Rows in the run.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            log::warn!("cannot remove the run '{}': {e}", self.path.display());
        }
    }
}

/// Where a table writes its rows past its cap, and the runs written
/// (`dir` is `None` without a directory, or once a run could not be
/// written). Copies share the runs.
#[derive(Debug, Default, Clone)]
pub(crate) struct Spill {
    pub(crate) dir: Option<PathBuf>,
    pub(crate) runs: Vec<Arc<Run>>,
}

impl Spill {
    /// Writes the rows of `map` as a sorted run of `table` and empties
    /// it. When the run cannot be written, the rows stay, no more runs
    /// are written, and a warning says so, then what happens to the rows
    /// past the cap (`past`).
    pub(crate) fn write<K: Compact + Ord + RunRow, V: Fold>(
        &mut self,
        map: &mut SplitMap<K, V>,
        table: &str,
        past: &str,
    ) {
        let Some(dir) = self.dir.clone() else {
            return;
        };
        let rows = map.sorted().map(|(k, v)| (k.key(), v));
        let written = write_run::<K, V>(&dir, table, 0, rows);
        if self.keep::<K, V>(&dir, written, table, past) {
            // freed: a table that wrote a run stages its rows from then
            // on ([`Spill::stages`]), its hash table stays empty
            *map = SplitMap::default();
        }
    }

    /// Writes the rows of `map` and of `staged` (whose buffers grow to at
    /// most `cap` rows) as one sorted run of `table`, the rows of one key
    /// folded into one, and empties both. When the run cannot be written,
    /// the rows stay in `staged`, no more runs are written, and a warning
    /// says so (then `past`); `false` then.
    pub(crate) fn write_staged<K: Compact + Ord + RunRow, V: Fold + Clone>(
        &mut self,
        map: &mut SplitMap<K, V>,
        staged: &mut Staged<K, V>,
        cap: usize,
        table: &str,
        past: &str,
    ) -> bool {
        let Some(dir) = self.dir.clone() else {
            return false;
        };
        staged.take_map(map, cap);
        let written = write_run::<K, V>(&dir, table, 0, staged.sorted());
        let kept = self.keep::<K, V>(&dir, written, table, past);
        if kept {
            staged.clear();
        }
        kept
    }

    /// Keeps a run just written (and merges a level that is full), or,
    /// when it could not be written, stops writing runs with a warning
    /// that says what becomes of the rows past the cap (`past`).
    fn keep<K: RunRow + Ord + Copy, V: Fold>(
        &mut self,
        dir: &Path,
        written: io::Result<Arc<Run>>,
        table: &str,
        past: &str,
    ) -> bool {
        match written {
            Ok(run) => {
                self.runs.push(run);
                self.compact::<K, V>(dir, table);
                true
            }
            Err(e) => {
                log::warn!(
                    "{table}: cannot write rows to '{}': {e}; from now on, {past}",
                    dir.display()
                );
                self.dir = None;
                false
            }
        }
    }

    /// Whether a table of `held` rows in its hash table and at most `cap`
    /// rows appends its rows to a [`Staged`] rather than finding them a
    /// place: when it writes runs (a directory and a cap; a table kept
    /// by a sampler has no directory) and has written one, or holds
    /// `from` rows.
    #[inline]
    pub(crate) fn stages(&self, held: usize, cap: usize, from: StageFrom) -> bool {
        (!self.runs.is_empty() || held >= from.0) && cap > 0 && self.dir.is_some()
    }

    /// Whether `map`, at most `cap` rows (0: no cap), is full for `k`: a
    /// known key never is; a new one past the cap first spills the rows
    /// held (see [`Spill::write`]), and is refused only when that fails.
    pub(crate) fn full_for<K: Compact + Ord + RunRow, V: Fold>(
        &mut self,
        map: &mut SplitMap<K, V>,
        cap: usize,
        k: K,
        table: &str,
        past: &str,
    ) -> bool {
        let full = cap > 0 && map.len() >= cap;
        if full && self.dir.is_some() && map.get_or_try_insert(k, |_| None).is_none() {
            self.write(map, table, past);
            return map.len() >= cap;
        }
        full
    }

    /// Spills the rows held when `incoming` more rows (another worker's
    /// table, merged) would take `map` past `cap` (0: no cap).
    pub(crate) fn make_room<K: Compact + Ord + RunRow, V: Fold>(
        &mut self,
        map: &mut SplitMap<K, V>,
        incoming: usize,
        cap: usize,
        table: &str,
        past: &str,
    ) {
        if cap > 0 && map.len() + incoming > cap {
            self.write(map, table, past);
        }
    }

    /// Rows in the runs (a key in several runs counted in each).
    pub(crate) fn rows(&self) -> u64 {
        self.runs.iter().map(|r| r.rows()).sum()
    }

    /// Takes the runs of `other` (another worker's table of `table`).
    pub(crate) fn adopt<K: RunRow + Ord + Copy, V: Fold>(
        &mut self,
        other: &mut Spill,
        table: &str,
    ) {
        self.runs.append(&mut other.runs);
        if let Some(dir) = self.dir.clone().or_else(|| other.dir.clone()) {
            self.compact::<K, V>(&dir, table);
        }
    }

    /// Merges the runs of a level into one of the next while there are
    /// [`FAN`] of them. A merge that fails leaves its runs as they were
    /// (warning): nothing is lost, the end's merge reads more files.
    fn compact<K: RunRow + Ord + Copy, V: Fold>(&mut self, dir: &Path, table: &str) {
        loop {
            let mut per_level = [0usize; 256];
            for r in &self.runs {
                if let Some(n) = per_level.get_mut(usize::from(r.level)) {
                    *n += 1;
                }
            }
            let Some(level) =
                (0..=u8::MAX).find(|&l| per_level.get(usize::from(l)).is_some_and(|&n| n >= FAN))
            else {
                return;
            };
            let (merge, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.runs)
                .into_iter()
                .partition(|r| r.level == level);
            self.runs = keep;
            let started = std::time::Instant::now();
            match merge_runs::<K, V>(dir, table, &merge, level.saturating_add(1)) {
                Ok(run) => {
                    log::debug!(
                        "{table}: {} runs of level {level} merged into one of {} rows in {:?}",
                        merge.len(),
                        run.rows(),
                        started.elapsed()
                    );
                    self.runs.push(run);
                }
                Err(e) => {
                    log::warn!(
                        "{table}: cannot merge {} runs in '{}': {e}; they stay as they are",
                        merge.len(),
                        dir.display()
                    );
                    self.runs.extend(merge);
                    return;
                }
            }
        }
    }
}

/// The rows of a table that spills, appended as they come, unfolded (a
/// key may be there many times), then sorted and folded when they are
/// written as a run ([`Spill::write_staged`]). A table whose keys are
/// mostly new (the connection report: two rows a flow) spends most of its
/// time finding a key's place in a hash table larger than the caches;
/// appending writes one place after another, and the sort at the spill
/// was done anyway.
#[derive(Debug, Clone)]
pub(crate) struct Staged<K: Compact, V> {
    /// The rows of keys with a small form, held in that form (a
    /// connection row of IPv4 addresses: 88 bytes, 112 with its key whole).
    small: Vec<(K::Small, V)>,
    /// The other rows.
    wide: Vec<(K, V)>,
}

impl<K: Compact, V> Default for Staged<K, V> {
    fn default() -> Self {
        Staged {
            small: Vec::new(),
            wide: Vec::new(),
        }
    }
}

/// Pushes `row` to `rows`, which grows to at most `most` rows, doubling
/// below it.
fn push_bounded<T>(rows: &mut Vec<T>, row: T, most: usize) {
    if rows.len() == rows.capacity() {
        let len = rows.len();
        let want = (len * 2).max(1024).min(most).max(len + 1);
        rows.reserve_exact(want - len);
    }
    rows.push(row);
}

impl<K: Compact + Ord, V: Fold + Clone> Staged<K, V> {
    /// Appends a row. Each buffer grows to at most `most` rows (the
    /// table's cap: its memory is counted as that many rows).
    pub(crate) fn push(&mut self, k: K, v: V, most: usize) {
        match k.small() {
            Some(s) => push_bounded(&mut self.small, (s, v), most),
            None => push_bounded(&mut self.wide, (k, v), most),
        }
    }

    /// Rows held (a key counted as often as it was appended).
    pub(crate) fn len(&self) -> usize {
        self.small.len() + self.wide.len()
    }

    /// Moves the rows of `map` here; `map` is left empty, its memory
    /// freed (a table that stages keeps staging: it wrote runs).
    fn take_map(&mut self, map: &mut SplitMap<K, V>, most: usize) {
        if map.len() == 0 {
            return;
        }
        for (k, v) in map.iter() {
            self.push(k.key(), v.clone(), most);
        }
        *map = SplitMap::default();
    }

    /// Drops the rows, keeping the buffers.
    fn clear(&mut self) {
        self.small.clear();
        self.wide.clear();
    }

    /// Takes the rows out, unfolded (the buffers go with them).
    pub(crate) fn take(&mut self) -> impl Iterator<Item = (K, V)> + use<K, V> {
        let small = std::mem::take(&mut self.small);
        let wide = std::mem::take(&mut self.wide);
        wide.into_iter()
            .chain(small.into_iter().map(|(s, v)| (K::from_small(&s), v)))
    }

    /// The rows in key order, those of one key folded into one: the small
    /// keys sorted by their [`Compact::rank`] held beside the row's index,
    /// the others by their order, the two merged as read (as
    /// [`SplitMap::sorted`]).
    pub(crate) fn sorted(&self) -> impl Iterator<Item = (K, V)> + '_ {
        let mut small: Vec<(u128, usize)> = Vec::with_capacity(self.small.len());
        small.extend(
            self.small
                .iter()
                .enumerate()
                .map(|(i, (s, _))| (K::rank(s), i)),
        );
        small.sort_unstable_by_key(|r| r.0);
        let (srows, wrows) = (&self.small, &self.wide);
        let wkey = |i: usize| wrows.get(i).map(|r| &r.0);
        let mut wide: Vec<usize> = (0..wrows.len()).collect();
        wide.sort_unstable_by(|&a, &b| wkey(a).cmp(&wkey(b)));
        // where the next row in key order lies
        let mut next = in_key_order(
            small.into_iter().map(|(_, i)| i),
            wide.into_iter(),
            move |&s: &usize, &w: &usize| {
                srows.get(s).map(|r| K::from_small(&r.0)).as_ref() <= wkey(w)
            },
        );
        let row = move |at: &Side<usize, usize>| match *at {
            Side::Small(i) => srows.get(i).map(|(s, v)| (K::from_small(s), v.clone())),
            Side::Wide(i) => wrows.get(i).cloned(),
        };
        // the rows copied in key order a chunk at a time: a loop that only
        // copies keeps many of its cache misses in flight at once, where
        // folding and writing each row as it is read waited for each
        let mut chunk: Vec<(K, V)> = Vec::with_capacity(GATHER);
        let mut order: Vec<Side<usize, usize>> = Vec::with_capacity(GATHER);
        // the next row in key order (a chunk is held reversed, and popped)
        let mut pull = move || {
            if chunk.is_empty() {
                order.clear();
                order.extend(next.by_ref().take(GATHER));
                chunk.extend(order.iter().rev().filter_map(row));
            }
            chunk.pop()
        };
        let mut ahead = pull();
        std::iter::from_fn(move || {
            let (k, mut acc) = ahead.take()?;
            loop {
                ahead = pull();
                match &ahead {
                    Some((k2, v2)) if *k2 == k => acc.fold(v2),
                    _ => break,
                }
            }
            Some((k, acc))
        })
    }
}

/// The rows a table holds in its hash table before it stages rows, when
/// it wrote no run yet ([`Spill::stages`]): no limit (tests set one). A
/// table stages once it wrote a run, that is once it is past its cap: a
/// table under its cap keeps its hash table, since staged rows would go
/// into it at the end,
/// costing more instructions (36 a packet on `cg.pcap`'s 40 k report
/// rows) and, with the staged rows and the table side by side, more
/// memory (the big capture's peak went from 62.4 to 74.9 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StageFrom(pub(crate) usize);

impl Default for StageFrom {
    fn default() -> Self {
        StageFrom(usize::MAX)
    }
}

/// Rows [`Staged::sorted`] copies in key order at a time.
const GATHER: usize = 2048;

/// Merges `runs` into one run of `level`.
///
/// # Errors
/// When a run cannot be read, or the new one written (nothing is left
/// behind).
fn merge_runs<K: RunRow + Ord + Copy, V: Fold>(
    dir: &Path,
    table: &str,
    runs: &[Arc<Run>],
    level: u8,
) -> io::Result<Arc<Run>> {
    let mut merged = Merged::<K, V, _>::new(std::iter::empty(), runs)?;
    let run = write_run::<K, V>(dir, table, level, merged.by_ref())?;
    match merged.take_error() {
        Some(e) => Err(e),
        None => Ok(run),
    }
}

/// Writes `rows` (in key order, each key once) as a run of `table` in
/// `dir`.
///
/// # Errors
/// When the file cannot be created or written (nothing is left behind).
fn write_run<K: RunRow, V: RunRow>(
    dir: &Path,
    table: &str,
    level: u8,
    rows: impl Iterator<Item = (K, impl std::borrow::Borrow<V>)>,
) -> io::Result<Arc<Run>> {
    let path = libpcap_tools::outfile::spool_part_path(dir, table);
    let file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&path)?;
    // from here the file goes when `run` does, also on error
    let mut run = Run {
        path,
        rows: 0,
        marks: Vec::new(),
        level,
    };
    let mut w = BufWriter::with_capacity(BUFFER, file);
    let mut buf = Vec::with_capacity(128);
    let mut offset = 0u64;
    for (k, v) in rows {
        buf.clear();
        k.encode(&mut buf);
        if run.rows.is_multiple_of(MARK_EVERY) {
            run.marks.push(Mark {
                key: buf.as_slice().into(),
                offset,
                row: run.rows,
            });
        }
        v.borrow().encode(&mut buf);
        w.write_all(&buf)?;
        offset += buf.len() as u64;
        run.rows += 1;
    }
    w.into_inner().map_err(io::IntoInnerError::into_error)?;
    Ok(Arc::new(run))
}

/// Appends an address: family byte, then its bytes.
pub(crate) fn put_ip(out: &mut Vec<u8>, ip: &IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
}

/// Appends the addresses and ports of a key: `src`, `dst`, then the two
/// ports.
pub(crate) fn put_endpoints(out: &mut Vec<u8>, src: &IpAddr, dst: &IpAddr, ports: [u16; 2]) {
    put_ip(out, src);
    put_ip(out, dst);
    for p in ports {
        out.extend_from_slice(&p.to_le_bytes());
    }
}

/// Reads a run back, through a buffer of its own: a row's fields are
/// copied out of it with one bounds check each (through `BufReader`'s
/// `read_exact`, decoding was a fifth of the merge at the end of a run).
pub(crate) struct Reader {
    /// `None`: the bytes in `buf` are all there is.
    file: Option<std::fs::File>,
    buf: Box<[u8]>,
    /// The unread bytes are `buf[pos..end]`.
    pos: usize,
    end: usize,
    left: u64,
}

impl Reader {
    fn open(run: &Run, buffer: usize) -> io::Result<Reader> {
        let file = std::fs::File::open(&run.path)?;
        Ok(Reader {
            file: Some(file),
            // a row is at most a few hundred bytes
            buf: vec![0; buffer.max(4096)].into_boxed_slice(),
            pos: 0,
            end: 0,
            left: run.rows,
        })
    }

    /// A reader of `bytes` (one row, or one key).
    fn of_bytes(bytes: &[u8]) -> Reader {
        Reader {
            file: None,
            buf: bytes.into(),
            pos: 0,
            end: bytes.len(),
            left: 1,
        }
    }

    /// Goes to `mark` of `run`.
    fn seek(&mut self, run: &Run, mark: &Mark) -> io::Result<()> {
        use std::io::Seek;
        if let Some(f) = &mut self.file {
            f.seek(io::SeekFrom::Start(mark.offset))?;
        }
        (self.pos, self.end) = (0, 0);
        self.left = run.rows.saturating_sub(mark.row);
        Ok(())
    }

    /// The next `N` bytes.
    #[inline]
    pub(crate) fn array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        if let Some(b) = self
            .buf
            .get(self.pos..self.end)
            .and_then(|b| b.first_chunk::<N>())
        {
            self.pos += N;
            return Ok(*b);
        }
        self.refill(N)?;
        let b = self
            .buf
            .get(self.pos..self.end)
            .and_then(|b| b.first_chunk::<N>())
            .copied()
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        self.pos += N;
        Ok(b)
    }

    /// Moves the unread bytes to the front and reads until at least `n`
    /// are there, or the file ends.
    #[cold]
    fn refill(&mut self, n: usize) -> io::Result<()> {
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        while self.end < n {
            let Some(free) = self.buf.get_mut(self.end..) else {
                break;
            };
            let Some(file) = &mut self.file else { break };
            match file.read(free) {
                Ok(0) => break,
                Ok(got) => self.end += got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// An address written by [`put_ip`].
    pub(crate) fn ip(&mut self) -> io::Result<IpAddr> {
        match self.array::<1>()? {
            [4] => Ok(IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))),
            [6] => Ok(IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))),
            [f] => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("damaged run (address family {f})"),
            )),
        }
    }

    /// What [`put_endpoints`] wrote: the two addresses and the two ports.
    pub(crate) fn endpoints(&mut self) -> io::Result<(IpAddr, IpAddr, [u16; 2])> {
        let (src, dst) = (self.ip()?, self.ip()?);
        Ok((src, dst, [self.u16()?, self.u16()?]))
    }

    /// A little-endian u16.
    pub(crate) fn u16(&mut self) -> io::Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// A little-endian u64.
    pub(crate) fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A little-endian i64.
    pub(crate) fn i64(&mut self) -> io::Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// The next row, `None` at the end of the run.
    fn next<K: RunRow, V: RunRow>(&mut self) -> io::Result<Option<(K, V)>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let k = K::decode(self)?;
        let v = V::decode(self)?;
        Ok(Some((k, v)))
    }
}

/// A run being merged: its reader (opened when first needed), the row
/// it has read ahead, and the keys of its marks (decoded when first
/// needed).
pub(crate) struct Cursor<K, V> {
    run: Arc<Run>,
    buffer: usize,
    reader: Option<Reader>,
    head: Option<(K, V)>,
    /// Rows read from the run (the head among them).
    read: u64,
    marks: Option<Vec<K>>,
}

impl<K: RunRow + Ord + Copy, V: RunRow> Cursor<K, V> {
    /// The reader, opened the first time.
    fn reader(&mut self) -> io::Result<&mut Reader> {
        let reader = match self.reader.take() {
            Some(r) => r,
            None => Reader::open(&self.run, self.buffer)?,
        };
        Ok(self.reader.insert(reader))
    }

    /// Reads the next row into the head.
    fn advance(&mut self) -> io::Result<()> {
        self.head = self.reader()?.next()?;
        if self.head.is_some() {
            self.read += 1;
        }
        Ok(())
    }

    /// Makes the head the run's first row of a key `lo` or more, starting
    /// from the mark before it when the head is further back.
    fn seek(&mut self, lo: Option<&K>) -> io::Result<()> {
        let Some(lo) = lo else {
            if self.read == 0 {
                self.advance()?;
            }
            return Ok(());
        };
        if self.read > 0 && self.head.as_ref().is_none_or(|(k, _)| k >= lo) {
            return Ok(());
        }
        let marks = match &mut self.marks {
            Some(m) => m,
            None => self.marks.insert(mark_keys(&self.run)?),
        };
        // the last mark at or before `lo` (a run holds a key once)
        let at = marks.partition_point(|k| k <= lo);
        let run = self.run.clone();
        if let Some(i) = at.checked_sub(1)
            && let Some(mark) = run.marks.get(i)
            && mark.row >= self.read
        {
            self.reader()?.seek(&run, mark)?;
            self.read = mark.row;
            self.advance()?;
        } else if self.read == 0 {
            self.advance()?;
        }
        while self.head.as_ref().is_some_and(|(k, _)| k < lo) {
            self.advance()?;
        }
        Ok(())
    }
}

/// The keys of the marks of `run`.
fn mark_keys<K: RunRow>(run: &Run) -> io::Result<Vec<K>> {
    run.marks
        .iter()
        .map(|m| K::decode(&mut Reader::of_bytes(&m.key)))
        .collect()
}

/// The keys that cut the rows of `runs` and of a table in memory into
/// ranges of about `rows` rows each: ascending, each once. `held` is
/// every [`MARK_EVERY`]th key of the table's rows (in any order). A range
/// holds the keys from one cut (or the first) up to the next.
///
/// # Errors
/// When a mark of a run is damaged.
pub(crate) fn cuts<K: RunRow + Ord + Copy>(
    runs: &[Arc<Run>],
    held: impl Iterator<Item = K>,
    rows: u64,
) -> io::Result<Vec<K>> {
    let mut keys: Vec<K> = held.collect();
    for run in runs {
        keys.extend(mark_keys::<K>(run)?);
    }
    keys.sort_unstable();
    keys.dedup();
    // each key stands for about MARK_EVERY rows
    let every = usize::try_from((rows / MARK_EVERY).max(1)).unwrap_or(usize::MAX);
    Ok(keys.into_iter().skip(every).step_by(every).collect())
}

/// The runs of a table, as a merge reads them (see [`Merged::range`]).
pub(crate) struct Cursors<K, V>(Vec<Cursor<K, V>>);

impl<K: RunRow + Ord + Copy, V: RunRow> Cursors<K, V> {
    /// Cursors on `runs`, read through buffers sized for `sharing` merges
    /// at once (nothing is opened yet).
    pub(crate) fn new(runs: &[Arc<Run>], sharing: usize) -> Self {
        let buffer = crate::output::spool::merge_buffer(runs.len() * sharing.max(1));
        Cursors(
            runs.iter()
                .map(|run| Cursor {
                    run: run.clone(),
                    buffer,
                    reader: None,
                    head: None,
                    read: 0,
                    marks: None,
                })
                .collect(),
        )
    }
}

/// The rows of a report in key order: those of `mem` (in key order) and
/// of the runs, the rows of one key folded into one; with
/// [`Merged::range`], those of a range of keys only. A read error ends the
/// rows; [`Merged::take_error`] then gives it.
pub(crate) struct Merged<K, V, I: Iterator<Item = (K, V)>> {
    mem: std::iter::Peekable<I>,
    runs: Cursors<K, V>,
    /// The keys of the runs' rows read ahead (below `hi`), smallest
    /// first, with the run they are in.
    heads: BinaryHeap<Reverse<(K, usize)>>,
    /// The end of the range (excluded), `None`: to the end.
    hi: Option<K>,
    error: Option<io::Error>,
}

impl<K: RunRow + Ord + Copy, V: Fold, I: Iterator<Item = (K, V)>> Merged<K, V, I> {
    /// Opens the runs.
    ///
    /// # Errors
    /// When a run cannot be opened or read.
    pub(crate) fn new(mem: I, runs: &[Arc<Run>]) -> io::Result<Self> {
        Merged::range(mem, Cursors::new(runs, 1), None, None)
    }

    /// The rows of keys from `lo` (included) to `hi` (excluded) of `mem`
    /// (those rows only, in key order) and of the runs of `runs`, which
    /// [`Merged::into_cursors`] gives back for the next range (ranges in
    /// increasing order read each run forward).
    ///
    /// # Errors
    /// When a run cannot be opened or read.
    pub(crate) fn range(
        mem: I,
        mut runs: Cursors<K, V>,
        lo: Option<&K>,
        hi: Option<K>,
    ) -> io::Result<Self> {
        let mut heads = BinaryHeap::with_capacity(runs.0.len());
        for (i, c) in runs.0.iter_mut().enumerate() {
            c.seek(lo)?;
            if let Some((k, _)) = &c.head
                && hi.is_none_or(|hi| *k < hi)
            {
                heads.push(Reverse((*k, i)));
            }
        }
        Ok(Merged {
            mem: mem.peekable(),
            runs,
            heads,
            hi,
            error: None,
        })
    }

    /// The cursors, for the next range.
    pub(crate) fn into_cursors(self) -> Cursors<K, V> {
        self.runs
    }

    /// Takes the error that ended the rows, if any.
    pub(crate) fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }
}

impl<K: RunRow + Ord + Copy, V: Fold, I: Iterator<Item = (K, V)>> Iterator for Merged<K, V, I> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        if self.error.is_some() {
            return None;
        }
        let mem = self.mem.peek().map(|(k, _)| *k);
        let run = self.heads.peek().map(|Reverse((k, _))| *k);
        let key = match (mem, run) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        // the first row of the key as it is, the others folded into it
        let mut row: Option<V> = self.mem.next_if(|(k, _)| *k == key).map(|(_, v)| v);
        while let Some(Reverse((k, i))) = self.heads.peek().copied()
            && k == key
        {
            self.heads.pop();
            let Some(c) = self.runs.0.get_mut(i) else {
                continue;
            };
            let head = c.head.take();
            if let Err(e) = c.advance() {
                self.error = Some(e);
                return None;
            }
            if let Some((k, _)) = &c.head
                && self.hi.is_none_or(|hi| *k < hi)
            {
                self.heads.push(Reverse((*k, i)));
            }
            if let Some((_, v)) = head {
                match &mut row {
                    Some(row) => row.fold(&v),
                    None => row = Some(v),
                }
            }
        }
        row.map(|row| (key, row))
    }
}
