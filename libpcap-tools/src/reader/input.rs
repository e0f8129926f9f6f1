//! Opening the input: files, standard input, and decompression detected by
//! magic bytes.

use crate::{Error, Result};
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Compression of the input, detected from its first bytes (never from the
/// file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (every member of a multi-member file is read).
    Gzip,
    /// xz (every stream of a multi-stream file is read).
    Xz,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard (every frame is read).
    Zstd,
    /// bzip2 (every stream of a multi-stream file is read).
    Bzip2,
}

impl Compression {
    /// Detects the compression from the first bytes of the input.
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if magic.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
            Compression::Lz4
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if let [b'B', b'Z', b'h', b'1'..=b'9', ..] = magic {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }
}

/// A reader that first returns bytes already read (`prefix`), then the rest
/// of `inner`.
pub(crate) struct Prefixed<R> {
    prefix: Vec<u8>,
    pos: usize,
    inner: R,
}

impl<R: Read> Prefixed<R> {
    pub(crate) fn new(prefix: Vec<u8>, inner: R) -> Self {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<R: Read> Read for Prefixed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(rest) = self.prefix.get(self.pos..)
            && !rest.is_empty()
        {
            let n = rest.len().min(buf.len());
            if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
                dst.copy_from_slice(src);
            }
            self.pos += n;
            if self.pos >= self.prefix.len() {
                // free the prefix once served
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

/// A read error of the raw input (the file or pipe under a decompressor),
/// marked so that [`Named`] can tell it from the decompressor's own failure
/// (damaged or cut compressed data).
#[derive(Debug)]
struct RawReadError(io::Error);

impl std::fmt::Display for RawReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for RawReadError {}

/// A decompressor's failure: the compressed data ends early or is damaged.
/// The reader reports it as [`Error::CompressedTruncated`].
#[derive(Debug)]
pub(crate) struct DecodeFailure {
    /// The compression's name (`gzip`, …).
    pub(crate) codec: &'static str,
    /// The decompressor's message.
    pub(crate) reason: String,
}

impl std::fmt::Display for DecodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.codec, self.reason)
    }
}

impl std::error::Error for DecodeFailure {}

/// The reader's error for an I/O error met at `offset` of the decompressed
/// input: [`Error::CompressedTruncated`] for a decompressor's failure,
/// [`Error::Io`] for anything else.
pub(crate) fn read_error(offset: u64, source: io::Error) -> Error {
    match source
        .get_ref()
        .and_then(|e| e.downcast_ref::<DecodeFailure>())
    {
        Some(d) => Error::CompressedTruncated {
            offset,
            codec: d.codec,
            reason: d.reason.clone(),
        },
        None => Error::Io { offset, source },
    }
}

/// Counts the bytes read from the raw (possibly compressed) input, for
/// progress reports, and marks its read errors ([`RawReadError`]).
pub(crate) struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Counting<R> {
    pub(crate) fn new(inner: R, count: Arc<AtomicU64>) -> Self {
        Counting { inner, count }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.count.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => Err(io::Error::new(e.kind(), RawReadError(e))),
        }
    }
}

/// Reads up to `n` more bytes into `v` (fewer at the end of the input).
pub(crate) fn read_more<R: Read + ?Sized>(r: &mut R, v: &mut Vec<u8>, n: usize) -> io::Result<()> {
    // the buffer grows as data arrives: a header declaring a huge length in
    // a short file allocates only what the file holds
    (&mut *r).take(n as u64).read_to_end(v).map(|_| ())
}

/// Slot where [`FillReader`] keeps the last I/O error, because the
/// pcap-parser readers only report that a read failed, not why.
pub(crate) type ErrorSlot = Arc<Mutex<Option<io::Error>>>;

/// The reader handed to pcap-parser: retries interrupted reads and keeps
/// the reason of a failure. Behind a decompressor it fills the whole buffer
/// it is given (decompressors return small chunks: fewer refills); on plain
/// input it returns what one read gives, so that packets written to a pipe
/// (`tcpdump -w - | pcap-analyzer -`) are analysed as they come instead of
/// once a whole buffer arrived (a regular file fills it anyway).
///
/// An error met while filling a buffer that already holds bytes is kept for
/// the next read: the bytes decompressed before a cut or damaged part are
/// delivered first, so that every whole packet in them is read.
pub(crate) struct FillReader {
    inner: Box<dyn Read + Send>,
    slot: ErrorSlot,
    fill: bool,
    deferred: Option<io::Error>,
}

impl FillReader {
    /// A reader that fills whole buffers when `fill` is set.
    pub(crate) fn new(inner: Box<dyn Read + Send>, slot: ErrorSlot, fill: bool) -> Self {
        FillReader {
            inner,
            slot,
            fill,
            deferred: None,
        }
    }

    /// Fills `buf` as far as the input goes; an error after some bytes is
    /// deferred to the next call.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            let Some(dst) = buf.get_mut(filled..) else {
                break;
            };
            match self.inner.read(dst) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if filled > 0 => {
                    self.deferred = Some(e);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }

    fn read_once(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}

impl Read for FillReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = if let Some(e) = self.deferred.take() {
            Err(e)
        } else if self.fill {
            self.fill(buf)
        } else {
            self.read_once(buf)
        };
        match r {
            Ok(n) => Ok(n),
            Err(e) => {
                let kind = e.kind();
                if let Ok(mut s) = self.slot.lock() {
                    *s = Some(e);
                }
                Err(io::Error::from(kind))
            }
        }
    }
}

/// Follows the structure of LZ4 frames as their bytes pass from the raw
/// input to lz4_flex's decoder, which takes an input that ends between two
/// blocks (or inside a block's size field, or before a frame's end mark) for
/// a complete one. At the end of the raw input, this reader fails with
/// "the lz4 data is cut" unless the input ended between two frames, so
/// that a file cut at a block boundary is reported like any other cut.
struct Lz4Guard<R> {
    inner: R,
    state: Lz4Field,
    /// The field being read, and how much of it was read.
    field: [u8; 12],
    have: usize,
    /// Bytes of block data (or skippable frame) still to pass.
    skip: u64,
    /// FLG byte of the current frame.
    flg: u8,
    /// The raw input has ended.
    eof: bool,
}

/// The next field of an LZ4 stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lz4Field {
    /// A frame's magic number (the input may end cleanly here).
    Magic,
    /// FLG and BD bytes.
    Descriptor,
    /// Content size, dictionary id and header checksum (`n` bytes).
    HeaderRest(usize),
    /// A block's size (or the end mark).
    BlockSize,
    /// A legacy frame's block size (the input may end cleanly here).
    LegacyBlockSize,
    /// The content checksum after the end mark.
    ContentChecksum,
    /// The length of a skippable frame.
    SkippableSize,
    /// Something the guard does not understand: the decoder judges.
    Unknown,
}

const LZ4_MAGIC: u32 = 0x184D_2204;
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
const LZ4_SKIPPABLE: std::ops::RangeInclusive<u32> = 0x184D_2A50..=0x184D_2A5F;

impl<R: Read> Lz4Guard<R> {
    fn new(inner: R) -> Self {
        Lz4Guard {
            inner,
            state: Lz4Field::Magic,
            field: [0; 12],
            have: 0,
            skip: 0,
            flg: 0,
            eof: false,
        }
    }

    fn field_len(&self) -> usize {
        match self.state {
            Lz4Field::Magic
            | Lz4Field::BlockSize
            | Lz4Field::LegacyBlockSize
            | Lz4Field::ContentChecksum
            | Lz4Field::SkippableSize => 4,
            Lz4Field::Descriptor => 2,
            Lz4Field::HeaderRest(n) => n,
            Lz4Field::Unknown => 0,
        }
    }

    fn word(&self) -> u32 {
        u32::from_le_bytes([self.field[0], self.field[1], self.field[2], self.field[3]])
    }

    /// Interprets a complete field.
    fn step(&mut self) {
        let v = self.word();
        self.state = match self.state {
            Lz4Field::Magic => self.after_magic(v),
            Lz4Field::Descriptor => {
                self.flg = self.field[0];
                let mut rest = 1;
                if self.flg & 0x08 != 0 {
                    rest += 8;
                }
                if self.flg & 0x01 != 0 {
                    rest += 4;
                }
                Lz4Field::HeaderRest(rest)
            }
            Lz4Field::HeaderRest(_) => Lz4Field::BlockSize,
            Lz4Field::BlockSize if v == 0 => {
                if self.flg & 0x04 != 0 {
                    Lz4Field::ContentChecksum
                } else {
                    Lz4Field::Magic
                }
            }
            Lz4Field::BlockSize => {
                let checksum = if self.flg & 0x10 != 0 { 4 } else { 0 };
                self.skip = u64::from(v & 0x7fff_ffff) + checksum;
                Lz4Field::BlockSize
            }
            Lz4Field::LegacyBlockSize => match v {
                LZ4_LEGACY_MAGIC => Lz4Field::LegacyBlockSize,
                v if v == LZ4_MAGIC || LZ4_SKIPPABLE.contains(&v) => self.after_magic(v),
                v => {
                    self.skip = u64::from(v);
                    Lz4Field::LegacyBlockSize
                }
            },
            Lz4Field::ContentChecksum => Lz4Field::Magic,
            Lz4Field::SkippableSize => {
                self.skip = u64::from(v);
                Lz4Field::Magic
            }
            Lz4Field::Unknown => Lz4Field::Unknown,
        };
    }

    fn after_magic(&self, v: u32) -> Lz4Field {
        match v {
            LZ4_MAGIC => Lz4Field::Descriptor,
            LZ4_LEGACY_MAGIC => Lz4Field::LegacyBlockSize,
            v if LZ4_SKIPPABLE.contains(&v) => Lz4Field::SkippableSize,
            _ => Lz4Field::Unknown,
        }
    }

    /// Follows the bytes `data` passed on.
    fn follow(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.state != Lz4Field::Unknown {
            if self.skip > 0 {
                let n = data
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                self.skip -= n as u64;
                data = data.get(n..).unwrap_or_default();
                continue;
            }
            let want = self.field_len();
            let n = (want - self.have).min(data.len());
            if let (Some(dst), Some(src)) =
                (self.field.get_mut(self.have..self.have + n), data.get(..n))
            {
                dst.copy_from_slice(src);
            }
            self.have += n;
            data = data.get(n..).unwrap_or_default();
            if self.have == want {
                self.have = 0;
                self.step();
            }
        }
    }

    /// `true` when the input may end here.
    fn at_clean_end(&self) -> bool {
        self.skip == 0
            && self.have == 0
            && matches!(
                self.state,
                Lz4Field::Magic | Lz4Field::LegacyBlockSize | Lz4Field::Unknown
            )
    }
}

impl<R: Read> Read for Lz4Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        if n == 0 && !buf.is_empty() && !self.at_clean_end() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the input ends inside a frame (cut before its end mark)",
            ));
        }
        self.follow(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// lz4_flex's frame decoder, reading every frame of the input: the decoder
/// returns 0 bytes at the end of each frame, and then reads the next one
/// when called again.
struct Lz4Frames<R: Read> {
    decoder: lz4_flex::frame::FrameDecoder<Lz4Guard<R>>,
}

impl<R: Read> Read for Lz4Frames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.decoder.read(buf)?;
            // every call without output consumed input (a frame's end mark
            // or header), so this ends
            if n > 0 || buf.is_empty() || self.decoder.get_ref().eof {
                return Ok(n);
            }
        }
    }
}

/// Least memory a decompressor may always use (128 MiB: zstd's own default
/// window limit, and enough for `xz -9`), whatever `max_block_size` says.
const MIN_DECODER_MEMORY: usize = 128 << 20;

/// The memory a decompressor may use for its window (zstd) or dictionary
/// (xz): the reader's block cap, at least [`MIN_DECODER_MEMORY`].
pub(crate) fn decoder_memory(max_block: usize) -> usize {
    max_block.max(MIN_DECODER_MEMORY)
}

/// The largest zstd window (a power of two, as a log) within `memory`
/// bytes, inside zstd's own bounds (2^10 to 2^31).
fn zstd_window_log(memory: usize) -> u32 {
    memory.checked_ilog2().unwrap_or(10).clamp(10, 31)
}

/// A decompressor whose errors name it (`xz: …`), and say what the memory
/// cap is when the decoder refused to go over it. Its other errors (cut or
/// damaged data) become [`DecodeFailure`]s; read errors of the input under
/// it pass unchanged.
struct Named<R> {
    inner: R,
    name: &'static str,
    memory: usize,
}

impl<R: Read> Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let raw = e.get_ref().is_some_and(|i| i.is::<RawReadError>());
            if raw || e.kind() == io::ErrorKind::Interrupted {
                return e;
            }
            if e.to_string().contains("memory") {
                return io::Error::new(
                    e.kind(),
                    format!(
                        "{}: {e} (decoders may use {} MiB: reader.max_block_size, at least {} \
                         MiB)",
                        self.name,
                        self.memory >> 20,
                        MIN_DECODER_MEMORY >> 20
                    ),
                );
            }
            io::Error::new(
                e.kind(),
                DecodeFailure {
                    codec: self.name,
                    reason: e.to_string(),
                },
            )
        })
    }
}

/// Wraps `inner` in the decompressor named by its first bytes (bzip2
/// through the `bzip2` crate with its default backend, libbz2-rs-sys, a
/// pure-Rust port of libbzip2: no C toolchain needed); returns the
/// decompressed stream (with nothing consumed) and the compression found.
///
/// `memory` caps what the decoder allocates for its history, which the
/// compressed stream declares: an xz dictionary of up to 4 GiB or a zstd
/// window of up to 2 GiB can be asked for by a few bytes of input. A stream
/// that needs more fails with an [`Error::Io`] at its first read.
pub(crate) fn decompress(
    mut inner: Box<dyn Read + Send>,
    memory: usize,
) -> Result<(Box<dyn Read + Send>, Compression)> {
    let mut magic = Vec::with_capacity(8);
    read_more(&mut inner, &mut magic, 6).map_err(|source| Error::Io { offset: 0, source })?;
    let comp = Compression::detect(&magic);
    let raw = Prefixed::new(magic, inner);
    let io_err = |source: io::Error| Error::Io { offset: 0, source };
    let named = |name, inner: Box<dyn Read + Send>| -> Box<dyn Read + Send> {
        Box::new(Named {
            inner,
            name,
            memory,
        })
    };
    let out: Box<dyn Read + Send> = match comp {
        Compression::None => Box::new(raw),
        Compression::Gzip => named("gzip", Box::new(flate2::read::MultiGzDecoder::new(raw))),
        Compression::Xz => {
            let stream = liblzma::stream::Stream::new_stream_decoder(
                memory as u64,
                liblzma::stream::CONCATENATED,
            )
            .map_err(|e| io_err(e.into()))?;
            named(
                "xz",
                Box::new(liblzma::read::XzDecoder::new_stream(raw, stream)),
            )
        }
        Compression::Lz4 => named(
            "lz4",
            Box::new(Lz4Frames {
                decoder: lz4_flex::frame::FrameDecoder::new(Lz4Guard::new(raw)),
            }),
        ),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(raw).map_err(io_err)?;
            d.window_log_max(zstd_window_log(memory)).map_err(io_err)?;
            named("zstd", Box::new(d))
        }
        // at most ~3.6 MiB of state (900k blocks): nothing to cap
        Compression::Bzip2 => named("bzip2", Box::new(bzip2::read::MultiBzDecoder::new(raw))),
    };
    Ok((out, comp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_magics() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Compression::Xz
        );
        assert_eq!(
            Compression::detect(&[0x04, 0x22, 0x4d, 0x18]),
            Compression::Lz4
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(&[0xd4, 0xc3, 0xb2, 0xa1]),
            Compression::None
        );
        assert_eq!(Compression::detect(b"BZh91AY&SY"), Compression::Bzip2);
        assert_eq!(Compression::detect(b"BZh0"), Compression::None);
        assert_eq!(Compression::detect(&[]), Compression::None);
    }

    #[test]
    fn decoder_memory_has_a_floor_and_follows_the_block_cap() {
        assert_eq!(decoder_memory(64), 128 << 20);
        assert_eq!(decoder_memory(256 << 20), 256 << 20);
        assert_eq!(zstd_window_log(128 << 20), 27);
        assert_eq!(zstd_window_log((256 << 20) + 5), 28);
        assert_eq!(zstd_window_log(usize::MAX), 31);
        assert_eq!(zstd_window_log(0), 10);
    }

    fn lz4_frame(data: &[u8], checksums: bool) -> Vec<u8> {
        use std::io::Write;
        let info = lz4_flex::frame::FrameInfo::new()
            .block_size(lz4_flex::frame::BlockSize::Max64KB)
            .content_checksum(checksums)
            .block_checksums(checksums)
            .content_size(checksums.then_some(data.len() as u64));
        let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn lz4_guard_accepts_whole_frames_and_refuses_every_cut() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 9) as u8)
            .collect();
        for checksums in [false, true] {
            // two frames, as `cat a.lz4 b.lz4` makes
            let mut two = lz4_frame(&data, checksums);
            let first = two.len();
            two.extend(lz4_frame(&data[..1000], checksums));
            let frames = |b: &[u8]| Lz4Frames {
                decoder: lz4_flex::frame::FrameDecoder::new(Lz4Guard::new(std::io::Cursor::new(
                    b.to_vec(),
                ))),
            };
            let mut out = Vec::new();
            frames(&two).read_to_end(&mut out).unwrap();
            assert_eq!(out.len(), data.len() + 1000);
            assert!(out[..data.len()] == data[..] && out[data.len()..] == data[..1000]);
            // every offset near the start, the end and the block
            // boundaries (where lz4_flex alone sees a clean end), and a
            // stride through the rest
            let mut cuts: Vec<usize> = (1..64).chain(two.len() - 64..two.len()).collect();
            cuts.extend((64..two.len()).step_by(997));
            for start in [0, first] {
                let flg = two[start + 4];
                let mut at = start + 7 + if flg & 0x08 != 0 { 8 } else { 0 };
                loop {
                    cuts.extend(at.saturating_sub(5)..(at + 6).min(two.len()));
                    let size = u32::from_le_bytes(two[at..at + 4].try_into().unwrap());
                    if size == 0 {
                        break;
                    }
                    at += 4 + (size & 0x7fff_ffff) as usize + if checksums { 4 } else { 0 };
                }
            }
            cuts.retain(|&c| c > 0 && c < two.len() && c != first);
            for cut in cuts {
                let mut out = Vec::new();
                let r = frames(&two[..cut]).read_to_end(&mut out);
                assert!(r.is_err(), "cut at {cut} of {} read as complete", two.len());
            }
        }
    }

    #[test]
    fn prefixed_serves_prefix_then_inner() {
        let mut r = Prefixed::new(vec![1, 2, 3], &[4u8, 5][..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, [1, 2, 3, 4, 5]);
    }
}
