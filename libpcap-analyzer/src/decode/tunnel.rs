//! UDP-borne tunnels that have no zero-copy view in [`crate::wire`]:
//! Teredo (RFC 4380), GTP-U (3GPP TS 29.281), NSH (RFC 8300) for
//! VXLAN-GPE, and the payload guess of MPLS-in-UDP (RFC 7510).
//!
//! Each function returns what the tunnel carries, or `None` when the bytes
//! are not a well-formed header of that tunnel (the packet then stays plain
//! UDP). No function reads past the slice it is given.

use crate::wire::{MplsPayload, guess_mpls_payload, parse_mpls_stack};

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

fn by_version(d: &[u8]) -> Option<Carried<'_>> {
    match d.first()? >> 4 {
        4 if d.len() >= 20 => Some(Carried::Ipv4(d)),
        6 if d.len() >= 40 => Some(Carried::Ipv6(d)),
        _ => None,
    }
}

/// Teredo: an IPv6 packet after optional authentication and origin
/// indication headers.
pub fn teredo(mut d: &[u8]) -> Option<Carried<'_>> {
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
    match by_version(d)? {
        c @ Carried::Ipv6(_) => Some(c),
        _ => None,
    }
}

/// GTP-U: the T-PDU of a G-PDU message (type 255), version 1.
pub fn gtp_u(d: &[u8]) -> Option<Carried<'_>> {
    let flags = *d.first()?;
    if flags >> 5 != 1 || flags & 0x10 == 0 || *d.get(1)? != 0xff {
        return None;
    }
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
    by_version(d.get(off..)?)
}

/// NSH (RFC 8300): the packet after the service header.
pub fn nsh(d: &[u8]) -> Option<Carried<'_>> {
    let b0 = *d.first()?;
    if b0 >> 6 != 0 {
        return None;
    }
    let len = usize::from(*d.get(1)? & 0x3f) * 4;
    if len < 8 {
        return None;
    }
    let next = *d.get(3)?;
    let inner = d.get(len..)?;
    match next {
        1 | 2 => by_version(inner),
        3 => Some(Carried::Ethernet(inner)),
        _ => None,
    }
}

/// VXLAN-GPE next protocol (1 IPv4, 2 IPv6, 3 Ethernet, 4 NSH, 5 MPLS).
pub fn gpe(next: u8, inner: &[u8]) -> Option<Carried<'_>> {
    match next {
        1 | 2 => by_version(inner),
        3 => Some(Carried::Ethernet(inner)),
        4 => nsh(inner),
        5 => mpls(inner),
        _ => None,
    }
}

/// MPLS-in-UDP / MPLS-in-GRE: the payload below the label stack.
pub fn mpls(d: &[u8]) -> Option<Carried<'_>> {
    let (_, payload) = parse_mpls_stack(d).ok()?;
    match guess_mpls_payload(payload) {
        (MplsPayload::Ipv4, p) => Some(Carried::Ipv4(p)),
        (MplsPayload::Ipv6, p) => Some(Carried::Ipv6(p)),
        (MplsPayload::Ethernet, p) => Some(Carried::Ethernet(p)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv6_bytes() -> Vec<u8> {
        let mut v = vec![0x60, 0, 0, 0, 0, 0, 59, 64];
        v.extend_from_slice(&[0u8; 32]);
        v
    }

    #[test]
    fn teredo_with_origin_indication() {
        let mut d = vec![0, 0, 0x12, 0x34, 1, 2, 3, 4];
        d.extend(ipv6_bytes());
        assert!(matches!(teredo(&d), Some(Carried::Ipv6(p)) if p.len() == 40));
        let mut a = vec![0, 1, 0, 0];
        a.extend_from_slice(&[0u8; 9]);
        a.extend(ipv6_bytes());
        assert!(matches!(teredo(&a), Some(Carried::Ipv6(_))));
        assert_eq!(teredo(&[0x45; 40]), None);
    }

    #[test]
    fn gtp_u_with_extension_header() {
        // flags: version 1, PT, E; type 255; length; TEID; seq, npdu, next ext 0x85
        let mut d = vec![0x34, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x85];
        d.extend_from_slice(&[1, 0x10, 0x01, 0x00]); // one 4-byte extension, next type 0
        let mut ip = vec![0x45u8; 1];
        ip.extend_from_slice(&[0u8; 19]);
        d.extend_from_slice(&ip);
        assert!(matches!(gtp_u(&d), Some(Carried::Ipv4(p)) if p.len() == 20));
        // zero-length extension is refused
        let mut bad = d.clone();
        bad[12] = 0;
        assert_eq!(gtp_u(&bad), None);
    }

    #[test]
    fn nsh_to_ethernet() {
        let mut d = vec![0x0f, 0x06, 0x02, 0x03, 0, 0, 1, 0xff];
        d.extend_from_slice(&[0u8; 16]); // MD type 2 context up to 6 words
        d.extend_from_slice(&[0xaa; 14]);
        assert!(matches!(nsh(&d), Some(Carried::Ethernet(e)) if e.len() == 14));
    }

    #[test]
    fn never_panic_on_short_input() {
        type Decoder = fn(&[u8]) -> Option<Carried<'_>>;
        let all: &[Decoder] = &[teredo, gtp_u, nsh, mpls];
        let mut x: u32 = 0x1234_5678;
        for len in 0..64 {
            for _ in 0..200 {
                let d: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                for f in all {
                    let _ = f(&d);
                }
                let _ = gpe(d.first().copied().unwrap_or(0) % 6, &d);
            }
        }
    }
}
