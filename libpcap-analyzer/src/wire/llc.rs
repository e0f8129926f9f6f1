//! IEEE 802.2 LLC header, with the SNAP extension (RFC 1042).

use super::{DecodeResult, EtherType, Layer, be16, be24, byte, ensure, invalid, tail};

/// Zero-copy view of an 802.2 LLC header (after an 802.3 length frame).
///
/// DSAP (1), SSAP (1), control (1 byte for U-format frames, 2 bytes for I and
/// S formats); when DSAP = SSAP = 0xAA and control = 0x03, a 5-byte SNAP
/// header follows (OUI (3), protocol (2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlcSlice<'a> {
    data: &'a [u8],
    header_len: usize,
}

impl<'a> LlcSlice<'a> {
    /// SAP value used by SNAP.
    pub const SAP_SNAP: u8 = 0xAA;
    /// SAP value of the spanning tree protocol.
    pub const SAP_STP: u8 = 0x42;

    /// Decodes the LLC header and the SNAP header if present.
    ///
    /// # Errors
    /// `Truncated` if the header does not fit; `Invalid` if a SNAP frame uses
    /// a control field other than UI (0x03).
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Llc, data, 0, 3)?;
        let control = byte(data, 2);
        let mut header_len = if control & 0x03 == 0x03 { 3 } else { 4 };
        ensure(Layer::Llc, data, 0, header_len)?;
        if byte(data, 0) == Self::SAP_SNAP && byte(data, 1) == Self::SAP_SNAP {
            if header_len != 3 || control != 0x03 {
                return Err(invalid(Layer::Llc, "snap control", u32::from(control)));
            }
            header_len = 8;
            ensure(Layer::Llc, data, 0, header_len)?;
        }
        Ok(LlcSlice { data, header_len })
    }

    /// Destination service access point (byte 0).
    pub fn dsap(&self) -> u8 {
        byte(self.data, 0)
    }

    /// Source service access point (byte 1).
    pub fn ssap(&self) -> u8 {
        byte(self.data, 1)
    }

    /// Control field (1 or 2 bytes, big-endian).
    pub fn control(&self) -> u16 {
        if self.header_len == 4 {
            be16(self.data, 2)
        } else {
            u16::from(byte(self.data, 2))
        }
    }

    /// `true` when a SNAP header is present.
    pub fn is_snap(&self) -> bool {
        self.header_len == 8
    }

    /// SNAP organisation code (3 bytes), if SNAP.
    pub fn snap_oui(&self) -> Option<u32> {
        self.is_snap().then(|| be24(self.data, 3))
    }

    /// SNAP protocol identifier (an EtherType when the OUI is 0), if SNAP.
    pub fn snap_ethertype(&self) -> Option<EtherType> {
        self.is_snap().then(|| EtherType(be16(self.data, 6)))
    }

    /// Length of the LLC (and SNAP) header.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The bytes after the LLC (and SNAP) header.
    pub fn payload(&self) -> &'a [u8] {
        tail(self.data, self.header_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_valid_stp() {
        let buf = [0x42, 0x42, 0x03, /* BPDU */ 0, 0];
        let l = LlcSlice::from_slice(&buf).unwrap();
        assert_eq!((l.dsap(), l.ssap(), l.control()), (0x42, 0x42, 3));
        assert!(!l.is_snap());
        assert_eq!(l.snap_ethertype(), None);
        assert_eq!(l.header_len(), 3);
        assert_eq!(l.payload(), &[0, 0]);
    }

    #[test]
    fn parse_valid_snap() {
        let buf = [0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00, 0x45];
        let l = LlcSlice::from_slice(&buf).unwrap();
        assert!(l.is_snap());
        assert_eq!(l.snap_oui(), Some(0));
        assert_eq!(l.snap_ethertype(), Some(EtherType::IPV4));
        assert_eq!(l.payload(), &[0x45]);
    }

    #[test]
    fn two_byte_control() {
        let buf = [0xF0, 0xF0, 0x00, 0x01, 9];
        let l = LlcSlice::from_slice(&buf).unwrap();
        assert_eq!(l.control(), 0x0001);
        assert_eq!(l.payload(), &[9]);
    }

    #[test]
    fn snap_with_bad_control_is_invalid() {
        let buf = [0xAA, 0xAA, 0x00, 0x00, 0, 0, 0, 0x08, 0x00];
        assert!(matches!(
            LlcSlice::from_slice(&buf),
            Err(super::super::DecodeError::Invalid { .. })
        ));
    }

    #[test]
    fn truncated_at_every_offset() {
        let buf = [0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00];
        for n in 0..buf.len() {
            assert!(LlcSlice::from_slice(&buf[..n]).unwrap_err().is_truncated());
        }
        assert!(LlcSlice::from_slice(&buf).is_ok());
    }
}
