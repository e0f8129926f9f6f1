//! Arbitrary bytes through every tunnel decoder of `decode::tunnel` (the
//! validity rules that decide whether a datagram on a tunnel port is a
//! tunnel), whole and cut: no panic, and whatever a decoder says it
//! carries lies inside the bytes it was given.

#![no_main]

use libfuzzer_sys::fuzz_target;
use libpcap_analyzer::decode::tunnel::{self, Carried};

fn inside(outer: &[u8], c: &Carried<'_>) {
    let inner = match c {
        Carried::Ipv4(d) | Carried::Ipv6(d) | Carried::Ethernet(d) => *d,
    };
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    assert!(i >= o && i + inner.len() <= o + outer.len());
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, d)) = data.split_first() else {
        return;
    };
    let whole = sel & 0x80 != 0;
    let c = match sel & 0x0f {
        0 => tunnel::vxlan(d, whole).map(|x| x.1),
        1 => tunnel::vxlan_gpe(d, whole).map(|x| x.1),
        2 => tunnel::geneve(d, whole).map(|x| x.1),
        3 => tunnel::gtp_u(d, whole).map(|x| x.1),
        4 => tunnel::teredo(d, whole),
        5 => tunnel::nsh(d, whole),
        6 => tunnel::mpls_checked(d, whole),
        7 => tunnel::gpe(sel >> 4, d, whole),
        8 => tunnel::ip_packet(d, whole),
        _ => tunnel::mpls(d),
    };
    if let Some(c) = c {
        inside(d, &c);
    }
});
