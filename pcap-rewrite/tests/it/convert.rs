//! Link-type conversion, VLAN removal, decapsulation and checksum fixing on
//! packets built independently with libpcap_analyzer::build: the expected
//! output is built directly, not derived from the code under test.

use crate::common::{packets, pkt, write_pcap, write_pcapng};
use libpcap_analyzer::build;
use libpcap_tools::{LinkType, OwnedPacket};
use pcap_rewrite::convert::{ConvertConfig, SYNTH_DST_MAC, SYNTH_SRC_MAC, TargetLink};
use pcap_rewrite::output::OutputFormat;
use pcap_rewrite::{Options, Summary, rewrite};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const MAC_S: [u8; 6] = [0, 1, 2, 3, 4, 5];
const MAC_D: [u8; 6] = [0xa, 0xb, 0xc, 0xd, 0xe, 0xf];

fn a4(x: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, x))
}

fn ip_udp(src: u8, dst: u8, dport: u16) -> Vec<u8> {
    let (s, d) = (Ipv4Addr::new(10, 0, 0, src), Ipv4Addr::new(10, 0, 0, dst));
    build::ipv4(
        s,
        d,
        17,
        1,
        &build::udp(s.into(), d.into(), 1000, dport, b"payload!"),
    )
}

fn ip_tcp(src: u8, dst: u8) -> Vec<u8> {
    let (s, d) = (Ipv4Addr::new(10, 0, 0, src), Ipv4Addr::new(10, 0, 0, dst));
    build::ipv4(
        s,
        d,
        6,
        1,
        &build::tcp(s.into(), d.into(), 1, 80, 7, 9, 0x18, b"GET /"),
    )
}

/// Runs `cfg` over `frames` (all of `lt`) and returns the output packets.
fn run(lt: LinkType, frames: Vec<Vec<u8>>, cfg: ConvertConfig) -> (Vec<OwnedPacket>, Summary) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcap");
    let output = dir.path().join("out.pcapng");
    let v: Vec<_> = frames
        .into_iter()
        .enumerate()
        .map(|(i, d)| pkt(i, lt, d))
        .collect();
    write_pcap(&input, lt, &v);
    let opts = Options {
        convert: cfg,
        output_format: Some(OutputFormat::PcapNg),
        ..Options::default()
    };
    let s = rewrite(&input, &output, &opts).unwrap();
    (packets(&output), s)
}

fn cfg(to: Option<TargetLink>, strip_vlan: bool, decap: bool, fix: bool) -> ConvertConfig {
    ConvertConfig {
        to,
        strip_vlan,
        decap,
        fix_checksums: fix,
    }
}

#[test]
fn strip_vlan_removes_single_and_double_tags() {
    let ip = ip_udp(1, 2, 53);
    let plain = build::ethernet(MAC_S, MAC_D, 0x0800, &ip);
    let one = build::ethernet(MAC_S, MAC_D, 0x8100, &build::vlan_tag(10, 0x0800, &ip));
    let two = build::ethernet(
        MAC_S,
        MAC_D,
        0x88a8,
        &build::vlan_tag(100, 0x8100, &build::vlan_tag(10, 0x0800, &ip)),
    );
    let (out, s) = run(
        LinkType::ETHERNET,
        vec![one, two, plain.clone()],
        cfg(None, true, false, false),
    );
    assert_eq!(s.packets_written, 3);
    for p in &out {
        assert_eq!(p.data, plain);
        assert_eq!(p.origlen as usize, plain.len());
        assert_eq!(p.linktype, LinkType::ETHERNET);
    }
}

fn sll(proto: u16, addr: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 1, 0, 6];
    v.extend_from_slice(&addr);
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&proto.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[test]
fn sll_null_and_raw_become_ethernet_with_documented_addresses() {
    let ip = ip_tcp(1, 2);
    let (out, _) = run(
        LinkType::LINUX_SLL,
        vec![sll(0x0800, MAC_S, &ip)],
        cfg(Some(TargetLink::Ethernet), false, false, false),
    );
    assert_eq!(
        out[0].data,
        build::ethernet(MAC_S, SYNTH_DST_MAC, 0x0800, &ip)
    );
    assert_eq!(out[0].linktype, LinkType::ETHERNET);
    assert_eq!(out[0].origlen as usize, ip.len() + 14);

    let mut null = 2u32.to_le_bytes().to_vec();
    null.extend_from_slice(&ip);
    let (out, _) = run(
        LinkType::NULL,
        vec![null],
        cfg(Some(TargetLink::Ethernet), false, false, false),
    );
    assert_eq!(
        out[0].data,
        build::ethernet(SYNTH_SRC_MAC, SYNTH_DST_MAC, 0x0800, &ip)
    );

    let v6 = build::ipv6(Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 59, b"");
    let (out, _) = run(
        LinkType::RAW,
        vec![ip.clone(), v6.clone()],
        cfg(Some(TargetLink::Ethernet), false, false, false),
    );
    assert_eq!(
        out[0].data,
        build::ethernet(SYNTH_SRC_MAC, SYNTH_DST_MAC, 0x0800, &ip)
    );
    assert_eq!(
        out[1].data,
        build::ethernet(SYNTH_SRC_MAC, SYNTH_DST_MAC, 0x86dd, &v6)
    );
}

#[test]
fn to_raw_strips_layer2_and_padding_and_skips_non_ip() {
    let ip = ip_udp(3, 4, 53);
    let mut padded = build::ethernet(MAC_S, MAC_D, 0x0800, &ip);
    padded.extend_from_slice(&[0; 6]);
    let tagged = build::ethernet(MAC_S, MAC_D, 0x8100, &build::vlan_tag(5, 0x0800, &ip));
    let arp = build::ethernet(MAC_S, [0xff; 6], 0x0806, &[0u8; 28]);
    let (out, s) = run(
        LinkType::ETHERNET,
        vec![padded, tagged, arp],
        cfg(Some(TargetLink::Raw), false, false, false),
    );
    assert_eq!(s.packets_read, 3);
    assert_eq!(s.skipped_unconvertible, 1, "ARP has no raw-IP form");
    assert_eq!(out.len(), 2);
    for p in &out {
        assert_eq!(p.data, ip);
        assert_eq!(p.linktype, LinkType::RAW);
    }
}

#[test]
fn decap_vxlan_gre_geneve_ipip() {
    let inner_ip = ip_tcp(7, 8);
    let inner_eth = build::ethernet(MAC_S, MAC_D, 0x0800, &inner_ip);
    let (o1, o2) = (a4(100), a4(200));
    let vxlan = build::eth_ip(
        o1,
        o2,
        17,
        &build::udp(o1, o2, 5555, 4789, &build::vxlan(42, &inner_eth)),
    );
    let gre_teb = build::eth_ip(o1, o2, 47, &build::gre(0x6558, Some(9), &inner_eth));
    let gre_ip = build::eth_ip(o1, o2, 47, &build::gre(0x0800, None, &inner_ip));
    let geneve = build::eth_ip(
        o1,
        o2,
        17,
        &build::udp(o1, o2, 5555, 6081, &build::geneve(3, 0x6558, &inner_eth)),
    );
    let ipip = build::eth_ip(o1, o2, 4, &inner_ip);
    let plain = build::eth_ip(o1, o2, 17, &build::udp(o1, o2, 5555, 53, b"q"));
    let frames = vec![vxlan, gre_teb, gre_ip, geneve, ipip, plain.clone()];

    // default: Ethernet output, IP inners get the synthesised header
    let (out, s) = run(
        LinkType::ETHERNET,
        frames.clone(),
        cfg(None, false, true, false),
    );
    assert_eq!((s.decapsulated, s.not_tunneled), (5, 1));
    let synth = build::ethernet(SYNTH_SRC_MAC, SYNTH_DST_MAC, 0x0800, &inner_ip);
    let want = [&inner_eth, &inner_eth, &synth, &inner_eth, &synth, &plain];
    for (p, w) in out.iter().zip(want) {
        assert_eq!(&p.data, w, "packet {}", p.index);
        assert_eq!(p.linktype, LinkType::ETHERNET);
    }
    // with --link raw every packet is the inner IP packet
    let (out, _) = run(
        LinkType::ETHERNET,
        frames,
        cfg(Some(TargetLink::Raw), false, true, false),
    );
    assert_eq!(out.len(), 6);
    for p in &out[..5] {
        assert_eq!(p.data, inner_ip, "packet {}", p.index);
    }
}

#[test]
fn fix_checksums_restores_the_built_checksums_and_is_off_by_default() {
    let v4 = build::eth_ip(
        a4(1),
        a4(2),
        6,
        &build::tcp(a4(1), a4(2), 1, 2, 3, 4, 0x10, b"data"),
    );
    let u4 = build::eth_ip(a4(1), a4(2), 17, &build::udp(a4(1), a4(2), 1, 2, b"odd"));
    let i4 = build::eth_ip(a4(1), a4(2), 1, &build::icmpv4_echo(false, 1, 2, b"ping"));
    let (s6, d6) = (
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6("2001:db8::1".parse().unwrap()),
    );
    let u6 = build::eth_ip(s6, d6, 17, &build::udp(s6, d6, 9, 10, b"six"));
    let t6 = build::eth_ip(s6, d6, 6, &build::tcp(s6, d6, 9, 10, 0, 0, 2, b""));
    let good = vec![v4, u4, i4, u6, t6];
    let mut bad = good.clone();
    // break the IPv4 header checksum and every transport checksum
    bad[0][24] ^= 0xff;
    bad[0][14 + 20 + 16] ^= 0x55;
    bad[1][14 + 20 + 6] ^= 0x11;
    bad[2][24] ^= 1;
    bad[2][14 + 20 + 2] ^= 0x22;
    bad[3][14 + 40 + 6] ^= 0x33;
    bad[4][14 + 40 + 16] ^= 0x44;
    let (out, s) = run(
        LinkType::ETHERNET,
        bad.clone(),
        cfg(None, false, false, true),
    );
    assert_eq!(s.checksums_fixed, 5);
    assert_eq!(crate::common::datas(&out), good);
    let (out, _) = run(LinkType::ETHERNET, bad.clone(), ConvertConfig::default());
    assert_eq!(
        crate::common::datas(&out),
        bad,
        "left as they are without --fix-checksums"
    );
    // after a rewrite that changes the frame (VLAN removed) they are right too
    let tagged: Vec<Vec<u8>> = bad
        .iter()
        .map(|f| {
            let mut t = f[..12].to_vec();
            t.extend_from_slice(&[0x81, 0, 0, 7]);
            t.extend_from_slice(&f[12..]);
            t
        })
        .collect();
    let (out, _) = run(LinkType::ETHERNET, tagged, cfg(None, true, false, true));
    assert_eq!(crate::common::datas(&out), good);
}

#[test]
fn pcapng_interfaces_keep_resolution_and_get_the_new_link_type() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcapng");
    let output = dir.path().join("out.pcapng");
    let ip = ip_udp(1, 2, 7);
    let mut p0 = pkt(
        0,
        LinkType::ETHERNET,
        build::ethernet(MAC_S, MAC_D, 0x0800, &ip),
    );
    p0.ts = Some(libpcap_tools::Timestamp(1_600_000_000_123_456_789));
    let mut p1 = pkt(1, LinkType::RAW, ip.clone());
    p1.interface = 1;
    write_pcapng(
        &input,
        &[LinkType::ETHERNET, LinkType::RAW],
        &[p0.clone(), p1],
    );
    let opts = Options {
        convert: cfg(Some(TargetLink::Raw), false, false, false),
        ..Options::default()
    };
    rewrite(&input, &output, &opts).unwrap();
    let r = libpcap_tools::CaptureReader::open(&output, &libpcap_tools::ReaderConfig::default())
        .unwrap();
    assert_eq!(r.format(), libpcap_tools::CaptureFormat::PcapNg);
    let out = packets(&output);
    assert_eq!(out.len(), 2);
    assert!(
        out.iter()
            .all(|p| p.linktype == LinkType::RAW && p.data == ip)
    );
    assert_eq!(out[0].ts, p0.ts, "nanoseconds kept");
    let mut r =
        libpcap_tools::CaptureReader::open(&output, &libpcap_tools::ReaderConfig::default())
            .unwrap();
    while r.next_packet().unwrap().is_some() {}
    let ifs = r.interfaces();
    assert_eq!(ifs.len(), 2);
    assert!(
        ifs.iter()
            .all(|i| i.tsresol == 9 && i.linktype == LinkType::RAW)
    );
    let names: Vec<_> = ifs
        .iter()
        .map(|i| i.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, ["if0", "if1"]);
}

#[test]
fn alternating_pcapng_interfaces_keep_their_own_output_interface() {
    // packets switching between two Ethernet interfaces and a raw-IP one,
    // and runs of several on one: each keeps its interface and link type
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcapng");
    let output = dir.path().join("out.pcapng");
    let ip = ip_udp(1, 2, 7);
    let eth = build::ethernet(MAC_S, MAC_D, 0x0800, &ip);
    let order = [0u32, 1, 1, 0, 0, 2, 2, 0, 1, 2, 0];
    let v: Vec<_> = order
        .iter()
        .enumerate()
        .map(|(i, &iface)| {
            let (lt, data) = if iface == 1 {
                (LinkType::RAW, ip.clone())
            } else {
                (LinkType::ETHERNET, eth.clone())
            };
            OwnedPacket {
                interface: iface,
                ..pkt(i, lt, data)
            }
        })
        .collect();
    write_pcapng(
        &input,
        &[LinkType::ETHERNET, LinkType::RAW, LinkType::ETHERNET],
        &v,
    );
    for filter in [None, Some("port=7")] {
        let opts = Options {
            filter: pcap_rewrite::filter::FilterSet {
                keep: filter
                    .map(|r| pcap_rewrite::filter::Rule::parse(r).unwrap())
                    .into_iter()
                    .collect(),
                ..Default::default()
            },
            ..Options::default()
        };
        rewrite(&input, &output, &opts).unwrap();
        let out = packets(&output);
        let got: Vec<_> = out.iter().map(|p| (p.interface, p.linktype)).collect();
        let want: Vec<_> = v.iter().map(|p| (p.interface, p.linktype)).collect();
        assert_eq!(got, want, "{filter:?}");
        assert_eq!(crate::common::datas(&out), crate::common::datas(&v));
    }
}
