//! Point-to-Point Protocol encapsulation (RFC 1661 section 2, RFC 1662 HDLC
//! framing address/control).

use super::{DecodeResult, Layer, be16, byte, ensure, invalid, tail};

/// PPP protocol number of IPv4.
pub const PPP_IPV4: u16 = 0x0021;
/// PPP protocol number of IPv6.
pub const PPP_IPV6: u16 = 0x0057;
/// PPP protocol number of MPLS unicast.
pub const PPP_MPLS_UC: u16 = 0x0281;
/// PPP protocol number of MPLS multicast.
pub const PPP_MPLS_MC: u16 = 0x0283;
/// PPP protocol number of the Link Control Protocol.
pub const PPP_LCP: u16 = 0xC021;
/// PPP protocol number of the IP Control Protocol.
pub const PPP_IPCP: u16 = 0x8021;
/// PPP protocol number of the IPv6 Control Protocol.
pub const PPP_IPV6CP: u16 = 0x8057;

/// Zero-copy view of a PPP header: an optional `FF 03` address/control
/// prefix, then a 1-byte (protocol-field compression: first byte odd) or
/// 2-byte protocol field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PppSlice<'a> {
    data: &'a [u8],
    address_control: bool,
    protocol_len: u8,
}

impl<'a> PppSlice<'a> {
    /// PPP protocol number of IPv4 (same as the module constant).
    pub const PPP_IPV4: u16 = PPP_IPV4;
    /// PPP protocol number of IPv6 (same as the module constant).
    pub const PPP_IPV6: u16 = PPP_IPV6;

    /// Decodes the PPP header.
    ///
    /// A first byte of 0xFF is taken as the HDLC address (0xFF is not a
    /// valid protocol number), and must be followed by the control 0x03.
    ///
    /// # Errors
    /// `Truncated` if the protocol field does not fit; `Invalid` if the
    /// address 0xFF is not followed by the control 0x03.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        let address_control = data.first() == Some(&0xFF);
        if address_control {
            ensure(Layer::Ppp, data, 0, 2)?;
            if byte(data, 1) != 0x03 {
                return Err(invalid(Layer::Ppp, "control", u32::from(byte(data, 1))));
            }
        }
        let off = if address_control { 2 } else { 0 };
        ensure(Layer::Ppp, data, off, 1)?;
        let protocol_len = if byte(data, off) & 1 == 1 { 1 } else { 2 };
        ensure(Layer::Ppp, data, off, usize::from(protocol_len))?;
        Ok(PppSlice {
            data,
            address_control,
            protocol_len,
        })
    }

    /// `true` if the HDLC address/control bytes `FF 03` are present.
    pub fn has_address_control(&self) -> bool {
        self.address_control
    }

    fn protocol_offset(&self) -> usize {
        if self.address_control { 2 } else { 0 }
    }

    /// Protocol field, widened to 16 bits when compressed.
    pub fn protocol(&self) -> u16 {
        let off = self.protocol_offset();
        if self.protocol_len == 1 {
            u16::from(byte(self.data, off))
        } else {
            be16(self.data, off)
        }
    }

    /// Length of the header (address/control and protocol field).
    pub fn header_len(&self) -> usize {
        self.protocol_offset() + usize::from(self.protocol_len)
    }

    /// The bytes after the protocol field.
    pub fn payload(&self) -> &'a [u8] {
        tail(self.data, self.header_len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_valid_hdlc() {
        let buf = [0xFF, 0x03, 0x00, 0x21, 0x45];
        let p = PppSlice::from_slice(&buf).unwrap();
        assert!(p.has_address_control());
        assert_eq!(p.protocol(), PPP_IPV4);
        assert_eq!(p.header_len(), 4);
        assert_eq!(p.payload(), &[0x45]);
    }

    #[test]
    fn parse_valid_compressed() {
        let buf = [0x57, 0x60];
        let p = PppSlice::from_slice(&buf).unwrap();
        assert!(!p.has_address_control());
        assert_eq!(p.protocol(), PPP_IPV6);
        assert_eq!(p.header_len(), 1);
        assert_eq!(p.payload(), &[0x60]);
        let buf = [0xC0, 0x21, 1];
        assert_eq!(PppSlice::from_slice(&buf).unwrap().protocol(), PPP_LCP);
    }

    #[test]
    fn truncated_at_every_offset() {
        let buf = [0xFF, 0x03, 0x00, 0x21];
        // [] and [FF] truncated; [FF 03] is the address/control alone
        for n in 0..4 {
            assert!(
                PppSlice::from_slice(&buf[..n]).unwrap_err().is_truncated(),
                "{n}"
            );
        }
        assert!(PppSlice::from_slice(&buf).unwrap().payload().is_empty());
    }

    #[test]
    fn bad_control_is_invalid() {
        assert!(matches!(
            PppSlice::from_slice(&[0xFF, 0x13, 0x21]),
            Err(super::super::DecodeError::Invalid { .. })
        ));
    }

    #[test]
    fn unknown_values_roundtrip() {
        let buf = [0x12, 0x35];
        let p = PppSlice::from_slice(&buf).unwrap();
        assert_eq!(p.protocol(), 0x1235);
        assert!(p.payload().is_empty());
    }
}
