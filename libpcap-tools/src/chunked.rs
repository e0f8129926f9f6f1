//! [`ChunkedPcapReader`]: classic pcap read into reference-counted chunks,
//! so that packets can be handed to other threads without copying them.
//!
//! The input is read in large chunks (`ReaderConfig::buffer_size`, at least
//! 1 MiB). Each [`SharedPacket`] holds an `Arc` of its chunk and the range of
//! its bytes; a chunk is reused once no packet refers to it any more. A
//! record that crosses the end of a chunk is moved to the start of the next
//! one. Only uncompressed classic pcap (any byte order, microseconds or
//! nanoseconds, Kuznetzov's modified format) is read this way;
//! [`ChunkedPcapReader::open`] says `None` for anything else, and the caller
//! uses [`CaptureReader`](crate::CaptureReader).
//!
//! Like [`LenientSource`](crate::LenientSource), a truncation or a record
//! over `max_block_size` after the first packet ends the input with a
//! warning ([`ChunkedPcapReader::warnings`]).

use crate::reader::{classic_magic, limits, record_time};
use crate::{
    Error, LinkType, Packet, PacketSource, ReaderConfig, Result, SharedEvent, SharedPacket,
    SourceEvent, SourceProgress, Timestamp,
};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// Chunks kept for reuse.
const POOL: usize = 64;

/// Facts from the file header.
#[derive(Debug, Clone, Copy)]
struct Header {
    big: bool,
    nanos: bool,
    record_header: usize,
    linktype: LinkType,
}

/// Reads a classic pcap file into shared chunks (see the module docs).
pub struct ChunkedPcapReader {
    input: Box<dyn Read + Send>,
    name: String,
    hdr: Header,
    chunk: Arc<Vec<u8>>,
    pos: usize,
    pool: Vec<Arc<Vec<u8>>>,
    chunk_size: usize,
    max_block: usize,
    /// File offset of `chunk[0]`.
    base: u64,
    eof: bool,
    done: bool,
    packets: u64,
    total: Option<u64>,
    warnings: Vec<Error>,
}

impl std::fmt::Debug for ChunkedPcapReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkedPcapReader")
            .field("name", &self.name)
            .field("packets", &self.packets)
            .finish()
    }
}

fn u32_at(b: &[u8], at: usize, big: bool) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    if big {
        u32::from_be_bytes(w)
    } else {
        u32::from_le_bytes(w)
    }
}

impl ChunkedPcapReader {
    /// Opens `path` if it is an uncompressed classic pcap file; `Ok(None)`
    /// when it is something else (pcapng, compressed, standard input).
    ///
    /// # Errors
    /// [`Error::Open`] when the file cannot be opened, [`Error::Io`] when
    /// its first bytes cannot be read, [`Error::Truncated`] when the file
    /// header is cut.
    pub fn open(path: &Path, cfg: &ReaderConfig) -> Result<Option<ChunkedPcapReader>> {
        if path.as_os_str() == "-" {
            return Ok(None);
        }
        let mut f = std::fs::File::open(path).map_err(|source| Error::Open {
            path: path.to_path_buf(),
            source,
        })?;
        // only regular files: probing a pipe would consume bytes the
        // streaming reader then could not see
        let Some(total) = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len()) else {
            return Ok(None);
        };
        let total = Some(total);
        let mut head = [0u8; 24];
        let mut got = 0;
        while got < head.len() {
            match f.read(head.get_mut(got..).unwrap_or(&mut [])) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Io {
                        offset: got as u64,
                        source,
                    });
                }
            }
        }
        let Some((big, nanos, modified)) = head.get(..4).and_then(classic_magic) else {
            return Ok(None);
        };
        if got < 24 {
            return Err(Error::Truncated {
                offset: 0,
                block_index: 0,
                needed: (24 - got) as u64,
            });
        }
        let hdr = Header {
            big,
            nanos,
            record_header: if modified { 24 } else { 16 },
            linktype: LinkType(u32_at(&head, 20, big) & 0xffff),
        };
        let (chunk_size, max_block) = limits(cfg);
        Ok(Some(ChunkedPcapReader {
            input: Box::new(f),
            name: path.display().to_string(),
            hdr,
            chunk: Arc::new(Vec::with_capacity(chunk_size)),
            pos: 0,
            pool: Vec::new(),
            chunk_size,
            max_block,
            base: 24,
            eof: false,
            done: false,
            packets: 0,
            total,
            warnings: Vec::new(),
        }))
    }

    /// The link type of the file.
    pub fn linktype(&self) -> LinkType {
        self.hdr.linktype
    }

    /// The truncation or corruption that ended the input, if any (also
    /// [`PacketSource::warnings`]).
    pub fn warnings(&self) -> &[Error] {
        &self.warnings
    }

    /// Packets read so far.
    pub fn packets_read(&self) -> u64 {
        self.packets
    }

    /// Moves the unread tail of the current chunk to a fresh (or recycled)
    /// chunk and reads more input after it, until at least `need` bytes
    /// are unread or the input ends.
    fn refill(&mut self, need: usize) -> Result<()> {
        let tail_start = self.pos;
        let mut next = match self.pool.iter().position(|c| Arc::strong_count(c) == 1) {
            Some(i) => self.pool.swap_remove(i),
            None => Arc::new(Vec::with_capacity(self.chunk_size)),
        };
        let Some(buf) = Arc::get_mut(&mut next) else {
            return Err(Error::Corrupt {
                offset: self.base,
                block_index: self.packets,
                reason: "internal: shared chunk".into(),
            });
        };
        buf.clear();
        buf.extend_from_slice(self.chunk.get(tail_start..).unwrap_or(&[]));
        let want = self.chunk_size.max(need);
        // read until the chunk holds `want` bytes or the input ends; the
        // buffer grows only as data arrives (a huge declared length in a cut
        // file does not allocate)
        while buf.len() < want {
            let before = buf.len();
            let step = (want - before).min(self.chunk_size);
            match (&mut self.input).take(step as u64).read_to_end(buf) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Io {
                        offset: self.base + tail_start as u64,
                        source,
                    });
                }
            }
            if buf.len() == before {
                self.eof = true;
                break;
            }
        }
        self.base += tail_start as u64;
        let old = std::mem::replace(&mut self.chunk, next);
        // a chunk that grew for one large record is not kept for reuse
        if self.pool.len() < POOL && old.capacity() <= 2 * self.chunk_size {
            self.pool.push(old);
        }
        self.pos = 0;
        Ok(())
    }

    /// Finds the next record: its (start, caplen, ts, origlen) in the chunk.
    fn next_record(&mut self) -> Result<Option<(usize, usize, Timestamp, u32)>> {
        let rh = self.hdr.record_header;
        loop {
            let avail = self.chunk.len().saturating_sub(self.pos);
            if avail >= rh {
                let h = self.chunk.get(self.pos..self.pos + rh).unwrap_or(&[]);
                let big = self.hdr.big;
                let secs = u32_at(h, 0, big);
                let frac = u32_at(h, 4, big);
                let caplen = u32_at(h, 8, big) as usize;
                let origlen = u32_at(h, 12, big);
                if rh + caplen > self.max_block {
                    return Err(Error::BlockTooLarge {
                        offset: self.base + self.pos as u64,
                        block_index: self.packets + 1,
                        length: (rh + caplen) as u64,
                        cap: self.max_block as u64,
                        header: rh as u64,
                    });
                }
                if avail >= rh + caplen {
                    let start = self.pos + rh;
                    self.pos = start + caplen;
                    let ts = record_time(secs, frac, self.hdr.nanos);
                    return Ok(Some((start, caplen, ts, origlen)));
                }
                if self.eof {
                    return Err(Error::Truncated {
                        offset: self.base + self.pos as u64,
                        block_index: self.packets + 1,
                        needed: (rh + caplen - avail) as u64,
                    });
                }
                self.refill(rh + caplen)?;
            } else if self.eof {
                if avail == 0 {
                    return Ok(None);
                }
                return Err(Error::Truncated {
                    offset: self.base + self.pos as u64,
                    block_index: self.packets + 1,
                    needed: (rh - avail) as u64,
                });
            } else {
                self.refill(rh)?;
            }
        }
    }

    /// Like [`ChunkedPcapReader::next_record`], with errors after the first
    /// packet turned into warnings.
    fn next_lenient(&mut self) -> Result<Option<(usize, usize, Timestamp, u32)>> {
        if self.done {
            return Ok(None);
        }
        match self.next_record() {
            Ok(Some(r)) => {
                self.packets += 1;
                Ok(Some(r))
            }
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e) if self.packets > 0 || e.is_truncation() => {
                self.done = true;
                self.warnings.push(e);
                Ok(None)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }
}

impl PacketSource for ChunkedPcapReader {
    fn next_event(&mut self) -> Result<SourceEvent<'_>> {
        Ok(match self.next_lenient()? {
            Some((start, len, ts, origlen)) => SourceEvent::Packet(Packet {
                index: self.packets - 1,
                interface: 0,
                linktype: self.hdr.linktype,
                ts: Some(ts),
                origlen,
                data: self.chunk.get(start..start + len).unwrap_or(&[]),
            }),
            None => SourceEvent::End,
        })
    }

    fn can_share(&self) -> bool {
        true
    }

    fn next_shared(&mut self) -> Result<SharedEvent<'_>> {
        Ok(match self.next_lenient()? {
            Some((start, len, ts, origlen)) => SharedEvent::Packet(SharedPacket {
                index: self.packets - 1,
                interface: 0,
                linktype: self.hdr.linktype,
                ts: Some(ts),
                origlen,
                chunk: &self.chunk,
                start,
                len,
            }),
            None => SharedEvent::End,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn warnings(&self) -> &[Error] {
        &self.warnings
    }

    fn progress(&self) -> SourceProgress {
        SourceProgress {
            packets: self.packets,
            bytes: self.base + self.pos as u64,
            total_bytes: self.total,
            dropped: None,
        }
    }
}
