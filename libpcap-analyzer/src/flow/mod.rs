//! The flow table: bidirectional flows keyed by 5-tuple and context, with
//! idle timeouts, TCP close tracking and a cap on the number of flows.
//!
//! # Lifetime of a flow
//! - A flow is created by its first packet. Its to-server direction is the
//!   direction of that packet, corrected by the TCP handshake: a SYN-ACK
//!   comes from the server, and a bare SYN from the client.
//! - A TCP flow whose two sides have both sent FIN, or which saw a RST,
//!   lingers for `tcp_close_timeout` seconds (late ACKs and retransmissions
//!   still count for it), then ends with reason FIN or RST. A new SYN on a
//!   closing flow ends it at once and starts a new flow.
//! - A flow with no packet for its protocol's idle timeout ends with reason
//!   `Timeout`. Time is the run's clock ([`crate::clock`]): packet time for
//!   files and the system clock for live input, made to go on when an
//!   interface's time goes back, so that a flow is never torn apart by it.
//! - When the table is full (`max_flows`), the flow nearest to its idle
//!   deadline (the least recently active, relative to its timeout) is
//!   evicted to make room, with reason `Eviction`.
//! - At the end of the input every remaining flow ends with `EndOfInput`.
//!
//! Ended flows are queued; the analyzer takes them with
//! [`FlowTable::take_ended`] and calls `flow_destroyed` for each, so that it
//! fires exactly once per flow.

use crate::memory::Lease;
use crate::plugin::EndReason;
use deadlines::Deadlines;
use libpcap_tools::{Direction, FiveTuple, Flow, FlowContext, FlowId, Timestamp, ipproto};
use std::collections::HashMap;

mod deadlines;

/// TCP flag bits, as in the TCP header's flags byte.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
}

/// Settings of the flow table (section `[flows]`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct FlowConfig {
    /// Most flows tracked at once by the whole run (all workers; also
    /// bounded by the `[memory] flows` share); over it the least recently
    /// active flow of the worker that needs one is evicted.
    pub max_flows: usize,
    /// Idle timeout of TCP flows, in seconds.
    pub tcp_timeout: f64,
    /// Time a TCP flow lingers after FIN both ways or RST, in seconds.
    pub tcp_close_timeout: f64,
    /// Idle timeout of UDP flows, in seconds.
    pub udp_timeout: f64,
    /// Idle timeout of ICMP and ICMPv6 flows, in seconds.
    pub icmp_timeout: f64,
    /// Idle timeout of other protocols, in seconds.
    pub other_timeout: f64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 1_000_000,
            tcp_timeout: 300.0,
            tcp_close_timeout: 5.0,
            udp_timeout: 60.0,
            icmp_timeout: 60.0,
            other_timeout: 60.0,
        }
    }
}

/// `last_activity` of a flow none of whose packets had a timestamp: it
/// never times out, and ends with the input (or by eviction).
const NO_TIME: i64 = i64::MAX;

fn secs_to_ns(s: f64) -> i64 {
    if s.is_finite() && s > 0.0 {
        (s * 1e9).min(i64::MAX as f64) as i64
    } else {
        0
    }
}

/// The key of a flow in the table: the canonical 5-tuple and the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The 5-tuple in canonical orientation.
    pub tuple: FiveTuple,
    /// VLAN and tunnel context.
    pub context: FlowContext,
}

/// A [`FlowKey`] of two IPv4 addresses, as integers: 24 bytes where a
/// `FlowKey` takes 56, so an entry of the index takes 32 bytes, not 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey4 {
    addrs: u64,
    ports: u32,
    proto: u8,
    depth: u8,
    vlan: u16,
    tunnel: u64,
}

impl std::hash::Hash for FlowKey4 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.addrs);
        state.write_u64(
            (u64::from(self.ports) << 32)
                | (u64::from(self.vlan) << 16)
                | (u64::from(self.depth) << 8)
                | u64::from(self.proto),
        );
        state.write_u64(self.tunnel);
    }
}

impl FlowKey {
    /// The small form of a key of two IPv4 addresses.
    #[inline]
    fn small(&self) -> Option<FlowKey4> {
        let t = &self.tuple;
        let (s, d) = crate::shards::v4_pair(&t.src, &t.dst)?;
        Some(FlowKey4 {
            addrs: (u64::from(s) << 32) | u64::from(d),
            ports: (u32::from(t.src_port) << 16) | u32::from(t.dst_port),
            proto: t.proto,
            depth: self.context.depth,
            vlan: self.context.vlan,
            tunnel: self.context.tunnel,
        })
    }
}

/// The index of a flow table: slot by key, the keys of two IPv4 addresses
/// in a table of their own, small.
#[derive(Debug, Default)]
struct FlowIndex {
    v4: HashMap<FlowKey4, u32, foldhash::fast::RandomState>,
    other: HashMap<FlowKey, u32, foldhash::fast::RandomState>,
}

impl FlowIndex {
    fn len(&self) -> usize {
        self.v4.len() + self.other.len()
    }

    #[inline]
    fn get(&self, k: &FlowKey) -> Option<u32> {
        match k.small() {
            Some(s) => self.v4.get(&s).copied(),
            None => self.other.get(k).copied(),
        }
    }

    fn insert(&mut self, k: FlowKey, slot: u32) {
        match k.small() {
            Some(s) => self.v4.insert(s, slot),
            None => self.other.insert(k, slot),
        };
    }

    fn remove(&mut self, k: &FlowKey) -> Option<u32> {
        match k.small() {
            Some(s) => self.v4.remove(&s),
            None => self.other.remove(k),
        }
    }

    /// Removes the key of `slot`, whatever it is (a scan).
    fn remove_slot(&mut self, slot: u32) {
        self.v4.retain(|_, s| *s != slot);
        self.other.retain(|_, s| *s != slot);
    }

    fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.v4.values().chain(self.other.values()).copied()
    }
}

/// TCP state kept for a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpTrack {
    /// A SYN (without ACK) was seen from the client.
    pub syn: bool,
    /// A SYN-ACK was seen from the server.
    pub syn_ack: bool,
    /// The client sent FIN.
    pub fin_to_server: bool,
    /// The server sent FIN.
    pub fin_to_client: bool,
    /// A RST was seen.
    pub rst: bool,
}

/// Counters of the flow table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct FlowTableStats {
    /// Flows created.
    pub created: u64,
    /// Flows ended, by reason.
    pub ended_fin: u64,
    /// Flows ended by RST.
    pub ended_rst: u64,
    /// Flows ended by idle timeout.
    pub ended_timeout: u64,
    /// Flows evicted under the cap.
    pub ended_eviction: u64,
    /// Flows ended at the end of the input.
    pub ended_end_of_input: u64,
    /// Most flows held at once.
    pub peak: u64,
    /// Flows whose direction was corrected by a late SYN / SYN-ACK.
    pub direction_corrected: u64,
}

/// One flow and its state, stored in the table.
#[derive(Debug)]
pub struct FlowEntry<X> {
    /// The flow record.
    pub flow: Flow,
    /// TCP state (all false for other protocols).
    pub tcp: TcpTrack,
    /// Per-flow data of the analyzer (stream reassembly, …).
    pub ext: X,
    generation: u32,
    last_activity: i64,
    closing: Option<EndReason>,
}

impl<X> FlowEntry<X> {
    /// The table key of this flow: its 5-tuple in canonical orientation
    /// and its context (made from the flow rather than held beside it: 56
    /// bytes a flow).
    pub fn key(&self) -> FlowKey {
        FlowKey {
            tuple: self.flow.key.canonical(),
            context: self.flow.context,
        }
    }

    /// `Some(reason)` when the TCP flow is closed and lingering.
    pub fn closing(&self) -> Option<EndReason> {
        self.closing
    }
}

/// What the flow table counts for one packet, or for the fragments of one
/// rebuilt datagram ([`FlowTable::observe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    /// Index of the packet in the input.
    pub packet_index: u64,
    /// Frames it stands for: 1, or the fragments of a datagram.
    pub frames: u32,
    /// Sum of their on-the-wire lengths.
    pub wire_bytes: u64,
    /// Capture time of the first of those frames.
    pub first: Option<Timestamp>,
    /// Capture time of the last of those frames.
    pub last: Option<Timestamp>,
    /// Time on the run's clock ([`crate::clock::PacketTime::at`]): the
    /// flow's idle time counts from it; `last` for a single clock.
    pub at: Option<Timestamp>,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    /// What the connection state needs of the packet (its sequence number,
    /// payload and IP lengths: [`libpcap_tools::conn`]).
    pub segment: libpcap_tools::Segment,
}

/// Handle of a flow in the table, valid until the flow ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowHandle(u32);

/// The result of [`FlowTable::track`] for one packet.
#[derive(Debug, Clone, Copy)]
pub struct Tracked {
    /// The flow's handle.
    pub handle: FlowHandle,
    /// Direction of the packet in the flow.
    pub direction: Direction,
    /// `true` if this packet created the flow.
    pub created: bool,
}

/// Deadlines of ended flows a table keeps queued beyond twice its flows
/// before it drops them ([`FlowTable::arm`]): 1 MiB.
const STALE_DEADLINES: usize = 1 << 16;

/// The flow table of one worker. `X` is per-flow data of the owner, created
/// with `X::default()`.
#[derive(Debug)]
pub struct FlowTable<X> {
    cfg: FlowConfig,
    map: FlowIndex,
    slots: Vec<Option<FlowEntry<X>>>,
    free: Vec<u32>,
    deadlines: Deadlines,
    ended: Vec<(FlowEntry<X>, EndReason)>,
    now: i64,
    next_generation: u32,
    stats: FlowTableStats,
    timeouts: [i64; 5],
    /// This worker's part of the run's flows ([`crate::memory`]).
    lease: Lease,
}

/// Deterministic 64-bit FNV-1a, for flow ids that do not depend on the
/// process, the thread count or the hash seed.
pub(crate) fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The deterministic id of a flow: a hash of its canonical key, its context
/// and the capture time (ns) of its first packet, so that the same flow gets
/// the same id in any run that sees its first packet: the whole capture, one
/// shard of it, on any machine, for any `-j`. Only when that packet has no
/// time (pcapng Simple Packet Block) does the index of the packet in the
/// input take its place (tagged apart, so an index never collides with a
/// time). Two flows of one key starting in the same nanosecond share an id.
pub fn flow_id(key: &FlowKey, first_time: Option<Timestamp>, first_packet: u64) -> FlowId {
    let t = &key.tuple;
    let mut h = 0xcbf2_9ce4_8422_2325;
    for ip in [t.src, t.dst] {
        h = match ip {
            std::net::IpAddr::V4(a) => fnv1a(&a.octets(), h),
            std::net::IpAddr::V6(a) => fnv1a(&a.octets(), h),
        };
    }
    h = fnv1a(&t.src_port.to_be_bytes(), h);
    h = fnv1a(&t.dst_port.to_be_bytes(), h);
    h = fnv1a(&[t.proto, key.context.depth], h);
    h = fnv1a(&key.context.vlan.to_be_bytes(), h);
    h = fnv1a(&key.context.tunnel.to_be_bytes(), h);
    h = match first_time {
        Some(t) => fnv1a(&t.0.to_be_bytes(), fnv1a(b"t", h)),
        None => fnv1a(&first_packet.to_be_bytes(), fnv1a(b"i", h)),
    };
    FlowId(h)
}

impl<X: Default> FlowTable<X> {
    /// An empty table.
    pub fn new(cfg: FlowConfig) -> Self {
        let timeouts = [
            secs_to_ns(cfg.tcp_timeout),
            secs_to_ns(cfg.tcp_close_timeout),
            secs_to_ns(cfg.udp_timeout),
            secs_to_ns(cfg.icmp_timeout),
            secs_to_ns(cfg.other_timeout),
        ];
        FlowTable {
            cfg,
            map: FlowIndex::default(),
            slots: Vec::new(),
            free: Vec::new(),
            deadlines: Deadlines::default(),
            ended: Vec::new(),
            now: i64::MIN,
            next_generation: 0,
            stats: FlowTableStats::default(),
            timeouts,
            lease: Lease::unlimited(),
        }
    }

    /// Draws the table's flows from `lease` (this worker's part of a pool
    /// of the whole run): when it cannot cover one more, the
    /// least recently active flow is evicted, as at `max_flows`. A worker
    /// without flows always gets one.
    pub fn set_lease(&mut self, lease: Lease) {
        self.lease = lease;
    }

    /// Number of flows held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// `true` when no flow is held.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The counters.
    pub fn stats(&self) -> &FlowTableStats {
        &self.stats
    }

    /// The latest time seen (packet or clock), if any.
    pub fn now(&self) -> Option<Timestamp> {
        (self.now != i64::MIN).then_some(Timestamp(self.now))
    }

    fn timeout_of(&self, e: &FlowEntry<X>) -> i64 {
        if e.closing.is_some() {
            return self.timeouts[1];
        }
        match e.flow.key.proto {
            ipproto::TCP => self.timeouts[0],
            ipproto::UDP => self.timeouts[2],
            ipproto::ICMP | ipproto::ICMPV6 => self.timeouts[3],
            _ => self.timeouts[4],
        }
    }

    /// The flow of `handle`.
    pub fn get(&self, handle: FlowHandle) -> Option<&FlowEntry<X>> {
        self.slots.get(handle.0 as usize).and_then(Option::as_ref)
    }

    /// The flow of `handle`, mutable.
    pub fn get_mut(&mut self, handle: FlowHandle) -> Option<&mut FlowEntry<X>> {
        self.slots
            .get_mut(handle.0 as usize)
            .and_then(Option::as_mut)
    }

    /// Advances the table's clock to `now` and ends the flows whose idle or
    /// linger deadline has passed.
    #[inline]
    pub fn advance(&mut self, now: Timestamp) {
        if now.0 > self.now {
            self.now = now.0;
        }
        if self.deadlines.any_due(self.now) {
            self.expire();
        }
    }

    /// Ends (or re-arms) every deadline due at `self.now`.
    #[inline(never)]
    fn expire(&mut self) {
        while let Some((deadline, slot, generation)) = self.deadlines.pop_due(self.now) {
            self.check_deadline(deadline, slot, generation, false);
        }
    }

    /// Looks at a popped deadline: ends the flow if it really expired (or if
    /// `force`), otherwise re-arms it. Returns `true` if a flow ended.
    fn check_deadline(&mut self, popped: i64, slot: u32, generation: u32, force: bool) -> bool {
        let Some(Some(e)) = self.slots.get(slot as usize) else {
            return false;
        };
        if e.generation != generation {
            return false;
        }
        let deadline = e.last_activity.saturating_add(self.timeout_of(e));
        // a stale entry (the flow was active since it was queued) is re-armed,
        // also when evicting, so that the least recently active flow goes first
        if deadline > popped || (!force && deadline > self.now) {
            self.deadlines.push((deadline, slot, generation));
            return false;
        }
        let reason = match e.closing {
            Some(r) => r,
            None if force => EndReason::Eviction,
            None => EndReason::Timeout,
        };
        self.end(slot, reason);
        true
    }

    fn end(&mut self, slot: u32, reason: EndReason) {
        // finished where it lies, then moved once (an entry is large: each
        // move is a copy)
        let Some(held) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(e) = held.as_mut() else {
            return;
        };
        e.flow.conn.finish();
        // the key the flow was indexed by, unless its 5-tuple or context
        // was changed through `get_mut`: then found by its slot
        if self.map.remove(&e.key()) != Some(slot) {
            self.map.remove_slot(slot);
        }
        if let Some(e) = held.take() {
            self.ended.push((e, reason));
        }
        self.lease.cover(self.map.len() as u64);
        self.free.push(slot);
        match reason {
            EndReason::Fin => self.stats.ended_fin += 1,
            EndReason::Rst => self.stats.ended_rst += 1,
            EndReason::Timeout => self.stats.ended_timeout += 1,
            EndReason::Eviction => self.stats.ended_eviction += 1,
            EndReason::EndOfInput => self.stats.ended_end_of_input += 1,
        }
    }

    /// Evicts one flow: the one with the earliest deadline.
    fn evict_one(&mut self) {
        while let Some((deadline, slot, generation)) = self.deadlines.pop_min() {
            if self.check_deadline(deadline, slot, generation, true) {
                return;
            }
        }
    }

    /// Finds or creates the flow of a packet with key `tuple` (as seen in the
    /// packet), counts the packet, and updates TCP state.
    ///
    /// `frames` and `wire_bytes` are 1 and the frame's length, or the
    /// fragments of a reassembled datagram. `tcp_flags` is 0 for other
    /// protocols.
    #[allow(clippy::too_many_arguments)] // one packet's worth of facts; a struct would only rename them
    pub fn track(
        &mut self,
        tuple: &FiveTuple,
        context: FlowContext,
        ts: Option<Timestamp>,
        packet_index: u64,
        frames: u32,
        wire_bytes: u64,
        tcp_flags: u8,
    ) -> Tracked {
        self.track_frames(
            tuple,
            context,
            packet_index,
            frames,
            wire_bytes,
            ts,
            ts,
            tcp_flags,
        )
    }

    /// As [`FlowTable::track`], for `frames` frames seen from `first` to
    /// `last` (the fragments of a rebuilt datagram).
    #[allow(clippy::too_many_arguments)] // see track()
    pub fn track_frames(
        &mut self,
        tuple: &FiveTuple,
        context: FlowContext,
        packet_index: u64,
        frames: u32,
        wire_bytes: u64,
        first: Option<Timestamp>,
        ts: Option<Timestamp>,
        tcp_flags: u8,
    ) -> Tracked {
        let seen = Observation {
            packet_index,
            frames,
            wire_bytes,
            first,
            last: ts,
            at: ts,
            tcp_flags,
            segment: libpcap_tools::Segment {
                flags: tcp_flags,
                tcp: tuple.proto == ipproto::TCP,
                ..libpcap_tools::Segment::default()
            },
        };
        self.observe(tuple, context, &seen)
    }

    /// Finds or creates the flow of `tuple` (as seen in the packet), counts
    /// what `seen` stands for and updates the TCP state. The flow's idle
    /// time counts from `seen.at` (the run's clock, [`crate::clock`]), its
    /// reported times are the captured `first` and `last`.
    pub fn observe(
        &mut self,
        tuple: &FiveTuple,
        context: FlowContext,
        seen: &Observation,
    ) -> Tracked {
        let Observation {
            packet_index,
            frames,
            wire_bytes,
            first,
            last: ts,
            at,
            tcp_flags,
            segment,
        } = *seen;
        if let Some(t) = at {
            self.advance(t);
        }
        let key = FlowKey {
            tuple: tuple.canonical(),
            context,
        };
        let is_tcp = tuple.proto == ipproto::TCP;
        let pure_syn = is_tcp && tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;

        let mut slot = self.map.get(&key);
        // a new SYN on a closed flow: the old connection is over, a new one starts
        if let Some(s) = slot
            && pure_syn
            && let Some(Some(e)) = self.slots.get(s as usize)
            && let Some(reason) = e.closing
        {
            self.end(s, reason);
            slot = None;
        }
        let created = slot.is_none();
        let slot = match slot {
            Some(s) => s,
            None => self.create(key, tuple, at, first.or(ts), packet_index, tcp_flags),
        };
        let Some(Some(e)) = self.slots.get_mut(slot as usize) else {
            // unreachable by construction: the slot was just looked up or filled
            return Tracked {
                handle: FlowHandle(slot),
                direction: Direction::ToServer,
                created,
            };
        };
        let mut was_closing = false;
        let mut direction = if *tuple == e.flow.key {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        if is_tcp {
            let syn_ack =
                tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == (tcp_flags::SYN | tcp_flags::ACK);
            // direction correction: a bare SYN from the "server" side, or a
            // SYN-ACK from the "client" side, before any handshake packet
            // confirmed the orientation
            let wrong = (pure_syn && direction == Direction::ToClient && !e.tcp.syn)
                || (syn_ack && direction == Direction::ToServer && !e.tcp.syn && !e.tcp.syn_ack);
            if wrong {
                flip(e);
                direction = direction.reverse();
                self.stats.direction_corrected += 1;
            }
            if pure_syn {
                e.tcp.syn = true;
            }
            if syn_ack {
                e.tcp.syn_ack = true;
            }
            if tcp_flags & tcp_flags::FIN != 0 {
                match direction {
                    Direction::ToServer => e.tcp.fin_to_server = true,
                    Direction::ToClient => e.tcp.fin_to_client = true,
                }
            }
            if tcp_flags & tcp_flags::RST != 0 {
                e.tcp.rst = true;
            }
            match direction {
                Direction::ToServer => e.flow.tcp_flags_to_server |= tcp_flags,
                Direction::ToClient => e.flow.tcp_flags_to_client |= tcp_flags,
            }
            was_closing = e.closing.is_some();
            if e.closing.is_none() {
                if e.tcp.rst {
                    e.closing = Some(EndReason::Rst);
                } else if e.tcp.fin_to_server && e.tcp.fin_to_client {
                    e.closing = Some(EndReason::Fin);
                }
            }
        }
        e.flow
            .conn
            .update(direction == Direction::ToServer, &segment);
        e.flow
            .count_frames(direction, u64::from(frames), wire_bytes, first.or(ts), ts);
        // activity is the packet's own (run) time: a packet without a
        // timestamp (pcapng Simple Packet Block) does not move the deadline,
        // so expiry does not depend on which other packets this table has seen
        if let Some(t) = at {
            e.last_activity = if e.last_activity == NO_TIME {
                t.0
            } else {
                e.last_activity.max(t.0)
            };
        }
        if e.closing.is_some() && !was_closing {
            // arm the (shorter) linger deadline; later activity re-arms it lazily
            let deadline = e.last_activity.saturating_add(self.timeouts[1]);
            let generation = e.generation;
            self.arm((deadline, slot, generation));
        }
        Tracked {
            handle: FlowHandle(slot),
            direction,
            created,
        }
    }

    fn create(
        &mut self,
        key: FlowKey,
        tuple: &FiveTuple,
        ts: Option<Timestamp>,
        captured: Option<Timestamp>,
        index: u64,
        flags: u8,
    ) -> u32 {
        let n = self.map.len();
        if n > 0 && (n >= self.cfg.max_flows || !self.lease.cover(n as u64 + 1)) {
            self.evict_one();
        }
        let mut oriented = *tuple;
        if tuple.proto == ipproto::TCP
            && flags & (tcp_flags::SYN | tcp_flags::ACK) == (tcp_flags::SYN | tcp_flags::ACK)
        {
            oriented = tuple.reversed();
        }
        let flow = Flow::new(flow_id(&key, captured, index), oriented, key.context);
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let last_activity = ts.map_or(NO_TIME, |t| t.0);
        let entry = FlowEntry {
            flow,
            tcp: TcpTrack {
                syn_ack: oriented != *tuple,
                ..TcpTrack::default()
            },
            ext: X::default(),
            generation,
            last_activity,
            closing: None,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                if let Some(place) = self.slots.get_mut(s as usize) {
                    *place = Some(entry);
                }
                s
            }
            None => {
                self.slots.push(Some(entry));
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.map.insert(key, slot);
        self.stats.created += 1;
        self.stats.peak = self.stats.peak.max(self.map.len() as u64);
        if let Some(Some(e)) = self.slots.get(slot as usize) {
            let deadline = e.last_activity.saturating_add(self.timeout_of(e));
            self.arm((deadline, slot, generation));
        }
        slot
    }

    /// Queues a flow's deadline. The deadlines of flows that ended before
    /// them (a closed connection's idle deadline, minutes after its linger
    /// one) stay queued until they come out; when they outnumber the flows
    /// held, they are dropped, so that the queue stays within the flows
    /// budget however fast connections open and close.
    fn arm(&mut self, d: deadlines::Deadline) {
        self.deadlines.push(d);
        if self.deadlines.len() > 2 * self.map.len() + STALE_DEADLINES {
            let slots = &self.slots;
            self.deadlines.retain(|&(_, slot, generation)| {
                matches!(slots.get(slot as usize), Some(Some(e)) if e.generation == generation)
            });
        }
    }

    /// The flows in the table (not ended yet), in no particular order.
    pub fn flows(&self) -> impl Iterator<Item = &Flow> {
        self.slots.iter().flatten().map(|e| &e.flow)
    }

    /// The entries in the table, in no particular order.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> impl Iterator<Item = &FlowEntry<X>> {
        self.slots.iter().flatten()
    }

    /// Ends every remaining flow with reason `EndOfInput`.
    pub fn drain(&mut self) {
        let order = self.drain_order();
        self.end_at_input_end(&order);
        // nothing is left: give the memory back for the results
        self.deadlines = Deadlines::default();
        self.map = FlowIndex::default();
        self.slots = Vec::new();
        self.free = Vec::new();
    }

    /// The slots of the flows held, in the order [`FlowTable::drain`] ends
    /// them (by flow id): a caller may end them a few at a time with
    /// [`FlowTable::end_at_input_end`], taking the ended flows in between,
    /// so that they are not all held twice at once.
    pub fn drain_order(&self) -> Vec<u32> {
        let mut slots: Vec<u32> = self.map.slots().collect();
        // deterministic order: by flow id
        slots.sort_by_key(|s| {
            self.slots
                .get(*s as usize)
                .and_then(Option::as_ref)
                .map(|e| e.flow.id)
        });
        slots
    }

    /// Ends the flows of `slots` (from [`FlowTable::drain_order`]) as at
    /// the end of the input (or by their closing reason).
    pub fn end_at_input_end(&mut self, slots: &[u32]) {
        for &s in slots {
            let Some(e) = self.slots.get(s as usize).and_then(Option::as_ref) else {
                continue;
            };
            let reason = e.closing.unwrap_or(EndReason::EndOfInput);
            self.end(s, reason);
        }
    }

    /// Takes the buffer of ended flows (to hand back with
    /// [`FlowTable::restore_ended`] once emptied, keeping its capacity).
    pub fn take_ended_buffer(&mut self) -> Vec<(FlowEntry<X>, EndReason)> {
        std::mem::take(&mut self.ended)
    }

    /// Gives back the emptied buffer of [`FlowTable::take_ended_buffer`].
    pub fn restore_ended(&mut self, mut buffer: Vec<(FlowEntry<X>, EndReason)>) {
        if self.ended.is_empty() {
            buffer.clear();
            self.ended = buffer;
        }
    }

    /// Takes the flows that ended since the last call, in the order they ended.
    pub fn take_ended(&mut self) -> std::vec::Drain<'_, (FlowEntry<X>, EndReason)> {
        self.ended.drain(..)
    }

    /// `true` if flows ended since the last [`FlowTable::take_ended`].
    pub fn has_ended(&self) -> bool {
        !self.ended.is_empty()
    }
}

fn flip<X>(e: &mut FlowEntry<X>) {
    let f = &mut e.flow;
    f.key = f.key.reversed();
    std::mem::swap(&mut f.to_server, &mut f.to_client);
    std::mem::swap(&mut f.tcp_flags_to_server, &mut f.tcp_flags_to_client);
    std::mem::swap(&mut e.tcp.fin_to_server, &mut e.tcp.fin_to_client);
    f.conn.flip();
}

#[cfg(test)]
mod tests;
