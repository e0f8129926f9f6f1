//! A deterministic sample of mixed traffic, built with [`crate::build`]:
//! the repository's own captures (`testdata/pcap/`) are written from it.
//!
//! It holds, in time order from 2023-11-14T22:13:20Z (1 700 000 000 s):
//! ARP; DNS over UDP (A, AAAA, an NXDOMAIN) and over TCP; an HTTP-like TCP
//! connection with a reordered segment and a retransmission, closed by FIN;
//! a TLS ClientHello/ServerHello exchange ended by RST; ICMP echo; IPv6
//! UDP; a VLAN-tagged syslog datagram; a UDP datagram in three IPv4
//! fragments sent out of order; a VXLAN tunnel carrying a TCP connection;
//! a GRE tunnel carrying UDP; and a SYN scan of 60 ports answered by RSTs.

use crate::build::{self, MAC_A, MAC_B, flags};
use libpcap_tools::{
    InterfaceSpec, LinkType, OwnedPacket, PcapNgWriter, PcapWriter, PcapWriterOptions, Timestamp,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

struct Trace {
    packets: Vec<OwnedPacket>,
    t: i64,
}

impl Trace {
    fn push(&mut self, gap_us: i64, frame: Vec<u8>) {
        self.t += gap_us * 1000;
        let index = self.packets.len() as u64;
        self.packets.push(OwnedPacket {
            index,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: Some(Timestamp(self.t)),
            origlen: frame.len() as u32,
            data: frame,
        });
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

#[allow(clippy::too_many_arguments)] // the fields of a TCP segment
fn tcp(
    src: IpAddr,
    dst: IpAddr,
    sp: u16,
    dp: u16,
    seq: u32,
    ack: u32,
    fl: u8,
    data: &[u8],
) -> Vec<u8> {
    build::eth_ip(
        src,
        dst,
        6,
        &build::tcp(src, dst, sp, dp, seq, ack, fl, data),
    )
}

fn udp(src: IpAddr, dst: IpAddr, sp: u16, dp: u16, data: &[u8]) -> Vec<u8> {
    build::eth_ip(src, dst, 17, &build::udp(src, dst, sp, dp, data))
}

/// The sample trace (Ethernet frames, microsecond-aligned timestamps).
pub fn sample_trace() -> Vec<OwnedPacket> {
    let mut tr = Trace {
        packets: Vec::new(),
        t: 1_700_000_000 * 1_000_000_000,
    };
    let client = v4(192, 168, 1, 10);
    let resolver = v4(192, 168, 1, 1);
    let web = v4(93, 184, 216, 34);

    // ARP who-has / is-at
    let arp = |op: u8, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]| {
        let mut a = vec![0, 1, 8, 0, 6, 4, 0, op];
        a.extend_from_slice(&sha);
        a.extend_from_slice(&spa);
        a.extend_from_slice(&tha);
        a.extend_from_slice(&tpa);
        a
    };
    tr.push(
        0,
        build::ethernet(
            MAC_A,
            [0xff; 6],
            0x0806,
            &arp(1, MAC_A, [192, 168, 1, 10], [0; 6], [192, 168, 1, 1]),
        ),
    );
    tr.push(
        120,
        build::ethernet(
            MAC_B,
            MAC_A,
            0x0806,
            &arp(2, MAC_B, [192, 168, 1, 1], MAC_A, [192, 168, 1, 10]),
        ),
    );

    // DNS over UDP: A and AAAA from the same port, then an NXDOMAIN
    tr.push(
        500,
        udp(
            client,
            resolver,
            40000,
            53,
            &build::dns_query(0x1a2b, "example.com", 1),
        ),
    );
    tr.push(
        80,
        udp(
            client,
            resolver,
            40000,
            53,
            &build::dns_query(0x1a2c, "example.com", 28),
        ),
    );
    tr.push(
        9000,
        udp(
            resolver,
            client,
            53,
            40000,
            &build::dns_response(0x1a2b, "example.com", 1, 0, &[web], 3600),
        ),
    );
    let v6web: IpAddr = "2606:2800:220:1:248:1893:25c8:1946"
        .parse()
        .unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST));
    tr.push(
        150,
        udp(
            resolver,
            client,
            53,
            40000,
            &build::dns_response(0x1a2c, "example.com", 28, 0, &[v6web], 3600),
        ),
    );
    tr.push(
        2000,
        udp(
            client,
            resolver,
            40001,
            53,
            &build::dns_query(0x0042, "no-such-name.example", 1),
        ),
    );
    tr.push(
        7000,
        udp(
            resolver,
            client,
            53,
            40001,
            &build::dns_response(0x0042, "no-such-name.example", 1, 3, &[], 0),
        ),
    );

    // HTTP-like TCP connection with a reordered segment and a retransmission
    let (cs, ss) = (1_000_000u32, 5_000_000u32);
    let req = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let body1 = [b'a'; 1000];
    let body2 = [b'b'; 500];
    tr.push(1000, tcp(client, web, 40100, 80, cs, 0, flags::SYN, b""));
    tr.push(
        20000,
        tcp(
            web,
            client,
            80,
            40100,
            ss,
            cs + 1,
            flags::SYN | flags::ACK,
            b"",
        ),
    );
    tr.push(
        100,
        tcp(client, web, 40100, 80, cs + 1, ss + 1, flags::ACK, b""),
    );
    tr.push(
        50,
        tcp(
            client,
            web,
            40100,
            80,
            cs + 1,
            ss + 1,
            flags::ACK | flags::PSH,
            req,
        ),
    );
    let cr = cs + 1 + req.len() as u32;
    tr.push(
        21000,
        tcp(
            web,
            client,
            80,
            40100,
            ss + 1 + 1000,
            cr,
            flags::ACK | flags::PSH,
            &body2,
        ),
    );
    tr.push(
        30,
        tcp(web, client, 80, 40100, ss + 1, cr, flags::ACK, &body1),
    );
    tr.push(
        30,
        tcp(web, client, 80, 40100, ss + 1, cr, flags::ACK, &body1),
    );
    let sr = ss + 1 + 1500;
    tr.push(200, tcp(client, web, 40100, 80, cr, sr, flags::ACK, b""));
    tr.push(
        5000,
        tcp(client, web, 40100, 80, cr, sr, flags::FIN | flags::ACK, b""),
    );
    tr.push(
        20000,
        tcp(
            web,
            client,
            80,
            40100,
            sr,
            cr + 1,
            flags::FIN | flags::ACK,
            b"",
        ),
    );
    tr.push(
        100,
        tcp(client, web, 40100, 80, cr + 1, sr + 1, flags::ACK, b""),
    );

    // TLS hellos, then RST
    let ch = build::tls_client_hello("www.example.com", &["h2", "http/1.1"]);
    let sh = build::tls_server_hello(0xc02f, Some("h2"));
    tr.push(3000, tcp(client, web, 40200, 443, 7000, 0, flags::SYN, b""));
    tr.push(
        20000,
        tcp(
            web,
            client,
            443,
            40200,
            9000,
            7001,
            flags::SYN | flags::ACK,
            b"",
        ),
    );
    tr.push(
        100,
        tcp(client, web, 40200, 443, 7001, 9001, flags::ACK, b""),
    );
    tr.push(
        100,
        tcp(
            client,
            web,
            40200,
            443,
            7001,
            9001,
            flags::ACK | flags::PSH,
            &ch,
        ),
    );
    let c2 = 7001 + ch.len() as u32;
    tr.push(
        20000,
        tcp(
            web,
            client,
            443,
            40200,
            9001,
            c2,
            flags::ACK | flags::PSH,
            &sh,
        ),
    );
    tr.push(
        500,
        tcp(
            client,
            web,
            40200,
            443,
            c2,
            9001 + sh.len() as u32,
            flags::RST | flags::ACK,
            b"",
        ),
    );

    // ICMP echo
    let g = v4(8, 8, 8, 8);
    tr.push(
        4000,
        build::eth_ip(client, g, 1, &build::icmpv4_echo(false, 0x4242, 1, b"ping")),
    );
    tr.push(
        15000,
        build::eth_ip(g, client, 1, &build::icmpv4_echo(true, 0x4242, 1, b"ping")),
    );

    // DNS over IPv6 UDP
    let (c6, r6): (IpAddr, IpAddr) = (
        "2001:db8::10"
            .parse()
            .unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        "2001:db8::1"
            .parse()
            .unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    );
    tr.push(
        2000,
        udp(
            c6,
            r6,
            5353,
            53,
            &build::dns_query(0x6666, "ipv6.example.org", 28),
        ),
    );
    tr.push(
        6000,
        udp(
            r6,
            c6,
            53,
            5353,
            &build::dns_response(0x6666, "ipv6.example.org", 28, 0, &[r6], 60),
        ),
    );

    // VLAN-tagged syslog
    let (h1, h2) = (Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 9));
    let sys = build::udp(
        h1.into(),
        h2.into(),
        514,
        514,
        b"<13>Nov 14 22:13:20 host app: hello",
    );
    let tagged = build::vlan_tag(100, 0x0800, &build::ipv4(h1, h2, 17, 77, &sys));
    tr.push(1000, build::ethernet(MAC_A, MAC_B, 0x8100, &tagged));

    // a datagram in three fragments, the last one first
    let (fa, fb) = (
        Ipv4Addr::new(192, 168, 1, 10),
        Ipv4Addr::new(192, 168, 1, 20),
    );
    let big: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let dgram = build::udp(fa.into(), fb.into(), 45000, 9000, &big);
    let frags = build::ipv4_fragments(fa, fb, 17, 0x3131, &dgram, 1480);
    for i in [2usize, 0, 1] {
        if let Some(f) = frags.get(i) {
            tr.push(300, build::ethernet(MAC_A, MAC_B, 0x0800, f));
        }
    }

    // VXLAN carrying a TCP handshake
    let (o1, o2) = (v4(172, 16, 0, 1), v4(172, 16, 0, 2));
    let (i1, i2) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 2));
    for (k, (a, b, sp, dp, fl)) in [
        (i1, i2, 1234u16, 80u16, flags::SYN),
        (i2, i1, 80, 1234, flags::SYN | flags::ACK),
        (i1, i2, 1234, 80, flags::ACK),
    ]
    .into_iter()
    .enumerate()
    {
        let inner_tcp = build::tcp(a.into(), b.into(), sp, dp, 100 + k as u32, 0, fl, b"");
        let inner = build::ethernet(MAC_B, MAC_A, 0x0800, &build::ipv4(a, b, 6, 1, &inner_tcp));
        let (os, od) = if k == 1 { (o2, o1) } else { (o1, o2) };
        tr.push(700, udp(os, od, 55555, 4789, &build::vxlan(5001, &inner)));
    }

    // GRE carrying UDP
    let (ga, gb) = (
        Ipv4Addr::new(198, 51, 100, 1),
        Ipv4Addr::new(198, 51, 100, 2),
    );
    let inner = build::ipv4(
        Ipv4Addr::new(10, 9, 0, 1),
        Ipv4Addr::new(10, 9, 0, 2),
        17,
        3,
        &build::udp(v4(10, 9, 0, 1), v4(10, 9, 0, 2), 7000, 7001, b"in gre"),
    );
    tr.push(
        900,
        build::ethernet(
            MAC_A,
            MAC_B,
            0x0800,
            &build::ipv4(ga, gb, 47, 9, &build::gre(0x0800, Some(42), &inner)),
        ),
    );

    // a SYN scan of 60 ports, answered by RSTs
    let (scanner, target) = (v4(192, 168, 1, 66), v4(192, 168, 1, 20));
    for port in 20u16..80 {
        tr.push(
            200,
            tcp(scanner, target, 50000, port, 424_242, 0, flags::SYN, b""),
        );
        tr.push(
            60,
            tcp(
                target,
                scanner,
                port,
                50000,
                0,
                424_243,
                flags::RST | flags::ACK,
                b"",
            ),
        );
    }

    // DNS over TCP
    let (q, r) = (
        build::dns_query(0x7777, "tcp.example.net", 1),
        build::dns_response(0x7777, "tcp.example.net", 1, 0, &[v4(203, 0, 113, 7)], 300),
    );
    let framed = |m: &[u8]| {
        let mut v = (m.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(m);
        v
    };
    let (fq, fr) = (framed(&q), framed(&r));
    tr.push(
        2000,
        tcp(client, resolver, 40300, 53, 100, 0, flags::SYN, b""),
    );
    tr.push(
        300,
        tcp(
            resolver,
            client,
            53,
            40300,
            900,
            101,
            flags::SYN | flags::ACK,
            b"",
        ),
    );
    tr.push(
        50,
        tcp(
            client,
            resolver,
            40300,
            53,
            101,
            901,
            flags::ACK | flags::PSH,
            &fq,
        ),
    );
    tr.push(
        4000,
        tcp(
            resolver,
            client,
            53,
            40300,
            901,
            101 + fq.len() as u32,
            flags::ACK | flags::PSH,
            &fr,
        ),
    );
    tr.push(
        100,
        tcp(
            client,
            resolver,
            40300,
            53,
            101 + fq.len() as u32,
            901 + fr.len() as u32,
            flags::FIN | flags::ACK,
            b"",
        ),
    );
    tr.push(
        300,
        tcp(
            resolver,
            client,
            53,
            40300,
            901 + fr.len() as u32,
            102 + fq.len() as u32,
            flags::FIN | flags::ACK,
            b"",
        ),
    );
    tr.push(
        50,
        tcp(
            client,
            resolver,
            40300,
            53,
            102 + fq.len() as u32,
            902 + fr.len() as u32,
            flags::ACK,
            b"",
        ),
    );
    tr.packets
}

/// The repository's sample captures, as (file name, bytes): `sample.pcap`
/// (classic pcap, little-endian, microseconds) and `sample.pcapng` (one
/// interface "eth0", nanosecond resolution), both from [`sample_trace`].
///
/// # Errors
/// When a writer fails (it does not on this trace).
pub fn sample_files() -> Result<Vec<(&'static str, Vec<u8>)>, libpcap_tools::Error> {
    let trace = sample_trace();
    let mut pcap = PcapWriter::new(Vec::new(), LinkType::ETHERNET, PcapWriterOptions::default())?;
    for p in &trace {
        pcap.write_packet(&p.as_packet())?;
    }
    let mut ng = PcapNgWriter::new(Vec::new(), false)?;
    let mut spec = InterfaceSpec::new(LinkType::ETHERNET);
    spec.tsresol = 9;
    spec.name = Some("eth0".to_string());
    ng.add_interface(&spec)?;
    for p in &trace {
        ng.write_packet(&p.as_packet())?;
    }
    Ok(vec![
        ("sample.pcap", pcap.finish()?),
        ("sample.pcapng", ng.finish()?),
    ])
}
