//! Counters of the analyzer: packets per layer and anomalies by kind.

use crate::reassembly::StreamStats;
use std::collections::BTreeMap;

/// What the analyzer counted while decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AnalyzerStats {
    /// Frames handled.
    pub packets: u64,
    /// Sum of their on-the-wire lengths.
    pub bytes: u64,
    /// Frames with a network layer.
    pub network: u64,
    /// Frames whose outer network layer is IPv4 or IPv6.
    pub ip_frames: u64,
    /// IPv4 headers decoded (outer and inner, each fragment).
    pub ipv4: u64,
    /// IPv6 headers decoded.
    pub ipv6: u64,
    /// ARP packets.
    pub arp: u64,
    /// Other ethertypes.
    pub other_network: u64,
    /// IP fragments seen.
    pub fragments: u64,
    /// Datagrams rebuilt from fragments.
    pub reassembled: u64,
    /// TCP segments (transport layers).
    pub tcp: u64,
    /// UDP datagrams.
    pub udp: u64,
    /// ICMP and ICMPv6 messages.
    pub icmp: u64,
    /// SCTP packets.
    pub sctp: u64,
    /// Other IP protocols.
    pub other_transport: u64,
    /// Tunnel layers decoded (each inner packet).
    pub tunnels: u64,
    /// TCP stream bytes delivered to plugins.
    pub stream_bytes: u64,
    /// Anomalies by kind. The names are stable (scripts may match them):
    ///
    /// | name | counted for |
    /// |---|---|
    /// | `<layer>_truncated`, `<layer>_invalid` | a header cut short or with an impossible field; `<layer>` is a [`Layer`](crate::wire::Layer) name (`ethernet`, `vlan`, `ipv4`, `ipv6ext`, `tcp`, `gre`, …) |
    /// | `ipv4_truncated_payload`, `ipv6_truncated_payload` | a packet captured shorter than its IP length says (decoded as far as it goes) |
    /// | `ipv4_bad_checksum` | a wrong IPv4 header checksum (when `[analyzer] do_checksums` is on) |
    /// | `ipv6_atomic_fragment` | an IPv6 fragment header on a whole datagram (RFC 6946) |
    /// | `unsupported_linktype_<n>` | a frame of link type `<n>`, which has no decoder (802.11, radiotap, …) |
    /// | `llc_frame` | an 802.3/LLC frame without SNAP (STP, CDP, …) |
    /// | `non_ip_ppp`, `non_ip_pppoe`, `non_ip_pppoe_discovery` | PPP control protocols, PPPoE discovery |
    /// | `cisco_slarp`, `cisco_cdp` | Cisco HDLC keepalives and CDP |
    /// | `nsh_not_decoded` | an NSH header (RFC 8300) that is malformed or carries neither IP nor Ethernet |
    /// | `mpls_unknown_payload`, `link_unknown_family`, `link_too_many_headers` | an MPLS payload that is neither IP nor Ethernet, a loopback family that is not IP, too many stacked link headers |
    /// | `defrag_<reason>` | a datagram that could not be reassembled, by [`FailureReason`](crate::defrag::FailureReason) (`defrag_timeout`, `defrag_too_many_fragments`, `defrag_overlap`, …) |
    /// | `defrag_frames_unattributed` | frames of such a datagram whose first fragment (with the ports) never came |
    /// | `tcp_stream_gap` | bytes missing in a reassembled TCP stream |
    /// | `gre_payload_not_decoded`, `tunnel_too_deep` | a GRE payload with no decoder, tunnels nested deeper than `max_tunnel_depth` |
    /// | `clock_step_back` | an interface's capture time went back by more than [`STEP_TOLERANCE`](crate::clock::STEP_TOLERANCE) (pcapng sections or files out of order, a clock stepped back): its packets go on from the run's clock ([`crate::clock`]) |
    pub anomalies: BTreeMap<String, u64>,
    /// Errors by plugin name.
    pub plugin_errors: BTreeMap<String, u64>,
    /// TCP reassembly counters of the flows that ended, both directions
    /// (see [`crate::reassembly`]; the flows still open are counted when
    /// they end, so the figures are whole once the run ended).
    pub reassembly: StreamStats,
}

impl AnalyzerStats {
    /// Counts one anomaly of `kind`.
    pub fn anomaly(&mut self, kind: &str) {
        if let Some(n) = self.anomalies.get_mut(kind) {
            *n += 1;
        } else {
            log::debug!("anomaly: {kind}");
            self.anomalies.insert(kind.to_string(), 1);
        }
    }

    /// Adds the counters of `other` (another worker) to these.
    pub fn merge(&mut self, other: &AnalyzerStats) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.network += other.network;
        self.ip_frames += other.ip_frames;
        self.ipv4 += other.ipv4;
        self.ipv6 += other.ipv6;
        self.arp += other.arp;
        self.other_network += other.other_network;
        self.fragments += other.fragments;
        self.reassembled += other.reassembled;
        self.tcp += other.tcp;
        self.udp += other.udp;
        self.icmp += other.icmp;
        self.sctp += other.sctp;
        self.other_transport += other.other_transport;
        self.tunnels += other.tunnels;
        self.stream_bytes += other.stream_bytes;
        for (k, v) in &other.anomalies {
            *self.anomalies.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.plugin_errors {
            *self.plugin_errors.entry(k.clone()).or_default() += v;
        }
        self.reassembly.add(&other.reassembly);
    }

    /// Total anomalies of every kind.
    pub fn total_anomalies(&self) -> u64 {
        self.anomalies.values().sum()
    }
}
