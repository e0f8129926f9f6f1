//! Sorted runs of the connection report: the rows a table over its cap
//! writes to disk in key order ([`write_run`]), read back and merged with
//! the rows still in memory, the rows of one key in several places folded
//! into one ([`Merged`]). The report is then the one a table without a cap
//! would give, byte for byte.
//!
//! A run is private to the run of the tool that writes it: the file is
//! named as the record spools' runs are
//! ([`libpcap_tools::outfile::spool_part_path`], so that the leftovers of a
//! killed run are removed by the next one in the same directory), and it
//! is removed when the last table holding it is dropped.
//!
//! Row format (little-endian): for each address a family byte (4 or 6) and
//! its 4 or 16 bytes, then the source port, destination port (u16), the
//! protocols (a count byte and the numbers), bytes, packets, flows, first
//! flow (u64), first and last time (i64) and a byte of flags (bit 0: first
//! time known, bit 1: last time known). A run is read back only by the
//! process that wrote it; a damaged one is an error, never a panic.

use super::{ConnKey, ConnStats};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes of read buffer for each run being merged.
const READ_BUFFER: usize = 64 << 10;

/// A run on disk: removed when dropped.
#[derive(Debug)]
pub(super) struct Run {
    path: PathBuf,
    rows: u64,
}

impl Run {
    /// Rows in the run.
    pub(super) fn rows(&self) -> u64 {
        self.rows
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            log::warn!(
                "connections: cannot remove the run '{}': {e}",
                self.path.display()
            );
        }
    }
}

/// Writes `rows` (in key order, each key once) as a run in `dir`.
///
/// # Errors
/// When the file cannot be created or written (nothing is left behind).
pub(super) fn write_run<'a>(
    dir: &Path,
    rows: impl Iterator<Item = (ConnKey, &'a ConnStats)>,
) -> io::Result<Arc<Run>> {
    let path = libpcap_tools::outfile::spool_part_path(dir, "connections");
    let file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&path)?;
    // from here the file goes when `run` does, also on error
    let mut run = Run { path, rows: 0 };
    let mut w = BufWriter::with_capacity(READ_BUFFER, file);
    let mut buf = Vec::with_capacity(128);
    for (k, v) in rows {
        buf.clear();
        encode(&mut buf, &k, v);
        w.write_all(&buf)?;
        run.rows += 1;
    }
    w.into_inner().map_err(io::IntoInnerError::into_error)?;
    Ok(Arc::new(run))
}

fn put_ip(out: &mut Vec<u8>, ip: &IpAddr) {
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

fn encode(out: &mut Vec<u8>, k: &ConnKey, v: &ConnStats) {
    put_ip(out, &k.src);
    put_ip(out, &k.dst);
    out.extend_from_slice(&k.src_port.to_le_bytes());
    out.extend_from_slice(&k.dst_port.to_le_bytes());
    // a count of two bytes: a set may hold all 256 protocol numbers
    let n = v.protocols.iter().count() as u16;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend(v.protocols.iter());
    for x in [v.bytes, v.packets, v.flows, v.first_flow] {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.extend_from_slice(&v.first.to_le_bytes());
    out.extend_from_slice(&v.last.to_le_bytes());
    out.push(u8::from(v.has_first) | (u8::from(v.has_last) << 1));
}

/// Reads a run back, row by row.
struct Reader {
    r: BufReader<std::fs::File>,
    left: u64,
}

impl Reader {
    fn open(run: &Run) -> io::Result<Reader> {
        let file = std::fs::File::open(&run.path)?;
        Ok(Reader {
            r: BufReader::with_capacity(READ_BUFFER, file),
            left: run.rows,
        })
    }

    fn array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b)?;
        Ok(b)
    }

    fn ip(&mut self) -> io::Result<IpAddr> {
        match self.array::<1>()? {
            [4] => Ok(IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))),
            [6] => Ok(IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))),
            [f] => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("connections: damaged run (address family {f})"),
            )),
        }
    }

    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// The next row, `None` at the end of the run.
    fn next(&mut self) -> io::Result<Option<(ConnKey, ConnStats)>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let src = self.ip()?;
        let dst = self.ip()?;
        let src_port = u16::from_le_bytes(self.array()?);
        let dst_port = u16::from_le_bytes(self.array()?);
        let mut v = ConnStats::default();
        let n = u16::from_le_bytes(self.array()?);
        for _ in 0..n {
            let [p] = self.array::<1>()?;
            v.protocols.insert(p);
        }
        v.bytes = self.u64()?;
        v.packets = self.u64()?;
        v.flows = self.u64()?;
        v.first_flow = self.u64()?;
        v.first = i64::from_le_bytes(self.array()?);
        v.last = i64::from_le_bytes(self.array()?);
        let [flags] = self.array::<1>()?;
        v.has_first = flags & 1 != 0;
        v.has_last = flags & 2 != 0;
        Ok(Some((
            ConnKey {
                src,
                src_port,
                dst,
                dst_port,
            },
            v,
        )))
    }
}

/// The rows of the report in key order: those of `mem` (in key order)
/// and of the runs, the rows of one key folded into one. A read error
/// ends the rows; [`Merged::finish`] then gives it.
pub(super) struct Merged<I: Iterator<Item = (ConnKey, ConnStats)>> {
    mem: std::iter::Peekable<I>,
    runs: Vec<(Reader, Option<(ConnKey, ConnStats)>)>,
    error: Option<io::Error>,
}

impl<I: Iterator<Item = (ConnKey, ConnStats)>> Merged<I> {
    /// Opens the runs.
    ///
    /// # Errors
    /// When a run cannot be opened or read.
    pub(super) fn new(mem: I, runs: &[Arc<Run>]) -> io::Result<Self> {
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
    pub(super) fn finish(self) -> io::Result<()> {
        self.error.map_or(Ok(()), Err)
    }
}

impl<I: Iterator<Item = (ConnKey, ConnStats)>> Iterator for Merged<I> {
    type Item = (ConnKey, ConnStats);

    fn next(&mut self) -> Option<(ConnKey, ConnStats)> {
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
        let mut row = ConnStats::default();
        if let Some((_, v)) = self.mem.next_if(|(k, _)| *k == key) {
            row.merge(&v);
        }
        for (r, head) in &mut self.runs {
            if let Some((k, v)) = head
                && *k == key
            {
                row.merge(v);
                match r.next() {
                    Ok(next) => *head = next,
                    Err(e) => {
                        self.error = Some(e);
                        return None;
                    }
                }
            }
        }
        Some((key, row))
    }
}
