//! User Datagram Protocol header (RFC 768; jumbograms RFC 2675).

use super::{DecodeResult, Layer, be16, ensure, invalid, sub_clamped, tail};

/// Zero-copy view of a UDP datagram.
///
/// ```text
/// src_port(16) dst_port(16) | length(16) checksum(16) | payload ...
/// ```
///
/// Lax on lengths: a length larger than the capture is accepted
/// ([`is_truncated`](Self::is_truncated)); a length of 0 (IPv6 jumbogram)
/// means "everything given".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpSlice<'a> {
    data: &'a [u8],
}

impl<'a> UdpSlice<'a> {
    /// Length of the header.
    pub const HEADER_LEN: usize = 8;

    /// Decodes the 8-byte header.
    ///
    /// # Errors
    /// `Truncated` if fewer than 8 bytes are given; `Invalid` if the length
    /// is between 1 and 7.
    pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
        ensure(Layer::Udp, data, 0, Self::HEADER_LEN)?;
        let len = be16(data, 4);
        if len != 0 && usize::from(len) < Self::HEADER_LEN {
            return Err(invalid(Layer::Udp, "length", u32::from(len)));
        }
        Ok(UdpSlice { data })
    }

    /// Source port (bytes 0..2).
    pub fn src_port(&self) -> u16 {
        be16(self.data, 0)
    }

    /// Destination port (bytes 2..4).
    pub fn dst_port(&self) -> u16 {
        be16(self.data, 2)
    }

    /// Length of header and payload (bytes 4..6).
    pub fn length(&self) -> u16 {
        be16(self.data, 4)
    }

    /// Checksum (bytes 6..8); 0 means none over IPv4.
    pub fn checksum(&self) -> u16 {
        be16(self.data, 6)
    }

    /// Length of the header (8).
    pub fn header_len(&self) -> usize {
        Self::HEADER_LEN
    }

    /// `true` when the length field exceeds the data given.
    pub fn is_truncated(&self) -> bool {
        usize::from(self.length()) > self.data.len()
    }

    /// The payload bounded by the length field; everything given when the
    /// length is 0 or exceeds the data.
    pub fn payload(&self) -> &'a [u8] {
        match self.length() {
            0 => tail(self.data, Self::HEADER_LEN),
            n => sub_clamped(self.data, Self::HEADER_LEN, usize::from(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::DecodeError;
    use super::*;
    use pnet_packet::Packet;
    use pnet_packet::udp::{MutableUdpPacket, UdpPacket};

    fn datagram() -> Vec<u8> {
        let mut buf = vec![0u8; 14];
        let mut p = MutableUdpPacket::new(&mut buf).unwrap();
        p.set_source(5353);
        p.set_destination(53);
        p.set_length(12);
        p.set_checksum(0x1234);
        p.set_payload(&[1, 2, 3, 4, /* extra */ 9, 9]);
        buf
    }

    #[test]
    fn parse_valid_against_pnet() {
        let buf = datagram();
        let u = UdpSlice::from_slice(&buf).unwrap();
        let p = UdpPacket::new(&buf).unwrap();
        assert_eq!(u.src_port(), p.get_source());
        assert_eq!(u.dst_port(), 53);
        assert_eq!(u.length(), 12);
        assert_eq!(u.checksum(), 0x1234);
        assert_eq!(u.header_len(), 8);
        assert!(!u.is_truncated());
        assert_eq!(u.payload(), &[1, 2, 3, 4]);
        assert_eq!(u.payload(), &p.payload()[..4]);
    }

    #[test]
    fn truncated_at_every_offset() {
        let buf = datagram();
        for n in 0..8 {
            assert!(UdpSlice::from_slice(&buf[..n]).unwrap_err().is_truncated());
        }
        for n in 8..12 {
            let u = UdpSlice::from_slice(&buf[..n]).unwrap();
            assert!(u.is_truncated());
            assert_eq!(u.payload(), &buf[8..n]);
        }
    }

    #[test]
    fn bad_and_zero_length() {
        let mut b = datagram();
        b[5] = 7;
        assert_eq!(
            UdpSlice::from_slice(&b),
            Err(DecodeError::Invalid {
                layer: Layer::Udp,
                field: "length",
                value: 7
            })
        );
        b[5] = 0;
        let u = UdpSlice::from_slice(&b).unwrap();
        assert_eq!(u.payload().len(), 6);
        assert!(!u.is_truncated());
    }
}
