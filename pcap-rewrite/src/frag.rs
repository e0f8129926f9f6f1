//! Ports for fragments: the fragments of a datagram follow the decision of
//! the datagram, which needs the ports found in its first fragment.
//!
//! When a filter or the per-flow split needs ports, a non-first fragment
//! whose first fragment has already been seen gets the ports of that first
//! fragment. A non-first fragment that arrives before its first fragment is
//! buffered (a copy) until the first fragment comes; the buffered fragments
//! are then released, with the ports filled in, just before the first
//! fragment itself (so the datagram's fragments stay together in the output,
//! and may come out earlier relative to other packets than in the input).
//!
//! Memory is bounded: at most [`FragConfig::max_buffered`] fragments are
//! buffered, and a datagram waits at most [`FragConfig::timeout_ns`] of
//! capture time. The ports of first fragments are remembered for the same
//! timeout, up to [`FragConfig::max_datagrams`] datagrams (oldest forgotten
//! first, counted in [`FragResolver::ports_forgotten`]). The queues that
//! order these entries by time are bounded by count as well
//! ([`FragConfig::max_order_entries`]), so memory stays bounded when
//! packets have no timestamp or the clock stands still.
//!
//! # When the first fragment never comes
//!
//! Fragments still buffered at the timeout, when the cap forces the oldest
//! datagram out, or at the end of the input are *orphans*. They are counted
//! and handled by [`OrphanPolicy`]: by default (`Evaluate`) the filter is
//! evaluated without ports, so a port or 5-tuple term does not match them
//! (a keep rule `port=53` drops them, a drop rule `port=53` keeps them),
//! while address and protocol terms still apply.

use crate::key::{DatagramId, PacketKey};
use libpcap_tools::{OwnedPacket, Timestamp};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

/// What to do with fragments whose first fragment never arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrphanPolicy {
    /// Evaluate the filter without ports (the default).
    #[default]
    Evaluate,
    /// Write them.
    Keep,
    /// Drop them.
    Drop,
}

/// Limits of the fragment buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragConfig {
    /// Most fragments buffered at once.
    pub max_buffered: usize,
    /// Most datagrams whose ports are remembered.
    pub max_datagrams: usize,
    /// How long (capture time, ns) a datagram waits for its first fragment,
    /// and how long the ports of a first fragment are remembered.
    pub timeout_ns: i64,
    /// Handling of orphans.
    pub orphans: OrphanPolicy,
}

impl Default for FragConfig {
    fn default() -> Self {
        FragConfig {
            max_buffered: 10_000,
            max_datagrams: 65_536,
            timeout_ns: 30 * 1_000_000_000,
            orphans: OrphanPolicy::Evaluate,
        }
    }
}

impl FragConfig {
    /// Most entries the resolver keeps in its two expiry queues together:
    /// `2 × max_datagrams + 2 × max_buffered` (each at least 1). Each queue
    /// holds at most twice the entries of the map it orders (see
    /// [`FragResolver`]), whether timestamps advance or not.
    pub fn max_order_entries(&self) -> usize {
        2 * self.max_datagrams.max(1) + 2 * self.max_buffered.max(1)
    }
}

/// A buffered fragment: the packet as it will be written, and its key.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The converted packet.
    pub packet: OwnedPacket,
    /// Its key (ports filled in on release).
    pub key: PacketKey,
    /// Extra routing data of the caller (the output interface).
    pub tag: u32,
}

/// What happened to a packet given to [`FragResolver::resolve`].
#[derive(Debug)]
pub enum Resolution {
    /// Process the packet now (its key may have gained ports).
    Ready(PacketKey),
    /// The packet was buffered; the caller must not write it now.
    Buffered,
}

/// An entry of an expiry queue: it is live while the map entry of `id`
/// has the same `seq` (a refreshed or removed entry leaves a stale one).
#[derive(Debug, Clone, Copy)]
struct Slot {
    id: DatagramId,
    ts: Timestamp,
    seq: u64,
}

/// The ports of a first fragment, when they were seen.
#[derive(Debug, Clone, Copy)]
struct Known {
    ports: Option<(u16, u16)>,
    ts: Timestamp,
    seq: u64,
}

/// The fragments of one datagram waiting for its first fragment.
#[derive(Debug)]
struct Waiting {
    seq: u64,
    list: Vec<Pending>,
}

/// The resolver (see the [module docs](self)).
///
/// # Memory
///
/// The maps hold at most [`FragConfig::max_datagrams`] datagrams (ports)
/// and [`FragConfig::max_buffered`] fragments. Each map has an expiry queue
/// in capture-time order, trimmed by the timeout. A datagram whose ports
/// are seen again later, or whose waiting fragments are released by their
/// first fragment, leaves a stale entry behind, and the time does not
/// advance without timestamps (pcapng Simple Packet Blocks) or with a frozen
/// clock: so a queue is also compacted (its stale entries dropped, counted
/// in [`FragResolver::order_entries_dropped`]) whenever it holds more than
/// twice the cap of its map. Together they never hold more than
/// [`FragConfig::max_order_entries`] entries.
#[derive(Debug, Default)]
pub struct FragResolver {
    cfg: FragConfig,
    known: HashMap<DatagramId, Known>,
    known_order: VecDeque<Slot>,
    pending: HashMap<DatagramId, Waiting>,
    pending_order: VecDeque<Slot>,
    seq: u64,
    buffered: usize,
    now: Timestamp,
    /// Largest number of fragments buffered at once.
    pub peak_buffered: usize,
    /// Fragments released as orphans.
    pub orphans: u64,
    /// Fragments that waited for their first fragment and got its ports.
    pub resolved_late: u64,
    /// Datagrams whose first-fragment ports were forgotten before their
    /// timeout because [`FragConfig::max_datagrams`] were remembered (their
    /// later fragments wait, or become orphans, as if the first fragment
    /// had not been seen).
    pub ports_forgotten: u64,
    /// Stale entries dropped from the expiry queues by compaction (no
    /// datagram is lost by it).
    pub order_entries_dropped: u64,
    /// Largest number of entries in the expiry queues at once (at most
    /// [`FragConfig::max_order_entries`]).
    pub peak_order_entries: usize,
}

/// Drops the stale entries of `order` when it holds more than twice `cap`
/// (and more than twice the live entries); returns how many were dropped.
fn compact<V>(
    order: &mut VecDeque<Slot>,
    map: &HashMap<DatagramId, V>,
    cap: usize,
    seq_of: impl Fn(&V) -> u64,
) -> u64 {
    let limit = 2 * cap.max(map.len()).max(1);
    if order.len() <= limit {
        return 0;
    }
    let before = order.len();
    order.retain(|s| map.get(&s.id).is_some_and(|v| seq_of(v) == s.seq));
    (before - order.len()) as u64
}

impl FragResolver {
    /// A resolver with these limits.
    pub fn new(cfg: FragConfig) -> FragResolver {
        FragResolver {
            cfg,
            ..FragResolver::default()
        }
    }

    /// The orphan policy.
    pub fn orphan_policy(&self) -> OrphanPolicy {
        self.cfg.orphans
    }

    /// Resolves the ports of `key`. `released` receives fragments that are
    /// now ready (with their ports) and orphans (`true` in the tuple), in
    /// the order they must be processed, before the current packet.
    ///
    /// `make_pending` is called only when the packet has to be buffered.
    pub fn resolve(
        &mut self,
        key: PacketKey,
        ts: Option<Timestamp>,
        make_pending: impl FnOnce() -> (OwnedPacket, u32),
        released: &mut Vec<(Pending, bool)>,
    ) -> Resolution {
        if let Some(t) = ts {
            self.now = self.now.max(t);
        }
        self.expire(released);
        let r = self.resolve_now(key, make_pending, released);
        self.peak_order_entries = self
            .peak_order_entries
            .max(self.known_order.len() + self.pending_order.len());
        r
    }

    fn resolve_now(
        &mut self,
        key: PacketKey,
        make_pending: impl FnOnce() -> (OwnedPacket, u32),
        released: &mut Vec<(Pending, bool)>,
    ) -> Resolution {
        let Some(frag) = key.frag else {
            return Resolution::Ready(key);
        };
        let id = frag.datagram;
        if frag.first {
            self.remember(id, key.ports);
            if let Some(w) = self.pending.remove(&id) {
                self.buffered = self.buffered.saturating_sub(w.list.len());
                for mut p in w.list {
                    p.key.ports = key.ports;
                    self.resolved_late += 1;
                    released.push((p, false));
                }
            }
            return Resolution::Ready(key);
        }
        // protocols without ports: the first fragment has nothing to add
        if key.ports.is_some() || crate::key::portless(id.proto) {
            return Resolution::Ready(key);
        }
        if let Some(k) = self.known.get(&id) {
            return Resolution::Ready(PacketKey {
                ports: k.ports,
                ..key
            });
        }
        // buffer, making room first
        while self.buffered >= self.cfg.max_buffered.max(1) {
            if !self.orphan_oldest(released) {
                break;
            }
        }
        let (packet, tag) = make_pending();
        let now = self.now;
        let w = match self.pending.entry(id) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                self.seq += 1;
                let seq = self.seq;
                self.pending_order.push_back(Slot { id, ts: now, seq });
                v.insert(Waiting {
                    seq,
                    list: Vec::new(),
                })
            }
        };
        w.list.push(Pending { packet, key, tag });
        self.buffered += 1;
        self.peak_buffered = self.peak_buffered.max(self.buffered);
        self.order_entries_dropped += compact(
            &mut self.pending_order,
            &self.pending,
            self.cfg.max_buffered,
            |w| w.seq,
        );
        Resolution::Buffered
    }

    fn remember(&mut self, id: DatagramId, ports: Option<(u16, u16)>) {
        let now = self.now;
        if let Some(k) = self.known.get_mut(&id)
            && k.ts == now
        {
            // seen again at the same time: its queue entry stays right
            k.ports = ports;
            return;
        }
        // new, or refreshed at a later time: a new queue entry (the old one,
        // if any, becomes stale)
        self.seq += 1;
        let seq = self.seq;
        self.known.insert(
            id,
            Known {
                ports,
                ts: now,
                seq,
            },
        );
        self.known_order.push_back(Slot { id, ts: now, seq });
        while self.known.len() > self.cfg.max_datagrams.max(1) {
            let Some(old) = self.known_order.pop_front() else {
                break;
            };
            if self.known.get(&old.id).is_some_and(|k| k.seq == old.seq) {
                self.known.remove(&old.id);
                self.ports_forgotten += 1;
            }
        }
        self.order_entries_dropped += compact(
            &mut self.known_order,
            &self.known,
            self.cfg.max_datagrams,
            |k| k.seq,
        );
    }

    /// Orphans the oldest pending datagram; `false` if none is pending.
    fn orphan_oldest(&mut self, released: &mut Vec<(Pending, bool)>) -> bool {
        while let Some(s) = self.pending_order.pop_front() {
            if self.pending.get(&s.id).is_some_and(|w| w.seq == s.seq)
                && let Some(w) = self.pending.remove(&s.id)
            {
                self.buffered = self.buffered.saturating_sub(w.list.len());
                self.orphans += w.list.len() as u64;
                released.extend(w.list.into_iter().map(|p| (p, true)));
                return true;
            }
        }
        false
    }

    fn expire(&mut self, released: &mut Vec<(Pending, bool)>) {
        let limit = self.now.0.saturating_sub(self.cfg.timeout_ns);
        while let Some(s) = self.pending_order.front() {
            if s.ts.0 >= limit {
                break;
            }
            if !self.orphan_oldest(released) {
                break;
            }
        }
        while let Some(&s) = self.known_order.front() {
            if s.ts.0 >= limit {
                break;
            }
            self.known_order.pop_front();
            if self.known.get(&s.id).is_some_and(|k| k.seq == s.seq) {
                self.known.remove(&s.id);
            }
        }
    }

    /// Releases every buffered fragment as an orphan (end of input).
    pub fn finish(&mut self, released: &mut Vec<(Pending, bool)>) {
        while self.orphan_oldest(released) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::PacketKey;
    use libpcap_analyzer::build;
    use std::net::Ipv4Addr;

    fn frags(id: u16) -> Vec<Vec<u8>> {
        let (a, b) = (Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2));
        let seg = build::udp(a.into(), b.into(), 5000, 53, &[7u8; 100]);
        build::ipv4_fragments(a, b, 17, id, &seg, 40)
    }

    fn owned() -> (OwnedPacket, u32) {
        (OwnedPacket::default(), 0)
    }

    #[test]
    fn late_first_fragment_releases_the_others_with_ports() {
        let f = frags(9);
        let mut r = FragResolver::new(FragConfig::default());
        let mut rel = Vec::new();
        for p in f.iter().skip(1).rev() {
            let k = PacketKey::from_ipv4(p).unwrap();
            assert!(matches!(
                r.resolve(k, None, owned, &mut rel),
                Resolution::Buffered
            ));
        }
        assert!(rel.is_empty());
        let k0 = PacketKey::from_ipv4(&f[0]).unwrap();
        assert!(matches!(
            r.resolve(k0, None, owned, &mut rel),
            Resolution::Ready(_)
        ));
        assert_eq!(rel.len(), f.len() - 1);
        assert!(
            rel.iter()
                .all(|(p, orphan)| !orphan && p.key.ports == Some((5000, 53)))
        );
    }

    #[test]
    fn cap_and_timeout_make_orphans() {
        let cfg = FragConfig {
            max_buffered: 2,
            timeout_ns: 10,
            ..FragConfig::default()
        };
        let mut r = FragResolver::new(cfg);
        let mut rel = Vec::new();
        for id in 0..3u16 {
            let f = frags(id);
            let k = PacketKey::from_ipv4(&f[1]).unwrap();
            r.resolve(k, Some(Timestamp(0)), owned, &mut rel);
        }
        assert_eq!(rel.len(), 1, "the cap of 2 orphaned the oldest");
        assert!(rel[0].1);
        // time passes beyond the timeout: the rest become orphans
        let f = frags(99);
        let k = PacketKey::from_ipv4(&f[0]).unwrap();
        r.resolve(k, Some(Timestamp(100)), owned, &mut rel);
        assert_eq!(rel.len(), 3);
        assert_eq!(r.orphans, 3);
    }

    fn key_of(f: &[u8]) -> PacketKey {
        PacketKey::from_ipv4(f).unwrap()
    }

    /// Checks the queue bounds of `r` (configured with `cfg`).
    fn assert_bounded(r: &FragResolver, cfg: &FragConfig) {
        assert!(
            r.known_order.len() <= 2 * cfg.max_datagrams,
            "{}",
            r.known_order.len()
        );
        assert!(
            r.pending_order.len() <= 2 * cfg.max_buffered,
            "{}",
            r.pending_order.len()
        );
        assert!(r.peak_order_entries <= cfg.max_order_entries());
    }

    #[test]
    fn order_queues_stay_bounded_without_timestamps() {
        let cfg = FragConfig {
            max_buffered: 8,
            max_datagrams: 16,
            ..FragConfig::default()
        };
        let mut r = FragResolver::new(cfg);
        let mut rel = Vec::new();
        let rounds = 5_000u32;
        for i in 0..rounds {
            // a datagram whose fragments come before the first one, and
            // now and then a fragment whose first fragment never comes
            let f = frags(i as u16);
            if i % 100 == 0 {
                let lone = frags(i as u16 ^ 0x8000);
                r.resolve(key_of(&lone[1]), None, owned, &mut rel);
            }
            for p in f.iter().skip(1) {
                r.resolve(key_of(p), None, owned, &mut rel);
            }
            r.resolve(key_of(&f[0]), None, owned, &mut rel);
            // the first fragment again (same time: nothing new to order)
            r.resolve(key_of(&f[0]), None, owned, &mut rel);
            assert_bounded(&r, &cfg);
        }
        r.finish(&mut rel);
        let late = rel.iter().filter(|(_, orphan)| !orphan).count() as u64;
        assert_eq!(late, u64::from(rounds) * (frags(0).len() as u64 - 1));
        assert_eq!(r.resolved_late, late);
        assert_eq!(
            r.orphans,
            u64::from(rounds / 100),
            "only the lone fragments"
        );
        assert_eq!(r.ports_forgotten, u64::from(rounds) - 16);
        assert!(r.order_entries_dropped > 0);
    }

    #[test]
    fn order_queues_stay_bounded_when_time_creeps_within_the_timeout() {
        // the same first fragment over and over, 1 ns apart: nothing ever
        // times out, and every sighting refreshes the datagram
        let cfg = FragConfig {
            max_buffered: 4,
            max_datagrams: 4,
            ..FragConfig::default()
        };
        let mut r = FragResolver::new(cfg);
        let mut rel = Vec::new();
        let f = frags(7);
        for t in 0..10_000i64 {
            r.resolve(key_of(&f[0]), Some(Timestamp(t)), owned, &mut rel);
            assert_bounded(&r, &cfg);
        }
        assert_eq!(r.ports_forgotten, 0, "one datagram, never forgotten");
        // its ports are still known
        let k = r.resolve(key_of(&f[1]), Some(Timestamp(10_000)), owned, &mut rel);
        assert!(matches!(k, Resolution::Ready(k) if k.ports == Some((5000, 53))));
    }

    #[test]
    fn timeout_still_applies_after_compaction() {
        let cfg = FragConfig {
            max_buffered: 2,
            max_datagrams: 2,
            timeout_ns: 1_000,
            ..FragConfig::default()
        };
        let mut r = FragResolver::new(cfg);
        let mut rel = Vec::new();
        // resolved datagrams leave stale entries, compacted along the way
        for id in 0..100u16 {
            let f = frags(id);
            r.resolve(key_of(&f[1]), Some(Timestamp(0)), owned, &mut rel);
            r.resolve(key_of(&f[0]), Some(Timestamp(0)), owned, &mut rel);
        }
        assert!(r.order_entries_dropped > 0);
        rel.clear();
        // one waits; the clock passes the timeout: it is orphaned, and the
        // ports remembered at time 0 are forgotten
        let f = frags(500);
        r.resolve(key_of(&f[1]), Some(Timestamp(10)), owned, &mut rel);
        assert!(rel.is_empty());
        let g = frags(99);
        let k = r.resolve(key_of(&g[1]), Some(Timestamp(5_000)), owned, &mut rel);
        assert_eq!(rel.len(), 1);
        assert!(rel[0].1, "orphan");
        assert!(matches!(k, Resolution::Buffered), "ports of 99 expired");
        assert_eq!(r.ports_forgotten, 98, "100 datagrams, 2 remembered");
    }
}
