use super::*;
use std::net::IpAddr;

fn key(a: [u8; 4], sp: u16, b: [u8; 4], dp: u16, proto: u8) -> FiveTuple {
    FiveTuple {
        src: IpAddr::from(a),
        dst: IpAddr::from(b),
        src_port: sp,
        dst_port: dp,
        proto,
    }
}
const C: [u8; 4] = [10, 0, 0, 1];
const S: [u8; 4] = [10, 0, 0, 2];
fn ts(s: i64) -> Option<Timestamp> {
    Some(Timestamp::from_secs_nanos(s, 0))
}
type Table = FlowTable<()>;

fn track(t: &mut Table, k: &FiveTuple, at: i64, idx: u64, flags: u8) -> Tracked {
    t.track(k, FlowContext::default(), ts(at), idx, 1, 100, flags)
}

#[test]
fn both_directions_share_one_flow_and_first_packet_gives_direction() {
    let mut t = Table::new(FlowConfig::default());
    let k = key(C, 5000, S, 53, ipproto::UDP);
    let a = track(&mut t, &k, 1, 0, 0);
    let b = track(&mut t, &k.reversed(), 2, 1, 0);
    assert!(a.created && !b.created);
    assert_eq!(a.handle, b.handle);
    assert_eq!(
        (a.direction, b.direction),
        (Direction::ToServer, Direction::ToClient)
    );
    let f = &t.get(a.handle).unwrap().flow;
    assert_eq!(f.key, k);
    assert_eq!(
        (f.to_server.packets, f.to_client.packets, f.bytes()),
        (1, 1, 200)
    );
    assert_eq!((f.first_seen, f.last_seen), (ts(1), ts(2)));
}

#[test]
fn syn_ack_first_makes_its_sender_the_server() {
    let mut t = Table::new(FlowConfig::default());
    let k = key(S, 80, C, 40000, ipproto::TCP);
    let a = track(&mut t, &k, 1, 0, tcp_flags::SYN | tcp_flags::ACK);
    assert_eq!(a.direction, Direction::ToClient);
    assert_eq!(t.get(a.handle).unwrap().flow.key, k.reversed());
}

#[test]
fn late_syn_corrects_direction() {
    let mut t = Table::new(FlowConfig::default());
    let client = key(C, 40000, S, 80, ipproto::TCP);
    // an ACK from the server is seen first (reordered capture), then the SYN
    let a = track(&mut t, &client.reversed(), 1, 0, tcp_flags::ACK);
    assert_eq!(a.direction, Direction::ToServer);
    let b = track(&mut t, &client, 1, 1, tcp_flags::SYN);
    assert_eq!(b.direction, Direction::ToServer);
    let e = t.get(a.handle).unwrap();
    assert_eq!(e.flow.key, client);
    assert_eq!((e.flow.to_server.packets, e.flow.to_client.packets), (1, 1));
    assert_eq!(t.stats().direction_corrected, 1);
}

#[test]
fn udp_flow_times_out_by_packet_time() {
    let mut t = Table::new(FlowConfig {
        udp_timeout: 10.0,
        ..FlowConfig::default()
    });
    let k = key(C, 1, S, 2, ipproto::UDP);
    track(&mut t, &k, 100, 0, 0);
    track(&mut t, &k, 105, 1, 0); // activity pushes the deadline to 115
    t.advance(Timestamp::from_secs_nanos(114, 0));
    assert_eq!(t.len(), 1);
    assert!(!t.has_ended());
    t.advance(Timestamp::from_secs_nanos(115, 0));
    let ended: Vec<_> = t.take_ended().collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].1, EndReason::Timeout);
    assert_eq!(ended[0].0.flow.packets(), 2);
    assert!(t.is_empty());
    // the same key later is a new flow with a different id
    let again = track(&mut t, &k, 200, 2, 0);
    assert!(again.created);
    assert_ne!(t.get(again.handle).unwrap().flow.id, ended[0].0.flow.id);
}

#[test]
fn tcp_fin_both_ways_lingers_then_ends_with_fin() {
    let mut t = Table::new(FlowConfig {
        tcp_close_timeout: 5.0,
        ..FlowConfig::default()
    });
    let k = key(C, 40000, S, 80, ipproto::TCP);
    track(&mut t, &k, 1, 0, tcp_flags::SYN);
    track(&mut t, &k.reversed(), 1, 1, tcp_flags::SYN | tcp_flags::ACK);
    track(&mut t, &k, 2, 2, tcp_flags::FIN | tcp_flags::ACK);
    track(&mut t, &k.reversed(), 2, 3, tcp_flags::FIN | tcp_flags::ACK);
    let last = track(&mut t, &k, 2, 4, tcp_flags::ACK); // the final ACK joins the same flow
    assert!(!last.created);
    t.advance(Timestamp::from_secs_nanos(6, 0));
    assert!(!t.has_ended());
    t.advance(Timestamp::from_secs_nanos(7, 0));
    let ended: Vec<_> = t.take_ended().collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].1, EndReason::Fin);
    assert_eq!(ended[0].0.flow.packets(), 5);
}

#[test]
fn new_syn_on_closed_flow_starts_a_new_flow() {
    let mut t = Table::new(FlowConfig::default());
    let k = key(C, 40000, S, 80, ipproto::TCP);
    track(&mut t, &k, 1, 0, tcp_flags::SYN);
    track(&mut t, &k.reversed(), 1, 1, tcp_flags::RST | tcp_flags::ACK);
    let again = track(&mut t, &k, 2, 2, tcp_flags::SYN);
    assert!(again.created);
    let ended: Vec<_> = t.take_ended().collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].1, EndReason::Rst);
    assert_eq!(t.len(), 1);
}

#[test]
fn cap_evicts_the_least_recently_active_flow() {
    let mut t = Table::new(FlowConfig {
        max_flows: 2,
        ..FlowConfig::default()
    });
    let a = key(C, 1, S, 2, ipproto::UDP);
    let b = key(C, 3, S, 4, ipproto::UDP);
    let c = key(C, 5, S, 6, ipproto::UDP);
    track(&mut t, &a, 1, 0, 0);
    track(&mut t, &b, 2, 1, 0);
    track(&mut t, &a, 3, 2, 0); // a is now more recent than b
    track(&mut t, &c, 4, 3, 0);
    let ended: Vec<_> = t.take_ended().collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].1, EndReason::Eviction);
    assert_eq!(ended[0].0.flow.key, b);
    assert_eq!(t.len(), 2);
    assert_eq!(t.stats().ended_eviction, 1);
}

#[test]
fn drain_ends_everything_once_and_context_separates_flows() {
    let mut t = Table::new(FlowConfig::default());
    let k = key(C, 1, S, 2, ipproto::UDP);
    t.track(
        &k,
        FlowContext {
            vlan: 10,
            ..FlowContext::default()
        },
        ts(1),
        0,
        1,
        60,
        0,
    );
    t.track(
        &k,
        FlowContext {
            vlan: 20,
            ..FlowContext::default()
        },
        ts(1),
        1,
        1,
        60,
        0,
    );
    t.track(&k, FlowContext::default(), None, 2, 1, 60, 0);
    assert_eq!(t.len(), 3);
    t.drain();
    let ended: Vec<_> = t.take_ended().collect();
    assert_eq!(ended.len(), 3);
    assert!(ended.iter().all(|(_, r)| *r == EndReason::EndOfInput));
    assert_eq!(t.stats().created, 3);
    t.drain();
    assert_eq!(t.take_ended().count(), 0);
}

#[test]
fn flow_ids_are_deterministic_and_depend_on_first_packet() {
    let k = FlowKey {
        tuple: key(C, 1, S, 2, ipproto::UDP).canonical(),
        context: FlowContext::default(),
    };
    assert_eq!(flow_id(&k, None, 7), flow_id(&k, None, 7));
    assert_ne!(flow_id(&k, None, 7), flow_id(&k, None, 8));
    // with a time, the packet's index does not matter (a shard and the
    // whole capture give the same id); the time does
    let t = Some(Timestamp(1_700_000_000_123_456_789));
    assert_eq!(flow_id(&k, t, 7), flow_id(&k, t, 70_000));
    assert_ne!(flow_id(&k, t, 7), flow_id(&k, Some(Timestamp(1)), 7));
    // time 7 ns and packet 7 are told apart
    assert_ne!(flow_id(&k, Some(Timestamp(7)), 7), flow_id(&k, None, 7));
}

#[test]
fn flow_id_is_the_same_in_a_shard_and_in_the_whole_input() {
    let cfg = FlowConfig::default();
    let tuple = key(C, 1000, S, 53, ipproto::UDP);
    let at = |s: i64| Some(Timestamp(s * 1_000_000_000));
    // whole input: 5 other packets before the flow's first
    let mut whole = FlowTable::<()>::new(cfg.clone());
    let other = key(C, 2000, S, 53, ipproto::UDP);
    for i in 0..5 {
        whole.track(&other, FlowContext::default(), at(1), i, 1, 60, 0);
    }
    let a = whole.track(&tuple, FlowContext::default(), at(2), 5, 1, 60, 0);
    // a shard that starts with the flow
    let mut shard = FlowTable::<()>::new(cfg);
    let b = shard.track(&tuple, FlowContext::default(), at(2), 0, 1, 60, 0);
    let id = |t: &FlowTable<()>, h| t.get(h).map(|e| e.flow.id);
    assert!(id(&whole, a.handle).is_some());
    assert_eq!(id(&whole, a.handle), id(&shard, b.handle));
}

#[test]
fn fragments_count_as_frames() {
    let mut t = Table::new(FlowConfig::default());
    let k = key(C, 1, S, 2, ipproto::UDP);
    let a = t.track(&k, FlowContext::default(), ts(1), 0, 3, 3000, 0);
    let f = &t.get(a.handle).unwrap().flow;
    assert_eq!((f.packets(), f.bytes()), (3, 3000));
}

/// Connections that open and close (SYN, SYN-ACK, FIN both ways) faster
/// than the idle timeout: each leaves its idle deadline queued minutes
/// after it ended. The queue stays within twice the flows held plus the
/// allowance, and every connection still ends by its FIN, at its linger
/// deadline, as the same run without dropped deadlines would end it; the
/// room of the dropped deadlines is given back.
#[test]
fn closed_connections_do_not_fill_the_deadline_queue() {
    let cfg = FlowConfig {
        tcp_timeout: 300.0,
        tcp_close_timeout: 1.0,
        ..FlowConfig::default()
    };
    let mut t = Table::new(cfg);
    let n = 3 * STALE_DEADLINES as u64;
    let mut most = 0;
    let mut ended = 0;
    for i in 0..n {
        // 10,000 connections a second, 100 µs apart
        let at = Some(Timestamp(i as i64 * 100_000));
        let c = [10, 1, (i >> 8) as u8, i as u8];
        let k = key(c, 1024 + (i >> 16) as u16, S, 80, ipproto::TCP);
        for (dir, flags) in [
            (&k, tcp_flags::SYN),
            (&k.reversed(), tcp_flags::SYN | tcp_flags::ACK),
            (&k, tcp_flags::FIN | tcp_flags::ACK),
            (&k.reversed(), tcp_flags::FIN | tcp_flags::ACK),
        ] {
            t.track(dir, FlowContext::default(), at, i, 1, 60, flags);
        }
        for (e, reason) in t.take_ended() {
            assert_eq!(reason, EndReason::Fin);
            assert_eq!(e.flow.packets(), 4);
            ended += 1;
        }
        most = most.max(t.deadlines.len());
        assert!(t.deadlines.len() <= 2 * t.len() + STALE_DEADLINES + 1);
        // and their room is given back (141,000 at most here; 321,000 when
        // the lists kept it)
        assert!(
            t.deadlines.room() <= 2 * (2 * t.len() + STALE_DEADLINES) + 8192,
            "room for {} deadlines",
            t.deadlines.room()
        );
    }
    // every connection but the last second's ended, by its FIN
    assert!(ended >= n - 10_000, "{ended} of {n}");
    assert_eq!(t.stats().ended_fin, ended);
    // without dropping them, the idle deadlines of 300 s of connections
    // (all of them here) would be queued
    assert!(most < n as usize / 2, "{most} deadlines queued");
}

/// The index holds a key of two IPv4 addresses small and any other key as
/// it is: keys that differ in one field only (ports, protocol, VLAN, tunnel
/// depth or hash) are apart, a mixed or IPv6 key is found, a removed key
/// is gone.
#[test]
fn the_index_tells_apart_what_the_key_tells_apart() {
    let base = FlowKey {
        tuple: key(C, 1000, S, 53, ipproto::UDP),
        context: FlowContext::default(),
    };
    let changes: [fn(&mut FlowKey); 9] = [
        |k| k.tuple.src_port = 1001,
        |k| k.tuple.dst_port = 54,
        |k| k.tuple.proto = ipproto::TCP,
        |k| k.tuple.dst = IpAddr::from([10, 0, 0, 3]),
        |k| k.context.vlan = 7,
        |k| k.context.depth = 1,
        |k| k.context.tunnel = 0xdead_beef,
        |k| {
            k.tuple.src = "2001:db8::1".parse().unwrap();
            k.tuple.dst = "2001:db8::2".parse().unwrap();
        },
        |k| k.tuple.dst = "2001:db8::2".parse().unwrap(),
    ];
    let mut keys = vec![base];
    keys.extend(changes.iter().map(|change| {
        let mut k = base;
        change(&mut k);
        k
    }));
    let mut index = FlowIndex::default();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(index.get(k), None, "{i}");
        index.insert(*k, i as u32);
    }
    assert_eq!(index.len(), keys.len());
    assert_eq!((index.v4.len(), index.other.len()), (8, 2));
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(index.get(k), Some(i as u32), "{i}");
    }
    let mut slots: Vec<u32> = index.slots().collect();
    slots.sort_unstable();
    assert_eq!(slots, (0..keys.len() as u32).collect::<Vec<_>>());
    index.remove(&keys[5]);
    index.remove(&keys[8]);
    assert_eq!(index.get(&keys[5]), None);
    assert_eq!(index.get(&keys[8]), None);
    assert_eq!(index.get(&keys[0]), Some(0));
    assert_eq!(index.len(), keys.len() - 2);
}

/// A flow's table key is made from the flow: the same from either
/// direction's first packet, after a SYN-ACK turned the flow around, and a
/// flow whose 5-tuple was changed through `get_mut` still leaves the index
/// when it ends.
#[test]
fn a_flow_leaves_the_index_by_the_key_made_from_it() {
    let mut t = Table::new(FlowConfig::default());
    let udp = key(C, 5000, S, 53, ipproto::UDP);
    let a = track(&mut t, &udp.reversed(), 1, 0, 0);
    let tcp = key(C, 40000, S, 443, ipproto::TCP);
    // the SYN-ACK first: the flow is oriented from the SYN's sender
    let b = track(
        &mut t,
        &tcp.reversed(),
        1,
        1,
        tcp_flags::SYN | tcp_flags::ACK,
    );
    let other = key(C, 7, S, 7, ipproto::UDP);
    let c = track(&mut t, &other, 1, 2, 0);
    for (h, k) in [(a.handle, udp), (b.handle, tcp)] {
        let e = t.get(h).unwrap();
        assert_eq!(e.key().tuple, k.canonical());
        assert_eq!(e.key().context, FlowContext::default());
    }
    assert_eq!(t.get(b.handle).unwrap().flow.key, tcp);
    // changed where the table cannot see it
    t.get_mut(c.handle).unwrap().flow.key.src_port = 8;
    assert_eq!(t.map.len(), 3);
    // every flow ends by its idle timeout
    t.advance(Timestamp::from_secs_nanos(1000, 0));
    assert_eq!(t.take_ended().count(), 3);
    assert_eq!((t.len(), t.map.len()), (0, 0), "nothing left in the index");
    // the same keys make new flows
    assert!(track(&mut t, &other, 1001, 3, 0).created);
    assert!(track(&mut t, &udp, 1001, 4, 0).created);
}
