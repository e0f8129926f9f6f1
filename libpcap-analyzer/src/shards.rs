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
}
