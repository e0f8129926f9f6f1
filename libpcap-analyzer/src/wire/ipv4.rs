//! Internet Protocol version 4 header (RFC 791).

use std::net::Ipv4Addr;

use super::checksum::internet_checksum;
use super::{DecodeResult, Layer, be16, byte, ensure, invalid, read_array, sub_clamped};

/// Zero-copy view of an IPv4 packet.
///
/// ```text
/// ver(4) ihl(4) | tos | total_len(16) | identification(16) | flags(3) frag_off(13)
/// ttl | protocol | checksum(16) | src(32) | dst(32) | options ...
/// ```
///
/// Lax on lengths, for captures cut by the snap length and TSO/GRO packets:
/// a total length larger than the captured data is accepted (the payload is
/// what was captured and [`is_truncated`](Self::is_truncated) is `true`),
/// and a total length of 0 means "everything captured".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Slice<'a> {
    data: &'a [u8],
    header_len: usize,
}

impl<'a> Ipv4Slice<'a> {
    /// Length of a header without options.
    pub const MIN_HEADER_LEN: usize = 20;

    /// Decodes an IPv4 header.
    ///
    /// # Errors
    /// `Truncated` if the header (options included) does not fit;
    /// `Invalid` if the version is not 4, the IHL is below 5, or a non-zero
    /// total length is smaller than the header.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Ipv4, data, 0, 1)?;
        let v = byte(data, 0);
        if v >> 4 != 4 {
            return Err(invalid(Layer::Ipv4, "version", u32::from(v >> 4)));
        }
        ensure(Layer::Ipv4, data, 0, Self::MIN_HEADER_LEN)?;
        let ihl = v & 0x0F;
        if ihl < 5 {
            return Err(invalid(Layer::Ipv4, "ihl", u32::from(ihl)));
        }
        let header_len = usize::from(ihl) * 4;
        ensure(Layer::Ipv4, data, 0, header_len)?;
        let total = be16(data, 2);
        if total != 0 && usize::from(total) < header_len {
            return Err(invalid(Layer::Ipv4, "total length", u32::from(total)));
        }
        Ok(Ipv4Slice { data, header_len })
    }

    /// Version (high nibble of byte 0, always 4).
    pub fn version(&self) -> u8 {
        byte(self.data, 0) >> 4
    }

    /// Internet header length in 4-byte words (low nibble of byte 0).
    pub fn ihl(&self) -> u8 {
        byte(self.data, 0) & 0x0F
    }

    /// Type of service / DS field (byte 1).
    pub fn tos(&self) -> u8 {
        byte(self.data, 1)
    }

    /// Differentiated services code point (top 6 bits of the TOS).
    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    /// Explicit congestion notification (low 2 bits of the TOS).
    pub fn ecn(&self) -> u8 {
        self.tos() & 0x03
    }

    /// Total length (bytes 2..4, big-endian).
    pub fn total_len(&self) -> u16 {
        be16(self.data, 2)
    }

    /// Identification (bytes 4..6, big-endian).
    pub fn identification(&self) -> u16 {
        be16(self.data, 4)
    }

    /// The 3 flag bits (reserved, DF, MF) of bytes 6..8.
    pub fn flags(&self) -> u8 {
        (be16(self.data, 6) >> 13) as u8
    }

    /// Don't fragment flag.
    pub fn dont_fragment(&self) -> bool {
        be16(self.data, 6) & 0x4000 != 0
    }

    /// More fragments flag.
    pub fn more_fragments(&self) -> bool {
        be16(self.data, 6) & 0x2000 != 0
    }

    /// Fragment offset in 8-byte units (low 13 bits of bytes 6..8).
    pub fn fragment_offset(&self) -> u16 {
        be16(self.data, 6) & 0x1FFF
    }

    /// Fragment offset in bytes.
    pub fn fragment_offset_bytes(&self) -> u32 {
        u32::from(self.fragment_offset()) * 8
    }

    /// `true` if this packet is a fragment (MF set or non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.more_fragments() || self.fragment_offset() != 0
    }

    /// Time to live (byte 8).
    pub fn ttl(&self) -> u8 {
        byte(self.data, 8)
    }

    /// Protocol of the payload (byte 9), see `libpcap_tools::ipproto`.
    pub fn protocol(&self) -> u8 {
        byte(self.data, 9)
    }

    /// Header checksum (bytes 10..12, big-endian).
    pub fn checksum(&self) -> u16 {
        be16(self.data, 10)
    }

    /// Source address (bytes 12..16).
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array::<4>(self.data, 12).unwrap_or_default())
    }

    /// Destination address (bytes 16..20).
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array::<4>(self.data, 16).unwrap_or_default())
    }

    /// Options (bytes 20..ihl*4).
    pub fn options(&self) -> &'a [u8] {
        sub_clamped(self.data, Self::MIN_HEADER_LEN, self.header_len)
    }

    /// The raw header bytes, options included.
    pub fn header(&self) -> &'a [u8] {
        sub_clamped(self.data, 0, self.header_len)
    }

    /// Header length in bytes (ihl * 4).
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// `true` if the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        internet_checksum(self.header()) == 0
    }

    /// `true` when the total length exceeds the captured data.
    pub fn is_truncated(&self) -> bool {
        usize::from(self.total_len()) > self.data.len()
    }

    /// The bytes after the header, bounded by the total length; everything
    /// captured when the total length is 0 (TSO) or exceeds the capture.
    /// Ethernet padding after the total length is excluded.
    pub fn payload(&self) -> &'a [u8] {
        let end = match self.total_len() {
            0 => self.data.len(),
            n => usize::from(n),
        };
        sub_clamped(self.data, self.header_len, end)
    }
}

#[cfg(test)]
mod tests {
    use super::super::DecodeError;
    use super::*;
    use pnet_packet::Packet;
    use pnet_packet::ip::IpNextHeaderProtocols;
    use pnet_packet::ipv4::{Ipv4Packet, MutableIpv4Packet, checksum};

    /// 24-byte header (one 4-byte option: NOP NOP NOP EOL), 4-byte payload,
    /// then 2 bytes of Ethernet padding.
    fn packet() -> Vec<u8> {
        let mut buf = vec![0u8; 30];
        let mut p = MutableIpv4Packet::new(&mut buf).unwrap();
        p.set_version(4);
        p.set_header_length(6);
        p.set_dscp(10);
        p.set_ecn(1);
        p.set_total_length(28);
        p.set_identification(0xBEEF);
        p.set_flags(0b011);
        p.set_fragment_offset(100);
        p.set_ttl(64);
        p.set_next_level_protocol(IpNextHeaderProtocols::Udp);
        p.set_source(Ipv4Addr::new(10, 1, 2, 3));
        p.set_destination(Ipv4Addr::new(192, 0, 2, 9));
        p.set_payload(&[0xDE, 0xAD, 0xBE, 0xEF]);
        drop(p);
        // options written by hand: NOP NOP NOP EOL
        buf[20..24].copy_from_slice(&[1, 1, 1, 0]);
        let c = checksum(&Ipv4Packet::new(&buf).unwrap());
        buf[10..12].copy_from_slice(&c.to_be_bytes());
        buf
    }

    #[test]
    fn parse_valid_against_pnet() {
        let buf = packet();
        let ip = Ipv4Slice::from_slice(&buf).unwrap();
        let p = Ipv4Packet::new(&buf).unwrap();
        assert_eq!(ip.version(), 4);
        assert_eq!(ip.ihl(), 6);
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.dscp(), p.get_dscp());
        assert_eq!(ip.ecn(), p.get_ecn());
        assert_eq!(ip.tos(), (10 << 2) | 1);
        assert_eq!(ip.total_len(), 28);
        assert_eq!(ip.identification(), 0xBEEF);
        assert_eq!(ip.flags(), p.get_flags());
        assert!(ip.dont_fragment());
        assert!(ip.more_fragments());
        assert_eq!(ip.fragment_offset(), 100);
        assert_eq!(ip.fragment_offset_bytes(), 800);
        assert!(ip.is_fragment());
        assert_eq!(ip.ttl(), 64);
        assert_eq!(ip.protocol(), 17);
        assert_eq!(ip.checksum(), p.get_checksum());
        assert!(ip.verify_checksum());
        assert_eq!(ip.src(), Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(ip.dst(), p.get_destination());
        assert_eq!(ip.options(), &[1, 1, 1, 0]);
        assert_eq!(ip.header(), &buf[..24]);
        assert!(!ip.is_truncated());
        // padding excluded, same as pnet's payload
        assert_eq!(ip.payload(), &[0xDE, 0xAD, 0xBE, 0xEF]);
        assert_eq!(ip.payload(), p.payload());
    }

    #[test]
    fn bad_checksum_detected() {
        let mut buf = packet();
        buf[8] = 63;
        assert!(!Ipv4Slice::from_slice(&buf).unwrap().verify_checksum());
    }

    #[test]
    fn truncated_at_every_offset() {
        let buf = packet();
        for n in 0..24 {
            assert!(
                Ipv4Slice::from_slice(&buf[..n]).unwrap_err().is_truncated(),
                "{n}"
            );
        }
        for n in 24..28 {
            let ip = Ipv4Slice::from_slice(&buf[..n]).unwrap();
            assert!(ip.is_truncated());
            assert_eq!(ip.payload(), &buf[24..n]);
        }
        assert!(!Ipv4Slice::from_slice(&buf[..28]).unwrap().is_truncated());
    }

    #[test]
    fn bad_fields_are_invalid() {
        let mut b = packet();
        b[0] = 0x65;
        assert_eq!(
            Ipv4Slice::from_slice(&b),
            Err(DecodeError::Invalid {
                layer: Layer::Ipv4,
                field: "version",
                value: 6
            })
        );
        b[0] = 0x44;
        assert_eq!(
            Ipv4Slice::from_slice(&b),
            Err(DecodeError::Invalid {
                layer: Layer::Ipv4,
                field: "ihl",
                value: 4
            })
        );
        let mut b = packet();
        b[2] = 0;
        b[3] = 23;
        assert_eq!(
            Ipv4Slice::from_slice(&b),
            Err(DecodeError::Invalid {
                layer: Layer::Ipv4,
                field: "total length",
                value: 23
            })
        );
        // IHL 15 needs 60 bytes
        let mut b = packet();
        b[0] = 0x4F;
        assert_eq!(
            Ipv4Slice::from_slice(&b),
            Err(DecodeError::Truncated {
                layer: Layer::Ipv4,
                offset: 0,
                needed: 60,
                have: 30
            })
        );
    }

    #[test]
    fn total_len_zero_takes_everything() {
        let mut b = packet();
        b[2] = 0;
        b[3] = 0;
        let ip = Ipv4Slice::from_slice(&b).unwrap();
        assert!(!ip.is_truncated());
        assert_eq!(ip.payload(), &b[24..]);
    }

    #[test]
    fn unknown_values_roundtrip() {
        let mut b = packet();
        b[9] = 253;
        let ip = Ipv4Slice::from_slice(&b).unwrap();
        assert_eq!(ip.protocol(), 253);
        assert!(!ip.verify_checksum());
    }
}
