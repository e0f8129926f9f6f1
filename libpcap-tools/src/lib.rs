//! Capture sources for PAL: pcap and pcapng readers, compressed input,
//! packets, flow keys, the configuration and the [`PacketSource`] trait.
//!
//! - [`CaptureReader`] reads classic pcap (both byte orders, µs/ns, the
//!   "modified" format) and pcapng (sections, interfaces, EPB/SPB/PB, other
//!   blocks offered to a callback), plain or gzip/xz/lz4/zstd/bzip2-compressed,
//!   from a path or standard input (`-`); packets are borrowed from its
//!   buffer without copying. See the [`reader`](CaptureReader) docs for the
//!   decisions on damaged input.
//! - [`PcapWriter`] and [`PcapNgWriter`] write packets back; [`outfile`]
//!   keeps outputs from overwriting inputs and writes them atomically;
//!   [`synth`] builds small captures in memory for tests and benches.
//! - Capture filters in tcpdump syntax: [`bpf`] checks and runs classic BPF
//!   programs (libpcap's `bpf_filter` semantics, in safe Rust);
//!   [`FilterCompiler`] is the seam to the compiler (libpcap's own
//!   `pcap_compile`, loaded at run time by `libpcap-live`);
//!   [`PacketFilter`] compiles one expression per link type as packets
//!   arrive; [`FilteredSource`] wraps any [`PacketSource`] and hands on only
//!   the matching packets (accepting the others unanalysed on inline
//!   sources), counting into shared [`FilterCounters`].
//!
//! ```
//! use libpcap_tools::{LinkType, Packet, Timestamp};
//! let data = [0u8; 14];
//! let p = Packet { index: 0, interface: 0, linktype: LinkType::ETHERNET,
//!                  ts: Some(Timestamp::from_secs_nanos(1, 5)), origlen: 60, data: &data };
//! assert!(p.is_truncated());
//! ```

#![forbid(unsafe_code)]

pub mod bpf;
mod chunked;
mod config;
pub mod conn;
mod control;
mod error;
pub mod filter;
mod flow;
mod lenient;
mod linktype;
pub mod outfile;
mod packet;
mod reader;
mod source;
pub mod synth;
mod writer;

pub use bpf::{BpfInsn, BpfProgram, ProgramError};
pub use chunked::ChunkedPcapReader;
pub use config::{Config, ReaderConfig};
pub use conn::{ConnSide, ConnTrack, EndpointState, Segment};
pub use control::{CaptureControl, CaptureCounters};
pub use error::{Error, Result, error_text};
pub use filter::{
    FilterCompiler, FilterCounters, FilterCounts, FilterError, FilterOutcome, FilteredSource,
    MAX_LINKTYPES, PacketFilter,
};
pub use flow::{
    Direction, DirectionStats, FiveTuple, Flow, FlowContext, FlowId, ThreeTuple, ip_bits, ipproto,
};
pub use lenient::{LenientSource, open_capture};
pub use linktype::LinkType;
pub use packet::{OwnedPacket, Packet, Timestamp};
pub use reader::{
    BlockCallback, BlockInfo, CaptureFormat, CaptureReader, Compression, Endianness, InterfaceInfo,
    pcapng_timestamp,
};
pub use source::{PacketSource, SharedEvent, SharedPacket, SourceEvent, SourceProgress, Verdict};
pub use writer::{InterfaceSpec, PcapNgWriter, PcapWriter, PcapWriterOptions};
