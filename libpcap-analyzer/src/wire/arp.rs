//! Address Resolution Protocol (RFC 826).

use std::net::Ipv4Addr;

use super::{DecodeResult, EtherType, Layer, be16, byte, ensure, read_array, sub_clamped, tail};

/// Zero-copy view of an ARP packet.
///
/// ```text
/// htype(2) ptype(2) hlen(1) plen(1) oper(2)
/// sender_hw(hlen) sender_proto(plen) target_hw(hlen) target_proto(plen)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpSlice<'a> {
    data: &'a [u8],
}

impl<'a> ArpSlice<'a> {
    /// Length of the fixed part.
    pub const FIXED_LEN: usize = 8;
    /// Operation: request.
    pub const OPER_REQUEST: u16 = 1;
    /// Operation: reply.
    pub const OPER_REPLY: u16 = 2;

    /// Decodes an ARP packet, addresses included.
    ///
    /// # Errors
    /// `Truncated` if the fixed part or the addresses do not fit.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Arp, data, 0, Self::FIXED_LEN)?;
        let s = ArpSlice { data };
        ensure(
            Layer::Arp,
            data,
            Self::FIXED_LEN,
            s.header_len() - Self::FIXED_LEN,
        )?;
        Ok(s)
    }

    /// Hardware type (bytes 0..2; 1 for Ethernet).
    pub fn htype(&self) -> u16 {
        be16(self.data, 0)
    }

    /// Protocol type (bytes 2..4; an EtherType).
    pub fn ptype(&self) -> EtherType {
        EtherType(be16(self.data, 2))
    }

    /// Hardware address length (byte 4).
    pub fn hlen(&self) -> u8 {
        byte(self.data, 4)
    }

    /// Protocol address length (byte 5).
    pub fn plen(&self) -> u8 {
        byte(self.data, 5)
    }

    /// Operation (bytes 6..8): 1 request, 2 reply.
    pub fn oper(&self) -> u16 {
        be16(self.data, 6)
    }

    fn field(&self, index: usize) -> &'a [u8] {
        let h = usize::from(self.hlen());
        let p = usize::from(self.plen());
        let (off, len) = match index {
            0 => (Self::FIXED_LEN, h),
            1 => (Self::FIXED_LEN + h, p),
            2 => (Self::FIXED_LEN + h + p, h),
            _ => (Self::FIXED_LEN + 2 * h + p, p),
        };
        sub_clamped(self.data, off, off + len)
    }

    /// Sender hardware address (`hlen` bytes).
    pub fn sender_hw(&self) -> &'a [u8] {
        self.field(0)
    }

    /// Sender protocol address (`plen` bytes).
    pub fn sender_proto(&self) -> &'a [u8] {
        self.field(1)
    }

    /// Target hardware address (`hlen` bytes).
    pub fn target_hw(&self) -> &'a [u8] {
        self.field(2)
    }

    /// Target protocol address (`plen` bytes).
    pub fn target_proto(&self) -> &'a [u8] {
        self.field(3)
    }

    fn ipv4(&self, f: &'a [u8]) -> Option<Ipv4Addr> {
        if self.ptype() == EtherType::IPV4 && self.plen() == 4 {
            read_array::<4>(f, 0).map(Ipv4Addr::from)
        } else {
            None
        }
    }

    /// Sender IPv4 address when ptype is 0x0800 and plen is 4.
    pub fn sender_ipv4(&self) -> Option<Ipv4Addr> {
        self.ipv4(self.sender_proto())
    }

    /// Target IPv4 address when ptype is 0x0800 and plen is 4.
    pub fn target_ipv4(&self) -> Option<Ipv4Addr> {
        self.ipv4(self.target_proto())
    }

    /// Length of the packet: 8 + 2 * (hlen + plen).
    pub fn header_len(&self) -> usize {
        Self::FIXED_LEN + 2 * (usize::from(self.hlen()) + usize::from(self.plen()))
    }

    /// Bytes after the ARP packet (usually Ethernet padding).
    pub fn payload(&self) -> &'a [u8] {
        tail(self.data, self.header_len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
    use pnet_packet::ethernet::EtherTypes;

    fn request() -> Vec<u8> {
        let mut buf = vec![0u8; 30];
        let mut p = MutableArpPacket::new(&mut buf).unwrap();
        p.set_hardware_type(ArpHardwareTypes::Ethernet);
        p.set_protocol_type(EtherTypes::Ipv4);
        p.set_hw_addr_len(6);
        p.set_proto_addr_len(4);
        p.set_operation(ArpOperations::Request);
        p.set_sender_hw_addr("00:01:02:03:04:05".parse().unwrap());
        p.set_sender_proto_addr(Ipv4Addr::new(192, 168, 0, 1));
        p.set_target_hw_addr("00:00:00:00:00:00".parse().unwrap());
        p.set_target_proto_addr(Ipv4Addr::new(192, 168, 0, 2));
        buf
    }

    #[test]
    fn parse_valid_against_pnet() {
        let buf = request();
        let a = ArpSlice::from_slice(&buf).unwrap();
        assert_eq!(a.htype(), 1);
        assert_eq!(a.ptype(), EtherType::IPV4);
        assert_eq!((a.hlen(), a.plen()), (6, 4));
        assert_eq!(a.oper(), ArpSlice::OPER_REQUEST);
        assert_eq!(a.sender_hw(), &[0, 1, 2, 3, 4, 5]);
        assert_eq!(a.sender_proto(), &[192, 168, 0, 1]);
        assert_eq!(a.target_hw(), &[0; 6]);
        assert_eq!(a.target_proto(), &[192, 168, 0, 2]);
        assert_eq!(a.sender_ipv4(), Some(Ipv4Addr::new(192, 168, 0, 1)));
        assert_eq!(a.target_ipv4(), Some(Ipv4Addr::new(192, 168, 0, 2)));
        assert_eq!(a.header_len(), 28);
        assert_eq!(a.payload(), &[0, 0]);
    }

    #[test]
    fn truncated_at_every_offset() {
        let buf = request();
        for n in 0..28 {
            assert!(ArpSlice::from_slice(&buf[..n]).unwrap_err().is_truncated());
        }
        assert!(ArpSlice::from_slice(&buf[..28]).is_ok());
    }

    #[test]
    fn unknown_values_roundtrip() {
        // htype 0xFFFF, ptype 0x1234, hlen 1, plen 2
        let buf = [
            0xFF, 0xFF, 0x12, 0x34, 1, 2, 0, 9, 0xA, 0xB, 0xC, 0xD, 0xE, 0xF,
        ];
        let a = ArpSlice::from_slice(&buf).unwrap();
        assert_eq!(a.ptype(), EtherType(0x1234));
        assert_eq!(a.oper(), 9);
        assert_eq!(a.sender_hw(), &[0xA]);
        assert_eq!(a.sender_proto(), &[0xB, 0xC]);
        assert_eq!(a.target_hw(), &[0xD]);
        assert_eq!(a.target_proto(), &[0xE, 0xF]);
        assert_eq!(a.sender_ipv4(), None);
        assert!(a.payload().is_empty());
    }
}
