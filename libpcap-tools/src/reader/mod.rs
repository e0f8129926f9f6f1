//! The capture file reader: classic pcap and pcapng, plain or compressed,
//! from a path or standard input, through pcap-parser's streaming readers.
//!
//! # Reading model
//!
//! [`CaptureReader`] sits on a circular buffer (pcap-parser's
//! `LegacyPcapReader` / `PcapNGReader`). Packets are borrowed from that buffer
//! without copying; a [`Packet`] stays valid until the next call. The buffer
//! starts at [`ReaderConfig::buffer_size`] bytes and doubles when a block does
//! not fit, up to [`ReaderConfig::max_block_size`]: a longer declared length
//! is [`Error::BlockTooLarge`]. Memory use is bounded by that cap, and the
//! buffer only grows as far as bytes actually arrive (a huge length near the
//! end of a cut file ends in [`Error::Truncated`], not a huge allocation).
//! The decompressor's history (xz dictionary, zstd window), whose size the
//! compressed stream declares, is capped too: at `max_block_size`, or 128 MiB
//! if that is more; a stream that needs more is an [`Error::Io`] naming
//! the cap.
//!
//! # Decisions
//!
//! - Classic pcap: the record's seconds field is unsigned (as in the format
//!   specification); the sub-second field is used as stored, even when out of
//!   range (`usec >= 1_000_000`): `ts = sec * 1e9 + usec * 1000` (or `+ nsec`).
//!   The link type is the low 16 bits of the header field (the upper bits are
//!   FCS / reserved flags). The version numbers are not checked.
//! - pcapng: a packet block referencing an interface that its section has not
//!   described is [`Error::Corrupt`] (no packet can be decoded without a link
//!   type). SHB versions other than 1.0 are read anyway. Options of section
//!   and interface blocks are parsed leniently: a malformed option ends the
//!   option list instead of failing the file. An Enhanced Packet Block
//!   whose options or trailing length are damaged still gives its packet when
//!   its captured length fits in the declared block length (libpcap reads
//!   such files too); the next block is then read at the declared length.
//! - Timestamps of pcapng packets are `if_tsresol` units converted exactly
//!   with integer arithmetic (sub-nanosecond units truncated), plus
//!   `if_tsoffset` seconds, saturating at the limits of [`Timestamp`].
//! - Simple Packet Blocks have no timestamp (`ts: None`) and belong to
//!   interface 0; the captured length is `min(origlen, snaplen of interface
//!   0, bytes in the block)`.
//! - Errors are final: after any error (including [`Error::Truncated`])
//!   [`CaptureReader::next_packet`] returns `Ok(None)`.
//! - Compressed input (gzip, xz, lz4, zstd, bzip2, detected by magic) that is
//!   cut or damaged: every packet the decompressor could produce before the
//!   damage is delivered (the bytes it gave before failing are read first),
//!   then [`Error::CompressedTruncated`], a truncation like
//!   [`Error::Truncated`]. A decompressor produces its output block by block
//!   (zstd up to 128 KiB, lz4 up to 4 MiB, bzip2 up to 900 kB): the packets
//!   of the block the cut falls in are lost with it. An lz4 file cut between
//!   two blocks is reported too (lz4_flex alone takes it for a complete
//!   file). A read error of the file under the decompressor stays an
//!   [`Error::Io`].
//!
//! Known limitations: a section header in the middle of a file whose options
//! pcap-parser refuses is read leniently, but if it also switches the byte
//! order the following blocks are parsed in the previous one (and end in
//! [`Error::Corrupt`]); standard input is read in whole buffers (fine for
//! files, adds latency for a live pipe); a big-endian file of the "modified" (Kuznetzov) pcap
//! format is refused with [`Error::UnknownFormat`] (pcap-parser reads only the
//! little-endian variant, the only one found in the wild).

mod input;
mod ng;

pub use input::Compression;
pub use ng::{InterfaceInfo, pcapng_timestamp};

use crate::{
    Error, LinkType, Packet, PacketSource, ReaderConfig, Result, SourceEvent, SourceProgress,
    Timestamp,
};
use input::{ErrorSlot, FillReader, Prefixed};
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError, PcapNGReader};
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Byte order of a capture file or section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endianness {
    /// Little-endian.
    Little,
    /// Big-endian.
    Big,
}

/// The container format of a capture (after decompression).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaptureFormat {
    /// Classic libpcap format.
    Pcap {
        /// Byte order of the file.
        endianness: Endianness,
        /// `true` for the nanosecond magic (`a1b23c4d`).
        nanos: bool,
        /// `true` for the Kuznetzov "modified" format (magic `a1b2cd34`,
        /// 24-byte record headers).
        modified: bool,
    },
    /// pcapng (each section has its own byte order).
    PcapNg,
}

/// A pcapng block that is not a packet, offered to the block callback (see
/// [`CaptureReader::set_block_callback`]). Section headers and interface
/// descriptions are offered too, after the reader has used them.
#[derive(Debug, Clone, Copy)]
pub struct BlockInfo<'a> {
    /// Block type, in the section's byte order decoded (e.g. 4 for a Name
    /// Resolution Block, 5 for Interface Statistics, 0x0A0D0D0A for a
    /// Section Header).
    pub block_type: u32,
    /// Offset of the block in the (decompressed) input.
    pub offset: u64,
    /// Index of the block in the input (0 = the first Section Header).
    pub block_index: u64,
    /// Index of the section the block belongs to (0 = first).
    pub section: u32,
    /// `true` if the section is big-endian.
    pub big_endian: bool,
    /// The whole block, header and trailing length included.
    pub raw: &'a [u8],
}

/// A callback receiving the non-packet blocks of a pcapng file.
pub type BlockCallback = Box<dyn FnMut(&BlockInfo<'_>) + Send>;

/// The pcap-parser reader in use.
enum Engine {
    Legacy(LegacyPcapReader<FillReader>),
    Ng(PcapNGReader<FillReader>),
}

/// Smallest buffer we run with (a pcap file header or an SHB must fit).
const MIN_BUFFER: usize = 64;

/// The size limits of a reader, the same for both readers: the initial
/// buffer (`buffer_size`) and the largest block or record, headers included
/// (`max_block_size`), each at least [`MIN_BUFFER`].
pub(crate) fn limits(cfg: &ReaderConfig) -> (usize, usize) {
    let max_block = cfg.max_block_size.max(MIN_BUFFER);
    (cfg.buffer_size.clamp(MIN_BUFFER, max_block), max_block)
}

/// A classic pcap file header magic: (big-endian, nanoseconds, Kuznetzov's
/// modified format), or `None` for anything else.
pub(crate) fn classic_magic(magic: &[u8]) -> Option<(bool, bool, bool)> {
    match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => Some((false, false, false)),
        [0x4d, 0x3c, 0xb2, 0xa1] => Some((false, true, false)),
        [0xa1, 0xb2, 0xc3, 0xd4] => Some((true, false, false)),
        [0xa1, 0xb2, 0x3c, 0x4d] => Some((true, true, false)),
        [0x34, 0xcd, 0xb2, 0xa1] => Some((false, false, true)),
        _ => None,
    }
}

/// The time of a classic pcap record: seconds and micro- or nanoseconds as
/// written (a fraction out of range is kept as it is, see the module docs).
pub(crate) fn record_time(secs: u32, frac: u32, nanos: bool) -> Timestamp {
    let frac = if nanos {
        i64::from(frac)
    } else {
        i64::from(frac) * 1000
    };
    Timestamp(i64::from(secs) * Timestamp::NANOS_PER_SEC + frac)
}
/// Length of the minimal Section Header Block that replaces the first one.
const MIN_SHB_LEN: usize = 28;

/// Everything but the pcap-parser reader (split so that both can be
/// borrowed at once).
struct State {
    name: String,
    format: CaptureFormat,
    compression: Compression,
    max_block: usize,
    capacity: usize,
    /// Bytes of the block last returned, consumed on the next call.
    pending: usize,
    /// Blocks consumed so far (pcap: the file header counts as block 0).
    blocks: u64,
    packets: u64,
    done: bool,
    io_error: ErrorSlot,
    total_bytes: Option<u64>,
    /// Bytes read from the raw input (compressed bytes for compressed files).
    raw_read: Arc<AtomicU64>,
    // classic pcap
    linktype: LinkType,
    snaplen: u32,
    nanos: bool,
    record_header: usize,
    // pcapng
    section: u32,
    sections_seen: u32,
    big_endian: bool,
    interfaces: Vec<InterfaceInfo>,
    callback: Option<BlockCallback>,
    /// The first SHB as read from the input (the pcap-parser reader gets a
    /// minimal copy without options, so that a damaged option cannot stop
    /// the file from opening).
    first_shb: Option<Vec<u8>>,
    /// Length of the first SHB minus the length of its minimal copy: added
    /// to pcap-parser's offsets after the first block.
    offset_delta: u64,
}

impl State {
    fn offset(&self, consumed: usize) -> u64 {
        let c = consumed as u64;
        if c == 0 {
            0
        } else {
            c.saturating_add(self.offset_delta)
        }
    }
}

/// A capture file reader (classic pcap or pcapng, plain or compressed).
///
/// ```
/// use libpcap_tools::{CaptureReader, LinkType, Packet, PcapWriter, PcapWriterOptions, ReaderConfig, Timestamp};
/// let mut w = PcapWriter::new(Vec::new(), LinkType::ETHERNET, PcapWriterOptions::default())?;
/// let data = [0u8; 60];
/// w.write_packet(&Packet { index: 0, interface: 0, linktype: LinkType::ETHERNET,
///     ts: Some(Timestamp::from_secs_nanos(10, 5_000)), origlen: 60, data: &data })?;
/// let bytes = w.finish()?;
/// let mut r = CaptureReader::from_reader(std::io::Cursor::new(bytes), "mem", &ReaderConfig::default())?;
/// let p = r.next_packet()?.expect("one packet");
/// assert_eq!(p.ts, Some(Timestamp(10_000_005_000)));
/// assert!(r.next_packet()?.is_none());
/// # Ok::<(), libpcap_tools::Error>(())
/// ```
pub struct CaptureReader {
    engine: Engine,
    st: State,
}

impl std::fmt::Debug for CaptureReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader")
            .field("name", &self.st.name)
            .field("format", &self.st.format)
            .field("compression", &self.st.compression)
            .field("packets", &self.st.packets)
            .finish_non_exhaustive()
    }
}

impl CaptureReader {
    /// Opens a capture file; `-` reads standard input. Compression and format
    /// are detected from the content.
    ///
    /// # Errors
    /// [`Error::Open`] if the file cannot be opened, [`Error::UnknownFormat`]
    /// if it is not a capture, [`Error::Truncated`] if it ends within the
    /// file header, [`Error::Io`] if reading fails.
    pub fn open(path: &Path, cfg: &ReaderConfig) -> Result<Self> {
        let name = path.display().to_string();
        if path.as_os_str() == "-" {
            return Self::from_reader(io::stdin(), name, cfg);
        }
        let f = std::fs::File::open(path).map_err(|source| Error::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_file(f, name, cfg)
    }

    /// Reads a capture from a file opened earlier (for instance before the
    /// program gave up the right to open it); `name` is used in messages.
    /// The size of a regular file gives the progress total.
    ///
    /// # Errors
    /// As [`CaptureReader::open`], except [`Error::Open`].
    pub fn from_file(
        f: std::fs::File,
        name: impl Into<String>,
        cfg: &ReaderConfig,
    ) -> Result<Self> {
        let len = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        let mut r = Self::from_reader(f, name, cfg)?;
        r.st.total_bytes = len;
        Ok(r)
    }

    /// Reads a capture from any byte stream (`name` is used in messages).
    ///
    /// # Errors
    /// As [`CaptureReader::open`], except [`Error::Open`].
    pub fn from_reader(
        input: impl Read + Send + 'static,
        name: impl Into<String>,
        cfg: &ReaderConfig,
    ) -> Result<Self> {
        let name = name.into();
        let (capacity, max_block) = limits(cfg);
        let raw_read = Arc::new(AtomicU64::new(0));
        let counted = input::Counting::new(input, raw_read.clone());
        let (mut stream, compression) =
            input::decompress(Box::new(counted), input::decoder_memory(max_block))?;
        let mut head = Vec::with_capacity(32);
        input::read_more(&mut stream, &mut head, 4)
            .map_err(|e| input::read_error(head.len() as u64, e))?;
        let Some(magic) = head.get(..4).and_then(|m| <[u8; 4]>::try_from(m).ok()) else {
            return Err(Error::Truncated {
                offset: 0,
                block_index: 0,
                needed: (4 - head.len()) as u64,
            });
        };
        let slot: ErrorSlot = Arc::new(Mutex::new(None));
        let mut st = State {
            name,
            format: CaptureFormat::PcapNg,
            compression,
            max_block,
            capacity,
            pending: 0,
            blocks: 0,
            packets: 0,
            done: false,
            io_error: slot.clone(),
            total_bytes: None,
            raw_read,
            linktype: LinkType::default(),
            snaplen: 0,
            nanos: false,
            record_header: 16,
            section: 0,
            sections_seen: 0,
            big_endian: false,
            interfaces: Vec::new(),
            callback: None,
            first_shb: None,
            offset_delta: 0,
        };
        let pcap = |endianness, nanos, modified| CaptureFormat::Pcap {
            endianness,
            nanos,
            modified,
        };
        let le = Endianness::Little;
        let be = Endianness::Big;
        let format = match (classic_magic(&magic), magic) {
            (Some((big, nanos, modified)), _) => pcap(if big { be } else { le }, nanos, modified),
            (None, [0x0a, 0x0d, 0x0d, 0x0a]) => CaptureFormat::PcapNg,
            (None, _) => {
                let mut m = head;
                input::read_more(&mut stream, &mut m, 4)
                    .map_err(|e| input::read_error(m.len() as u64, e))?;
                return Err(Error::UnknownFormat { magic: m });
            }
        };
        st.format = format;
        let engine = match format {
            CaptureFormat::Pcap {
                nanos, modified, ..
            } => {
                input::read_more(&mut stream, &mut head, 20)
                    .map_err(|e| input::read_error(head.len() as u64, e))?;
                if head.len() < 24 {
                    return Err(Error::Truncated {
                        offset: 0,
                        block_index: 0,
                        needed: (24 - head.len()) as u64,
                    });
                }
                let big = matches!(
                    format,
                    CaptureFormat::Pcap {
                        endianness: Endianness::Big,
                        ..
                    }
                );
                st.snaplen = ng::u32_at(&head, 16, big).unwrap_or(0);
                st.linktype = LinkType(ng::u32_at(&head, 20, big).unwrap_or(0) & 0xffff);
                st.nanos = nanos;
                st.record_header = if modified { 24 } else { 16 };
                let rd = FillReader::new(
                    Box::new(Prefixed::new(head, stream)),
                    slot,
                    compression != Compression::None,
                );
                let r = LegacyPcapReader::new(capacity, rd).map_err(|e| open_error(&e, &st))?;
                Engine::Legacy(r)
            }
            CaptureFormat::PcapNg => {
                input::read_more(&mut stream, &mut head, 8)
                    .map_err(|e| input::read_error(head.len() as u64, e))?;
                let Some(big) = ng::shb_big_endian(&head) else {
                    if head.len() < 12 {
                        return Err(Error::Truncated {
                            offset: 0,
                            block_index: 0,
                            needed: (12 - head.len()) as u64,
                        });
                    }
                    return Err(Error::Corrupt {
                        offset: 0,
                        block_index: 0,
                        reason: "pcapng section header with an invalid byte-order magic".into(),
                    });
                };
                let len = ng::u32_at(&head, 4, big).unwrap_or(0) as usize;
                if len > max_block {
                    return Err(Error::BlockTooLarge {
                        offset: 0,
                        block_index: 0,
                        length: len as u64,
                        cap: max_block as u64,
                        header: 0,
                    });
                }
                if len < MIN_SHB_LEN || !len.is_multiple_of(4) {
                    return Err(Error::Corrupt {
                        offset: 0,
                        block_index: 0,
                        reason: format!("pcapng section header with an invalid length {len}"),
                    });
                }
                let more = len - head.len();
                input::read_more(&mut stream, &mut head, more)
                    .map_err(|e| input::read_error(head.len() as u64, e))?;
                if head.len() < len {
                    return Err(Error::Truncated {
                        offset: 0,
                        block_index: 0,
                        needed: (len - head.len()) as u64,
                    });
                }
                // the reader gets a minimal SHB (same byte order and version)
                let mut min = head.get(..24).map(<[u8]>::to_vec).unwrap_or_default();
                let l = if big {
                    28u32.to_be_bytes()
                } else {
                    28u32.to_le_bytes()
                };
                if let Some(d) = min.get_mut(4..8) {
                    d.copy_from_slice(&l);
                }
                min.extend_from_slice(&l);
                st.offset_delta = (len - MIN_SHB_LEN) as u64;
                st.big_endian = big;
                st.first_shb = Some(head);
                let rd = FillReader::new(
                    Box::new(Prefixed::new(min, stream)),
                    slot,
                    compression != Compression::None,
                );
                let r = PcapNGReader::new(capacity, rd).map_err(|e| open_error(&e, &st))?;
                Engine::Ng(r)
            }
        };
        Ok(CaptureReader { engine, st })
    }

    /// The next packet, or `None` at the end of the input (and after any
    /// error).
    ///
    /// # Errors
    /// [`Error::Truncated`] when the input ends within a record (every
    /// complete packet was returned before), [`Error::Corrupt`],
    /// [`Error::BlockTooLarge`] or [`Error::Io`].
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>> {
        let st = &mut self.st;
        if st.done {
            return Ok(None);
        }
        let r = match &mut self.engine {
            Engine::Legacy(r) => next_legacy(r, st),
            Engine::Ng(r) => next_ng(r, st),
        };
        if r.is_err() {
            self.st.done = true;
        }
        r
    }

    /// Sets a callback that receives every non-packet pcapng block (section
    /// headers, interface descriptions, name resolution, statistics,
    /// decryption secrets, custom and unknown blocks). Classic pcap files
    /// have no such blocks.
    pub fn set_block_callback(&mut self, cb: BlockCallback) {
        self.st.callback = Some(cb);
    }

    /// The container format.
    pub fn format(&self) -> CaptureFormat {
        self.st.format
    }

    /// The compression of the input.
    pub fn compression(&self) -> Compression {
        self.st.compression
    }

    /// The link type of a classic pcap file (`None` for pcapng, where each
    /// interface has its own: see [`CaptureReader::interfaces`]).
    pub fn linktype(&self) -> Option<LinkType> {
        match self.st.format {
            CaptureFormat::Pcap { .. } => Some(self.st.linktype),
            CaptureFormat::PcapNg => None,
        }
    }

    /// The snapshot length of a classic pcap file (`None` for pcapng).
    pub fn snaplen(&self) -> Option<u32> {
        match self.st.format {
            CaptureFormat::Pcap { .. } => Some(self.st.snaplen),
            CaptureFormat::PcapNg => None,
        }
    }

    /// The interfaces of the current pcapng section, as described so far (a
    /// single pseudo-interface for classic pcap).
    pub fn interfaces(&self) -> Vec<InterfaceInfo> {
        match self.st.format {
            CaptureFormat::Pcap { nanos, .. } => vec![InterfaceInfo {
                section: 0,
                id: 0,
                linktype: self.st.linktype,
                snaplen: self.st.snaplen,
                name: None,
                tsresol: if nanos { 9 } else { 6 },
                tsoffset: 0,
            }],
            CaptureFormat::PcapNg => self.st.interfaces.clone(),
        }
    }

    /// Index of the current pcapng section (0 for the first; 0 for pcap).
    pub fn section_index(&self) -> u32 {
        self.st.section
    }

    /// Packets returned so far.
    pub fn packets_read(&self) -> u64 {
        self.st.packets
    }

    /// Offset in the (decompressed) input of the next block to read.
    pub fn offset(&self) -> u64 {
        let consumed = match &self.engine {
            Engine::Legacy(r) => r.consumed(),
            Engine::Ng(r) => r.consumed(),
        };
        self.st.offset(consumed + self.st.pending)
    }
}

impl PacketSource for CaptureReader {
    fn next_event(&mut self) -> Result<SourceEvent<'_>> {
        Ok(match self.next_packet()? {
            Some(p) => SourceEvent::Packet(p),
            None => SourceEvent::End,
        })
    }

    fn name(&self) -> &str {
        &self.st.name
    }

    /// `bytes` is the offset in the capture for plain input, and the
    /// compressed bytes read so far (including read-ahead) for compressed
    /// input; `total_bytes` is the size of the file opened by path.
    fn progress(&self) -> SourceProgress {
        let bytes = match self.st.compression {
            Compression::None => self.offset(),
            _ => self.st.raw_read.load(Ordering::Relaxed),
        };
        SourceProgress {
            packets: self.st.packets,
            bytes,
            total_bytes: self.st.total_bytes,
            dropped: None,
        }
    }
}

/// Error while constructing the pcap-parser reader (the header was already
/// checked, so this is rare: a read failure).
fn open_error(e: &PcapError<&[u8]>, st: &State) -> Error {
    match e {
        PcapError::ReadError => io_error(st, 0),
        PcapError::Incomplete(n) => Error::Truncated {
            offset: 0,
            block_index: 0,
            needed: *n as u64,
        },
        other => Error::Corrupt {
            offset: 0,
            block_index: 0,
            reason: format!("{other:?}"),
        },
    }
}

/// The error of a failed read (kept by [`FillReader`]): a decompressor's
/// failure is [`Error::CompressedTruncated`] (a truncation: every packet
/// before it was delivered), anything else [`Error::Io`].
fn io_error(st: &State, offset: u64) -> Error {
    let source = st
        .io_error
        .lock()
        .ok()
        .and_then(|mut s| s.take())
        .unwrap_or_else(|| io::Error::other("read error"));
    input::read_error(offset, source)
}

/// What the last call of `next()` gave, without borrowing the reader.
enum Step {
    /// A block to skip (or handle from its raw bytes), of this length and type.
    Block(usize, u32),
    /// A packet: block length, data start in the block, data length,
    /// interface, timestamp (`None` for SPB), origlen.
    Packet {
        len: usize,
        start: usize,
        caplen: usize,
        interface: u32,
        ts: Option<Timestamp>,
        origlen: u32,
    },
    /// pcapng packet with a raw timestamp to convert with its interface.
    NgPacket {
        len: usize,
        start: usize,
        caplen: usize,
        interface: u32,
        units: u64,
        origlen: u32,
    },
    Eof,
    NeedMore {
        too_small: bool,
    },
    UnexpectedEof,
    ReadError,
    Invalid(String),
}

fn classify(e: &PcapError<&[u8]>) -> Step {
    match e {
        PcapError::Eof => Step::Eof,
        PcapError::Incomplete(_) => Step::NeedMore { too_small: false },
        PcapError::BufferTooSmall => Step::NeedMore { too_small: true },
        PcapError::UnexpectedEof => Step::UnexpectedEof,
        PcapError::ReadError => Step::ReadError,
        PcapError::HeaderNotRecognized => Step::Invalid("header not recognized".into()),
        PcapError::NomError(_, k) | PcapError::OwnedNomError(_, k) => {
            Step::Invalid(format!("invalid block ({k:?})"))
        }
    }
}

fn next_legacy<'a>(
    r: &'a mut LegacyPcapReader<FillReader>,
    st: &mut State,
) -> Result<Option<Packet<'a>>> {
    if st.pending > 0 {
        r.consume(st.pending);
        st.pending = 0;
    }
    let mut stalls = 0u32;
    loop {
        let step = match r.next() {
            Ok((len, PcapBlockOwned::Legacy(b))) => {
                let ts = record_time(b.ts_sec, b.ts_usec, st.nanos);
                Step::Packet {
                    len,
                    start: st.record_header,
                    caplen: b.data.len(),
                    interface: 0,
                    ts: Some(ts),
                    origlen: b.origlen,
                }
            }
            Ok((len, _)) => Step::Block(len, 0),
            Err(e) => classify(&e),
        };
        check_size(&step, st, r.consumed())?;
        match step {
            Step::Packet {
                len,
                start,
                caplen,
                interface,
                ts,
                origlen,
            } => {
                st.pending = len;
                st.blocks += 1;
                let index = st.packets;
                st.packets += 1;
                let data = r
                    .data()
                    .get(start..start + caplen)
                    .ok_or_else(|| internal(st, r.consumed()))?;
                return Ok(Some(Packet {
                    index,
                    interface,
                    linktype: st.linktype,
                    ts,
                    origlen,
                    data,
                }));
            }
            Step::Block(len, _) => {
                r.consume(len);
                st.blocks += 1;
            }
            other => {
                if handle_other(r, st, other, &mut stalls)? {
                    return Ok(None);
                }
            }
        }
    }
}

fn next_ng<'a>(r: &'a mut PcapNGReader<FillReader>, st: &mut State) -> Result<Option<Packet<'a>>> {
    if st.pending > 0 {
        r.consume(st.pending);
        st.pending = 0;
    }
    let mut stalls = 0u32;
    loop {
        // Every pcapng block is at least 12 bytes (type, length, trailing
        // length). pcap-parser 0.17 accepts a Process Information Block
        // declaring 4 to 11 and subtracts 12 from that length (an overflow:
        // a panic where overflow checks are on), so a shorter length is
        // refused before the parser sees it.
        if let Some(len) = ng::declared_block_len(r.data(), st.big_endian)
            && len < 12
        {
            return Err(corrupt(
                st,
                r.consumed(),
                format!("pcapng block with an invalid length {len}"),
            ));
        }
        let step = match r.next() {
            Ok((len, PcapBlockOwned::NG(b))) => match b {
                Block::EnhancedPacket(b) => Step::NgPacket {
                    len,
                    start: 28,
                    caplen: (b.caplen as usize).min(b.data.len()),
                    interface: b.if_id,
                    units: (u64::from(b.ts_high) << 32) | u64::from(b.ts_low),
                    origlen: b.origlen,
                },
                Block::SimplePacket(b) => {
                    let snap = st.interfaces.first().map_or(0, |i| i.snaplen);
                    let mut caplen = (b.origlen as usize).min(b.data.len());
                    if snap > 0 {
                        caplen = caplen.min(snap as usize);
                    }
                    Step::Packet {
                        len,
                        start: 12,
                        caplen,
                        interface: 0,
                        ts: None,
                        origlen: b.origlen,
                    }
                }
                // pcap-parser gives the raw (little-endian read) type of
                // custom and unknown blocks, the normalised one of the others
                Block::Unknown(b) => Step::Block(len, norm_type(b.block_type, st.big_endian)),
                Block::Custom(b) => Step::Block(len, norm_type(b.block_type, st.big_endian)),
                other => Step::Block(len, other.magic()),
            },
            Ok((len, _)) => Step::Block(len, 0),
            Err(e) => classify(&e),
        };
        let step = match step {
            Step::Invalid(reason) => ng_fallback(r.data(), st, reason),
            other => other,
        };
        check_size(&step, st, r.consumed())?;
        match step {
            Step::Packet {
                len,
                start,
                caplen,
                interface,
                ts,
                origlen,
            } => {
                if st.interfaces.is_empty() {
                    return Err(undefined_interface(st, r.consumed(), 0));
                }
                st.pending = len;
                st.blocks += 1;
                let index = st.packets;
                st.packets += 1;
                let linktype = st
                    .interfaces
                    .first()
                    .map(|i| i.linktype)
                    .unwrap_or_default();
                let data = r
                    .data()
                    .get(start..start + caplen)
                    .ok_or_else(|| internal(st, r.consumed()))?;
                return Ok(Some(Packet {
                    index,
                    interface,
                    linktype,
                    ts,
                    origlen,
                    data,
                }));
            }
            Step::NgPacket {
                len,
                start,
                caplen,
                interface,
                units,
                origlen,
            } => {
                let Some(i) = st.interfaces.get(interface as usize) else {
                    return Err(undefined_interface(st, r.consumed(), interface));
                };
                let ts = pcapng_timestamp(units, i.tsresol, i.tsoffset);
                let linktype = i.linktype;
                st.pending = len;
                st.blocks += 1;
                let index = st.packets;
                st.packets += 1;
                let data = r
                    .data()
                    .get(start..start + caplen)
                    .ok_or_else(|| internal(st, r.consumed()))?;
                return Ok(Some(Packet {
                    index,
                    interface,
                    linktype,
                    ts: Some(ts),
                    origlen,
                    data,
                }));
            }
            Step::Block(len, block_type) => {
                if block_type == ng::PB {
                    // obsolete Packet Block: parsed here from its raw bytes
                    let be = st.big_endian;
                    let raw = r.data().get(..len).unwrap_or_default();
                    let (Some(if_id), Some(hi), Some(lo), Some(cap), Some(orig)) = (
                        ng::u16_at(raw, 8, be),
                        ng::u32_at(raw, 12, be),
                        ng::u32_at(raw, 16, be),
                        ng::u32_at(raw, 20, be),
                        ng::u32_at(raw, 24, be),
                    ) else {
                        return Err(corrupt(st, r.consumed(), "packet block too short".into()));
                    };
                    if (cap as usize) > len.saturating_sub(32) {
                        return Err(corrupt(
                            st,
                            r.consumed(),
                            format!("packet block with caplen {cap} > its length"),
                        ));
                    }
                    let Some(i) = st.interfaces.get(usize::from(if_id)) else {
                        return Err(undefined_interface(st, r.consumed(), u32::from(if_id)));
                    };
                    let ts = pcapng_timestamp(
                        (u64::from(hi) << 32) | u64::from(lo),
                        i.tsresol,
                        i.tsoffset,
                    );
                    let linktype = i.linktype;
                    st.pending = len;
                    st.blocks += 1;
                    let index = st.packets;
                    st.packets += 1;
                    let data = r
                        .data()
                        .get(28..28 + cap as usize)
                        .ok_or_else(|| internal(st, r.consumed()))?;
                    return Ok(Some(Packet {
                        index,
                        interface: u32::from(if_id),
                        linktype,
                        ts: Some(ts),
                        origlen: orig,
                        data,
                    }));
                }
                let consumed = r.consumed();
                let raw = r.data().get(..len).unwrap_or_default();
                ng_block(st, consumed, block_type, raw)?;
                r.consume(len);
                st.blocks += 1;
            }
            other => {
                if handle_other(r, st, other, &mut stalls)? {
                    return Ok(None);
                }
            }
        }
    }
}

fn norm_type(t: u32, be: bool) -> u32 {
    if be { t.swap_bytes() } else { t }
}

/// Lenient reading of a complete block that pcap-parser refused: section
/// and interface blocks are parsed here (a malformed option ends the option
/// list), and an Enhanced Packet Block whose trailing length or options are
/// damaged still gives its packet when its captured length fits in the block
/// (as libpcap does). Anything else stays invalid.
fn ng_fallback(data: &[u8], st: &State, reason: String) -> Step {
    let be = st.big_endian;
    let declared = ng::declared_block_len(data, be).map(|l| l as usize);
    let t = ng::u32_at(data, 0, be);
    match (declared, t) {
        (Some(len), Some(t @ (ng::SHB | ng::IDB))) if len >= 28 && len <= data.len() => {
            Step::Block(len, t)
        }
        (Some(len), Some(6)) if len >= 32 && len <= data.len() => {
            let fields = (
                ng::u32_at(data, 8, be),
                ng::u32_at(data, 12, be),
                ng::u32_at(data, 16, be),
                ng::u32_at(data, 20, be),
                ng::u32_at(data, 24, be),
            );
            match fields {
                (Some(interface), Some(hi), Some(lo), Some(caplen), Some(origlen))
                    if (caplen as usize) <= len - 32 =>
                {
                    log::warn!(
                        "{}: damaged enhanced packet block read anyway ({reason})",
                        st.name
                    );
                    Step::NgPacket {
                        len,
                        start: 28,
                        caplen: caplen as usize,
                        interface,
                        units: (u64::from(hi) << 32) | u64::from(lo),
                        origlen,
                    }
                }
                _ => Step::Invalid(reason),
            }
        }
        _ => Step::Invalid(reason),
    }
}

/// Handles a section, interface or other non-packet pcapng block.
fn ng_block(st: &mut State, consumed: usize, block_type: u32, raw: &[u8]) -> Result<()> {
    let offset = st.offset(consumed);
    let first = consumed == 0;
    let owned_first = if first { st.first_shb.take() } else { None };
    let raw: &[u8] = owned_first.as_deref().unwrap_or(raw);
    match block_type {
        ng::SHB => {
            let Some(info) = ng::parse_shb(raw) else {
                return Err(corrupt(st, consumed, "invalid section header block".into()));
            };
            if st.sections_seen > 0 {
                st.section += 1;
            }
            st.sections_seen += 1;
            st.big_endian = info.big_endian;
            st.interfaces.clear();
            if info.major != 1 {
                log::debug!(
                    "{}: pcapng section version {}.{} read anyway",
                    st.name,
                    info.major,
                    info.minor
                );
            }
        }
        ng::IDB => {
            let id = u32::try_from(st.interfaces.len()).unwrap_or(u32::MAX);
            let Some(i) = ng::parse_idb(raw, st.big_endian, st.section, id) else {
                return Err(corrupt(
                    st,
                    consumed,
                    "invalid interface description block".into(),
                ));
            };
            st.interfaces.push(i);
        }
        _ => {}
    }
    if let Some(cb) = st.callback.as_mut() {
        cb(&BlockInfo {
            block_type,
            offset,
            block_index: st.blocks,
            section: st.section,
            big_endian: st.big_endian,
            raw,
        });
    }
    Ok(())
}

/// Handles the end, errors and requests for more data. Returns `Ok(true)`
/// at the end of the input.
fn handle_other<R: PcapReaderIterator>(
    r: &mut R,
    st: &mut State,
    step: Step,
    stalls: &mut u32,
) -> Result<bool> {
    let consumed = r.consumed();
    match step {
        Step::Eof => {
            st.done = true;
            Ok(true)
        }
        Step::UnexpectedEof => {
            let have = r.data().len();
            let needed = declared_len(r.data(), st).map_or(0, |d| d.saturating_sub(have) as u64);
            Err(Error::Truncated {
                offset: st.offset(consumed),
                block_index: st.blocks,
                needed,
            })
        }
        Step::ReadError => Err(io_error(st, st.offset(consumed))),
        Step::Invalid(reason) => Err(corrupt(st, consumed, reason)),
        Step::NeedMore { too_small } => {
            let have = r.data().len();
            let declared = declared_len(r.data(), st);
            if let Some(d) = declared {
                check_len(d, st, consumed)?;
                if d <= have {
                    return Err(corrupt(
                        st,
                        consumed,
                        format!("block content inconsistent with its length {d}"),
                    ));
                }
            }
            if too_small || *stalls > 2 {
                let want = st.capacity.saturating_mul(2).max(4096);
                let want = match declared {
                    Some(d) => want.min(d.saturating_add(1)).max(have.saturating_add(1)),
                    None => want,
                };
                let want = want.min(st.max_block.saturating_add(1));
                if want <= st.capacity || !r.grow(want) {
                    return Err(corrupt(
                        st,
                        consumed,
                        "reader made no progress (buffer cannot grow)".into(),
                    ));
                }
                st.capacity = want;
                *stalls = 0;
            }
            let before = r.data().len();
            if let Err(e) = r.refill() {
                return Err(match e {
                    PcapError::ReadError => io_error(st, st.offset(consumed)),
                    other => corrupt(st, consumed, format!("refill failed: {other:?}")),
                });
            }
            if r.data().len() <= before && !r.reader_exhausted() {
                *stalls += 1;
            }
            Ok(false)
        }
        Step::Block(..) | Step::Packet { .. } | Step::NgPacket { .. } => Ok(false),
    }
}

/// The total length that the block or record at the start of `data` declares.
/// A block or record longer than `max_block_size` is refused even when it
/// happens to fit in the buffer already, so that the limit does not depend
/// on the buffer's size (the chunked reader applies the same one).
fn check_size(step: &Step, st: &State, consumed: usize) -> Result<()> {
    match step {
        Step::Packet { len, .. } | Step::NgPacket { len, .. } | Step::Block(len, _) => {
            check_len(*len, st, consumed)
        }
        _ => Ok(()),
    }
}

/// [`Error::BlockTooLarge`] when a block of `len` bytes is over the cap.
fn check_len(len: usize, st: &State, consumed: usize) -> Result<()> {
    if len > st.max_block {
        return Err(Error::BlockTooLarge {
            offset: st.offset(consumed),
            block_index: st.blocks,
            length: len as u64,
            cap: st.max_block as u64,
            header: match st.format {
                CaptureFormat::Pcap { .. } => st.record_header as u64,
                CaptureFormat::PcapNg => 0,
            },
        });
    }
    Ok(())
}

fn declared_len(data: &[u8], st: &State) -> Option<usize> {
    match st.format {
        CaptureFormat::Pcap { endianness, .. } => {
            let caplen = ng::u32_at(data, 8, endianness == Endianness::Big)?;
            Some((caplen as usize).saturating_add(st.record_header))
        }
        CaptureFormat::PcapNg => ng::declared_block_len(data, st.big_endian).map(|l| l as usize),
    }
}

fn corrupt(st: &State, consumed: usize, reason: String) -> Error {
    Error::Corrupt {
        offset: st.offset(consumed),
        block_index: st.blocks,
        reason,
    }
}

fn undefined_interface(st: &State, consumed: usize, id: u32) -> Error {
    corrupt(
        st,
        consumed,
        format!(
            "packet references interface {id}, but section {} describes {} interface(s)",
            st.section,
            st.interfaces.len()
        ),
    )
}

fn internal(st: &State, consumed: usize) -> Error {
    corrupt(st, consumed, "packet data outside its block".into())
}
