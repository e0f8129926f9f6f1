//! IEEE 802.1Q / 802.1ad VLAN tag (the 4 bytes after the TPID).

use super::{DecodeResult, EtherType, Layer, be16, ensure, tail};

/// Zero-copy view of a VLAN tag: TCI (PCP 3 bits, DEI 1 bit, VID 12 bits)
/// then the encapsulated EtherType. The TPID (0x8100, 0x88A8, ...) is the
/// EtherType of the previous header and is not part of this view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanSlice<'a> {
    data: &'a [u8],
}

impl<'a> VlanSlice<'a> {
    /// Length of the tag after the TPID.
    pub const HEADER_LEN: usize = 4;

    /// Decodes the 4-byte tag.
    ///
    /// # Errors
    /// `Truncated` if fewer than 4 bytes are given.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Vlan, data, 0, Self::HEADER_LEN)?;
        Ok(VlanSlice { data })
    }

    /// Tag control information (bytes 0..2, big-endian).
    pub fn tci(&self) -> u16 {
        be16(self.data, 0)
    }

    /// Priority code point (top 3 bits of the TCI).
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator (bit 12 of the TCI).
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier (low 12 bits of the TCI).
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0FFF
    }

    /// EtherType of the encapsulated frame (bytes 2..4, big-endian).
    pub fn ethertype(&self) -> EtherType {
        EtherType(be16(self.data, 2))
    }

    /// Length of the tag (4).
    pub fn header_len(&self) -> usize {
        Self::HEADER_LEN
    }

    /// The bytes after the tag.
    pub fn payload(&self) -> &'a [u8] {
        tail(self.data, Self::HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::Packet;
    use pnet_packet::ethernet::EtherTypes;
    use pnet_packet::vlan::{ClassOfService, MutableVlanPacket, VlanPacket};

    #[test]
    fn parse_valid_against_pnet() {
        let mut buf = [0u8; 6];
        {
            let mut p = MutableVlanPacket::new(&mut buf).unwrap();
            p.set_priority_code_point(ClassOfService::new(5));
            p.set_drop_eligible_indicator(1);
            p.set_vlan_identifier(0x123);
            p.set_ethertype(EtherTypes::Ipv6);
            p.set_payload(&[0x60, 0]);
        }
        let v = VlanSlice::from_slice(&buf).unwrap();
        let p = VlanPacket::new(&buf).unwrap();
        assert_eq!(v.pcp(), p.get_priority_code_point().0);
        assert_eq!(v.pcp(), 5);
        assert!(v.dei());
        assert_eq!(v.vid(), 0x123);
        assert_eq!(v.vid(), p.get_vlan_identifier());
        assert_eq!(v.ethertype(), EtherType::IPV6);
        assert_eq!(v.header_len(), 4);
        assert_eq!(v.payload(), p.payload());
    }

    #[test]
    fn truncated_at_every_offset() {
        let buf = [0x00, 0x64, 0x08, 0x00];
        for n in 0..4 {
            assert!(VlanSlice::from_slice(&buf[..n]).unwrap_err().is_truncated());
        }
        let v = VlanSlice::from_slice(&buf).unwrap();
        assert_eq!((v.pcp(), v.dei(), v.vid()), (0, false, 100));
        assert!(v.payload().is_empty());
    }

    #[test]
    fn unknown_values_roundtrip() {
        let buf = [0xFF, 0xFF, 0xAB, 0xCD];
        let v = VlanSlice::from_slice(&buf).unwrap();
        assert_eq!((v.pcp(), v.dei(), v.vid()), (7, true, 0xFFF));
        assert_eq!(v.ethertype(), EtherType(0xABCD));
    }
}
