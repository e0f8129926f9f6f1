//! Writes the seed corpora of the fuzz targets, built with PAL's own packet
//! builder and sample trace: `cargo run --example make_seeds` (from `fuzz/`)
//! fills `corpus/<target>/`.
//!
//! `cargo run --example make_seeds -- --import CAPTURES OUT` instead turns
//! the small captures (under 64 KiB) found below CAPTURES (the shared corpus,
//! say) into extra seeds under `OUT/<target>/`: the files themselves for
//! `capture_reader`, their packets as one trace for `analyzer_trace` and as
//! single frames for `analyzer_frame`. Keep OUT outside the repository and
//! give it to `cargo fuzz run` after the target's own corpus.

use flate2::Compression;
use flate2::write::GzEncoder;
use libpcap_analyzer::build::{self, MAC_A, MAC_B, flags};
use libpcap_analyzer::samples::{sample_files, sample_trace};
use libpcap_tools::{
    InterfaceSpec, LinkType, OwnedPacket, PcapNgWriter, PcapWriter, PcapWriterOptions, Timestamp,
};
use pal_fuzz::{LINKTYPES, Setup, T0, encode_trace};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Out {
    dir: PathBuf,
    n: usize,
}

impl Out {
    fn new(root: &Path, target: &str) -> Res<Out> {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        Ok(Out { dir, n: 0 })
    }

    fn put(&mut self, name: &str, bytes: &[u8]) -> Res<()> {
        self.n += 1;
        std::fs::write(self.dir.join(format!("seed-{:03}-{name}", self.n)), bytes)?;
        Ok(())
    }
}

fn link_index(l: LinkType) -> u8 {
    LINKTYPES.iter().position(|x| *x == l).unwrap_or(0) as u8
}

fn owned(index: u64, ts: i64, linktype: LinkType, data: Vec<u8>) -> OwnedPacket {
    OwnedPacket {
        index,
        interface: 0,
        linktype,
        ts: Some(Timestamp(ts)),
        origlen: data.len() as u32,
        data,
    }
}

/// The network layer of an Ethernet/IP frame of the sample trace, if any.
fn ip_of(frame: &[u8]) -> Option<(u16, &[u8])> {
    let et = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    matches!(et, 0x0800 | 0x86dd).then(|| (et, &frame[14..]))
}

/// The same network layer under other link headers.
fn relink(linktype: LinkType, et: u16, ip: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    let v6 = et == 0x86dd;
    match linktype {
        LinkType::LINUX_SLL => {
            v.extend_from_slice(&[0, 0, 0, 1, 0, 6]);
            v.extend_from_slice(&MAC_A);
            v.extend_from_slice(&[0, 0]);
            v.extend_from_slice(&et.to_be_bytes());
        }
        LinkType::LINUX_SLL2 => {
            v.extend_from_slice(&et.to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6]);
            v.extend_from_slice(&MAC_A);
            v.extend_from_slice(&[0, 0]);
        }
        LinkType::NULL => v.extend_from_slice(&(if v6 { 30u32 } else { 2 }).to_le_bytes()),
        LinkType::LOOP => v.extend_from_slice(&(if v6 { 30u32 } else { 2 }).to_be_bytes()),
        LinkType::PPP | LinkType::PPP_HDLC => {
            v.extend_from_slice(&[0xff, 0x03]);
            v.extend_from_slice(&(if v6 { 0x0057u16 } else { 0x0021 }).to_be_bytes());
        }
        _ => {}
    }
    v.extend_from_slice(ip);
    v
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

/// Frames that the sample trace lacks: tunnels, tags, labels, IPv6
/// fragments and extension headers, SCTP, ICMPv6, LLC/SNAP, PPPoE.
fn extra_frames() -> Vec<Vec<u8>> {
    let (a, b) = (v4(10, 0, 0, 1), v4(10, 0, 0, 2));
    let (a6, b6): (Ipv6Addr, Ipv6Addr) = (
        "2001:db8::1".parse().unwrap_or(Ipv6Addr::LOCALHOST),
        "2001:db8::2".parse().unwrap_or(Ipv6Addr::LOCALHOST),
    );
    let udp = build::udp(
        a.into(),
        b.into(),
        5000,
        53,
        &build::dns_query(7, "a.example", 1),
    );
    let ip = build::ipv4(a, b, 17, 9, &udp);
    let inner = build::ethernet(MAC_A, MAC_B, 0x0800, &ip);
    let mut out = Vec::new();
    // VLAN, QinQ
    out.push(build::ethernet(
        MAC_A,
        MAC_B,
        0x8100,
        &build::vlan_tag(10, 0x0800, &ip),
    ));
    out.push(build::ethernet(
        MAC_A,
        MAC_B,
        0x88a8,
        &build::vlan_tag(20, 0x8100, &build::vlan_tag(30, 0x0800, &ip)),
    ));
    // MPLS (two labels, bottom of stack on the second), IP then Ethernet pseudowire
    let mut mpls = vec![0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40];
    mpls.extend_from_slice(&ip);
    out.push(build::ethernet(MAC_A, MAC_B, 0x8847, &mpls));
    let mut pw = vec![0x00, 0x03, 0x01, 0x40, 0, 0, 0, 0];
    pw.extend_from_slice(&inner);
    out.push(build::ethernet(MAC_A, MAC_B, 0x8847, &pw));
    // PPPoE session with PPP IPv4
    let mut pppoe = vec![0x11, 0x00, 0x12, 0x34];
    pppoe.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
    pppoe.extend_from_slice(&[0x00, 0x21]);
    pppoe.extend_from_slice(&ip);
    out.push(build::ethernet(MAC_A, MAC_B, 0x8864, &pppoe));
    // 802.3 + LLC/SNAP carrying IPv4
    let mut snap = vec![0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00];
    snap.extend_from_slice(&ip);
    let mut llc = MAC_B.to_vec();
    llc.extend_from_slice(&MAC_A);
    llc.extend_from_slice(&(snap.len() as u16).to_be_bytes());
    llc.extend_from_slice(&snap);
    out.push(llc);
    // tunnels: GRE (IPv4, Ethernet), VXLAN, Geneve, IP-in-IP, 6in4, GRE-in-UDP, MPLS-in-UDP
    let (o1, o2) = (v4(172, 16, 0, 1), v4(172, 16, 0, 2));
    out.push(build::ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &build::ipv4(o1, o2, 47, 3, &build::gre(0x0800, Some(5), &ip)),
    ));
    out.push(build::ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &build::ipv4(o1, o2, 47, 4, &build::gre(0x6558, None, &inner)),
    ));
    let vx = build::udp(o1.into(), o2.into(), 33000, 4789, &build::vxlan(42, &inner));
    out.push(build::ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &build::ipv4(o1, o2, 17, 5, &vx),
    ));
    let gn = build::udp(
        o1.into(),
        o2.into(),
        33000,
        6081,
        &build::geneve(43, 0x0800, &ip),
    );
    out.push(build::ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &build::ipv4(o1, o2, 17, 6, &gn),
    ));
    out.push(build::ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &build::ipv4(o1, o2, 4, 7, &ip),
    ));
    let udp6 = build::udp(
        a6.into(),
        b6.into(),
        5000,
        53,
        &build::dns_query(8, "b.example", 28),
    );
    let ip6 = build::ipv6(a6, b6, 17, &udp6);
    out.push(build::ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &build::ipv4(o1, o2, 41, 8, &ip6),
    ));
    let gu = build::udp(
        o1.into(),
        o2.into(),
        33000,
        4754,
        &build::gre(0x0800, None, &ip),
    );
    out.push(build::ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &build::ipv4(o1, o2, 17, 9, &gu),
    ));
    let mut lbl = vec![0x00, 0x01, 0x01, 0x40];
    lbl.extend_from_slice(&ip);
    let mu = build::udp(o1.into(), o2.into(), 33000, 6635, &lbl);
    out.push(build::ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &build::ipv4(o1, o2, 17, 10, &mu),
    ));
    // GTP-U (version 1, G-PDU)
    let mut gtp = vec![0x30, 0xff];
    gtp.extend_from_slice(&(ip.len() as u16).to_be_bytes());
    gtp.extend_from_slice(&[0, 0, 0, 1]);
    gtp.extend_from_slice(&ip);
    let gt = build::udp(o1.into(), o2.into(), 2152, 2152, &gtp);
    out.push(build::ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &build::ipv4(o1, o2, 17, 11, &gt),
    ));
    // IPv6: plain, hop-by-hop + fragment headers, ICMPv6 echo, over IPv6 in IPv6
    out.push(build::ethernet(MAC_A, MAC_B, 0x86dd, &ip6));
    let mut hbh = vec![44, 0, 1, 4, 0, 0, 0, 0];
    hbh.extend_from_slice(&build::ipv6_fragment_header(17, 0, false, 77, &udp6));
    out.push(build::ethernet(
        MAC_A,
        MAC_B,
        0x86dd,
        &build::ipv6(a6, b6, 0, &hbh),
    ));
    out.push(build::ethernet(
        MAC_A,
        MAC_B,
        0x86dd,
        &build::ipv6(a6, b6, 58, &[128, 0, 0, 0, 0, 1, 0, 1]),
    ));
    out.push(build::ethernet(
        MAC_A,
        MAC_B,
        0x86dd,
        &build::ipv6(a6, b6, 41, &ip6),
    ));
    // SCTP common header + a DATA chunk
    let mut sctp = vec![0x0b, 0xb8, 0x0b, 0xb9, 0, 0, 0, 1, 0, 0, 0, 0];
    sctp.extend_from_slice(&[0, 3, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    out.push(build::ethernet(
        MAC_A,
        MAC_B,
        0x0800,
        &build::ipv4(a, b, 132, 12, &sctp),
    ));
    // IPv4 with options
    let mut opt = build::ipv4(a, b, 17, 13, &udp);
    opt[0] = 0x46;
    opt.splice(20..20, [1, 1, 1, 0]);
    out.push(build::ethernet(MAC_A, MAC_B, 0x0800, &opt));
    out
}

/// Short traces for state across packets: fragments in and out of order,
/// overlapping; a TCP connection with TLS hellos; DNS over TCP.
fn extra_traces() -> Vec<Vec<OwnedPacket>> {
    let (c, s) = (v4(10, 1, 0, 1), v4(10, 1, 0, 2));
    let (ci, si): (IpAddr, IpAddr) = (c.into(), s.into());
    let mut traces = Vec::new();
    let eth = |ip: Vec<u8>| build::ethernet(MAC_A, MAC_B, 0x0800, &ip);
    let pk = |frames: Vec<Vec<u8>>| {
        frames
            .into_iter()
            .enumerate()
            .map(|(i, f)| owned(i as u64, T0 + i as i64 * 1_000_000, LinkType::ETHERNET, f))
            .collect::<Vec<_>>()
    };
    // IPv4 fragments: in order, reversed, overlapping
    let dgram = build::udp(
        ci,
        si,
        4000,
        53,
        &build::dns_response(9, "frag.example", 1, 0, &[ci, si, ci, si], 60),
    );
    let frags: Vec<Vec<u8>> = build::ipv4_fragments(c, s, 17, 99, &dgram, 24)
        .into_iter()
        .map(eth)
        .collect();
    traces.push(pk(frags.clone()));
    traces.push(pk(frags.iter().rev().cloned().collect()));
    let mut ov = frags.clone();
    ov.insert(
        1,
        eth(build::ipv4_fragment(c, s, 17, 99, 8, true, &[0xee; 24])),
    );
    traces.push(pk(ov));
    // IPv6 fragments
    let (a6, b6): (Ipv6Addr, Ipv6Addr) = (
        "2001:db8::a".parse().unwrap_or(Ipv6Addr::LOCALHOST),
        "2001:db8::b".parse().unwrap_or(Ipv6Addr::LOCALHOST),
    );
    let d6 = build::udp(
        a6.into(),
        b6.into(),
        4000,
        53,
        &build::dns_query(10, "six.example", 28),
    );
    let (p1, p2) = d6.split_at(16);
    traces.push(pk(vec![
        build::ethernet(
            MAC_A,
            MAC_B,
            0x86dd,
            &build::ipv6(a6, b6, 44, &build::ipv6_fragment_header(17, 0, true, 5, p1)),
        ),
        build::ethernet(
            MAC_A,
            MAC_B,
            0x86dd,
            &build::ipv6(
                a6,
                b6,
                44,
                &build::ipv6_fragment_header(17, 16, false, 5, p2),
            ),
        ),
    ]));
    // TCP: handshake, TLS hellos split over segments, out of order, FIN
    let tcp = |src: IpAddr, dst: IpAddr, sp, dp, seq, ack, fl, data: &[u8]| {
        build::eth_ip(
            src,
            dst,
            6,
            &build::tcp(src, dst, sp, dp, seq, ack, fl, data),
        )
    };
    let ch = build::tls_client_hello("fuzz.example", &["h2", "http/1.1"]);
    let sh = build::tls_server_hello(0x1301, Some("h2"));
    let (ch1, ch2) = ch.split_at(30);
    traces.push(pk(vec![
        tcp(ci, si, 50000, 443, 100, 0, flags::SYN, b""),
        tcp(si, ci, 443, 50000, 900, 101, flags::SYN | flags::ACK, b""),
        tcp(ci, si, 50000, 443, 101, 901, flags::ACK, b""),
        tcp(
            ci,
            si,
            50000,
            443,
            101 + ch1.len() as u32,
            901,
            flags::ACK | flags::PSH,
            ch2,
        ),
        tcp(ci, si, 50000, 443, 101, 901, flags::ACK | flags::PSH, ch1),
        tcp(
            si,
            ci,
            443,
            50000,
            901,
            101 + ch.len() as u32,
            flags::ACK | flags::PSH,
            &sh,
        ),
        tcp(
            ci,
            si,
            50000,
            443,
            101 + ch.len() as u32,
            901 + sh.len() as u32,
            flags::FIN | flags::ACK,
            b"",
        ),
        tcp(
            si,
            ci,
            443,
            50000,
            901 + sh.len() as u32,
            102 + ch.len() as u32,
            flags::FIN | flags::ACK,
            b"",
        ),
    ]));
    // DNS over TCP: two messages in one segment, one split over two
    let q1 = build::dns_query(1, "tcp.example", 1);
    let q2 = build::dns_response(1, "tcp.example", 1, 0, &[si], 30);
    let mut stream = Vec::new();
    for m in [&q1, &q2, &q1] {
        stream.extend_from_slice(&(m.len() as u16).to_be_bytes());
        stream.extend_from_slice(m);
    }
    let (s1, s2) = stream.split_at(stream.len() - 7);
    traces.push(pk(vec![
        tcp(ci, si, 50001, 53, 10, 0, flags::SYN, b""),
        tcp(si, ci, 53, 50001, 20, 11, flags::SYN | flags::ACK, b""),
        tcp(ci, si, 50001, 53, 11, 21, flags::ACK | flags::PSH, s1),
        tcp(
            ci,
            si,
            50001,
            53,
            11 + s1.len() as u32,
            21,
            flags::ACK | flags::PSH,
            s2,
        ),
        tcp(si, ci, 53, 50001, 21, 11, flags::RST, b""),
    ]));
    traces
}

fn dns_messages() -> Vec<Vec<u8>> {
    let mut v = vec![
        build::dns_query(1, "example.com", 1),
        build::dns_query(2, "example.com", 28),
        build::dns_query(3, "", 2),
        build::dns_response(4, "example.com", 1, 0, &[IpAddr::V4(v4(1, 2, 3, 4))], 300),
        build::dns_response(5, "example.com", 28, 3, &[], 0),
        build::dns_response(
            6,
            "x.example",
            28,
            0,
            &["2001:db8::1"
                .parse()
                .unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST))],
            1,
        ),
    ];
    // one record of each decoded type, owner name compressed to the question
    let rr = |t: u16, data: &[u8]| {
        let mut m = build::dns_query(7, "r.example", t);
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 1; // ancount
        m.extend_from_slice(&[0xc0, 0x0c]);
        m.extend_from_slice(&t.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0x0e, 0x10]);
        m.extend_from_slice(&(data.len() as u16).to_be_bytes());
        m.extend_from_slice(data);
        m
    };
    let name = [3, b'n', b's', b'1', 0xc0, 0x0c];
    v.push(rr(2, &name));
    v.push(rr(5, &name));
    v.push(rr(12, &name));
    v.push(rr(15, &[0, 10, 2, b'm', b'x', 0xc0, 0x0c]));
    v.push(rr(
        16,
        &[5, b'h', b'e', b'l', b'l', b'o', 3, b'a', b'.', b'\\'],
    ));
    let mut soa = name.to_vec();
    soa.extend_from_slice(&[0xc0, 0x0c]);
    soa.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5]);
    v.push(rr(6, &soa));
    v.push(rr(33, &[0, 1, 0, 2, 0x13, 0xc4, 3, b's', b'r', b'v', 0]));
    v.push(rr(99, &[1, 2, 3]));
    // OPT in the additional section with a cookie option
    let mut opt = build::dns_query(8, "edns.example", 1);
    opt[11] = 1; // arcount
    opt.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0x80, 0, 0, 12, 0, 10, 0, 8]);
    opt.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    v.push(opt);
    // a pointer loop
    let mut lp = build::dns_query(9, "loop", 1);
    lp[12] = 0xc0;
    lp[13] = 0x0c;
    v.push(lp);
    v
}

fn capture_files(trace: &[OwnedPacket]) -> Res<Vec<(String, Vec<u8>)>> {
    let mut files: Vec<(String, Vec<u8>)> = sample_files()?
        .into_iter()
        .map(|(n, b)| (n.to_string(), b))
        .collect();
    let short = &trace[..trace.len().min(12)];
    for (name, nanos, big_endian) in [
        ("pcap-ns", true, false),
        ("pcap-be", false, true),
        ("pcap-be-ns", true, true),
    ] {
        let mut w = PcapWriter::new(
            Vec::new(),
            LinkType::ETHERNET,
            PcapWriterOptions {
                nanos,
                big_endian,
                snaplen: 128,
            },
        )?;
        for p in short {
            w.write_packet(&p.as_packet())?;
        }
        files.push((format!("{name}.pcap"), w.finish()?));
    }
    // raw-IP link type
    let mut w = PcapWriter::new(Vec::new(), LinkType::RAW, PcapWriterOptions::default())?;
    for p in short {
        if let Some((_, ip)) = ip_of(&p.data) {
            w.write_packet(
                &owned(p.index, p.ts.map_or(0, |t| t.0), LinkType::RAW, ip.to_vec()).as_packet(),
            )?;
        }
    }
    files.push(("raw.pcap".into(), w.finish()?));
    // Kuznetzov's modified format, by hand: 24-byte record headers
    let mut m = vec![
        0x34, 0xcd, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0,
    ];
    for p in &short[..3] {
        let ts = p.ts.map_or(0, |t| t.0);
        m.extend_from_slice(&((ts / 1_000_000_000) as u32).to_le_bytes());
        m.extend_from_slice(&((ts % 1_000_000_000 / 1000) as u32).to_le_bytes());
        m.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
        m.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
        m.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(&p.data);
    }
    files.push(("modified.pcap".into(), m));
    // pcapng: big-endian, two interfaces (µs and 2^-10 s with an offset, a
    // snaplen), packets on both, a second section
    let mut ng = PcapNgWriter::new(Vec::new(), true)?;
    let mut i0 = InterfaceSpec::new(LinkType::ETHERNET);
    i0.tsresol = 6;
    i0.snaplen = 96;
    i0.name = Some("eth0".into());
    let mut i1 = InterfaceSpec::new(LinkType::RAW);
    i1.tsresol = 0x80 | 10;
    i1.tsoffset = 100;
    ng.add_interface(&i0)?;
    ng.add_interface(&i1)?;
    for p in short {
        ng.write_packet(&p.as_packet())?;
        if let Some((_, ip)) = ip_of(&p.data) {
            let mut q = owned(p.index, p.ts.map_or(0, |t| t.0), LinkType::RAW, ip.to_vec());
            q.interface = 1;
            ng.write_packet(&q.as_packet())?;
        }
    }
    ng.new_section(false)?;
    ng.add_interface(&InterfaceSpec::new(LinkType::LINUX_SLL))?;
    for p in &short[..4] {
        if let Some((et, ip)) = ip_of(&p.data) {
            let q = owned(
                p.index,
                p.ts.map_or(0, |t| t.0),
                LinkType::LINUX_SLL,
                relink(LinkType::LINUX_SLL, et, ip),
            );
            ng.write_packet(&q.as_packet())?;
        }
    }
    files.push(("two-sections.pcapng".into(), ng.finish()?));
    // cut files and a compressed one
    let pcap = files[0].1.clone();
    files.push(("cut.pcap".into(), pcap[..pcap.len() * 2 / 3].to_vec()));
    let png = files[1].1.clone();
    files.push(("cut.pcapng".into(), png[..png.len() / 2].to_vec()));
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&pcap[..pcap.len().min(2000)])?;
    files.push(("small.pcap.gz".into(), gz.finish()?));
    Ok(files)
}

fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_below(&p, out);
        } else if e.metadata().is_ok_and(|m| m.len() < 64 * 1024) {
            out.push(p);
        }
    }
}

/// A capture as `rewrite_capture` seeds: behind a few setup bytes (plain
/// copy; pcapng, raw IP and a keep rule; Ethernet, VLAN strip and split;
/// everything).
fn put_rewrite_seeds(out: &mut Out, name: &str, capture: &[u8]) -> Res<()> {
    for setup in [0x00u8, 0x46, 0xc9, 0xff] {
        let mut v = vec![setup];
        v.extend_from_slice(capture);
        out.put(name, &v)?;
    }
    Ok(())
}

fn import(captures: &Path, root: &Path) -> Res<()> {
    let mut files = Vec::new();
    files_below(captures, &mut files);
    files.sort();
    let mut cap = Out::new(root, "capture_reader")?;
    let mut rewrite = Out::new(root, "rewrite_capture")?;
    let mut frames = Out::new(root, "analyzer_frame")?;
    let mut traces = Out::new(root, "analyzer_trace")?;
    let cfg = libpcap_tools::ReaderConfig::default();
    for path in files {
        let Ok(mut r) = libpcap_tools::CaptureReader::open(&path, &cfg) else {
            continue;
        };
        let bytes = std::fs::read(&path)?;
        let stem = path.file_name().map_or("x".into(), |n| {
            n.to_string_lossy()
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "_")
        });
        cap.put(&stem, &bytes)?;
        put_rewrite_seeds(&mut rewrite, &stem, &bytes)?;
        let mut packets = Vec::new();
        while let Ok(Some(p)) = r.next_packet() {
            packets.push(p.to_owned());
        }
        let Some(l) = packets.first().map(|p| p.linktype) else {
            continue;
        };
        let Some(li) = LINKTYPES.iter().position(|x| *x == l) else {
            continue;
        };
        let setup = Setup::to_byte(li as u8, false, false, 0);
        let same: Vec<OwnedPacket> = packets.into_iter().filter(|p| p.linktype == l).collect();
        traces.put(&stem, &encode_trace(setup, &same))?;
        for p in same.iter().take(8) {
            let mut v = vec![setup];
            v.extend_from_slice(&p.data);
            frames.put(&stem, &v)?;
        }
    }
    for o in [&cap, &rewrite, &frames, &traces] {
        println!("{}: {} seeds", o.dir.display(), o.n);
    }
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, captures, out] = args.as_slice()
        && flag == "--import"
    {
        return import(Path::new(captures), Path::new(out));
    }
    let root = PathBuf::from(args.first().cloned().unwrap_or_else(|| "corpus".into()));
    let trace = sample_trace();

    let mut cap = Out::new(&root, "capture_reader")?;
    let mut rewrite = Out::new(&root, "rewrite_capture")?;
    for (name, bytes) in capture_files(&trace)? {
        cap.put(&name, &bytes)?;
        put_rewrite_seeds(&mut rewrite, &name, &bytes)?;
    }

    let mut frames = Out::new(&root, "analyzer_frame")?;
    let mut all: Vec<Vec<u8>> = trace.iter().map(|p| p.data.clone()).collect();
    all.extend(extra_frames());
    all.sort();
    all.dedup();
    for f in &all {
        let mut v = vec![Setup::to_byte(0, false, false, 0)];
        v.extend_from_slice(f);
        frames.put("eth", &v)?;
    }
    // the IP frames under every other link type
    for l in [
        LinkType::RAW,
        LinkType::LINUX_SLL,
        LinkType::LINUX_SLL2,
        LinkType::NULL,
        LinkType::LOOP,
        LinkType::PPP,
    ] {
        for f in all.iter().filter_map(|f| ip_of(f)).take(12) {
            let mut v = vec![Setup::to_byte(link_index(l), false, false, 0)];
            v.extend_from_slice(&relink(l, f.0, f.1));
            frames.put(&format!("link{}", l.0), &v)?;
        }
    }

    let mut traces = Out::new(&root, "analyzer_trace")?;
    traces.put(
        "sample",
        &encode_trace(Setup::to_byte(0, false, false, 0), &trace),
    )?;
    traces.put(
        "sample-tight",
        &encode_trace(Setup::to_byte(0, true, false, 1), &trace),
    )?;
    traces.put(
        "sample-trunc",
        &encode_trace(Setup::to_byte(0, false, true, 2), &trace),
    )?;
    let raw: Vec<OwnedPacket> = trace
        .iter()
        .filter_map(|p| {
            let (_, ip) = ip_of(&p.data)?;
            Some(owned(
                p.index,
                p.ts.map_or(0, |t| t.0),
                LinkType::RAW,
                ip.to_vec(),
            ))
        })
        .collect();
    traces.put(
        "sample-raw",
        &encode_trace(Setup::to_byte(1, false, false, 0), &raw),
    )?;
    for chunk in trace.chunks(16) {
        traces.put(
            "part",
            &encode_trace(Setup::to_byte(0, false, false, 0), chunk),
        )?;
    }
    for (i, t) in extra_traces().iter().enumerate() {
        traces.put(
            "extra",
            &encode_trace(Setup::to_byte(0, i % 2 == 1, false, (i % 4) as u8), t),
        )?;
    }

    let mut dns = Out::new(&root, "dns_parser")?;
    for m in dns_messages() {
        dns.put("msg", &m)?;
    }

    // RFC 9001 A.2's ClientHello: as a TLS record, as QUIC CRYPTO data,
    // after a SOCKS5 exchange and after an HTTP CONNECT
    let mut tls = Out::new(&root, "tls_hello")?;
    let hex =
        std::fs::read_to_string("../libpcap-analyzer/testdata/quic/rfc9001-a2-client-crypto.hex")?;
    let digits: String = hex
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.chars())
        .filter(char::is_ascii_hexdigit)
        .collect();
    let frame: Vec<u8> = (0..digits.len() / 2)
        .filter_map(|i| u8::from_str_radix(digits.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    // the CRYPTO frame: type 06, offset 00, length 40 f1, then the message
    let hello = frame.get(4..).unwrap_or_default();
    let len = u16::try_from(hello.len())?.to_be_bytes();
    let mut record = vec![22, 3, 1, len[0], len[1]];
    record.extend_from_slice(hello);
    let mut socks = vec![0x01, 5, 1, 0, 5, 1, 0, 3, 11];
    socks.extend_from_slice(b"example.com\x01\xbb");
    socks.extend_from_slice(&record);
    let mut connect = b"\x01CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec();
    connect.extend_from_slice(&record);
    tls.put("record", &[&[0x80], &record[..]].concat())?;
    tls.put("quic", &[&[0x10], hello].concat())?;
    tls.put("socks5", &socks)?;
    tls.put("connect", &connect)?;

    for o in [&cap, &frames, &traces, &dns, &tls] {
        println!("{}: {} seeds", o.dir.display(), o.n);
    }
    Ok(())
}
