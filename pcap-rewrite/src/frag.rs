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
//! first).
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

/// The resolver (see the [module docs](self)).
#[derive(Debug, Default)]
pub struct FragResolver {
    cfg: FragConfig,
    known: HashMap<DatagramId, (Option<(u16, u16)>, Timestamp)>,
    known_order: VecDeque<(DatagramId, Timestamp)>,
    pending: HashMap<DatagramId, (Timestamp, Vec<Pending>)>,
    pending_order: VecDeque<(DatagramId, Timestamp)>,
    buffered: usize,
    now: Timestamp,
    /// Largest number of fragments buffered at once.
    pub peak_buffered: usize,
    /// Fragments released as orphans.
    pub orphans: u64,
    /// Fragments that waited for their first fragment and got its ports.
    pub resolved_late: u64,
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
        let Some(frag) = key.frag else {
            return Resolution::Ready(key);
        };
        let id = frag.datagram;
        if frag.first {
            self.remember(id, key.ports);
            if let Some((_, list)) = self.pending.remove(&id) {
                self.buffered = self.buffered.saturating_sub(list.len());
                for mut p in list {
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
        if let Some((ports, _)) = self.known.get(&id) {
            return Resolution::Ready(PacketKey {
                ports: *ports,
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
        let entry = self.pending.entry(id).or_insert_with(|| {
            self.pending_order.push_back((id, now));
            (now, Vec::new())
        });
        entry.1.push(Pending { packet, key, tag });
        self.buffered += 1;
        self.peak_buffered = self.peak_buffered.max(self.buffered);
        Resolution::Buffered
    }

    fn remember(&mut self, id: DatagramId, ports: Option<(u16, u16)>) {
        let now = self.now;
        if self.known.insert(id, (ports, now)).is_none() {
            self.known_order.push_back((id, now));
        } else {
            // refreshed: record the new time so that expiry finds it
            self.known_order.push_back((id, now));
        }
        while self.known.len() > self.cfg.max_datagrams.max(1) {
            let Some((old, t)) = self.known_order.pop_front() else {
                break;
            };
            if self.known.get(&old).is_some_and(|(_, kt)| *kt == t) {
                self.known.remove(&old);
            }
        }
    }

    /// Orphans the oldest pending datagram; `false` if none is pending.
    fn orphan_oldest(&mut self, released: &mut Vec<(Pending, bool)>) -> bool {
        while let Some((id, t)) = self.pending_order.pop_front() {
            if self.pending.get(&id).is_some_and(|(pt, _)| *pt == t)
                && let Some((_, list)) = self.pending.remove(&id)
            {
                self.buffered = self.buffered.saturating_sub(list.len());
                self.orphans += list.len() as u64;
                released.extend(list.into_iter().map(|p| (p, true)));
                return true;
            }
        }
        false
    }

    fn expire(&mut self, released: &mut Vec<(Pending, bool)>) {
        let limit = self.now.0.saturating_sub(self.cfg.timeout_ns);
        while let Some(&(_, t)) = self.pending_order.front() {
            if t.0 >= limit {
                break;
            }
            if !self.orphan_oldest(released) {
                break;
            }
        }
        while let Some(&(id, t)) = self.known_order.front() {
            if t.0 >= limit {
                break;
            }
            self.known_order.pop_front();
            if self.known.get(&id).is_some_and(|(_, kt)| *kt == t) {
                self.known.remove(&id);
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
}
