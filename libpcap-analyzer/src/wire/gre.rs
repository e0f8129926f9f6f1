//! Generic Routing Encapsulation (RFC 2784, key and sequence RFC 2890,
//! routing RFC 1701, enhanced GRE of PPTP RFC 2637).

use super::{DecodeResult, EtherType, Layer, be16, be32, byte, ensure, invalid, tail};

/// Maximum number of source route entries accepted in the routing field.
pub const MAX_GRE_SRES: usize = 16;

/// Zero-copy view of a GRE header.
///
/// ```text
/// C R K S s recur(3) | A flags(4) ver(3) | protocol_type(16)
/// [checksum(16) offset(16)]   if C or R
/// [key(32)]                   if K (version 1: payload_len(16) call_id(16))
/// [sequence(32)]              if S
/// [ack(32)]                   if A (version 1)
/// [routing: SREs ... null SRE] if R
/// ```
///
/// The legacy routing field (R bit, RFC 1701) is parsed: each source route
/// entry is address family (2), SRE offset (1), SRE length (1) and
/// `length` bytes of routing information, and the list ends with an entry
/// of family 0 and length 0. More than [`MAX_GRE_SRES`] entries is
/// `Invalid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreSlice<'a> {
    data: &'a [u8],
    header_len: usize,
    routing_len: usize,
}

const F_C: u8 = 0x80;
const F_R: u8 = 0x40;
const F_K: u8 = 0x20;
const F_S: u8 = 0x10;
const F_SSR: u8 = 0x08;
const F_A: u8 = 0x80;

impl<'a> GreSlice<'a> {
    /// Length of the fixed part.
    pub const FIXED_LEN: usize = 4;

    /// Decodes a GRE header with its optional fields.
    ///
    /// # Errors
    /// `Truncated` if the header does not fit; `Invalid` if the version is
    /// not 0 or 1, a version 1 header has no key, or the routing field has
    /// a malformed or too long SRE list.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Gre, data, 0, Self::FIXED_LEN)?;
        let f0 = byte(data, 0);
        let f1 = byte(data, 1);
        let version = f1 & 0x07;
        if version > 1 {
            return Err(invalid(Layer::Gre, "version", u32::from(version)));
        }
        if version == 1 && f0 & F_K == 0 {
            return Err(invalid(Layer::Gre, "key present", 0));
        }
        let mut len = Self::FIXED_LEN;
        if f0 & (F_C | F_R) != 0 {
            len += 4;
        }
        if f0 & F_K != 0 {
            len += 4;
        }
        if f0 & F_S != 0 {
            len += 4;
        }
        if version == 1 && f1 & F_A != 0 {
            len += 4;
        }
        ensure(Layer::Gre, data, 0, len)?;
        let mut routing_len = 0;
        if f0 & F_R != 0 {
            let mut sres = 0usize;
            loop {
                if sres > MAX_GRE_SRES {
                    return Err(invalid(Layer::Gre, "sre count", sres as u32));
                }
                let at = len + routing_len;
                ensure(Layer::Gre, data, at, 4)?;
                let family = be16(data, at);
                let sre_len = usize::from(byte(data, at + 3));
                ensure(Layer::Gre, data, at, 4 + sre_len)?;
                routing_len += 4 + sre_len;
                if sre_len == 0 {
                    if family != 0 {
                        return Err(invalid(Layer::Gre, "sre length", 0));
                    }
                    break;
                }
                sres += 1;
            }
        }
        Ok(GreSlice {
            data,
            header_len: len + routing_len,
            routing_len,
        })
    }

    fn f0(&self) -> u8 {
        byte(self.data, 0)
    }

    /// Checksum present bit (C).
    pub fn checksum_present(&self) -> bool {
        self.f0() & F_C != 0
    }

    /// Routing present bit (R, RFC 1701).
    pub fn routing_present(&self) -> bool {
        self.f0() & F_R != 0
    }

    /// Key present bit (K).
    pub fn key_present(&self) -> bool {
        self.f0() & F_K != 0
    }

    /// Sequence number present bit (S).
    pub fn seq_present(&self) -> bool {
        self.f0() & F_S != 0
    }

    /// Strict source route bit (s, RFC 1701).
    pub fn strict_source_route(&self) -> bool {
        self.f0() & F_SSR != 0
    }

    /// Recursion control (3 bits, RFC 1701).
    pub fn recursion_control(&self) -> u8 {
        self.f0() & 0x07
    }

    /// Acknowledgment present bit (A, version 1 only).
    pub fn ack_present(&self) -> bool {
        self.version() == 1 && byte(self.data, 1) & F_A != 0
    }

    /// Version (low 3 bits of byte 1): 0 for GRE, 1 for PPTP enhanced GRE.
    pub fn version(&self) -> u8 {
        byte(self.data, 1) & 0x07
    }

    /// Protocol type of the payload (bytes 2..4), an EtherType.
    pub fn protocol_type(&self) -> EtherType {
        EtherType(be16(self.data, 2))
    }

    /// Checksum, present when C or R is set.
    pub fn checksum(&self) -> Option<u16> {
        (self.f0() & (F_C | F_R) != 0).then(|| be16(self.data, 4))
    }

    /// Offset field (RFC 1701), present when C or R is set.
    pub fn offset(&self) -> Option<u16> {
        (self.f0() & (F_C | F_R) != 0).then(|| be16(self.data, 6))
    }

    fn key_offset(&self) -> usize {
        if self.f0() & (F_C | F_R) != 0 { 8 } else { 4 }
    }

    fn seq_offset(&self) -> usize {
        self.key_offset() + if self.key_present() { 4 } else { 0 }
    }

    fn ack_offset(&self) -> usize {
        self.seq_offset() + if self.seq_present() { 4 } else { 0 }
    }

    /// Key (RFC 2890), when K is set. In version 1 it holds the payload
    /// length (high 16 bits) and the call ID (low 16 bits).
    pub fn key(&self) -> Option<u32> {
        self.key_present()
            .then(|| be32(self.data, self.key_offset()))
    }

    /// PPTP payload length (version 1).
    pub fn pptp_payload_len(&self) -> Option<u16> {
        (self.version() == 1).then(|| be16(self.data, self.key_offset()))
    }

    /// PPTP call ID (version 1).
    pub fn pptp_call_id(&self) -> Option<u16> {
        (self.version() == 1).then(|| be16(self.data, self.key_offset() + 2))
    }

    /// Sequence number, when S is set.
    pub fn sequence(&self) -> Option<u32> {
        self.seq_present()
            .then(|| be32(self.data, self.seq_offset()))
    }

    /// Acknowledgment number (version 1), when A is set.
    pub fn ack(&self) -> Option<u32> {
        self.ack_present()
            .then(|| be32(self.data, self.ack_offset()))
    }

    /// The raw routing field (SRE list, null SRE included), when R is set.
    pub fn routing(&self) -> Option<&'a [u8]> {
        self.routing_present().then(|| {
            let start = self.header_len - self.routing_len;
            self.data.get(start..self.header_len).unwrap_or(&[])
        })
    }

    /// Header length, optional fields and routing included.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &'a [u8] {
        tail(self.data, self.header_len)
    }
}

#[cfg(test)]
mod tests {
    use super::super::DecodeError;
    use super::*;
    use pnet_packet::Packet;
    use pnet_packet::gre::{GrePacket, MutableGrePacket};

    /// C, K and S set: 16-byte header, IPv4 payload.
    fn packet() -> Vec<u8> {
        let mut buf = vec![0u8; 18];
        let mut p = MutableGrePacket::new(&mut buf).unwrap();
        p.set_checksum_present(1);
        p.set_key_present(1);
        p.set_sequence_present(1);
        p.set_protocol_type(0x0800);
        // pnet's optional fields are Vec-based; write them by hand
        buf[4..6].copy_from_slice(&[0xAB, 0xCD]); // checksum
        buf[8..12].copy_from_slice(&0x0102_0304u32.to_be_bytes()); // key
        buf[12..16].copy_from_slice(&42u32.to_be_bytes()); // sequence
        buf[16..18].copy_from_slice(&[0x45, 0]);
        buf
    }

    #[test]
    fn parse_valid_against_pnet() {
        let buf = packet();
        let g = GreSlice::from_slice(&buf).unwrap();
        let p = GrePacket::new(&buf).unwrap();
        assert!(g.checksum_present() && g.key_present() && g.seq_present());
        assert!(!g.routing_present() && !g.strict_source_route() && !g.ack_present());
        assert_eq!(g.recursion_control(), 0);
        assert_eq!(g.version(), 0);
        assert_eq!(g.protocol_type(), EtherType::IPV4);
        assert_eq!(g.protocol_type().0, p.get_protocol_type());
        assert_eq!(g.checksum(), Some(0xABCD));
        assert_eq!(g.offset(), Some(0));
        assert_eq!(g.key(), Some(0x0102_0304));
        assert_eq!(g.sequence(), Some(42));
        assert_eq!(g.ack(), None);
        assert_eq!(g.routing(), None);
        assert_eq!(g.pptp_call_id(), None);
        assert_eq!(g.header_len(), 16);
        assert_eq!(g.payload(), p.payload());
        assert_eq!(g.payload(), &[0x45, 0]);
    }

    #[test]
    fn minimal_header() {
        let buf = [0, 0, 0x65, 0x58, 0xAA];
        let g = GreSlice::from_slice(&buf).unwrap();
        assert_eq!(g.protocol_type(), EtherType::TEB);
        assert_eq!((g.checksum(), g.key(), g.sequence()), (None, None, None));
        assert_eq!(g.header_len(), 4);
        assert_eq!(g.payload(), &[0xAA]);
    }

    #[test]
    fn pptp_enhanced_gre() {
        // K S set, version 1, A set; proto PPP; payload len 2, call id 7,
        // seq 5, ack 4
        let buf = [
            0x30, 0x81, 0x88, 0x0B, 0x00, 0x02, 0x00, 0x07, 0, 0, 0, 5, 0, 0, 0, 4, 0xFF, 0x03,
        ];
        let g = GreSlice::from_slice(&buf).unwrap();
        assert_eq!(g.version(), 1);
        assert_eq!(g.protocol_type(), EtherType::PPP);
        assert_eq!(g.key(), Some(0x0002_0007));
        assert_eq!(g.pptp_payload_len(), Some(2));
        assert_eq!(g.pptp_call_id(), Some(7));
        assert_eq!(g.sequence(), Some(5));
        assert_eq!(g.ack(), Some(4));
        assert_eq!(g.header_len(), 16);
        assert_eq!(g.payload(), &[0xFF, 0x03]);
        // version 1 without key
        assert_eq!(
            GreSlice::from_slice(&[0x10, 0x01, 0x88, 0x0B, 0, 0, 0, 0]),
            Err(DecodeError::Invalid {
                layer: Layer::Gre,
                field: "key present",
                value: 0
            })
        );
    }

    #[test]
    fn routing_sres() {
        // R set: checksum+offset, then one IPv4 SRE of 8 bytes, then null SRE
        let buf = [
            0x40, 0x00, 0x08, 0x00, /* fixed */
            0, 0, 0, 4, /* checksum, offset */
            0x08, 0x00, 0, 8, 10, 0, 0, 1, 10, 0, 0, 2, /* SRE */
            0, 0, 0, 0, /* null SRE */
            0x45,
        ];
        let g = GreSlice::from_slice(&buf).unwrap();
        assert!(g.routing_present());
        assert_eq!(g.offset(), Some(4));
        assert_eq!(g.routing().map(<[u8]>::len), Some(16));
        assert_eq!(g.header_len(), 24);
        assert_eq!(g.payload(), &[0x45]);
        for n in 0..24 {
            assert!(
                GreSlice::from_slice(&buf[..n]).unwrap_err().is_truncated(),
                "{n}"
            );
        }
        // non-terminating SRE list
        let mut long = vec![0x40, 0, 0x08, 0, 0, 0, 0, 0];
        for _ in 0..20 {
            long.extend_from_slice(&[0x08, 0x00, 0, 4, 1, 2, 3, 4]);
        }
        long.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            GreSlice::from_slice(&long),
            Err(DecodeError::Invalid {
                field: "sre count",
                ..
            })
        ));
        // family set but length 0
        let bad = [0x40, 0, 0x08, 0, 0, 0, 0, 0, 0x08, 0x00, 0, 0];
        assert!(GreSlice::from_slice(&bad).is_err());
    }

    #[test]
    fn truncated_at_every_offset() {
        let buf = packet();
        for n in 0..16 {
            assert!(GreSlice::from_slice(&buf[..n]).unwrap_err().is_truncated());
        }
    }

    #[test]
    fn bad_version_is_invalid() {
        assert_eq!(
            GreSlice::from_slice(&[0, 2, 8, 0]),
            Err(DecodeError::Invalid {
                layer: Layer::Gre,
                field: "version",
                value: 2
            })
        );
    }

    #[test]
    fn unknown_values_roundtrip() {
        let g = GreSlice::from_slice(&[0, 0, 0x12, 0x34]).unwrap();
        assert_eq!(g.protocol_type(), EtherType(0x1234));
        assert!(g.payload().is_empty());
    }
}
