//! Tests of TCP stream reassembly.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Data(u64, Vec<u8>),
    Gap(u64, u64),
}

/// A direction plus what it delivered.
struct Harness {
    dir: TcpStreamDirection,
    cfg: StreamConfig,
    budget: StreamBudget,
    events: Vec<Ev>,
}

impl Harness {
    fn new(cfg: StreamConfig) -> Self {
        let budget = StreamBudget::from_config(&cfg);
        Harness {
            dir: TcpStreamDirection::new(),
            cfg,
            budget,
            events: Vec::new(),
        }
    }

    fn seg(&mut self, seq: u32, flags: &str, data: &[u8]) {
        let events = &mut self.events;
        let mut sink = |e: StreamEvent<'_>| events.push(own(e));
        self.dir.segment(
            seq,
            flags.contains('S'),
            flags.contains('F'),
            flags.contains('R'),
            data,
            &self.cfg,
            &mut self.budget,
            &mut sink,
        );
        assert_eq!(self.budget.used(), self.dir.charged_bytes());
    }

    fn flush(&mut self) {
        let events = &mut self.events;
        let mut sink = |e: StreamEvent<'_>| events.push(own(e));
        self.dir.flush(&mut self.budget, &mut sink);
    }

    /// Delivered bytes, asserting the events are contiguous from 0 and gaps
    /// are filled with nothing.
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut next = 0u64;
        for e in &self.events {
            match e {
                Ev::Data(off, d) => {
                    assert_eq!(*off, next, "events not contiguous: {:?}", self.events);
                    assert!(!d.is_empty());
                    out.extend_from_slice(d);
                    next += d.len() as u64;
                }
                Ev::Gap(off, len) => {
                    assert_eq!(*off, next);
                    assert!(*len > 0);
                    next += len;
                }
            }
        }
        out
    }

    fn gaps(&self) -> Vec<(u64, u64)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Ev::Gap(o, l) => Some((*o, *l)),
                Ev::Data(..) => None,
            })
            .collect()
    }
}

fn own(e: StreamEvent<'_>) -> Ev {
    match e {
        StreamEvent::Data { data, offset } => Ev::Data(offset, data.to_vec()),
        StreamEvent::Gap { offset, len } => Ev::Gap(offset, len),
    }
}

fn stream(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| ((i * 7 + i / 251) as u8).wrapping_add(seed))
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

/// Cuts `s` into (offset, bytes) segments of 1..=max bytes.
fn cut(s: &[u8], max: usize, rng: &mut XorShift) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let n = (1 + rng.below(max)).min(s.len() - i);
        out.push((i, s[i..i + n].to_vec()));
        i += n;
    }
    out
}

#[test]
fn in_order_is_zero_copy_and_complete() {
    let mut h = Harness::new(StreamConfig::default());
    let s = stream(3000, 1);
    h.seg(1000, "S", &[]);
    let mut seq = 1001u32;
    for chunk in s.chunks(1000) {
        let ptr = chunk.as_ptr();
        let mut seen = None;
        h.dir.segment(
            seq,
            false,
            false,
            false,
            chunk,
            &h.cfg,
            &mut h.budget,
            &mut |e: StreamEvent<'_>| {
                if let StreamEvent::Data { data, .. } = e {
                    seen = Some(data.as_ptr());
                }
                h.events.push(own(e));
            },
        );
        assert_eq!(seen, Some(ptr), "in-order data must not be copied");
        seq = seq.wrapping_add(chunk.len() as u32);
    }
    assert_eq!(h.bytes(), s);
    assert_eq!(h.dir.buffered_bytes(), 0);
    assert_eq!(h.dir.stats().bytes_delivered, 3000);
    assert_eq!(h.dir.stats().segments, 4);
}

#[test]
fn out_of_order_permutations_reassemble() {
    let s = stream(500, 2);
    let segs: Vec<(usize, &[u8])> = s
        .chunks(100)
        .enumerate()
        .map(|(i, c)| (i * 100, c))
        .collect();
    // All 120 permutations of 5 segments.
    let mut idx = [0usize, 1, 2, 3, 4];
    let mut count = 0;
    permute(&mut idx, 0, &mut |order| {
        let mut h = Harness::new(StreamConfig::default());
        h.seg(41, "S", &[]);
        for &i in order {
            let (off, d) = segs[i];
            h.seg(42 + off as u32, "", d);
        }
        assert_eq!(h.bytes(), s, "order {order:?}");
        assert_eq!(h.dir.buffered_bytes(), 0);
        assert_eq!(h.budget.used(), 0);
        count += 1;
    });
    assert_eq!(count, 120);
}

fn permute(v: &mut [usize; 5], k: usize, f: &mut dyn FnMut(&[usize])) {
    if k == v.len() {
        f(v);
        return;
    }
    for i in k..v.len() {
        v.swap(k, i);
        permute(v, k + 1, f);
        v.swap(k, i);
    }
}

#[test]
fn retransmission_is_dropped_and_counted() {
    let mut h = Harness::new(StreamConfig::default());
    h.seg(0, "S", &[]);
    h.seg(1, "", b"hello ");
    h.seg(1, "", b"hello ");
    h.seg(4, "", b"lo world");
    assert_eq!(h.bytes(), b"hello world");
    assert_eq!(h.dir.stats().retransmitted_bytes, 6 + 3);
}

#[test]
fn overlaps_first_received_wins() {
    let mut h = Harness::new(StreamConfig::default());
    h.seg(99, "S", &[]);
    // offset 10..20 buffered as 'A', then 5..15 as 'B', then 15..25 'C'.
    h.seg(110, "", &[b'A'; 10]);
    h.seg(105, "", &[b'B'; 10]);
    h.seg(115, "", &[b'C'; 10]);
    assert!(h.events.is_empty());
    // In order 0..12 'D': the buffered bytes from 5 on win.
    h.seg(100, "", &[b'D'; 12]);
    let mut want = vec![b'D'; 5];
    want.extend_from_slice(&[b'B'; 5]);
    want.extend_from_slice(&[b'A'; 10]);
    want.extend_from_slice(&[b'C'; 5]);
    assert_eq!(h.bytes(), want);
    let st = h.dir.stats();
    // 'B' vs 'A' 5, 'C' vs 'A' 5, 'D' vs 'B' 5 + 'D' vs 'A' 2.
    assert_eq!(st.overlap_bytes, 17);
    assert_eq!(st.conflicting_overlap_bytes, 17);
    assert_eq!(h.budget.used(), 0);
}

#[test]
fn identical_overlaps_are_not_conflicting() {
    let s = stream(100, 3);
    let mut h = Harness::new(StreamConfig::default());
    h.seg(0, "S", &[]);
    h.seg(21, "", &s[20..60]);
    h.seg(11, "", &s[10..50]);
    h.seg(1, "", &s[..30]);
    assert_eq!(h.bytes(), &s[..60]);
    assert_eq!(h.dir.stats().conflicting_overlap_bytes, 0);
    assert!(h.dir.stats().overlap_bytes > 0);
}

#[test]
fn cap_exceeded_skips_forward_with_gap() {
    let cfg = StreamConfig {
        max_buffered_per_direction: 3 * (100 + SEGMENT_OVERHEAD),
        ..StreamConfig::default()
    };
    let mut h = Harness::new(cfg);
    let s = stream(1000, 4);
    h.seg(0, "S", &[]);
    // Segment 0 (bytes 0..100) is lost; 1..=3 fit, 4 does not.
    for i in 1..=3 {
        h.seg(
            1 + i * 100,
            "",
            &s[i as usize * 100..(i as usize + 1) * 100],
        );
    }
    assert_eq!(h.dir.buffered_bytes(), 300);
    assert!(h.events.is_empty());
    h.seg(401, "", &s[400..500]);
    assert_eq!(h.gaps(), vec![(0, 100)]);
    assert_eq!(h.bytes(), &s[100..500]);
    assert_eq!(h.dir.stats().dropped_over_cap, 1);
    assert_eq!(h.dir.stats().gap_bytes, 100);
    assert_eq!(h.budget.used(), 0);
    // A late copy of the lost bytes is a retransmission now.
    h.seg(1, "", &s[..100]);
    assert_eq!(h.dir.stats().retransmitted_bytes, 100);
}

#[test]
fn global_budget_is_shared_and_forces_skip() {
    let cfg = StreamConfig::default();
    let mut budget = StreamBudget::new(150 + SEGMENT_OVERHEAD);
    let mut a = TcpStreamDirection::new();
    let mut b = TcpStreamDirection::new();
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    a.segment(0, true, false, false, &[], &cfg, &mut budget, &mut |_| {});
    b.segment(0, true, false, false, &[], &cfg, &mut budget, &mut |_| {});
    a.segment(
        11,
        false,
        false,
        false,
        &[1; 100],
        &cfg,
        &mut budget,
        &mut |e| got_a.push(own(e)),
    );
    assert_eq!(budget.used(), 100 + SEGMENT_OVERHEAD);
    // b cannot buffer: skips to its own segment.
    b.segment(
        21,
        false,
        false,
        false,
        &[2; 100],
        &cfg,
        &mut budget,
        &mut |e| got_b.push(own(e)),
    );
    assert_eq!(got_b, vec![Ev::Gap(0, 20), Ev::Data(20, vec![2; 100])]);
    assert_eq!(b.stats().dropped_over_cap, 1);
    a.flush(&mut budget, &mut |e| got_a.push(own(e)));
    assert_eq!(got_a, vec![Ev::Gap(0, 10), Ev::Data(10, vec![1; 100])]);
    assert_eq!(budget.used(), 0);
}

#[test]
fn tiny_segments_are_bounded_by_overhead() {
    let cfg = StreamConfig {
        max_buffered_per_direction: 10 * (1 + SEGMENT_OVERHEAD),
        ..StreamConfig::default()
    };
    let mut h = Harness::new(cfg);
    h.seg(0, "S", &[]);
    // Every other byte: never contiguous.
    for i in 0..1000u32 {
        h.seg(2 + 2 * i, "", &[i as u8]);
        assert!(h.dir.charged_bytes() <= 10 * (1 + SEGMENT_OVERHEAD));
    }
    h.flush();
    let _ = h.bytes();
    assert_eq!(h.budget.used(), 0);
}

#[test]
fn sequence_wraparound() {
    let s = stream(4000, 5);
    let isn = u32::MAX - 1500;
    let mut h = Harness::new(StreamConfig::default());
    h.seg(isn, "S", &[]);
    let segs: Vec<(usize, &[u8])> = s
        .chunks(700)
        .enumerate()
        .map(|(i, c)| (i * 700, c))
        .collect();
    for &i in &[1usize, 0, 3, 2, 5, 4] {
        let (off, d) = segs[i];
        h.seg(isn.wrapping_add(1).wrapping_add(off as u32), "", d);
    }
    assert_eq!(h.bytes(), s);
    // Offsets keep growing past 2^32 in a long stream.
    let mut h = Harness::new(StreamConfig::default());
    h.seg(7, "", b"x");
    let chunk = vec![0u8; 1 << 16];
    let mut seq = 8u32;
    for _ in 0..(1 << 16) + 2 {
        h.dir.segment(
            seq,
            false,
            false,
            false,
            &chunk,
            &h.cfg,
            &mut h.budget,
            &mut |_| {},
        );
        seq = seq.wrapping_add(chunk.len() as u32);
    }
    assert_eq!(h.dir.next_offset(), 1 + ((1u64 << 16) + 2) * (1 << 16));
    h.seg(seq, "", b"end");
    assert_eq!(
        h.events.last(),
        Some(&Ev::Data(h.dir.next_offset() - 3, b"end".to_vec()))
    );
}

#[test]
fn mid_stream_start_without_syn() {
    let mut h = Harness::new(StreamConfig::default());
    h.seg(5_000_000, "", b"middle");
    h.seg(5_000_006, "", b" end");
    assert_eq!(h.bytes(), b"middle end");
    assert_eq!(h.dir.base_seq(), Some(5_000_000));
    // Earlier bytes are before the start.
    h.seg(4_999_990, "", &[0; 12]);
    assert_eq!(h.dir.stats().retransmitted_bytes, 12);
    assert_eq!(h.bytes(), b"middle end");
}

#[test]
fn syn_with_data_starts_after_syn() {
    let mut h = Harness::new(StreamConfig::default());
    h.seg(10, "S", b"tfo");
    h.seg(14, "", b"!");
    assert_eq!(h.bytes(), b"tfo!");
}

#[test]
fn fin_closes_once_in_order() {
    let mut h = Harness::new(StreamConfig::default());
    h.seg(0, "S", &[]);
    h.seg(6, "F", b"world");
    assert!(!h.dir.is_closed());
    h.seg(1, "", b"hello");
    assert!(h.dir.is_closed());
    assert_eq!(h.bytes(), b"helloworld");
    // Retransmitted FIN and data after the FIN.
    h.seg(6, "F", b"world");
    h.seg(11, "", b"more");
    assert_eq!(h.bytes(), b"helloworld");
    assert_eq!(h.dir.stats().data_after_close_bytes, 4);
}

#[test]
fn fin_trims_buffered_data_past_it() {
    let mut h = Harness::new(StreamConfig::default());
    h.seg(0, "S", &[]);
    h.seg(5, "", b"efgh");
    h.seg(11, "", b"kl");
    h.seg(1, "F", b"abcdef");
    assert!(h.dir.is_closed());
    assert_eq!(h.bytes(), b"abcdef");
    assert_eq!(h.dir.stats().data_after_close_bytes, 4);
    assert_eq!(h.budget.used(), 0);
    assert_eq!(h.dir.buffered_bytes(), 0);
}

#[test]
fn fin_with_hole_closes_at_flush_with_gap() {
    let mut h = Harness::new(StreamConfig::default());
    h.seg(0, "S", &[]);
    h.seg(1, "", b"ab");
    h.seg(5, "", b"ef");
    h.seg(9, "F", &[]);
    h.flush();
    assert!(h.dir.is_closed());
    assert_eq!(h.gaps(), vec![(2, 2), (6, 2)]);
    assert_eq!(h.bytes(), b"abef");
    assert_eq!(h.budget.used(), 0);
}

#[test]
fn rst_flushes_and_closes() {
    let mut h = Harness::new(StreamConfig::default());
    h.seg(0, "S", &[]);
    h.seg(1, "", b"ab");
    h.seg(5, "", b"ef");
    h.seg(7, "R", b"reason");
    assert!(h.dir.is_closed());
    assert_eq!(h.bytes(), b"abef");
    assert_eq!(h.gaps(), vec![(2, 2)]);
    assert_eq!(h.budget.used(), 0);
    h.seg(3, "", b"cd");
    assert_eq!(h.bytes(), b"abef");
}

#[test]
fn far_ahead_segment_is_dropped() {
    let mut h = Harness::new(StreamConfig::default());
    h.seg(0, "S", &[]);
    h.seg(1 + (1 << 30) + 10, "", b"far");
    assert_eq!(h.dir.stats().out_of_window_segments, 1);
    assert_eq!(h.dir.buffered_bytes(), 0);
}

#[test]
fn discard_returns_budget() {
    let mut h = Harness::new(StreamConfig::default());
    h.seg(0, "S", &[]);
    h.seg(100, "", b"later");
    assert!(h.budget.used() > 0);
    h.dir.discard(&mut h.budget);
    assert_eq!(h.budget.used(), 0);
    assert_eq!(h.dir.buffered_bytes(), 0);
}

#[test]
fn config_deserializes_with_defaults() {
    let cfg: StreamConfig = toml::from_str("max_buffered_per_direction = 4096").unwrap();
    assert_eq!(cfg.max_buffered_per_direction, 4096);
    assert_eq!(cfg.max_buffered_total, 256 << 20);
}

/// Random segmentation, local reordering and duplicates of a known stream
/// reassemble exactly when within the caps.
#[test]
fn property_random_segmentation_reordering_duplicates() {
    let mut rng = XorShift(0xdead_beef_cafe_f00d);
    for round in 0..100 {
        let len = 1 + rng.below(50_000);
        let s = stream(len, round as u8);
        let mut segs = cut(&s, 1 + rng.below(1500), &mut rng);
        // Duplicates, some re-cut to overlap differently.
        let dups = rng.below(segs.len() / 2 + 1);
        for _ in 0..dups {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(2000)).min(len);
            segs.push((a, s[a..b].to_vec()));
        }
        // Local reordering: swap within a window of 16.
        for i in 0..segs.len() {
            let j = (i + rng.below(16)).min(segs.len() - 1);
            segs.swap(i, j);
        }
        let isn = rng.next() as u32;
        let with_syn = round % 3 != 0;
        let mut h = Harness::new(StreamConfig::default());
        if with_syn {
            h.seg(isn, "S", &[]);
        } else {
            // Mid-stream start on the real first segment.
            segs.insert(0, (0, s[..1].to_vec()));
        }
        let first_seq = if with_syn { isn.wrapping_add(1) } else { isn };
        for (off, d) in &segs {
            h.seg(first_seq.wrapping_add(*off as u32), "", d);
        }
        h.seg(first_seq.wrapping_add(len as u32), "F", &[]);
        assert!(h.dir.is_closed(), "round {round}");
        assert_eq!(h.bytes(), s, "round {round}");
        assert!(h.gaps().is_empty());
        assert_eq!(h.dir.stats().conflicting_overlap_bytes, 0);
        assert_eq!(h.budget.used(), 0);
    }
}

/// Random segments, flags and sequence numbers with small caps: no panic,
/// caps hold, events stay contiguous and the budget returns to 0.
#[test]
fn random_segments_respect_caps() {
    let mut rng = XorShift(0x1357_9bdf_2468_ace0);
    let payload = stream(3_000, 9);
    let mut budget = StreamBudget::new(20_000);
    let cfg = StreamConfig {
        max_buffered_per_direction: 8_000,
        ..StreamConfig::default()
    };
    let mut dirs: Vec<TcpStreamDirection> = (0..4).map(|_| TcpStreamDirection::new()).collect();
    let mut next: Vec<u64> = vec![0; 4];
    let base = rng.next() as u32;
    for _ in 0..20_000 {
        let k = rng.below(4);
        let seq = match rng.below(4) {
            0 => rng.next() as u32,
            _ => base.wrapping_add(rng.below(200_000) as u32),
        };
        let len = rng.below(payload.len());
        let start = rng.below(payload.len() - len + 1);
        let flags = rng.next();
        let d = &mut dirs[k];
        let n = &mut next[k];
        d.segment(
            seq,
            flags.is_multiple_of(97),
            flags.is_multiple_of(89),
            flags.is_multiple_of(499),
            &payload[start..start + len],
            &cfg,
            &mut budget,
            &mut |e| match e {
                StreamEvent::Data { data, offset } => {
                    assert_eq!(offset, *n);
                    *n += data.len() as u64;
                }
                StreamEvent::Gap { offset, len } => {
                    assert_eq!(offset, *n);
                    *n += len;
                }
            },
        );
        assert!(d.charged_bytes() <= cfg.max_buffered_per_direction);
        assert_eq!(
            budget.used(),
            dirs.iter().map(|d| d.charged_bytes()).sum::<usize>()
        );
    }
    for (d, n) in dirs.iter_mut().zip(next.iter_mut()) {
        d.flush(&mut budget, &mut |e| match e {
            StreamEvent::Data { data, offset } => {
                assert_eq!(offset, *n);
                *n += data.len() as u64;
            }
            StreamEvent::Gap { offset, len } => {
                assert_eq!(offset, *n);
                *n += len;
            }
        });
        assert_eq!(d.next_offset(), *n);
    }
    assert_eq!(budget.used(), 0);
}
