//! What the filters look at: the addresses, protocol, ports and fragment
//! identity of the first IP header of a frame.

use libpcap_analyzer::decode::link::decode_link;
use libpcap_analyzer::wire::{Ipv4Slice, Ipv6Slice, walk_ipv6_extensions};
use libpcap_tools::LinkType;
use std::net::IpAddr;

/// Transport protocols whose first four bytes are the source and destination
/// ports: TCP, UDP, SCTP, UDP-Lite, DCCP.
fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132 | 136 | 33)
}

/// Transports known to carry no ports (ICMP, IGMP, IP-in-IP, IPv6-in-IP, GRE,
/// ESP, ICMPv6): their non-first fragments need not wait for the first one.
/// Anything else (an IPv6 extension header, an unknown protocol) may still
/// lead to ports, so it waits.
pub(crate) fn portless(proto: u8) -> bool {
    matches!(proto, 1 | 2 | 4 | 41 | 47 | 50 | 58)
}

/// Identity of a fragmented datagram: the fragments of one datagram share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatagramId {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Protocol (IPv4) or the Fragment header's next header (IPv6).
    pub proto: u8,
    /// Identification (16 bits for IPv4, 32 for IPv6).
    pub id: u32,
}

/// Fragment information of a packet that is part of a fragmented datagram
/// (an IPv4 packet with MF set or a non-zero offset, an IPv6 packet with a
/// Fragment header that is not an atomic fragment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragInfo {
    /// The datagram this fragment belongs to.
    pub datagram: DatagramId,
    /// `true` for the fragment at offset 0, the one carrying the ports.
    pub first: bool,
}

/// The fields of a packet that filters and the per-flow split use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketKey {
    /// Source address of the first IP header.
    pub src: IpAddr,
    /// Destination address of the first IP header.
    pub dst: IpAddr,
    /// Transport protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Source and destination ports (TCP, UDP, SCTP, UDP-Lite, DCCP) when
    /// known: `None` for other protocols, for non-first fragments (until the
    /// first fragment supplies them) and when the header is cut.
    pub ports: Option<(u16, u16)>,
    /// Set when the packet is a fragment.
    pub frag: Option<FragInfo>,
}

impl PacketKey {
    /// The key of the first IP header of `frame` (of link type `linktype`),
    /// or `None` if the frame has no decodable IPv4/IPv6 header.
    pub fn from_frame(linktype: LinkType, frame: &[u8]) -> Option<PacketKey> {
        let info = decode_link(linktype, frame).ok()?;
        Self::from_network(info.ethertype, frame.get(info.l3_offset..)?)
    }

    /// The key of a network-layer packet of this ethertype (`0x0800` IPv4,
    /// `0x86dd` IPv6; `None` for the others or an undecodable header).
    pub fn from_network(ethertype: u16, l3: &[u8]) -> Option<PacketKey> {
        match ethertype {
            0x0800 => Self::from_ipv4(l3),
            0x86dd => Self::from_ipv6(l3),
            _ => None,
        }
    }

    /// The key of an IPv4 packet (header first).
    pub fn from_ipv4(data: &[u8]) -> Option<PacketKey> {
        let ip = Ipv4Slice::from_slice(data).ok()?;
        let proto = ip.protocol();
        let frag = ip.more_fragments() || ip.fragment_offset() != 0;
        let first = ip.fragment_offset() == 0;
        let ports = if first && has_ports(proto) {
            ports_of(ip.payload())
        } else {
            None
        };
        let src = IpAddr::V4(ip.src());
        let dst = IpAddr::V4(ip.dst());
        Some(PacketKey {
            src,
            dst,
            proto,
            ports,
            frag: frag.then_some(FragInfo {
                datagram: DatagramId {
                    src,
                    dst,
                    proto,
                    id: u32::from(ip.identification()),
                },
                first,
            }),
        })
    }

    /// The key of an IPv6 packet (fixed header first).
    pub fn from_ipv6(data: &[u8]) -> Option<PacketKey> {
        let ip = Ipv6Slice::from_slice(data).ok()?;
        let src = IpAddr::V6(ip.src());
        let dst = IpAddr::V6(ip.dst());
        let Ok(chain) = walk_ipv6_extensions(ip.next_header(), ip.payload()) else {
            return Some(PacketKey {
                src,
                dst,
                proto: ip.next_header(),
                ports: None,
                frag: None,
            });
        };
        let proto = chain.transport;
        let (frag, first) = match chain.fragment {
            // an atomic fragment (offset 0, no more fragments) is a whole datagram
            Some(f) if f.is_first() && !f.more => (None, true),
            Some(f) => (
                Some(FragInfo {
                    datagram: DatagramId {
                        src,
                        dst,
                        proto: f.next_header,
                        id: f.identification,
                    },
                    first: f.is_first(),
                }),
                f.is_first(),
            ),
            None => (None, true),
        };
        let ports = if first && has_ports(proto) {
            ports_of(chain.payload)
        } else {
            None
        };
        Some(PacketKey {
            src,
            dst,
            proto,
            ports,
            frag,
        })
    }

    /// `true` for a fragment that does not carry the transport header.
    pub fn is_non_first_fragment(&self) -> bool {
        self.frag.is_some_and(|f| !f.first)
    }
}

fn ports_of(l4: &[u8]) -> Option<(u16, u16)> {
    let b: [u8; 4] = l4.get(..4)?.try_into().ok()?;
    Some((
        u16::from_be_bytes([b[0], b[1]]),
        u16::from_be_bytes([b[2], b[3]]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use libpcap_analyzer::build;
    use std::net::Ipv4Addr;

    #[test]
    fn ipv4_udp_key() {
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let f = build::eth_ip(a, b, 17, &build::udp(a, b, 1234, 53, b"x"));
        let k = PacketKey::from_frame(LinkType::ETHERNET, &f).unwrap();
        assert_eq!(
            (k.src, k.dst, k.proto, k.ports),
            (a, b, 17, Some((1234, 53)))
        );
        assert!(k.frag.is_none());
    }

    #[test]
    fn ipv4_fragments_keys() {
        let (a, b) = (Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2));
        let seg = build::udp(a.into(), b.into(), 7, 9, &[0u8; 100]);
        let frs = build::ipv4_fragments(a, b, 17, 77, &seg, 48);
        let k0 = PacketKey::from_ipv4(&frs[0]).unwrap();
        let k1 = PacketKey::from_ipv4(&frs[1]).unwrap();
        assert_eq!(k0.ports, Some((7, 9)));
        assert!(k0.frag.unwrap().first);
        assert_eq!(k1.ports, None);
        assert!(k1.is_non_first_fragment());
        assert_eq!(k0.frag.unwrap().datagram, k1.frag.unwrap().datagram);
    }

    #[test]
    fn truncated_frames_never_panic() {
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let f = build::eth_ip(a, a, 6, &build::tcp(a, a, 1, 2, 0, 0, 2, b"abc"));
        for n in 0..f.len() {
            let _ = PacketKey::from_frame(LinkType::ETHERNET, &f[..n]);
        }
    }
}
