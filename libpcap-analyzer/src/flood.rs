//! Hostile captures for memory tests: deterministic floods built with
//! [`crate::build`], each aimed at one table or buffer of the analyzer.
//!
//! | kind | what it sends | what it fills |
//! | --- | --- | --- |
//! | `syn` | TCP SYNs from random sources to one server | the flow table, the reports' rows |
//! | `fragments` | first IPv4 fragments (UDP, 512 bytes) never completed | the defragmenter |
//! | `far-ahead` | TCP connections to port 53 whose data starts 2000 bytes after the next expected byte | TCP reassembly |
//! | `malformed-dns` | DNS responses with a compression pointer past the message, from random clients | DNS (counted as malformed), flows |
//! | `dns-flows` | one query and its response per new client address and port | flows, DNS waiting queries and records, the reports' rows |
//! | `quic-initials` | per new client, 30 QUIC v1 client Initials (sealed with the keys of their connection id) whose CRYPTO bytes start after a hole | the `tls` plugin's CRYPTO streams |
//!
//! Packet `i` is at 1,700,000,000 s + `i` µs: nothing times out, so every
//! table grows until its cap. The same `kind` and count give the same
//! bytes on every machine (a fixed xorshift generator). `test-analyzer`'s
//! `pal-flood` binary writes them as pcap files
//! (`pal-flood syn 3000000 syn.pcap`).
//!
//! ```
//! use libpcap_analyzer::flood::{Flood, FloodKind};
//! let frames: Vec<_> = Flood::new(FloodKind::Syn).take(3).collect();
//! assert_eq!(frames.len(), 3);
//! assert_ne!(frames[0].1, frames[1].1);
//! ```

use crate::build;
use libpcap_tools::{LinkType, Packet, PcapWriter, PcapWriterOptions, Timestamp};
use std::net::Ipv4Addr;

/// The kinds of flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodKind {
    /// TCP SYNs from random sources.
    Syn,
    /// First IPv4 fragments never completed.
    Fragments,
    /// TCP data far ahead of the next expected byte.
    FarAhead,
    /// DNS responses with out-of-range compression pointers.
    MalformedDns,
    /// Many short DNS flows (query and response).
    DnsFlows,
    /// QUIC client Initials whose CRYPTO bytes never become contiguous.
    QuicInitials,
}

impl FloodKind {
    /// Every kind.
    pub const ALL: [FloodKind; 6] = [
        FloodKind::Syn,
        FloodKind::Fragments,
        FloodKind::FarAhead,
        FloodKind::MalformedDns,
        FloodKind::DnsFlows,
        FloodKind::QuicInitials,
    ];

    /// Its name (`syn`, `fragments`, `far-ahead`, `malformed-dns`,
    /// `dns-flows`, `quic-initials`).
    pub fn name(self) -> &'static str {
        match self {
            FloodKind::Syn => "syn",
            FloodKind::Fragments => "fragments",
            FloodKind::FarAhead => "far-ahead",
            FloodKind::MalformedDns => "malformed-dns",
            FloodKind::DnsFlows => "dns-flows",
            FloodKind::QuicInitials => "quic-initials",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<FloodKind> {
        FloodKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Packets of one far-ahead connection: handshake, then data.
pub const FAR_AHEAD_PACKETS: u64 = 16;
/// Initial packets of one `quic-initials` client.
pub const QUIC_PACKETS: u64 = 30;
/// CRYPTO bytes of each `quic-initials` packet.
pub const QUIC_CRYPTO: usize = 1100;
/// Payload bytes of each far-ahead data segment and fragment.
pub const PAYLOAD: usize = 512;

const SERVER: [u8; 4] = [192, 0, 2, 1];
const DNS_SERVER: [u8; 4] = [192, 0, 2, 53];

/// The frames of a flood, with their times (an endless iterator: `take`
/// what you need).
#[derive(Debug, Clone)]
pub struct Flood {
    kind: FloodKind,
    state: u64,
    i: u64,
    /// The current far-ahead connection or DNS flow.
    client: [u8; 4],
    port: u16,
    isn: u32,
    id: u16,
    /// The Initial keys of the current QUIC client, and its connection id.
    quic: Option<(crate::proto::quic::InitialKeys, [u8; 8])>,
}

impl Flood {
    /// The flood of `kind`.
    pub fn new(kind: FloodKind) -> Flood {
        Flood {
            kind,
            state: 0x9e37_79b9_7f4a_7c15 ^ (kind as u64 + 1),
            i: 0,
            client: [0; 4],
            port: 0,
            isn: 0,
            id: 0,
            quic: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A random address in 10.0.0.0/8 or 100.64.0.0/10 and a port.
    fn new_client(&mut self) {
        let r = self.next_u64();
        let b = r.to_be_bytes();
        self.client = if b[0] & 1 == 0 {
            [10, b[1], b[2], b[3].max(1)]
        } else {
            [100, 64 | (b[1] & 0x3f), b[2], b[3].max(1)]
        };
        self.port = 1024 + (u16::from_be_bytes([b[4], b[5]]) % 64_000);
        self.isn = u32::from_be_bytes([b[6], b[7], b[4], b[1]]);
        self.id = u16::from_be_bytes([b[2], b[6]]);
    }

    fn frame(&mut self) -> Vec<u8> {
        let (a, b) = (build::MAC_A, build::MAC_B);
        match self.kind {
            FloodKind::Syn => {
                self.new_client();
                build::eth_tcp4(
                    a,
                    b,
                    self.client,
                    SERVER,
                    self.port,
                    80,
                    self.isn,
                    0,
                    crate::flow::tcp_flags::SYN,
                    &[],
                )
            }
            FloodKind::Fragments => {
                self.new_client();
                let (s, d) = (Ipv4Addr::from(self.client), Ipv4Addr::from(SERVER));
                let mut udp = build::udp(s.into(), d.into(), self.port, 9, &[0x55; PAYLOAD]);
                // the datagram announced is twice as long: never complete
                let len = ((udp.len() * 2) as u16).to_be_bytes();
                udp[4..6].copy_from_slice(&len);
                let ip = build::ipv4_fragment(s, d, 17, self.id, 0, true, &udp[..PAYLOAD]);
                build::ethernet(a, b, 0x0800, &ip)
            }
            FloodKind::FarAhead => {
                use crate::flow::tcp_flags::{ACK, PSH, SYN};
                let step = self.i % FAR_AHEAD_PACKETS;
                if step == 0 {
                    self.new_client();
                }
                let (c, s, isn) = (self.client, SERVER, self.isn);
                let server_isn = isn ^ 0x5a5a_5a5a;
                // port 53: DNS over TCP asks for the streams
                let p = 53;
                match step {
                    0 => build::eth_tcp4(a, b, c, s, self.port, p, isn, 0, SYN, &[]),
                    1 => build::eth_tcp4(
                        b,
                        a,
                        s,
                        c,
                        p,
                        self.port,
                        server_isn,
                        isn.wrapping_add(1),
                        SYN | ACK,
                        &[],
                    ),
                    2 => build::eth_tcp4(
                        a,
                        b,
                        c,
                        s,
                        self.port,
                        p,
                        isn.wrapping_add(1),
                        server_isn.wrapping_add(1),
                        ACK,
                        &[],
                    ),
                    k => {
                        // bytes 1..2001 never come: everything after waits
                        let off = 2001 + (k as u32 - 3) * PAYLOAD as u32;
                        build::eth_tcp4(
                            a,
                            b,
                            c,
                            s,
                            self.port,
                            p,
                            isn.wrapping_add(off),
                            server_isn.wrapping_add(1),
                            ACK | PSH,
                            &[0x41; PAYLOAD],
                        )
                    }
                }
            }
            FloodKind::MalformedDns => {
                self.new_client();
                let mut m = self.id.to_be_bytes().to_vec();
                m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0, 1, 0, 1]);
                build::eth_udp4(b, a, None, DNS_SERVER, self.client, 53, self.port, &m)
            }
            FloodKind::QuicInitials => {
                use crate::proto::quic;
                let step = self.i % QUIC_PACKETS;
                if step == 0 || self.quic.is_none() {
                    self.new_client();
                    let [c0, c1, c2, c3] = self.client;
                    let [p0, p1] = self.port.to_be_bytes();
                    let dcid = [c0, c1, c2, c3, p0, p1, 0x51, 0x1c];
                    self.quic =
                        quic::InitialKeys::new(quic::VERSION_1, &dcid, true).map(|k| (k, dcid));
                }
                // a CRYPTO frame whose bytes start after 1000 bytes that
                // never come (so every frame waits), then PADDING: 1205
                // bytes of UDP payload, above the 1200 a client's first
                // datagram needs
                let offset = 1000 + step as u32 * QUIC_CRYPTO as u32;
                let mut plain = vec![0x06];
                plain.extend_from_slice(&(0x8000_0000 | offset).to_be_bytes());
                plain.extend_from_slice(&(0x4000 | QUIC_CRYPTO as u16).to_be_bytes());
                plain.extend_from_slice(&[0x16; QUIC_CRYPTO]);
                plain.extend_from_slice(&[0; 60]);
                let packet = self
                    .quic
                    .as_ref()
                    .and_then(|(k, dcid)| {
                        quic::seal_initial(k, quic::VERSION_1, dcid, &[], step as u32, &plain)
                    })
                    .unwrap_or_default();
                build::eth_udp4(a, b, None, self.client, SERVER, self.port, 443, &packet)
            }
            FloodKind::DnsFlows => {
                let query = self.i.is_multiple_of(2);
                if query {
                    self.new_client();
                }
                let name = format!("h{:x}.example.com", self.i / 2);
                if query {
                    let q = build::dns_query(self.id, &name, 1);
                    build::eth_udp4(a, b, None, self.client, DNS_SERVER, self.port, 53, &q)
                } else {
                    let addr = std::net::IpAddr::from([198, 51, 100, (self.i / 2) as u8]);
                    let r = build::dns_response(self.id, &name, 1, 0, &[addr], 300);
                    build::eth_udp4(b, a, None, DNS_SERVER, self.client, 53, self.port, &r)
                }
            }
        }
    }
}

impl Iterator for Flood {
    type Item = (Timestamp, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        let ts = Timestamp::from_secs_nanos(1_700_000_000, 0)
            .as_nanos()
            .saturating_add(self.i.saturating_mul(1000) as i64);
        let frame = self.frame();
        self.i += 1;
        Some((Timestamp(ts), frame))
    }
}

/// Writes `packets` frames of the flood of `kind` as a classic pcap
/// (Ethernet, microseconds) into `out`, and returns it.
///
/// # Errors
/// When `out` fails.
pub fn write_pcap<W: std::io::Write>(
    kind: FloodKind,
    packets: u64,
    out: W,
) -> libpcap_tools::Result<W> {
    let mut w = PcapWriter::new(out, LinkType::ETHERNET, PcapWriterOptions::default())?;
    for (index, (ts, data)) in Flood::new(kind).take(packets as usize).enumerate() {
        w.write_packet(&Packet {
            index: index as u64,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: Some(ts),
            origlen: data.len() as u32,
            data: &data,
        })?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floods_are_deterministic_and_named() {
        for k in FloodKind::ALL {
            assert_eq!(FloodKind::from_name(k.name()), Some(k));
            let a: Vec<_> = Flood::new(k).take(40).collect();
            let b: Vec<_> = Flood::new(k).take(40).collect();
            assert_eq!(a, b);
            assert!(a.windows(2).all(|w| w[0].0 < w[1].0));
        }
        assert_eq!(FloodKind::from_name("x"), None);
    }
}
