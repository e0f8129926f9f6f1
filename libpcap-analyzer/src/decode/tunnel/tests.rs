//! The validity rules of the module docs, one by one, on built headers.

use super::*;
use crate::build;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const V4A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const V4B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn inner_v4() -> Vec<u8> {
    build::ipv4(
        V4A,
        V4B,
        17,
        7,
        &build::udp(V4A.into(), V4B.into(), 1000, 2000, b"inner"),
    )
}

fn inner_v6() -> Vec<u8> {
    let (a, b) = (Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
    build::ipv6(
        a,
        b,
        17,
        &build::udp(a.into(), b.into(), 1000, 2000, b"inner6"),
    )
}

fn inner_eth() -> Vec<u8> {
    build::ethernet(build::MAC_A, build::MAC_B, 0x0800, &inner_v4())
}

/// A DNS reply, as a client whose source port is a tunnel port gets it.
fn dns_reply(id: u16) -> Vec<u8> {
    build::dns_response(
        id,
        "www.example.com",
        1,
        0,
        &[IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))],
        300,
    )
}

/// Every DNS transaction id, with 0, 1 and 3 answers and an NXDOMAIN.
fn dns_replies() -> impl Iterator<Item = Vec<u8>> {
    (0..=u16::MAX).flat_map(|id| {
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        [
            dns_reply(id),
            build::dns_response(id, "a.example", 1, 3, &[], 60),
            build::dns_response(id, "b.example", 28, 0, &[a, a, a], 60),
        ]
    })
}

#[test]
fn no_dns_reply_is_a_tunnel() {
    for m in dns_replies() {
        for whole in [true, false] {
            assert_eq!(vxlan(&m, whole), None, "vxlan {m:02x?}");
            assert_eq!(vxlan_gpe(&m, whole), None, "gpe {m:02x?}");
            assert_eq!(geneve(&m, whole), None, "geneve {m:02x?}");
            assert_eq!(gtp_u(&m, whole), None, "gtp {m:02x?}");
            assert_eq!(mpls_checked(&m, whole), None, "mpls {m:02x?}");
        }
        // a cut Teredo datagram may declare more than it holds: only
        // whole ones are checked exactly
        assert_eq!(teredo(&m, true), None, "teredo {m:02x?}");
    }
}

#[test]
fn the_old_port_rules_took_dns_replies_for_tunnels() {
    // the two replies gen-pcap --mix dns showed as anomalies: an id with
    // the VXLAN I bit, an id starting with the IPv6 version nibble
    let r = dns_reply(0x0800);
    assert_eq!(r[0] & VxlanSlice::FLAG_I, VxlanSlice::FLAG_I);
    assert_eq!(vxlan(&r, true), None);
    let r = dns_reply(0x6123);
    assert_eq!(r[0] >> 4, 6);
    assert!(r.len() >= 40);
    assert_eq!(teredo(&r, true), None);
}

#[test]
fn vxlan_rules() {
    let eth = inner_eth();
    let good = build::vxlan(0x123456, &eth);
    assert_eq!(
        vxlan(&good, true),
        Some((0x123456, Carried::Ethernet(&eth[..])))
    );
    // each reserved bit of the flags, of the 24 bits after and of the last byte
    for (at, bit) in [(0, 0x01), (0, 0x02), (0, 0x10), (0, 0x20), (0, 0x40)]
        .into_iter()
        .chain((1..4).map(|at| (at, 0x01)))
        .chain([(7, 0x01), (7, 0x80)])
    {
        let mut b = good.clone();
        b[at] |= bit;
        assert_eq!(vxlan(&b, true), None, "byte {at} bit {bit:#x}");
    }
    // no I flag: no valid VNI
    let mut b = good.clone();
    b[0] = 0;
    assert_eq!(vxlan(&b, true), None);
    // GBP: G flag, D and A flags, a group policy id (and an inner frame
    // with an ethertype we decode)
    let mut b = good.clone();
    b[0] = 0x88;
    b[1] = 0x48;
    b[2] = 0x12;
    b[3] = 0x34;
    assert_eq!(
        vxlan(&b, true),
        Some((0x123456, Carried::Ethernet(&eth[..])))
    );
    let mut odd = b.clone();
    odd[8 + 12] = 0x12;
    assert_eq!(
        vxlan(&odd, true),
        None,
        "GBP with an ethertype we do not decode"
    );
    odd[0] = 0x08;
    odd[1..4].fill(0);
    assert!(vxlan(&odd, true).is_some(), "plain VXLAN takes any frame");
    b[1] = 0x01;
    assert_eq!(vxlan(&b, true), None, "an undefined GBP flag");
    // an inner frame shorter than an Ethernet header
    assert_eq!(vxlan(&build::vxlan(1, &eth[..13]), true), None);
    // the P flag on a VXLAN port: VXLAN-GPE (as zeek_vxlan-triple-v2)
    let mut b = good.clone();
    b[0] = 0x0c;
    b[3] = 3;
    assert_eq!(
        vxlan(&b, true),
        Some((0x123456, Carried::Ethernet(&eth[..])))
    );
}

fn gpe_header(next: u8, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut h = vec![0x0c, 0, 0, next];
    h.extend_from_slice(&(vni << 8).to_be_bytes());
    h.extend_from_slice(inner);
    h
}

#[test]
fn vxlan_gpe_rules() {
    let v4 = inner_v4();
    let v6 = inner_v6();
    let eth = inner_eth();
    assert_eq!(
        vxlan_gpe(&gpe_header(1, 9, &v4), true),
        Some((9, Carried::Ipv4(&v4[..])))
    );
    assert_eq!(
        vxlan_gpe(&gpe_header(2, 9, &v6), true),
        Some((9, Carried::Ipv6(&v6[..])))
    );
    assert_eq!(
        vxlan_gpe(&gpe_header(3, 9, &eth), true),
        Some((9, Carried::Ethernet(&eth[..])))
    );
    // the wrong next protocol for the bytes, an unknown one
    assert_eq!(vxlan_gpe(&gpe_header(2, 9, &v4), true), None);
    assert_eq!(vxlan_gpe(&gpe_header(6, 9, &v4), true), None);
    let good = gpe_header(1, 9, &v4);
    // R bits, version, reserved bytes; no I or no P flag
    for (at, bit) in [
        (0, 0x80),
        (0, 0x40),
        (0, 0x20),
        (0, 0x10),
        (1, 1),
        (2, 1),
        (7, 1),
    ] {
        let mut b = good.clone();
        b[at] |= bit;
        assert_eq!(vxlan_gpe(&b, true), None, "byte {at} bit {bit:#x}");
    }
    for clear in [VxlanSlice::FLAG_I, VxlanSlice::FLAG_P] {
        let mut b = good.clone();
        b[0] &= !clear;
        assert_eq!(vxlan_gpe(&b, true), None);
    }
    // B and O flags are defined
    let mut b = good.clone();
    b[0] |= 0x03;
    assert!(vxlan_gpe(&b, true).is_some());
}

#[test]
fn inner_lengths_must_match_the_datagram() {
    let v4 = inner_v4();
    let v6 = inner_v6();
    // one byte more than the packet says: not the packet
    let mut long4 = v4.clone();
    long4.push(0);
    let mut long6 = v6.clone();
    long6.push(0);
    assert_eq!(vxlan_gpe(&gpe_header(1, 1, &long4), true), None);
    assert_eq!(vxlan_gpe(&gpe_header(2, 1, &long6), true), None);
    assert_eq!(vxlan_gpe(&gpe_header(1, 1, &long4), false), None);
    // cut by the snap length: longer than what is left is fine then only
    let cut4 = &v4[..v4.len() - 3];
    let cut6 = &v6[..v6.len() - 3];
    assert_eq!(vxlan_gpe(&gpe_header(1, 1, cut4), true), None);
    assert!(vxlan_gpe(&gpe_header(1, 1, cut4), false).is_some());
    assert_eq!(vxlan_gpe(&gpe_header(2, 1, cut6), true), None);
    assert!(vxlan_gpe(&gpe_header(2, 1, cut6), false).is_some());
    // IPv4 with IHL < 5, total length shorter than the header
    let mut b = v4.clone();
    b[0] = 0x44;
    assert_eq!(vxlan_gpe(&gpe_header(1, 1, &b), true), None);
    let mut b = v4.clone();
    b[2] = 0;
    b[3] = 16;
    assert_eq!(vxlan_gpe(&gpe_header(1, 1, &b), false), None);
}

#[test]
fn nsh_rules() {
    let eth = inner_eth();
    let v4 = inner_v4();
    // MD type 2, 2 words, Ethernet
    let mut d = vec![0x0f, 0x02, 0x02, 0x03, 0, 0, 1, 0xff];
    d.extend_from_slice(&eth);
    assert_eq!(nsh(&d, true), Some(Carried::Ethernet(&eth[..])));
    // MD type 1 must be 6 words
    let mut d1 = vec![0x0f, 0x06, 0x01, 0x01, 0, 0, 1, 0xff];
    d1.extend_from_slice(&[0u8; 16]);
    d1.extend_from_slice(&v4);
    assert_eq!(nsh(&d1, true), Some(Carried::Ipv4(&v4[..])));
    let mut bad = d1.clone();
    bad[1] = 0x05;
    assert_eq!(nsh(&bad, true), None);
    // MD type 0 and 0xf, version 1, a length of 1 word
    for (at, v) in [(2, 0x00), (2, 0x0f), (0, 0x4f), (1, 0x01)] {
        let mut b = d.clone();
        b[at] = v;
        assert_eq!(nsh(&b, true), None, "byte {at} = {v:#x}");
    }
    // through VXLAN-GPE
    let g = gpe_header(4, 5, &d);
    assert_eq!(vxlan_gpe(&g, true), Some((5, Carried::Ethernet(&eth[..]))));
}

#[test]
fn geneve_rules() {
    let eth = inner_eth();
    let v4 = inner_v4();
    let good = build::geneve(77, 0x6558, &eth);
    assert_eq!(geneve(&good, true), Some((77, Carried::Ethernet(&eth[..]))));
    assert_eq!(
        geneve(&build::geneve(77, 0x0800, &v4), true),
        Some((77, Carried::Ipv4(&v4[..])))
    );
    // protocol types we do not decode, a v4 packet said to be v6
    assert_eq!(geneve(&build::geneve(77, 0x8847, &v4), true), None);
    assert_eq!(geneve(&build::geneve(77, 0x86dd, &v4), true), None);
    // version, reserved bits of byte 1, reserved last byte
    for (at, bit) in [(0, 0x40), (1, 0x01), (1, 0x20), (7, 0x01)] {
        let mut b = good.clone();
        b[at] |= bit;
        assert_eq!(geneve(&b, true), None, "byte {at} bit {bit:#x}");
    }
    // O and C bits are defined
    let mut b = good.clone();
    b[1] |= 0xc0;
    assert!(geneve(&b, true).is_some());
    // one option of 4 bytes of data (opt len 2 words)
    let mut opt = vec![0x02, 0x00, 0x65, 0x58, 0, 0, 77, 0, 0x01, 0x02, 0x03, 0x01];
    opt.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    opt.extend_from_slice(&eth);
    assert_eq!(geneve(&opt, true), Some((77, Carried::Ethernet(&eth[..]))));
    // an option running past the options area
    let mut b = opt.clone();
    b[11] = 0x02;
    assert_eq!(geneve(&b, true), None);
}

fn gtp(flags: u8, msg: u8, teid: u32, ext: &[u8], inner: &[u8]) -> Vec<u8> {
    let mut d = vec![flags, msg];
    d.extend_from_slice(&((ext.len() + inner.len()) as u16).to_be_bytes());
    d.extend_from_slice(&teid.to_be_bytes());
    d.extend_from_slice(ext);
    d.extend_from_slice(inner);
    d
}

#[test]
fn gtp_u_rules() {
    let v4 = inner_v4();
    let v6 = inner_v6();
    assert_eq!(
        gtp_u(&gtp(0x30, 0xff, 42, &[], &v4), true),
        Some((42, Carried::Ipv4(&v4[..])))
    );
    assert_eq!(
        gtp_u(&gtp(0x30, 0xff, 42, &[], &v6), true),
        Some((42, Carried::Ipv6(&v6[..])))
    );
    // sequence number and one 4-byte extension header
    let ext = [0, 0, 0, 0x85, 1, 0x10, 0x01, 0x00];
    let d = gtp(0x34, 0xff, 42, &ext, &v4);
    assert_eq!(gtp_u(&d, true), Some((42, Carried::Ipv4(&v4[..]))));
    let mut bad = d.clone();
    bad[12] = 0;
    assert_eq!(gtp_u(&bad, true), None, "zero-length extension");
    // version 2, GTP' (PT 0), spare bit, echo request, wrong length
    for (at, v) in [(0, 0x50), (0, 0x20), (0, 0x38), (1, 0x01)] {
        let mut b = gtp(0x30, 0xff, 42, &[], &v4);
        b[at] = v;
        assert_eq!(gtp_u(&b, true), None, "byte {at} = {v:#x}");
    }
    let mut b = gtp(0x30, 0xff, 42, &[], &v4);
    b[3] += 1;
    assert_eq!(gtp_u(&b, true), None, "length one more than the bytes");
    assert!(gtp_u(&b, false).is_some(), "a cut datagram may say more");
    b[3] -= 2;
    assert_eq!(gtp_u(&b, false), None, "length one less than the bytes");
    // a T-PDU that is not IP
    assert_eq!(gtp_u(&gtp(0x30, 0xff, 1, &[], &[0x12; 40]), true), None);
}

#[test]
fn teredo_rules() {
    let v6 = inner_v6();
    assert_eq!(teredo(&v6, true), Some(Carried::Ipv6(&v6[..])));
    // origin indication, authentication then origin indication
    let mut d = vec![0, 0, 0x12, 0x34, 1, 2, 3, 4];
    d.extend_from_slice(&v6);
    assert_eq!(teredo(&d, true), Some(Carried::Ipv6(&v6[..])));
    let mut a = vec![0, 1, 0, 0];
    a.extend_from_slice(&[0u8; 9]);
    a.extend_from_slice(&d);
    assert_eq!(teredo(&a, true), Some(Carried::Ipv6(&v6[..])));
    // a bubble: no next header, payload length 0
    let bubble = build::ipv6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 59, &[]);
    assert_eq!(teredo(&bubble, true), Some(Carried::Ipv6(&bubble[..])));
    // a bubble followed by bytes (zeek_teredo_bubble_with_payload): the bubble
    let mut trailing = bubble.clone();
    trailing.extend_from_slice(&[0xaa; 12]);
    assert_eq!(teredo(&trailing, true), Some(Carried::Ipv6(&bubble[..])));
    // trailing bytes after another IPv6 packet, a packet longer than the datagram
    let mut long = v6.clone();
    long.push(0);
    assert_eq!(teredo(&long, true), None);
    assert_eq!(teredo(&v6[..v6.len() - 1], true), None);
    assert!(teredo(&v6[..v6.len() - 1], false).is_some());
    // not IPv6
    assert_eq!(teredo(&inner_v4(), true), None);
    assert_eq!(teredo(&[0x45; 40], true), None);
}

#[test]
fn mpls_in_udp_rules() {
    let v4 = inner_v4();
    let mut d = vec![0x00, 0x06, 0x41, 0x40]; // label 100, bottom of stack, ttl 64
    d.extend_from_slice(&v4);
    assert_eq!(mpls_checked(&d, true), Some(Carried::Ipv4(&v4[..])));
    d.push(0);
    assert_eq!(mpls_checked(&d, true), None);
    // the unchecked guess (MPLS in GRE) still takes it
    assert!(mpls(&d).is_some());
}

#[test]
fn gre_in_udp_rules() {
    let v4 = inner_v4();
    let good = build::gre(0x0800, Some(5), &v4);
    assert!(gre_in_udp(&GreSlice::from_slice(&good).unwrap(), &good));
    for (at, bit) in [(0, 0x40), (0, 0x08), (0, 0x01), (1, 0x08), (1, 0x01)] {
        let mut b = good.clone();
        b[at] |= bit;
        if let Ok(g) = GreSlice::from_slice(&b) {
            assert!(!gre_in_udp(&g, &b), "byte {at} bit {bit:#x}");
        }
    }
}

#[test]
fn never_panic_on_any_input() {
    type Decoder = fn(&[u8], bool) -> Option<Carried<'_>>;
    let all: &[Decoder] = &[teredo, nsh, mpls_checked];
    let mut x: u32 = 0x1234_5678;
    for len in 0..96 {
        for _ in 0..200 {
            let d: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            for whole in [true, false] {
                for f in all {
                    let _ = f(&d, whole);
                }
                let _ = vxlan(&d, whole);
                let _ = vxlan_gpe(&d, whole);
                let _ = geneve(&d, whole);
                let _ = gtp_u(&d, whole);
                let _ = gpe(d.first().copied().unwrap_or(0) % 6, &d, whole);
            }
            let _ = mpls(&d);
        }
    }
}
