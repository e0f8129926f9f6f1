//! PPP over Ethernet (RFC 2516).

use super::{DecodeResult, Layer, be16, byte, ensure, invalid, sub_clamped};

/// Zero-copy view of a PPPoE header.
///
/// ```text
/// ver(4) type(4) | code(8) | session_id(16) | length(16) | payload
/// ```
///
/// In session frames (code 0) the payload starts with the 2-byte PPP
/// protocol field, which this view decodes as part of its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PppoeSlice<'a> {
    data: &'a [u8],
}

impl<'a> PppoeSlice<'a> {
    /// Length of the PPPoE header proper.
    pub const HEADER_LEN: usize = 6;
    /// Code of session-stage frames.
    pub const CODE_SESSION: u8 = 0x00;
    /// PADI discovery code.
    pub const CODE_PADI: u8 = 0x09;
    /// PADO discovery code.
    pub const CODE_PADO: u8 = 0x07;
    /// PADR discovery code.
    pub const CODE_PADR: u8 = 0x19;
    /// PADS discovery code.
    pub const CODE_PADS: u8 = 0x65;
    /// PADT discovery code.
    pub const CODE_PADT: u8 = 0xA7;

    /// Decodes a PPPoE header (and, for session frames, the PPP protocol).
    ///
    /// # Errors
    /// `Truncated` if the header (8 bytes for session frames) does not fit;
    /// `Invalid` if version or type is not 1, or a session frame has a length
    /// below 2.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Pppoe, data, 0, Self::HEADER_LEN)?;
        let vt = byte(data, 0);
        if vt >> 4 != 1 {
            return Err(invalid(Layer::Pppoe, "version", u32::from(vt >> 4)));
        }
        if vt & 0x0F != 1 {
            return Err(invalid(Layer::Pppoe, "type", u32::from(vt & 0x0F)));
        }
        let s = PppoeSlice { data };
        if s.is_session() {
            if s.length() < 2 {
                return Err(invalid(Layer::Pppoe, "length", u32::from(s.length())));
            }
            ensure(Layer::Pppoe, data, Self::HEADER_LEN, 2)?;
        }
        Ok(s)
    }

    /// Version (high nibble of byte 0, always 1).
    pub fn version(&self) -> u8 {
        byte(self.data, 0) >> 4
    }

    /// Type (low nibble of byte 0, always 1).
    pub fn pppoe_type(&self) -> u8 {
        byte(self.data, 0) & 0x0F
    }

    /// Code (byte 1): 0 for session frames, PADx for discovery.
    pub fn code(&self) -> u8 {
        byte(self.data, 1)
    }

    /// `true` for session-stage frames (code 0).
    pub fn is_session(&self) -> bool {
        self.code() == Self::CODE_SESSION
    }

    /// Session identifier (bytes 2..4, big-endian).
    pub fn session_id(&self) -> u16 {
        be16(self.data, 2)
    }

    /// Length of the PPPoE payload, PPP protocol included (bytes 4..6).
    pub fn length(&self) -> u16 {
        be16(self.data, 4)
    }

    /// PPP protocol of a session frame (bytes 6..8), 0 for discovery frames.
    pub fn ppp_protocol(&self) -> u16 {
        if self.is_session() {
            be16(self.data, 6)
        } else {
            0
        }
    }

    /// Header length: 8 for session frames (PPP protocol included), 6
    /// otherwise.
    pub fn header_len(&self) -> usize {
        if self.is_session() {
            Self::HEADER_LEN + 2
        } else {
            Self::HEADER_LEN
        }
    }

    /// `true` when the length field exceeds the captured data.
    pub fn is_truncated(&self) -> bool {
        Self::HEADER_LEN + usize::from(self.length()) > self.data.len()
    }

    /// The payload bounded by the length field (after the PPP protocol for
    /// session frames, the discovery tags otherwise); what was captured if
    /// the frame is truncated.
    pub fn payload(&self) -> &'a [u8] {
        let end = Self::HEADER_LEN + usize::from(self.length());
        sub_clamped(self.data, self.header_len(), end)
    }
}

#[cfg(test)]
mod tests {
    use super::super::DecodeError;
    use super::*;

    const SESSION: [u8; 14] = [
        0x11, 0x00, /* ver 1 type 1, code session */
        0x12, 0x34, /* session id */
        0x00, 0x06, /* length: proto + 4 */
        0x00, 0x21, /* PPP IPv4 */
        0x45, 0x00, 0x00, 0x14, /* payload */
        0xEE, 0xEE, /* ethernet padding */
    ];

    #[test]
    fn parse_valid_session() {
        let p = PppoeSlice::from_slice(&SESSION).unwrap();
        assert_eq!((p.version(), p.pppoe_type(), p.code()), (1, 1, 0));
        assert!(p.is_session());
        assert_eq!(p.session_id(), 0x1234);
        assert_eq!(p.length(), 6);
        assert_eq!(p.ppp_protocol(), 0x0021);
        assert_eq!(p.header_len(), 8);
        assert!(!p.is_truncated());
        assert_eq!(p.payload(), &[0x45, 0x00, 0x00, 0x14]);
    }

    #[test]
    fn parse_valid_discovery() {
        let padi = [
            0x11, 0x09, 0, 0, 0x00, 0x04, /* tag service-name, len 0 */ 0x01, 0x01, 0, 0,
        ];
        let p = PppoeSlice::from_slice(&padi).unwrap();
        assert_eq!(p.code(), PppoeSlice::CODE_PADI);
        assert_eq!(p.ppp_protocol(), 0);
        assert_eq!(p.header_len(), 6);
        assert_eq!(p.payload(), &[1, 1, 0, 0]);
    }

    #[test]
    fn truncated_at_every_offset() {
        for n in 0..8 {
            assert!(
                PppoeSlice::from_slice(&SESSION[..n])
                    .unwrap_err()
                    .is_truncated()
            );
        }
        for n in 8..12 {
            let p = PppoeSlice::from_slice(&SESSION[..n]).unwrap();
            assert!(p.is_truncated());
            assert_eq!(p.payload(), &SESSION[8..n]);
        }
    }

    #[test]
    fn bad_fields_are_invalid() {
        let mut b = SESSION;
        b[0] = 0x21;
        assert_eq!(
            PppoeSlice::from_slice(&b),
            Err(DecodeError::Invalid {
                layer: Layer::Pppoe,
                field: "version",
                value: 2
            })
        );
        b[0] = 0x12;
        assert!(PppoeSlice::from_slice(&b).is_err());
        let mut b = SESSION;
        b[5] = 1;
        assert_eq!(
            PppoeSlice::from_slice(&b),
            Err(DecodeError::Invalid {
                layer: Layer::Pppoe,
                field: "length",
                value: 1
            })
        );
    }

    #[test]
    fn unknown_values_roundtrip() {
        let mut b = SESSION;
        b[6] = 0xAB;
        b[7] = 0xCD;
        assert_eq!(PppoeSlice::from_slice(&b).unwrap().ppp_protocol(), 0xABCD);
    }
}
