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
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes of buffer for each run written or merged.
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
pub(crate) trait Fold: RunRow + Default {
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
pub(crate) fn write_run<'a, K: RunRow, V: RunRow + 'a>(
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

/// Reads a run back.
pub(crate) struct Reader {
    r: BufReader<std::fs::File>,
    left: u64,
}

impl Reader {
    fn open(run: &Run) -> io::Result<Reader> {
        let file = std::fs::File::open(&run.path)?;
        Ok(Reader {
            r: BufReader::with_capacity(BUFFER, file),
            left: run.rows,
        })
    }

    /// The next `N` bytes.
    pub(crate) fn array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b)?;
        Ok(b)
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
/// the rows; [`Merged::finish`] then gives it.
pub(crate) struct Merged<K, V, I: Iterator<Item = (K, V)>> {
    mem: std::iter::Peekable<I>,
    runs: Vec<(Reader, Option<(K, V)>)>,
    error: Option<io::Error>,
}

impl<K: RunRow + Ord + Copy, V: Fold, I: Iterator<Item = (K, V)>> Merged<K, V, I> {
    /// Opens the runs.
    ///
    /// # Errors
    /// When a run cannot be opened or read.
    pub(crate) fn new(mem: I, runs: &[Arc<Run>]) -> io::Result<Self> {
        let mut open = Vec::with_capacity(runs.len());
        for run in runs {
            let mut r = Reader::open(run)?;
            let head = r.next()?;
            open.push((r, head));
        }
        Ok(Merged {
            mem: mem.peekable(),
            runs: open,
            error: None,
        })
    }

    /// The error that ended the rows, if any.
    ///
    /// # Errors
    /// The first read error.
    pub(crate) fn finish(self) -> io::Result<()> {
        self.error.map_or(Ok(()), Err)
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
        // the smallest key of the heads (a few runs: a scan)
        let mut least = self.mem.peek().map(|(k, _)| *k);
        for (_, head) in &self.runs {
            if let Some((k, _)) = head
                && least.is_none_or(|l| *k < l)
            {
                least = Some(*k);
            }
        }
        let key = least?;
        // the first row of the key as it is, the others folded into it
        let mut row: Option<V> = self.mem.next_if(|(k, _)| *k == key).map(|(_, v)| v);
        for (r, head) in &mut self.runs {
            if head.as_ref().is_some_and(|(k, _)| *k == key) {
                let next = match r.next() {
                    Ok(next) => next,
                    Err(e) => {
                        self.error = Some(e);
                        return None;
                    }
                };
                if let Some((_, v)) = std::mem::replace(head, next) {
                    match &mut row {
                        Some(row) => row.fold(&v),
                        None => row = Some(v),
                    }
                }
            }
        }
        let row = row.unwrap_or_default();
        Some((key, row))
    }
}
