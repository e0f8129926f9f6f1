//! Zero-copy wire decoders (views) for the link, network and transport layers.
//!
//! Each protocol lives in its own file and exposes a `<Proto>Slice<'a>` view
//! built with `from_slice(&'a [u8]) -> DecodeResult<Self>`. The view borrows
//! the captured bytes and decodes fields lazily.
//!
//! # Contract
//!
//! If `from_slice` (or one of its variants) returned `Ok`, **no accessor or
//! iterator of the returned view panics**, whatever the bytes are. All reads
//! go through `get(..)`, `split_at_checked` or `<[u8; N]>::try_from`; lengths
//! read from the wire use checked or saturating arithmetic. Unknown protocol
//! numbers are never errors: they are carried by newtypes such as
//! [`EtherType`] and passed through.
//!
//! Errors are small `Clone + Eq` values ([`DecodeError`]) naming the layer.
//! In [`DecodeError::Truncated`], `offset` is relative to the start of the
//! slice given to the decoder: it is where the structure that did not fit
//! begins, `needed` is how many bytes it needs from there and `have` how many
//! are available from there.
//!
//! Some decoders are "lax" where captures are commonly cut by the snap
//! length: IPv4, IPv6, UDP and PPPoE accept a length field larger than the
//! captured data and report it with `is_truncated()`.
//!
//! # Which view decodes what
//!
//! | found in | value | next view |
//! | --- | --- | --- |
//! | Ethernet / VLAN / SLL / GRE type | [`EtherType::VLAN`], `QINQ`, `VLAN_9100` | [`VlanSlice`] |
//! | Ethernet type/length | `<= 1500` ([`EthernetSlice::is_802_3`]) | [`LlcSlice`] |
//! | EtherType | `MPLS_UC`, `MPLS_MC` | [`parse_mpls_stack`] then [`guess_mpls_payload`] |
//! | EtherType | `PPPOE_SESSION` | [`PppoeSlice`] (PPP protocol included) |
//! | EtherType | `IPV4` / `IPV6` / `ARP` | [`Ipv4Slice`] / [`Ipv6Slice`] / [`ArpSlice`] |
//! | IPv6 next header | any | [`walk_ipv6_extensions`] |
//! | IP protocol | 6 / 17 / 1 / 58 / 132 / 47 | [`TcpSlice`] / [`UdpSlice`] / [`IcmpSlice`] / [`Icmpv6Slice`] / [`SctpSlice`] / [`GreSlice`] |
//! | GRE type | `TEB` / `ERSPAN_II` (with seq) / `ERSPAN_III` / `PPP` | [`EthernetSlice`] / [`ErspanSlice::from_slice_type2`] / [`ErspanSlice::from_slice_type3`] / [`PppSlice`] |
//! | UDP port (header checked by [`crate::decode::tunnel`]) | 4789 / 6081 | [`VxlanSlice`] / [`GeneveSlice`] |
//! | link type | NULL / LOOP / LINUX_SLL / LINUX_SLL2 / PPP | [`NullSlice::from_slice`] / [`NullSlice::from_slice_loop`] / [`SllSlice`] / [`Sll2Slice`] / [`PppSlice`] |
#![warn(clippy::indexing_slicing)]

use std::fmt;

pub mod arp;
pub mod checksum;
pub mod erspan;
pub mod ethernet;
pub mod geneve;
pub mod gre;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6ext;
pub mod llc;
pub mod mpls;
pub mod null;
pub mod ppp;
pub mod pppoe;
pub mod sctp;
pub mod sll;
pub mod tcp;
pub mod udp;
pub mod vlan;
pub mod vxlan;

pub use arp::ArpSlice;
pub use checksum::{
    fold, internet_checksum, pseudo_header_sum_v4, pseudo_header_sum_v6, sum16,
    verify_transport_checksum,
};
pub use erspan::ErspanSlice;
pub use ethernet::EthernetSlice;
pub use geneve::{GeneveOption, GeneveOptions, GeneveSlice};
pub use gre::GreSlice;
pub use icmp::{IcmpSlice, Icmpv6Slice};
pub use ipv4::Ipv4Slice;
pub use ipv6::Ipv6Slice;
pub use ipv6ext::{Ipv6ExtensionChain, Ipv6FragmentHeader, walk_ipv6_extensions};
pub use llc::LlcSlice;
pub use mpls::{
    MplsLabel, MplsPayload, MplsSlice, MplsStack, guess_mpls_payload, parse_mpls_stack,
};
pub use null::NullSlice;
pub use ppp::{PPP_IPV4, PPP_IPV6, PppSlice};
pub use pppoe::PppoeSlice;
pub use sctp::{SctpChunk, SctpChunks, SctpSlice};
pub use sll::{Sll2Slice, SllSlice};
pub use tcp::{TcpFlags, TcpOption, TcpOptionsIter, TcpSlice};
pub use udp::UdpSlice;
pub use vlan::VlanSlice;
pub use vxlan::VxlanSlice;

/// The protocol layer a decoder works on; used in [`DecodeError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Ethernet II / IEEE 802.3 MAC header.
    Ethernet,
    /// IEEE 802.2 LLC (and SNAP) header.
    Llc,
    /// IEEE 802.1Q / 802.1ad VLAN tag.
    Vlan,
    /// MPLS label stack (RFC 3032).
    Mpls,
    /// PPP over Ethernet (RFC 2516).
    Pppoe,
    /// Point-to-Point Protocol (RFC 1661).
    Ppp,
    /// Linux cooked capture v1.
    Sll,
    /// Linux cooked capture v2.
    Sll2,
    /// BSD loopback (LINKTYPE_NULL / LINKTYPE_LOOP).
    Null,
    /// Address Resolution Protocol (RFC 826).
    Arp,
    /// Internet Protocol version 4 (RFC 791).
    Ipv4,
    /// Internet Protocol version 6 (RFC 8200).
    Ipv6,
    /// IPv6 extension headers (RFC 8200 section 4).
    Ipv6Ext,
    /// Transmission Control Protocol (RFC 9293).
    Tcp,
    /// User Datagram Protocol (RFC 768).
    Udp,
    /// ICMP for IPv4 (RFC 792).
    Icmp,
    /// ICMP for IPv6 (RFC 4443).
    Icmpv6,
    /// Stream Control Transmission Protocol (RFC 9260).
    Sctp,
    /// Generic Routing Encapsulation (RFC 2784, 2890, 2637).
    Gre,
    /// Cisco ERSPAN.
    Erspan,
    /// VXLAN (RFC 7348).
    Vxlan,
    /// Geneve (RFC 8926).
    Geneve,
}

/// The names of the layers: `Layer::name` and the two anomaly names of a
/// decoding error on the layer, `<name>_truncated` and `<name>_invalid`, all
/// `&'static str` (an anomaly is counted without building its name).
macro_rules! layer_names {
    ($($layer:ident $name:literal),* $(,)?) => {
        impl Layer {
            /// Short lowercase name of the layer, as used by `Display`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Layer::$layer => $name,)*
                }
            }

            /// The anomaly name of a decoding error on this layer.
            fn error_kind(self, truncated: bool) -> &'static str {
                match (self, truncated) {
                    $(
                        (Layer::$layer, true) => concat!($name, "_truncated"),
                        (Layer::$layer, false) => concat!($name, "_invalid"),
                    )*
                }
            }
        }
    };
}

layer_names!(
    Ethernet "ethernet",
    Llc "llc",
    Vlan "vlan",
    Mpls "mpls",
    Pppoe "pppoe",
    Ppp "ppp",
    Sll "sll",
    Sll2 "sll2",
    Null "null",
    Arp "arp",
    Ipv4 "ipv4",
    Ipv6 "ipv6",
    Ipv6Ext "ipv6ext",
    Tcp "tcp",
    Udp "udp",
    Icmp "icmp",
    Icmpv6 "icmpv6",
    Sctp "sctp",
    Gre "gre",
    Erspan "erspan",
    Vxlan "vxlan",
    Geneve "geneve",
);

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error returned by the wire decoders.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The data ends before a structure of the layer.
    #[error("{layer}: truncated at offset {offset}: need {needed} bytes, have {have}")]
    Truncated {
        /// Layer being decoded.
        layer: Layer,
        /// Offset, relative to the start of the layer's slice, of the
        /// structure that did not fit.
        offset: usize,
        /// Bytes needed from `offset`.
        needed: usize,
        /// Bytes available from `offset`.
        have: usize,
    },
    /// A field holds a value the decoder cannot work with.
    #[error("{layer}: invalid {field} value {value:#x}")]
    Invalid {
        /// Layer being decoded.
        layer: Layer,
        /// Name of the field (RFC name where possible).
        field: &'static str,
        /// The offending value.
        value: u32,
    },
}

impl DecodeError {
    /// The layer on which decoding stopped.
    pub fn layer(&self) -> Layer {
        match self {
            DecodeError::Truncated { layer, .. } | DecodeError::Invalid { layer, .. } => *layer,
        }
    }

    /// `true` for [`DecodeError::Truncated`].
    pub fn is_truncated(&self) -> bool {
        matches!(self, DecodeError::Truncated { .. })
    }

    /// The anomaly name of the error: `<layer>_truncated` or
    /// `<layer>_invalid` (`ipv4_truncated`, `tcp_invalid`, …).
    pub fn kind(&self) -> &'static str {
        self.layer().error_kind(self.is_truncated())
    }
}

/// Result of a wire decoder.
pub type DecodeResult<T> = Result<T, DecodeError>;

/// An EtherType (IEEE 802 numbers); any value is valid.
///
/// In an Ethernet header, values up to 1500 are an 802.3 length instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EtherType(pub u16);

impl EtherType {
    /// Internet Protocol version 4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// Address Resolution Protocol.
    pub const ARP: EtherType = EtherType(0x0806);
    /// Internet Protocol version 6.
    pub const IPV6: EtherType = EtherType(0x86DD);
    /// IEEE 802.1Q VLAN tag.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// IEEE 802.1ad service VLAN tag (QinQ).
    pub const QINQ: EtherType = EtherType(0x88A8);
    /// Legacy QinQ tag (0x9100).
    pub const VLAN_9100: EtherType = EtherType(0x9100);
    /// MPLS unicast.
    pub const MPLS_UC: EtherType = EtherType(0x8847);
    /// MPLS multicast.
    pub const MPLS_MC: EtherType = EtherType(0x8848);
    /// PPPoE discovery stage.
    pub const PPPOE_DISCOVERY: EtherType = EtherType(0x8863);
    /// PPPoE session stage.
    pub const PPPOE_SESSION: EtherType = EtherType(0x8864);
    /// Transparent Ethernet bridging (an Ethernet frame follows).
    pub const TEB: EtherType = EtherType(0x6558);
    /// ERSPAN type I and II (GRE protocol type).
    pub const ERSPAN_II: EtherType = EtherType(0x88BE);
    /// ERSPAN type III (GRE protocol type).
    pub const ERSPAN_III: EtherType = EtherType(0x22EB);
    /// Network Service Header.
    pub const NSH: EtherType = EtherType(0x894F);
    /// PPP (GRE protocol type in PPTP enhanced GRE).
    pub const PPP: EtherType = EtherType(0x880B);

    /// Short name of a known EtherType.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            EtherType::IPV4 => "IPv4",
            EtherType::ARP => "ARP",
            EtherType::IPV6 => "IPv6",
            EtherType::VLAN => "802.1Q",
            EtherType::QINQ => "802.1ad",
            EtherType::VLAN_9100 => "QinQ-9100",
            EtherType::MPLS_UC => "MPLS",
            EtherType::MPLS_MC => "MPLS-multicast",
            EtherType::PPPOE_DISCOVERY => "PPPoE-discovery",
            EtherType::PPPOE_SESSION => "PPPoE-session",
            EtherType::TEB => "TEB",
            EtherType::ERSPAN_II => "ERSPAN-II",
            EtherType::ERSPAN_III => "ERSPAN-III",
            EtherType::NSH => "NSH",
            EtherType::PPP => "PPP",
            _ => return None,
        })
    }

    /// `true` for the VLAN tag protocol identifiers (0x8100, 0x88A8, 0x9100).
    pub fn is_vlan(self) -> bool {
        matches!(
            self,
            EtherType::VLAN | EtherType::QINQ | EtherType::VLAN_9100
        )
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{:#06x}", self.0),
        }
    }
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        EtherType(v)
    }
}

impl From<EtherType> for u16 {
    fn from(v: EtherType) -> Self {
        v.0
    }
}

// ---------------------------------------------------------------------------
// Crate-private read helpers: never panic, return 0 when out of range.

/// Big-endian `u16` at `off`, or 0 if out of range.
pub(crate) fn be16(data: &[u8], off: usize) -> u16 {
    read_array::<2>(data, off).map_or(0, u16::from_be_bytes)
}

/// Big-endian 24-bit value at `off`, or 0 if out of range.
pub(crate) fn be24(data: &[u8], off: usize) -> u32 {
    read_array::<3>(data, off).map_or(0, |b| u32::from_be_bytes([0, b[0], b[1], b[2]]))
}

/// Big-endian `u32` at `off`, or 0 if out of range.
pub(crate) fn be32(data: &[u8], off: usize) -> u32 {
    read_array::<4>(data, off).map_or(0, u32::from_be_bytes)
}

/// Byte at `off`, or 0 if out of range.
pub(crate) fn byte(data: &[u8], off: usize) -> u8 {
    data.get(off).copied().unwrap_or(0)
}

/// `N` bytes at `off`, if in range.
pub(crate) fn read_array<const N: usize>(data: &[u8], off: usize) -> Option<[u8; N]> {
    let end = off.checked_add(N)?;
    data.get(off..end).and_then(|s| <[u8; N]>::try_from(s).ok())
}

/// `data[from..]`, or empty if out of range.
pub(crate) fn tail(data: &[u8], from: usize) -> &[u8] {
    data.get(from..).unwrap_or(&[])
}

/// `data[from..to]` with `to` clamped to the data length; empty if `from` is
/// out of range or above `to`.
pub(crate) fn sub_clamped(data: &[u8], from: usize, to: usize) -> &[u8] {
    let to = to.min(data.len());
    data.get(from..to).unwrap_or(&[])
}

/// Checks that `data` holds `needed` bytes from `offset`.
pub(crate) fn ensure(layer: Layer, data: &[u8], offset: usize, needed: usize) -> DecodeResult<()> {
    let have = data.len().saturating_sub(offset);
    if have < needed {
        Err(DecodeError::Truncated {
            layer,
            offset,
            needed,
            have,
        })
    } else {
        Ok(())
    }
}

/// Builds a [`DecodeError::Invalid`].
pub(crate) fn invalid(layer: Layer, field: &'static str, value: u32) -> DecodeError {
    DecodeError::Invalid {
        layer,
        field,
        value,
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_error_kinds_are_the_layer_name_and_the_error() {
        let layers = [
            Layer::Ethernet,
            Layer::Llc,
            Layer::Vlan,
            Layer::Mpls,
            Layer::Pppoe,
            Layer::Ppp,
            Layer::Sll,
            Layer::Sll2,
            Layer::Null,
            Layer::Arp,
            Layer::Ipv4,
            Layer::Ipv6,
            Layer::Ipv6Ext,
            Layer::Tcp,
            Layer::Udp,
            Layer::Icmp,
            Layer::Icmpv6,
            Layer::Sctp,
            Layer::Gre,
            Layer::Erspan,
            Layer::Vxlan,
            Layer::Geneve,
        ];
        for layer in layers {
            let t = DecodeError::Truncated {
                layer,
                offset: 0,
                needed: 1,
                have: 0,
            };
            assert_eq!(t.kind(), format!("{layer}_truncated"));
            assert_eq!(invalid(layer, "f", 1).kind(), format!("{layer}_invalid"));
        }
        assert_eq!(invalid(Layer::Ipv6Ext, "f", 1).kind(), "ipv6ext_invalid");
    }

    #[test]
    fn layer_display_is_short_lowercase() {
        assert_eq!(Layer::Ipv6Ext.to_string(), "ipv6ext");
        assert_eq!(Layer::Sll2.to_string(), "sll2");
    }

    #[test]
    fn ethertype_display_known_and_unknown() {
        assert_eq!(EtherType::IPV4.to_string(), "IPv4");
        assert_eq!(EtherType(0x1234).to_string(), "0x1234");
    }

    #[test]
    fn decode_error_layer_and_message() {
        let e = DecodeError::Truncated {
            layer: Layer::Tcp,
            offset: 0,
            needed: 20,
            have: 3,
        };
        assert_eq!(e.layer(), Layer::Tcp);
        assert!(e.is_truncated());
        assert_eq!(
            e.to_string(),
            "tcp: truncated at offset 0: need 20 bytes, have 3"
        );
        let e = invalid(Layer::Ipv4, "version", 6);
        assert_eq!(e.to_string(), "ipv4: invalid version value 0x6");
        assert!(!e.is_truncated());
    }

    /// Ethernet -> 802.1Q -> IPv4 -> TCP, built with pnet and walked with
    /// the views, as the engine does.
    #[test]
    fn layered_walk_against_pnet() {
        use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
        use pnet_packet::ip::IpNextHeaderProtocols;
        use pnet_packet::ipv4::{MutableIpv4Packet, checksum};
        use pnet_packet::tcp::MutableTcpPacket;
        use pnet_packet::vlan::MutableVlanPacket;

        let mut buf = vec![0u8; 14 + 4 + 20 + 20 + 5];
        {
            let mut e = MutableEthernetPacket::new(&mut buf).unwrap();
            e.set_destination("02:00:00:00:00:02".parse().unwrap());
            e.set_source("02:00:00:00:00:01".parse().unwrap());
            e.set_ethertype(EtherTypes::Vlan);
        }
        {
            let mut v = MutableVlanPacket::new(&mut buf[14..]).unwrap();
            v.set_vlan_identifier(42);
            v.set_ethertype(EtherTypes::Ipv4);
        }
        {
            let mut ip = MutableIpv4Packet::new(&mut buf[18..]).unwrap();
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length(45);
            ip.set_ttl(64);
            ip.set_next_level_protocol(IpNextHeaderProtocols::Tcp);
            ip.set_source([192, 0, 2, 1].into());
            ip.set_destination([192, 0, 2, 2].into());
            let c = checksum(&ip.to_immutable());
            ip.set_checksum(c);
        }
        {
            let mut t = MutableTcpPacket::new(&mut buf[38..]).unwrap();
            t.set_source(1234);
            t.set_destination(80);
            t.set_data_offset(5);
            t.set_flags(0x18);
            t.set_payload(b"hello");
        }
        let eth = EthernetSlice::from_slice(&buf).unwrap();
        assert!(eth.ethertype().is_vlan());
        let vlan = VlanSlice::from_slice(eth.payload()).unwrap();
        assert_eq!((vlan.vid(), vlan.ethertype()), (42, EtherType::IPV4));
        let ip = Ipv4Slice::from_slice(vlan.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.protocol(), 6);
        let tcp = TcpSlice::from_slice(ip.payload()).unwrap();
        assert_eq!((tcp.src_port(), tcp.dst_port()), (1234, 80));
        assert_eq!(tcp.flags().to_string(), "PA");
        assert_eq!(tcp.payload(), b"hello");
    }

    #[test]
    fn helpers_never_panic() {
        let d = [1u8, 2, 3];
        assert_eq!(be16(&d, 1), 0x0203);
        assert_eq!(be16(&d, 2), 0);
        assert_eq!(be32(&d, usize::MAX), 0);
        assert_eq!(be24(&d, 0), 0x010203);
        assert_eq!(byte(&d, 9), 0);
        assert_eq!(tail(&d, 4), &[] as &[u8]);
        assert_eq!(sub_clamped(&d, 1, 99), &[2, 3]);
        assert_eq!(sub_clamped(&d, 3, 1), &[] as &[u8]);
        assert!(ensure(Layer::Udp, &d, 1, 2).is_ok());
        assert_eq!(
            ensure(Layer::Udp, &d, 5, 2),
            Err(DecodeError::Truncated {
                layer: Layer::Udp,
                offset: 5,
                needed: 2,
                have: 0
            })
        );
    }
}
