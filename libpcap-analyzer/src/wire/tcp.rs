//! Transmission Control Protocol header (RFC 9293 section 3.1; options
//! RFC 7323, RFC 2018; NS bit RFC 3540).

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign};

use super::{
    DecodeError, DecodeResult, Layer, be16, be32, byte, ensure, invalid, sub_clamped, tail,
};

/// TCP control bits (9 bits: NS, CWR, ECE, URG, ACK, PSH, RST, SYN, FIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x001);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x002);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x004);
    /// Push function.
    pub const PSH: TcpFlags = TcpFlags(0x008);
    /// Acknowledgment field significant.
    pub const ACK: TcpFlags = TcpFlags(0x010);
    /// Urgent pointer field significant.
    pub const URG: TcpFlags = TcpFlags(0x020);
    /// ECN-Echo.
    pub const ECE: TcpFlags = TcpFlags(0x040);
    /// Congestion window reduced.
    pub const CWR: TcpFlags = TcpFlags(0x080);
    /// ECN nonce sum (historic, RFC 3540), now AE (accurate ECN).
    pub const NS: TcpFlags = TcpFlags(0x100);

    /// Raw bits.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// `true` if every bit of `other` is set.
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `true` if any bit of `other` is set.
    pub fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// `true` if no bit is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl TcpFlags {
    /// One letter per flag, in the order F S R P A U E C N (SYN+ACK is
    /// "SA"; no flag gives ""), written in `buf`: the text of `Display`
    /// without an allocation.
    pub fn letters(self, buf: &mut [u8; 9]) -> &str {
        const LETTERS: &[u8; 9] = b"FSRPAUECN";
        let mut n = 0;
        for (bit, &letter) in LETTERS.iter().enumerate() {
            if self.0 & (1 << bit) != 0
                && let Some(slot) = buf.get_mut(n)
            {
                *slot = letter;
                n += 1;
            }
        }
        // ASCII letters: always whole
        std::str::from_utf8(buf.get(..n).unwrap_or_default()).unwrap_or_default()
    }
}

impl fmt::Display for TcpFlags {
    /// One letter per flag, in the order F S R P A U E C N (SYN+ACK is
    /// "SA"); no flag prints nothing ([`TcpFlags::letters`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.letters(&mut [0; 9]))
    }
}

/// A decoded TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// Maximum segment size (kind 2, length 4).
    Mss(u16),
    /// Window scale shift count (kind 3, length 3).
    WindowScale(u8),
    /// SACK permitted (kind 4, length 2).
    SackPermitted,
    /// SACK blocks (kind 5): raw pairs of 32-bit left/right edges.
    Sack(&'a [u8]),
    /// Timestamps (kind 8, length 10): TSval, TSecr.
    Timestamp(u32, u32),
    /// Any other option, or a known kind with an unexpected length.
    Other {
        /// Option kind.
        kind: u8,
        /// Option data (after kind and length).
        data: &'a [u8],
    },
}

impl TcpOption<'_> {
    /// Option kind: end of option list.
    pub const KIND_EOL: u8 = 0;
    /// Option kind: no-operation.
    pub const KIND_NOP: u8 = 1;
    /// Option kind: maximum segment size.
    pub const KIND_MSS: u8 = 2;
    /// Option kind: window scale.
    pub const KIND_WINDOW_SCALE: u8 = 3;
    /// Option kind: SACK permitted.
    pub const KIND_SACK_PERMITTED: u8 = 4;
    /// Option kind: SACK.
    pub const KIND_SACK: u8 = 5;
    /// Option kind: timestamps.
    pub const KIND_TIMESTAMP: u8 = 8;

    /// The SACK blocks as (left, right) edges; empty for other options.
    pub fn sack_blocks(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let data: &[u8] = match self {
            TcpOption::Sack(d) => d,
            _ => &[],
        };
        data.chunks_exact(8).map(|c| (be32(c, 0), be32(c, 4)))
    }
}

/// Iterator over TCP options; see [`TcpSlice::options_iter`].
///
/// Skips NOP, ends at EOL or at the end of the options, and ends early on a
/// malformed option (length below 2 or past the end); [`error`](Self::error)
/// then tells why.
#[derive(Debug, Clone)]
pub struct TcpOptionsIter<'a> {
    rest: &'a [u8],
    offset: usize,
    error: Option<DecodeError>,
}

impl<'a> TcpOptionsIter<'a> {
    /// Iterates over raw option bytes (the bytes after the 20-byte header).
    pub fn new(options: &'a [u8]) -> Self {
        TcpOptionsIter {
            rest: options,
            offset: 0,
            error: None,
        }
    }

    /// The error that ended the iteration early, if any. `offset` in a
    /// `Truncated` error is relative to the TCP header.
    pub fn error(&self) -> Option<&DecodeError> {
        self.error.as_ref()
    }

    fn fail(&mut self, e: DecodeError) -> Option<TcpOption<'a>> {
        self.error = Some(e);
        self.rest = &[];
        None
    }
}

impl<'a> Iterator for TcpOptionsIter<'a> {
    type Item = TcpOption<'a>;

    fn next(&mut self) -> Option<TcpOption<'a>> {
        loop {
            let (&kind, after_kind) = self.rest.split_first()?;
            match kind {
                TcpOption::KIND_EOL => {
                    self.rest = &[];
                    return None;
                }
                TcpOption::KIND_NOP => {
                    self.rest = after_kind;
                    self.offset += 1;
                    continue;
                }
                _ => {}
            }
            let Some(&len) = after_kind.first() else {
                return self.fail(DecodeError::Truncated {
                    layer: Layer::Tcp,
                    offset: 20 + self.offset,
                    needed: 2,
                    have: 1,
                });
            };
            let len = usize::from(len);
            if len < 2 {
                return self.fail(invalid(Layer::Tcp, "option length", len as u32));
            }
            let Some((opt, rest)) = self.rest.split_at_checked(len) else {
                let have = self.rest.len();
                return self.fail(DecodeError::Truncated {
                    layer: Layer::Tcp,
                    offset: 20 + self.offset,
                    needed: len,
                    have,
                });
            };
            self.rest = rest;
            self.offset += len;
            let data = tail(opt, 2);
            return Some(match (kind, len) {
                (TcpOption::KIND_MSS, 4) => TcpOption::Mss(be16(data, 0)),
                (TcpOption::KIND_WINDOW_SCALE, 3) => TcpOption::WindowScale(byte(data, 0)),
                (TcpOption::KIND_SACK_PERMITTED, 2) => TcpOption::SackPermitted,
                (TcpOption::KIND_SACK, _) if (len - 2) % 8 == 0 && len > 2 => TcpOption::Sack(data),
                (TcpOption::KIND_TIMESTAMP, 10) => {
                    TcpOption::Timestamp(be32(data, 0), be32(data, 4))
                }
                _ => TcpOption::Other { kind, data },
            });
        }
    }
}

/// Zero-copy view of a TCP segment.
///
/// ```text
/// src_port(16) dst_port(16) | seq(32) | ack(32)
/// data_offset(4) reserved(3) flags(9) window(16) | checksum(16) urgent(16)
/// options ... | payload ...
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSlice<'a> {
    data: &'a [u8],
    header_len: usize,
}

impl<'a> TcpSlice<'a> {
    /// Length of a header without options.
    pub const MIN_HEADER_LEN: usize = 20;

    /// Decodes a TCP header, options included.
    ///
    /// # Errors
    /// `Truncated` if the header (options included) does not fit;
    /// `Invalid` if the data offset is below 5.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Tcp, data, 0, Self::MIN_HEADER_LEN)?;
        let doff = byte(data, 12) >> 4;
        if doff < 5 {
            return Err(invalid(Layer::Tcp, "data offset", u32::from(doff)));
        }
        let header_len = usize::from(doff) * 4;
        ensure(Layer::Tcp, data, 0, header_len)?;
        Ok(TcpSlice { data, header_len })
    }

    /// Source port (bytes 0..2).
    pub fn src_port(&self) -> u16 {
        be16(self.data, 0)
    }

    /// Destination port (bytes 2..4).
    pub fn dst_port(&self) -> u16 {
        be16(self.data, 2)
    }

    /// Sequence number (bytes 4..8).
    pub fn seq(&self) -> u32 {
        be32(self.data, 4)
    }

    /// Acknowledgment number (bytes 8..12).
    pub fn ack(&self) -> u32 {
        be32(self.data, 8)
    }

    /// Data offset in 4-byte words (high nibble of byte 12).
    pub fn data_offset(&self) -> u8 {
        byte(self.data, 12) >> 4
    }

    /// Control bits (low 9 bits of bytes 12..14).
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(be16(self.data, 12) & 0x01FF)
    }

    /// Window (bytes 14..16), not scaled.
    pub fn window(&self) -> u16 {
        be16(self.data, 14)
    }

    /// Checksum (bytes 16..18).
    pub fn checksum(&self) -> u16 {
        be16(self.data, 16)
    }

    /// Urgent pointer (bytes 18..20).
    pub fn urgent_ptr(&self) -> u16 {
        be16(self.data, 18)
    }

    /// Raw options (bytes 20..data_offset*4).
    pub fn options(&self) -> &'a [u8] {
        sub_clamped(self.data, Self::MIN_HEADER_LEN, self.header_len)
    }

    /// Iterates over the decoded options.
    pub fn options_iter(&self) -> TcpOptionsIter<'a> {
        TcpOptionsIter::new(self.options())
    }

    /// The raw header bytes, options included.
    pub fn header(&self) -> &'a [u8] {
        sub_clamped(self.data, 0, self.header_len)
    }

    /// Header length in bytes (data_offset * 4).
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The bytes after the header (as given: the caller bounds the segment
    /// with the IP payload).
    pub fn payload(&self) -> &'a [u8] {
        tail(self.data, self.header_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::Packet;
    use pnet_packet::tcp::{MutableTcpPacket, TcpOption as PnetOpt, TcpPacket};

    /// SYN+ACK with MSS, SACK permitted, timestamps, NOP, window scale
    /// (20 bytes of options), 3 bytes of payload.
    fn segment() -> Vec<u8> {
        let mut buf = vec![0u8; 43];
        let mut p = MutableTcpPacket::new(&mut buf).unwrap();
        p.set_source(443);
        p.set_destination(51000);
        p.set_sequence(0x0102_0304);
        p.set_acknowledgement(0xA0B0_C0D0);
        p.set_data_offset(10);
        p.set_flags(0x012);
        p.set_window(65535);
        p.set_checksum(0xBEEF);
        p.set_urgent_ptr(7);
        p.set_options(&[
            PnetOpt::mss(1460),
            PnetOpt::sack_perm(),
            PnetOpt::timestamp(11, 22),
            PnetOpt::nop(),
            PnetOpt::wscale(7),
        ]);
        p.set_payload(b"abc");
        buf
    }

    #[test]
    fn parse_valid_against_pnet() {
        let buf = segment();
        let t = TcpSlice::from_slice(&buf).unwrap();
        let p = TcpPacket::new(&buf).unwrap();
        assert_eq!(t.src_port(), 443);
        assert_eq!(t.dst_port(), 51000);
        assert_eq!(t.seq(), 0x0102_0304);
        assert_eq!(t.ack(), 0xA0B0_C0D0);
        assert_eq!(t.data_offset(), 10);
        assert_eq!(t.header_len(), 40);
        assert_eq!(t.flags(), TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(t.flags().to_string(), "SA");
        assert_eq!(t.window(), 65535);
        assert_eq!(t.checksum(), 0xBEEF);
        assert_eq!(t.urgent_ptr(), 7);
        assert_eq!(t.options().len(), 20);
        assert_eq!(t.options(), &buf[20..40]);
        assert_eq!(t.header(), &buf[..40]);
        assert_eq!(t.payload(), p.payload());
        let opts: Vec<_> = t.options_iter().collect();
        assert_eq!(
            opts,
            vec![
                TcpOption::Mss(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamp(11, 22),
                TcpOption::WindowScale(7),
            ]
        );
        let mut it = t.options_iter();
        assert_eq!(it.by_ref().count(), 4);
        assert!(it.error().is_none());
    }

    #[test]
    fn flags_display_and_ops() {
        let all = TcpFlags(0x1FF);
        assert_eq!(all.to_string(), "FSRPAUECN");
        assert_eq!(TcpFlags::default().to_string(), "");
        assert!(all.contains(TcpFlags::FIN | TcpFlags::NS));
        assert!(!TcpFlags::SYN.intersects(TcpFlags::ACK));
        let mut f = TcpFlags::PSH;
        f |= TcpFlags::ACK;
        assert_eq!((f & TcpFlags::ACK), TcpFlags::ACK);
        assert_eq!(f.bits(), 0x18);
        assert!(TcpFlags(0).is_empty());
    }

    #[test]
    fn sack_blocks() {
        let opts = [5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4];
        let o: Vec<_> = TcpOptionsIter::new(&opts).collect();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].sack_blocks().collect::<Vec<_>>(), vec![(1, 2), (3, 4)]);
        assert_eq!(TcpOption::Mss(1).sack_blocks().count(), 0);
    }

    #[test]
    fn bad_options_stop_iteration() {
        // MSS with length 3: passed through as Other
        let o: Vec<_> = TcpOptionsIter::new(&[2, 3, 5]).collect();
        assert_eq!(
            o,
            vec![TcpOption::Other {
                kind: 2,
                data: &[5]
            }]
        );
        // length 0: error, iteration ends
        let mut it = TcpOptionsIter::new(&[1, 30, 0, 2, 4, 5, 0xb4]);
        assert_eq!(it.next(), None);
        assert!(matches!(it.error(), Some(DecodeError::Invalid { .. })));
        // length past the end
        let mut it = TcpOptionsIter::new(&[8, 10, 0, 0]);
        assert_eq!(it.next(), None);
        assert_eq!(
            it.error(),
            Some(&DecodeError::Truncated {
                layer: Layer::Tcp,
                offset: 20,
                needed: 10,
                have: 4
            })
        );
        // kind without length
        let mut it = TcpOptionsIter::new(&[1, 1, 3]);
        assert_eq!(it.next(), None);
        assert!(it.error().unwrap().is_truncated());
        // EOL ends the list
        assert_eq!(TcpOptionsIter::new(&[0, 2, 4, 5, 0xb4]).count(), 0);
    }

    #[test]
    fn truncated_at_every_offset() {
        let buf = segment();
        for n in 0..40 {
            assert!(
                TcpSlice::from_slice(&buf[..n]).unwrap_err().is_truncated(),
                "{n}"
            );
        }
        assert!(
            TcpSlice::from_slice(&buf[..40])
                .unwrap()
                .payload()
                .is_empty()
        );
    }

    #[test]
    fn data_offset_below_5_is_invalid() {
        let mut buf = segment();
        buf[12] = 0x40;
        assert_eq!(
            TcpSlice::from_slice(&buf),
            Err(DecodeError::Invalid {
                layer: Layer::Tcp,
                field: "data offset",
                value: 4
            })
        );
    }

    #[test]
    fn unknown_values_roundtrip() {
        let opts = [254, 4, 0xAB, 0xCD];
        let o: Vec<_> = TcpOptionsIter::new(&opts).collect();
        assert_eq!(
            o,
            vec![TcpOption::Other {
                kind: 254,
                data: &[0xAB, 0xCD]
            }]
        );
    }
}
