//! Cisco ERSPAN type II and type III headers
//! (draft-foschiano-erspan-03).
//!
//! Type I has no header (GRE protocol 0x88BE without a sequence number);
//! the Ethernet frame follows the GRE header directly.

use super::{DecodeResult, Layer, be16, be32, byte, ensure, invalid, tail};

/// Zero-copy view of an ERSPAN type II or type III header.
///
/// ```text
/// type II (8 bytes):  ver(4)=1 vlan(12) | cos(3) en(2) t(1) session(10)
///                     reserved(12) index(20)
/// type III (12 bytes): ver(4)=2 vlan(12) | cos(3) bso(2) t(1) session(10)
///                     timestamp(32) | sgt(16) p(1) ft(5) hw_id(6) d(1) gra(2) o(1)
///                     [platform sub-header (8 bytes) if o]
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErspanSlice<'a> {
    data: &'a [u8],
    header_len: usize,
}

impl<'a> ErspanSlice<'a> {
    /// Version field value of type II.
    pub const VERSION_II: u8 = 1;
    /// Version field value of type III.
    pub const VERSION_III: u8 = 2;

    /// Decodes a type II header (GRE protocol 0x88BE with a sequence
    /// number).
    ///
    /// # Errors
    /// `Truncated` if fewer than 8 bytes are given; `Invalid` if the version
    /// is not 1.
    pub fn from_slice_type2(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Erspan, data, 0, 1)?;
        let v = byte(data, 0) >> 4;
        if v != Self::VERSION_II {
            return Err(invalid(Layer::Erspan, "version", u32::from(v)));
        }
        ensure(Layer::Erspan, data, 0, 8)?;
        Ok(ErspanSlice {
            data,
            header_len: 8,
        })
    }

    /// Decodes a type III header (GRE protocol 0x22EB), with the platform
    /// sub-header when the O flag is set.
    ///
    /// # Errors
    /// `Truncated` if the header does not fit; `Invalid` if the version is
    /// not 2.
    pub fn from_slice_type3(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Erspan, data, 0, 1)?;
        let v = byte(data, 0) >> 4;
        if v != Self::VERSION_III {
            return Err(invalid(Layer::Erspan, "version", u32::from(v)));
        }
        ensure(Layer::Erspan, data, 0, 12)?;
        let header_len = if byte(data, 11) & 0x01 != 0 { 20 } else { 12 };
        ensure(Layer::Erspan, data, 0, header_len)?;
        Ok(ErspanSlice { data, header_len })
    }

    /// Decodes a type II or III header according to its version field.
    ///
    /// # Errors
    /// As the typed constructors; `Invalid` for other versions.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Erspan, data, 0, 1)?;
        match byte(data, 0) >> 4 {
            Self::VERSION_III => Self::from_slice_type3(data),
            _ => Self::from_slice_type2(data),
        }
    }

    /// Version field (1 for type II, 2 for type III).
    pub fn version(&self) -> u8 {
        byte(self.data, 0) >> 4
    }

    /// `true` for a type III header.
    pub fn is_type3(&self) -> bool {
        self.version() == Self::VERSION_III
    }

    /// Original VLAN of the mirrored frame (12 bits).
    pub fn vlan(&self) -> u16 {
        be16(self.data, 0) & 0x0FFF
    }

    /// Class of service (3 bits).
    pub fn cos(&self) -> u8 {
        byte(self.data, 2) >> 5
    }

    /// Encapsulation type (type II `En`) or bad/short/oversized (type III
    /// `BSO`), 2 bits.
    pub fn en(&self) -> u8 {
        (byte(self.data, 2) >> 3) & 0x03
    }

    /// Truncated bit (T): the mirrored frame was truncated.
    pub fn truncated_flag(&self) -> bool {
        byte(self.data, 2) & 0x04 != 0
    }

    /// Session identifier (10 bits).
    pub fn session_id(&self) -> u16 {
        be16(self.data, 2) & 0x03FF
    }

    /// Port index (20 bits, type II).
    pub fn index(&self) -> Option<u32> {
        (!self.is_type3()).then(|| be32(self.data, 4) & 0x000F_FFFF)
    }

    /// Timestamp (type III).
    pub fn timestamp(&self) -> Option<u32> {
        self.is_type3().then(|| be32(self.data, 4))
    }

    /// Security group tag (type III).
    pub fn sgt(&self) -> Option<u16> {
        self.is_type3().then(|| be16(self.data, 8))
    }

    /// Frame type (type III, 5 bits): 0 Ethernet, 2 IP.
    pub fn frame_type(&self) -> Option<u8> {
        self.is_type3().then(|| (byte(self.data, 10) >> 2) & 0x1F)
    }

    /// Hardware ID (type III, 6 bits).
    pub fn hw_id(&self) -> Option<u8> {
        self.is_type3()
            .then(|| ((be16(self.data, 10) >> 4) & 0x3F) as u8)
    }

    /// Direction bit (type III): `true` for egress.
    pub fn direction(&self) -> Option<bool> {
        self.is_type3().then(|| byte(self.data, 11) & 0x08 != 0)
    }

    /// Timestamp granularity (type III, 2 bits).
    pub fn granularity(&self) -> Option<u8> {
        self.is_type3().then(|| (byte(self.data, 11) >> 1) & 0x03)
    }

    /// The 8-byte platform-specific sub-header (type III with O set).
    pub fn platform_subheader(&self) -> Option<&'a [u8]> {
        (self.header_len == 20).then(|| self.data.get(12..20).unwrap_or(&[]))
    }

    /// Header length: 8 (type II), 12 or 20 (type III).
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The mirrored frame (an Ethernet frame unless `frame_type` says IP).
    pub fn payload(&self) -> &'a [u8] {
        tail(self.data, self.header_len)
    }
}

#[cfg(test)]
mod tests {
    use super::super::DecodeError;
    use super::*;

    const TYPE2: [u8; 10] = [
        0x10, 0x64, /* ver 1, vlan 100 */
        0xA8, 0x2A, /* cos 5, en 1, t 0, session 42 */
        0x00, 0x01, 0x23, 0x45, /* index 0x12345 */
        0xFF, 0xFF, /* frame */
    ];

    const TYPE3: [u8; 22] = [
        0x20, 0x0A, /* ver 2, vlan 10 */
        0x04, 0x07, /* cos 0, bso 0, t 1, session 7 */
        0x00, 0x00, 0x10, 0x00, /* timestamp 4096 */
        0x00, 0x05, /* sgt 5 */
        0x08, 0x1B, /* p 0, ft 2, hw_id 1, d 1, gra 1, o 1 */
        1, 2, 3, 4, 5, 6, 7, 8, /* platform sub-header */
        0x45, 0x00,
    ];

    #[test]
    fn parse_valid_type2() {
        let e = ErspanSlice::from_slice_type2(&TYPE2).unwrap();
        assert_eq!(e.version(), 1);
        assert!(!e.is_type3());
        assert_eq!(e.vlan(), 100);
        assert_eq!(e.cos(), 5);
        assert_eq!(e.en(), 1);
        assert!(!e.truncated_flag());
        assert_eq!(e.session_id(), 42);
        assert_eq!(e.index(), Some(0x12345));
        assert_eq!(e.timestamp(), None);
        assert_eq!(e.sgt(), None);
        assert_eq!(e.platform_subheader(), None);
        assert_eq!(e.header_len(), 8);
        assert_eq!(e.payload(), &[0xFF, 0xFF]);
        assert_eq!(ErspanSlice::from_slice(&TYPE2), Ok(e));
    }

    #[test]
    fn parse_valid_type3() {
        let e = ErspanSlice::from_slice_type3(&TYPE3).unwrap();
        assert_eq!(e.version(), 2);
        assert_eq!(e.vlan(), 10);
        assert!(e.truncated_flag());
        assert_eq!(e.session_id(), 7);
        assert_eq!(e.index(), None);
        assert_eq!(e.timestamp(), Some(4096));
        assert_eq!(e.sgt(), Some(5));
        assert_eq!(e.frame_type(), Some(2));
        assert_eq!(e.hw_id(), Some(1));
        assert_eq!(e.direction(), Some(true));
        assert_eq!(e.granularity(), Some(1));
        assert_eq!(e.platform_subheader(), Some(&[1, 2, 3, 4, 5, 6, 7, 8][..]));
        assert_eq!(e.header_len(), 20);
        assert_eq!(e.payload(), &[0x45, 0x00]);
        assert_eq!(ErspanSlice::from_slice(&TYPE3), Ok(e));
        // without O: 12 bytes
        let mut b = TYPE3;
        b[11] &= !1;
        let e = ErspanSlice::from_slice_type3(&b).unwrap();
        assert_eq!(e.header_len(), 12);
        assert_eq!(e.platform_subheader(), None);
    }

    #[test]
    fn truncated_at_every_offset() {
        for n in 0..8 {
            assert!(
                ErspanSlice::from_slice_type2(&TYPE2[..n])
                    .unwrap_err()
                    .is_truncated()
            );
        }
        for n in 0..20 {
            assert!(
                ErspanSlice::from_slice_type3(&TYPE3[..n])
                    .unwrap_err()
                    .is_truncated()
            );
        }
    }

    #[test]
    fn wrong_version_is_invalid() {
        assert_eq!(
            ErspanSlice::from_slice_type2(&TYPE3),
            Err(DecodeError::Invalid {
                layer: Layer::Erspan,
                field: "version",
                value: 2
            })
        );
        assert!(ErspanSlice::from_slice_type3(&TYPE2).is_err());
        let mut b = TYPE2;
        b[0] = 0x30;
        assert!(ErspanSlice::from_slice(&b).is_err());
    }
}
