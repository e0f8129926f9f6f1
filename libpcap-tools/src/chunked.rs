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
//! When the packets are analysed in the thread that reads them
//! ([`PacketSource::next_event`]), the file is read ahead by a thread of
//! its own (`pal-read`, two chunks ahead at most, started at the first
//! read: the inputs are opened before privileges are dropped, which needs
//! a process of one thread), so that the kernel's copying of the file runs
//! beside the analysis. Each chunk keeps room at its front (64 KiB) where
//! the end of the previous chunk (a record cut by the chunk's end) is
//! moved, so the data read is not copied again (a cut record longer than
//! the room is copied with the chunk instead). When this thread only hands
//! the packets to workers ([`PacketSource::next_shared`]), or no thread
//! can be had, the chunks are read in this thread.
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
use std::sync::mpsc::{Receiver, Sender, SyncSender};

/// Chunks kept for reuse.
const POOL: usize = 64;

/// Bytes kept free at the front of each chunk for the cut record at the
/// end of the previous one (a frame of up to 64 KiB, which is most).
const HEADROOM: usize = 64 << 10;

/// Chunks read ahead and not yet taken.
const AHEAD: usize = 2;

/// Reads `chunk` bytes of `input` after the headroom of `buf` (emptied to
/// it first), until they are there or the input ends. Returns whether it
/// ended, and the error that stopped the reading (the bytes before it are
/// in `buf`).
fn fill(input: &mut dyn Read, buf: &mut Vec<u8>, chunk: usize) -> (bool, Option<std::io::Error>) {
    if buf.len() < HEADROOM {
        buf.clear();
        buf.resize(HEADROOM, 0);
    } else {
        buf.truncate(HEADROOM);
    }
    let want = HEADROOM + chunk;
    while buf.len() < want {
        let before = buf.len();
        match input.take((want - before) as u64).read_to_end(buf) {
            Ok(0) => return (true, None),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (false, Some(e)),
        }
        if buf.len() == before {
            return (true, None);
        }
    }
    (false, None)
}

/// What the read-ahead hands over: a chunk of input after its headroom,
/// or the error that stopped the reading.
type Filled = std::result::Result<Vec<u8>, std::io::Error>;

/// Where the chunks come from: a thread reading ahead, or the input read
/// in place when no thread could be had. The thread starts at the first
/// chunk asked for, not when the file is opened: the inputs are opened
/// before privileges are dropped, which needs a process of one thread.
enum Feed {
    Idle(Option<Box<dyn Read + Send>>),
    Ahead {
        filled: Option<Receiver<Filled>>,
        empty: Sender<Vec<u8>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
    Inline {
        input: Box<dyn Read + Send>,
        free: Vec<Vec<u8>>,
        ended: bool,
    },
}

impl Feed {
    /// Reading in place (`None`: an input already gone, which has ended).
    fn inline(input: Option<Box<dyn Read + Send>>) -> Feed {
        let ended = input.is_none();
        Feed::Inline {
            input: input.unwrap_or_else(|| Box::new(std::io::empty())),
            free: Vec::new(),
            ended,
        }
    }

    fn start(input: Box<dyn Read + Send>, chunk: usize) -> Feed {
        let (filled_tx, filled_rx) = std::sync::mpsc::sync_channel::<Filled>(AHEAD);
        let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        // the input goes to the thread, or comes back when it cannot start
        let slot = Arc::new(std::sync::Mutex::new(Some(input)));
        let theirs = Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name("pal-read".into())
            .spawn(move || {
                let input = theirs.lock().ok().and_then(|mut i| i.take());
                if let Some(mut input) = input {
                    read_ahead(input.as_mut(), &filled_tx, &empty_rx, chunk);
                }
            });
        match spawned {
            Ok(thread) => Feed::Ahead {
                filled: Some(filled_rx),
                empty: empty_tx,
                thread: Some(thread),
            },
            Err(_) => Feed::inline(slot.lock().ok().and_then(|mut i| i.take())),
        }
    }

    /// The next chunk (input after [`HEADROOM`] bytes), `None` at the end.
    fn next(
        &mut self,
        chunk: usize,
        ahead: bool,
    ) -> std::result::Result<Option<Vec<u8>>, std::io::Error> {
        if let Feed::Idle(input) = self {
            *self = match input.take() {
                Some(input) if ahead => Feed::start(input, chunk),
                input => Feed::inline(input),
            };
        }
        match self {
            Feed::Idle(_) => Ok(None),
            Feed::Ahead { filled, .. } => match filled.as_ref().map(Receiver::recv) {
                Some(Ok(Ok(buf))) => Ok(Some(buf)),
                Some(Ok(Err(e))) => Err(e),
                Some(Err(_)) | None => Ok(None),
            },
            Feed::Inline { input, free, ended } => {
                if *ended {
                    return Ok(None);
                }
                let mut buf = free.pop().unwrap_or_default();
                let (end, err) = fill(input.as_mut(), &mut buf, chunk);
                *ended = end || err.is_some();
                match err {
                    // the bytes before the error are lost, as when reading
                    // without a thread before
                    Some(e) => Err(e),
                    None if buf.len() > HEADROOM => Ok(Some(buf)),
                    None => Ok(None),
                }
            }
        }
    }

    /// Gives an emptied chunk back for reuse.
    fn give_back(&mut self, buf: Vec<u8>) {
        match self {
            Feed::Ahead { empty, .. } => {
                let _ = empty.send(buf);
            }
            Feed::Inline { free, .. } => {
                if free.len() < POOL {
                    free.push(buf);
                }
            }
            Feed::Idle(_) => {}
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if let Feed::Ahead { filled, thread, .. } = self {
            // the thread stops at its next hand-over
            drop(filled.take());
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// The read-ahead thread: fills chunks (reused ones first) and hands them
/// over, at most [`AHEAD`] waiting, until the input ends, fails, or the
/// reader is gone.
fn read_ahead(
    input: &mut dyn Read,
    filled: &SyncSender<Filled>,
    empty: &Receiver<Vec<u8>>,
    chunk: usize,
) {
    loop {
        let mut buf = empty
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(HEADROOM + chunk));
        let (end, err) = fill(input, &mut buf, chunk);
        if buf.len() > HEADROOM && filled.send(Ok(buf)).is_err() {
            return;
        }
        if let Some(e) = err {
            let _ = filled.send(Err(e));
            return;
        }
        if end {
            return;
        }
    }
}

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
    feed: Feed,
    /// Whether the chunks are read ahead by a thread: yes when the packets
    /// are analysed in the reading thread ([`PacketSource::next_event`]),
    /// no when this thread only hands them to workers
    /// ([`PacketSource::next_shared`]: it reads while they analyse).
    read_ahead: bool,
    name: String,
    hdr: Header,
    chunk: Arc<Vec<u8>>,
    pos: usize,
    pool: Vec<Arc<Vec<u8>>>,
    chunk_size: usize,
    max_block: usize,
    /// File offset of `chunk[0]`, wrapping (the headroom of the first
    /// chunk lies before the file's start): use [`ChunkedPcapReader::offset`].
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
            feed: Feed::Idle(Some(Box::new(f))),
            read_ahead: true,
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

    /// File offset of `chunk[at]`.
    fn offset(&self, at: usize) -> u64 {
        self.base.wrapping_add(at as u64)
    }

    /// Moves on to the next chunk of input, the unread tail of the current
    /// one (a record it cuts) moved in front of it, until at least `need`
    /// bytes are unread or the input ends.
    fn refill(&mut self, need: usize) -> Result<()> {
        // chunks no packet holds any more go back to be filled again
        let mut i = 0;
        while i < self.pool.len() {
            if self.pool.get(i).is_some_and(|c| Arc::strong_count(c) == 1) {
                let c = self.pool.swap_remove(i);
                if let Ok(buf) = Arc::try_unwrap(c) {
                    self.feed.give_back(buf);
                }
            } else {
                i += 1;
            }
        }
        let tail_start = self.pos.min(self.chunk.len());
        let tail_offset = self.offset(tail_start);
        let tail = self.chunk.get(tail_start..).unwrap_or(&[]);
        let io = |source| Error::Io {
            offset: tail_offset,
            source,
        };
        let mut next = match self
            .feed
            .next(self.chunk_size, self.read_ahead)
            .map_err(io)?
        {
            Some(buf) => buf,
            None => {
                self.eof = true;
                return Ok(());
            }
        };
        // where the tail goes: just before the data in the headroom, or
        // (longer than the room) a chunk of its own, the data copied after it
        let start = match HEADROOM.checked_sub(tail.len()) {
            Some(start) => {
                if let Some(room) = next.get_mut(start..HEADROOM) {
                    room.copy_from_slice(tail);
                }
                start
            }
            None => {
                let mut whole = Vec::with_capacity(tail.len() + next.len());
                whole.extend_from_slice(tail);
                whole.extend_from_slice(next.get(HEADROOM..).unwrap_or(&[]));
                self.feed.give_back(std::mem::replace(&mut next, whole));
                0
            }
        };
        // a record longer than a chunk: the chunks after it are copied in
        while next.len() - start < need {
            let more = match self.feed.next(self.chunk_size, self.read_ahead) {
                Ok(Some(more)) => more,
                Ok(None) => {
                    self.eof = true;
                    break;
                }
                Err(source) => return Err(io(source)),
            };
            next.extend_from_slice(more.get(HEADROOM..).unwrap_or(&[]));
            self.feed.give_back(more);
        }
        // chunk[start] is the tail's first byte
        self.base = tail_offset.wrapping_sub(start as u64);
        let old = std::mem::replace(&mut self.chunk, Arc::new(next));
        // a chunk that grew for one large record is not kept for reuse
        if self.pool.len() < POOL && old.capacity() <= HEADROOM + 2 * self.chunk_size {
            self.pool.push(old);
        }
        self.pos = start;
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
                        offset: self.offset(self.pos),
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
                        offset: self.offset(self.pos),
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
                    offset: self.offset(self.pos),
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
        self.read_ahead = true;
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
        self.read_ahead = false;
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
            bytes: self.offset(self.pos),
            total_bytes: self.total,
            dropped: None,
        }
    }
}
