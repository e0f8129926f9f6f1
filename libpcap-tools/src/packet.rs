//! Captured packets and their timestamps.

use crate::LinkType;
use std::fmt;

/// A point in time, in nanoseconds since the Unix epoch (negative before 1970).
///
/// Every reader normalises its timestamps to this type, whatever the resolution
/// of the capture (microseconds, nanoseconds, pcapng `if_tsresol` powers of 10
/// or of 2) and after applying pcapng `if_tsoffset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Nanoseconds in one second.
    pub const NANOS_PER_SEC: i64 = 1_000_000_000;

    /// A timestamp from seconds and nanoseconds; saturates instead of overflowing.
    pub fn from_secs_nanos(secs: i64, nanos: i64) -> Self {
        Timestamp(
            secs.saturating_mul(Self::NANOS_PER_SEC)
                .saturating_add(nanos),
        )
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (rounded towards negative infinity).
    pub fn secs(self) -> i64 {
        self.0.div_euclid(Self::NANOS_PER_SEC)
    }

    /// Nanoseconds within the second, always in `0..1_000_000_000`.
    pub fn subsec_nanos(self) -> u32 {
        // rem_euclid of a positive divisor is in 0..1e9, which fits a u32
        self.0.rem_euclid(Self::NANOS_PER_SEC) as u32
    }

    /// Milliseconds since the epoch, rounded towards negative infinity.
    pub fn as_millis(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// Signed difference `self - earlier` in nanoseconds (saturating).
    pub fn nanos_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}", self.secs(), self.subsec_nanos())
    }
}

/// A captured packet, borrowed from the source's buffer.
///
/// The data is valid until the next call to the source; to keep a packet
/// longer, or to hand it to another thread, use [`Packet::to_owned`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Index of the packet in its input, starting at 0 (packet records only:
    /// other pcapng blocks are not counted).
    pub index: u64,
    /// Interface id: the pcapng interface within its section (0 for classic
    /// pcap), or the queue / ring number of a live source.
    pub interface: u32,
    /// Link-layer type of `data`.
    pub linktype: LinkType,
    /// Capture time, or `None` where the format stores none (pcapng Simple
    /// Packet Blocks).
    pub ts: Option<Timestamp>,
    /// Original length of the packet on the wire.
    pub origlen: u32,
    /// The captured bytes (`data.len()` is the captured length, which may be
    /// less than `origlen` when the capture was snaplen-truncated).
    pub data: &'a [u8],
}

impl Packet<'static> {
    /// A packet with no bytes (index `u64::MAX`, link type `u32::MAX`) at
    /// time `ts`: what plugins are handed for events that no captured frame
    /// carries (stream data flushed when a flow ends, a datagram given up),
    /// and a placeholder in tests.
    pub fn pseudo(ts: Option<Timestamp>) -> Packet<'static> {
        Packet {
            index: u64::MAX,
            interface: 0,
            linktype: LinkType(u32::MAX),
            ts,
            origlen: 0,
            data: &[],
        }
    }
}

impl Packet<'_> {
    /// Captured length (`data.len()`), saturated to `u32`.
    pub fn caplen(&self) -> u32 {
        u32::try_from(self.data.len()).unwrap_or(u32::MAX)
    }

    /// `true` when fewer bytes were captured than were on the wire.
    pub fn is_truncated(&self) -> bool {
        (self.data.len() as u64) < u64::from(self.origlen)
    }

    /// Copies the packet into an owned value.
    pub fn to_owned(&self) -> OwnedPacket {
        OwnedPacket {
            index: self.index,
            interface: self.interface,
            linktype: self.linktype,
            ts: self.ts,
            origlen: self.origlen,
            data: self.data.to_vec(),
        }
    }
}

/// A captured packet that owns its bytes (see [`Packet`] for the fields).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnedPacket {
    /// See [`Packet::index`].
    pub index: u64,
    /// See [`Packet::interface`].
    pub interface: u32,
    /// See [`Packet::linktype`].
    pub linktype: LinkType,
    /// See [`Packet::ts`].
    pub ts: Option<Timestamp>,
    /// See [`Packet::origlen`].
    pub origlen: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
}

impl OwnedPacket {
    /// Borrows this packet as a [`Packet`].
    pub fn as_packet(&self) -> Packet<'_> {
        Packet {
            index: self.index,
            interface: self.interface,
            linktype: self.linktype,
            ts: self.ts,
            origlen: self.origlen,
            data: &self.data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_splits_negative_times_towards_minus_infinity() {
        let t = Timestamp(-1);
        assert_eq!(t.secs(), -1);
        assert_eq!(t.subsec_nanos(), 999_999_999);
        assert_eq!(t.as_millis(), -1);
        assert_eq!(t.to_string(), "-1.999999999");
    }

    #[test]
    fn timestamp_millis_truncate() {
        let t = Timestamp::from_secs_nanos(1_672_060_820, 555_999_999);
        assert_eq!(t.as_millis(), 1_672_060_820_555);
    }

    #[test]
    fn packet_truncation_flag() {
        let d = [0u8; 10];
        let p = Packet {
            index: 0,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: None,
            origlen: 60,
            data: &d,
        };
        assert!(p.is_truncated());
        assert_eq!(p.caplen(), 10);
        assert_eq!(p.to_owned().as_packet(), p);
    }
}
