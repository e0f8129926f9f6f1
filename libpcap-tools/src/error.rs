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
    #[error(
        "block {block_index} at offset {offset} declares {length} bytes, over the cap of {cap} \
         (reader.max_block_size); the file is probably corrupt"
    )]
    BlockTooLarge {
        /// Offset of the block.
        offset: u64,
        /// Index of the block.
        block_index: u64,
        /// The declared length.
        length: u64,
        /// The configured cap.
        cap: u64,
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

impl Error {
    /// `true` for [`Error::Truncated`]: every complete packet was read, and the
    /// caller may report the error as a warning and keep its results.
    pub fn is_truncation(&self) -> bool {
        matches!(self, Error::Truncated { .. })
    }

    /// The offset in the input where the error was found, when it has one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::Io { offset, .. }
            | Error::Truncated { offset, .. }
            | Error::Corrupt { offset, .. }
            | Error::BlockTooLarge { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}
