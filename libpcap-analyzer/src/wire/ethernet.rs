//! Ethernet II and IEEE 802.3 MAC header (IEEE 802.3 clause 3, RFC 894).

use super::{DecodeResult, EtherType, Layer, be16, ensure, read_array, sub_clamped, tail};

/// Zero-copy view of an Ethernet frame (without FCS).
///
/// ```text
/// 0      6      12    14
/// | dst  | src  | type/length | payload ...
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetSlice<'a> {
    data: &'a [u8],
}

impl<'a> EthernetSlice<'a> {
    /// Length of the MAC header.
    pub const HEADER_LEN: usize = 14;
    /// Largest value of the type/length field that is an 802.3 length.
    pub const MAX_802_3_LEN: u16 = 1500;

    /// Decodes the 14-byte MAC header.
    ///
    /// # Errors
    /// [`DecodeError::Truncated`](super::DecodeError::Truncated) if fewer than
    /// 14 bytes are given.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Ethernet, data, 0, Self::HEADER_LEN)?;
        Ok(EthernetSlice { data })
    }

    /// Destination MAC address (bytes 0..6).
    pub fn dst(&self) -> [u8; 6] {
        read_array(self.data, 0).unwrap_or_default()
    }

    /// Source MAC address (bytes 6..12).
    pub fn src(&self) -> [u8; 6] {
        read_array(self.data, 6).unwrap_or_default()
    }

    /// Raw value of the type/length field (bytes 12..14, big-endian).
    pub fn ethertype(&self) -> EtherType {
        EtherType(be16(self.data, 12))
    }

    /// `true` when the type/length field is an 802.3 length (<= 1500): an
    /// LLC header follows.
    pub fn is_802_3(&self) -> bool {
        self.ethertype().0 <= Self::MAX_802_3_LEN
    }

    /// Length of the MAC header (14).
    pub fn header_len(&self) -> usize {
        Self::HEADER_LEN
    }

    /// The raw header bytes.
    pub fn header(&self) -> &'a [u8] {
        sub_clamped(self.data, 0, Self::HEADER_LEN)
    }

    /// The bytes after the MAC header.
    ///
    /// For 802.3 frames the payload is bounded by the length field when it
    /// fits in the captured data (this drops the padding of short frames).
    pub fn payload(&self) -> &'a [u8] {
        if self.is_802_3() {
            let len = usize::from(self.ethertype().0);
            sub_clamped(self.data, Self::HEADER_LEN, Self::HEADER_LEN + len)
        } else {
            tail(self.data, Self::HEADER_LEN)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::DecodeError;
    use super::*;
    use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};

    fn frame() -> Vec<u8> {
        let mut buf = vec![0u8; 18];
        let mut p = MutableEthernetPacket::new(&mut buf).unwrap();
        p.set_destination("ff:ff:ff:ff:ff:ff".parse().unwrap());
        p.set_source("00:11:22:33:44:55".parse().unwrap());
        p.set_ethertype(EtherTypes::Ipv4);
        p.set_payload(&[0x45, 0, 0, 20]);
        buf
    }

    #[test]
    fn parse_valid() {
        let buf = frame();
        let e = EthernetSlice::from_slice(&buf).unwrap();
        assert_eq!(e.dst(), [0xff; 6]);
        assert_eq!(e.src(), [0x00, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!(e.ethertype(), EtherType::IPV4);
        assert!(!e.is_802_3());
        assert_eq!(e.header_len(), 14);
        assert_eq!(e.header(), &buf[..14]);
        assert_eq!(e.payload(), &[0x45, 0, 0, 20]);
    }

    #[test]
    fn ieee_802_3_length_bounds_payload() {
        // dst, src, length 3, LLC 42 42 03, then 2 padding bytes
        let buf = [
            1, 0x80, 0xc2, 0, 0, 0, /* dst: STP */ 0, 1, 2, 3, 4, 5, /* src */ 0x00,
            0x03, /* length 3 */ 0x42, 0x42, 0x03, /* LLC */ 0, 0, /* pad */
        ];
        let e = EthernetSlice::from_slice(&buf).unwrap();
        assert!(e.is_802_3());
        assert_eq!(e.payload(), &[0x42, 0x42, 0x03]);
        // length larger than the capture: what was captured
        let mut long = buf;
        long[13] = 200;
        let e = EthernetSlice::from_slice(&long).unwrap();
        assert_eq!(e.payload(), &long[14..]);
    }

    #[test]
    fn truncated_at_every_offset() {
        let buf = frame();
        for n in 0..14 {
            assert_eq!(
                EthernetSlice::from_slice(&buf[..n]),
                Err(DecodeError::Truncated {
                    layer: Layer::Ethernet,
                    offset: 0,
                    needed: 14,
                    have: n
                })
            );
        }
        for n in 14..buf.len() {
            assert_eq!(
                EthernetSlice::from_slice(&buf[..n])
                    .unwrap()
                    .payload()
                    .len(),
                n - 14
            );
        }
    }

    #[test]
    fn unknown_values_roundtrip() {
        let mut buf = frame();
        buf[12] = 0x12;
        buf[13] = 0x34;
        let e = EthernetSlice::from_slice(&buf).unwrap();
        assert_eq!(e.ethertype(), EtherType(0x1234));
        assert_eq!(e.payload().len(), 4);
    }
}
