//! The flows' deadlines, taken in order: a min-heap of the deadlines due
//! soon, and the later ones in coarse time buckets.
//!
//! A flow's deadline goes in when it is created and again each time it is
//! found stale (the flow was active since), so each short flow passes
//! through twice. With one heap of every deadline, each pop walks the
//! whole depth of a heap as large as the flows alive, most of it out of
//! the cache. Here a deadline past the current bucket (about a second) is
//! only appended to its bucket's list; a bucket moves into the heap when
//! time reaches it. The heap then holds about a second's worth of
//! deadlines, and the order in which they come out is exactly the single
//! heap's: the smallest `(deadline, slot, generation)` first.
//!
//! The buckets of the next [`RING`] (about nine minutes, past every default
//! timeout) are a ring of lists indexed by the bucket's number, so adding a
//! deadline there is an index and a push; buckets further off wait in an
//! ordered map.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// A deadline: time (ns), flow slot, slot generation.
pub(super) type Deadline = (i64, u32, u32);

/// log2 of a bucket's width in ns (2^30 ns, about 1.07 s).
const BUCKET_SHIFT: u32 = 30;

/// Buckets in the ring (a power of two).
const RING: usize = 512;

fn bucket(t: i64) -> i64 {
    t >> BUCKET_SHIFT
}

/// The ring slot of bucket `b`.
fn slot_of(b: i64) -> usize {
    (b as usize) & (RING - 1)
}

/// Deadlines in order (see the module docs).
#[derive(Debug)]
pub(super) struct Deadlines {
    /// Every deadline whose bucket is at most `cursor`.
    near: BinaryHeap<Reverse<Deadline>>,
    /// Buckets `cursor + 1 ..= cursor + RING`, each in slot `bucket % RING`.
    ring: Vec<Vec<Deadline>>,
    /// Deadlines in `ring`.
    in_ring: usize,
    /// The others, by bucket (all past `cursor`; a bucket the ring has
    /// come to cover since may still be here).
    far: BTreeMap<i64, Vec<Deadline>>,
    /// The last bucket moved into `near`.
    cursor: i64,
    /// Emptied bucket lists, kept for their capacity (at most [`SPARE`]).
    spare: Vec<Vec<Deadline>>,
    /// Deadlines held, in all.
    len: usize,
}

/// Bucket lists kept for reuse at most.
const SPARE: usize = 64;

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            near: BinaryHeap::new(),
            ring: (0..RING).map(|_| Vec::new()).collect(),
            in_ring: 0,
            far: BTreeMap::new(),
            cursor: i64::MIN,
            spare: Vec::new(),
            len: 0,
        }
    }
}

impl Deadlines {
    /// Deadlines held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Room held by the lists and the heap, in deadlines.
    #[cfg(test)]
    pub(super) fn room(&self) -> usize {
        self.near.capacity()
            + self.ring.iter().map(Vec::capacity).sum::<usize>()
            + self.far.values().map(Vec::capacity).sum::<usize>()
            + self.spare.iter().map(Vec::capacity).sum::<usize>()
    }

    /// Keeps the deadlines for which `keep` is `true` (the others never
    /// come out); the order of the rest is unchanged. The room the others
    /// took is given back.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Deadline) -> bool) {
        fn shrink(list: &mut Vec<Deadline>) {
            if list.capacity() > 2 * list.len() + 64 {
                list.shrink_to(list.len() + list.len() / 4);
            }
        }
        self.near.retain(|Reverse(d)| keep(d));
        if self.near.capacity() > 2 * self.near.len() + 64 {
            self.near.shrink_to(self.near.len() + self.near.len() / 4);
        }
        for list in &mut self.ring {
            list.retain(&mut keep);
            shrink(list);
        }
        self.in_ring = self.ring.iter().map(Vec::len).sum();
        self.far.retain(|_, list| {
            list.retain(&mut keep);
            shrink(list);
            !list.is_empty()
        });
        self.spare.clear();
        self.len = self.near.len() + self.in_ring + self.far.values().map(Vec::len).sum::<usize>();
    }

    /// Adds a deadline.
    pub(super) fn push(&mut self, d: Deadline) {
        self.len += 1;
        let b = bucket(d.0);
        if b <= self.cursor {
            self.near.push(Reverse(d));
            return;
        }
        // `b > cursor`: the difference is positive (it may overflow i64)
        if b.abs_diff(self.cursor) <= RING as u64
            && let Some(list) = self.ring.get_mut(slot_of(b))
        {
            if list.capacity() == 0
                && let Some(spare) = self.spare.pop()
            {
                *list = spare;
            }
            list.push(d);
            self.in_ring += 1;
            return;
        }
        let spare = &mut self.spare;
        self.far
            .entry(b)
            .or_insert_with(|| spare.pop().unwrap_or_default())
            .push(d);
    }

    /// `true` when a deadline may be due at `now`: [`Deadlines::pop_due`]
    /// has work (a bucket to take in, or a due top).
    #[inline]
    pub(super) fn any_due(&self, now: i64) -> bool {
        bucket(now) > self.cursor || self.near.peek().is_some_and(|Reverse(d)| d.0 <= now)
    }

    /// Takes the smallest deadline if it is at most `now`.
    #[inline]
    pub(super) fn pop_due(&mut self, now: i64) -> Option<Deadline> {
        let b = bucket(now);
        if b > self.cursor {
            self.reach(b);
        }
        // the ring and `far` hold only deadlines past `now`'s bucket, so
        // the smallest due one, if any, is the top of `near`
        match self.near.peek() {
            Some(Reverse(d)) if d.0 <= now => self.take_top(),
            _ => None,
        }
    }

    /// Takes the top of `near`.
    fn take_top(&mut self) -> Option<Deadline> {
        let d = self.near.pop().map(|Reverse(d)| d);
        if d.is_some() {
            self.len -= 1;
        }
        d
    }

    /// Takes the smallest deadline, due or not.
    pub(super) fn pop_min(&mut self) -> Option<Deadline> {
        if self.near.is_empty() {
            // the first bucket held: the ring's first non-empty one, or
            // `far`'s first when that comes before it
            let ring_first = (self.in_ring > 0)
                .then(|| {
                    (1..=RING as i64)
                        .map(|k| self.cursor.saturating_add(k))
                        .find(|&b| self.ring.get(slot_of(b)).is_some_and(|l| !l.is_empty()))
                })
                .flatten();
            let far_first = self.far.first_key_value().map(|(b, _)| *b);
            let first = match (ring_first, far_first) {
                (Some(r), Some(f)) => Some(r.min(f)),
                (r, f) => r.or(f),
            };
            if let Some(b) = first {
                self.reach(b);
            }
        }
        self.take_top()
    }

    /// Moves the buckets up to `b` (past `cursor`) into `near`.
    #[inline(never)]
    fn reach(&mut self, b: i64) {
        if self.in_ring > 0 {
            // the ring's buckets from `cursor + 1` to `b`: every slot when
            // `b` is a whole ring or more ahead
            let steps = b.abs_diff(self.cursor).min(RING as u64) as i64;
            for k in 1..=steps {
                let at = slot_of(self.cursor.wrapping_add(k));
                if let Some(list) = self.ring.get_mut(at)
                    && !list.is_empty()
                {
                    // the list goes back to the spares (a slot keeps no
                    // room: the ring would hold a bucket's worth in each
                    // of its slots)
                    let list = std::mem::take(list);
                    self.in_ring -= list.len();
                    self.take_in(list);
                }
            }
        }
        self.cursor = b;
        while let Some(e) = self.far.first_entry() {
            if *e.key() > b {
                break;
            }
            let list = e.remove();
            self.take_in(list);
        }
    }

    fn take_in(&mut self, mut list: Vec<Deadline>) {
        self.near.extend(list.drain(..).map(Reverse));
        if self.spare.len() < SPARE {
            self.spare.push(list);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use libpcap_tools::synth::Rng;

    /// A bucket's list goes back to the spares once taken in: time going
    /// round the ring leaves room for the buckets in use and the spares,
    /// not a bucket's worth in every slot.
    #[test]
    fn the_ring_keeps_no_room_in_its_slots() {
        let mut d = Deadlines::default();
        let width = 1i64 << BUCKET_SHIFT;
        let mut most = 0;
        for b in 0..(3 * RING as i64) {
            // 100 deadlines a bucket, each three buckets ahead
            for i in 0..100u32 {
                d.push((b * width + 3 * width + i64::from(i), i, 0));
            }
            while d.pop_due(b * width).is_some() {}
            most = most.max(d.room() - d.near.capacity());
        }
        // lists of 100 deadlines have room for 128
        assert!(most <= (SPARE + 4) * 128, "room for {most} deadlines");
    }

    /// The same operations on `Deadlines` and on one binary heap (the
    /// structure it replaces) give the same deadlines in the same order:
    /// pushes around and behind the clock, due pops as time goes on, pops
    /// regardless of time (eviction), equal deadlines, times far off and
    /// negative.
    #[test]
    fn comes_out_in_the_order_of_one_heap() {
        for seed in 1..40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut d = Deadlines::default();
            let mut heap: BinaryHeap<Reverse<Deadline>> = BinaryHeap::new();
            let mut now: i64 = -5_000_000_000 + (rng.next_u64() % 1000) as i64;
            let spread = [
                1_000_i64,
                1 << 30,
                60_000_000_000,
                300_000_000_000,
                3_600_000_000_000,
            ][seed as usize % 5];
            for step in 0..4000u32 {
                match rng.next_u64() % 10 {
                    0..=4 => {
                        let t = match rng.next_u64() % 20 {
                            0 => i64::MAX,
                            1 => now - (rng.next_u64() % 1000) as i64,
                            2 => now,
                            _ => now + (rng.next_u64() % spread as u64) as i64,
                        };
                        let e = (t, (rng.next_u64() % 50) as u32, step);
                        d.push(e);
                        heap.push(Reverse(e));
                    }
                    5..=7 => {
                        now += (rng.next_u64() % (spread as u64 / 10 + 1)) as i64;
                        loop {
                            let want = match heap.peek() {
                                Some(Reverse(e)) if e.0 <= now => heap.pop().map(|r| r.0),
                                _ => None,
                            };
                            assert_eq!(d.pop_due(now), want, "seed {seed} step {step}");
                            if want.is_none() {
                                break;
                            }
                        }
                    }
                    8 if step % 7 == 0 => {
                        // the deadlines of odd slots dropped
                        d.retain(|e| e.1 % 2 == 0);
                        heap.retain(|Reverse(e)| e.1 % 2 == 0);
                        assert_eq!(d.len(), heap.len(), "seed {seed} step {step}");
                    }
                    8 => assert_eq!(d.pop_min(), heap.pop().map(|r| r.0), "seed {seed}"),
                    _ => {
                        // a stale deadline re-armed behind the clock
                        let want = match heap.peek() {
                            Some(Reverse(e)) if e.0 <= now => heap.pop().map(|r| r.0),
                            _ => None,
                        };
                        assert_eq!(d.pop_due(now), want, "seed {seed} step {step}");
                        if let Some(e) = want {
                            let again = (now - 1, e.1, e.2);
                            d.push(again);
                            heap.push(Reverse(again));
                        }
                    }
                }
            }
            assert_eq!(d.len(), heap.len(), "seed {seed}");
            while let Some(Reverse(e)) = heap.pop() {
                assert_eq!(d.pop_min(), Some(e), "seed {seed} draining");
            }
            assert_eq!(d.len(), 0);
            assert_eq!(d.pop_min(), None);
        }
    }
}
