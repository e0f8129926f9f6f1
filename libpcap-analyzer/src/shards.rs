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
