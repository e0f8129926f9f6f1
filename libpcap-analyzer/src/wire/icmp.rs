//! Internet Control Message Protocol for IPv4 (RFC 792) and IPv6
//! (RFC 4443).

use super::checksum::internet_checksum;
use super::{DecodeResult, Layer, be16, byte, ensure, read_array, tail};

/// Length of the common ICMP/ICMPv6 header: type, code, checksum and the
/// 4-byte rest of header.
const HEADER_LEN: usize = 8;

macro_rules! icmp_common {
    ($layer:expr) => {
        /// Length of the header (type, code, checksum, rest of header).
        pub const HEADER_LEN: usize = HEADER_LEN;

        /// Decodes the 8-byte header.
        ///
        /// # Errors
        /// `Truncated` if fewer than 8 bytes are given.
        pub fn from_slice(data: &'a [u8]) -> DecodeResult<Self> {
            ensure($layer, data, 0, HEADER_LEN)?;
            Ok(Self { data })
        }

        /// Message type (byte 0).
        pub fn icmp_type(&self) -> u8 {
            byte(self.data, 0)
        }

        /// Code (byte 1).
        pub fn code(&self) -> u8 {
            byte(self.data, 1)
        }

        /// Checksum (bytes 2..4).
        pub fn checksum(&self) -> u16 {
            be16(self.data, 2)
        }

        /// Rest of header (bytes 4..8): identifier/sequence, MTU, pointer...
        pub fn rest_of_header(&self) -> [u8; 4] {
            read_array(self.data, 4).unwrap_or_default()
        }

        /// Echo identifier (bytes 4..6) for echo request/reply.
        pub fn echo_id(&self) -> Option<u16> {
            self.is_echo().then(|| be16(self.data, 4))
        }

        /// Echo sequence number (bytes 6..8) for echo request/reply.
        pub fn echo_seq(&self) -> Option<u16> {
            self.is_echo().then(|| be16(self.data, 6))
        }

        /// Length of the header (8).
        pub fn header_len(&self) -> usize {
            HEADER_LEN
        }

        /// The raw message bytes, header included.
        pub fn message(&self) -> &'a [u8] {
            self.data
        }

        /// The bytes after the 8-byte header (for error messages: the
        /// invoking packet).
        pub fn payload(&self) -> &'a [u8] {
            tail(self.data, HEADER_LEN)
        }
    };
}

/// Zero-copy view of an ICMP (IPv4) message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpSlice<'a> {
    data: &'a [u8],
}

impl<'a> IcmpSlice<'a> {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Source quench.
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAMETER_PROBLEM: u8 = 12;

    icmp_common!(Layer::Icmp);

    /// `true` for error messages (types 3, 4, 5, 11, 12), which carry the
    /// invoking IP header in their payload.
    pub fn is_error(&self) -> bool {
        matches!(self.icmp_type(), 3 | 4 | 5 | 11 | 12)
    }

    /// `true` for echo request and reply.
    pub fn is_echo(&self) -> bool {
        matches!(self.icmp_type(), Self::ECHO_REPLY | Self::ECHO_REQUEST)
    }

    /// `true` if the checksum over the whole message is correct (only
    /// meaningful on a complete message).
    pub fn verify_checksum(&self) -> bool {
        internet_checksum(self.data) == 0
    }
}

/// Zero-copy view of an ICMPv6 message. Its checksum covers a
/// pseudo-header: see [`verify_transport_checksum`](super::verify_transport_checksum)
/// with protocol 58.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Slice<'a> {
    data: &'a [u8],
}

impl<'a> Icmpv6Slice<'a> {
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: u8 = 1;
    /// Packet too big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem.
    pub const PARAMETER_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Router solicitation.
    pub const ROUTER_SOLICITATION: u8 = 133;
    /// Router advertisement.
    pub const ROUTER_ADVERTISEMENT: u8 = 134;
    /// Neighbor solicitation.
    pub const NEIGHBOR_SOLICITATION: u8 = 135;
    /// Neighbor advertisement.
    pub const NEIGHBOR_ADVERTISEMENT: u8 = 136;

    icmp_common!(Layer::Icmpv6);

    /// `true` for error messages (type below 128).
    pub fn is_error(&self) -> bool {
        self.icmp_type() < 128
    }

    /// `true` for echo request and reply.
    pub fn is_echo(&self) -> bool {
        matches!(self.icmp_type(), Self::ECHO_REQUEST | Self::ECHO_REPLY)
    }

    /// MTU (bytes 4..8) of a Packet Too Big message.
    pub fn mtu(&self) -> Option<u32> {
        (self.icmp_type() == Self::PACKET_TOO_BIG)
            .then(|| u32::from_be_bytes(self.rest_of_header()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::Packet;
    use pnet_packet::icmp::echo_request::MutableEchoRequestPacket;
    use pnet_packet::icmp::{IcmpPacket, IcmpTypes};
    use pnet_packet::icmpv6::{Icmpv6Packet, Icmpv6Types, MutableIcmpv6Packet};
    use std::net::Ipv6Addr;

    fn echo() -> Vec<u8> {
        let mut buf = vec![0u8; 12];
        let mut p = MutableEchoRequestPacket::new(&mut buf).unwrap();
        p.set_icmp_type(IcmpTypes::EchoRequest);
        p.set_identifier(0x1234);
        p.set_sequence_number(7);
        p.set_payload(b"ping");
        let c = pnet_packet::icmp::checksum(&IcmpPacket::new(p.packet()).unwrap());
        p.set_checksum(c);
        buf
    }

    #[test]
    fn parse_valid_v4_against_pnet() {
        let buf = echo();
        let i = IcmpSlice::from_slice(&buf).unwrap();
        let p = IcmpPacket::new(&buf).unwrap();
        assert_eq!(i.icmp_type(), IcmpSlice::ECHO_REQUEST);
        assert_eq!(i.code(), 0);
        assert_eq!(i.checksum(), p.get_checksum());
        assert!(i.verify_checksum());
        assert_eq!(i.rest_of_header(), [0x12, 0x34, 0, 7]);
        assert_eq!(i.echo_id(), Some(0x1234));
        assert_eq!(i.echo_seq(), Some(7));
        assert!(!i.is_error());
        assert!(i.is_echo());
        assert_eq!(i.header_len(), 8);
        assert_eq!(i.message(), &buf[..]);
        assert_eq!(i.payload(), b"ping");
    }

    #[test]
    fn v4_error_carries_invoking_packet() {
        // dest unreachable, port unreachable, unused, then an IPv4 header start
        let buf = [3, 3, 0, 0, 0, 0, 0, 0, 0x45, 0];
        let i = IcmpSlice::from_slice(&buf).unwrap();
        assert!(i.is_error());
        assert_eq!(i.echo_id(), None);
        assert_eq!(i.echo_seq(), None);
        assert_eq!(i.payload(), &[0x45, 0]);
        for t in [4, 5, 11, 12] {
            let b = [t, 0, 0, 0, 0, 0, 0, 0];
            assert!(IcmpSlice::from_slice(&b).unwrap().is_error());
        }
    }

    #[test]
    fn parse_valid_v6_against_pnet() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let dst: Ipv6Addr = "fe80::2".parse().unwrap();
        let mut buf = vec![0u8; 10];
        {
            let mut p = MutableIcmpv6Packet::new(&mut buf).unwrap();
            p.set_icmpv6_type(Icmpv6Types::EchoReply);
            p.set_payload(&[0, 5, 0, 6, 0xAA, 0xBB]);
            let c = pnet_packet::icmpv6::checksum(&p.to_immutable(), &src, &dst);
            p.set_checksum(c);
        }
        let i = Icmpv6Slice::from_slice(&buf).unwrap();
        let p = Icmpv6Packet::new(&buf).unwrap();
        assert_eq!(i.icmp_type(), Icmpv6Slice::ECHO_REPLY);
        assert_eq!(i.checksum(), p.get_checksum());
        assert!(super::super::verify_transport_checksum(
            src.into(),
            dst.into(),
            58,
            i.message()
        ));
        assert!(!i.is_error());
        assert_eq!(i.echo_id(), Some(5));
        assert_eq!(i.echo_seq(), Some(6));
        assert_eq!(i.mtu(), None);
        assert_eq!(i.payload(), &[0xAA, 0xBB]);
        let ptb = [2, 0, 0, 0, 0, 0, 0x05, 0xDC];
        let i = Icmpv6Slice::from_slice(&ptb).unwrap();
        assert!(i.is_error());
        assert_eq!(i.mtu(), Some(1500));
    }

    #[test]
    fn truncated_at_every_offset() {
        let buf = echo();
        for n in 0..8 {
            assert!(IcmpSlice::from_slice(&buf[..n]).unwrap_err().is_truncated());
            let e = Icmpv6Slice::from_slice(&buf[..n]).unwrap_err();
            assert_eq!(e.layer(), Layer::Icmpv6);
        }
    }

    #[test]
    fn unknown_values_roundtrip() {
        let b = [200, 99, 0, 0, 1, 2, 3, 4];
        let i = IcmpSlice::from_slice(&b).unwrap();
        assert_eq!((i.icmp_type(), i.code()), (200, 99));
        assert!(!i.is_error() && !i.is_echo());
        assert_eq!(i.rest_of_header(), [1, 2, 3, 4]);
        let i = Icmpv6Slice::from_slice(&b).unwrap();
        assert!(!i.is_error());
    }
}
