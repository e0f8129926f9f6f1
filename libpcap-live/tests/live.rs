//! Live tests of the AF_PACKET source: each builds its own pair of network
//! namespaces joined by a veth pair, injects known frames on one end and
//! captures them on the other. Without root (or `ip`), each prints one
//! `SKIP <test>: <reason>` line and passes. Every read is bounded: a poll
//! times out after 100 ms and every loop has a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // tests fail loudly

use libpcap_analyzer::build;
use libpcap_live::afpacket::{self, CaptureGroup, CaptureLimits, LiveConfig};
use libpcap_live::libpcap::Libpcap;
use libpcap_live::testing::{self, VethBed};
use libpcap_tools::{LinkType, OwnedPacket, PacketSource, SourceEvent, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// An Ethernet/IPv4/UDP frame from the generator side (10.9.0.1) to
/// 10.9.0.2, to the MAC address nobody answers, optionally VLAN-tagged.
fn udp(vlan: Option<u16>, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    build::eth_udp4(
        testing::GEN_MAC,
        testing::NOBODY_MAC,
        vlan,
        [10, 9, 0, 1],
        [10, 9, 0, 2],
        sport,
        dport,
        payload,
    )
}

fn bed(test: &str) -> Option<VethBed> {
    if let Some(why) = testing::skip_reason() {
        eprintln!("SKIP {test}: {why}");
        return None;
    }
    Some(VethBed::new("lt").unwrap_or_else(|e| panic!("building the veth bed: {e}")))
}

fn open_in(bed: &VethBed, cfg: &LiveConfig, n: usize, limits: CaptureLimits) -> CaptureGroup {
    let ifname = bed.cap_if.clone();
    testing::in_namespace(&bed.cap_ns, || afpacket::open(&ifname, cfg, n, limits))
        .unwrap()
        .unwrap()
}

/// Reads `source` until `want` packets came or `limit` passed (polls
/// report timeouts meanwhile).
fn read(source: &mut dyn PacketSource, want: usize, limit: Duration) -> Vec<OwnedPacket> {
    let t = Instant::now();
    let mut v = Vec::new();
    while v.len() < want && t.elapsed() < limit {
        match source.next_event().unwrap() {
            SourceEvent::Packet(p) => v.push(p.to_owned()),
            SourceEvent::Timeout { .. } => {}
            SourceEvent::End => break,
        }
    }
    v
}

fn wall() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    Timestamp::from_secs_nanos(d.as_secs() as i64, i64::from(d.subsec_nanos()))
}

#[test]
fn live_single_socket_delivers_the_frames_sent_byte_for_byte() {
    let Some(bed) = bed("live_single_socket_delivers_the_frames_sent_byte_for_byte") else {
        return;
    };
    let mut group = open_in(&bed, &LiveConfig::default(), 1, CaptureLimits::default());
    assert_eq!(group.handle.linktype(), LinkType::ETHERNET);
    let tx = bed.sender().unwrap();
    let before = wall();
    let mut sent = Vec::new();
    for i in 0..50u16 {
        let f = udp(None, 4000 + i % 5, 53, &vec![i as u8; usize::from(i)]);
        tx.send(&f).unwrap();
        sent.push(f);
    }
    let src = &mut group.sources[0];
    let got = read(src, 50, Duration::from_secs(5));
    let after = wall();
    assert_eq!(got.len(), 50);
    for (i, (p, f)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(&p.data, f, "frame {i}");
        assert_eq!(p.origlen as usize, f.len());
        assert_eq!(p.index, i as u64);
        assert_eq!(p.linktype, LinkType::ETHERNET);
        let ts = p.ts.unwrap();
        assert!(ts >= before && ts <= after, "{ts} not in {before}..{after}");
    }
    // nothing else arrives: an idle source reports timeouts with the wall clock
    match src.next_event().unwrap() {
        SourceEvent::Timeout { now } => assert!(now >= after),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(src.is_live());
    group.handle.stop();
    assert_eq!(src.next_event().unwrap(), SourceEvent::End);
    let k = group.handle.kernel_stats();
    assert_eq!((k.packets, k.drops), (50, 0), "{k:?}");
}

#[test]
fn live_fanout_puts_each_flow_on_exactly_one_socket() {
    let Some(bed) = bed("live_fanout_puts_each_flow_on_exactly_one_socket") else {
        return;
    };
    let mut group = open_in(&bed, &LiveConfig::default(), 3, CaptureLimits::default());
    assert_eq!(group.sources.len(), 3);
    let tx = bed.sender().unwrap();
    // 12 flows of 10 packets, interleaved
    for k in 0..120u16 {
        let flow = k % 12;
        tx.send(&udp(None, 5000 + flow, 7000, b"x")).unwrap();
    }
    let mut per_flow: BTreeMap<u16, BTreeSet<usize>> = BTreeMap::new();
    let mut total = 0;
    for (i, s) in group.sources.iter_mut().enumerate() {
        // each source drains its ring; a timeout means it is empty
        let t = Instant::now();
        loop {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "source {i} never idle"
            );
            match s.next_event().unwrap() {
                SourceEvent::Packet(p) => {
                    let sport = u16::from_be_bytes([p.data[34], p.data[35]]);
                    per_flow.entry(sport).or_default().insert(i);
                    total += 1;
                }
                SourceEvent::Timeout { .. } => break,
                SourceEvent::End => panic!("not stopped"),
            }
        }
    }
    group.handle.stop();
    for s in &mut group.sources {
        assert_eq!(s.next_event().unwrap(), SourceEvent::End);
    }
    assert_eq!(total, 120, "{per_flow:?}");
    assert_eq!(per_flow.len(), 12);
    for (flow, socks) in &per_flow {
        assert_eq!(socks.len(), 1, "flow {flow} on sockets {socks:?}");
    }
    assert_eq!(group.handle.kernel_stats().packets, 120);
}

#[test]
fn live_vlan_tag_stripped_by_the_kernel_is_put_back() {
    let Some(bed) = bed("live_vlan_tag_stripped_by_the_kernel_is_put_back") else {
        return;
    };
    let mut group = open_in(&bed, &LiveConfig::default(), 1, CaptureLimits::default());
    let tx = bed.sender().unwrap();
    let f = udp(Some(100), 1234, 53, b"vlan");
    // and an 802.1ad (QinQ outer) tag: TPID 0x88a8 comes from tp_vlan_tpid
    let mut ad = udp(Some(200), 1235, 53, b"qinq");
    ad[12..14].copy_from_slice(&[0x88, 0xa8]);
    tx.send(&f).unwrap();
    tx.send(&ad).unwrap();
    let got = read(&mut group.sources[0], 2, Duration::from_secs(5));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].data, f, "the frame as it was on the wire");
    assert_eq!(got[0].origlen as usize, f.len());
    assert_eq!(got[1].data, ad);
    assert_eq!(got[1].origlen as usize, ad.len());
}

#[test]
fn live_count_limit_ends_every_source_after_exactly_n_packets() {
    let Some(bed) = bed("live_count_limit_ends_every_source_after_exactly_n_packets") else {
        return;
    };
    let limits = CaptureLimits {
        max_packets: Some(7),
        duration: None,
    };
    let mut group = open_in(&bed, &LiveConfig::default(), 1, limits);
    let tx = bed.sender().unwrap();
    for i in 0..20u16 {
        tx.send(&udp(None, i, 9, b"")).unwrap();
    }
    let got = read(&mut group.sources[0], 100, Duration::from_secs(5));
    assert_eq!(got.len(), 7);
    assert_eq!(group.sources[0].next_event().unwrap(), SourceEvent::End);
    // exactly as many packets as the count: the source ends right after the
    // last one, without waiting for another
    let mut group = open_in(&bed, &LiveConfig::default(), 1, limits);
    for i in 0..7u16 {
        tx.send(&udp(None, i, 9, b"")).unwrap();
    }
    let t = Instant::now();
    let got = read(&mut group.sources[0], 100, Duration::from_secs(5));
    assert_eq!(got.len(), 7);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
}

#[test]
fn live_duration_limit_ends_an_idle_source() {
    let Some(bed) = bed("live_duration_limit_ends_an_idle_source") else {
        return;
    };
    let limits = CaptureLimits {
        max_packets: None,
        duration: Some(Duration::from_millis(300)),
    };
    let mut group = open_in(&bed, &LiveConfig::default(), 1, limits);
    let t = Instant::now();
    let mut timeouts = 0;
    loop {
        match group.sources[0].next_event().unwrap() {
            SourceEvent::Timeout { .. } => timeouts += 1,
            SourceEvent::End => break,
            SourceEvent::Packet(p) => panic!("unexpected packet {p:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(5), "did not stop");
    }
    let took = t.elapsed();
    assert!(
        // the first poll timeout (100 ms) after 300 ms; slack for a loaded machine
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(timeouts >= 2, "{timeouts} timeouts at a 100 ms poll");
}

#[test]
fn live_promiscuous_mode_is_set_while_capturing_and_can_be_turned_off() {
    let Some(bed) = bed("live_promiscuous_mode_is_set_while_capturing_and_can_be_turned_off")
    else {
        return;
    };
    let promiscuity = |bed: &VethBed| {
        let d = bed.cap_link_details().unwrap();
        d.split_whitespace()
            .skip_while(|w| *w != "promiscuity")
            .nth(1)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no promiscuity in {d}"))
    };
    assert_eq!(promiscuity(&bed), 0);
    let g = open_in(&bed, &LiveConfig::default(), 2, CaptureLimits::default());
    assert_eq!(promiscuity(&bed), 2, "one membership per socket");
    drop(g);
    // the kernel drops the memberships when it releases the sockets, which
    // a loaded machine may do a little after close(2) returns
    let t = Instant::now();
    while promiscuity(&bed) != 0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(promiscuity(&bed), 0, "undone when the sockets close");
    let cfg = LiveConfig {
        promiscuous: false,
        ..LiveConfig::default()
    };
    let _g = open_in(&bed, &cfg, 1, CaptureLimits::default());
    assert_eq!(promiscuity(&bed), 0);
}

#[test]
fn live_full_ring_counts_kernel_drops() {
    let Some(bed) = bed("live_full_ring_counts_kernel_drops") else {
        return;
    };
    // 2 blocks of 4 KiB: about 30 frames of 100 bytes fit; nobody reads
    let cfg = LiveConfig {
        block_size: 4096,
        block_count: 2,
        frame_size: 2048,
        ..LiveConfig::default()
    };
    let mut group = open_in(&bed, &cfg, 1, CaptureLimits::default());
    let tx = bed.sender().unwrap();
    for i in 0..500u16 {
        tx.send(&udp(None, i, 9, &[0; 58])).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    let got = read(&mut group.sources[0], 500, Duration::from_millis(500));
    group.handle.stop();
    let t = Instant::now();
    while group.sources[0].next_event().unwrap() != SourceEvent::End {
        assert!(t.elapsed() < Duration::from_secs(10), "no end after stop");
    }
    let k = group.handle.kernel_stats();
    assert_eq!(k.packets, 500, "{k:?}");
    assert!(k.drops > 0, "{k:?}");
    assert_eq!(got.len() as u64, k.packets - k.drops, "{k:?}");
}

/// The capture filter `expr` as tcpdump would attach it on the bed's
/// capture interface, or `None` after a SKIP line when libpcap is missing.
fn kernel_program(bed: &VethBed, test: &str, expr: &str) -> Option<libpcap_tools::BpfProgram> {
    let pcap = match Libpcap::load() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("SKIP {test}: {e}");
            return None;
        }
    };
    let ifname = bed.cap_if.clone();
    Some(
        testing::in_namespace(&bed.cap_ns, || pcap.compile_for_interface(&ifname, expr))
            .unwrap()
            .unwrap(),
    )
}

/// Reads every source of `group` until each has been idle for a poll
/// interval (or 10 s passed), then stops them; the packets of all sources.
fn drain(group: &mut CaptureGroup) -> Vec<OwnedPacket> {
    let t = Instant::now();
    let mut got = Vec::new();
    for s in &mut group.sources {
        while t.elapsed() < Duration::from_secs(10) {
            match s.next_event().unwrap() {
                SourceEvent::Packet(p) => got.push(p.to_owned()),
                SourceEvent::Timeout { .. } | SourceEvent::End => break,
            }
        }
    }
    group.handle.stop();
    for s in &mut group.sources {
        while t.elapsed() < Duration::from_secs(15) {
            if s.next_event().unwrap() == SourceEvent::End {
                break;
            }
        }
    }
    got
}

#[test]
fn live_kernel_filter_delivers_only_matching_frames_with_one_and_two_sockets() {
    let test = "live_kernel_filter_delivers_only_matching_frames_with_one_and_two_sockets";
    let Some(bed) = bed(test) else {
        return;
    };
    let Some(prog) = kernel_program(&bed, test, "udp port 5000") else {
        return;
    };
    let tx = bed.sender().unwrap();
    for sockets in [1, 2] {
        let cfg = LiveConfig::default();
        let ifname = bed.cap_if.clone();
        let mut group = testing::in_namespace(&bed.cap_ns, || {
            afpacket::open_with_filter(
                &ifname,
                &cfg,
                sockets,
                CaptureLimits::default(),
                Some(&prog),
            )
        })
        .unwrap()
        .unwrap();
        assert_eq!(group.sources.len(), sockets);
        // 40 matching frames (port 5000 as source or destination, many
        // flows so that both sockets get some), 60 others: other UDP
        // ports, TCP to port 5000, ARP-sized junk
        let mut matching = BTreeSet::new();
        for i in 0..100u16 {
            let payload = i.to_be_bytes();
            let f = match i % 5 {
                0 => udp(None, 1000 + i, 5000, &payload),
                1 => udp(None, 5000, 2000 + i, &payload),
                2 => udp(None, 5001, 4999, &payload),
                3 => build::eth_tcp4(
                    testing::GEN_MAC,
                    testing::NOBODY_MAC,
                    [10, 9, 0, 1],
                    [10, 9, 0, 2],
                    3000 + i,
                    5000,
                    1,
                    0,
                    0x02,
                    &payload,
                ),
                _ => {
                    let mut f = udp(None, 7, 5000, &payload);
                    f[12..14].copy_from_slice(&[0x08, 0x06]); // not IPv4
                    f
                }
            };
            if i % 5 < 2 {
                matching.insert(f.clone());
            }
            tx.send(&f).unwrap();
        }
        let got = drain(&mut group);
        let got_set: BTreeSet<Vec<u8>> = got.iter().map(|p| p.data.clone()).collect();
        assert_eq!(got.len(), 40, "{sockets} sockets: {} frames", got.len());
        assert_eq!(
            got_set, matching,
            "{sockets} sockets: exactly the matching frames"
        );
        let k = group.handle.kernel_stats();
        assert_eq!(
            (k.packets, k.drops),
            (40, 0),
            "{sockets} sockets: the kernel counts only the frames the filter kept"
        );
    }
}

#[test]
fn live_kernel_filter_sees_vlan_tags_the_kernel_took_out() {
    let test = "live_kernel_filter_sees_vlan_tags_the_kernel_took_out";
    let Some(bed) = bed(test) else {
        return;
    };
    let Some(prog) = kernel_program(&bed, test, "vlan 100 and udp port 5000") else {
        return;
    };
    let ifname = bed.cap_if.clone();
    let mut group = testing::in_namespace(&bed.cap_ns, || {
        afpacket::open_with_filter(
            &ifname,
            &LiveConfig::default(),
            1,
            CaptureLimits::default(),
            Some(&prog),
        )
    })
    .unwrap()
    .unwrap();
    let tx = bed.sender().unwrap();
    let want = udp(Some(100), 1234, 5000, b"tagged 100");
    for f in [
        udp(None, 1234, 5000, b"untagged"),
        udp(Some(200), 1234, 5000, b"tagged 200"),
        want.clone(),
        udp(Some(100), 1234, 5001, b"other port"),
    ] {
        tx.send(&f).unwrap();
    }
    let got = drain(&mut group);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].data, want, "the tagged frame, its tag put back");
    assert_eq!(group.handle.kernel_stats().packets, 1);
}

#[test]
fn unknown_interface_is_a_clear_error() {
    if testing::skip_reason().is_some() {
        // without the right to open a socket, that is the error given first
        let e = afpacket::open(
            "pal-nosuch0",
            &LiveConfig::default(),
            1,
            CaptureLimits::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("CAP_NET_RAW"), "{e}");
        return;
    }
    let e = afpacket::open(
        "pal-nosuch0",
        &LiveConfig::default(),
        1,
        CaptureLimits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(e, afpacket::LiveError::NoSuchInterface(_)),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "no such interface 'pal-nosuch0' (see `ip link`)"
    );
    let bad = LiveConfig {
        block_size: 5000,
        ..LiveConfig::default()
    };
    let e = afpacket::open("lo", &bad, 1, CaptureLimits::default()).unwrap_err();
    assert!(e.to_string().contains("block_size"), "{e}");
}
