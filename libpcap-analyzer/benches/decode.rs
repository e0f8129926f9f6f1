//! Decoding speed per layer, and the whole engine over the sample trace.
//!
//! `cargo bench -p libpcap-analyzer --bench decode`

#![allow(missing_docs, clippy::unwrap_used)] // a bench harness

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use libpcap_analyzer::build::{self, MAC_A, MAC_B, flags};
use libpcap_analyzer::decode::link::decode_link;
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_analyzer::samples::sample_trace;
use libpcap_analyzer::wire::{
    EthernetSlice, Ipv4Slice, Ipv6Slice, TcpSlice, UdpSlice, VlanSlice, walk_ipv6_extensions,
};
use libpcap_analyzer::{Analyzer, Engine};
use libpcap_tools::{
    Config, LinkType, OwnedPacket, PacketSource, SourceEvent, SourceProgress, Timestamp,
};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn frames() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (c, s) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let tcp = build::tcp(
        c.into(),
        s.into(),
        40000,
        443,
        1,
        2,
        flags::ACK,
        &[7u8; 1400],
    );
    let v4 = build::ethernet(MAC_A, MAC_B, 0x0800, &build::ipv4(c, s, 6, 1, &tcp));
    let tagged = build::ethernet(
        MAC_A,
        MAC_B,
        0x8100,
        &build::vlan_tag(10, 0x0800, &build::ipv4(c, s, 6, 1, &tcp)),
    );
    let (a, b): (Ipv6Addr, Ipv6Addr) = (
        "2001:db8::1".parse().unwrap(),
        "2001:db8::2".parse().unwrap(),
    );
    let udp = build::udp(IpAddr::V6(a), IpAddr::V6(b), 5353, 53, &[1u8; 60]);
    let v6 = build::ethernet(MAC_A, MAC_B, 0x86dd, &build::ipv6(a, b, 17, &udp));
    (v4, tagged, v6)
}

fn per_layer(c: &mut Criterion) {
    let (v4, tagged, v6) = frames();
    let mut g = c.benchmark_group("layer");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ethernet", |b| {
        b.iter(|| {
            EthernetSlice::from_slice(black_box(&v4))
                .unwrap()
                .ethertype()
        })
    });
    g.bench_function("vlan", |b| {
        b.iter(|| {
            VlanSlice::from_slice(black_box(&tagged[14..]))
                .unwrap()
                .vid()
        })
    });
    g.bench_function("ipv4", |b| {
        b.iter(|| {
            Ipv4Slice::from_slice(black_box(&v4[14..]))
                .unwrap()
                .payload()
                .len()
        })
    });
    g.bench_function("ipv6+ext", |b| {
        b.iter(|| {
            let ip = Ipv6Slice::from_slice(black_box(&v6[14..])).unwrap();
            walk_ipv6_extensions(ip.next_header(), ip.payload())
                .unwrap()
                .transport
        })
    });
    g.bench_function("tcp", |b| {
        b.iter(|| {
            TcpSlice::from_slice(black_box(&v4[34..]))
                .unwrap()
                .payload()
                .len()
        })
    });
    g.bench_function("udp", |b| {
        b.iter(|| {
            UdpSlice::from_slice(black_box(&v6[54..]))
                .unwrap()
                .payload()
                .len()
        })
    });
    g.bench_function("link(vlan)", |b| {
        b.iter(|| {
            decode_link(LinkType::ETHERNET, black_box(&tagged))
                .unwrap()
                .l3_offset
        })
    });
    g.finish();
}

fn packet(i: u64, data: &[u8]) -> libpcap_tools::Packet<'_> {
    libpcap_tools::Packet {
        index: i,
        interface: 0,
        linktype: LinkType::ETHERNET,
        ts: Some(Timestamp(1_700_000_000_000_000_000 + i as i64 * 1000)),
        origlen: data.len() as u32,
        data,
    }
}

fn full_packet(c: &mut Criterion) {
    let (v4, _, v6) = frames();
    let mut g = c.benchmark_group("analyzer");
    g.throughput(Throughput::Elements(1));
    g.bench_function("tcp packet, no plugin", |b| {
        let mut a = Analyzer::new(&Config::new(), Vec::new()).unwrap();
        let mut i = 0;
        b.iter(|| {
            i += 1;
            a.handle_packet(&packet(i, &v4));
        })
    });
    g.bench_function("udp/ipv6 packet, default plugins", |b| {
        let config = Config::new();
        let r = builtin_registry();
        let names = r.select(None).unwrap();
        let mut a = Analyzer::new(&config, r.build(&names, &config).unwrap()).unwrap();
        let mut i = 0;
        b.iter(|| {
            i += 1;
            a.handle_packet(&packet(i, &v6));
        })
    });
    g.finish();
}

/// The sample trace repeated, as an in-memory source.
struct Repeat {
    trace: Vec<OwnedPacket>,
    rounds: usize,
    i: usize,
    bytes: u64,
}

impl PacketSource for Repeat {
    fn next_event(&mut self) -> libpcap_tools::Result<SourceEvent<'_>> {
        if self.i >= self.trace.len() * self.rounds {
            return Ok(SourceEvent::End);
        }
        let k = self.i % self.trace.len();
        let round = (self.i / self.trace.len()) as i64;
        self.i += 1;
        let p = &self.trace[k];
        self.bytes += p.data.len() as u64;
        let mut pk = p.as_packet();
        pk.index = self.i as u64;
        pk.ts = pk.ts.map(|t| Timestamp(t.0 + round * 3_600_000_000_000));
        Ok(SourceEvent::Packet(pk))
    }
    fn name(&self) -> &str {
        "repeat"
    }
    fn progress(&self) -> SourceProgress {
        SourceProgress {
            packets: self.i as u64,
            bytes: self.bytes,
            ..SourceProgress::default()
        }
    }
}

fn whole_trace(c: &mut Criterion) {
    let trace = sample_trace();
    let rounds = 50;
    let bytes: u64 = trace.iter().map(|p| p.data.len() as u64).sum::<u64>() * rounds as u64;
    let mut g = c.benchmark_group("whole-trace");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(20);
    for jobs in [1, 2] {
        g.bench_function(format!("default plugins -j {jobs}"), |b| {
            let config = Config::new();
            let r = builtin_registry();
            let names = r.select(None).unwrap();
            let engine = Engine::new(&config, jobs).unwrap();
            b.iter(|| {
                let mut src = Repeat {
                    trace: trace.clone(),
                    rounds,
                    i: 0,
                    bytes: 0,
                };
                let factory = || r.build(&names, &config);
                engine.run(&factory, &mut src).unwrap().stats.packets
            })
        });
    }
    g.finish();
}

criterion_group!(benches, per_layer, full_packet, whole_trace);
criterion_main!(benches);
