//! UDP-borne tunnels: when a datagram on a tunnel port really holds a
//! tunnel header, and what it carries.
//!
//! A tunnel over UDP is found by its port, but a port alone proves
//! nothing: a DNS reply to a client that picked port 4789, 6081 or 3544 as
//! its source port is an ordinary datagram to a tunnel port. So each
//! decoder here checks the header against its specification, and the
//! packet it carries against the bytes that are there. A datagram that
//! fails is analysed as the UDP it is, with no anomaly and no inner layer.
//!
//! # Validity rules
//! `whole` below means the outer UDP datagram was captured entirely (its
//! length field is not larger than the bytes captured); inner lengths must
//! then match exactly. When the capture cut it (snap length), an inner
//! length may be larger than what is left, never smaller.
//!
//! The inner packet of every kind must itself check out:
//! - **IPv4** (RFC 791 §3.1): at least 20 bytes, version 4, IHL ≥ 5, total
//!   length ≥ IHL × 4 and equal to the bytes left (`whole`).
//! - **IPv6** (RFC 8200 §3): at least 40 bytes, version 6, 40 + payload
//!   length equal to the bytes left (`whole`; a payload length of 0 is a
//!   jumbogram, impossible in UDP, so only a 40-byte packet has it).
//! - **Ethernet**: at least a 14-byte header.
//!
//! | kind (default ports) | the header is valid when | carried |
//! | --- | --- | --- |
//! | VXLAN (4789, 8472) | RFC 7348 §5: at least 8 bytes; flags byte has the I flag (0x08) and no other bit but G (0x80, VXLAN-GBP, draft-smith-vxlan-group-policy §2.1) and P (0x04, see GPE); last byte (reserved) 0; without G, the 24 reserved bits after the flags are 0; with G, the second byte has no bit but D (0x40) and A (0x08), and the inner frame must have an ethertype we decode (as for a guessed MPLS payload below). With P set, the GPE rule applies. | Ethernet |
//! | VXLAN-GPE (4790) | draft-ietf-nvo3-vxlan-gpe-12 §3.3: flags byte `R R Ver I P B O` with R = 0, Ver = 0, I = 1, P = 1; the two reserved bytes 0; next protocol 1 (IPv4), 2 (IPv6), 3 (Ethernet), 4 (NSH) or 5 (MPLS); last byte (reserved) 0 | per next protocol |
//! | NSH inside GPE | RFC 8300 §2.2: version 0; length ≥ 2 words and within the bytes; MD type 1 (length exactly 6 words, §2.4) or 2 (§2.5); next protocol 1, 2, 3 (IPv4, IPv6, Ethernet) | per next protocol |
//! | Geneve (6081) | RFC 8926 §3.4: version 0; the 6 reserved bits of the second byte 0; last byte (reserved) 0; the options (opt len × 4 bytes) within the datagram and made of whole TLVs (§3.5); protocol type 0x6558 (Ethernet), 0x0800 or 0x86DD | per protocol type |
//! | GTP-U (2152, either port) | 3GPP TS 29.281 §5.1: version 1, PT 1, spare bit 0; message type 255 (G-PDU: other messages are valid GTP-U that carry no packet); the length field (bytes after the first 8) equal to the bytes left (`whole`); extension headers (§5.2) of non-zero length, at most 16, within the bytes | IPv4 or IPv6 |
//! | Teredo (3544, either port) | RFC 4380 §5.1.1: optional authentication indicator (0x0001, lengths, 8-byte nonce, confirmation byte) then optional origin indication (0x0000, port, address), then an IPv6 packet; the IPv6 rule above must hold, and the packet must fill the datagram (`whole`): a Teredo datagram holds exactly one IPv6 packet. One exception: a bubble (RFC 4380 §2.8: payload length 0, next header 59) followed by other bytes, which some implementations send, is the 40-byte bubble | IPv6 |
//! | MPLS in UDP (6635) | RFC 7510 §3: a label stack ending with the S bit within 16 labels; a bottom label 0 (IPv4 explicit null) carries IPv4 and 2 (IPv6 explicit null) IPv6, 1 and 3 (router alert, implicit null) are never at the bottom (RFC 3032 §2.1); the payload is guessed by its first nibble (4, 6, or 0: a control word, RFC 4385 §3, then Ethernet) and must pass the inner rule; a guessed Ethernet frame must have an ethertype we decode (IPv4 or IPv6 that checks out, ARP, VLAN, MPLS, PPPoE) | per guess |
//! | GRE in UDP (4754) | RFC 8086 §3 with the GRE header of RFC 2784 §2.1 / RFC 2890: version 0, no routing (R) nor strict-route bit, recursion 0, the reserved flag bits of the second byte 0; the protocol type then decides (checked by the analyzer) | per protocol type |
//!
//! The reserved bits are required to be zero although the specifications
//! tell receivers to ignore them: a receiver knows which port is a tunnel,
//! an analyser only guesses from the port, and a non-zero reserved bit is
//! the cheapest evidence that the datagram is something else.
//!
//! Each function returns what the tunnel carries, or `None` when the bytes
//! are not a well-formed header of that tunnel. No function reads past the
//! slice it is given.
//!
//! # Tunnels in the flow key
//! An inner flow's key holds, beside its own 5-tuple, a hash of each tunnel
//! around it (`FlowContext::tunnel`), made only of what both directions of
//! the inner connection share, so that one inner connection is one flow
//! while the same inner 5-tuple in two distinct tunnels stays two flows:
//!
//! | kind | enters the key |
//! | --- | --- |
//! | every kind | the outer IP address pair, in either order, and the tunnels around it |
//! | VXLAN, VXLAN-GPE, Geneve | the VNI (one per segment, the same both ways) |
//! | GRE version 0, GRE in UDP, ERSPAN over GRE | the GRE key when present (RFC 2890 §2.1: it identifies the tunnel) |
//! | enhanced GRE (version 1, PPTP) | nothing more: its key holds the peer's call id (RFC 2637 §4.1), one per direction |
//! | GTP-U | nothing more: each end chooses the TEID it receives on (3GPP TS 29.281 §5.1), so uplink and downlink TEIDs differ. Tunnels between different endpoint pairs stay apart; two bearers between the same pair carrying the same inner 5-tuple (the same UE address and ports twice) would be one flow |
//! | IP in IP, IPv6 in IP, Teredo, MPLS in UDP | nothing more |

use crate::wire::{
    EtherType, GeneveSlice, GreSlice, MplsPayload, VxlanSlice, guess_mpls_payload, parse_mpls_stack,
};

/// What a tunnel header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried<'a> {
    /// An IPv4 packet.
    Ipv4(&'a [u8]),
    /// An IPv6 packet.
    Ipv6(&'a [u8]),
    /// An Ethernet frame.
    Ethernet(&'a [u8]),
}

/// Length of an Ethernet header: the least an inner frame must hold.
const ETHERNET_HEADER: usize = 14;

fn be16_at(d: &[u8], at: usize) -> Option<usize> {
    let b = d.get(at..at + 2)?;
    Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
}

/// `declared` bytes of a packet that has `have` bytes left: equal when the
/// datagram was captured whole, at least as many when it was cut.
fn length_fits(declared: usize, have: usize, whole: bool) -> bool {
    declared == have || (!whole && declared > have)
}

/// An IPv4 packet that checks out (see the module docs).
fn ipv4(d: &[u8], whole: bool) -> Option<Carried<'_>> {
    let b0 = *d.first()?;
    let ihl = usize::from(b0 & 0x0f) * 4;
    let total = be16_at(d, 2)?;
    (b0 >> 4 == 4
        && d.len() >= 20
        && ihl >= 20
        && total >= ihl
        && length_fits(total, d.len(), whole))
    .then_some(Carried::Ipv4(d))
}

/// An IPv6 packet that checks out (see the module docs).
fn ipv6(d: &[u8], whole: bool) -> Option<Carried<'_>> {
    let b0 = *d.first()?;
    let total = 40 + be16_at(d, 4)?;
    (b0 >> 4 == 6 && d.len() >= 40 && length_fits(total, d.len(), whole))
        .then_some(Carried::Ipv6(d))
}

/// An IPv4 or IPv6 packet by its version nibble, checked (see the module
/// docs): what a tunnel whose header names no family carries.
pub fn ip_packet(d: &[u8], whole: bool) -> Option<Carried<'_>> {
    match d.first()? >> 4 {
        4 => ipv4(d, whole),
        6 => ipv6(d, whole),
        _ => None,
    }
}

fn ethernet(d: &[u8]) -> Option<Carried<'_>> {
    (d.len() >= ETHERNET_HEADER).then_some(Carried::Ethernet(d))
}

/// VXLAN on a VXLAN port (RFC 7348; GBP and GPE flags accepted): the VNI
/// and what the datagram carries.
pub fn vxlan(d: &[u8], whole: bool) -> Option<(u32, Carried<'_>)> {
    let v = VxlanSlice::from_slice(d).ok()?;
    let flags = v.flags();
    if flags & VxlanSlice::FLAG_P != 0 {
        return vxlan_gpe(d, whole);
    }
    let vni = v.vni()?;
    // flags other than I and G, and the reserved last byte
    if flags & !(VxlanSlice::FLAG_I | 0x80) != 0 || *d.get(7)? != 0 {
        return None;
    }
    if flags & 0x80 == 0 {
        if d.get(1..4)? != [0, 0, 0] {
            return None;
        }
        return Some((vni, ethernet(v.payload())?));
    }
    // GBP: D (0x40) and A (0x08) flags in byte 1, a group policy id after;
    // fewer zero bits to go by, so the inner frame must check out too
    if d.get(1)? & !0x48 != 0 {
        return None;
    }
    Some((vni, ethernet_checked(v.payload())?))
}

/// VXLAN-GPE (draft-ietf-nvo3-vxlan-gpe-12): the VNI and what the datagram
/// carries.
pub fn vxlan_gpe(d: &[u8], whole: bool) -> Option<(u32, Carried<'_>)> {
    let v = VxlanSlice::from_slice(d).ok()?;
    let flags = v.flags();
    // R R Ver(2) I P B O: R and Ver 0, I and P set
    if flags & 0xf0 != 0
        || flags & (VxlanSlice::FLAG_I | VxlanSlice::FLAG_P)
            != VxlanSlice::FLAG_I | VxlanSlice::FLAG_P
        || d.get(1..3)? != [0, 0]
        || *d.get(7)? != 0
    {
        return None;
    }
    let next = v.gpe_next_protocol()?;
    let vni = v.vni()?;
    Some((vni, gpe(next, v.payload(), whole)?))
}

/// What a VXLAN-GPE header with next protocol `next` carries in `inner`
/// (1 IPv4, 2 IPv6, 3 Ethernet, 4 NSH, 5 MPLS).
pub fn gpe(next: u8, inner: &[u8], whole: bool) -> Option<Carried<'_>> {
    match next {
        1 => ipv4(inner, whole),
        2 => ipv6(inner, whole),
        3 => ethernet(inner),
        4 => nsh(inner, whole),
        5 => mpls_checked(inner, whole),
        _ => None,
    }
}

/// NSH (RFC 8300): the packet after the service header.
pub fn nsh(d: &[u8], whole: bool) -> Option<Carried<'_>> {
    let b0 = *d.first()?;
    if b0 >> 6 != 0 {
        return None;
    }
    let words = usize::from(*d.get(1)? & 0x3f);
    let md_type = *d.get(2)? & 0x0f;
    let len_ok = match md_type {
        1 => words == 6,
        2 => words >= 2,
        _ => false,
    };
    if !len_ok {
        return None;
    }
    let next = *d.get(3)?;
    let inner = d.get(words * 4..)?;
    match next {
        1 => ipv4(inner, whole),
        2 => ipv6(inner, whole),
        3 => ethernet(inner),
        _ => None,
    }
}

/// Geneve (RFC 8926): the VNI and what the datagram carries.
pub fn geneve(d: &[u8], whole: bool) -> Option<(u32, Carried<'_>)> {
    let g = GeneveSlice::from_slice(d).ok()?;
    if d.get(1)? & 0x3f != 0 || *d.get(7)? != 0 {
        return None;
    }
    let mut options = g.options_iter();
    for _ in options.by_ref() {}
    if options.error().is_some() {
        return None;
    }
    let inner = g.payload();
    let carried = match g.protocol_type() {
        EtherType::TEB => ethernet(inner)?,
        EtherType::IPV4 => ipv4(inner, whole)?,
        EtherType::IPV6 => ipv6(inner, whole)?,
        _ => return None,
    };
    Some((g.vni(), carried))
}

/// GTP-U (3GPP TS 29.281): the TEID and the T-PDU of a G-PDU message.
pub fn gtp_u(d: &[u8], whole: bool) -> Option<(u32, Carried<'_>)> {
    let flags = *d.first()?;
    // version 1, PT (GTP, not GTP'), spare bit 0; message type G-PDU
    if flags >> 5 != 1 || flags & 0x10 == 0 || flags & 0x08 != 0 || *d.get(1)? != 0xff {
        return None;
    }
    if !length_fits(8 + be16_at(d, 2)?, d.len(), whole) {
        return None;
    }
    let teid = d.get(4..8)?;
    let teid = u32::from_be_bytes([teid[0], teid[1], teid[2], teid[3]]);
    let mut off = 8;
    if flags & 0x07 != 0 {
        // sequence number, N-PDU number and next extension header type
        let mut next = *d.get(11)?;
        off = 12;
        let mut hops = 0;
        while next != 0 {
            hops += 1;
            if hops > 16 {
                return None;
            }
            let len = usize::from(*d.get(off)?) * 4;
            if len == 0 {
                return None;
            }
            next = *d.get(off + len - 1)?;
            off += len;
        }
    }
    Some((teid, ip_packet(d.get(off..)?, whole)?))
}

/// Teredo (RFC 4380): the IPv6 packet after the optional authentication
/// and origin indication headers.
pub fn teredo(mut d: &[u8], whole: bool) -> Option<Carried<'_>> {
    // authentication indicator: 0x0001, id-len, au-len, id, au, nonce (8), confirmation (1)
    if d.get(..2)? == [0, 1] {
        let id_len = usize::from(*d.get(2)?);
        let au_len = usize::from(*d.get(3)?);
        d = d.get(4 + id_len + au_len + 9..)?;
    }
    // origin indication: 0x0000, port (2), address (4)
    if d.get(..2)? == [0, 0] {
        d = d.get(8..)?;
    }
    // a bubble (payload length 0, no next header) followed by bytes, as
    // some Teredo implementations send them (Zeek's
    // teredo_bubble_with_payload): the bytes after it are not IPv6
    if d.len() > 40 && d.get(..1)?[0] >> 4 == 6 && d.get(4..7)? == [0, 0, 59] {
        return d.get(..40).map(Carried::Ipv6);
    }
    ipv6(d, whole)
}

/// MPLS in GRE (identified by the GRE protocol type, not a port): the
/// payload below the label stack, guessed by its first nibble.
pub fn mpls(d: &[u8]) -> Option<Carried<'_>> {
    let (_, payload) = parse_mpls_stack(d).ok()?;
    match guess_mpls_payload(payload) {
        (MplsPayload::Ipv4, p) => Some(Carried::Ipv4(p)),
        (MplsPayload::Ipv6, p) => Some(Carried::Ipv6(p)),
        (MplsPayload::Ethernet, p) => Some(Carried::Ethernet(p)),
        _ => None,
    }
}

/// MPLS in UDP (RFC 7510) or in VXLAN-GPE: as [`mpls`], with the stack
/// and the guessed payload checked (see the module docs).
pub fn mpls_checked(d: &[u8], whole: bool) -> Option<Carried<'_>> {
    let (_, payload) = parse_mpls_stack(d).ok()?;
    let bottom = d.get(..d.len() - payload.len())?.rchunks_exact(4).next()?;
    let label =
        (u32::from(bottom[0]) << 12) | (u32::from(bottom[1]) << 4) | u32::from(bottom[2] >> 4);
    let carried = match mpls(d)? {
        Carried::Ipv4(p) => ipv4(p, whole),
        Carried::Ipv6(p) => ipv6(p, whole),
        Carried::Ethernet(p) => ethernet_checked(p),
    }?;
    // RFC 3032 §2.1: explicit null labels name the family, the implicit
    // null label is never sent
    match (label, carried) {
        (0, Carried::Ipv4(_)) | (2, Carried::Ipv6(_)) => Some(carried),
        (0..=3, _) => None,
        _ => Some(carried),
    }
}

/// An Ethernet frame whose ethertype is one we decode (a guessed
/// pseudowire payload): IPv4 or IPv6 that checks out (Ethernet may pad:
/// the packet may be shorter than the frame), ARP, VLAN, MPLS, PPPoE.
fn ethernet_checked(d: &[u8]) -> Option<Carried<'_>> {
    let et = be16_at(d, 12)?;
    let payload = d.get(ETHERNET_HEADER..)?;
    let fits = |declared: usize| declared <= payload.len();
    let ok = match et {
        0x0800 => ipv4(payload, false).is_some() && fits(be16_at(payload, 2)?),
        0x86dd => ipv6(payload, false).is_some() && fits(40 + be16_at(payload, 4)?),
        0x0806 | 0x8100 | 0x88a8 | 0x9100 | 0x8847 | 0x8848 | 0x8863 | 0x8864 => true,
        _ => false,
    };
    ok.then_some(Carried::Ethernet(d))
}

/// GRE in UDP (RFC 8086): `true` when the GRE header is one a GRE-in-UDP
/// tunnel sends (version 0, no routing, no recursion, reserved flags 0).
pub fn gre_in_udp(g: &GreSlice<'_>, d: &[u8]) -> bool {
    let (Some(&f0), Some(&f1)) = (d.first(), d.get(1)) else {
        return false;
    };
    // R (0x40), s (0x08) and recursion (0x07); flags and version in byte 1
    g.version() == 0 && f0 & 0x4f == 0 && f1 == 0
}

#[cfg(test)]
mod tests;
