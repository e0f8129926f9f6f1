//! Fragments follow the decision of their datagram, whatever their order.

use crate::common::{packets, pkt, write_pcap};
use libpcap_analyzer::build;
use libpcap_tools::{LinkType, OwnedPacket, Timestamp};
use pcap_rewrite::filter::{FilterSet, Rule};
use pcap_rewrite::frag::{FragConfig, OrphanPolicy};
use pcap_rewrite::{Options, Summary, rewrite};
use std::net::Ipv4Addr;

/// Fragments (Ethernet frames) of a UDP datagram to `dport`.
fn datagram(id: u16, dport: u16) -> Vec<Vec<u8>> {
    let (a, b) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 2));
    let seg = build::udp(a.into(), b.into(), 4444, dport, &[id as u8; 300]);
    build::ipv4_fragments(a, b, 17, id, &seg, 96)
        .into_iter()
        .map(|ip| build::ethernet([2; 6], [4; 6], 0x0800, &ip))
        .collect()
}

fn run(frames: Vec<Vec<u8>>, rule: &str, frag: FragConfig) -> (Vec<OwnedPacket>, Summary) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcap");
    let output = dir.path().join("out.pcap");
    let v: Vec<_> = frames
        .into_iter()
        .enumerate()
        .map(|(i, d)| pkt(i, LinkType::ETHERNET, d))
        .collect();
    write_pcap(&input, LinkType::ETHERNET, &v);
    let opts = Options {
        filter: FilterSet {
            keep: vec![Rule::parse(rule).unwrap()],
            ..FilterSet::default()
        },
        frag,
        ..Options::default()
    };
    let s = rewrite(&input, &output, &opts).unwrap();
    (packets(&output), s)
}

#[test]
fn fragments_in_any_order_follow_their_first_fragment() {
    let dns = datagram(1, 53);
    let other = datagram(2, 80);
    assert!(dns.len() >= 4);
    // interleaved, reversed: every non-first fragment comes before its first
    let mut frames = Vec::new();
    for i in (0..dns.len()).rev() {
        frames.push(dns[i].clone());
        frames.push(other[i].clone());
    }
    let (out, s) = run(frames, "port=53", FragConfig::default());
    assert_eq!(s.packets_written as usize, dns.len());
    assert_eq!(s.dropped_by_filter as usize, other.len());
    assert_eq!(s.fragments_resolved_late as usize, 2 * (dns.len() - 1));
    assert_eq!(s.orphan_fragments, 0);
    let mut got: Vec<_> = out.iter().map(|p| p.data.clone()).collect();
    got.sort();
    let mut want = dns.clone();
    want.sort();
    assert_eq!(got, want, "exactly the port-53 datagram, whole");
    // timestamps are those of the input packets
    assert!(out.iter().all(|p| p.ts.is_some()));
}

#[test]
fn first_fragment_never_comes_orphans_follow_the_policy() {
    let dns = datagram(3, 53);
    let without_first: Vec<_> = dns[1..].to_vec();
    let n = without_first.len() as u64;
    // evaluate (default): no ports, so a port rule does not match
    let (out, s) = run(without_first.clone(), "port=53", FragConfig::default());
    assert_eq!(
        (out.len() as u64, s.orphan_fragments, s.dropped_by_filter),
        (0, n, n)
    );
    // an address rule still matches orphans
    let (out, _) = run(
        without_first.clone(),
        "src=10.1.0.1&port=53",
        FragConfig::default(),
    );
    assert!(out.is_empty());
    let keep = FragConfig {
        orphans: OrphanPolicy::Keep,
        ..FragConfig::default()
    };
    let (out, s) = run(without_first, "port=53", keep);
    assert_eq!((out.len() as u64, s.orphan_fragments), (n, n));
}

#[test]
fn buffer_cap_and_timeout_bound_the_wait() {
    // cap of 2 buffered fragments: when a third must wait, the oldest
    // waiting datagram (here the same one, with 2 fragments) is orphaned
    let dns = datagram(4, 53);
    let mut frames: Vec<_> = dns[1..].iter().rev().cloned().collect();
    frames.push(dns[0].clone());
    let capped = FragConfig {
        max_buffered: 2,
        ..FragConfig::default()
    };
    let (out, s) = run(frames.clone(), "port=53", capped);
    let rest = dns.len() as u64 - 1;
    assert_eq!(rest, 3);
    assert_eq!(s.orphan_fragments, 2);
    assert_eq!(s.fragments_buffered_peak, 2);
    assert_eq!(out.len(), 2, "the one that waited, plus the first fragment");
    assert_eq!(out[0].data, dns[1]);
    assert_eq!(out[1].data, dns[0]);

    // a first fragment arriving after the timeout no longer releases them
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("t.pcap");
    let v: Vec<_> = frames
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut p = pkt(i, LinkType::ETHERNET, d.clone());
            p.ts = Some(Timestamp::from_secs_nanos(100 + 10 * i as i64, 0));
            p
        })
        .collect();
    write_pcap(&input, LinkType::ETHERNET, &v);
    let opts = Options {
        filter: FilterSet {
            keep: vec![Rule::parse("port=53").unwrap()],
            ..FilterSet::default()
        },
        frag: FragConfig {
            timeout_ns: 5_000_000_000,
            ..FragConfig::default()
        },
        ..Options::default()
    };
    let s = rewrite(&input, &dir.path().join("o.pcap"), &opts).unwrap();
    assert_eq!(s.orphan_fragments, rest, "{s:?}");
    assert_eq!(s.packets_written, 1, "{s:?}");
}

#[test]
fn address_rules_need_no_buffering() {
    let dns = datagram(5, 53);
    let frames: Vec<_> = dns.iter().rev().cloned().collect();
    let (out, s) = run(frames, "dst=10.1.0.2", FragConfig::default());
    assert_eq!(out.len(), dns.len());
    assert_eq!(s.fragments_buffered_peak, 0);
    // written in input order
    assert_eq!(out[0].data, *dns.last().unwrap());
}

#[test]
fn without_timestamps_the_resolver_memory_is_bounded_by_count() {
    // pcapng Simple Packet Blocks: no timestamp, the clock never moves, so
    // nothing ever times out. 2000 datagrams whose first fragment comes
    // last, and now and then a fragment whose first fragment never comes.
    let rounds = 2_000u16;
    let mut frames = Vec::new();
    let mut want = Vec::new();
    for i in 0..rounds {
        let d = datagram(i, 53);
        if i % 50 == 0 {
            frames.push(datagram(i ^ 0x8000, 53)[1].clone());
        }
        frames.extend(d[1..].iter().cloned());
        frames.push(d[0].clone());
        want.extend(d);
    }
    let orphans = u64::from(rounds / 50);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcapng");
    let v: Vec<_> = frames
        .into_iter()
        .enumerate()
        .map(|(i, d)| OwnedPacket {
            ts: None,
            ..pkt(i, LinkType::ETHERNET, d)
        })
        .collect();
    crate::common::write_pcapng(&input, &[LinkType::ETHERNET], &v);
    assert!(packets(&input).iter().all(|p| p.ts.is_none()));
    let frag = FragConfig {
        max_buffered: 8,
        max_datagrams: 16,
        ..FragConfig::default()
    };
    let output = dir.path().join("out.pcapng");
    let opts = Options {
        filter: FilterSet {
            keep: vec![Rule::parse("port=53").unwrap()],
            ..FilterSet::default()
        },
        frag,
        ..Options::default()
    };
    let s = rewrite(&input, &output, &opts).unwrap();
    assert!(
        s.fragment_order_entries_peak <= frag.max_order_entries() as u64,
        "{s:?}"
    );
    // the same decisions as with unbounded queues: every datagram whole,
    // the lone fragments orphaned (and dropped: no ports, no port=53)
    assert_eq!(s.fragments_resolved_late, u64::from(rounds) * 3);
    assert_eq!(s.orphan_fragments, orphans);
    assert_eq!(s.dropped_by_filter, orphans);
    assert_eq!(s.fragment_ports_forgotten, u64::from(rounds) - 16);
    let got: Vec<_> = packets(&output).into_iter().map(|p| p.data).collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    want.sort();
    assert_eq!(got_sorted, want);
}
