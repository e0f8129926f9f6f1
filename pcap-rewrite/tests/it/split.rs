//! Per-flow and per-key split with a cap on open files.

use crate::common::{packets, pkt, write_pcap};
use libpcap_analyzer::build;
use libpcap_tools::{LinkType, OwnedPacket};
use pcap_rewrite::filter::{FilterSet, Rule};
use pcap_rewrite::output::{OutputFormat, SplitBy, SplitConfig};
use pcap_rewrite::{Options, rewrite};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

fn a(x: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 168, 0, x))
}

/// 40 packets over 4 flows (both directions, interleaved) plus ARP.
fn traffic() -> (Vec<OwnedPacket>, BTreeMap<String, Vec<Vec<u8>>>) {
    let flows = [
        (a(1), 1000, a(2), 80),
        (a(3), 2000, a(2), 80),
        (a(1), 1001, a(2), 443),
    ];
    let mut want: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let mut frames = Vec::new();
    for round in 0..10u32 {
        for (i, &(c, cp, s, sp)) in flows.iter().enumerate() {
            let (src, sport, dst, dport) = if round % 2 == 0 {
                (c, cp, s, sp)
            } else {
                (s, sp, c, cp)
            };
            let f = build::eth_ip(
                src,
                dst,
                6,
                &build::tcp(src, dst, sport, dport, round, 0, 0x10, b""),
            );
            // files are named after the canonical tuple: smaller endpoint first
            let (x, y) = if (c, cp) <= (s, sp) {
                ((c, cp), (s, sp))
            } else {
                ((s, sp), (c, cp))
            };
            let name = format!("tcp_{}_{}_{}_{}", x.0, x.1, y.0, y.1);
            want.entry(name).or_default().push(f.clone());
            frames.push(f);
            if i == 0 {
                let u = build::eth_ip(a(9), a(2), 17, &build::udp(a(9), a(2), 5353, 53, b"q"));
                want.entry(format!("udp_{}_53_{}_5353", a(2), a(9)))
                    .or_default()
                    .push(u.clone());
                frames.push(u);
            }
        }
    }
    let arp = build::ethernet([1; 6], [0xff; 6], 0x0806, &[0u8; 28]);
    want.entry("non-ip".into()).or_default().push(arp.clone());
    frames.push(arp);
    let v = frames
        .into_iter()
        .enumerate()
        .map(|(i, d)| pkt(i, LinkType::ETHERNET, d))
        .collect();
    (v, want)
}

fn files(dir: &Path) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        m.insert(stem, packets(&p).into_iter().map(|p| p.data).collect());
    }
    m
}

#[test]
fn split_by_flow_with_one_open_file_reopens_and_appends() {
    let (input_packets, want) = traffic();
    for fmt in [OutputFormat::Pcap, OutputFormat::PcapNg] {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.pcap");
        write_pcap(&input, LinkType::ETHERNET, &input_packets);
        let out = dir.path().join("flows");
        let opts = Options {
            split: Some(SplitConfig {
                max_open: 1,
                ..SplitConfig::new(SplitBy::Flow)
            }),
            output_format: Some(fmt),
            ..Options::default()
        };
        let s = rewrite(&input, &out, &opts).unwrap();
        assert_eq!(s.packets_written, input_packets.len() as u64);
        assert_eq!(s.files_written, want.len() as u64);
        assert!(
            s.files_reopened > 10,
            "{fmt:?}: {} reopens",
            s.files_reopened
        );
        assert_eq!(files(&out), want, "{fmt:?}");
    }
}

#[test]
fn split_by_key_names_files_after_the_rule() {
    let (input_packets, want) = traffic();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcap");
    write_pcap(&input, LinkType::ETHERNET, &input_packets);
    let out = dir.path().join("keys");
    let opts = Options {
        split: Some(SplitConfig::new(SplitBy::Key)),
        filter: FilterSet {
            keep: vec![
                Rule::parse("port=53").unwrap(),
                Rule::parse("dport=443").unwrap(),
            ],
            ..FilterSet::default()
        },
        ..Options::default()
    };
    let s = rewrite(&input, &out, &opts).unwrap();
    let got = files(&out);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got["port_53"],
        want[&format!("udp_{}_53_{}_5353", a(2), a(9))]
    );
    // dport=443 matches one direction of the 443 flow only
    let flow443 = &want[&format!("tcp_{}_1001_{}_443", a(1), a(2))];
    let even: Vec<_> = flow443.iter().step_by(2).cloned().collect();
    assert_eq!(got["dport_443"], even);
    assert_eq!(s.packets_written as usize, 10 + even.len());
}

/// `flows` UDP flows, each a request and a reply; the first three flows
/// get one more packet at the very end (after every other flow started).
fn many_flows(flows: u16) -> (Vec<OwnedPacket>, Vec<Vec<u8>>) {
    let (c, s) = (a(10), a(20));
    let mut frames = Vec::new();
    for f in 0..flows {
        let sport = 10_000 + f;
        frames.push(build::eth_ip(c, s, 17, &build::udp(c, s, sport, 53, b"q")));
        frames.push(build::eth_ip(s, c, 17, &build::udp(s, c, 53, sport, b"r")));
    }
    for f in 0..3 {
        let sport = 10_000 + f;
        frames.push(build::eth_ip(c, s, 17, &build::udp(c, s, sport, 53, b"z")));
    }
    let v = frames
        .iter()
        .enumerate()
        .map(|(i, d)| pkt(i, LinkType::ETHERNET, d.clone()))
        .collect();
    (v, frames)
}

#[test]
fn split_file_cap_sends_later_flows_to_one_overflow_file() {
    let flows = 200u16;
    let (input_packets, frames) = many_flows(flows);
    for (fmt, ext) in [
        (OutputFormat::Pcap, "pcap"),
        (OutputFormat::PcapNg, "pcapng"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.pcap");
        write_pcap(&input, LinkType::ETHERNET, &input_packets);
        let out = dir.path().join("flows");
        let opts = Options {
            split: Some(SplitConfig {
                by: SplitBy::Flow,
                // fewer open files than files: the overflow file is closed
                // and reopened too
                max_open: 2,
                max_files: 3,
            }),
            output_format: Some(fmt),
            ..Options::default()
        };
        let s = rewrite(&input, &out, &opts).unwrap();
        let got = files(&out);
        assert_eq!(
            got.len(),
            4,
            "{fmt:?}: {:?}",
            got.keys().collect::<Vec<_>>()
        );
        assert_eq!(s.files_written, 4, "{fmt:?}");
        assert_eq!(s.packets_written, input_packets.len() as u64);
        // the first three flows have their own file, with all their packets
        // (the late ones included)
        for f in 0..3usize {
            let name = format!("udp_{}_{}_{}_53", a(10), 10_000 + f, a(20));
            let want = vec![
                frames[2 * f].clone(),
                frames[2 * f + 1].clone(),
                frames[2 * usize::from(flows) + f].clone(),
            ];
            assert_eq!(got[&name], want, "{fmt:?} {name}");
        }
        // every other flow, in input order, in the overflow file
        let overflow: Vec<_> = frames[6..2 * usize::from(flows)].to_vec();
        assert_eq!(got["overflow"], overflow, "{fmt:?}");
        assert_eq!(s.split_overflow_packets, overflow.len() as u64);
        assert!(out.join(format!("overflow.{ext}")).is_file());
    }
}

#[test]
fn split_file_cap_of_zero_writes_everything_to_the_overflow_file() {
    let (input_packets, frames) = many_flows(5);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcap");
    write_pcap(&input, LinkType::ETHERNET, &input_packets);
    let out = dir.path().join("flows");
    let opts = Options {
        split: Some(SplitConfig {
            max_files: 0,
            ..SplitConfig::new(SplitBy::Flow)
        }),
        ..Options::default()
    };
    let s = rewrite(&input, &out, &opts).unwrap();
    let got = files(&out);
    assert_eq!(got.keys().collect::<Vec<_>>(), ["overflow"]);
    assert_eq!(got["overflow"], frames);
    assert_eq!(s.split_overflow_packets, frames.len() as u64);
}

#[test]
fn split_by_time_puts_each_packet_in_its_period_in_order() {
    // packets one second apart from 1_600_000_000 (2020-09-13T12:26:40Z)
    let (input_packets, _) = traffic();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcap");
    write_pcap(&input, LinkType::ETHERNET, &input_packets);
    let out = dir.path().join("time");
    let opts = Options {
        split: Some(SplitConfig::new(SplitBy::Time(10))),
        ..Options::default()
    };
    let s = rewrite(&input, &out, &opts).unwrap();
    assert_eq!(s.packets_written, input_packets.len() as u64);
    // independent truth: the period of each packet from its own time
    let mut want: BTreeMap<i64, Vec<Vec<u8>>> = BTreeMap::new();
    for p in &input_packets {
        let t = p.ts.unwrap().as_nanos() / 1_000_000_000;
        want.entry(t - t % 10).or_default().push(p.data.clone());
    }
    let got = files(&out);
    assert_eq!(got.len(), want.len());
    // 1_600_000_000 is 12:26:40: periods start at :40, :50, :00, …
    assert!(got.contains_key("20200913T122640Z"), "{:?}", got.keys());
    assert!(got.contains_key("20200913T122650Z"));
    // names sort in time order; each file holds its period, in input order
    for (g, w) in got.values().zip(want.values()) {
        assert_eq!(g, w);
    }
}

#[test]
fn split_by_size_starts_a_part_each_n_bytes_without_cutting_packets() {
    let (input_packets, _) = traffic();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcap");
    write_pcap(&input, LinkType::ETHERNET, &input_packets);
    let out = dir.path().join("size");
    let opts = Options {
        split: Some(SplitConfig::new(SplitBy::Size(500))),
        ..Options::default()
    };
    rewrite(&input, &out, &opts).unwrap();
    // independent truth: a packet goes to part (bytes written before it) / 500
    let mut want: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let mut written = 0usize;
    for p in &input_packets {
        want.entry(format!("part-{:06}", written / 500))
            .or_default()
            .push(p.data.clone());
        written += p.data.len();
    }
    assert!(want.len() > 3);
    assert_eq!(files(&out), want);
}
