//! A hash map kept in parts, each part picked by bits of the key's hash.
//!
//! A hash table grows by moving into one twice its size, so that for the
//! move it holds both: a table of rows that grows to N bytes peaks at about
//! 1.5 N. The report tables (connections, basic-stats) are the largest
//! things a run keeps, and that peak was the run's peak. Here each part
//! grows on its own, so a move holds one part twice, and the whole map
//! peaks at about N (1 + 1/PARTS).

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use std::hash::{BuildHasher, Hash};

/// Parts of a map (a power of two).
const PARTS: usize = 16;

/// The part of a hash: bits the tables look at least (a table indexes by
/// the low bits and tags by the top seven).
fn part_of(hash: u64) -> usize {
    (hash >> 48) as usize & (PARTS - 1)
}

/// A hash map in [`PARTS`] parts (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct ShardedMap<K, V> {
    parts: [HashTable<(K, V)>; PARTS],
    state: RandomState,
    len: usize,
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap {
            parts: std::array::from_fn(|_| HashTable::new()),
            state: RandomState::default(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The value of `k`. A key not in the map gets the value `new` gives
    /// it, or stays out when `new` gives `None`.
    pub(crate) fn get_or_try_insert(
        &mut self,
        k: K,
        new: impl FnOnce(&K) -> Option<V>,
    ) -> Option<&mut V> {
        let hash = self.state.hash_one(&k);
        let state = &self.state;
        // `part_of` masks the hash below PARTS: in bounds
        let part = &mut self.parts[part_of(hash)];
        match part.entry(hash, |(x, _)| *x == k, |(x, _)| state.hash_one(x)) {
            Entry::Occupied(o) => Some(&mut o.into_mut().1),
            Entry::Vacant(v) => {
                let value = new(&k)?;
                self.len += 1;
                Some(&mut v.insert((k, value)).into_mut().1)
            }
        }
    }

    /// Moves the entries of `other` into this map, a part of `other` at a
    /// time, each part freed once moved (so the two maps never hold much
    /// more than they held before). A key already here is folded into its
    /// value by `fold`. A new key gets the value `enter` gives it (told the
    /// key, its value and the number of keys here), or stays out when
    /// `enter` gives `None`.
    pub(crate) fn absorb(
        &mut self,
        other: ShardedMap<K, V>,
        mut fold: impl FnMut(&mut V, V),
        mut enter: impl FnMut(&K, V, usize) -> Option<V>,
    ) {
        for part in other.parts {
            for (k, v) in part {
                let hash = self.state.hash_one(&k);
                let state = &self.state;
                // `part_of` masks the hash below PARTS: in bounds
                let here = &mut self.parts[part_of(hash)];
                match here.entry(hash, |(x, _)| *x == k, |(x, _)| state.hash_one(x)) {
                    Entry::Occupied(o) => fold(&mut o.into_mut().1, v),
                    Entry::Vacant(slot) => {
                        if let Some(v) = enter(&k, v, self.len) {
                            slot.insert((k, v));
                            self.len += 1;
                        }
                    }
                }
            }
        }
    }

    /// Keeps the entries for which `keep` is `true`.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        for part in &mut self.parts {
            part.retain(|(k, v)| keep(k, v));
        }
        self.len = self.parts.iter().map(HashTable::len).sum();
    }

    /// The entries, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.parts
            .iter()
            .flat_map(HashTable::iter)
            .map(|(k, v)| (k, v))
    }
}

/// Two addresses as integers when both are IPv4: the small form of a key.
#[inline]
pub(crate) fn v4_pair(a: &std::net::IpAddr, b: &std::net::IpAddr) -> Option<(u32, u32)> {
    match (a, b) {
        (std::net::IpAddr::V4(a), std::net::IpAddr::V4(b)) => Some((a.to_bits(), b.to_bits())),
        _ => None,
    }
}

/// The IPv4 address of the integer `bits` (what [`v4_pair`] made).
#[inline]
pub(crate) fn v4(bits: u32) -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::from_bits(bits))
}

/// A key with a small form for its common case (both addresses IPv4),
/// ordered as the key is: `a.small() < b.small()` exactly when `a < b`.
pub(crate) trait Compact: Sized + Copy + Hash + Eq + Ord {
    /// The small form.
    type Small: Copy + Hash + Eq + Ord;
    /// The small form of this key, when it has one.
    fn small(&self) -> Option<Self::Small>;
    /// The key of a small form.
    fn from_small(s: &Self::Small) -> Self;
    /// An integer in the small forms' order (`rank(a) < rank(b)` exactly
    /// when `a < b`): the rows sort on it without calling `cmp`.
    fn rank(s: &Self::Small) -> u128;
}

/// A key of a [`SplitMap`], where it lies.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyRef<'a, K: Compact> {
    /// In the small table.
    Small(&'a K::Small),
    /// In the table of the other keys.
    Wide(&'a K),
}

impl<K: Compact> KeyRef<'_, K> {
    /// The key.
    #[inline]
    pub(crate) fn key(&self) -> K {
        match self {
            KeyRef::Small(s) => K::from_small(s),
            KeyRef::Wide(k) => **k,
        }
    }
}

impl<K: Compact> PartialEq for KeyRef<'_, K> {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o).is_eq()
    }
}
impl<K: Compact> Eq for KeyRef<'_, K> {}
impl<K: Compact> PartialOrd for KeyRef<'_, K> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
/// The keys' order (the small forms compared as they are: field by field
/// stops at the first field that differs, where ranks would be made whole
/// for each comparison).
impl<K: Compact> Ord for KeyRef<'_, K> {
    #[inline]
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        match (self, o) {
            (KeyRef::Small(a), KeyRef::Small(b)) => a.cmp(b),
            (KeyRef::Wide(a), KeyRef::Wide(b)) => a.cmp(b),
            _ => self.key().cmp(&o.key()),
        }
    }
}

/// A [`ShardedMap`] whose keys of a small form (IPv4 addresses) are held
/// in that form, in a table of their own: a report row of two IPv4
/// addresses takes 8 bytes of key, where an `IpAddr` pair takes 34 (40
/// with the padding of the row).
#[derive(Debug, Clone)]
pub(crate) struct SplitMap<K: Compact, V> {
    small: ShardedMap<K::Small, V>,
    wide: ShardedMap<K, V>,
}

impl<K: Compact, V> Default for SplitMap<K, V> {
    fn default() -> Self {
        SplitMap {
            small: ShardedMap::default(),
            wide: ShardedMap::default(),
        }
    }
}

impl<K: Compact, V> SplitMap<K, V> {
    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.small.len() + self.wide.len()
    }

    /// As [`ShardedMap::get_or_try_insert`].
    pub(crate) fn get_or_try_insert(
        &mut self,
        k: K,
        new: impl FnOnce(&K) -> Option<V>,
    ) -> Option<&mut V> {
        match k.small() {
            Some(s) => self.small.get_or_try_insert(s, |_| new(&k)),
            None => self.wide.get_or_try_insert(k, new),
        }
    }

    /// As [`ShardedMap::absorb`]; `enter` is told the number of keys of
    /// both tables.
    pub(crate) fn absorb(
        &mut self,
        other: SplitMap<K, V>,
        mut fold: impl FnMut(&mut V, V),
        mut enter: impl FnMut(&K, V, usize) -> Option<V>,
    ) {
        let wide = self.wide.len();
        self.small.absorb(other.small, &mut fold, |s, v, n| {
            enter(&K::from_small(s), v, n + wide)
        });
        let small = self.small.len();
        self.wide
            .absorb(other.wide, fold, |k, v, n| enter(k, v, n + small));
    }

    /// Keeps the entries for which `keep` is `true`.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.small.retain(|s, v| keep(&K::from_small(s), v));
        self.wide.retain(keep);
    }

    /// The entries in key order: the small keys sorted by their
    /// [`Compact::rank`], the others by their order, the two merged as
    /// they are read (sorting rows through `cmp` on [`KeyRef`] made a call
    /// and a match a comparison, and read each key where it lies).
    pub(crate) fn sorted(&self) -> impl Iterator<Item = (KeyRef<'_, K>, &V)> {
        // the rank beside each row: the sort reads no key where it lies
        let mut small: Vec<(u128, &K::Small, &V)> = Vec::with_capacity(self.small.len());
        small.extend(self.small.iter().map(|(s, v)| (K::rank(s), s, v)));
        small.sort_unstable_by_key(|r| r.0);
        let mut wide: Vec<(&K, &V)> = Vec::with_capacity(self.wide.len());
        wide.extend(self.wide.iter());
        wide.sort_unstable_by(|a, b| a.0.cmp(b.0));
        in_key_order(small.into_iter(), wide.into_iter(), |(_, s, _), (w, _)| {
            K::from_small(s) <= **w
        })
        .map(|side| match side {
            Side::Small((_, s, v)) => (KeyRef::Small(s), v),
            Side::Wide((k, v)) => (KeyRef::Wide(k), v),
        })
    }

    /// The entries, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (KeyRef<'_, K>, &V)> {
        self.small
            .iter()
            .map(|(s, v)| (KeyRef::Small(s), v))
            .chain(self.wide.iter().map(|(k, v)| (KeyRef::Wide(k), v)))
    }
}

/// An item of [`in_key_order`]: from the small side or the wide one.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side<S, W> {
    /// From the small side.
    Small(S),
    /// From the wide side.
    Wide(W),
}

/// Merges two sequences each in key order, the rows of small keys (sorted
/// by rank) and of the others, into one in key order: `small_first` tells
/// whether a small row's key is at most a wide row's (a small and a wide
/// key are never equal).
pub(crate) fn in_key_order<S, W>(
    small: impl Iterator<Item = S>,
    wide: impl Iterator<Item = W>,
    small_first: impl Fn(&S, &W) -> bool,
) -> impl Iterator<Item = Side<S, W>> {
    let (mut small, mut wide) = (small.peekable(), wide.peekable());
    std::iter::from_fn(move || {
        let take_small = match (small.peek(), wide.peek()) {
            (Some(s), Some(w)) => small_first(s, w),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if take_small {
            small.next().map(Side::Small)
        } else {
            wide.next().map(Side::Wide)
        }
    })
}

/// Checks on `keys` (with small forms) that the ranks of their small
/// forms are in the keys' order, and tells how many were small.
#[cfg(test)]
pub(crate) fn ranks_are_in_key_order<K: Compact + std::fmt::Debug>(keys: &[K]) -> usize {
    let small: Vec<(K, K::Small)> = keys.iter().filter_map(|k| Some((*k, k.small()?))).collect();
    for (a, sa) in &small {
        for (b, sb) in small.iter().take(200) {
            assert_eq!(
                K::rank(sa).cmp(&K::rank(sb)),
                a.cmp(b),
                "{a:?} against {b:?}"
            );
        }
    }
    small.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The same inserts, refusals, updates and removals on a `ShardedMap`
    /// and a `HashMap` leave the same entries, and the parts share them.
    #[test]
    fn holds_what_a_hash_map_holds() {
        let mut m: ShardedMap<u64, u64> = ShardedMap::default();
        let mut h: HashMap<u64, u64> = HashMap::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..50_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % 20_000;
            // keys divisible by 7 are refused when new
            if let Some(v) = m.get_or_try_insert(k, |k| (!k.is_multiple_of(7)).then_some(0)) {
                *v += i;
            }
            if !k.is_multiple_of(7) {
                *h.entry(k).or_insert(0) += i;
            }
            if i % 10_000 == 9_999 {
                m.retain(|k, _| k % 3 != 0);
                h.retain(|k, _| k % 3 != 0);
            }
        }
        if let Some(v) = m.get_or_try_insert(8, |_| Some(0)) {
            *v += 1;
        }
        *h.entry(8).or_default() += 1;
        assert_eq!(m.len(), h.len());
        let mut got: Vec<(u64, u64)> = m.iter().map(|(k, v)| (*k, *v)).collect();
        got.sort_unstable();
        let mut want: Vec<(u64, u64)> = h.into_iter().collect();
        want.sort_unstable();
        assert_eq!(got, want);
        let used = m.parts.iter().filter(|p| !p.is_empty()).count();
        assert_eq!(used, PARTS, "every part holds keys");
    }

    /// A key held small when even and below 2^33 (as its half): small and
    /// wide keys interleave in the keys' order.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    struct Wide(u64);

    impl Compact for Wide {
        type Small = u32;
        fn small(&self) -> Option<u32> {
            if !self.0.is_multiple_of(2) {
                return None;
            }
            u32::try_from(self.0 / 2).ok()
        }
        fn from_small(s: &u32) -> Wide {
            Wide(u64::from(*s) * 2)
        }
        fn rank(s: &u32) -> u128 {
            u128::from(*s)
        }
    }

    /// A `SplitMap` holds, refuses, folds and drops what a `HashMap` does,
    /// both tables in use, and its entries sort in the keys' order.
    #[test]
    fn a_split_map_holds_what_a_hash_map_holds_in_key_order() {
        let (mut a, mut b): (SplitMap<Wide, u64>, SplitMap<Wide, u64>) = Default::default();
        let (mut ha, mut hb) = (HashMap::new(), HashMap::new());
        let mut rng = crate::proto::tls::test_support::XorShift(0x9e37_79b9_7f4a_7c15);
        for i in 0..40_000u64 {
            let x = rng.next();
            // half the keys past 2^32
            let k = if x & 1 == 0 {
                x % 9_000
            } else {
                (1 << 32) + x % 9_000
            };
            let (m, h) = if i % 2 == 0 {
                (&mut a, &mut ha)
            } else {
                (&mut b, &mut hb)
            };
            if let Some(v) = m.get_or_try_insert(Wide(k), |k| (k.0 % 11 != 0).then_some(0)) {
                *v += i;
            }
            if k % 11 != 0 {
                *h.entry(k).or_insert(0) += i;
            }
        }
        a.retain(|k, _| k.0 % 3 != 0);
        ha.retain(|k, _| k % 3 != 0);
        let before = a.len();
        let mut entered = 0;
        a.absorb(
            b,
            |e, v| *e += v,
            |_, v, n| {
                assert_eq!(n, before + entered, "told the keys of both tables");
                entered += 1;
                Some(v)
            },
        );
        for (k, v) in hb {
            *ha.entry(k).or_insert(0) += v;
        }
        assert_eq!(a.len(), ha.len());
        assert!(a.small.len() > 1000 && a.wide.len() > 1000);
        let mut rows: Vec<_> = a.iter().collect();
        rows.sort_unstable_by(|x, y| x.0.cmp(&y.0));
        let sorted: Vec<(u64, u64)> = a.sorted().map(|(k, v)| (k.key().0, *v)).collect();
        let got: Vec<(u64, u64)> = rows.iter().map(|(k, v)| (k.key().0, **v)).collect();
        let mut want: Vec<(u64, u64)> = ha.into_iter().collect();
        want.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(sorted, want, "sorted by rank and merged");
    }

    /// `absorb` gives what inserting the other map's entries one by one
    /// into a `HashMap` gives: folded values for common keys, new keys
    /// entered or refused (told the count of keys so far), refused values
    /// handed back to the caller.
    #[test]
    fn absorbing_a_map_folds_enters_and_refuses_as_one_by_one_inserts() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for cap in [usize::MAX, 7_000] {
            let (mut a, mut b): (ShardedMap<u64, u64>, ShardedMap<u64, u64>) =
                (ShardedMap::default(), ShardedMap::default());
            let (mut ha, mut hb) = (HashMap::new(), HashMap::new());
            for _ in 0..8_000 {
                let (k, v) = (next() % 12_000, next() % 1_000);
                if let Some(e) = a.get_or_try_insert(k, |_| Some(0)) {
                    *e += v;
                }
                *ha.entry(k).or_insert(0) += v;
                let (k, v) = (next() % 12_000, next() % 1_000);
                if let Some(e) = b.get_or_try_insert(k, |_| Some(0)) {
                    *e += v;
                }
                *hb.entry(k).or_insert(0u64) += v;
            }
            // the model: b's entries one by one (in key order: with a cap,
            // which keys get in depends on the order, so only the counts are
            // compared then)
            let mut model = ha.clone();
            let (mut refused_model, mut entered_model) = (0u64, 0usize);
            let mut keys: Vec<_> = hb.iter().map(|(k, v)| (*k, *v)).collect();
            keys.sort_unstable();
            for (k, v) in keys {
                if let Some(e) = model.get_mut(&k) {
                    *e += v;
                } else if k % 5 != 0 && model.len() < cap {
                    model.insert(k, v * 2);
                    entered_model += 1;
                } else {
                    refused_model += v;
                }
            }
            let before = a.len();
            let (mut refused, mut entered) = (0u64, 0usize);
            a.absorb(
                b,
                |e, v| *e += v,
                |k, v, len| {
                    assert_eq!(len, before + entered, "told the number of keys");
                    if k % 5 != 0 && len < cap {
                        entered += 1;
                        Some(v * 2)
                    } else {
                        refused += v;
                        None
                    }
                },
            );
            assert_eq!(a.len(), before + entered);
            assert_eq!(a.len(), a.iter().count());
            if cap == usize::MAX {
                let mut got: Vec<(u64, u64)> = a.iter().map(|(k, v)| (*k, *v)).collect();
                got.sort_unstable();
                let mut want: Vec<(u64, u64)> = model.into_iter().collect();
                want.sort_unstable();
                assert_eq!(got, want);
                assert_eq!((entered, refused), (entered_model, refused_model));
            } else {
                assert_eq!(a.len(), cap, "new keys stop at the cap");
                let total_b: u64 = hb.values().sum();
                let total_a: u64 = ha.values().sum();
                let kept: u64 = a.iter().map(|(_, v)| *v).sum();
                // every value of b is folded, entered (doubled) or refused
                let entered: u64 = a
                    .iter()
                    .filter(|(k, _)| !ha.contains_key(k))
                    .map(|(_, v)| *v / 2)
                    .sum();
                assert_eq!(kept - entered, total_a + total_b - refused);
            }
        }
    }
}
