//! Virtual eXtensible Local Area Network (RFC 7348), with the VXLAN-GPE
//! next protocol (draft-ietf-nvo3-vxlan-gpe).

use super::{DecodeResult, Layer, be24, byte, ensure, tail};

/// Zero-copy view of a VXLAN header.
///
/// ```text
/// flags(8: R R R R I P R R) reserved(16) next_protocol(8, GPE)
/// vni(24) reserved(8)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanSlice<'a> {
    data: &'a [u8],
}

impl<'a> VxlanSlice<'a> {
    /// Length of the header.
    pub const HEADER_LEN: usize = 8;
    /// I flag: the VNI is valid.
    pub const FLAG_I: u8 = 0x08;
    /// P flag (VXLAN-GPE): the next protocol field is present.
    pub const FLAG_P: u8 = 0x04;
    /// GPE next protocol: IPv4.
    pub const GPE_IPV4: u8 = 1;
    /// GPE next protocol: IPv6.
    pub const GPE_IPV6: u8 = 2;
    /// GPE next protocol: Ethernet.
    pub const GPE_ETHERNET: u8 = 3;
    /// GPE next protocol: NSH.
    pub const GPE_NSH: u8 = 4;

    /// Decodes the 8-byte header. Flags are not checked.
    ///
    /// # Errors
    /// `Truncated` if fewer than 8 bytes are given.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Vxlan, data, 0, Self::HEADER_LEN)?;
        Ok(VxlanSlice { data })
    }

    /// Flags (byte 0).
    pub fn flags(&self) -> u8 {
        byte(self.data, 0)
    }

    /// VXLAN network identifier (bytes 4..7) when the I flag is set.
    pub fn vni(&self) -> Option<u32> {
        (self.flags() & Self::FLAG_I != 0).then(|| be24(self.data, 4))
    }

    /// VXLAN-GPE next protocol (byte 3) when the P flag is set; `None` for
    /// plain VXLAN, whose payload is an Ethernet frame.
    pub fn gpe_next_protocol(&self) -> Option<u8> {
        (self.flags() & Self::FLAG_P != 0).then(|| byte(self.data, 3))
    }

    /// Length of the header (8).
    pub fn header_len(&self) -> usize {
        Self::HEADER_LEN
    }

    /// The bytes after the header (an Ethernet frame for plain VXLAN).
    pub fn payload(&self) -> &'a [u8] {
        tail(self.data, Self::HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::Packet;
    use pnet_packet::vxlan::{MutableVxlanPacket, VxlanPacket};

    #[test]
    fn parse_valid_against_pnet() {
        let mut buf = [0u8; 10];
        {
            let mut p = MutableVxlanPacket::new(&mut buf).unwrap();
            p.set_flags(0x08);
            p.set_vni(0x123456);
            p.set_payload(&[0xAA, 0xBB]);
        }
        let v = VxlanSlice::from_slice(&buf).unwrap();
        let p = VxlanPacket::new(&buf).unwrap();
        assert_eq!(v.flags(), 0x08);
        assert_eq!(v.vni(), Some(p.get_vni()));
        assert_eq!(v.vni(), Some(0x123456));
        assert_eq!(v.gpe_next_protocol(), None);
        assert_eq!(v.header_len(), 8);
        assert_eq!(v.payload(), p.payload());
    }

    #[test]
    fn gpe_and_no_vni() {
        let buf = [0x0C, 0, 0, 0x01, 0, 0, 5, 0, 0x45];
        let v = VxlanSlice::from_slice(&buf).unwrap();
        assert_eq!(v.vni(), Some(5));
        assert_eq!(v.gpe_next_protocol(), Some(VxlanSlice::GPE_IPV4));
        let buf = [0, 0, 0, 0, 0, 0, 5, 0];
        assert_eq!(VxlanSlice::from_slice(&buf).unwrap().vni(), None);
    }

    #[test]
    fn truncated_at_every_offset() {
        let buf = [0x08, 0, 0, 0, 0, 0, 1, 0];
        for n in 0..8 {
            assert!(
                VxlanSlice::from_slice(&buf[..n])
                    .unwrap_err()
                    .is_truncated()
            );
        }
    }
}
