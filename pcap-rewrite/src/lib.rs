//! Convert, re-frame, filter and split pcap/pcapng captures.
//!
//! The library behind the `pcap-rewrite` binary. [`rewrite`] reads a capture
//! with [`libpcap_tools::CaptureReader`], passes every packet through
//! [`convert::Converter`] (tunnel decapsulation, link-type conversion, VLAN
//! removal, checksum fixing), decides on it with a [`filter::FilterSet`]
//! (fragments follow their datagram through [`frag::FragResolver`]) and
//! writes it with [`output::Outputs`] (one file, or one per flow or key).
//! It returns a [`Summary`] of what was read, written, dropped and skipped.
//!
//! ```
//! use libpcap_tools::{LinkType, Packet, PcapWriter, PcapWriterOptions, Timestamp};
//! use pcap_rewrite::{Options, filter::{FilterSet, Rule}, rewrite};
//! let dir = tempfile::tempdir()?;
//! let input = dir.path().join("in.pcap");
//! let mut w = PcapWriter::new(std::fs::File::create(&input)?, LinkType::RAW,
//!                             PcapWriterOptions::default())?;
//! for (i, last) in [1u8, 2].into_iter().enumerate() {
//!     // IPv4 header only: 10.0.0.x -> 10.0.0.9, protocol 17
//!     let ip = [0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, last, 10, 0, 0, 9];
//!     w.write_packet(&Packet { index: i as u64, interface: 0, linktype: LinkType::RAW,
//!         ts: Some(Timestamp::from_secs_nanos(1, 0)), origlen: 20, data: &ip })?;
//! }
//! w.finish()?;
//! let opts = Options {
//!     filter: FilterSet { keep: vec![Rule::parse("src=10.0.0.2")?], ..FilterSet::default() },
//!     ..Options::default()
//! };
//! let s = rewrite(&input, &dir.path().join("out.pcap"), &opts)?;
//! assert_eq!((s.packets_read, s.packets_written, s.dropped_by_filter), (2, 1, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod convert;
mod error;
pub mod filter;
pub mod frag;
pub mod key;
pub mod output;
mod prefix;
mod rewrite;

pub use error::{Error, Result};
pub use rewrite::{Options, Summary, check_output, protected_inputs, rewrite, rewrite_reader};
