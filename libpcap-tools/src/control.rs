//! Control of a running capture from another thread: the [`CaptureControl`]
//! trait that live sources implement, so that a caller (a capture session,
//! a signal handler) can end them and read their kernel counters without
//! knowing which kind of source they are.

/// What the kernel says about a live capture, summed over its sockets or
/// queues. `None` where the kind of capture has no such counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaptureCounters {
    /// Packets the kernel handed to the capture, the dropped ones included
    /// (AF_PACKET: those that passed the socket filter).
    pub kernel_packets: Option<u64>,
    /// Packets the kernel dropped because the capture did not keep up
    /// (AF_PACKET: ring full; NFQUEUE: queue full or socket full).
    pub kernel_drops: Option<u64>,
}

/// A running capture seen from outside the threads that read it.
///
/// Implemented by the live sources' handles (`libpcap_live::afpacket::
/// CaptureHandle`, `libpcap_live::nfqueue::NfqueueHandle`); file sources
/// need none, they end by themselves.
pub trait CaptureControl: Send + Sync + std::fmt::Debug {
    /// Asks every source of the capture to end: each returns
    /// [`SourceEvent::End`](crate::SourceEvent::End) at its next poll (live
    /// sources poll at least every few hundred milliseconds).
    fn stop(&self);

    /// The kernel counters so far.
    fn counters(&self) -> CaptureCounters;
}
