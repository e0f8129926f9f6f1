//! Building packets: Ethernet, VLAN, IPv4/IPv6 (with fragmentation), TCP,
//! UDP, ICMP, GRE, VXLAN and Geneve, with valid lengths and checksums.
//!
//! Used to make test fixtures and sample captures, and by tools that
//! synthesise headers (pcap-rewrite). Every function returns the bytes of
//! its layer followed by the payload given.
//!
//! ```
//! use libpcap_analyzer::build::*;
//! use std::net::Ipv4Addr;
//! let (c, s) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
//! let udp = udp(c.into(), s.into(), 5353, 53, b"hello");
//! let ip = ipv4(c, s, 17, 1, &udp);
//! let frame = ethernet(MAC_A, MAC_B, 0x0800, &ip);
//! assert_eq!(frame.len(), 14 + 20 + 8 + 5);
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A locally administered MAC address for examples and tests.
pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
/// Another locally administered MAC address.
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// TCP flag bits for [`tcp`].
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    crate::wire::checksum::internet_checksum(data)
}

/// The checksum of a TCP or UDP segment with its pseudo-header (an IPv4
/// address paired with an IPv6 one is taken as IPv4-mapped).
fn transport_checksum(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    use crate::wire::checksum::{fold, pseudo_header_sum_v4, pseudo_header_sum_v6, sum16};
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    let pseudo = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_header_sum_v4(s, d, proto, len),
        (s, d) => {
            let to6 = |a: IpAddr| match a {
                IpAddr::V4(v) => v.to_ipv6_mapped(),
                IpAddr::V6(v) => v,
            };
            pseudo_header_sum_v6(to6(s), to6(d), proto, len)
        }
    };
    !fold(sum16(segment) + pseudo)
}

/// Ethernet II header + payload.
pub fn ethernet(src: [u8; 6], dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(14 + payload.len());
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// An 802.1Q tag (TCI with `vid`, then the inner ethertype) + payload; put it
/// after an Ethernet header of ethertype 0x8100 (or 0x88A8 for QinQ).
pub fn vlan_tag(vid: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + payload.len());
    v.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// An IPv4 header (no options, DF clear, TTL 64) + payload.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    ipv4_fragment(src, dst, proto, id, 0, false, payload)
}

/// An IPv4 header with a fragment offset (in bytes, a multiple of 8) and
/// the More Fragments flag + payload.
pub fn ipv4_fragment(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    id: u16,
    offset_bytes: u32,
    more: bool,
    payload: &[u8],
) -> Vec<u8> {
    let total = (20 + payload.len()).min(usize::from(u16::MAX)) as u16;
    let frag = ((offset_bytes / 8) as u16 & 0x1fff) | if more { 0x2000 } else { 0 };
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// Splits a transport datagram into IPv4 fragments of at most `mtu_payload`
/// bytes each (rounded down to a multiple of 8), in order.
pub fn ipv4_fragments(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    id: u16,
    datagram: &[u8],
    mtu_payload: usize,
) -> Vec<Vec<u8>> {
    let step = (mtu_payload / 8).max(1) * 8;
    let mut out = Vec::new();
    let mut off = 0;
    while off < datagram.len() || (off == 0 && datagram.is_empty()) {
        let end = (off + step).min(datagram.len());
        let more = end < datagram.len();
        out.push(ipv4_fragment(
            src,
            dst,
            proto,
            id,
            off as u32,
            more,
            &datagram[off..end],
        ));
        if !more {
            break;
        }
        off = end;
    }
    out
}

/// An IPv6 header (hop limit 64) + payload.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    h.extend_from_slice(&[next_header, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// An IPv6 Fragment extension header + payload.
pub fn ipv6_fragment_header(
    next_header: u8,
    offset_bytes: u32,
    more: bool,
    id: u32,
    payload: &[u8],
) -> Vec<u8> {
    let off = ((offset_bytes / 8) as u16) << 3 | u16::from(more);
    let mut h = vec![next_header, 0];
    h.extend_from_slice(&off.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// A TCP header (no options, window 65535) + payload, checksummed for the
/// addresses given.
#[allow(clippy::too_many_arguments)] // the fields of a TCP header
pub fn tcp(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut h = Vec::with_capacity(20 + payload.len());
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&ack.to_be_bytes());
    h.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    h.extend_from_slice(payload);
    let c = transport_checksum(src, dst, 6, &h);
    h[16..18].copy_from_slice(&c.to_be_bytes());
    h
}

/// A UDP header + payload, checksummed for the addresses given.
pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()).min(usize::from(u16::MAX)) as u16;
    let mut h = Vec::with_capacity(8 + payload.len());
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    let mut c = transport_checksum(src, dst, 17, &h);
    if c == 0 {
        c = 0xffff;
    }
    h[6..8].copy_from_slice(&c.to_be_bytes());
    h
}

/// An ICMPv4 echo request (type 8) or reply (type 0) + payload.
pub fn icmpv4_echo(reply: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![if reply { 0 } else { 8 }, 0, 0, 0];
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(payload);
    let c = checksum(&h);
    h[2..4].copy_from_slice(&c.to_be_bytes());
    h
}

/// A GRE header (version 0, optional key) + payload.
pub fn gre(protocol: u16, key: Option<u32>, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![if key.is_some() { 0x20 } else { 0 }, 0];
    h.extend_from_slice(&protocol.to_be_bytes());
    if let Some(k) = key {
        h.extend_from_slice(&k.to_be_bytes());
    }
    h.extend_from_slice(payload);
    h
}

/// A VXLAN header (I flag set) + inner Ethernet frame.
pub fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut h = vec![0x08, 0, 0, 0];
    h.extend_from_slice(&((vni & 0x00ff_ffff) << 8).to_be_bytes());
    h.extend_from_slice(inner);
    h
}

/// A Geneve header without options + inner payload of `protocol`.
pub fn geneve(vni: u32, protocol: u16, inner: &[u8]) -> Vec<u8> {
    let mut h = vec![0, 0];
    h.extend_from_slice(&protocol.to_be_bytes());
    h.extend_from_slice(&((vni & 0x00ff_ffff) << 8).to_be_bytes());
    h.extend_from_slice(inner);
    h
}

/// A whole Ethernet/IPv4 or Ethernet/IPv6 frame around a transport segment
/// (`proto` and `segment`), for the common case.
pub fn eth_ip(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            ethernet(MAC_A, MAC_B, 0x0800, &ipv4(s, d, proto, 1, segment))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            ethernet(MAC_A, MAC_B, 0x86dd, &ipv6(s, d, proto, segment))
        }
        (s, d) => {
            let to6 = |a: IpAddr| match a {
                IpAddr::V4(v) => v.to_ipv6_mapped(),
                IpAddr::V6(v) => v,
            };
            ethernet(MAC_A, MAC_B, 0x86dd, &ipv6(to6(s), to6(d), proto, segment))
        }
    }
}

/// An Ethernet/IPv4/UDP frame from `src_mac` to `dst_mac`, optionally
/// 802.1Q-tagged (`vlan`: the VLAN id), with valid checksums (live tests
/// send these between network namespaces).
#[allow(clippy::too_many_arguments)] // a frame's fields, named at the call
pub fn eth_udp4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    vlan: Option<u16>,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let (s, d) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
    let ip = ipv4(s, d, 17, 1, &udp(s.into(), d.into(), sport, dport, payload));
    match vlan {
        Some(vid) => ethernet(src_mac, dst_mac, 0x8100, &vlan_tag(vid, 0x0800, &ip)),
        None => ethernet(src_mac, dst_mac, 0x0800, &ip),
    }
}

/// An Ethernet/IPv4/TCP frame from `src_mac` to `dst_mac` (20-byte TCP
/// header, valid checksums).
#[allow(clippy::too_many_arguments)] // a frame's fields, named at the call
pub fn eth_tcp4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let (s, d) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
    let seg = tcp(s.into(), d.into(), sport, dport, seq, ack, flags, payload);
    ethernet(src_mac, dst_mac, 0x0800, &ipv4(s, d, 6, 1, &seg))
}

/// A DNS name in wire format (labels, no compression).
fn dns_name(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        v.push(label.len().min(63) as u8);
        v.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    v.push(0);
    v
}

/// A DNS query (RD set) for `name` and `qtype` (1 A, 28 AAAA, …).
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    v.extend_from_slice(&dns_name(name));
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v
}

/// A DNS response repeating the question, with one A or AAAA answer per
/// address (the owner name compressed to the question's), and `rcode`.
pub fn dns_response(
    id: u16,
    name: &str,
    qtype: u16,
    rcode: u8,
    answers: &[IpAddr],
    ttl: u32,
) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&[0x81, 0x80 | (rcode & 0x0f), 0, 1]);
    v.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    v.extend_from_slice(&dns_name(name));
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    for a in answers {
        v.extend_from_slice(&[0xc0, 0x0c]);
        let (t, data) = match a {
            IpAddr::V4(x) => (1u16, x.octets().to_vec()),
            IpAddr::V6(x) => (28u16, x.octets().to_vec()),
        };
        v.extend_from_slice(&t.to_be_bytes());
        v.extend_from_slice(&1u16.to_be_bytes());
        v.extend_from_slice(&ttl.to_be_bytes());
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(&data);
    }
    v
}

fn tls_record(handshake_type: u8, body: &[u8]) -> Vec<u8> {
    let mut hs = vec![handshake_type];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

fn tls_ext(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut v = kind.to_be_bytes().to_vec();
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// A TLS 1.2-framed ClientHello record offering TLS 1.3 and 1.2, three
/// cipher suites, with SNI `sni` and the ALPN protocols given.
pub fn tls_client_hello(sni: &str, alpn: &[&str]) -> Vec<u8> {
    let mut b = vec![0x03, 0x03];
    b.extend((0u8..32).map(|i| i.wrapping_mul(7)));
    b.push(0); // session id
    let suites: [u16; 3] = [0x1301, 0xc02f, 0x009c];
    b.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        b.extend_from_slice(&s.to_be_bytes());
    }
    b.extend_from_slice(&[1, 0]); // compression: null
    let mut ext = Vec::new();
    let mut sn = vec![0u8];
    sn.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    sn.extend_from_slice(sni.as_bytes());
    let mut snl = (sn.len() as u16).to_be_bytes().to_vec();
    snl.extend_from_slice(&sn);
    ext.extend(tls_ext(0, &snl));
    ext.extend(tls_ext(10, &[0, 4, 0, 0x1d, 0, 0x17])); // groups x25519, secp256r1
    ext.extend(tls_ext(11, &[1, 0])); // ec point formats
    ext.extend(tls_ext(13, &[0, 4, 0x04, 0x03, 0x08, 0x04])); // signature algorithms
    if !alpn.is_empty() {
        let mut l = Vec::new();
        for p in alpn {
            l.push(p.len() as u8);
            l.extend_from_slice(p.as_bytes());
        }
        let mut a = (l.len() as u16).to_be_bytes().to_vec();
        a.extend_from_slice(&l);
        ext.extend(tls_ext(16, &a));
    }
    ext.extend(tls_ext(43, &[4, 0x03, 0x04, 0x03, 0x03])); // supported versions
    b.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    b.extend_from_slice(&ext);
    tls_record(1, &b)
}

/// A TLS 1.2 ServerHello record choosing `cipher` (and `alpn` when given).
pub fn tls_server_hello(cipher: u16, alpn: Option<&str>) -> Vec<u8> {
    let mut b = vec![0x03, 0x03];
    b.extend((0u8..32).map(|i| i.wrapping_mul(13)));
    b.push(0);
    b.extend_from_slice(&cipher.to_be_bytes());
    b.push(0);
    let mut ext = Vec::new();
    ext.extend(tls_ext(0xff01, &[0]));
    if let Some(p) = alpn {
        let mut l = vec![p.len() as u8];
        l.extend_from_slice(p.as_bytes());
        let mut a = (l.len() as u16).to_be_bytes().to_vec();
        a.extend_from_slice(&l);
        ext.extend(tls_ext(16, &a));
    }
    b.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    b.extend_from_slice(&ext);
    tls_record(2, &b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::Packet as _;
    use pnet_packet::ethernet::EthernetPacket;
    use pnet_packet::ipv4::Ipv4Packet;
    use pnet_packet::ipv6::Ipv6Packet;
    use pnet_packet::tcp::TcpPacket;
    use pnet_packet::udp::UdpPacket;

    const C: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const S: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

    #[test]
    fn frames_between_given_macs_agree_with_pnet() {
        let (mac_s, mac_d) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 0x99]);
        let f = eth_udp4(
            mac_s,
            mac_d,
            None,
            C.octets(),
            S.octets(),
            1000,
            53,
            b"hello",
        );
        let e = EthernetPacket::new(&f).unwrap();
        assert_eq!(
            (e.get_source().octets(), e.get_destination().octets()),
            (mac_s, mac_d)
        );
        let ip = Ipv4Packet::new(e.payload()).unwrap();
        assert_eq!(ip.get_checksum(), pnet_packet::ipv4::checksum(&ip));
        let u = UdpPacket::new(ip.payload()).unwrap();
        assert_eq!(
            u.get_checksum(),
            pnet_packet::udp::ipv4_checksum(&u, &C, &S)
        );
        assert_eq!(
            (u.get_source(), u.get_destination(), u.payload()),
            (1000, 53, &b"hello"[..])
        );
        let v = eth_udp4(mac_s, mac_d, Some(100), C.octets(), S.octets(), 1, 2, b"");
        assert_eq!(&v[12..18], &[0x81, 0x00, 0x00, 100, 0x08, 0x00]);
        let t = eth_tcp4(
            mac_s,
            mac_d,
            C.octets(),
            S.octets(),
            1,
            2,
            7,
            0,
            flags::SYN,
            b"x",
        );
        let ip = Ipv4Packet::new(&t[14..]).unwrap();
        assert_eq!(ip.get_checksum(), pnet_packet::ipv4::checksum(&ip));
        let tcp = TcpPacket::new(ip.payload()).unwrap();
        assert_eq!(
            tcp.get_checksum(),
            pnet_packet::tcp::ipv4_checksum(&tcp, &C, &S)
        );
        assert_eq!((tcp.get_sequence(), tcp.get_flags()), (7, flags::SYN));
    }

    // pnet_packet is an independent implementation: it checks our builder.
    #[test]
    fn ipv4_udp_frame_agrees_with_pnet() {
        let u = udp(C.into(), S.into(), 1234, 53, b"abc");
        let f = ethernet(MAC_A, MAC_B, 0x0800, &ipv4(C, S, 17, 7, &u));
        let e = EthernetPacket::new(&f).unwrap();
        assert_eq!(e.get_ethertype().0, 0x0800);
        let ip = Ipv4Packet::new(e.payload()).unwrap();
        assert_eq!(ip.get_checksum(), pnet_packet::ipv4::checksum(&ip));
        assert_eq!(
            (
                ip.get_source(),
                ip.get_destination(),
                ip.get_identification()
            ),
            (C, S, 7)
        );
        assert_eq!(ip.get_total_length(), 31);
        let up = UdpPacket::new(ip.payload()).unwrap();
        assert_eq!(
            up.get_checksum(),
            pnet_packet::udp::ipv4_checksum(&up, &C, &S)
        );
        assert_eq!(
            (up.get_source(), up.get_destination(), up.payload()),
            (1234, 53, &b"abc"[..])
        );
    }

    #[test]
    fn tcp_over_ipv6_agrees_with_pnet() {
        let (a, b) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        let t = tcp(
            IpAddr::V6(a),
            IpAddr::V6(b),
            40000,
            443,
            1000,
            0,
            flags::SYN,
            b"",
        );
        let p = ipv6(a, b, 6, &t);
        let ip = Ipv6Packet::new(&p).unwrap();
        assert_eq!(ip.get_payload_length(), 20);
        let tp = TcpPacket::new(ip.payload()).unwrap();
        assert_eq!(
            tp.get_checksum(),
            pnet_packet::tcp::ipv6_checksum(&tp, &a, &b)
        );
        assert_eq!((tp.get_sequence(), tp.get_flags()), (1000, flags::SYN));
    }

    #[test]
    fn fragments_cover_the_datagram() {
        let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let frags = ipv4_fragments(C, S, 17, 9, &data, 1480);
        assert_eq!(frags.len(), 3);
        let mut rebuilt = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            let ip = Ipv4Packet::new(f).unwrap();
            assert_eq!(
                u32::from(ip.get_fragment_offset()) * 8,
                rebuilt.len() as u32
            );
            assert_eq!(ip.get_flags() & 1 == 1, i < 2, "MF flag of fragment {i}");
            rebuilt.extend_from_slice(ip.payload());
        }
        assert_eq!(rebuilt, data);
    }
}
