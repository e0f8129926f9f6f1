//! The [`PacketSource`] trait that files, AF_PACKET rings and NFQUEUE queues implement.

use crate::{Packet, Result, Timestamp};

/// What a source returns on each call to [`PacketSource::next_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceEvent<'a> {
    /// A packet, borrowed from the source until the next call.
    Packet(Packet<'a>),
    /// No packet arrived within the source's poll interval (live sources
    /// only). `now` is the wall-clock time, so that the caller can expire
    /// idle flows and check for a stop request.
    Timeout {
        /// Current time.
        now: Timestamp,
    },
    /// The input is exhausted (end of file, or the live source was stopped).
    End,
}

/// A packet whose bytes live in a reference-counted chunk, so that it can
/// cross threads without being copied (see [`PacketSource::next_shared`]).
#[derive(Debug, Clone, Copy)]
pub struct SharedPacket<'a> {
    /// See [`Packet::index`].
    pub index: u64,
    /// See [`Packet::interface`].
    pub interface: u32,
    /// See [`Packet::linktype`].
    pub linktype: crate::LinkType,
    /// See [`Packet::ts`].
    pub ts: Option<Timestamp>,
    /// See [`Packet::origlen`].
    pub origlen: u32,
    /// The chunk holding the packet, borrowed from the source: clone the
    /// `Arc` to keep it (once per chunk, not per packet: the reference count
    /// is shared with other threads).
    pub chunk: &'a std::sync::Arc<Vec<u8>>,
    /// Offset of the packet in the chunk.
    pub start: usize,
    /// Captured length.
    pub len: usize,
}

impl<'a> SharedPacket<'a> {
    /// The captured bytes.
    pub fn data(&self) -> &'a [u8] {
        self.chunk
            .get(self.start..self.start.saturating_add(self.len))
            .unwrap_or(&[])
    }

    /// Borrows it as a [`Packet`].
    pub fn as_packet(&self) -> Packet<'a> {
        Packet {
            index: self.index,
            interface: self.interface,
            linktype: self.linktype,
            ts: self.ts,
            origlen: self.origlen,
            data: self.data(),
        }
    }
}

/// What [`PacketSource::next_shared`] returns.
#[derive(Debug, Clone, Copy)]
pub enum SharedEvent<'a> {
    /// A packet in a shared chunk.
    Packet(SharedPacket<'a>),
    /// As [`SourceEvent::Timeout`].
    Timeout {
        /// Current time.
        now: Timestamp,
    },
    /// The input is exhausted.
    End,
}

/// What an inline source should do with a packet (NFQUEUE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Verdict {
    /// Let the packet through.
    #[default]
    Accept,
    /// Discard the packet.
    Drop,
}

impl Verdict {
    /// The stricter of two verdicts (`Drop` wins).
    pub fn strictest(self, other: Verdict) -> Verdict {
        if self == Verdict::Drop || other == Verdict::Drop {
            Verdict::Drop
        } else {
            Verdict::Accept
        }
    }
}

/// Progress of a source, for progress bars and summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceProgress {
    /// Packets delivered so far.
    pub packets: u64,
    /// Bytes of input consumed so far (compressed bytes for compressed files,
    /// where known; otherwise bytes of the decompressed stream).
    pub bytes: u64,
    /// Total size of the input in the same unit as `bytes`, when known.
    pub total_bytes: Option<u64>,
    /// Packets the source lost before they reached us (kernel drops of a live
    /// capture), when the source knows.
    pub dropped: Option<u64>,
}

/// A source of captured packets.
///
/// Implemented by the file readers of this crate and by the live sources of
/// `libpcap-live`. A source is driven by one thread at a time (`Send`, not
/// `Sync`); the analyzer runs either one source feeding a dispatcher, or one
/// source per worker when the kernel already balances packets by flow
/// (AF_PACKET fanout, NFQUEUE queue balancing).
pub trait PacketSource: Send {
    /// The next packet, a timeout (live sources) or the end of the input.
    ///
    /// # Errors
    /// An [`Error`](crate::Error) when the input is unreadable or corrupt.
    /// [`Error::Truncated`](crate::Error::Truncated) means that every complete
    /// packet was delivered before it; the source then returns
    /// [`SourceEvent::End`] if called again.
    fn next_event(&mut self) -> Result<SourceEvent<'_>>;

    /// A short human-readable name of the source (file path, interface, queue).
    fn name(&self) -> &str;

    /// Progress so far.
    fn progress(&self) -> SourceProgress;

    /// Problems that ended the input early but let every packet before them
    /// be read (a truncated or partly corrupt file).
    fn warnings(&self) -> &[crate::Error] {
        &[]
    }

    /// `true` for live sources: flow timeouts then follow the wall clock.
    fn is_live(&self) -> bool {
        false
    }

    /// `true` for sources that read into reference-counted chunks and can
    /// hand out [`SharedPacket`]s ([`PacketSource::next_shared`]). The
    /// answer does not change during the life of the source.
    fn can_share(&self) -> bool {
        false
    }

    /// The next packet in a shared chunk, for sources whose
    /// [`PacketSource::can_share`] is `true`; the others end at once.
    ///
    /// # Errors
    /// As [`PacketSource::next_event`].
    fn next_shared(&mut self) -> Result<SharedEvent<'_>> {
        Ok(SharedEvent::End)
    }

    /// `true` for inline sources (NFQUEUE): each packet waits in the kernel
    /// for a verdict ([`PacketSource::set_verdict`]) before it goes on. The
    /// answer does not change during the life of the source.
    fn is_inline(&self) -> bool {
        false
    }

    /// Gives the verdict for the packet of index `index`. Sources that are
    /// not inline ignore it.
    ///
    /// # Errors
    /// When the verdict could not be delivered to the kernel.
    fn set_verdict(&mut self, index: u64, verdict: Verdict) -> Result<()> {
        let _ = (index, verdict);
        Ok(())
    }
}

/// A boxed source is a source (so that decorators such as
/// [`FilteredSource`](crate::FilteredSource) can wrap the
/// `Box<dyn PacketSource>` of [`open_capture`](crate::open_capture)); every
/// method is forwarded.
impl<S: PacketSource + ?Sized> PacketSource for Box<S> {
    fn next_event(&mut self) -> Result<SourceEvent<'_>> {
        (**self).next_event()
    }

    fn name(&self) -> &str {
        (**self).name()
    }

    fn progress(&self) -> SourceProgress {
        (**self).progress()
    }

    fn warnings(&self) -> &[crate::Error] {
        (**self).warnings()
    }

    fn is_live(&self) -> bool {
        (**self).is_live()
    }

    fn can_share(&self) -> bool {
        (**self).can_share()
    }

    fn next_shared(&mut self) -> Result<SharedEvent<'_>> {
        (**self).next_shared()
    }

    fn is_inline(&self) -> bool {
        (**self).is_inline()
    }

    fn set_verdict(&mut self, index: u64, verdict: Verdict) -> Result<()> {
        (**self).set_verdict(index, verdict)
    }
}
