//! Internet checksum (RFC 1071) and the TCP/UDP pseudo-headers (RFC 9293
//! section 3.1, RFC 768, RFC 8200 section 8.1).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One's complement sum of `data` as big-endian 16-bit words, an odd
/// trailing byte padded with zero.
///
/// The carries are folded, so the result is at most `0xFFFF` and several
/// results can be added together in a `u32` before [`fold`].
pub fn sum16(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        if let [a, b] = w {
            acc += u64::from(u16::from_be_bytes([*a, *b]));
        }
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    // fold the u64 down to 16 bits
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    acc as u32
}

/// Folds the carries of a 32-bit one's complement accumulation to 16 bits.
pub fn fold(mut sum: u32) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

/// The Internet checksum of `data` (the one's complement of [`sum16`]).
///
/// Over a header whose checksum field is correct, the result is 0.
pub fn internet_checksum(data: &[u8]) -> u16 {
    !fold(sum16(data))
}

/// Sum of the IPv4 pseudo-header: source, destination, zero, protocol and
/// the transport length (`len` is the TCP/UDP segment length).
pub fn pseudo_header_sum_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u32) -> u32 {
    let mut buf = [0u8; 12];
    let (addrs, rest) = buf.split_at_mut(8);
    let (s, d) = addrs.split_at_mut(4);
    s.copy_from_slice(&src.octets());
    d.copy_from_slice(&dst.octets());
    let l = len.to_be_bytes();
    // zero, protocol, then the length; lengths above 0xFFFF (TSO) are summed
    // as two words so they still fold correctly.
    rest.copy_from_slice(&[0, proto, l[2], l[3]]);
    sum16(&buf) + u32::from(u16::from_be_bytes([l[0], l[1]]))
}

/// Sum of the IPv6 pseudo-header: source, destination, 32-bit upper-layer
/// length, three zero bytes and the next header.
pub fn pseudo_header_sum_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: u32) -> u32 {
    let mut buf = [0u8; 40];
    let (s, rest) = buf.split_at_mut(16);
    let (d, rest) = rest.split_at_mut(16);
    s.copy_from_slice(&src.octets());
    d.copy_from_slice(&dst.octets());
    let l = len.to_be_bytes();
    rest.copy_from_slice(&[l[0], l[1], l[2], l[3], 0, 0, 0, proto]);
    sum16(&buf)
}

/// Verifies the checksum of a TCP, UDP, ICMPv6 (or any pseudo-header
/// protected) `segment` carried between `src` and `dst`.
///
/// `segment` must be the whole transport segment, header included, checksum
/// field as received. Returns `false` if the families of `src` and `dst`
/// differ. A UDP checksum of zero over IPv4 means "no checksum" (RFC 768) and
/// is accepted.
pub fn verify_transport_checksum(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> bool {
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    let pseudo = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            if proto == 17 && segment.get(6..8) == Some(&[0, 0]) {
                return true;
            }
            pseudo_header_sum_v4(s, d, proto, len)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_header_sum_v6(s, d, proto, len),
        _ => return false,
    };
    fold(pseudo + sum16(segment)) == 0xFFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum16(&d)), 0xddf2);
        assert_eq!(internet_checksum(&d), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum16(&[0x12]), 0x1200);
        assert_eq!(sum16(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(sum16(&[]), 0);
    }

    #[test]
    fn large_input_folds() {
        let d = vec![0xFFu8; 100_000];
        let s = sum16(&d);
        assert!(s <= 0xFFFF);
        assert_eq!(fold(s), 0xFFFF);
    }

    #[test]
    fn ipv4_header_checksum_known_value() {
        // Classic example header (Wikipedia "IPv4 header checksum"): b861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&h), 0xb861);
        let mut ok = h;
        ok[10] = 0xb8;
        ok[11] = 0x61;
        assert_eq!(internet_checksum(&ok), 0);
    }

    #[test]
    fn udp_v4_checksum_against_pnet() {
        use pnet_packet::udp::{MutableUdpPacket, ipv4_checksum};
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let mut buf = [0u8; 13];
        {
            let mut p = MutableUdpPacket::new(&mut buf).unwrap();
            p.set_source(1234);
            p.set_destination(53);
            p.set_length(13);
            p.set_payload(b"hello");
            let c = ipv4_checksum(&p.to_immutable(), &src, &dst);
            p.set_checksum(c);
        }
        assert!(verify_transport_checksum(src.into(), dst.into(), 17, &buf));
        buf[9] ^= 1;
        assert!(!verify_transport_checksum(src.into(), dst.into(), 17, &buf));
        // zero checksum over IPv4 UDP: not computed, accepted
        buf[6] = 0;
        buf[7] = 0;
        assert!(verify_transport_checksum(src.into(), dst.into(), 17, &buf));
    }

    #[test]
    fn tcp_v6_checksum_against_pnet() {
        use pnet_packet::tcp::{MutableTcpPacket, ipv6_checksum};
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut buf = [0u8; 23];
        {
            let mut p = MutableTcpPacket::new(&mut buf).unwrap();
            p.set_source(40000);
            p.set_destination(80);
            p.set_sequence(1);
            p.set_data_offset(5);
            p.set_flags(0x18);
            p.set_window(100);
            p.set_payload(b"GET");
            let c = ipv6_checksum(&p.to_immutable(), &src, &dst);
            p.set_checksum(c);
        }
        assert!(verify_transport_checksum(src.into(), dst.into(), 6, &buf));
        assert!(!verify_transport_checksum(src.into(), dst.into(), 17, &buf));
        assert!(!verify_transport_checksum(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            dst.into(),
            6,
            &buf
        ));
    }

    #[test]
    fn pseudo_v4_long_length_folds() {
        let a = Ipv4Addr::new(1, 2, 3, 4);
        let s = pseudo_header_sum_v4(a, a, 6, 0x1_0002);
        let t = pseudo_header_sum_v4(a, a, 6, 0x0003);
        assert_eq!(fold(s), fold(t));
    }
}
