//! Flow keys ([`FiveTuple`], [`ThreeTuple`]) and the [`Flow`] record.

use crate::Timestamp;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// IP protocol numbers used across the project (IANA "Assigned Internet Protocol Numbers").
pub mod ipproto {
    /// IPv6 Hop-by-Hop options.
    pub const HOPOPT: u8 = 0;
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IGMP.
    pub const IGMP: u8 = 2;
    /// IPv4 encapsulation (IP-in-IP).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 encapsulation.
    pub const IPV6: u8 = 41;
    /// IPv6 routing header.
    pub const IPV6_ROUTE: u8 = 43;
    /// IPv6 fragment header.
    pub const IPV6_FRAG: u8 = 44;
    /// Generic Routing Encapsulation.
    pub const GRE: u8 = 47;
    /// Encapsulating Security Payload.
    pub const ESP: u8 = 50;
    /// Authentication Header.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 "no next header".
    pub const IPV6_NONXT: u8 = 59;
    /// IPv6 destination options.
    pub const IPV6_OPTS: u8 = 60;
    /// Ethernet-within-IP.
    pub const ETHERIP: u8 = 97;
    /// SCTP.
    pub const SCTP: u8 = 132;
    /// IPv6 mobility header.
    pub const MOBILITY: u8 = 135;

    /// A short upper-case name for well-known transports (`TCP`, `UDP`, `ICMP`, …).
    pub fn name(proto: u8) -> Option<&'static str> {
        Some(match proto {
            ICMP => "ICMP",
            IGMP => "IGMP",
            IPIP => "IPIP",
            TCP => "TCP",
            UDP => "UDP",
            IPV6 => "IPv6",
            GRE => "GRE",
            ESP => "ESP",
            AH => "AH",
            ICMPV6 => "ICMPv6",
            IPV6_NONXT => "NoNxt",
            ETHERIP => "EtherIP",
            SCTP => "SCTP",
            MOBILITY => "Mobility",
            _ => return None,
        })
    }
}

/// Source and destination addresses and the transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreeTuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number of the transport (see [`ipproto`]).
    pub proto: u8,
}

impl Default for ThreeTuple {
    fn default() -> Self {
        ThreeTuple {
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            proto: 0,
        }
    }
}

/// A unidirectional connection key: addresses, ports and transport protocol.
///
/// Protocols without ports (ICMP, ESP, …) use port 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FiveTuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 when the protocol has none).
    pub src_port: u16,
    /// Destination port (0 when the protocol has none).
    pub dst_port: u16,
    /// IP protocol number of the transport.
    pub proto: u8,
}

/// An address as one integer for hashing (IPv4 tagged apart from IPv6):
/// one `write_u128` instead of the derived hash's discriminant, length
/// prefix and byte write.
pub fn ip_bits(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(*a)) | (1 << 127),
        IpAddr::V6(a) => u128::from(*a),
    }
}

/// Hashed as three integers (the derived hash made seven calls, two of
/// them variable-length byte writes, on the path of every packet).
impl std::hash::Hash for FiveTuple {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(ip_bits(&self.src));
        state.write_u128(ip_bits(&self.dst));
        state.write_u64(
            (u64::from(self.src_port) << 24)
                | (u64::from(self.dst_port) << 8)
                | u64::from(self.proto),
        );
    }
}

impl Default for FiveTuple {
    fn default() -> Self {
        let z = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        FiveTuple {
            src: z,
            dst: z,
            src_port: 0,
            dst_port: 0,
            proto: 0,
        }
    }
}

impl FiveTuple {
    /// The same key seen from the other side.
    pub fn reversed(&self) -> FiveTuple {
        FiveTuple {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
        }
    }

    /// `true` when `(src, src_port) <= (dst, dst_port)`: the orientation that
    /// [`FiveTuple::canonical`] chooses.
    pub fn is_canonical(&self) -> bool {
        // the order of `(IpAddr, u16)`, on integers: every IPv4 address
        // sorts before every IPv6 one, and an address's octets compare as
        // its big-endian integer (the derived order walks the octets)
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                (u32::from(s), self.src_port) <= (u32::from(d), self.dst_port)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                (u128::from(s), self.src_port) <= (u128::from(d), self.dst_port)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => true,
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }

    /// The direction-independent form of this key: both directions of a
    /// connection give the same value.
    pub fn canonical(&self) -> FiveTuple {
        if self.is_canonical() {
            *self
        } else {
            self.reversed()
        }
    }

    /// The addresses and protocol.
    pub fn three_tuple(&self) -> ThreeTuple {
        ThreeTuple {
            src: self.src,
            dst: self.dst,
            proto: self.proto,
        }
    }
}

impl fmt::Display for FiveTuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = ipproto::name(self.proto).map_or_else(|| self.proto.to_string(), str::to_string);
        match (self.src, self.dst) {
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                write!(f, "{p} [{s}]:{} -> [{d}]:{}", self.src_port, self.dst_port)
            }
            (s, d) => write!(f, "{p} {s}:{} -> {d}:{}", self.src_port, self.dst_port),
        }
    }
}

/// A flow identifier, unique within one analysis run and deterministic for
/// a given input and configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FlowId(pub u64);

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Direction of a packet within its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client (initiator) to the server.
    ToServer,
    /// From the server back to the client.
    ToClient,
}

impl Direction {
    /// The other direction.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }
}

/// Packet and byte counters for one direction of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectionStats {
    /// Packets seen (every frame, including each fragment).
    pub packets: u64,
    /// Bytes: the sum of the original (on-the-wire) frame lengths.
    pub bytes: u64,
    /// Time of the first packet in this direction.
    pub first: Option<Timestamp>,
    /// Time of the last packet in this direction.
    pub last: Option<Timestamp>,
}

impl DirectionStats {
    /// Counts `frames` frames of `bytes` wire bytes seen between `first` and `last`.
    pub fn add(
        &mut self,
        frames: u64,
        bytes: u64,
        first: Option<Timestamp>,
        last: Option<Timestamp>,
    ) {
        self.packets += frames;
        self.bytes += bytes;
        if let Some(f) = first
            && self.first.is_none_or(|x| f < x)
        {
            self.first = Some(f);
        }
        if let Some(l) = last
            && self.last.is_none_or(|x| l > x)
        {
            self.last = Some(l);
        }
    }
}

/// Extra context in a flow key, so that overlapping address spaces (several
/// VLANs, several tunnels carrying private addresses) do not merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FlowContext {
    /// Innermost VLAN id on the path of the packet (0 when untagged).
    pub vlan: u16,
    /// Tunnel nesting depth of the IP header that gives the key (0 = outermost).
    pub depth: u8,
    /// A hash of the outer headers of the tunnel that carried the packet (0 when not tunnelled).
    pub tunnel: u64,
}

/// A bidirectional flow as tracked by the analyzer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// Identifier of the flow.
    pub id: FlowId,
    /// The key in the to-server direction (`src` is the client).
    pub key: FiveTuple,
    /// VLAN and tunnel context of the key.
    pub context: FlowContext,
    /// Time of the first packet (`None` if no packet had a timestamp).
    pub first_seen: Option<Timestamp>,
    /// Time of the last packet.
    pub last_seen: Option<Timestamp>,
    /// Counters of the client-to-server direction.
    pub to_server: DirectionStats,
    /// Counters of the server-to-client direction.
    pub to_client: DirectionStats,
    /// Union of the TCP flags seen from the client.
    pub tcp_flags_to_server: u8,
    /// Union of the TCP flags seen from the server.
    pub tcp_flags_to_client: u8,
    /// Zeek-style connection state: endpoint states, history, payload and
    /// IP bytes, gaps, services ([`crate::conn`]).
    pub conn: crate::conn::ConnTrack,
    /// Ids of the flows of the tunnels carrying this one, outermost first
    /// (`None` when not tunnelled).
    pub tunnel_parents: Option<Box<[FlowId]>>,
}

impl Flow {
    /// A new flow with no packets counted yet.
    pub fn new(id: FlowId, key: FiveTuple, context: FlowContext) -> Flow {
        Flow {
            id,
            key,
            context,
            first_seen: None,
            last_seen: None,
            to_server: DirectionStats::default(),
            to_client: DirectionStats::default(),
            tcp_flags_to_server: 0,
            tcp_flags_to_client: 0,
            conn: crate::conn::ConnTrack::default(),
            tunnel_parents: None,
        }
    }

    /// Counts one packet of `bytes` wire bytes seen at `ts` in `dir`.
    pub fn count(&mut self, dir: Direction, ts: Option<Timestamp>, bytes: u32) {
        self.count_frames(dir, 1, u64::from(bytes), ts, ts);
    }

    /// Counts `frames` frames (the fragments of one datagram, say) of
    /// `bytes` wire bytes in all, seen from `first` to `last`.
    pub fn count_frames(
        &mut self,
        dir: Direction,
        frames: u64,
        bytes: u64,
        first: Option<Timestamp>,
        last: Option<Timestamp>,
    ) {
        let s = match dir {
            Direction::ToServer => &mut self.to_server,
            Direction::ToClient => &mut self.to_client,
        };
        s.add(frames, bytes, first, last);
        if let Some(f) = first
            && self.first_seen.is_none_or(|x| f < x)
        {
            self.first_seen = Some(f);
        }
        if let Some(l) = last
            && self.last_seen.is_none_or(|x| l > x)
        {
            self.last_seen = Some(l);
        }
    }

    /// Total packets in both directions.
    pub fn packets(&self) -> u64 {
        self.to_server.packets + self.to_client.packets
    }

    /// Total bytes in both directions.
    pub fn bytes(&self) -> u64 {
        self.to_server.bytes + self.to_client.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn t(a: [u8; 4], sp: u16, b: [u8; 4], dp: u16) -> FiveTuple {
        FiveTuple {
            src: IpAddr::from(a),
            dst: IpAddr::from(b),
            src_port: sp,
            dst_port: dp,
            proto: ipproto::TCP,
        }
    }

    #[test]
    fn is_canonical_is_the_order_of_address_then_port() {
        let mut rng = crate::synth::Rng(7);
        // few distinct values, so that equal addresses and ports come up
        let ip = |rng: &mut crate::synth::Rng| -> IpAddr {
            let r = rng.next_u64();
            let b = (r >> 8) as u8 % 3;
            if r & 1 == 0 {
                IpAddr::V4(Ipv4Addr::new(b, 0, 0, (r >> 16) as u8 % 3))
            } else {
                let mut o = [0u8; 16];
                o[0] = b;
                o[15] = (r >> 16) as u8 % 3;
                IpAddr::V6(Ipv6Addr::from(o))
            }
        };
        for _ in 0..20_000 {
            let k = FiveTuple {
                src: ip(&mut rng),
                dst: ip(&mut rng),
                src_port: (rng.next_u64() % 3) as u16,
                dst_port: (rng.next_u64() % 3) as u16,
                proto: ipproto::UDP,
            };
            let by_tuple = (k.src, k.src_port) <= (k.dst, k.dst_port);
            assert_eq!(k.is_canonical(), by_tuple, "{k}");
            assert!(k.canonical().is_canonical(), "{k}");
        }
    }

    #[test]
    fn canonical_is_direction_independent() {
        let a = t([10, 0, 0, 2], 80, [10, 0, 0, 1], 5000);
        assert_eq!(a.canonical(), a.reversed().canonical());
        assert!(a.canonical().is_canonical());
        assert_eq!(a.reversed().reversed(), a);
    }

    #[test]
    fn display_brackets_ipv6() {
        let k = FiveTuple {
            src: IpAddr::V6(Ipv6Addr::LOCALHOST),
            dst: IpAddr::V6(Ipv6Addr::LOCALHOST),
            src_port: 1,
            dst_port: 2,
            proto: ipproto::UDP,
        };
        assert_eq!(k.to_string(), "UDP [::1]:1 -> [::1]:2");
    }

    #[test]
    fn flow_counts_and_times() {
        let mut f = Flow::new(
            FlowId(1),
            t([1, 1, 1, 1], 1, [2, 2, 2, 2], 2),
            FlowContext::default(),
        );
        f.count(Direction::ToServer, Some(Timestamp(50)), 60);
        f.count(Direction::ToClient, Some(Timestamp(10)), 40);
        f.count(Direction::ToClient, None, 40);
        assert_eq!(f.first_seen, Some(Timestamp(10)));
        assert_eq!(f.last_seen, Some(Timestamp(50)));
        assert_eq!((f.packets(), f.bytes()), (3, 140));
    }
}
