//! Link-layer decoding: from a captured frame to the network layer.
//!
//! This is the part of decoding that the reading thread does before it
//! dispatches a packet to a worker: it finds the network-layer bytes and
//! their ethertype behind any stack of Ethernet, 802.1Q/802.1ad tags, MPLS
//! labels, PPPoE session and PPP headers, Linux cooked headers, BSD loopback
//! or raw-IP framing.

use crate::wire::{
    DecodeError, EtherType, EthernetSlice, LlcSlice, MplsPayload, NullSlice, PppSlice, PppoeSlice,
    Sll2Slice, SllSlice, VlanSlice, guess_mpls_payload, parse_mpls_stack, ppp,
};
use libpcap_tools::LinkType;
use std::borrow::Cow;

/// Most VLAN ids kept per frame (deeper tags are still skipped).
pub const MAX_VLANS: usize = 8;

/// Most link-layer headers (tags, labels, shims) followed in one frame.
const MAX_LINK_HEADERS: usize = 32;

/// The network layer found behind the link headers of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkInfo {
    /// Ethertype of the network layer (0x0800, 0x86DD, 0x0806, …).
    pub ethertype: u16,
    /// Offset of the network layer in the frame.
    pub l3_offset: usize,
    /// VLAN ids, outermost first (`nvlans` of them are valid).
    pub vlans: [u16; MAX_VLANS],
    /// Number of valid entries in `vlans`.
    pub nvlans: u8,
    /// MPLS labels crossed.
    pub mpls_labels: u8,
    /// `true` if a PPPoE session header was crossed.
    pub pppoe: bool,
}

impl LinkInfo {
    fn new() -> LinkInfo {
        LinkInfo {
            ethertype: 0,
            l3_offset: 0,
            vlans: [0; MAX_VLANS],
            nvlans: 0,
            mpls_labels: 0,
            pppoe: false,
        }
    }

    /// The VLAN ids found, outermost first.
    pub fn vlans(&self) -> &[u16] {
        self.vlans.get(..usize::from(self.nvlans)).unwrap_or(&[])
    }

    /// The innermost VLAN id, 0 when untagged.
    pub fn inner_vlan(&self) -> u16 {
        self.vlans().last().copied().unwrap_or(0)
    }
}

/// Why a frame has no network layer to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The link type is not one this decoder knows (802.11, radiotap, …).
    UnsupportedLinkType(LinkType),
    /// An 802.3 / LLC frame without a SNAP ethertype (STP, CDP, …).
    Llc,
    /// A PPPoE discovery frame or a PPP control protocol (LCP, IPCP, …);
    /// the payload is the anomaly name (`non_ip_ppp`, `non_ip_pppoe`,
    /// `non_ip_pppoe_discovery`, `cisco_slarp`, `cisco_cdp`,
    /// `nsh_not_decoded`).
    NotNetwork(&'static str),
    /// An MPLS payload that is neither IP nor an Ethernet pseudowire.
    UnknownMplsPayload,
    /// A loopback address family or PPP protocol that is not IP.
    UnknownFamily(u32),
    /// Too many stacked link headers.
    TooManyHeaders,
    /// A header is truncated or invalid.
    Decode(DecodeError),
}

impl From<DecodeError> for LinkError {
    fn from(e: DecodeError) -> Self {
        LinkError::Decode(e)
    }
}

impl LinkError {
    /// A short stable name, for anomaly counters. Only an unsupported link
    /// type (`unsupported_linktype_<n>`) builds its name; every other kind
    /// is a constant, so counting a malformed frame allocates nothing.
    pub fn kind(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            LinkError::UnsupportedLinkType(l) => {
                return Cow::Owned(format!("unsupported_linktype_{}", l.0));
            }
            LinkError::Llc => "llc_frame",
            LinkError::NotNetwork(kind) => kind,
            LinkError::UnknownMplsPayload => "mpls_unknown_payload",
            LinkError::UnknownFamily(_) => "link_unknown_family",
            LinkError::TooManyHeaders => "link_too_many_headers",
            LinkError::Decode(e) => e.kind(),
        })
    }
}

fn offset_of(frame: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).saturating_sub(frame.as_ptr() as usize)
}

/// An IP ethertype from the version nibble of a raw-IP packet.
fn ip_ethertype(data: &[u8]) -> Option<u16> {
    match data.first().map(|b| b >> 4) {
        Some(4) => Some(EtherType::IPV4.0),
        Some(6) => Some(EtherType::IPV6.0),
        _ => None,
    }
}

/// Finds the network layer of a frame of link type `linktype`.
///
/// # Errors
/// A [`LinkError`] saying why there is no network layer to decode.
pub fn decode_link(linktype: LinkType, frame: &[u8]) -> Result<LinkInfo, LinkError> {
    let mut info = LinkInfo::new();
    let (ethertype, rest) = match linktype {
        LinkType::ETHERNET => return decode_ethernet(frame),
        LinkType::NULL | LinkType::LOOP => {
            let n = if linktype == LinkType::LOOP {
                NullSlice::from_slice_loop(frame)?
            } else {
                NullSlice::from_slice(frame)?
            };
            match n.ip_version() {
                Some(4) => (EtherType::IPV4.0, n.payload()),
                Some(6) => (EtherType::IPV6.0, n.payload()),
                _ => return Err(LinkError::UnknownFamily(n.family())),
            }
        }
        LinkType::RAW | LinkType::RAW_12 | LinkType::RAW_14 | LinkType::IPV4 | LinkType::IPV6 => {
            // trust the version nibble over the link type (mislabelled captures exist)
            match ip_ethertype(frame) {
                Some(et) => (et, frame),
                None => {
                    let v = frame.first().map_or(0, |b| u32::from(b >> 4));
                    return Err(LinkError::UnknownFamily(v));
                }
            }
        }
        LinkType::LINUX_SLL => {
            let s = SllSlice::from_slice(frame)?;
            (s.protocol().0, s.payload())
        }
        LinkType::LINUX_SLL2 => {
            let s = Sll2Slice::from_slice(frame)?;
            (s.protocol().0, s.payload())
        }
        LinkType::PPP | LinkType::PPP_HDLC => {
            let p = PppSlice::from_slice(frame)?;
            (ppp_to_ethertype(p.protocol())?, p.payload())
        }
        LinkType::C_HDLC => {
            // Cisco HDLC: address (0x0f unicast, 0x8f broadcast), control 0,
            // then an ethertype; keepalives (SLARP 0x8035) and CDP (0x2000)
            // carry no network layer
            let head = frame.get(..4).ok_or(DecodeError::Truncated {
                layer: crate::wire::Layer::Ethernet,
                offset: 0,
                needed: 4,
                have: frame.len(),
            })?;
            match u16::from_be_bytes([head[2], head[3]]) {
                0x8035 => return Err(LinkError::NotNetwork("cisco_slarp")),
                0x2000 => return Err(LinkError::NotNetwork("cisco_cdp")),
                et => (et, frame.get(4..).unwrap_or_default()),
            }
        }
        other => return Err(LinkError::UnsupportedLinkType(other)),
    };
    follow_ethertype(frame, ethertype, rest, &mut info, 0)?;
    Ok(info)
}

/// Decodes an Ethernet frame (a captured one, or one inside a tunnel);
/// `l3_offset` is relative to `frame`.
///
/// # Errors
/// As [`decode_link`].
pub fn decode_ethernet(frame: &[u8]) -> Result<LinkInfo, LinkError> {
    let mut info = LinkInfo::new();
    // almost every frame: untagged IPv4 or IPv6 (what the general path
    // below gives for them, without the header walk)
    if let Some(&[hi, lo]) = frame.get(12..14)
        && let et @ (0x0800 | 0x86DD) = u16::from_be_bytes([hi, lo])
    {
        info.ethertype = et;
        info.l3_offset = 14;
        return Ok(info);
    }
    let e = EthernetSlice::from_slice(frame)?;
    if e.is_802_3() {
        let llc = LlcSlice::from_slice(e.payload())?;
        match llc.snap_ethertype() {
            Some(et) if llc.snap_oui() == Some(0) => {
                follow_ethertype(frame, et.0, llc.payload(), &mut info, 0)?;
                return Ok(info);
            }
            _ => return Err(LinkError::Llc),
        }
    }
    follow_ethertype(frame, e.ethertype().0, e.payload(), &mut info, 0)?;
    Ok(info)
}

/// The ethertype of what a PPP protocol number carries (IPv4, IPv6), or
/// `NotNetwork` for control protocols.
///
/// # Errors
/// `LinkError::NotNetwork` when the protocol is not IP.
pub fn ppp_to_ethertype(proto: u16) -> Result<u16, LinkError> {
    match proto {
        ppp::PPP_IPV4 => Ok(EtherType::IPV4.0),
        ppp::PPP_IPV6 => Ok(EtherType::IPV6.0),
        _ => Err(LinkError::NotNetwork("non_ip_ppp")),
    }
}

/// Crosses VLAN tags, MPLS labels and PPPoE headers until a network-layer
/// ethertype is reached.
fn follow_ethertype(
    frame: &[u8],
    mut ethertype: u16,
    mut data: &[u8],
    info: &mut LinkInfo,
    depth: usize,
) -> Result<(), LinkError> {
    for _ in depth..MAX_LINK_HEADERS {
        match EtherType(ethertype) {
            EtherType::VLAN | EtherType::QINQ | EtherType::VLAN_9100 => {
                let v = VlanSlice::from_slice(data)?;
                if let Some(slot) = info.vlans.get_mut(usize::from(info.nvlans)) {
                    *slot = v.vid();
                    info.nvlans += 1;
                }
                ethertype = v.ethertype().0;
                data = v.payload();
            }
            EtherType::MPLS_UC | EtherType::MPLS_MC => {
                let (stack, payload) = parse_mpls_stack(data)?;
                info.mpls_labels = info
                    .mpls_labels
                    .saturating_add(u8::try_from(stack.len()).unwrap_or(u8::MAX));
                match guess_mpls_payload(payload) {
                    (MplsPayload::Ipv4, p) => {
                        ethertype = EtherType::IPV4.0;
                        data = p;
                    }
                    (MplsPayload::Ipv6, p) => {
                        ethertype = EtherType::IPV6.0;
                        data = p;
                    }
                    (MplsPayload::Ethernet, p) => {
                        let e = EthernetSlice::from_slice(p)?;
                        ethertype = e.ethertype().0;
                        data = e.payload();
                    }
                    _ => return Err(LinkError::UnknownMplsPayload),
                }
            }
            EtherType::PPPOE_SESSION => {
                let p = PppoeSlice::from_slice(data)?;
                if !p.is_session() {
                    return Err(LinkError::NotNetwork("non_ip_pppoe"));
                }
                info.pppoe = true;
                ethertype = ppp_to_ethertype(p.ppp_protocol())?;
                data = p.payload();
            }
            EtherType::PPPOE_DISCOVERY => {
                return Err(LinkError::NotNetwork("non_ip_pppoe_discovery"));
            }
            EtherType::NSH => {
                // RFC 8300: a service header, then the packet it steers (the
                // flow is the carried packet's, as through an MPLS label)
                match crate::decode::tunnel::nsh(data, false) {
                    Some(crate::decode::tunnel::Carried::Ipv4(d)) => {
                        ethertype = EtherType::IPV4.0;
                        data = d;
                    }
                    Some(crate::decode::tunnel::Carried::Ipv6(d)) => {
                        ethertype = EtherType::IPV6.0;
                        data = d;
                    }
                    Some(crate::decode::tunnel::Carried::Ethernet(d)) => {
                        let e = EthernetSlice::from_slice(d)?;
                        ethertype = e.ethertype().0;
                        data = e.payload();
                    }
                    None => return Err(LinkError::NotNetwork("nsh_not_decoded")),
                }
            }
            EtherType(0x88E7) => {
                // 802.1ah provider backbone bridging: a 4-byte I-TAG, then the
                // customer's Ethernet header
                let inner = data.get(4..).ok_or(DecodeError::Truncated {
                    layer: crate::wire::Layer::Ethernet,
                    offset: 0,
                    needed: 4,
                    have: data.len(),
                })?;
                let e = EthernetSlice::from_slice(inner)?;
                ethertype = e.ethertype().0;
                data = e.payload();
            }
            _ => {
                info.ethertype = ethertype;
                info.l3_offset = offset_of(frame, data);
                return Ok(());
            }
        }
    }
    Err(LinkError::TooManyHeaders)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the header walk gives for `frame` (the path every ethertype but
    /// untagged IPv4 and IPv6 takes).
    fn walked(frame: &[u8]) -> Result<LinkInfo, LinkError> {
        let e = EthernetSlice::from_slice(frame)?;
        let mut info = LinkInfo::new();
        follow_ethertype(frame, e.ethertype().0, e.payload(), &mut info, 0)?;
        Ok(info)
    }

    #[test]
    fn untagged_ip_gives_what_the_header_walk_gives() {
        for et in [[0x08, 0x00], [0x86, 0xdd], [0x08, 0x06], [0x81, 0x00]] {
            for len in [0usize, 12, 13, 14, 18, 60] {
                let mut frame = vec![0x11u8; len];
                if let Some(t) = frame.get_mut(12..14) {
                    t.copy_from_slice(&et);
                }
                let fast = decode_ethernet(&frame).map_err(|e| format!("{e:?}"));
                let slow = walked(&frame).map_err(|e| format!("{e:?}"));
                assert_eq!(fast, slow, "{et:x?} {len}");
            }
        }
        let mut frame = [0u8; 14];
        frame[12..].copy_from_slice(&[0x86, 0xdd]);
        let info = decode_ethernet(&frame).unwrap();
        assert_eq!(
            (info.ethertype, info.l3_offset, info.nvlans),
            (0x86dd, 14, 0)
        );
    }
}
