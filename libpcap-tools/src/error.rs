//! The error type of the capture sources.

use std::io;
use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while opening or reading a capture, or
/// loading the configuration.
///
/// Errors are owned values: they carry the byte offset in the (decompressed)
/// input and the index of the block where the problem was found, never a
/// borrow of the input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input could not be opened.
    #[error("cannot open '{}': {source}", path.display())]
    Open {
        /// The path given.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Reading the input failed.
    #[error("read error at offset {offset}: {source}")]
    Io {
        /// Offset in the (decompressed) input.
        offset: u64,
        /// The operating system's or decompressor's reason.
        source: io::Error,
    },
    /// Writing an output failed (a capture writer's sink).
    #[error("write error at offset {offset}: {source}")]
    Write {
        /// Bytes written before the failure.
        offset: u64,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The compressed input ends early or is damaged: its decompressor
    /// stopped at `offset` bytes of decompressed data. Every complete packet
    /// before that point was delivered (as for [`Error::Truncated`], callers
    /// may treat this as a warning).
    #[error(
        "the {codec} data ends early or is damaged ({reason}): the capture stops at offset \
         {offset}"
    )]
    CompressedTruncated {
        /// Offset in the decompressed capture of the first record or block
        /// that could not be read whole (the end of the last packet read).
        offset: u64,
        /// The compression (`gzip`, `xz`, `lz4`, `zstd`, `bzip2`).
        codec: &'static str,
        /// The decompressor's own words.
        reason: String,
    },
    /// The input is not a capture this crate can read.
    #[error("not a pcap or pcapng capture (first bytes {magic:02x?})")]
    UnknownFormat {
        /// The first bytes of the input (at most 8).
        magic: Vec<u8>,
    },
    /// The input ends in the middle of a header or record. Every complete
    /// packet before `offset` was delivered; callers may treat this as a warning.
    #[error("truncated at offset {offset} (block {block_index}): {needed} more bytes expected")]
    Truncated {
        /// Offset of the incomplete header or record.
        offset: u64,
        /// Index of the incomplete block (file header = 0 for pcap records, the
        /// count of blocks read before it for pcapng).
        block_index: u64,
        /// Bytes still missing, as far as the reader could tell (0 if unknown).
        needed: u64,
    },
    /// The input is damaged at `offset`; reading cannot go on.
    #[error("corrupt capture at offset {offset} (block {block_index}): {reason}")]
    Corrupt {
        /// Offset of the damaged header or block.
        offset: u64,
        /// Index of the damaged block.
        block_index: u64,
        /// What is wrong.
        reason: String,
    },
    /// A block or record declares a length over the configured cap.
    #[error("{}", too_large(*offset, *block_index, *length, *cap, *header))]
    BlockTooLarge {
        /// Offset of the block.
        offset: u64,
        /// Index of the block.
        block_index: u64,
        /// The length the block occupies: a pcapng block's total length, or
        /// a pcap record's captured length plus its record header.
        length: u64,
        /// The configured cap.
        cap: u64,
        /// Bytes of record header counted in `length` beside the declared
        /// captured length (16, or 24 in the modified format; 0 for pcapng
        /// blocks, whose declared length is their whole length).
        header: u64,
    },
    /// A writer cannot represent this packet in its format (timestamp out of
    /// range, undefined interface, data too long).
    #[error("packet {index} cannot be written: {reason}")]
    Unwritable {
        /// [`Packet::index`](crate::Packet::index) of the packet.
        index: u64,
        /// Why.
        reason: String,
    },
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// A live or other external source failed.
    #[error("{context}: {source}")]
    Source {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

/// The message of [`Error::BlockTooLarge`]: a pcap record's captured
/// length is given as declared, its header named apart.
fn too_large(offset: u64, block_index: u64, length: u64, cap: u64, header: u64) -> String {
    let what = if header > 0 {
        format!(
            "record {block_index} at offset {offset} declares a captured length of {} bytes \
             ({length} with its {header}-byte record header)",
            length.saturating_sub(header)
        )
    } else {
        format!("block {block_index} at offset {offset} declares {length} bytes")
    };
    format!("{what}, over the cap of {cap} (reader.max_block_size); the file is probably corrupt")
}

impl Error {
    /// `true` for [`Error::Truncated`] and [`Error::CompressedTruncated`]:
    /// every complete packet was read, and the caller may report the error
    /// as a warning and keep its results.
    pub fn is_truncation(&self) -> bool {
        matches!(
            self,
            Error::Truncated { .. } | Error::CompressedTruncated { .. }
        )
    }

    /// The offset in the input where the error was found, when it has one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::Io { offset, .. }
            | Error::Write { offset, .. }
            | Error::Truncated { offset, .. }
            | Error::CompressedTruncated { offset, .. }
            | Error::Corrupt { offset, .. }
            | Error::BlockTooLarge { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// The message of `e` followed by those of its sources, each once: a source
/// whose text the message already holds (most wrappers repeat their
/// source's text, as `cannot open 'x': No such file or directory`) is not
/// repeated, and the `(os error N)` suffix of system errors is left out.
///
/// ```
/// let inner = std::io::Error::from_raw_os_error(2);
/// let e = libpcap_tools::Error::Open { path: "x.pcap".into(), source: inner };
/// assert_eq!(
///     libpcap_tools::error_text(&e),
///     "cannot open 'x.pcap': No such file or directory"
/// );
/// ```
pub fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        let text = without_os_code(&err.to_string());
        if !text.is_empty() && !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        next = err.source();
    }
    out
}

/// `text` without the ` (os error N)` parts the standard library adds to
/// system errors.
fn without_os_code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(" (os error ") {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        match tail.find(')') {
            Some(j)
                if tail
                    .get(11..j)
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) =>
            {
                rest = tail.get(j + 1..).unwrap_or_default();
            }
            _ => {
                out.push_str(tail.get(..1).unwrap_or_default());
                rest = tail.get(1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_over_the_cap_is_named_with_its_declared_caplen() {
        let e = Error::BlockTooLarge {
            offset: 24,
            block_index: 1,
            length: 314_572_816,
            cap: 268_435_456,
            header: 16,
        };
        assert_eq!(
            e.to_string(),
            "record 1 at offset 24 declares a captured length of 314572800 bytes (314572816 \
             with its 16-byte record header), over the cap of 268435456 \
             (reader.max_block_size); the file is probably corrupt"
        );
        let e = Error::BlockTooLarge {
            offset: 0,
            block_index: 0,
            length: 100,
            cap: 64,
            header: 0,
        };
        assert!(
            e.to_string()
                .starts_with("block 0 at offset 0 declares 100 bytes, over")
        );
    }

    #[test]
    fn error_text_says_each_reason_once_without_os_codes() {
        let e = Error::Io {
            offset: 3,
            source: io::Error::other("gzip: incomplete deflate stream"),
        };
        assert_eq!(
            error_text(&e),
            "read error at offset 3: gzip: incomplete deflate stream"
        );
        let e = Error::Open {
            path: "x.pcap".into(),
            source: io::Error::from_raw_os_error(13),
        };
        assert_eq!(error_text(&e), "cannot open 'x.pcap': Permission denied");
        assert_eq!(without_os_code("x (os error 12"), "x (os error 12");
        assert_eq!(without_os_code("x (os error z) y"), "x (os error z) y");
    }
}
