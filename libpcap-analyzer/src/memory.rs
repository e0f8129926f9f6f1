//! One memory budget for the whole run, shared by the workers.
//!
//! Section `[memory]`: `max_bytes` (default 320 MiB) is split into shares,
//! one per consumer, each a percentage of it ([`MemoryConfig`]). Every cap
//! is a budget for the run, not per worker: the workers draw on the same
//! [`Pool`]s through [`Lease`]s (taken in chunks, so the hot path touches no
//! shared counter), and give back what they no longer hold.
//!
//! | share | what it bounds | over budget |
//! | --- | --- | --- |
//! | `flows` | the flow tables ([`FLOW_BYTES`] per flow, and `[flows] max_flows`) | the worker's least recently active flow is evicted (`flows.eviction`) |
//! | `fragments` | IP fragments held (and `[defrag] max_bytes`; the datagrams pending are counted apart against `[defrag] max_datagrams`, also for the whole run) | the oldest datagram is dropped (`too_many_bytes`, `too_many_datagrams`) |
//! | `tcp_reassembly` | out-of-order TCP bytes (and `[tcp_reassembly] max_buffered_total`) | segments dropped (`reassembly.dropped_over_cap`) |
//! | `connections` | rows of the connection report (and `max_connections`) | keys sampled by hash (`connections.dropped_*`) |
//! | `basic_stats` | the conversation tables of basic-stats (and `max_conversations`) | keys sampled by hash, the rest summed in `other` |
//! | `dns` | DNS queries waiting for their response (and `max_pending`) | the query is written unanswered (`dns.unpaired`) |
//! | `spool` | records held in memory by the output spools | a sorted run is spilled to disk (nothing lost) |
//!
//! Tables whose rows are the result (the connection report, basic-stats'
//! conversations) do not keep the first keys that come (which would depend
//! on how the packets were spread over the workers): they keep every key
//! whose hash passes a level shared by all workers ([`KeySampler`]), the
//! level being raised (each step halves the keys admitted) while the keys
//! kept would exceed the cap. The final set is every key of the capture
//! whose hash passes the lowest level at which they fit: the same for any
//! `-j`.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes of one flow in the flow table: its entry (440 bytes: the flow with
/// its TCP and connection tracking), its place in the index (32 bytes) and
/// the expiry heap, and the tables' spare capacity. Measured: peak RSS of
/// two SYN floods of 100,000 and 200,000 flows with `-p community-id`, the
/// difference divided by the difference of flows: 506 bytes (medians of
/// 5 alternated rounds, 2026-12-07;
/// 599 with `-o`, which adds the spool's records, while an entry took 496
/// bytes and its place in the index 64). See the README's "Memory"
/// section. The rows of the reports are budgeted apart (`connections`,
/// `basic_stats` shares), and so are the records of the spools (`spool`).
pub const FLOW_BYTES: u64 = 520;

/// Estimated bytes of one row of a keyed table of `entry` bytes (key and
/// value): the hash table's control byte and spare capacity (it grows by
/// doubling, so it is between 44 % and 88 % full).
pub const fn row_bytes(entry: usize) -> u64 {
    (entry as u64 + 1) * 2
}

/// Section `[memory]`: the budget and its shares (percentages of
/// `max_bytes`, at most 100 in all).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Bytes the run's tables and buffers may hold in all.
    pub max_bytes: u64,
    /// Percent for the flow tables.
    pub flows: u8,
    /// Percent for IP fragments waiting for reassembly.
    pub fragments: u8,
    /// Percent for out-of-order TCP segments.
    pub tcp_reassembly: u8,
    /// Percent for the rows of the connection report.
    pub connections: u8,
    /// Percent for basic-stats' conversation tables.
    pub basic_stats: u8,
    /// Percent for DNS queries waiting for their response.
    pub dns: u8,
    /// Percent for records held in memory by the output spools.
    pub spool: u8,
}

/// Default `[memory] max_bytes`: 320 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 320 << 20;

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            max_bytes: DEFAULT_MAX_BYTES,
            flows: 35,
            fragments: 10,
            tcp_reassembly: 15,
            connections: 15,
            basic_stats: 10,
            dns: 5,
            spool: 10,
        }
    }
}

/// The smallest `[memory] max_bytes`: 16 MiB.
pub const MIN_MAX_BYTES: u64 = 16 << 20;

impl MemoryConfig {
    fn shares(&self) -> [(&'static str, u8); 7] {
        [
            ("flows", self.flows),
            ("fragments", self.fragments),
            ("tcp_reassembly", self.tcp_reassembly),
            ("connections", self.connections),
            ("basic_stats", self.basic_stats),
            ("dns", self.dns),
            ("spool", self.spool),
        ]
    }

    /// Checks `max_bytes` (16 MiB to 1 TiB), each share (1 to 100) and
    /// their sum (at most 100).
    ///
    /// # Errors
    /// A message naming the key, its value and the accepted range.
    pub fn validate(&self) -> Result<(), String> {
        crate::config::check_count(
            "[memory] max_bytes",
            self.max_bytes,
            MIN_MAX_BYTES,
            crate::config::MAX_BYTES,
        )?;
        let mut sum = 0u64;
        for (name, pct) in self.shares() {
            crate::config::check_count(&format!("[memory] {name}"), pct.into(), 1, 100)?;
            sum += u64::from(pct);
        }
        if sum > 100 {
            return Err(format!(
                "[memory] shares add up to {sum} %: give percentages of max_bytes that add up to at most 100"
            ));
        }
        Ok(())
    }

    /// Bytes of the share of `pct` percent.
    fn bytes(&self, pct: u8) -> u64 {
        self.max_bytes / 100 * u64::from(pct)
    }
}

/// A limited quantity (bytes, or items) shared by the workers of a run.
#[derive(Debug)]
pub struct Pool {
    name: String,
    limit: u64,
    used: AtomicU64,
    peak: AtomicU64,
    refused: AtomicU64,
}

impl Pool {
    /// A pool of `limit` units named `name`.
    pub fn new(name: &str, limit: u64) -> Arc<Pool> {
        Arc::new(Pool {
            name: name.to_string(),
            limit,
            used: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Units held now by all leases.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Most units held at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Requests refused because the pool was exhausted.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts a request refused by a lease's own part of the pool.
    fn refuse(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes `n` units if they fit under the limit.
    pub fn try_take(&self, n: u64) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = cur.checked_add(n).filter(|&v| v <= self.limit) else {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return false;
            };
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::Relaxed);
                    return true;
                }
                Err(v) => cur = v,
            }
        }
    }

    /// Gives back `n` units.
    pub fn give(&self, n: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(n))
            });
    }

    /// A lease on this pool, holding nothing yet.
    pub fn lease(self: &Arc<Self>) -> Lease {
        // a lease draws chunks of 1/1024 of the pool (1 to 64 Ki units),
        // so the workers seldom touch the shared counter and idle leases
        // hold little
        let chunk = (self.limit / 1024).clamp(1, 64 << 10);
        Lease {
            pool: Some(self.clone()),
            held: 0,
            chunk,
            cap: u64::MAX,
        }
    }

    /// A lease on this pool that holds at most its part of `parts` equal
    /// parts (at least one unit). With one such lease per worker, what a
    /// worker may hold depends on its own packets only, not on how fast
    /// the other workers took from the pool: the flows it evicts, the
    /// fragments and segments it drops under pressure are the same on
    /// every run at the same `-j`.
    pub fn lease_part(self: &Arc<Self>, parts: usize) -> Lease {
        let mut l = self.lease();
        if parts > 1 {
            l.cap = (self.limit / parts as u64).max(1);
        }
        l
    }
}

/// A worker's part of a [`Pool`]: it covers the units the worker uses,
/// taking from the pool in chunks and giving back what it no longer needs.
/// Dropped, it gives everything back. A clone is a new, empty lease on the
/// same pool.
#[derive(Debug)]
pub struct Lease {
    pool: Option<Arc<Pool>>,
    held: u64,
    chunk: u64,
    /// The most this lease holds ([`Pool::lease_part`]; `u64::MAX`: as
    /// much as the pool has).
    cap: u64,
}

impl Lease {
    /// A lease without a pool: it covers anything.
    pub fn unlimited() -> Lease {
        Lease {
            pool: None,
            held: 0,
            chunk: 1,
            cap: u64::MAX,
        }
    }

    /// Makes the lease hold at least `used` units (and not much more):
    /// `false` when the pool cannot give what is missing.
    #[inline]
    pub fn cover(&mut self, used: u64) -> bool {
        if used <= self.held && self.held <= used.saturating_add(2 * self.chunk) {
            return true;
        }
        self.cover_slow(used)
    }

    #[cold]
    fn cover_slow(&mut self, used: u64) -> bool {
        let Some(pool) = &self.pool else {
            return true;
        };
        if used > self.cap {
            pool.refuse();
            return false;
        }
        if used > self.held {
            let need = used - self.held;
            // never past the cap: `need` fits, as `used` does
            let want = need.max(self.chunk).min(self.cap - self.held);
            if pool.try_take(want) {
                self.held += want;
            } else if want > need && pool.try_take(need) {
                self.held += need;
            } else {
                return false;
            }
        } else {
            let back = self.held - used - self.chunk;
            pool.give(back);
            self.held -= back;
        }
        true
    }

    /// Units held.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// The pool, if any.
    pub fn pool(&self) -> Option<&Arc<Pool>> {
        self.pool.as_ref()
    }
}

impl Clone for Lease {
    fn clone(&self) -> Self {
        Lease {
            pool: self.pool.clone(),
            held: 0,
            chunk: self.chunk,
            cap: self.cap,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(p) = &self.pool {
            p.give(self.held);
        }
    }
}

/// Admission of keys by a hash, shared by the workers (see the module
/// docs): a key of hash `h` is admitted while `h.leading_zeros()` is at
/// least the level; the level rises while more than `cap` distinct keys
/// admitted at it have been seen.
#[derive(Debug)]
pub struct KeySampler {
    cap: u64,
    level: AtomicU32,
    /// Keys counted at the current level or above.
    above: AtomicU64,
    /// Keys counted per number of leading zeros of their hash.
    counts: [AtomicU64; 65],
    raise: Mutex<()>,
}

/// Seed of the hash keys are sampled by (fixed: the same keys every run).
const SAMPLE_SEED: u64 = 0x5041_4c5f_6b65_7973;

impl KeySampler {
    /// A sampler keeping at most `cap` keys (0: no limit).
    pub fn new(cap: u64) -> Arc<KeySampler> {
        Arc::new(KeySampler {
            cap: if cap == 0 { u64::MAX } else { cap },
            level: AtomicU32::new(0),
            above: AtomicU64::new(0),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            raise: Mutex::new(()),
        })
    }

    /// The hash of `key` sampling looks at.
    #[inline]
    pub fn hash<K: Hash + ?Sized>(key: &K) -> u64 {
        foldhash::fast::FixedState::with_seed(SAMPLE_SEED).hash_one(key)
    }

    /// The most keys kept.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// The current level (0: every key admitted).
    #[inline]
    pub fn level(&self) -> u32 {
        self.level.load(Ordering::Relaxed)
    }

    /// Whether a key of hash `h` passes `level`.
    #[inline]
    pub fn passes(h: u64, level: u32) -> bool {
        h.leading_zeros() >= level
    }

    /// Whether a table sampled at `level` keeps `key`, new to it: the key
    /// passes the level, once counted (when `counting`; a table merging
    /// keys counted where they were seen does not count them again), which
    /// may raise the level.
    pub fn admits<K: Hash + ?Sized>(&self, key: &K, level: u32, counting: bool) -> bool {
        let h = Self::hash(key);
        let mut level = level;
        if counting && Self::passes(h, level) {
            level = self.add(h);
        }
        Self::passes(h, level)
    }

    /// Whether a table keeps `key`, new to it: by [`KeySampler::admits`]
    /// when the table is sampled (`sampled`: its sampler and level), else
    /// while it is not `full`.
    pub fn table_admits<K: Hash + ?Sized>(
        sampled: Option<(&KeySampler, u32)>,
        key: &K,
        counting: bool,
        full: bool,
    ) -> bool {
        match sampled {
            Some((s, level)) => s.admits(key, level, counting),
            None => !full,
        }
    }

    /// Counts a key of hash `h` new to the table that admitted it, and
    /// raises the level while too many keys pass it; returns the level.
    pub fn add(&self, h: u64) -> u32 {
        let z = h.leading_zeros();
        if let Some(c) = self.counts.get(z as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if self.cap == u64::MAX {
            return 0;
        }
        let level = self.level();
        if z >= level && self.above.fetch_add(1, Ordering::Relaxed) < self.cap {
            return level;
        }
        self.recount()
    }

    #[cold]
    fn recount(&self) -> u32 {
        let _g = self.raise.lock().unwrap_or_else(|p| p.into_inner());
        let mut level = self.level();
        let count = |l: u32| -> u64 {
            self.counts
                .iter()
                .skip(l as usize)
                .map(|c| c.load(Ordering::Relaxed))
                .sum()
        };
        let mut n = count(level);
        while n > self.cap && level < 64 {
            level += 1;
            n = count(level);
        }
        self.above.store(n, Ordering::Relaxed);
        self.level.store(level, Ordering::Relaxed);
        level
    }
}

/// The budget of one run: its configuration, the engine's pools and the
/// pools and samplers plugins ask for by name.
#[derive(Debug)]
pub struct MemoryBudget {
    cfg: MemoryConfig,
    flows: Arc<Pool>,
    fragments: Arc<Pool>,
    fragment_datagrams: Arc<Pool>,
    tcp_reassembly: Arc<Pool>,
    named: Mutex<HashMap<String, Arc<Pool>>>,
    samplers: Mutex<HashMap<String, Arc<KeySampler>>>,
    /// Workers of the run: each worker's lease holds its part of a pool
    /// ([`MemoryBudget::lease`]).
    workers: usize,
}

/// The consumers of the budget that plugins draw on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// `[memory] connections`.
    Connections,
    /// `[memory] basic_stats`.
    BasicStats,
    /// `[memory] dns`.
    Dns,
    /// `[memory] spool`.
    Spool,
}

impl MemoryBudget {
    /// The budget of a run with the engine settings `cfg`: flows (at most
    /// `[flows] max_flows`, and the flows share divided by [`FLOW_BYTES`]),
    /// fragment bytes (at most `[defrag] max_bytes`) and out-of-order TCP
    /// bytes (at most `[tcp_reassembly] max_buffered_total`) for the whole
    /// run.
    pub fn for_engine(cfg: &crate::config::EngineConfig) -> Arc<MemoryBudget> {
        Self::for_workers(cfg, 1)
    }

    /// The budget of a run of `workers` workers with the engine settings
    /// `cfg` (as [`MemoryBudget::for_engine`]): each worker's leases hold
    /// at most its part of a pool ([`MemoryBudget::lease`]).
    pub fn for_workers(cfg: &crate::config::EngineConfig, workers: usize) -> Arc<MemoryBudget> {
        let m = &cfg.memory;
        let flows = (m.bytes(m.flows) / FLOW_BYTES)
            .min(cfg.flows.max_flows as u64)
            .max(1);
        let fragments = m.bytes(m.fragments).min(cfg.defrag.max_bytes as u64);
        let tcp = m
            .bytes(m.tcp_reassembly)
            .min(cfg.tcp_reassembly.max_buffered_total as u64);
        Arc::new(MemoryBudget {
            cfg: m.clone(),
            flows: Pool::new("flows", flows),
            fragments: Pool::new("fragments", fragments),
            fragment_datagrams: Pool::new(
                "fragment_datagrams",
                (cfg.defrag.max_datagrams as u64).max(1),
            ),
            tcp_reassembly: Pool::new("tcp_reassembly", tcp),
            named: Mutex::new(HashMap::new()),
            samplers: Mutex::new(HashMap::new()),
            workers: workers.max(1),
        })
    }

    /// A budget with the default settings.
    pub fn default_budget() -> Arc<MemoryBudget> {
        Self::for_engine(&crate::config::EngineConfig::default())
    }

    /// Workers of the run.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The configuration.
    pub fn config(&self) -> &MemoryConfig {
        &self.cfg
    }

    /// Bytes of a plugin's share.
    pub fn share(&self, s: Share) -> u64 {
        let c = &self.cfg;
        c.bytes(match s {
            Share::Connections => c.connections,
            Share::BasicStats => c.basic_stats,
            Share::Dns => c.dns,
            Share::Spool => c.spool,
        })
    }

    /// The flows of the run (counted in flows).
    pub fn flows(&self) -> &Arc<Pool> {
        &self.flows
    }

    /// IP fragment bytes.
    pub fn fragments(&self) -> &Arc<Pool> {
        &self.fragments
    }

    /// Datagrams being reassembled from fragments (at most `[defrag]
    /// max_datagrams` in the whole run, counted in datagrams).
    pub fn fragment_datagrams(&self) -> &Arc<Pool> {
        &self.fragment_datagrams
    }

    /// Out-of-order TCP bytes.
    pub fn tcp_reassembly(&self) -> &Arc<Pool> {
        &self.tcp_reassembly
    }

    /// The pool named `name`, created with `limit` units by the first
    /// caller (every worker's instance of a plugin gets the same one).
    pub fn pool(&self, name: &str, limit: u64) -> Arc<Pool> {
        let mut m = self.named.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(name.to_string())
            .or_insert_with(|| Pool::new(name, limit))
            .clone()
    }

    /// A worker's lease on `pool`: at most its part, one of as many as the
    /// run has workers ([`Pool::lease_part`]), so that what a worker drops
    /// under pressure does not depend on the others' timing.
    pub fn lease(&self, pool: &Arc<Pool>) -> Lease {
        pool.lease_part(self.workers)
    }

    /// The sampler named `name`, created with `cap` by the first caller.
    pub fn sampler(&self, name: &str, cap: u64) -> Arc<KeySampler> {
        let mut m = self.samplers.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(name.to_string())
            .or_insert_with(|| KeySampler::new(cap))
            .clone()
    }

    /// A lease on the run's spool memory (the `spool` share, one pool for
    /// every spool of every worker), for
    /// [`crate::output::RecordSpool::share_memory`].
    pub fn spool_lease(&self) -> Lease {
        self.pool("spool", self.share(Share::Spool)).lease()
    }

    /// Every pool: name, limit, peak use, refusals.
    pub fn pools(&self) -> Vec<(String, u64, u64, u64)> {
        let mut v: Vec<Arc<Pool>> = vec![
            self.flows.clone(),
            self.fragments.clone(),
            self.fragment_datagrams.clone(),
            self.tcp_reassembly.clone(),
        ];
        v.extend(
            self.named
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned(),
        );
        v.iter()
            .map(|p| (p.name().to_string(), p.limit(), p.peak(), p.refused()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_share_one_limit_and_give_back() {
        let pool = Pool::new("t", 100);
        let mut a = pool.lease();
        let mut b = pool.lease();
        assert!(a.cover(60));
        assert!(!b.cover(50));
        assert!(b.cover(40));
        assert_eq!(pool.used(), 100);
        assert!(a.cover(10));
        assert!(pool.used() <= 10 + 2 + 40);
        drop(a);
        drop(b);
        assert_eq!(pool.used(), 0);
        assert!(Lease::unlimited().cover(u64::MAX));
    }

    /// A lease of one part of two holds at most half the pool, even when
    /// the pool has room: what it gets does not depend on the other.
    #[test]
    fn a_part_lease_holds_its_part_whatever_the_others_hold() {
        let pool = Pool::new("t", 100);
        let mut a = pool.lease_part(2);
        let mut b = pool.lease_part(2);
        assert!(a.cover(50));
        assert!(!a.cover(51), "the pool has 50 more, but not for a");
        assert_eq!(pool.refused(), 1);
        assert!(a.held() <= 50);
        assert!(b.cover(50));
        assert_eq!(pool.used(), 100);
        // b's part is the same when a holds nothing
        drop(a);
        assert!(!b.cover(51));
        let mut c = pool.lease_part(3);
        assert!(c.cover(33) && !c.cover(34));
        // one part: the whole pool, as `lease`
        drop((b, c));
        assert!(pool.lease_part(1).cover(100));
        // a pool smaller than its parts still gives each one unit
        let tiny = Pool::new("tiny", 2);
        assert!(tiny.lease_part(4).cover(1));
    }

    #[test]
    fn sampler_keeps_the_same_keys_in_any_order() {
        let keys: Vec<u64> = (0..5000u64).collect();
        let kept = |order: &[u64], split: usize| {
            let s = KeySampler::new(300);
            // `split` tables fed in turn, as workers would be
            let mut tables: Vec<Vec<u64>> = vec![Vec::new(); split];
            for (i, k) in order.iter().enumerate() {
                let h = KeySampler::hash(k);
                let t = &mut tables[i % split];
                if KeySampler::passes(h, s.level()) {
                    s.add(h);
                    t.push(*k);
                }
            }
            let level = s.level();
            let mut all: Vec<u64> = tables
                .into_iter()
                .flatten()
                .filter(|k| KeySampler::passes(KeySampler::hash(k), level))
                .collect();
            all.sort_unstable();
            all
        };
        let a = kept(&keys, 1);
        let mut rev = keys.clone();
        rev.reverse();
        assert_eq!(a, kept(&rev, 3));
        assert!(a.len() <= 300 && a.len() > 75, "{}", a.len());
    }

    #[test]
    fn shares_are_checked() {
        assert_eq!(MemoryConfig::default().validate(), Ok(()));
        let c = MemoryConfig {
            flows: 90,
            ..MemoryConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("add up to"));
        let c = MemoryConfig {
            max_bytes: 1,
            ..MemoryConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .starts_with("[memory] max_bytes = 1")
        );
    }
}
