//! Fuzz-ish no-panic test: pseudo-random bytes (xorshift) of lengths
//! 0..200 fed to every decoder, accessor and iterator.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next() as u8;
        }
    }
}

/// Sink that keeps values alive so the optimiser cannot drop the calls.
#[derive(Default)]
struct Sink(String);

impl Sink {
    fn eat<T: std::fmt::Debug>(&mut self, v: T) {
        self.0.clear();
        let _ = write!(self.0, "{v:?}");
    }
}

fn exercise(data: &[u8], s: &mut Sink) {
    if let Ok(e) = EthernetSlice::from_slice(data) {
        s.eat((
            e.dst(),
            e.src(),
            e.ethertype(),
            e.is_802_3(),
            e.header_len(),
        ));
        s.eat((e.header(), e.payload(), e.ethertype().to_string()));
    }
    if let Ok(l) = LlcSlice::from_slice(data) {
        s.eat((l.dsap(), l.ssap(), l.control(), l.is_snap(), l.snap_oui()));
        s.eat((l.snap_ethertype(), l.header_len(), l.payload()));
    }
    if let Ok(v) = VlanSlice::from_slice(data) {
        s.eat((
            v.tci(),
            v.pcp(),
            v.dei(),
            v.vid(),
            v.ethertype(),
            v.header_len(),
            v.payload(),
        ));
    }
    match parse_mpls_stack(data) {
        Ok((st, p)) => {
            s.eat((
                st.len(),
                st.is_empty(),
                st.top(),
                st.bottom(),
                st.label(3),
                p,
            ));
            s.eat(st.iter().collect::<Vec<_>>());
            s.eat(st.as_bytes());
            s.eat(guess_mpls_payload(p));
        }
        Err(e) => s.eat(e.to_string()),
    }
    if let Ok(m) = MplsSlice::from_slice(data) {
        s.eat((m.stack(), m.header_len(), m.payload()));
    }
    s.eat(guess_mpls_payload(data));
    if let Ok(p) = PppoeSlice::from_slice(data) {
        s.eat((
            p.version(),
            p.pppoe_type(),
            p.code(),
            p.is_session(),
            p.session_id(),
        ));
        s.eat((
            p.length(),
            p.ppp_protocol(),
            p.header_len(),
            p.is_truncated(),
            p.payload(),
        ));
    }
    if let Ok(p) = PppSlice::from_slice(data) {
        s.eat((
            p.has_address_control(),
            p.protocol(),
            p.header_len(),
            p.payload(),
        ));
    }
    if let Ok(p) = SllSlice::from_slice(data) {
        s.eat((
            p.packet_type(),
            p.arphrd_type(),
            p.addr_len(),
            p.addr(),
            p.protocol(),
        ));
        s.eat((p.header_len(), p.payload()));
    }
    if let Ok(p) = Sll2Slice::from_slice(data) {
        s.eat((
            p.protocol(),
            p.reserved(),
            p.ifindex(),
            p.arphrd_type(),
            p.packet_type(),
        ));
        s.eat((p.addr_len(), p.addr(), p.header_len(), p.payload()));
    }
    for n in [
        NullSlice::from_slice(data),
        NullSlice::from_slice_loop(data),
    ]
    .into_iter()
    .flatten()
    {
        s.eat((n.family(), n.ip_version(), n.header_len(), n.payload()));
    }
    if let Ok(a) = ArpSlice::from_slice(data) {
        s.eat((
            a.htype(),
            a.ptype(),
            a.hlen(),
            a.plen(),
            a.oper(),
            a.sender_hw(),
        ));
        s.eat((
            a.sender_proto(),
            a.target_hw(),
            a.target_proto(),
            a.sender_ipv4(),
        ));
        s.eat((a.target_ipv4(), a.header_len(), a.payload()));
    }
    if let Ok(ip) = Ipv4Slice::from_slice(data) {
        s.eat((
            ip.version(),
            ip.ihl(),
            ip.tos(),
            ip.dscp(),
            ip.ecn(),
            ip.total_len(),
        ));
        s.eat((
            ip.identification(),
            ip.flags(),
            ip.dont_fragment(),
            ip.more_fragments(),
        ));
        s.eat((
            ip.fragment_offset(),
            ip.fragment_offset_bytes(),
            ip.is_fragment(),
            ip.ttl(),
        ));
        s.eat((
            ip.protocol(),
            ip.checksum(),
            ip.src(),
            ip.dst(),
            ip.options(),
            ip.header(),
        ));
        s.eat((
            ip.header_len(),
            ip.verify_checksum(),
            ip.is_truncated(),
            ip.payload(),
        ));
        s.eat(verify_transport_checksum(
            IpAddr::V4(ip.src()),
            IpAddr::V4(ip.dst()),
            ip.protocol(),
            ip.payload(),
        ));
    }
    if let Ok(ip) = Ipv6Slice::from_slice(data) {
        s.eat((
            ip.version(),
            ip.traffic_class(),
            ip.flow_label(),
            ip.payload_len(),
        ));
        s.eat((
            ip.next_header(),
            ip.hop_limit(),
            ip.src(),
            ip.dst(),
            ip.header(),
        ));
        s.eat((ip.header_len(), ip.is_truncated(), ip.payload()));
        if let Ok(c) = walk_ipv6_extensions(ip.next_header(), ip.payload()) {
            s.eat((
                c,
                c.header_len(ip.payload()),
                c.fragment.map(|f| f.is_first()),
            ));
        }
    }
    for nh in [0u8, 43, 44, 51, 60] {
        match walk_ipv6_extensions(nh, data) {
            Ok(c) => s.eat((c, c.header_len(data))),
            Err(e) => s.eat((e.layer(), e.is_truncated(), e.to_string())),
        }
    }
    if let Ok(t) = TcpSlice::from_slice(data) {
        s.eat((
            t.src_port(),
            t.dst_port(),
            t.seq(),
            t.ack(),
            t.data_offset(),
        ));
        s.eat((
            t.flags(),
            t.flags().to_string(),
            t.window(),
            t.checksum(),
            t.urgent_ptr(),
        ));
        s.eat((t.options(), t.header(), t.header_len(), t.payload()));
        let mut it = t.options_iter();
        for o in it.by_ref() {
            s.eat((o, o.sack_blocks().collect::<Vec<_>>()));
        }
        s.eat(it.error());
    }
    let mut it = tcp::TcpOptionsIter::new(data);
    for o in it.by_ref() {
        s.eat(o);
    }
    s.eat(it.error());
    if let Ok(u) = UdpSlice::from_slice(data) {
        s.eat((
            u.src_port(),
            u.dst_port(),
            u.length(),
            u.checksum(),
            u.header_len(),
        ));
        s.eat((u.is_truncated(), u.payload()));
    }
    if let Ok(i) = IcmpSlice::from_slice(data) {
        s.eat((
            i.icmp_type(),
            i.code(),
            i.checksum(),
            i.rest_of_header(),
            i.echo_id(),
        ));
        s.eat((
            i.echo_seq(),
            i.header_len(),
            i.message(),
            i.payload(),
            i.is_error(),
        ));
        s.eat((i.is_echo(), i.verify_checksum()));
    }
    if let Ok(i) = Icmpv6Slice::from_slice(data) {
        s.eat((
            i.icmp_type(),
            i.code(),
            i.checksum(),
            i.rest_of_header(),
            i.echo_id(),
        ));
        s.eat((
            i.echo_seq(),
            i.header_len(),
            i.message(),
            i.payload(),
            i.is_error(),
        ));
        s.eat((i.is_echo(), i.mtu()));
        s.eat(verify_transport_checksum(
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            58,
            i.message(),
        ));
    }
    if let Ok(sc) = SctpSlice::from_slice(data) {
        s.eat((
            sc.src_port(),
            sc.dst_port(),
            sc.verification_tag(),
            sc.checksum(),
        ));
        s.eat((sc.header_len(), sc.payload()));
        let mut it = sc.chunks();
        for c in it.by_ref() {
            s.eat((c, c.is_truncated()));
        }
        s.eat(it.error());
    }
    if let Ok(g) = GreSlice::from_slice(data) {
        s.eat((
            g.checksum_present(),
            g.routing_present(),
            g.key_present(),
            g.seq_present(),
        ));
        s.eat((
            g.strict_source_route(),
            g.recursion_control(),
            g.ack_present(),
        ));
        s.eat((
            g.version(),
            g.protocol_type(),
            g.checksum(),
            g.offset(),
            g.key(),
        ));
        s.eat((
            g.pptp_payload_len(),
            g.pptp_call_id(),
            g.sequence(),
            g.ack(),
        ));
        s.eat((g.routing(), g.header_len(), g.payload()));
    }
    for e in [
        ErspanSlice::from_slice(data),
        ErspanSlice::from_slice_type2(data),
        ErspanSlice::from_slice_type3(data),
    ]
    .into_iter()
    .flatten()
    {
        s.eat((
            e.version(),
            e.is_type3(),
            e.vlan(),
            e.cos(),
            e.en(),
            e.truncated_flag(),
        ));
        s.eat((
            e.session_id(),
            e.index(),
            e.timestamp(),
            e.sgt(),
            e.frame_type(),
        ));
        s.eat((
            e.hw_id(),
            e.direction(),
            e.granularity(),
            e.platform_subheader(),
        ));
        s.eat((e.header_len(), e.payload()));
    }
    if let Ok(v) = VxlanSlice::from_slice(data) {
        s.eat((
            v.flags(),
            v.vni(),
            v.gpe_next_protocol(),
            v.header_len(),
            v.payload(),
        ));
    }
    if let Ok(g) = GeneveSlice::from_slice(data) {
        s.eat((
            g.version(),
            g.opt_len(),
            g.oam(),
            g.critical(),
            g.protocol_type(),
        ));
        s.eat((g.vni(), g.options(), g.header_len(), g.payload()));
        let mut it = g.options_iter();
        for o in it.by_ref() {
            s.eat((o, o.is_critical()));
        }
        s.eat(it.error());
    }
    s.eat((internet_checksum(data), sum16(data)));
    s.eat(verify_transport_checksum(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(Ipv4Addr::BROADCAST),
        17,
        data,
    ));
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut sink = Sink::default();
    let mut buf = [0u8; 200];
    for round in 0..120 {
        for len in 0..200 {
            let b = &mut buf[..len];
            rng.fill(b);
            // steer the first nibble/bytes towards valid versions now and
            // then, so deeper code paths are reached
            match round % 6 {
                1 => {
                    if let Some(x) = b.first_mut() {
                        *x = 0x45 + (*x & 0x0A);
                    }
                }
                2 => {
                    if let Some(x) = b.first_mut() {
                        *x = 0x60 | (*x & 0x0F);
                    }
                }
                3 => {
                    if let Some(x) = b.get_mut(12) {
                        *x = 0x50 | (*x & 0xAF);
                    }
                }
                4 => {
                    if let Some(x) = b.first_mut() {
                        *x &= 0x3F;
                    }
                    if let Some(x) = b.get_mut(1) {
                        *x &= 0x01;
                    }
                }
                5 => {
                    if let Some(x) = b.get_mut(1) {
                        *x &= 0x07;
                    }
                    if let Some(x) = b.get_mut(2) {
                        *x &= 0x01;
                    }
                }
                _ => {}
            }
            exercise(b, &mut sink);
        }
    }
}

#[test]
fn special_bytes_never_panic() {
    let mut sink = Sink::default();
    for fill in [0x00u8, 0xFF, 0x01, 0x45, 0x60, 0x11, 0x80] {
        for len in 0..200 {
            let b = vec![fill; len];
            exercise(&b, &mut sink);
        }
    }
}
