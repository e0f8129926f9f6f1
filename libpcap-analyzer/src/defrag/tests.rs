//! Tests of the defragmenter.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn key4(id: u32) -> FragmentKey {
    FragmentKey {
        src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        id,
        proto: 17,
        context: libpcap_tools::FlowContext::default(),
    }
}

fn key6(id: u32) -> FragmentKey {
    FragmentKey {
        src: IpAddr::V6(Ipv6Addr::LOCALHOST),
        dst: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        id,
        proto: 6,
        context: libpcap_tools::FlowContext {
            vlan: 7,
            ..Default::default()
        },
    }
}

fn frag(offset: u32, more: bool, payload: &[u8], ts: Option<i64>) -> FragmentInfo<'_> {
    FragmentInfo {
        offset_bytes: offset,
        more,
        payload,
        ts: ts.map(Timestamp),
        wire_len: payload.len() as u32 + 34,
        ip_truncated: false,
    }
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Splits `payload` into fragments of `size` bytes (multiple of 8).
fn split(payload: &[u8], size: usize) -> Vec<(u32, bool, Vec<u8>)> {
    let chunks: Vec<&[u8]> = payload.chunks(size).collect();
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| ((i * size) as u32, i + 1 < n, c.to_vec()))
        .collect()
}

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
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn shuffle<T>(v: &mut [T], rng: &mut XorShift) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i + 1);
        v.swap(i, j);
    }
}

/// Feeds fragments; returns the completed payload (asserting it completes
/// on the last fragment only).
fn feed(d: &mut Defragmenter, key: FragmentKey, frags: &[(u32, bool, Vec<u8>)]) -> Reassembled {
    let mut result = None;
    for (i, (off, more, p)) in frags.iter().enumerate() {
        match d.add(key, frag(*off, *more, p, Some(i as i64))) {
            DefragOutcome::Complete(r) => {
                assert_eq!(i + 1, frags.len(), "completed early");
                result = Some(r);
            }
            DefragOutcome::Pending => assert!(i + 1 < frags.len(), "not completed"),
            DefragOutcome::Failed(f) => panic!("failed: {f:?}"),
        }
    }
    result.expect("complete")
}

#[test]
fn in_order_ipv4_reassembles() {
    let mut d = Defragmenter::new(DefragConfig::default());
    let p = data(3000, 1);
    let r = feed(&mut d, key4(1), &split(&p, 1480));
    assert_eq!(r.payload, p);
    assert_eq!(r.frames, 3);
    assert_eq!(r.proto, 17);
    assert_eq!(r.first_ts, Some(Timestamp(0)));
    assert_eq!(r.last_ts, Some(Timestamp(2)));
    assert_eq!(d.pending(), 0);
    assert_eq!(d.stats().bytes_pending, 0);
    assert_eq!(d.stats().datagrams_completed, 1);
}

#[test]
fn reverse_order_ipv6_reassembles_last_first() {
    let mut d = Defragmenter::new(DefragConfig::default());
    let p = data(5000, 2);
    let mut f = split(&p, 1232);
    f.reverse();
    let r = feed(&mut d, key6(9), &f);
    assert_eq!(r.payload, p);
    assert_eq!(r.proto, 6);
}

#[test]
fn random_permutations_reassemble_exactly() {
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    for round in 0..200u32 {
        let mut d = Defragmenter::new(DefragConfig::default());
        let len = 1 + rng.below(60_000);
        let size = 8 * (30 + rng.below(200)); // at most 250 fragments
        let p = data(len, round as u8);
        let mut f = split(&p, size);
        shuffle(&mut f, &mut rng);
        let key = if round % 2 == 0 {
            key4(round)
        } else {
            key6(round)
        };
        let r = feed(&mut d, key, &f);
        assert_eq!(r.payload, p, "round {round}");
        assert_eq!(r.frames as usize, f.len());
        assert_eq!(d.stats().bytes_pending, 0);
    }
}

#[test]
fn duplicates_are_not_overlaps_under_any_policy() {
    for policy in [
        OverlapPolicy::First,
        OverlapPolicy::Last,
        OverlapPolicy::DropDatagram,
    ] {
        let mut d = Defragmenter::new(DefragConfig {
            policy,
            ..DefragConfig::default()
        });
        let p = data(24, 3);
        let k = key4(5);
        assert_eq!(
            d.add(k, frag(0, true, &p[..16], None)),
            DefragOutcome::Pending
        );
        assert_eq!(
            d.add(k, frag(0, true, &p[..16], None)),
            DefragOutcome::Pending
        );
        let DefragOutcome::Complete(r) = d.add(k, frag(16, false, &p[16..], None)) else {
            panic!("not complete under {policy:?}");
        };
        assert_eq!(r.payload, p);
        assert_eq!(r.frames, 3);
        assert_eq!(d.stats().duplicates, 1);
        assert_eq!(d.stats().overlaps_seen, 0);
    }
}

/// Held: 0..16 = 'A'; new: 8..24 = 'B' (conflicting on 8..16); then 24..32
/// last = 'C'.
fn overlap_case(policy: OverlapPolicy) -> (Defragmenter, Vec<DefragOutcome>) {
    let mut d = Defragmenter::new(DefragConfig {
        policy,
        ..DefragConfig::default()
    });
    let k = key4(77);
    let out = vec![
        d.add(k, frag(0, true, &[b'A'; 16], Some(1))),
        d.add(k, frag(8, true, &[b'B'; 16], Some(2))),
        d.add(k, frag(24, false, &[b'C'; 8], Some(3))),
    ];
    (d, out)
}

#[test]
fn overlap_first_keeps_old_bytes() {
    let (d, out) = overlap_case(OverlapPolicy::First);
    let DefragOutcome::Complete(r) = &out[2] else {
        panic!("{out:?}")
    };
    let mut want = vec![b'A'; 16];
    want.extend_from_slice(&[b'B'; 8]);
    want.extend_from_slice(&[b'C'; 8]);
    assert_eq!(r.payload, want);
    assert_eq!(d.stats().overlaps_seen, 1);
    assert_eq!(d.stats().conflicting_overlaps, 1);
}

#[test]
fn overlap_last_keeps_new_bytes() {
    let (_, out) = overlap_case(OverlapPolicy::Last);
    let DefragOutcome::Complete(r) = &out[2] else {
        panic!("{out:?}")
    };
    let mut want = vec![b'A'; 8];
    want.extend_from_slice(&[b'B'; 16]);
    want.extend_from_slice(&[b'C'; 8]);
    assert_eq!(r.payload, want);
}

#[test]
fn overlap_last_inner_replacement() {
    let mut d = Defragmenter::new(DefragConfig {
        policy: OverlapPolicy::Last,
        ..DefragConfig::default()
    });
    let k = key4(2);
    assert_eq!(
        d.add(k, frag(8, true, &[b'A'; 32], None)),
        DefragOutcome::Pending
    );
    assert_eq!(
        d.add(k, frag(16, true, &[b'B'; 8], None)),
        DefragOutcome::Pending
    );
    assert_eq!(
        d.add(k, frag(40, false, &[b'C'; 4], None)),
        DefragOutcome::Pending
    );
    let DefragOutcome::Complete(r) = d.add(k, frag(0, true, &[b'Z'; 8], None)) else {
        panic!()
    };
    let mut want = vec![b'Z'; 8];
    want.extend_from_slice(&[b'A'; 8]);
    want.extend_from_slice(&[b'B'; 8]);
    want.extend_from_slice(&[b'A'; 16]);
    want.extend_from_slice(&[b'C'; 4]);
    assert_eq!(r.payload, want);
    assert_eq!(d.stats().bytes_pending, 0);
}

#[test]
fn overlap_first_fills_several_holes() {
    let mut d = Defragmenter::new(DefragConfig::default());
    let k = key6(3);
    assert_eq!(
        d.add(k, frag(8, true, &[b'A'; 8], None)),
        DefragOutcome::Pending
    );
    assert_eq!(
        d.add(k, frag(24, true, &[b'A'; 8], None)),
        DefragOutcome::Pending
    );
    let DefragOutcome::Complete(r) = d.add(k, frag(0, false, &[b'B'; 40], Some(5))) else {
        panic!("atomic fragment must complete")
    };
    // Atomic fragments are processed in isolation.
    assert_eq!(r.payload, vec![b'B'; 40]);
    assert_eq!(d.pending(), 1);
    assert_eq!(
        d.add(k, frag(0, true, &[b'B'; 40], None)),
        DefragOutcome::Pending
    );
    let DefragOutcome::Complete(r) = d.add(k, frag(40, false, &[b'C'; 3], None)) else {
        panic!()
    };
    let mut want = vec![b'B'; 8];
    want.extend_from_slice(&[b'A'; 8]);
    want.extend_from_slice(&[b'B'; 8]);
    want.extend_from_slice(&[b'A'; 8]);
    want.extend_from_slice(&[b'B'; 8]);
    want.extend_from_slice(&[b'C'; 3]);
    assert_eq!(r.payload, want);
    assert_eq!(d.stats().conflicting_overlaps, 1);
}

#[test]
fn overlap_drop_datagram_fails_and_tombstones() {
    let (d, out) = overlap_case(OverlapPolicy::DropDatagram);
    assert_eq!(out[0], DefragOutcome::Pending);
    let DefragOutcome::Failed(f) = &out[1] else {
        panic!("{out:?}")
    };
    assert_eq!(f.reason, FailureReason::ConflictingOverlap);
    assert_eq!(f.frames, 2);
    assert_eq!(f.first_fragment.as_deref(), Some(&[b'A'; 16][..]));
    // The straggler is reported on its own, with the head of the failed
    // datagram's first fragment, so that it still counts for its connection.
    let DefragOutcome::Failed(s) = &out[2] else {
        panic!("{out:?}")
    };
    assert_eq!(s.reason, FailureReason::ConflictingOverlap);
    assert_eq!(s.frames, 1);
    assert_eq!(s.first_fragment.as_deref(), Some(&[b'A'; 16][..]));
    assert_eq!(d.stats().failures.conflicting_overlap, 1);
    assert_eq!(d.stats().stragglers, 1);
    assert_eq!(d.pending(), 0);
    assert_eq!(d.stats().bytes_pending, 0);
}

#[test]
fn overlap_drop_datagram_identical_bytes_is_overlap() {
    let mut d = Defragmenter::new(DefragConfig {
        policy: OverlapPolicy::DropDatagram,
        ..DefragConfig::default()
    });
    let p = data(32, 9);
    let k = key6(4);
    assert_eq!(
        d.add(k, frag(0, true, &p[..16], None)),
        DefragOutcome::Pending
    );
    let DefragOutcome::Failed(f) = d.add(k, frag(8, true, &p[8..24], None)) else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::Overlap);
    // Tombstones leave at drain without a report.
    assert!(d.drain().is_empty());
}

#[test]
fn atomic_fragment_completes_at_once() {
    let mut d = Defragmenter::new(DefragConfig::default());
    let DefragOutcome::Complete(r) = d.add(key4(1), frag(0, false, b"hello", Some(3))) else {
        panic!()
    };
    assert_eq!(r.payload, b"hello");
    assert_eq!(r.frames, 1);
    assert_eq!(d.pending(), 0);
    assert_eq!(d.stats().atomic_fragments, 1);
}

#[test]
fn zero_length_fragments_are_harmless() {
    let mut d = Defragmenter::new(DefragConfig::default());
    let k = key4(8);
    assert_eq!(
        d.add(k, frag(0, true, &[1; 8], None)),
        DefragOutcome::Pending
    );
    assert_eq!(d.add(k, frag(8, true, &[], None)), DefragOutcome::Pending);
    let DefragOutcome::Complete(r) = d.add(k, frag(8, false, &[], None)) else {
        panic!()
    };
    assert_eq!(r.payload, vec![1; 8]);
    assert_eq!(r.frames, 3);
}

#[test]
fn non_last_not_multiple_of_8_is_inconsistent() {
    let mut d = Defragmenter::new(DefragConfig::default());
    let DefragOutcome::Failed(f) = d.add(key4(1), frag(0, true, &[0; 10], None)) else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::InconsistentLength);
    assert_eq!(f.first_fragment, Some(vec![0; 10]));
}

#[test]
fn second_different_last_is_inconsistent() {
    let mut d = Defragmenter::new(DefragConfig::default());
    let k = key4(1);
    assert_eq!(
        d.add(k, frag(16, false, &[0; 8], None)),
        DefragOutcome::Pending
    );
    let DefragOutcome::Failed(f) = d.add(k, frag(32, false, &[0; 8], None)) else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::InconsistentLength);
    assert_eq!(f.frames, 2);
    // Data beyond a known end.
    let k = key4(2);
    assert_eq!(
        d.add(k, frag(16, false, &[0; 8], None)),
        DefragOutcome::Pending
    );
    let DefragOutcome::Failed(f) = d.add(k, frag(24, true, &[0; 8], None)) else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::InconsistentLength);
}

#[test]
fn too_large_fails() {
    let mut d = Defragmenter::new(DefragConfig::default());
    // Ping of death: offset 65528 + 8 bytes.
    let DefragOutcome::Failed(f) = d.add(key4(1), frag(65_528, false, &[0; 8], None)) else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::TooLarge);
    // IPv6 allows up to 65527.
    let k = key6(1);
    assert_eq!(
        d.add(k, frag(65_520, false, &[0; 7], None)),
        DefragOutcome::Pending
    );
    let DefragOutcome::Failed(f) = d.add(key6(2), frag(65_520, false, &[0; 8], None)) else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::TooLarge);
    // Huge offsets do not overflow.
    let DefragOutcome::Failed(f) = d.add(key4(3), frag(u32::MAX, true, &[0; 8], None)) else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::TooLarge);
}

#[test]
fn truncated_fragment_fails() {
    let mut d = Defragmenter::new(DefragConfig::default());
    let k = key4(1);
    assert_eq!(
        d.add(k, frag(0, true, &[0; 8], None)),
        DefragOutcome::Pending
    );
    let mut f = frag(8, false, &[0; 4], None);
    f.ip_truncated = true;
    let DefragOutcome::Failed(f) = d.add(k, f) else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::TruncatedFragment);
    assert_eq!(f.frames, 2);
}

#[test]
fn too_many_fragments_fails() {
    let mut d = Defragmenter::new(DefragConfig {
        max_fragments_per_datagram: 3,
        ..DefragConfig::default()
    });
    let k = key4(1);
    for i in 0..3 {
        assert_eq!(
            d.add(k, frag(i * 8, true, &[0; 8], None)),
            DefragOutcome::Pending
        );
    }
    let DefragOutcome::Failed(f) = d.add(k, frag(24, true, &[0; 8], None)) else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::TooManyFragments);
    assert_eq!(f.frames, 4);
    assert_eq!(f.first_fragment, Some(vec![0; 24]));
}

#[test]
fn expire_times_out_by_first_fragment() {
    let cfg = DefragConfig {
        timeout_ns: 100,
        ..DefragConfig::default()
    };
    let mut d = Defragmenter::new(cfg);
    assert_eq!(
        d.add(key4(1), frag(8, true, &[0; 8], Some(10))),
        DefragOutcome::Pending
    );
    assert_eq!(
        d.add(key4(2), frag(8, true, &[0; 8], Some(50))),
        DefragOutcome::Pending
    );
    assert_eq!(
        d.add(key4(1), frag(16, true, &[0; 8], Some(90))),
        DefragOutcome::Pending
    );
    // No timestamp: never expires by time.
    assert_eq!(
        d.add(key4(3), frag(8, true, &[0; 8], None)),
        DefragOutcome::Pending
    );
    assert!(d.expire(Timestamp(109)).is_empty());
    let e = d.expire(Timestamp(110));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].key, key4(1));
    assert_eq!(e[0].reason, FailureReason::Timeout);
    assert_eq!(e[0].frames, 2);
    assert_eq!(e[0].first_ts, Some(Timestamp(10)));
    assert_eq!(e[0].last_ts, Some(Timestamp(90)));
    let e = d.expire(Timestamp(1_000_000));
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].key, key4(2));
    assert_eq!(d.pending(), 1);
    let rest = d.drain();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].reason, FailureReason::EndOfInput);
    assert_eq!(d.stats().failures.timeout, 2);
    assert_eq!(d.stats().failures.end_of_input, 1);
    assert_eq!(d.stats().datagrams_pending, 0);
    assert_eq!(d.stats().bytes_pending, 0);
}

#[test]
fn late_fragment_after_timeout_starts_afresh() {
    let mut d = Defragmenter::new(DefragConfig {
        timeout_ns: 100,
        ..DefragConfig::default()
    });
    let k = key4(1);
    assert_eq!(
        d.add(k, frag(0, true, &[1; 8], Some(0))),
        DefragOutcome::Pending
    );
    assert_eq!(
        d.add(k, frag(8, false, &[2; 8], Some(500))),
        DefragOutcome::Pending
    );
    let ev = d.take_evicted();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].reason, FailureReason::Timeout);
    assert_eq!(ev[0].first_fragment, Some(vec![1; 8]));
    assert_eq!(d.pending(), 1);
}

#[test]
fn max_datagrams_evicts_oldest() {
    let mut d = Defragmenter::new(DefragConfig {
        max_datagrams: 2,
        ..DefragConfig::default()
    });
    for id in 0..4 {
        assert_eq!(
            d.add(key4(id), frag(8, true, &[0; 8], None)),
            DefragOutcome::Pending
        );
    }
    let ev = d.take_evicted();
    assert_eq!(ev.iter().map(|f| f.key.id).collect::<Vec<_>>(), vec![0, 1]);
    assert!(
        ev.iter()
            .all(|f| f.reason == FailureReason::TooManyDatagrams)
    );
    assert_eq!(d.pending(), 2);
    assert_eq!(d.stats().failures.too_many_datagrams, 2);
    assert!(d.take_evicted().is_empty());
}

#[test]
fn max_bytes_evicts_oldest_then_refuses() {
    let mut d = Defragmenter::new(DefragConfig {
        max_bytes: 2 * (16 + PIECE_OVERHEAD),
        ..DefragConfig::default()
    });
    assert_eq!(
        d.add(key4(1), frag(8, true, &[0; 16], None)),
        DefragOutcome::Pending
    );
    assert_eq!(
        d.add(key4(2), frag(8, true, &[0; 16], None)),
        DefragOutcome::Pending
    );
    assert!(d.take_evicted().is_empty());
    assert_eq!(
        d.add(key4(3), frag(8, true, &[0; 8], None)),
        DefragOutcome::Pending
    );
    let ev = d.take_evicted();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].key.id, 1);
    assert_eq!(ev[0].reason, FailureReason::TooManyBytes);
    assert_eq!(d.stats().bytes_pending as usize, 24 + 2 * PIECE_OVERHEAD);
    // Larger than the cap on its own: refused after evicting all others.
    let DefragOutcome::Failed(f) = d.add(key4(4), frag(8, true, &[0; 200], None)) else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::TooManyBytes);
    assert_eq!(d.take_evicted().len(), 2);
    assert_eq!(d.stats().bytes_pending, 0);
}

#[test]
fn tiny_fragments_are_bounded_by_overhead() {
    let cap = 10 * (8 + PIECE_OVERHEAD);
    let mut d = Defragmenter::new(DefragConfig {
        max_bytes: cap,
        ..DefragConfig::default()
    });
    // Every other 8-byte block of one datagram: pieces never merge.
    let mut failed = false;
    for i in 0..20u32 {
        match d.add(key4(1), frag(16 * i + 8, true, &[1; 8], None)) {
            DefragOutcome::Pending => assert!(d.bytes_pending() <= cap),
            DefragOutcome::Failed(f) => {
                assert_eq!(f.reason, FailureReason::TooManyBytes);
                assert_eq!(f.frames, 11);
                failed = true;
                break;
            }
            DefragOutcome::Complete(_) => panic!(),
        }
    }
    assert!(failed);
    assert_eq!(d.bytes_pending(), 0);
}

#[test]
fn zero_max_datagrams_holds_nothing() {
    let mut d = Defragmenter::new(DefragConfig {
        max_datagrams: 0,
        ..DefragConfig::default()
    });
    let DefragOutcome::Failed(f) = d.add(key4(1), frag(8, true, &[0; 8], None)) else {
        panic!()
    };
    assert_eq!(f.reason, FailureReason::TooManyDatagrams);
    assert_eq!(d.pending(), 0);
}

#[test]
fn drain_reports_everything_pending() {
    let mut d = Defragmenter::new(DefragConfig::default());
    assert_eq!(
        d.add(key4(1), frag(0, true, &[5; 8], None)),
        DefragOutcome::Pending
    );
    assert_eq!(
        d.add(key6(1), frag(8, true, &[6; 8], Some(4))),
        DefragOutcome::Pending
    );
    let all = d.drain();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].first_fragment, Some(vec![5; 8]));
    assert_eq!(all[1].first_fragment, None);
    assert!(all.iter().all(|f| f.reason == FailureReason::EndOfInput));
    assert_eq!(d.pending(), 0);
    assert!(d.drain().is_empty());
}

#[test]
fn context_separates_datagrams() {
    let mut d = Defragmenter::new(DefragConfig::default());
    let mut k2 = key4(1);
    k2.context = libpcap_tools::FlowContext {
        vlan: 99,
        ..Default::default()
    };
    assert_eq!(
        d.add(key4(1), frag(0, true, &[1; 8], None)),
        DefragOutcome::Pending
    );
    assert_eq!(
        d.add(k2, frag(8, false, &[2; 8], None)),
        DefragOutcome::Pending
    );
    assert_eq!(d.pending(), 2);
}

#[test]
fn config_deserializes_with_defaults() {
    let cfg: DefragConfig = toml::from_str("policy = \"drop-datagram\"").unwrap();
    assert_eq!(cfg.policy, OverlapPolicy::DropDatagram);
    assert_eq!(cfg.max_datagrams, 10_000);
}

/// Random permutations with duplicates and identical overlapping
/// re-fragmentation give the exact payload under every policy (only exact
/// duplicates under `DropDatagram`).
#[test]
fn random_duplicates_and_identical_overlaps_reassemble() {
    let mut rng = XorShift(0x0bad_cafe_1234_5678);
    for round in 0..150u32 {
        let policy = [
            OverlapPolicy::First,
            OverlapPolicy::Last,
            OverlapPolicy::DropDatagram,
        ][round as usize % 3];
        let mut d = Defragmenter::new(DefragConfig {
            policy,
            ..DefragConfig::default()
        });
        let len = 1 + rng.below(20_000);
        let p = data(len, round as u8);
        let mut f = split(&p, 8 * (20 + rng.below(100)));
        let n = f.len();
        for _ in 0..rng.below(n + 1) {
            let dup = f[rng.below(n)].clone();
            f.push(dup);
        }
        if policy != OverlapPolicy::DropDatagram {
            // Other cuts of the same bytes, not covering the end.
            for _ in 0..rng.below(4) {
                let a = 8 * rng.below(len / 8 + 1);
                let b = (a + 8 * (1 + rng.below(300))).min(len / 8 * 8);
                if a < b {
                    f.push((a as u32, true, p[a..b].to_vec()));
                }
            }
        }
        shuffle(&mut f, &mut rng);
        let key = if round % 2 == 0 {
            key4(round)
        } else {
            key6(round)
        };
        // Completion may come before the last duplicates: later ones start a
        // new datagram that is drained.
        let mut got = None;
        let mut frames = 0u64;
        for (off, more, b) in &f {
            match d.add(key, frag(*off, *more, b, None)) {
                DefragOutcome::Complete(r) => {
                    frames += u64::from(r.frames);
                    if got.is_none() {
                        got = Some(r.payload);
                    }
                }
                DefragOutcome::Pending => {}
                DefragOutcome::Failed(e) => panic!("round {round} {policy:?}: {e:?}"),
            }
        }
        assert_eq!(got.as_deref(), Some(&p[..]), "round {round} {policy:?}");
        assert_eq!(d.stats().conflicting_overlaps, 0);
        for e in d.drain() {
            frames += u64::from(e.frames);
        }
        assert_eq!(frames, f.len() as u64);
    }
}

/// Random garbage fragments with small caps: no panic, caps hold, and every
/// frame is reported exactly once.
#[test]
fn random_fragments_respect_caps_and_account_every_frame() {
    let mut rng = XorShift(0x5555_aaaa_1234_4321);
    for policy in [
        OverlapPolicy::First,
        OverlapPolicy::Last,
        OverlapPolicy::DropDatagram,
    ] {
        let cfg = DefragConfig {
            timeout_ns: 1_000,
            max_datagrams: 8,
            max_bytes: 4_000,
            max_fragments_per_datagram: 12,
            policy,
        };
        let mut d = Defragmenter::new(cfg.clone());
        let mut reported = 0u64;
        let mut added = 0u64;
        let buf = data(2_000, 7);
        for i in 0..20_000u64 {
            let key = if rng.below(2) == 0 {
                key4(rng.below(12) as u32)
            } else {
                key6(rng.below(12) as u32)
            };
            let off = match rng.below(4) {
                0 => 0,
                1 => rng.below(70_000) as u32,
                _ => 8 * rng.below(200) as u32,
            };
            let len = match rng.below(3) {
                0 => 8 * rng.below(100),
                1 => rng.below(2_000),
                _ => 0,
            };
            let ts = (rng.below(5) != 0).then_some(i as i64);
            let mut fi = frag(off, rng.below(3) != 0, &buf[..len], ts);
            fi.ip_truncated = rng.below(50) == 0;
            added += 1;
            match d.add(key, fi) {
                DefragOutcome::Complete(r) => reported += u64::from(r.frames),
                DefragOutcome::Failed(f) => reported += u64::from(f.frames),
                DefragOutcome::Pending => {}
            }
            for f in d.take_evicted() {
                reported += u64::from(f.frames);
            }
            if i % 64 == 0 {
                for f in d.expire(Timestamp(i as i64)) {
                    reported += u64::from(f.frames);
                }
            }
            assert!(d.bytes_pending() <= cfg.max_bytes);
            assert!(d.pending() <= cfg.max_datagrams);
            assert_eq!(d.stats().bytes_pending as usize, d.bytes_pending());
        }
        for f in d.drain() {
            reported += u64::from(f.frames);
        }
        assert_eq!(reported, added, "{policy:?}");
        assert_eq!(d.stats().fragments, added);
        assert_eq!(d.bytes_pending(), 0);
        assert_eq!(d.pending(), 0);
    }
}

#[test]
fn failure_anomaly_names_follow_the_serialised_reasons() {
    // `defrag_` and the reason as written in the JSON outputs, in snake case
    for r in FailureReason::ALL {
        let json = serde_json::to_string(&r).unwrap();
        let want = format!("defrag_{}", json.trim_matches('"').replace('-', "_"));
        assert_eq!(r.anomaly(), want);
    }
    assert_eq!(
        FailureReason::TooManyFragments.anomaly(),
        "defrag_too_many_fragments"
    );
}
