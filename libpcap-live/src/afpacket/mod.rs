//! Live capture from a network interface with `AF_PACKET` sockets, each
//! with a TPACKET_V3 receive ring, several sockets joined in one kernel
//! fanout group (hash of the flow, IP fragments reassembled first) so that
//! each analysis worker reads its own socket. A capture filter
//! ([`open_with_filter`]) runs in the kernel, on every socket, from before
//! the first frame reaches a ring.
//!
//! ```no_run
//! use libpcap_live::afpacket::{open, CaptureLimits, LiveConfig};
//! use libpcap_tools::{PacketSource, SourceEvent};
//!
//! let group = open("eth0", &LiveConfig::default(), 2, CaptureLimits::default())?;
//! let handle = group.handle.clone();
//! for mut source in group.sources {
//!     std::thread::spawn(move || {
//!         while let Ok(ev) = source.next_event() {
//!             match ev {
//!                 SourceEvent::Packet(p) => println!("{} bytes", p.data.len()),
//!                 SourceEvent::Timeout { .. } => {}
//!                 SourceEvent::End => break,
//!             }
//!         }
//!     });
//! }
//! handle.stop(); // each source returns End at its next poll
//! # Ok::<(), libpcap_live::afpacket::LiveError>(())
//! ```

pub mod ring;

use crate::sys;
use libpcap_tools::bpf::BpfProgram;
use libpcap_tools::{LinkType, Packet, PacketSource, SourceEvent, SourceProgress, Timestamp};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Section `[live]` of the configuration: the geometry of each socket's
/// ring and how the capture behaves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LiveConfig {
    /// Bytes per ring block: a power of two, a multiple of the page size,
    /// at least 4096; also the largest packet that can be captured whole.
    pub block_size: u32,
    /// Blocks per ring (each socket has its own ring of
    /// `block_size * block_count` bytes).
    pub block_count: u32,
    /// Frame size of the ring request: a multiple of 16, at least 80, at
    /// most `block_size` (TPACKET_V3 packs packets of any size into blocks;
    /// the kernel only checks it).
    pub frame_size: u32,
    /// Milliseconds after which the kernel hands a partly filled block to
    /// the reader (`tp_retire_blk_tov`; 0: the kernel chooses from the link
    /// speed). Also the most a packet waits before it is analysed.
    pub block_timeout_ms: u32,
    /// Milliseconds a socket waits for a block before the source reports
    /// an idle tick (flows expire on the clock; stop requests are seen).
    pub poll_timeout_ms: u32,
    /// Put the interface in promiscuous mode for the capture (as tcpdump
    /// does unless `-p`).
    pub promiscuous: bool,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            block_size: 1 << 20,
            block_count: 8,
            frame_size: 2048,
            block_timeout_ms: 10,
            poll_timeout_ms: 100,
            promiscuous: true,
        }
    }
}

impl LiveConfig {
    /// The configuration section's name.
    pub const SECTION: &'static str = "live";

    /// Checks the values against the kernel's rules for TPACKET_V3 rings
    /// and our own limits, for pages of `page_size` bytes.
    ///
    /// # Errors
    /// [`LiveError::Config`] naming the key and the rule.
    pub fn validate(&self, page_size: usize) -> Result<(), LiveError> {
        let bad = |m: String| Err(LiveError::Config(m));
        let bs = self.block_size as usize;
        if !self.block_size.is_power_of_two() || bs < 4096 || !bs.is_multiple_of(page_size.max(1)) {
            return bad(format!(
                "[live] block_size = {}: must be a power of two, at least 4096 and a multiple of \
                 the page size ({page_size})",
                self.block_size
            ));
        }
        if self.block_size > 1 << 30 {
            return bad(format!(
                "[live] block_size = {}: at most 1 GiB",
                self.block_size
            ));
        }
        if self.block_count == 0 {
            return bad("[live] block_count = 0: at least one block is needed".to_string());
        }
        let total = u64::from(self.block_size) * u64::from(self.block_count);
        if total > 1 << 32 {
            return bad(format!(
                "[live] block_size * block_count = {total} bytes per socket: at most 4 GiB"
            ));
        }
        if !self.frame_size.is_multiple_of(16)
            || self.frame_size < 80
            || self.frame_size > self.block_size
        {
            return bad(format!(
                "[live] frame_size = {}: must be a multiple of 16, at least 80 and at most \
                 block_size ({})",
                self.frame_size, self.block_size
            ));
        }
        let frames = u64::from(self.block_size / self.frame_size) * u64::from(self.block_count);
        if frames > u64::from(u32::MAX) {
            return bad(format!(
                "[live] too many frames ({frames}): raise frame_size"
            ));
        }
        if self.block_timeout_ms > 60_000 {
            return bad(format!(
                "[live] block_timeout_ms = {}: at most 60000",
                self.block_timeout_ms
            ));
        }
        if self.poll_timeout_ms == 0 || self.poll_timeout_ms > 60_000 {
            return bad(format!(
                "[live] poll_timeout_ms = {}: between 1 and 60000",
                self.poll_timeout_ms
            ));
        }
        Ok(())
    }
}

/// Why a live capture could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// No interface of that name in this network namespace.
    #[error("no such interface '{0}' (see `ip link`)")]
    NoSuchInterface(String),
    /// The process may not open packet sockets.
    #[error(
        "cannot open an AF_PACKET socket: {0}; live capture needs root or the CAP_NET_RAW \
         capability (e.g. `setcap cap_net_raw+ep pcap-analyzer`)"
    )]
    Permission(io::Error),
    /// The interface's hardware type has no link type we decode.
    #[error(
        "interface '{interface}' has hardware type {arphrd} (ARPHRD), which live capture does not \
         support (Ethernet, loopback and raw IP interfaces are)"
    )]
    UnsupportedLinkType {
        /// The interface.
        interface: String,
        /// Its `ARPHRD_*` type.
        arphrd: u16,
    },
    /// A `[live]` setting is out of range.
    #[error("{0}")]
    Config(String),
    /// A system call failed.
    #[error("{what} on '{interface}': {source}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// The interface.
        interface: String,
        /// The OS error.
        source: io::Error,
    },
    /// A ring block held a bad value.
    #[error("ring of '{interface}': {source}")]
    Ring {
        /// The interface.
        interface: String,
        /// What was wrong.
        source: ring::RingError,
    },
}

/// The link type of frames read with `SOCK_RAW` from an interface of
/// hardware type `arphrd`, if we decode it.
pub fn linktype_of(arphrd: u16) -> Option<LinkType> {
    /// `ARPHRD_RAWIP` (raw IP interfaces of some modem drivers).
    const ARPHRD_RAWIP: u16 = 519;
    match arphrd {
        libc::ARPHRD_ETHER | libc::ARPHRD_LOOPBACK => Some(LinkType::ETHERNET),
        // tun devices and raw IP interfaces carry the IP packet only
        libc::ARPHRD_NONE | ARPHRD_RAWIP => Some(LinkType::RAW),
        _ => None,
    }
}

pub use crate::limits::CaptureLimits;
use crate::limits::{StopState, now};

/// Kernel counters summed over the sockets of a capture
/// (`PACKET_STATISTICS`, `struct tpacket_stats_v3`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelStats {
    /// Packets the kernel handed to the sockets, the dropped ones included.
    pub packets: u64,
    /// Packets dropped because a ring was full (the reader was too slow).
    pub drops: u64,
    /// Times a ring was frozen (full) and later resumed.
    pub freeze_count: u64,
}

/// What the sources of one capture share: the stop request, the limits,
/// the count of delivered packets, the kernel counters.
#[derive(Debug)]
struct Shared {
    interface: String,
    linktype: LinkType,
    sockets: usize,
    /// The stop request, the limits, the packets delivered.
    end: StopState,
    packets: AtomicU64,
    drops: AtomicU64,
    freezes: AtomicU64,
}

/// A handle on a running capture: stop it, read its kernel counters.
#[derive(Debug, Clone)]
pub struct CaptureHandle(Arc<Shared>);

impl CaptureHandle {
    /// Asks every source of the capture to end: each returns
    /// [`SourceEvent::End`] at its next block or poll timeout.
    pub fn stop(&self) {
        self.0.end.stop.store(true, Ordering::Relaxed);
    }

    /// The flag [`CaptureHandle::stop`] sets, to be set from elsewhere too
    /// (a signal handler).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.0.end.stop.clone()
    }

    /// The kernel counters read so far (each source reads its socket's at
    /// every poll timeout and when it ends).
    pub fn kernel_stats(&self) -> KernelStats {
        KernelStats {
            packets: self.0.packets.load(Ordering::Relaxed),
            drops: self.0.drops.load(Ordering::Relaxed),
            freeze_count: self.0.freezes.load(Ordering::Relaxed),
        }
    }

    /// Packets delivered by all sources.
    pub fn delivered(&self) -> u64 {
        self.0.end.delivered()
    }

    /// The interface captured.
    pub fn interface(&self) -> &str {
        &self.0.interface
    }

    /// The link type of its frames.
    pub fn linktype(&self) -> LinkType {
        self.0.linktype
    }

    /// Number of sockets (1, or the size of the fanout group).
    pub fn sockets(&self) -> usize {
        self.0.sockets
    }
}

impl libpcap_tools::CaptureControl for CaptureHandle {
    fn stop(&self) {
        CaptureHandle::stop(self);
    }

    fn counters(&self) -> libpcap_tools::CaptureCounters {
        let k = self.kernel_stats();
        libpcap_tools::CaptureCounters {
            kernel_packets: Some(k.packets),
            kernel_drops: Some(k.drops),
        }
    }
}

/// The sources of one capture (one per socket) and a handle on them.
#[derive(Debug)]
pub struct CaptureGroup {
    /// One source per socket, each to be read by its own thread.
    pub sources: Vec<AfPacketSource>,
    /// Stops the capture, reads its counters.
    pub handle: CaptureHandle,
}

/// One `AF_PACKET` socket and its TPACKET_V3 ring, as a
/// [`PacketSource`] (live: flow timeouts follow the wall clock).
///
/// Packets are read in place from the ring, except those whose 802.1Q tag
/// the kernel took out: the tag is put back (as libpcap does) in a copy
/// held in a buffer of at most `block_size + 4` bytes, reused. Memory does
/// not grow with the traffic.
#[derive(Debug)]
pub struct AfPacketSource {
    ring: sys::RxRing,
    fd: OwnedFd,
    shared: Arc<Shared>,
    name: String,
    /// Index of this socket in the group (the packets' `interface`).
    id: u32,
    /// The block being read, and where in it.
    current: Option<(usize, ring::Cursor)>,
    /// The next block to wait for.
    next_block: usize,
    poll_timeout_ms: i32,
    scratch: Vec<u8>,
    packets: u64,
    bytes: u64,
    ended: bool,
}

/// The capabilities a capture group still needs once open: none. Reading
/// the rings, the statistics and closing the sockets (ring unmapped,
/// promiscuous membership dropped) check no capability (see
/// [`crate::privs`] and the test that shows it).
pub const KEEP_AFTER_SETUP: &[crate::privs::Keep] = &[];

/// Opens a capture on `interface` with `sockets` sockets (at least 1; more
/// join one fanout group: mode hash, IP fragments reassembled before the
/// hash so that they reach the same socket, a group id unique in the
/// network namespace chosen by the kernel).
///
/// The sockets are created in the network namespace of the calling thread.
/// With several sockets, each drops everything until the whole group is
/// formed, so that no packet reaches two sockets while they join.
///
/// # Errors
/// [`LiveError::Permission`] without root or `CAP_NET_RAW`,
/// [`LiveError::NoSuchInterface`], [`LiveError::Config`] for bad ring
/// settings, [`LiveError::UnsupportedLinkType`], or the failing system call.
pub fn open(
    interface: &str,
    cfg: &LiveConfig,
    sockets: usize,
    limits: CaptureLimits,
) -> Result<CaptureGroup, LiveError> {
    open_with_filter(interface, cfg, sockets, limits, None)
}

/// As [`open`], with a capture filter attached in the kernel to every
/// socket: frames it rejects are never copied into a ring and are not
/// counted in [`CaptureHandle::kernel_stats`] (the kernel counts after the
/// filter).
///
/// `filter` is the program for this interface, from
/// [`Libpcap::compile_for_interface`](crate::libpcap::Libpcap::compile_for_interface)
/// (it tests VLAN tags through the kernel's ancillary data, since the
/// kernel takes the tag out of the frame before socket filters run). A
/// single socket gets it before it is bound; with several sockets, each
/// first drops everything until the fanout group is formed, and the
/// drop-all program is then replaced by `filter` in one step (a second
/// `SO_ATTACH_FILTER`), so no frame outside the filter ever reaches a
/// ring. A match keeps the whole frame (see [`sys::kernel_instructions`]).
///
/// # Errors
/// As [`open`]; [`LiveError::Os`] "attaching the capture filter" when the
/// kernel refuses the program.
pub fn open_with_filter(
    interface: &str,
    cfg: &LiveConfig,
    sockets: usize,
    limits: CaptureLimits,
    filter: Option<&BpfProgram>,
) -> Result<CaptureGroup, LiveError> {
    cfg.validate(sys::page_size())?;
    let os = |what: &'static str| {
        let interface = interface.to_string();
        move |source: io::Error| LiveError::Os {
            what,
            interface,
            source,
        }
    };
    // the socket first: without the right to open one, say so before anything
    let probe = sys::packet_socket().map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => LiveError::Permission(e),
        _ => os("socket(AF_PACKET)")(e),
    })?;
    if interface.is_empty() || interface.len() > 15 || interface.contains(['/', ' ', '\0']) {
        return Err(LiveError::NoSuchInterface(interface.to_string()));
    }
    let ifindex = sys::interface_index(interface).map_err(|e| match e.raw_os_error() {
        Some(libc::ENODEV | libc::ENXIO) => LiveError::NoSuchInterface(interface.to_string()),
        _ => os("if_nametoindex")(e),
    })?;
    let n = sockets.max(1);
    let fanout = n > 1;
    let mut fds = Vec::with_capacity(n);
    let mut rings = Vec::with_capacity(n);
    let mut group: Option<u16> = None;
    let mut linktype = None;
    let mut probe = Some(probe);
    for _ in 0..n {
        let fd = match probe.take() {
            Some(fd) => fd,
            None => sys::packet_socket().map_err(os("socket(AF_PACKET)"))?,
        };
        if fanout {
            sys::attach_drop_all_filter(&fd).map_err(os("attaching the start-up filter"))?;
        } else if let Some(f) = filter {
            sys::attach_filter(&fd, f).map_err(os("attaching the capture filter"))?;
        }
        sys::set_tpacket_v3(&fd).map_err(os("setsockopt(PACKET_VERSION, TPACKET_V3)"))?;
        let ring = sys::rx_ring(
            &fd,
            sys::RingRequest {
                block_size: cfg.block_size,
                block_count: cfg.block_count,
                frame_size: cfg.frame_size,
                block_timeout_ms: cfg.block_timeout_ms,
            },
        )
        .map_err(os("creating the TPACKET_V3 ring (PACKET_RX_RING, mmap)"))?;
        sys::bind_packet(&fd, ifindex).map_err(os("bind"))?;
        if linktype.is_none() {
            let hatype = sys::bound_hatype(&fd).map_err(os("getsockname"))?;
            linktype = Some(
                linktype_of(hatype).ok_or_else(|| LiveError::UnsupportedLinkType {
                    interface: interface.to_string(),
                    arphrd: hatype,
                })?,
            );
        }
        if cfg.promiscuous {
            sys::add_promiscuous(&fd, ifindex).map_err(os("setting promiscuous mode"))?;
        }
        if fanout {
            let mode = (libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG) as u16;
            match group {
                None => {
                    let unique = libc::PACKET_FANOUT_FLAG_UNIQUEID as u16;
                    sys::join_fanout(&fd, 0, mode | unique)
                        .map_err(os("creating the fanout group"))?;
                    group = Some(sys::fanout_id(&fd).map_err(os("reading the fanout group"))?);
                }
                Some(id) => {
                    sys::join_fanout(&fd, id, mode).map_err(os("joining the fanout group"))?
                }
            }
        }
        fds.push(fd);
        rings.push(ring);
    }
    for fd in &fds {
        if fanout {
            match filter {
                // replaces the drop-all program atomically
                Some(f) => sys::attach_filter(fd, f).map_err(os("attaching the capture filter"))?,
                None => sys::detach_filter(fd).map_err(os("detaching the start-up filter"))?,
            }
        }
        // counters start now
        let _ = sys::packet_stats(fd);
    }
    let shared = Arc::new(Shared {
        interface: interface.to_string(),
        linktype: linktype.unwrap_or(LinkType::ETHERNET),
        sockets: n,
        end: StopState::new(limits),
        packets: AtomicU64::new(0),
        drops: AtomicU64::new(0),
        freezes: AtomicU64::new(0),
    });
    let poll_timeout_ms = i32::try_from(cfg.poll_timeout_ms).unwrap_or(100);
    let sources = fds
        .into_iter()
        .zip(rings)
        .enumerate()
        .map(|(i, (fd, ring))| AfPacketSource {
            scratch: Vec::with_capacity(cfg.block_size as usize + 4),
            ring,
            fd,
            shared: shared.clone(),
            name: if n > 1 {
                format!("{interface}#{i}")
            } else {
                interface.to_string()
            },
            id: u32::try_from(i).unwrap_or(u32::MAX),
            current: None,
            next_block: 0,
            poll_timeout_ms,
            packets: 0,
            bytes: 0,
            ended: false,
        })
        .collect();
    if let Some(id) = group {
        log::debug!("{interface}: {n} sockets in fanout group {id}");
    }
    Ok(CaptureGroup {
        sources,
        handle: CaptureHandle(shared),
    })
}

impl AfPacketSource {
    /// Adds the socket's kernel counters since the last read to the
    /// capture's totals.
    fn read_stats(&self) {
        match sys::packet_stats(&self.fd) {
            Ok((p, d, f)) => {
                self.shared
                    .packets
                    .fetch_add(u64::from(p), Ordering::Relaxed);
                self.shared.drops.fetch_add(u64::from(d), Ordering::Relaxed);
                self.shared
                    .freezes
                    .fetch_add(u64::from(f), Ordering::Relaxed);
            }
            Err(e) => log::debug!("{}: PACKET_STATISTICS: {e}", self.name),
        }
    }

    /// `true` when the capture must end (stop asked, duration over).
    fn must_stop(&self) -> bool {
        self.shared.end.must_stop()
    }

    /// Ends the source: gives the current block back, reads the counters.
    fn end(&mut self) -> SourceEvent<'_> {
        if !self.ended {
            self.ended = true;
            if let Some((b, _)) = self.current.take() {
                self.ring.release(b);
            }
            self.read_stats();
        }
        SourceEvent::End
    }

    fn ring_error(&self, source: ring::RingError) -> libpcap_tools::Error {
        wrap(
            &self.name,
            LiveError::Ring {
                interface: self.shared.interface.clone(),
                source,
            },
        )
    }
}

/// A live error as a source error.
fn wrap(name: &str, e: LiveError) -> libpcap_tools::Error {
    libpcap_tools::Error::Source {
        context: format!("capture on '{name}'"),
        source: Box::new(e),
    }
}

impl PacketSource for AfPacketSource {
    fn next_event(&mut self) -> libpcap_tools::Result<SourceEvent<'_>> {
        if self.ended {
            return Ok(SourceEvent::End);
        }
        loop {
            // the next packet of the block being read
            if let Some((b, mut cursor)) = self.current {
                let Some(block) = self.ring.user_block(b) else {
                    // not ours any more: cannot happen, we give blocks back ourselves
                    self.current = None;
                    continue;
                };
                match ring::next(block, &mut cursor) {
                    Ok(Some(p)) => {
                        self.current = Some((b, cursor));
                        if !self.shared.end.take_packet() {
                            // another socket delivered the last one
                            return Ok(self.end());
                        }
                        return Ok(SourceEvent::Packet(self.packet(b, p)));
                    }
                    Ok(None) => {
                        self.ring.release(b);
                        self.current = None;
                    }
                    Err(e) => {
                        self.ring.release(b);
                        self.current = None;
                        return Err(self.ring_error(e));
                    }
                }
            }
            if self.must_stop() {
                return Ok(self.end());
            }
            // the next block, when the kernel has handed it over
            let b = self.next_block;
            if let Some(block) = self.ring.user_block(b) {
                self.next_block = (b + 1) % self.ring.blocks().max(1);
                match ring::start(block) {
                    Ok(c) => self.current = Some((b, c)),
                    Err(e) => {
                        self.ring.release(b);
                        return Err(self.ring_error(e));
                    }
                }
                continue;
            }
            match sys::poll_in(&self.fd, self.poll_timeout_ms) {
                Ok(sys::Readiness::Ready) => {}
                Ok(sys::Readiness::Timeout | sys::Readiness::Interrupted) => {
                    if self.ring.user_block(b).is_none() {
                        self.read_stats();
                        if self.must_stop() {
                            return Ok(self.end());
                        }
                        return Ok(SourceEvent::Timeout { now: now() });
                    }
                }
                Ok(sys::Readiness::Error(revents)) => {
                    let e = match sys::take_socket_error(&self.fd) {
                        Ok(Some(e)) => e,
                        Ok(None) => io::Error::other(format!("poll revents {revents:#x}")),
                        Err(e) => e,
                    };
                    return Err(wrap(
                        &self.name,
                        LiveError::Os {
                            what: "waiting for packets",
                            interface: self.shared.interface.clone(),
                            source: e,
                        },
                    ));
                }
                Err(e) => {
                    return Err(wrap(
                        &self.name,
                        LiveError::Os {
                            what: "poll",
                            interface: self.shared.interface.clone(),
                            source: e,
                        },
                    ));
                }
            }
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn progress(&self) -> SourceProgress {
        SourceProgress {
            packets: self.packets,
            bytes: self.bytes,
            total_bytes: None,
            dropped: Some(self.shared.drops.load(Ordering::Relaxed)),
        }
    }

    fn is_live(&self) -> bool {
        true
    }
}

impl Drop for AfPacketSource {
    /// A source dropped before it ended (its reader stopped reading it)
    /// still adds its last kernel counters to the capture's totals.
    fn drop(&mut self) {
        if !self.ended {
            self.read_stats();
        }
    }
}

impl AfPacketSource {
    /// The packet `p` of block `b`, with its VLAN tag put back.
    fn packet(&mut self, b: usize, p: ring::RingPacket) -> Packet<'_> {
        let index = self.packets;
        self.packets += 1;
        self.bytes += u64::from(p.len);
        let mut origlen = p.len;
        let block = self.ring.user_block(b).unwrap_or(&[]);
        let raw = block
            .get(p.data_offset..p.data_offset.saturating_add(p.snaplen))
            .unwrap_or(&[]);
        let data = match p.vlan {
            Some((tpid, tci)) if self.shared.linktype == LinkType::ETHERNET => {
                ring::reinsert_vlan(raw, tpid, tci, &mut self.scratch);
                origlen = origlen.saturating_add(4);
                &self.scratch[..]
            }
            _ => raw,
        };
        Packet {
            index,
            interface: self.id,
            linktype: self.shared.linktype,
            ts: Some(Timestamp::from_secs_nanos(
                i64::from(p.sec),
                i64::from(p.nsec),
            )),
            origlen,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        LiveConfig::default().validate(4096).unwrap();
        LiveConfig::default().validate(sys::page_size()).unwrap();
    }

    #[test]
    fn ring_settings_follow_the_kernel_rules() {
        let bad = |f: &dyn Fn(&mut LiveConfig)| {
            let mut c = LiveConfig::default();
            f(&mut c);
            let e = c.validate(4096).unwrap_err().to_string();
            assert!(e.starts_with("[live] "), "{e}");
            e
        };
        assert!(bad(&|c| c.block_size = 3 << 12).contains("power of two"));
        assert!(bad(&|c| c.block_size = 2048).contains("block_size"));
        assert!(bad(&|c| c.block_count = 0).contains("block_count"));
        assert!(bad(&|c| c.frame_size = 2050).contains("multiple of 16"));
        assert!(bad(&|c| c.frame_size = 64).contains("frame_size"));
        assert!(
            bad(&|c| {
                c.block_size = 4096;
                c.frame_size = 8192;
            })
            .contains("frame_size")
        );
        assert!(
            bad(&|c| {
                c.block_size = 1 << 30;
                c.block_count = 8;
            })
            .contains("4 GiB")
        );
        assert!(bad(&|c| c.poll_timeout_ms = 0).contains("poll_timeout_ms"));
        assert!(bad(&|c| c.block_timeout_ms = 100_000).contains("block_timeout_ms"));
        // a 64 KiB page size (some arm64/ppc64 kernels) refuses 4 KiB blocks
        let c = LiveConfig {
            block_size: 4096,
            ..LiveConfig::default()
        };
        assert!(c.validate(4096).is_ok());
        assert!(c.validate(65536).is_err());
    }

    #[test]
    fn ethernet_loopback_and_raw_ip_interfaces_are_supported() {
        assert_eq!(linktype_of(libc::ARPHRD_ETHER), Some(LinkType::ETHERNET));
        assert_eq!(linktype_of(libc::ARPHRD_LOOPBACK), Some(LinkType::ETHERNET));
        assert_eq!(linktype_of(libc::ARPHRD_NONE), Some(LinkType::RAW));
        assert_eq!(linktype_of(519), Some(LinkType::RAW));
        assert_eq!(linktype_of(libc::ARPHRD_IEEE80211), None);
        assert_eq!(linktype_of(libc::ARPHRD_INFINIBAND), None);
    }

    #[test]
    fn config_section_reads_keys_and_warns_about_unknown_ones() {
        let c =
            libpcap_tools::Config::from_toml("[live]\npromiscuous = false\nblock_sise = 4096\n")
                .unwrap();
        let v: LiveConfig = c.section(LiveConfig::SECTION).unwrap();
        assert!(!v.promiscuous);
        assert_eq!(v.block_size, LiveConfig::default().block_size);
        let w = c.take_warnings();
        assert!(w.iter().any(|w| w.contains("block_sise")), "{w:?}");
    }
}
