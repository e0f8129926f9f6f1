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

use crate::shards::{Compact, SplitMap};
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

/// A run on disk: removed when dropped.
#[derive(Debug)]
pub(crate) struct Run {
    path: PathBuf,
    rows: u64,
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
    pub(crate) fn write<K: Compact + Ord + RunRow, V: RunRow>(
        &mut self,
        map: &mut SplitMap<K, V>,
        table: &str,
        past: &str,
    ) {
        let Some(dir) = self.dir.clone() else {
            return;
        };
        let mut rows = Vec::with_capacity(map.len());
        rows.extend(map.iter());
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        match write_run(&dir, table, rows.into_iter().map(|(k, v)| (k.key(), v))) {
            Ok(run) => {
                self.runs.push(run);
                map.retain(|_, _| false);
            }
            Err(e) => {
                log::warn!(
                    "{table}: cannot write rows to '{}': {e}; from now on, {past}",
                    dir.display()
                );
                self.dir = None;
            }
        }
    }

    /// Whether `map`, at most `cap` rows (0: no cap), is full for `k`: a
    /// known key never is; a new one past the cap first spills the rows
    /// held (see [`Spill::write`]), and is refused only when that fails.
    pub(crate) fn full_for<K: Compact + Ord + RunRow, V: RunRow>(
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
    pub(crate) fn make_room<K: Compact + Ord + RunRow, V: RunRow>(
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
}

/// Writes `rows` (in key order, each key once) as a run of `table` in
/// `dir`.
///
/// # Errors
/// When the file cannot be created or written (nothing is left behind).
fn write_run<'a, K: RunRow, V: RunRow + 'a>(
    dir: &Path,
    table: &str,
    rows: impl Iterator<Item = (K, &'a V)>,
) -> io::Result<Arc<Run>> {
    let path = libpcap_tools::outfile::spool_part_path(dir, table);
    let file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&path)?;
    // from here the file goes when `run` does, also on error
    let mut run = Run { path, rows: 0 };
    let mut w = BufWriter::with_capacity(BUFFER, file);
    let mut buf = Vec::with_capacity(128);
    for (k, v) in rows {
        buf.clear();
        k.encode(&mut buf);
        v.encode(&mut buf);
        w.write_all(&buf)?;
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
    file: std::fs::File,
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
            file,
            // a row is at most a few hundred bytes
            buf: vec![0; buffer.max(4096)].into_boxed_slice(),
            pos: 0,
            end: 0,
            left: run.rows,
        })
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
            match self.file.read(free) {
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

/// The rows of a report in key order: those of `mem` (in key order) and
/// of the runs, the rows of one key folded into one. A read error ends
/// the rows; [`Merged::take_error`] then gives it.
pub(crate) struct Merged<K, V, I: Iterator<Item = (K, V)>> {
    mem: std::iter::Peekable<I>,
    /// Each run's reader and the row it has read ahead.
    runs: Vec<(Reader, Option<(K, V)>)>,
    /// The keys of the runs' rows read ahead, smallest first, with the
    /// run they are in.
    heads: BinaryHeap<Reverse<(K, usize)>>,
    error: Option<io::Error>,
}

impl<K: RunRow + Ord + Copy, V: Fold, I: Iterator<Item = (K, V)>> Merged<K, V, I> {
    /// Opens the runs.
    ///
    /// # Errors
    /// When a run cannot be opened or read.
    pub(crate) fn new(mem: I, runs: &[Arc<Run>]) -> io::Result<Self> {
        let buffer = crate::output::spool::merge_buffer(runs.len());
        let mut open = Vec::with_capacity(runs.len());
        let mut heads = BinaryHeap::with_capacity(runs.len());
        for (i, run) in runs.iter().enumerate() {
            let mut r = Reader::open(run, buffer)?;
            let head = r.next()?;
            if let Some((k, _)) = &head {
                heads.push(Reverse((*k, i)));
            }
            open.push((r, head));
        }
        Ok(Merged {
            mem: mem.peekable(),
            runs: open,
            heads,
            error: None,
        })
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
            let Some((r, head)) = self.runs.get_mut(i) else {
                continue;
            };
            let next = match r.next() {
                Ok(next) => next,
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
            };
            if let Some((k, _)) = &next {
                self.heads.push(Reverse((*k, i)));
            }
            if let Some((_, v)) = std::mem::replace(head, next) {
                match &mut row {
                    Some(row) => row.fold(&v),
                    None => row = Some(v),
                }
            }
        }
        row.map(|row| (key, row))
    }
}
