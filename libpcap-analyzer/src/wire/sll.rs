//! Linux cooked capture headers: LINKTYPE_LINUX_SLL (v1) and
//! LINKTYPE_LINUX_SLL2 (v2), <https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html>.

use super::{DecodeResult, EtherType, Layer, be16, be32, byte, ensure, sub_clamped, tail};

/// ARPHRD_ETHER: the protocol field is an EtherType.
pub const ARPHRD_ETHER: u16 = 1;
/// ARPHRD_LOOPBACK.
pub const ARPHRD_LOOPBACK: u16 = 772;
/// ARPHRD_IPGRE: the protocol is a GRE protocol type.
pub const ARPHRD_IPGRE: u16 = 778;
/// ARPHRD_NETLINK: the protocol is a netlink family.
pub const ARPHRD_NETLINK: u16 = 824;
/// ARPHRD_NONE.
pub const ARPHRD_NONE: u16 = 0xFFFE;

/// Packet type: to us.
pub const SLL_HOST: u16 = 0;
/// Packet type: broadcast.
pub const SLL_BROADCAST: u16 = 1;
/// Packet type: multicast.
pub const SLL_MULTICAST: u16 = 2;
/// Packet type: to someone else.
pub const SLL_OTHERHOST: u16 = 3;
/// Packet type: sent by us.
pub const SLL_OUTGOING: u16 = 4;

/// Zero-copy view of a Linux cooked v1 header (16 bytes).
///
/// ```text
/// packet_type(2) arphrd_type(2) addr_len(2) addr(8) protocol(2)
/// ```
///
/// The protocol is passed through whatever the ARPHRD type (for
/// ARPHRD_NETLINK it is a netlink family, not an EtherType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SllSlice<'a> {
    data: &'a [u8],
}

impl<'a> SllSlice<'a> {
    /// Length of the header.
    pub const HEADER_LEN: usize = 16;

    /// Decodes the 16-byte header.
    ///
    /// # Errors
    /// `Truncated` if fewer than 16 bytes are given.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Sll, data, 0, Self::HEADER_LEN)?;
        Ok(SllSlice { data })
    }

    /// Packet type (bytes 0..2): `SLL_HOST`, `SLL_OUTGOING`, ...
    pub fn packet_type(&self) -> u16 {
        be16(self.data, 0)
    }

    /// ARPHRD type of the interface (bytes 2..4).
    pub fn arphrd_type(&self) -> u16 {
        be16(self.data, 2)
    }

    /// Link-layer address length (bytes 4..6).
    pub fn addr_len(&self) -> u16 {
        be16(self.data, 4)
    }

    /// Link-layer address, `addr_len` bytes capped at 8.
    pub fn addr(&self) -> &'a [u8] {
        let n = usize::from(self.addr_len()).min(8);
        sub_clamped(self.data, 6, 6 + n)
    }

    /// Protocol (bytes 14..16), an EtherType for most ARPHRD types.
    pub fn protocol(&self) -> EtherType {
        EtherType(be16(self.data, 14))
    }

    /// Length of the header (16).
    pub fn header_len(&self) -> usize {
        Self::HEADER_LEN
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &'a [u8] {
        tail(self.data, Self::HEADER_LEN)
    }
}

/// Zero-copy view of a Linux cooked v2 header (20 bytes).
///
/// ```text
/// protocol(2) reserved(2) ifindex(4) arphrd_type(2) packet_type(1)
/// addr_len(1) addr(8)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sll2Slice<'a> {
    data: &'a [u8],
}

impl<'a> Sll2Slice<'a> {
    /// Length of the header.
    pub const HEADER_LEN: usize = 20;

    /// Decodes the 20-byte header.
    ///
    /// # Errors
    /// `Truncated` if fewer than 20 bytes are given.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Sll2, data, 0, Self::HEADER_LEN)?;
        Ok(Sll2Slice { data })
    }

    /// Protocol (bytes 0..2), an EtherType for most ARPHRD types.
    pub fn protocol(&self) -> EtherType {
        EtherType(be16(self.data, 0))
    }

    /// Reserved field (bytes 2..4).
    pub fn reserved(&self) -> u16 {
        be16(self.data, 2)
    }

    /// Interface index (bytes 4..8).
    pub fn ifindex(&self) -> u32 {
        be32(self.data, 4)
    }

    /// ARPHRD type of the interface (bytes 8..10).
    pub fn arphrd_type(&self) -> u16 {
        be16(self.data, 8)
    }

    /// Packet type (byte 10).
    pub fn packet_type(&self) -> u8 {
        byte(self.data, 10)
    }

    /// Link-layer address length (byte 11).
    pub fn addr_len(&self) -> u8 {
        byte(self.data, 11)
    }

    /// Link-layer address, `addr_len` bytes capped at 8.
    pub fn addr(&self) -> &'a [u8] {
        let n = usize::from(self.addr_len()).min(8);
        sub_clamped(self.data, 12, 12 + n)
    }

    /// Length of the header (20).
    pub fn header_len(&self) -> usize {
        Self::HEADER_LEN
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &'a [u8] {
        tail(self.data, Self::HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::Packet;
    use pnet_packet::ethernet::EtherTypes;
    use pnet_packet::sll::{MutableSLLPacket, SLLPacket};
    use pnet_packet::sll2::{MutableSLL2Packet, SLL2Packet};

    fn sll() -> Vec<u8> {
        let mut buf = vec![0u8; 18];
        let mut p = MutableSLLPacket::new(&mut buf).unwrap();
        p.set_packet_type(SLL_OUTGOING);
        p.set_link_layer_address_type(ARPHRD_ETHER);
        p.set_link_layer_address_len(6);
        p.set_link_layer_address(&[1, 2, 3, 4, 5, 6, 0, 0]);
        p.set_protocol(EtherTypes::Ipv4);
        p.set_payload(&[0x45, 0x00]);
        buf
    }

    fn sll2() -> Vec<u8> {
        let mut buf = vec![0u8; 22];
        let mut p = MutableSLL2Packet::new(&mut buf).unwrap();
        p.set_protocol_type(EtherTypes::Ipv6);
        p.set_interface_index(7);
        p.set_arphrd_type(ARPHRD_ETHER);
        p.set_packet_type(4);
        p.set_link_layer_address_length(6);
        p.set_link_layer_address(&[1, 2, 3, 4, 5, 6, 0, 0]);
        p.set_payload(&[0x60, 0x00]);
        buf
    }

    #[test]
    fn parse_valid_v1_against_pnet() {
        let buf = sll();
        let s = SllSlice::from_slice(&buf).unwrap();
        let p = SLLPacket::new(&buf).unwrap();
        assert_eq!(s.packet_type(), SLL_OUTGOING);
        assert_eq!(s.arphrd_type(), p.get_link_layer_address_type());
        assert_eq!(s.addr_len(), 6);
        assert_eq!(s.addr(), &[1, 2, 3, 4, 5, 6]);
        assert_eq!(s.protocol(), EtherType::IPV4);
        assert_eq!(s.header_len(), 16);
        assert_eq!(s.payload(), p.payload());
    }

    #[test]
    fn parse_valid_v2_against_pnet() {
        let buf = sll2();
        let s = Sll2Slice::from_slice(&buf).unwrap();
        let p = SLL2Packet::new(&buf).unwrap();
        assert_eq!(s.protocol(), EtherType::IPV6);
        assert_eq!(s.reserved(), 0);
        assert_eq!(s.ifindex(), 7);
        assert_eq!(s.arphrd_type(), ARPHRD_ETHER);
        assert_eq!(s.packet_type(), 4);
        assert_eq!(s.addr_len(), 6);
        assert_eq!(s.addr(), &[1, 2, 3, 4, 5, 6]);
        assert_eq!(s.header_len(), 20);
        assert_eq!(s.payload(), p.payload());
    }

    #[test]
    fn truncated_at_every_offset() {
        let b1 = sll();
        for n in 0..16 {
            assert!(SllSlice::from_slice(&b1[..n]).unwrap_err().is_truncated());
        }
        let b2 = sll2();
        for n in 0..20 {
            assert!(Sll2Slice::from_slice(&b2[..n]).unwrap_err().is_truncated());
        }
    }

    #[test]
    fn unknown_values_roundtrip() {
        // netlink: protocol is a netlink family, passed through; addr_len 200
        // is capped at 8
        let mut b = sll();
        b[2..4].copy_from_slice(&ARPHRD_NETLINK.to_be_bytes());
        b[4..6].copy_from_slice(&200u16.to_be_bytes());
        b[14..16].copy_from_slice(&[0, 0]);
        let s = SllSlice::from_slice(&b).unwrap();
        assert_eq!(s.arphrd_type(), ARPHRD_NETLINK);
        assert_eq!(s.protocol(), EtherType(0));
        assert_eq!(s.addr().len(), 8);
        let mut b = sll2();
        b[11] = 255;
        assert_eq!(Sll2Slice::from_slice(&b).unwrap().addr().len(), 8);
    }
}
