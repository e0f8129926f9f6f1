//! The error type of the rewriting library.

use std::io;
use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a rewrite.
///
/// Problems with single packets (a frame that cannot be converted, an
/// unreadable header) are not errors: they are counted in the
/// [`Summary`](crate::Summary) and the run goes on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input capture could not be opened or is not a capture.
    #[error("input '{}': {source}", path.display())]
    Input {
        /// The input path (`-` for standard input).
        path: PathBuf,
        /// The reader's reason.
        source: libpcap_tools::Error,
    },
    /// An output file could not be created, opened or written.
    #[error("output '{}': {source}", path.display())]
    Output {
        /// The output path (`-` for standard output).
        path: PathBuf,
        /// The writer's reason.
        source: libpcap_tools::Error,
    },
    /// An output file or directory could not be created or opened.
    #[error("output '{}': {source}", path.display())]
    OutputIo {
        /// The path.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A packet has a link type that the output file cannot hold (classic
    /// pcap has one link type per file).
    #[error(
        "output '{}': packet {index} has link type {found}, but the pcap file was started with \
         link type {expected}; use --output-format pcapng or a link-type conversion",
        path.display()
    )]
    LinkTypeMismatch {
        /// The output path.
        path: PathBuf,
        /// Index of the packet in the input (0-based).
        index: u64,
        /// Link type of the file.
        expected: libpcap_tools::LinkType,
        /// Link type of the packet.
        found: libpcap_tools::LinkType,
    },
    /// The `--filter` expression cannot be used: libpcap refused it, or
    /// libpcap is missing.
    #[error("--filter: {0}")]
    Filter(libpcap_tools::FilterError),
    /// A filter expression, key file or option value is invalid.
    #[error("{0}")]
    Usage(String),
    /// A key file could not be read.
    #[error("key file '{}': {source}", path.display())]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A key file has an invalid line.
    #[error("key file '{}', line {line}: {reason}", path.display())]
    KeyFileSyntax {
        /// The key file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

impl From<libpcap_tools::FilterError> for Error {
    fn from(e: libpcap_tools::FilterError) -> Self {
        Error::Filter(e)
    }
}

impl Error {
    /// `true` for errors in the command line or its option values (the
    /// binary exits with status 2 for these).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::Usage(_)
                | Error::KeyFileSyntax { .. }
                | Error::Filter(
                    libpcap_tools::FilterError::Expression { .. }
                        | libpcap_tools::FilterError::UnsupportedLinkType { .. }
                )
        )
    }

    /// `true` when writing failed because the reader of standard output went
    /// away (a broken pipe), which the binary treats as success.
    pub fn is_broken_pipe(&self) -> bool {
        let io_err = match self {
            Error::Output {
                source: libpcap_tools::Error::Io { source, .. },
                ..
            }
            | Error::OutputIo { source, .. } => source,
            _ => return false,
        };
        io_err.kind() == io::ErrorKind::BrokenPipe
    }
}
