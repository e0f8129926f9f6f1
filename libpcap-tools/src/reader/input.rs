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

/// Counts the bytes read from the raw (possibly compressed) input, for
/// progress reports.
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
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(crate) fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let Some(dst) = buf.get_mut(filled..) else {
            break;
        };
        match r.read(dst) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
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
pub(crate) struct FillReader {
    inner: Box<dyn Read + Send>,
    slot: ErrorSlot,
    fill: bool,
}

impl FillReader {
    /// A reader that fills whole buffers when `fill` is set.
    pub(crate) fn new(inner: Box<dyn Read + Send>, slot: ErrorSlot, fill: bool) -> Self {
        FillReader { inner, slot, fill }
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
        let r = if self.fill {
            read_full(&mut self.inner, buf)
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
/// cap is when the decoder refused to go over it.
struct Named<R> {
    inner: R,
    name: &'static str,
    memory: usize,
}

impl<R: Read> Read for Named<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let note = if e.to_string().contains("memory") {
                format!(
                    " (decoders may use {} MiB: reader.max_block_size, at least {} MiB)",
                    self.memory >> 20,
                    MIN_DECODER_MEMORY >> 20
                )
            } else {
                String::new()
            };
            io::Error::new(e.kind(), format!("{}: {e}{note}", self.name))
        })
    }
}

/// Wraps `inner` in the decompressor named by its first bytes; returns the
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
        Compression::Lz4 => named("lz4", Box::new(lz4_flex::frame::FrameDecoder::new(raw))),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(raw).map_err(io_err)?;
            d.window_log_max(zstd_window_log(memory)).map_err(io_err)?;
            named("zstd", Box::new(d))
        }
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

    #[test]
    fn prefixed_serves_prefix_then_inner() {
        let mut r = Prefixed::new(vec![1, 2, 3], &[4u8, 5][..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, [1, 2, 3, 4, 5]);
    }
}
