//! Live sources and system interfaces of PAL: the only crate of the
//! workspace allowed `unsafe` code, confined to [`sys`] (system calls)
//! and [`libpcap`] (calls into the C library) and documented block by
//! block.
//!
//! - [`afpacket`]: capture from a network interface with `AF_PACKET`
//!   sockets and TPACKET_V3 rings, several sockets in one kernel fanout
//!   group for several analysis workers (Linux).
//! - [`nfqueue`]: inline mode, packets queued by netfilter (`NFQUEUE`)
//!   read from a netlink socket per queue, each given a verdict (accept or
//!   drop).
//! - [`libpcap`]: capture filters in tcpdump syntax, compiled by
//!   libpcap's own `pcap_compile`, loaded at run time (the binaries run
//!   without libpcap; only a filter then needs it). The program is attached
//!   in the kernel for live capture ([`afpacket::open_with_filter`]) and
//!   run by `libpcap_tools::FilteredSource` for NFQUEUE and files.
//!
//! # Capture filters
//!
//! ```no_run
//! use libpcap_live::afpacket::{self, CaptureLimits, LiveConfig};
//! use libpcap_live::libpcap::Libpcap;
//! use libpcap_tools::{FilterCounters, FilteredSource, LinkType, PacketFilter, ReaderConfig};
//! use std::sync::Arc;
//!
//! let pcap = Arc::new(Libpcap::load()?); // FilterError::LibraryMissing names the package
//! // -i: the kernel runs the program; rejected frames never reach a ring
//! let prog = pcap.compile_for_interface("eth0", "tcp port 443")?;
//! let group = afpacket::open_with_filter(
//!     "eth0", &LiveConfig::default(), 2, CaptureLimits::default(), Some(&prog))?;
//! // files and NFQUEUE: the same expression, run in user space on each
//! // packet (compiled up front for Ethernet, then per link type met)
//! let filter = PacketFilter::new("tcp port 443", pcap.clone(), &[LinkType::ETHERNET])?;
//! let counters = FilterCounters::new();
//! let input = libpcap_tools::open_capture("in.pcapng".as_ref(), &ReaderConfig::default())?;
//! let source = FilteredSource::new(input, filter.clone(), counters.clone());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//! - [`limits`]: the `--count` / `--duration` limits shared by the
//!   sources of a capture.
//! - [`privs`]: the privilege drop once the sockets are open (user,
//!   capabilities, `no_new_privs`, Landlock), and which capability each
//!   source still needs.
//! - [`sys`]: the checked system-call wrappers (sockets, the ring mapping,
//!   thread priority, network namespaces).
//! - [`testing`]: network namespaces joined by a veth pair and a frame
//!   injector, for live tests (needs root; used by this workspace's tests).

#![allow(unsafe_code)] // system calls and the ring mapping; every block carries a SAFETY comment

pub mod afpacket;
pub mod libpcap;
pub mod limits;
pub mod nfqueue;
pub mod privs;
pub mod sys;
pub mod testing;
