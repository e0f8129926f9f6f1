//! Internet Protocol version 6 fixed header (RFC 8200 section 3).

use std::net::Ipv6Addr;

use super::{DecodeResult, Layer, be16, be32, byte, ensure, invalid, read_array, sub_clamped};

/// Zero-copy view of an IPv6 packet (fixed 40-byte header).
///
/// ```text
/// ver(4) tc(8) flow(20) | payload_len(16) next_header(8) hop_limit(8)
/// src(128) | dst(128) | payload ...
/// ```
///
/// Lax on lengths like [`Ipv4Slice`](super::Ipv4Slice): a payload length
/// larger than the capture is accepted ([`is_truncated`](Self::is_truncated)),
/// and 0 (jumbogram or TSO) means "everything captured".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Slice<'a> {
    data: &'a [u8],
}

impl<'a> Ipv6Slice<'a> {
    /// Length of the fixed header.
    pub const HEADER_LEN: usize = 40;

    /// Decodes the fixed IPv6 header.
    ///
    /// # Errors
    /// `Invalid` if the version is not 6; `Truncated` if fewer than 40 bytes
    /// are given.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Ipv6, data, 0, 1)?;
        let v = byte(data, 0) >> 4;
        if v != 6 {
            return Err(invalid(Layer::Ipv6, "version", u32::from(v)));
        }
        ensure(Layer::Ipv6, data, 0, Self::HEADER_LEN)?;
        Ok(Ipv6Slice { data })
    }

    /// Version (always 6).
    pub fn version(&self) -> u8 {
        byte(self.data, 0) >> 4
    }

    /// Traffic class (bits 4..12).
    pub fn traffic_class(&self) -> u8 {
        ((be16(self.data, 0) >> 4) & 0xFF) as u8
    }

    /// Flow label (low 20 bits of bytes 0..4).
    pub fn flow_label(&self) -> u32 {
        be32(self.data, 0) & 0x000F_FFFF
    }

    /// Payload length (bytes 4..6, big-endian), extension headers included.
    pub fn payload_len(&self) -> u16 {
        be16(self.data, 4)
    }

    /// Next header (byte 6): the first extension header or the transport.
    pub fn next_header(&self) -> u8 {
        byte(self.data, 6)
    }

    /// Hop limit (byte 7).
    pub fn hop_limit(&self) -> u8 {
        byte(self.data, 7)
    }

    /// Source address (bytes 8..24).
    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(read_array::<16>(self.data, 8).unwrap_or_default())
    }

    /// Destination address (bytes 24..40).
    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(read_array::<16>(self.data, 24).unwrap_or_default())
    }

    /// The raw fixed header bytes.
    pub fn header(&self) -> &'a [u8] {
        sub_clamped(self.data, 0, Self::HEADER_LEN)
    }

    /// Length of the fixed header (40).
    pub fn header_len(&self) -> usize {
        Self::HEADER_LEN
    }

    /// `true` when the payload length exceeds the captured data.
    pub fn is_truncated(&self) -> bool {
        Self::HEADER_LEN + usize::from(self.payload_len()) > self.data.len()
    }

    /// The bytes after the fixed header, bounded by the payload length;
    /// everything captured when it is 0 (jumbogram, TSO) or exceeds the
    /// capture.
    pub fn payload(&self) -> &'a [u8] {
        let end = match self.payload_len() {
            0 => self.data.len(),
            n => Self::HEADER_LEN + usize::from(n),
        };
        sub_clamped(self.data, Self::HEADER_LEN, end)
    }
}

#[cfg(test)]
mod tests {
    use super::super::DecodeError;
    use super::*;
    use pnet_packet::Packet;
    use pnet_packet::ip::IpNextHeaderProtocols;
    use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};

    fn packet() -> Vec<u8> {
        let mut buf = vec![0u8; 46];
        let mut p = MutableIpv6Packet::new(&mut buf).unwrap();
        p.set_version(6);
        p.set_traffic_class(0xB8);
        p.set_flow_label(0xABCDE);
        p.set_payload_length(4);
        p.set_next_header(IpNextHeaderProtocols::Tcp);
        p.set_hop_limit(255);
        p.set_source("2001:db8::1".parse().unwrap());
        p.set_destination("fe80::2".parse().unwrap());
        p.set_payload(&[1, 2, 3, 4]); // then 2 bytes of padding (zeros)
        buf
    }

    #[test]
    fn parse_valid_against_pnet() {
        let buf = packet();
        let ip = Ipv6Slice::from_slice(&buf).unwrap();
        let p = Ipv6Packet::new(&buf).unwrap();
        assert_eq!(ip.version(), 6);
        assert_eq!(ip.traffic_class(), 0xB8);
        assert_eq!(ip.flow_label(), 0xABCDE);
        assert_eq!(ip.payload_len(), 4);
        assert_eq!(ip.next_header(), 6);
        assert_eq!(ip.hop_limit(), 255);
        assert_eq!(ip.src(), p.get_source());
        assert_eq!(ip.dst(), "fe80::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.header(), &buf[..40]);
        assert_eq!(ip.header_len(), 40);
        assert!(!ip.is_truncated());
        assert_eq!(ip.payload(), &[1, 2, 3, 4]);
        assert_eq!(ip.payload(), p.payload());
    }

    #[test]
    fn truncated_at_every_offset() {
        let buf = packet();
        for n in 0..40 {
            assert!(Ipv6Slice::from_slice(&buf[..n]).unwrap_err().is_truncated());
        }
        for n in 40..44 {
            let ip = Ipv6Slice::from_slice(&buf[..n]).unwrap();
            assert!(ip.is_truncated());
            assert_eq!(ip.payload(), &buf[40..n]);
        }
    }

    #[test]
    fn bad_version_is_invalid() {
        let mut b = packet();
        b[0] = 0x45;
        assert_eq!(
            Ipv6Slice::from_slice(&b),
            Err(DecodeError::Invalid {
                layer: Layer::Ipv6,
                field: "version",
                value: 4
            })
        );
    }

    #[test]
    fn payload_len_zero_takes_everything() {
        let mut b = packet();
        b[4] = 0;
        b[5] = 0;
        let ip = Ipv6Slice::from_slice(&b).unwrap();
        assert_eq!(ip.payload().len(), 6);
        assert!(!ip.is_truncated());
    }

    #[test]
    fn unknown_values_roundtrip() {
        let mut b = packet();
        b[6] = 250;
        assert_eq!(Ipv6Slice::from_slice(&b).unwrap().next_header(), 250);
    }
}
