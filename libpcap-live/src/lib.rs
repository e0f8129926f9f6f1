//! Live sources and system interfaces of PAL: the only crate of the
//! workspace allowed `unsafe` code, confined to [`sys`] and documented
//! block by block.
//!
//! - [`afpacket`]: capture from a network interface with `AF_PACKET`
//!   sockets and TPACKET_V3 rings, several sockets in one kernel fanout
//!   group for several analysis workers (Linux).
//! - [`nfqueue`]: inline mode, packets queued by netfilter (`NFQUEUE`)
//!   read from a netlink socket per queue, each given a verdict (accept or
//!   drop).
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
pub mod limits;
pub mod nfqueue;
pub mod privs;
pub mod sys;
pub mod testing;
