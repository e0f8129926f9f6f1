//! Generic Network Virtualization Encapsulation (RFC 8926).

use super::{
    DecodeError, DecodeResult, EtherType, Layer, be16, be24, byte, ensure, invalid, sub_clamped,
    tail,
};

/// One Geneve option (TLV).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneveOption<'a> {
    /// Option class.
    pub class: u16,
    /// Option type (high bit: critical).
    pub option_type: u8,
    /// Option data (length field * 4 bytes).
    pub data: &'a [u8],
}

impl GeneveOption<'_> {
    /// `true` if the critical bit of the type is set.
    pub fn is_critical(&self) -> bool {
        self.option_type & 0x80 != 0
    }
}

/// Iterator over Geneve options; ends early on an option running past the
/// options area ([`error`](Self::error) then says so).
#[derive(Debug, Clone)]
pub struct GeneveOptions<'a> {
    rest: &'a [u8],
    offset: usize,
    error: Option<DecodeError>,
}

impl<'a> GeneveOptions<'a> {
    /// Iterates over a raw options area.
    pub fn new(options: &'a [u8]) -> Self {
        GeneveOptions {
            rest: options,
            offset: GeneveSlice::FIXED_LEN,
            error: None,
        }
    }

    /// The error that ended the iteration early, if any (offsets relative to
    /// the Geneve header).
    pub fn error(&self) -> Option<&DecodeError> {
        self.error.as_ref()
    }
}

impl<'a> Iterator for GeneveOptions<'a> {
    type Item = GeneveOption<'a>;

    fn next(&mut self) -> Option<GeneveOption<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let len = 4 + usize::from(byte(self.rest, 3) & 0x1F) * 4;
        let Some((opt, rest)) = self.rest.split_at_checked(len) else {
            self.error = Some(DecodeError::Truncated {
                layer: Layer::Geneve,
                offset: self.offset,
                needed: len.max(4),
                have: self.rest.len(),
            });
            self.rest = &[];
            return None;
        };
        self.rest = rest;
        self.offset += len;
        Some(GeneveOption {
            class: be16(opt, 0),
            option_type: byte(opt, 2),
            data: tail(opt, 4),
        })
    }
}

/// Zero-copy view of a Geneve header.
///
/// ```text
/// ver(2) opt_len(6) | O(1) C(1) rsvd(6) | protocol_type(16)
/// vni(24) reserved(8) | options (opt_len * 4 bytes)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneveSlice<'a> {
    data: &'a [u8],
}

impl<'a> GeneveSlice<'a> {
    /// Length of the fixed header.
    pub const FIXED_LEN: usize = 8;

    /// Decodes the header, options included.
    ///
    /// # Errors
    /// `Truncated` if the header does not fit; `Invalid` if the version is
    /// not 0.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Geneve, data, 0, 1)?;
        let ver = byte(data, 0) >> 6;
        if ver != 0 {
            return Err(invalid(Layer::Geneve, "version", u32::from(ver)));
        }
        let s = GeneveSlice { data };
        ensure(Layer::Geneve, data, 0, s.header_len())?;
        Ok(s)
    }

    /// Version (top 2 bits, always 0).
    pub fn version(&self) -> u8 {
        byte(self.data, 0) >> 6
    }

    /// Length of the options in 4-byte units (low 6 bits of byte 0).
    pub fn opt_len(&self) -> u8 {
        byte(self.data, 0) & 0x3F
    }

    /// O bit: control packet (OAM).
    pub fn oam(&self) -> bool {
        byte(self.data, 1) & 0x80 != 0
    }

    /// C bit: critical options present.
    pub fn critical(&self) -> bool {
        byte(self.data, 1) & 0x40 != 0
    }

    /// Protocol type of the payload (bytes 2..4), an EtherType (0x6558 for
    /// Ethernet).
    pub fn protocol_type(&self) -> EtherType {
        EtherType(be16(self.data, 2))
    }

    /// Virtual network identifier (bytes 4..7).
    pub fn vni(&self) -> u32 {
        be24(self.data, 4)
    }

    /// Raw options.
    pub fn options(&self) -> &'a [u8] {
        sub_clamped(self.data, Self::FIXED_LEN, self.header_len())
    }

    /// Iterates over the options.
    pub fn options_iter(&self) -> GeneveOptions<'a> {
        GeneveOptions::new(self.options())
    }

    /// Header length: 8 + opt_len * 4.
    pub fn header_len(&self) -> usize {
        Self::FIXED_LEN + usize::from(self.opt_len()) * 4
    }

    /// The bytes after the header and options.
    pub fn payload(&self) -> &'a [u8] {
        tail(self.data, self.header_len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKET: [u8; 22] = [
        0x02, 0x40, /* ver 0, opt_len 2 (8 bytes), C */
        0x65, 0x58, /* TEB */
        0x00, 0x10, 0x01, 0x00, /* vni 0x1001 */
        0x01, 0x02, 0x80, 0x01, /* option class 0x0102, type 0x80 (critical), len 1 */
        0xDE, 0xAD, 0xBE, 0xEF, /* option data */
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, /* frame */
    ];

    #[test]
    fn parse_valid() {
        let g = GeneveSlice::from_slice(&PACKET).unwrap();
        assert_eq!(g.version(), 0);
        assert_eq!(g.opt_len(), 2);
        assert!(!g.oam());
        assert!(g.critical());
        assert_eq!(g.protocol_type(), EtherType::TEB);
        assert_eq!(g.vni(), 0x1001);
        assert_eq!(g.options(), &PACKET[8..16]);
        assert_eq!(g.header_len(), 16);
        assert_eq!(g.payload(), &[0xFF; 6]);
        let opts: Vec<_> = g.options_iter().collect();
        assert_eq!(
            opts,
            vec![GeneveOption {
                class: 0x0102,
                option_type: 0x80,
                data: &[0xDE, 0xAD, 0xBE, 0xEF]
            }]
        );
        assert!(opts[0].is_critical());
    }

    #[test]
    fn truncated_at_every_offset() {
        for n in 0..16 {
            assert!(
                GeneveSlice::from_slice(&PACKET[..n])
                    .unwrap_err()
                    .is_truncated()
            );
        }
    }

    #[test]
    fn bad_version_and_bad_option() {
        let mut b = PACKET;
        b[0] |= 0x40;
        assert_eq!(
            GeneveSlice::from_slice(&b),
            Err(DecodeError::Invalid {
                layer: Layer::Geneve,
                field: "version",
                value: 1
            })
        );
        let mut b = PACKET;
        b[11] = 5; // option says 20 bytes of data, only 4 in the area
        let g = GeneveSlice::from_slice(&b).unwrap();
        let mut it = g.options_iter();
        assert_eq!(it.next(), None);
        assert!(it.error().unwrap().is_truncated());
    }

    #[test]
    fn unknown_values_roundtrip() {
        let b = [0, 0x80, 0x12, 0x34, 0xFF, 0xFF, 0xFF, 0];
        let g = GeneveSlice::from_slice(&b).unwrap();
        assert!(g.oam());
        assert_eq!(g.protocol_type(), EtherType(0x1234));
        assert_eq!(g.vni(), 0xFF_FFFF);
        assert_eq!(g.options_iter().count(), 0);
    }
}
