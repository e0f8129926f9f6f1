//! The single-threaded [`Analyzer`]: decodes every layer of each packet,
//! rebuilds fragmented datagrams and TCP streams, keeps the flow table and
//! calls the plugins.

use crate::clock::{PacketTime, RunClock};
use crate::config::EngineConfig;
use crate::control::{RunControl, RunState, ShardMonitor};
use crate::decode::link::{LinkError, LinkInfo, decode_ethernet, decode_link};
use crate::decode::tunnel;
use crate::defrag::{DefragFailure, DefragOutcome, Defragmenter, FragmentInfo, FragmentKey};
use crate::dispatch::{Dispatch, PluginHandle, StreamListeners};
use crate::flow::{FlowHandle, FlowTable, Observation, tcp_flags};
use crate::memory::MemoryBudget;
use crate::plugin::{
    Counters, DecapLayer, Decapsulated, EndReason, Layers, LinkLayer, NetworkLayer, PacketContext,
    Plugin, StreamData, TransportLayer,
};
use crate::proto::community_id::icmp_port_equivalents;
use crate::reassembly::{StreamBudget, StreamConfig, StreamEvent, TcpStreamDirection};
use crate::stats::AnalyzerStats;
use crate::wire::{
    self, ErspanSlice, EtherType, GreSlice, IcmpSlice, Icmpv6Slice, Ipv4Slice, Ipv6Slice,
    SctpSlice, TcpSlice, UdpSlice, walk_ipv6_extensions,
};
use libpcap_tools::{
    Config, Direction, FiveTuple, Flow, FlowContext, FlowId, LinkType, Packet, PacketSource,
    SourceEvent, Timestamp, Verdict, ipproto,
};
use std::cell::Cell;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Per-flow data the analyzer keeps in the flow table.
#[derive(Debug, Default)]
pub struct FlowExt {
    /// TCP reassembly state of both directions (to-server, to-client), when a
    /// plugin asked for stream data.
    streams: Option<Box<Streams>>,
    /// Where the stream of each direction starts, taken from its first
    /// segment while that segment carried nothing (a SYN, a bare ACK): the
    /// reassembly state (368 bytes) is made at the flow's next segment
    /// that needs it, so a flow of a SYN or two (a scan, a flood) holds
    /// none.
    first: [u32; 2],
    /// Bit `i` set: `first[i]` holds direction `i`'s start.
    first_set: u8,
    /// No plugin wants the stream of this flow (its protocol or ports match
    /// no stream plugin's filter): it is not reassembled.
    no_streams: bool,
}

/// The two directions of a reassembled flow (to-server, to-client) and the
/// stream plugins still listening to each: a direction no one listens to
/// any more is no longer reassembled ([`PacketContext::stream_done`]).
#[derive(Debug)]
struct Streams {
    dirs: [TcpStreamDirection; 2],
    listeners: [StreamListeners; 2],
}

/// Why a run of the analyzer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyzerError {
    /// The packet source failed.
    #[error(transparent)]
    Source(#[from] libpcap_tools::Error),
    /// A plugin panicked.
    #[error("plugin {0} panicked")]
    PluginPanicked(String),
    /// A plugin could not be built or its results combined.
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
    /// A worker thread failed.
    #[error("worker thread failed: {0}")]
    Worker(String),
}

/// Facts about a transport layer before the flow is known.
struct Frames {
    frames: u32,
    wire_bytes: u64,
    /// IP bytes they stand for (the header's total length).
    ip_bytes: u64,
    /// Bytes the IP header announces beyond what the capture holds.
    ip_cut: u32,
    first_ts: Option<Timestamp>,
    last_ts: Option<Timestamp>,
    /// Time of the latest of these frames on the run's clock.
    at: Option<Timestamp>,
}

/// A 40-bit hash of the outer headers of a tunnel (addresses and tunnel id),
/// so that inner flows of different tunnels do not merge.
///
/// Both directions of an inner connection must get the same hash, so only
/// what both directions share enters it: the outer address pair (in either
/// order) and, from [`tunnel_key_id`], an id only where it names the tunnel
/// rather than one direction of it.
fn tunnel_hash(parent: u64, src: IpAddr, dst: IpAddr, id: u64) -> u64 {
    let mut h = crate::flow::fnv1a(&[], 0xcbf2_9ce4_8422_2325 ^ parent);
    // order-independent in the addresses: both directions of a tunnel share it
    let (a, b) = if src <= dst { (src, dst) } else { (dst, src) };
    for ip in [a, b] {
        h = match ip {
            IpAddr::V4(v) => crate::flow::fnv1a(&v.octets(), h),
            IpAddr::V6(v) => crate::flow::fnv1a(&v.octets(), h),
        };
    }
    crate::flow::fnv1a(&id.to_be_bytes(), h) & 0xFF_FFFF_FFFF
}

/// The part of a GRE header that enters the tunnel context of inner flows.
///
/// The GRE key of version 0 (RFC 2890 §2.1) identifies the tunnel and is
/// the same both ways; enhanced GRE (version 1, PPTP, RFC 2637 §4.1) puts
/// the peer's call id in the key, which differs per direction, so it is
/// left out.
fn gre_key_id(g: &GreSlice<'_>) -> u64 {
    if g.version() == 0 {
        u64::from(g.key().unwrap_or(0))
    } else {
        0
    }
}

/// The analysis engine for one thread.
///
/// ```
/// use libpcap_analyzer::Analyzer;
/// use libpcap_tools::{Config, LinkType, Packet, Timestamp};
///
/// let mut analyzer = Analyzer::new(&Config::new(), Vec::new()).unwrap();
/// let frame = [0u8; 14]; // an Ethernet header with ethertype 0
/// let p = Packet { index: 0, interface: 0, linktype: LinkType::ETHERNET,
///                  ts: Some(Timestamp(0)), origlen: 14, data: &frame };
/// analyzer.handle_packet(&p);
/// analyzer.finish();
/// assert_eq!(analyzer.stats().packets, 1);
/// ```
pub struct Analyzer {
    /// Ids of the flows of the tunnels around the packet being decoded,
    /// outermost first.
    parents: Vec<FlowId>,
    cfg: EngineConfig,
    dispatch: Dispatch,
    flows: FlowTable<FlowExt>,
    defrag: Defragmenter,
    stream_cfg: StreamConfig,
    budget: StreamBudget,
    stats: AnalyzerStats,
    want_streams: bool,
    finished: bool,
    /// The verdict of the frame being handled, shared by the contexts of
    /// all its layers (see [`Analyzer::verdict`]).
    verdict: Cell<Verdict>,
    /// Where the counters are published while the run goes on.
    monitor: Option<Arc<ShardMonitor>>,
    /// The run's clock, when this analyzer reads its own input (with
    /// several workers the reading thread keeps it and gives each packet
    /// its time).
    clock: RunClock,
    /// The run time of the frame being handled.
    at: Option<Timestamp>,
    /// Every UDP tunnel port of the configuration, as a bit set: a datagram
    /// on none of them (almost all) is not looked at further.
    tunnel_ports: Box<[u64; 1024]>,
}

/// The ports of every UDP tunnel of `a`, as a bit set.
fn tunnel_ports(a: &crate::config::AnalyzerConfig) -> Box<[u64; 1024]> {
    let mut set = Box::new([0u64; 1024]);
    for list in [
        &a.vxlan_ports,
        &a.vxlan_gpe_ports,
        &a.gre_udp_ports,
        &a.mpls_udp_ports,
        &a.gtp_ports,
        &a.teredo_ports,
        &a.geneve_ports,
    ] {
        for &p in list {
            if let Some(w) = set.get_mut(usize::from(p >> 6)) {
                *w |= 1 << (p & 63);
            }
        }
    }
    set
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Analyzer {
    /// An analyzer running `plugins` with the engine settings of `config`.
    /// Each plugin's `pre_process` is called.
    ///
    /// # Errors
    /// When a configuration section is invalid.
    pub fn new(config: &Config, plugins: Vec<Box<dyn Plugin>>) -> Result<Analyzer, AnalyzerError> {
        let cfg = EngineConfig::from_config(config)?;
        Ok(Analyzer::with_handles(
            cfg,
            plugins.into_iter().map(PluginHandle::Owned).collect(),
        ))
    }

    /// An analyzer from parsed settings and plugin handles (owned or shared),
    /// with a memory budget of its own ([`MemoryBudget::for_engine`]).
    pub fn with_handles(cfg: EngineConfig, handles: Vec<PluginHandle>) -> Analyzer {
        let memory = MemoryBudget::for_engine(&cfg);
        Self::with_memory(cfg, handles, &memory)
    }

    /// An analyzer from parsed settings and plugin handles, drawing on the
    /// run's `memory` (shared with the other workers): its flows,
    /// fragments and out-of-order TCP bytes, and the plugins' tables
    /// ([`Plugin::use_memory`], called here for every plugin).
    pub fn with_memory(
        cfg: EngineConfig,
        mut handles: Vec<PluginHandle>,
        memory: &Arc<MemoryBudget>,
    ) -> Analyzer {
        for h in &mut handles {
            match h {
                PluginHandle::Owned(p) => p.use_memory(memory),
                PluginHandle::Shared(p) => p
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .use_memory(memory),
            }
        }
        let mut dispatch = Dispatch::new(handles, cfg.analyzer.max_plugin_errors);
        let want_streams = dispatch
            .slots
            .iter()
            .any(|s| s.interest.layers.contains(Layers::STREAM));
        let stream_cfg = cfg.tcp_reassembly.to_config();
        let mut stats = AnalyzerStats::default();
        for i in 0..dispatch.slots.len() {
            dispatch.call(i, &mut stats, |p| p.pre_process());
        }
        let mut flows = FlowTable::new(cfg.flows.clone());
        flows.set_lease(memory.lease(memory.flows()));
        let mut defrag = Defragmenter::new(cfg.defrag.to_config());
        defrag.set_lease(memory.lease(memory.fragments()));
        defrag.set_datagram_lease(memory.lease(memory.fragment_datagrams()));
        let tunnel_ports = tunnel_ports(&cfg.analyzer);
        Analyzer {
            parents: Vec::new(),
            flows,
            defrag,
            budget: StreamBudget::with_lease(
                stream_cfg.max_buffered_total,
                memory.lease(memory.tcp_reassembly()),
            ),
            stream_cfg,
            dispatch,
            stats,
            want_streams,
            cfg,
            finished: false,
            verdict: Cell::new(Verdict::Accept),
            monitor: None,
            clock: RunClock::new(),
            at: None,
            tunnel_ports,
        }
    }

    /// Publishes the counters to `monitor` from now on (every 1024
    /// packets, at every tick and at the end).
    pub(crate) fn set_monitor(&mut self, monitor: Arc<ShardMonitor>) {
        self.monitor = Some(monitor);
    }

    /// Publishes the counters when 1024 packets passed since the last time
    /// (called by the reading loops after each packet or batch).
    pub(crate) fn publish_due(&self) {
        if self.stats.packets.is_multiple_of(1024) {
            self.publish();
        }
    }

    /// Publishes the counters, if a monitor was set.
    #[cold]
    #[inline(never)]
    fn publish(&self) {
        if let Some(m) = &self.monitor {
            m.publish(
                &self.stats,
                self.flows.len(),
                self.flows.stats().created,
                self.plugin_counters(),
            );
        }
    }

    /// The counters of this analyzer's own plugin instances that have some
    /// ([`Plugin::counters`]; shared instances are left out).
    pub fn plugin_counters(&self) -> Vec<(String, Counters)> {
        self.dispatch
            .slots
            .iter()
            .filter_map(|slot| match &slot.handle {
                PluginHandle::Owned(p) if !slot.disabled => {
                    let c = crate::engine::plugin_counters(p.as_ref())?;
                    (!c.is_empty()).then(|| (slot.name.clone(), c))
                }
                _ => None,
            })
            .collect()
    }

    /// Copies of the plugins' results as they would be if the input ended
    /// now ([`Plugin::snapshot`], given the flows still open), in plugin
    /// order; `None` for plugins without intermediate results and for
    /// shared instances (copied once by [`RunControl`]). A plugin that
    /// panics while copying gives `None`.
    pub fn snapshot(&self) -> Vec<Option<Box<dyn Plugin>>> {
        self.dispatch
            .slots
            .iter()
            .map(|slot| match &slot.handle {
                PluginHandle::Owned(p) if !slot.disabled => {
                    let copy = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        p.snapshot(&mut self.flows.flows())
                    }));
                    copy.unwrap_or_else(|_| {
                        log::warn!("plugin {} panicked while copying its results", slot.name);
                        None
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// The counters so far.
    pub fn stats(&self) -> &AnalyzerStats {
        &self.stats
    }

    /// The flow table's counters.
    pub fn flow_stats(&self) -> &crate::flow::FlowTableStats {
        self.flows.stats()
    }

    /// The defragmenter's counters.
    pub fn defrag_stats(&self) -> &crate::defrag::DefragStats {
        self.defrag.stats()
    }

    /// Name of a plugin that panicked, if any.
    pub fn panicked_plugin(&self) -> Option<&str> {
        self.dispatch.panicked.as_deref()
    }

    /// Reads every packet of `source` and handles it, then [`Analyzer::finish`].
    ///
    /// A truncated input ends the run normally after its last complete
    /// packet and is returned as `Ok(Some(error))` so the caller can warn.
    ///
    /// # Errors
    /// When the source fails (other than by truncation) or a plugin panicked.
    pub fn run(
        &mut self,
        source: &mut dyn PacketSource,
    ) -> Result<Option<libpcap_tools::Error>, AnalyzerError> {
        self.run_until(source, &AtomicBool::new(false))
    }

    /// As [`Analyzer::run`], also ending (without error, flows drained as
    /// at the end of input) once `stop` is set, which is checked before each
    /// event: another thread can end a source that never ends by itself
    /// (live sources report an idle tick at least every poll interval).
    ///
    /// # Errors
    /// As [`Analyzer::run`].
    pub fn run_until(
        &mut self,
        source: &mut dyn PacketSource,
        stop: &AtomicBool,
    ) -> Result<Option<libpcap_tools::Error>, AnalyzerError> {
        self.run_controlled(source, &RunControl::new(), 0, stop)
    }

    /// As [`Analyzer::run_until`], steered by `ctl` as analyzer number `me`
    /// of the run and reader of its source number `me` (see
    /// [`crate::control`]): paused, a live source is read and its packets
    /// discarded (an inline source's accepted), a file waits; stopping ends
    /// the run as at the end of the input; snapshot requests are answered
    /// between two events; the counters and the source's progress are
    /// published.
    ///
    /// # Errors
    /// As [`Analyzer::run`].
    pub fn run_controlled(
        &mut self,
        source: &mut dyn PacketSource,
        ctl: &RunControl,
        me: usize,
        abort: &AtomicBool,
    ) -> Result<Option<libpcap_tools::Error>, AnalyzerError> {
        let inline = source.is_inline();
        let live = source.is_live();
        let mut seen = 0u64;
        let mut events = 0u64;
        let warning = loop {
            if abort.load(Ordering::Relaxed) {
                break None;
            }
            if let Some(epoch) = ctl.snapshot_wanted(&mut seen)
                && ctl.claim(epoch, me)
            {
                ctl.submit(epoch, me, self.snapshot());
            }
            events += 1;
            if events.is_multiple_of(4096) {
                ctl.publish_input(me, source.progress());
            }
            match ctl.state() {
                RunState::Running => {}
                RunState::Stopping => break None,
                RunState::Paused if live => {}
                RunState::Paused => {
                    ctl.wait_paused(std::time::Duration::from_millis(100));
                    continue;
                }
            }
            match source.next_event() {
                Ok(SourceEvent::Packet(p)) => {
                    // a live packet is discarded when it arrives while
                    // paused, even if its read began before the pause
                    let paused = live && ctl.state() == RunState::Paused;
                    let index = p.index;
                    let verdict = if paused {
                        ctl.discard();
                        Verdict::Accept
                    } else {
                        self.handle_packet(&p);
                        self.publish_due();
                        self.verdict.get()
                    };
                    if inline && let Err(e) = source.set_verdict(index, verdict) {
                        self.finish();
                        return Err(e.into());
                    }
                }
                Ok(SourceEvent::Timeout { now }) => {
                    self.tick(now);
                    ctl.publish_input(me, source.progress());
                }
                Ok(SourceEvent::End) => break None,
                Err(e) if e.is_truncation() => break Some(e),
                Err(e) => {
                    self.finish();
                    return Err(e.into());
                }
            }
            if let Some(name) = &self.dispatch.panicked {
                return Err(AnalyzerError::PluginPanicked(name.clone()));
            }
        };
        ctl.publish_input(me, source.progress());
        self.finish();
        match &self.dispatch.panicked {
            Some(name) => Err(AnalyzerError::PluginPanicked(name.clone())),
            None => Ok(warning),
        }
    }

    /// The verdict the plugins gave the frame handled last: the strictest
    /// of those set through [`PacketContext::drop_packet`] and
    /// [`PacketContext::set_verdict`] by any callback of that frame
    /// ([`Verdict::Accept`] when none was). It is reset when the next frame
    /// is handled. [`Analyzer::run`] passes it to inline sources.
    pub fn verdict(&self) -> Verdict {
        self.verdict.get()
    }

    /// Handles one captured frame, the next of this analyzer's input: its
    /// time on the run's clock is worked out here ([`crate::clock`]).
    pub fn handle_packet(&mut self, packet: &Packet<'_>) {
        let link = decode_link(packet.linktype, packet.data);
        let time = self.clock.packet(packet.interface, packet.ts);
        self.handle_packet_at(packet, link, time);
    }

    /// Handles one frame whose link layer was already decoded, at the time
    /// the thread reading the whole input gave it on the run's clock
    /// ([`crate::clock::RunClock::packet`]): each worker then expires flows
    /// exactly when a single analyzer would.
    pub fn handle_packet_at(
        &mut self,
        packet: &Packet<'_>,
        link: Result<LinkInfo, LinkError>,
        time: PacketTime,
    ) {
        self.verdict.set(Verdict::Accept);
        self.stats.packets += 1;
        self.stats.bytes += u64::from(packet.origlen);
        if time.stepped {
            self.stats.anomaly("clock_step_back");
        }
        self.at = time.at;
        if let Some(now) = time.now {
            self.advance(now);
        }
        if let Ok(info) = &link
            && (info.ethertype == EtherType::IPV4.0 || info.ethertype == EtherType::IPV6.0)
        {
            self.stats.ip_frames += 1;
        }
        let l0 = FlowContext::default();
        self.link_layer(packet, l0, packet.linktype, packet.data, link);
        self.flush_ended();
    }

    /// Advances time without a packet (an idle tick of this analyzer's live
    /// source, on the source's clock): expires flows and fragments.
    pub fn tick(&mut self, now: Timestamp) {
        let now = self.clock.tick(now);
        self.tick_at(now);
    }

    /// As [`Analyzer::tick`], `now` being already on the run's clock (given
    /// by the thread reading the whole input).
    pub(crate) fn tick_at(&mut self, now: Timestamp) {
        self.advance(now);
        self.flush_ended();
        self.publish();
    }

    fn advance(&mut self, now: Timestamp) {
        self.flows.advance(now);
        // the clock never goes back, even when capture times do
        let now = self.flows.now().unwrap_or(now);
        if self.defrag.pending() > 0 {
            for failure in self.defrag.expire(now) {
                self.defrag_failed(failure);
            }
        }
    }

    fn link_layer(
        &mut self,
        packet: &Packet<'_>,
        l0: FlowContext,
        linktype: LinkType,
        frame: &[u8],
        link: Result<LinkInfo, LinkError>,
    ) {
        let (info, payload) = match &link {
            Ok(info) => (Some(*info), frame.get(info.l3_offset..).unwrap_or(&[])),
            Err(e) => {
                self.stats.anomaly(&e.kind());
                (None, &[][..])
            }
        };
        let mut l0 = l0;
        if let Some(info) = &info
            && info.nvlans > 0
        {
            l0.vlan = info.inner_vlan();
        }
        if !self.dispatch.link.is_empty() {
            let ll = LinkLayer {
                linktype,
                data: frame,
                ethertype: info.map_or(0, |i| i.ethertype),
                payload,
                vlans: info.as_ref().map_or(&[][..], |i| i.vlans()),
            };
            let ctx = PacketContext::new(packet, l0).with_verdict(&self.verdict);
            let mut decaps = Vec::new();
            for k in 0..self.dispatch.link.len() {
                let Some(&i) = self.dispatch.link.get(k) else {
                    continue;
                };
                if let Some(d) = self
                    .dispatch
                    .call(i, &mut self.stats, |p| p.handle_link(&ctx, &ll))
                {
                    decaps.push(d);
                }
            }
            for d in decaps {
                self.decapsulated(packet, l0, None, d);
            }
        }
        if let Some(info) = info {
            self.stats.network += 1;
            self.network_layer(packet, l0, info.ethertype, payload);
        }
    }

    fn network_layer(&mut self, packet: &Packet<'_>, l0: FlowContext, ethertype: u16, data: &[u8]) {
        match EtherType(ethertype) {
            EtherType::IPV4 => self.ipv4(packet, l0, data),
            EtherType::IPV6 => self.ipv6(packet, l0, data),
            et => {
                if et == EtherType::ARP {
                    self.stats.arp += 1;
                } else {
                    self.stats.other_network += 1;
                }
                let net = NetworkLayer {
                    ethertype,
                    data,
                    src: None,
                    dst: None,
                    protocol: 0,
                    payload: data,
                    reassembled: false,
                };
                self.call_network(packet, l0, &net);
            }
        }
    }

    fn call_network(&mut self, packet: &Packet<'_>, l0: FlowContext, net: &NetworkLayer<'_>) {
        if self.dispatch.network.is_empty() {
            return;
        }
        let ctx = PacketContext::new(packet, l0).with_verdict(&self.verdict);
        let mut decaps = Vec::new();
        for k in 0..self.dispatch.network.len() {
            let Some(&i) = self.dispatch.network.get(k) else {
                continue;
            };
            let wanted = self
                .dispatch
                .slots
                .get(i)
                .is_some_and(|s| s.interest.wants_ethertype(net.ethertype));
            if wanted
                && let Some(d) = self
                    .dispatch
                    .call(i, &mut self.stats, |p| p.handle_network(&ctx, net))
            {
                decaps.push(d);
            }
        }
        for d in decaps {
            self.decapsulated(packet, l0, net.src.zip(net.dst), d);
        }
    }

    fn ipv4(&mut self, packet: &Packet<'_>, l0: FlowContext, data: &[u8]) {
        let ip = match Ipv4Slice::from_slice(data) {
            Ok(ip) => ip,
            Err(e) => return self.decode_error(&e),
        };
        self.stats.ipv4 += 1;
        if self.cfg.analyzer.do_checksums && !ip.verify_checksum() {
            self.stats.anomaly("ipv4_bad_checksum");
        }
        if ip.is_truncated() {
            self.stats.anomaly("ipv4_truncated_payload");
        }
        let (src, dst) = (IpAddr::V4(ip.src()), IpAddr::V4(ip.dst()));
        if ip.is_fragment() {
            self.stats.fragments += 1;
            let key = FragmentKey {
                src,
                dst,
                id: u32::from(ip.identification()),
                proto: ip.protocol(),
                context: l0,
            };
            let frag = FragmentInfo {
                offset_bytes: ip.fragment_offset_bytes(),
                more: ip.more_fragments(),
                payload: ip.payload(),
                ts: packet.ts,
                wire_len: packet.origlen,
                ip_truncated: ip.is_truncated(),
            };
            self.fragment(packet, l0, src, dst, EtherType::IPV4.0, data, key, frag);
            return;
        }
        let net = NetworkLayer {
            ethertype: EtherType::IPV4.0,
            data,
            src: Some(src),
            dst: Some(dst),
            protocol: ip.protocol(),
            payload: ip.payload(),
            reassembled: false,
        };
        self.call_network(packet, l0, &net);
        let total = match ip.total_len() {
            0 => data.len() as u64, // segmentation offload: the frame's length
            n => u64::from(n),
        };
        let frames = self.one_frame(packet, total, data.len());
        self.transport_layer(packet, l0, src, dst, ip.protocol(), ip.payload(), &frames);
    }

    fn ipv6(&mut self, packet: &Packet<'_>, l0: FlowContext, data: &[u8]) {
        let ip = match Ipv6Slice::from_slice(data) {
            Ok(ip) => ip,
            Err(e) => return self.decode_error(&e),
        };
        self.stats.ipv6 += 1;
        if ip.is_truncated() {
            self.stats.anomaly("ipv6_truncated_payload");
        }
        let (src, dst) = (IpAddr::V6(ip.src()), IpAddr::V6(ip.dst()));
        let chain = match walk_ipv6_extensions(ip.next_header(), ip.payload()) {
            Ok(c) => c,
            Err(e) => {
                self.decode_error(&e);
                // still offer the network layer, with an unknown transport
                let net = NetworkLayer {
                    ethertype: EtherType::IPV6.0,
                    data,
                    src: Some(src),
                    dst: Some(dst),
                    protocol: ip.next_header(),
                    payload: &[],
                    reassembled: false,
                };
                self.call_network(packet, l0, &net);
                return;
            }
        };
        if let Some(fh) = chain.fragment {
            if fh.offset_bytes != 0 || fh.more {
                self.stats.fragments += 1;
                let key = FragmentKey {
                    src,
                    dst,
                    id: fh.identification,
                    proto: fh.next_header,
                    context: l0,
                };
                let frag = FragmentInfo {
                    offset_bytes: fh.offset_bytes,
                    more: fh.more,
                    // the fragmentable part starts right after the Fragment header
                    payload: chain.fragment_data.unwrap_or(chain.payload),
                    ts: packet.ts,
                    wire_len: packet.origlen,
                    ip_truncated: ip.is_truncated(),
                };
                self.fragment(packet, l0, src, dst, EtherType::IPV6.0, data, key, frag);
                return;
            }
            self.stats.anomaly("ipv6_atomic_fragment");
        }
        let net = NetworkLayer {
            ethertype: EtherType::IPV6.0,
            data,
            src: Some(src),
            dst: Some(dst),
            protocol: chain.transport,
            payload: chain.payload,
            reassembled: false,
        };
        self.call_network(packet, l0, &net);
        let total = match ip.payload_len() {
            0 => data.len() as u64, // a jumbogram
            n => 40 + u64::from(n),
        };
        let frames = self.one_frame(packet, total, data.len());
        self.transport_layer(
            packet,
            l0,
            src,
            dst,
            chain.transport,
            chain.payload,
            &frames,
        );
    }

    #[allow(clippy::too_many_arguments)] // the facts of one fragment; bundling them would only rename them
    fn fragment(
        &mut self,
        packet: &Packet<'_>,
        l0: FlowContext,
        src: IpAddr,
        dst: IpAddr,
        ethertype: u16,
        data: &[u8],
        key: FragmentKey,
        frag: FragmentInfo<'_>,
    ) {
        let header = data.len().saturating_sub(frag.payload.len()) as u64;
        let outcome = self.defrag.add_at(key, frag, self.at);
        for failure in self.defrag.take_evicted() {
            self.defrag_failed(failure);
        }
        match outcome {
            DefragOutcome::Pending => {}
            DefragOutcome::Failed(failure) => self.defrag_failed(failure),
            DefragOutcome::Complete(r) => {
                self.stats.reassembled += 1;
                let net = NetworkLayer {
                    ethertype,
                    data,
                    src: Some(src),
                    dst: Some(dst),
                    protocol: r.proto,
                    payload: &r.payload,
                    reassembled: true,
                };
                self.call_network(packet, l0, &net);
                let frames = Frames {
                    frames: r.frames,
                    wire_bytes: r.wire_bytes,
                    ip_bytes: header + r.payload.len() as u64,
                    ip_cut: 0,
                    first_ts: r.first_ts,
                    last_ts: r.last_ts,
                    // completed by this frame
                    at: self.at,
                };
                self.transport_layer(packet, l0, src, dst, r.proto, &r.payload, &frames);
            }
        }
    }

    /// A datagram that could not be rebuilt: its frames still count for the
    /// connection of its first fragment's ports, when that one arrived.
    fn defrag_failed(&mut self, failure: DefragFailure) {
        self.stats.anomaly(failure.reason.anomaly());
        let Some(first) = failure.first_fragment.as_deref() else {
            self.stats.anomaly("defrag_frames_unattributed");
            return;
        };
        let pseudo = Packet::pseudo(failure.last_ts);
        let l0 = failure.key.context;
        let frames = Frames {
            frames: failure.frames,
            wire_bytes: failure.wire_bytes,
            ip_bytes: failure
                .first_fragment
                .as_deref()
                .map_or(0, |f| f.len() as u64),
            ip_cut: 0,
            first_ts: failure.first_ts,
            last_ts: failure.last_ts,
            at: failure.last_at,
        };
        // only the flow accounting and transport plugins: the payload is partial
        self.transport_layer_partial(
            &pseudo,
            l0,
            failure.key.src,
            failure.key.dst,
            failure.key.proto,
            first,
            &frames,
        );
    }

    /// The frame of `packet`, whose IP packet announces `ip_bytes` bytes of
    /// which the capture holds `captured`.
    fn one_frame(&self, packet: &Packet<'_>, ip_bytes: u64, captured: usize) -> Frames {
        Frames {
            frames: 1,
            wire_bytes: u64::from(packet.origlen),
            ip_bytes,
            ip_cut: u32::try_from(ip_bytes.saturating_sub(captured as u64)).unwrap_or(u32::MAX),
            first_ts: packet.ts,
            last_ts: packet.ts,
            at: self.at,
        }
    }

    fn decode_error(&mut self, e: &wire::DecodeError) {
        self.stats.anomaly(e.kind());
    }

    #[allow(clippy::too_many_arguments)] // see fragment()
    fn transport_layer_partial(
        &mut self,
        packet: &Packet<'_>,
        l0: FlowContext,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        data: &[u8],
        frames: &Frames,
    ) {
        let (sp, dp, flags) = ports_prefix(proto, data);
        let key = FiveTuple {
            src,
            dst,
            src_port: sp,
            dst_port: dp,
            proto,
        };
        self.track_and_call(packet, l0, &key, data, &[], flags, frames, None);
    }

    #[allow(clippy::too_many_arguments)] // see fragment()
    fn transport_layer(
        &mut self,
        packet: &Packet<'_>,
        l0: FlowContext,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        data: &[u8],
        frames: &Frames,
    ) {
        let mut tcp = None;
        // a header that fails to decode still gives its ports when the
        // capture holds them (a snaplen-truncated segment counts for its
        // connection); without them the packet has no transport layer
        let decoded: Result<(u16, u16, u8, &[u8]), wire::DecodeError> = match proto {
            ipproto::TCP => {
                self.stats.tcp += 1;
                TcpSlice::from_slice(data).map(|t| {
                    let f = t.flags().bits() as u8;
                    tcp = Some((t.seq(), f, t.window()));
                    (t.src_port(), t.dst_port(), f, t.payload())
                })
            }
            ipproto::UDP => {
                self.stats.udp += 1;
                UdpSlice::from_slice(data).map(|u| (u.src_port(), u.dst_port(), 0, u.payload()))
            }
            ipproto::SCTP => {
                self.stats.sctp += 1;
                SctpSlice::from_slice(data).map(|s| (s.src_port(), s.dst_port(), 0, s.payload()))
            }
            // ICMP "ports" as Zeek and the Community ID specification
            // see them: the type, and the counterpart type of a
            // request/response pair (so both messages of an exchange are
            // one flow) or the code of a one-way message
            ipproto::ICMP => {
                self.stats.icmp += 1;
                IcmpSlice::from_slice(data).map(|i| {
                    let (sp, dp, _) = icmp_port_equivalents(proto, i.icmp_type(), i.code());
                    (sp, dp, 0, i.payload())
                })
            }
            ipproto::ICMPV6 => {
                self.stats.icmp += 1;
                Icmpv6Slice::from_slice(data).map(|i| {
                    let (sp, dp, _) = icmp_port_equivalents(proto, i.icmp_type(), i.code());
                    (sp, dp, 0, i.payload())
                })
            }
            _ => {
                self.stats.other_transport += 1;
                Ok((0, 0, 0, data))
            }
        };
        let (sp, dp, flags, payload) = match decoded {
            Ok(d) => d,
            Err(e) => {
                self.decode_error(&e);
                match proto {
                    ipproto::TCP | ipproto::UDP | ipproto::SCTP if data.len() >= 4 => {
                        let (sp, dp, _) = ports_prefix(proto, data);
                        (sp, dp, 0, &[][..])
                    }
                    ipproto::TCP | ipproto::UDP | ipproto::SCTP => return,
                    _ => (0, 0, 0, &[][..]),
                }
            }
        };
        let key = FiveTuple {
            src,
            dst,
            src_port: sp,
            dst_port: dp,
            proto,
        };
        let id = self.track_and_call(packet, l0, &key, data, payload, flags, frames, tcp);
        // tunnels, outer layer first; flows inside have this one as parent
        self.parents.push(id);
        self.tunnel(packet, l0, &key, payload, data);
        self.parents.pop();
    }

    #[allow(clippy::too_many_arguments)] // see fragment()
    fn track_and_call(
        &mut self,
        packet: &Packet<'_>,
        l0: FlowContext,
        key: &FiveTuple,
        data: &[u8],
        payload: &[u8],
        flags: u8,
        frames: &Frames,
        tcp: Option<(u32, u8, u16)>,
    ) -> FlowId {
        let seen = Observation {
            packet_index: packet.index,
            frames: frames.frames,
            wire_bytes: frames.wire_bytes,
            first: frames.first_ts,
            last: frames.last_ts.or(packet.ts),
            at: frames.at,
            tcp_flags: flags,
            segment: libpcap_tools::Segment {
                flags,
                seq: tcp.map_or(0, |t| t.0),
                zero_window: tcp.is_some_and(|t| t.2 == 0),
                tcp: tcp.is_some(),
                payload_len: u32::try_from(payload.len())
                    .unwrap_or(u32::MAX)
                    .saturating_add(frames.ip_cut),
                ip_bytes: frames.ip_bytes,
            },
        };
        let tracked = self.flows.observe(key, l0, &seen);
        let mut flow_id = FlowId(0);
        if let Some(e) = self.flows.get_mut(tracked.handle) {
            flow_id = e.flow.id;
            if tracked.created {
                if !self.parents.is_empty() {
                    e.flow.tunnel_parents = Some(self.parents.clone().into_boxed_slice());
                }
                if matches!(key.proto, ipproto::ICMP | ipproto::ICMPV6)
                    && let [ty, code, ..] = *data
                {
                    e.flow.conn.icmp_type_code = Some((ty, code));
                }
            }
            if !payload.is_empty()
                && e.flow
                    .conn
                    .probe(tracked.direction == Direction::ToServer, 2)
            {
                e.flow.conn.service |= crate::service::detect(key.proto, payload);
            }
        }
        if tracked.created
            && !self.dispatch.flow_events.is_empty()
            && let Some(e) = self.flows.get(tracked.handle)
        {
            let flow = &e.flow;
            for k in 0..self.dispatch.flow_events.len() {
                let Some(&i) = self.dispatch.flow_events.get(k) else {
                    continue;
                };
                self.dispatch
                    .call(i, &mut self.stats, |p| p.flow_created(flow));
            }
        }
        // a copy of the frame's verdict cell, written back below: the stream
        // layer needs `&mut self` while the context lives
        let verdict = Cell::new(self.verdict.get());
        let ctx = PacketContext::new(packet, l0).with_verdict(&verdict);
        let mut decaps = Vec::new();
        if !self.dispatch.transport.is_empty() {
            let Some(entry) = self.flows.get(tracked.handle) else {
                return flow_id;
            };
            let tl = TransportLayer {
                key: *key,
                data,
                payload,
                tcp_flags: flags,
                flow: &entry.flow,
                direction: tracked.direction,
                frames: frames.frames,
                wire_bytes: frames.wire_bytes,
                first_ts: frames.first_ts,
                last_ts: frames.last_ts,
            };
            let d = &mut self.dispatch;
            for k in 0..d.transport.len() {
                let Some(&i) = d.transport.get(k) else {
                    continue;
                };
                if d.slots.get(i).is_some_and(|s| s.filter.wants(key))
                    && let Some(x) = d.call(i, &mut self.stats, |p| p.handle_transport(&ctx, &tl))
                {
                    decaps.push(x);
                }
            }
        }
        if let Some((seq, flags, _)) = tcp
            && self.want_streams
        {
            self.stream(&ctx, tracked.handle, tracked.direction, seq, flags, payload);
        }
        self.verdict.set(verdict.get());
        if !decaps.is_empty() {
            self.parents.push(flow_id);
            for d in decaps {
                self.decapsulated(packet, l0, Some((key.src, key.dst)), d);
            }
            self.parents.pop();
        }
        flow_id
    }

    fn stream(
        &mut self,
        ctx: &PacketContext<'_>,
        handle: FlowHandle,
        dir: Direction,
        seq: u32,
        flags: u8,
        payload: &[u8],
    ) {
        let Some(entry) = self.flows.get_mut(handle) else {
            return;
        };
        let i = usize::from(dir == Direction::ToClient);
        if entry.ext.streams.is_none() {
            // decided once per flow, on its first segment
            if entry.ext.no_streams {
                return;
            }
            let listeners = self.dispatch.stream_listeners(&entry.flow.key);
            if listeners.is_empty() {
                entry.ext.no_streams = true;
                return;
            }
            let ext = &mut entry.ext;
            let syn = flags & tcp_flags::SYN != 0;
            if payload.is_empty()
                && flags & (tcp_flags::FIN | tcp_flags::RST) == 0
                && ext.first_set & (1 << i) == 0
            {
                // all such a segment does to a new direction: count it and
                // fix where its data starts
                if let Some(start) = ext.first.get_mut(i) {
                    *start = if syn { seq.wrapping_add(1) } else { seq };
                }
                ext.first_set |= 1 << i;
                self.stats.reassembly.segments = self.stats.reassembly.segments.saturating_add(1);
                return;
            }
            let mut dirs = [TcpStreamDirection::new(), TcpStreamDirection::new()];
            for (k, side) in dirs.iter_mut().enumerate() {
                if ext.first_set & (1 << k) != 0
                    && let Some(&start) = ext.first.get(k)
                {
                    side.start_at(start);
                }
            }
            ext.streams = Some(Box::new(Streams {
                dirs,
                listeners: [listeners; 2],
            }));
        }
        let Some(streams) = entry.ext.streams.as_mut() else {
            return;
        };
        let (Some(side), Some(listeners)) = (streams.dirs.get_mut(i), streams.listeners.get_mut(i))
        else {
            return;
        };
        if listeners.is_empty() {
            side.pass(payload.len());
            return;
        }
        let flow = &entry.flow;
        let d = &mut self.dispatch;
        let stats = &mut self.stats;
        side.segment(
            seq,
            flags & tcp_flags::SYN != 0,
            flags & tcp_flags::FIN != 0,
            flags & tcp_flags::RST != 0,
            payload,
            &self.stream_cfg,
            &mut self.budget,
            &mut |ev| deliver_stream(d, stats, ctx, flow, dir, listeners, ev),
        );
        if listeners.is_empty() {
            // the last listener left: what the direction holds goes now
            side.abandon(&mut self.budget);
        }
    }

    fn tunnel(
        &mut self,
        packet: &Packet<'_>,
        l0: FlowContext,
        key: &FiveTuple,
        payload: &[u8],
        data: &[u8],
    ) {
        let inner: Option<(u64, Inner<'_>)> = match key.proto {
            ipproto::IPIP => Some((0, Inner::Network(EtherType::IPV4.0, data))),
            ipproto::IPV6 => Some((0, Inner::Network(EtherType::IPV6.0, data))),
            ipproto::GRE => match GreSlice::from_slice(data) {
                Ok(g) => {
                    let inner = gre_inner(&g).map(|i| (gre_key_id(&g), i));
                    if inner.is_none() {
                        // a protocol we do not decode, or a bad ERSPAN/MPLS header
                        self.stats.anomaly("gre_payload_not_decoded");
                    }
                    inner
                }
                Err(e) => {
                    self.decode_error(&e);
                    None
                }
            },
            // a datagram on a tunnel port is a tunnel only when its header
            // checks out (decode::tunnel): otherwise it is the ordinary UDP
            // it is (a reply to a client port that happens to be 4789, say),
            // with no anomaly and no inner decoding
            ipproto::UDP => self.udp_tunnel(key, payload, data),
            _ => None,
        };
        let Some((id, inner)) = inner else { return };
        self.enter_tunnel(packet, l0, key.src, key.dst, id, inner);
    }

    /// The inner layer of a UDP datagram on a tunnel port whose header is
    /// valid (see [`tunnel`] for the rules), with the tunnel's id.
    fn udp_tunnel<'d>(
        &self,
        key: &FiveTuple,
        payload: &'d [u8],
        data: &[u8],
    ) -> Option<(u64, Inner<'d>)> {
        let a = &self.cfg.analyzer;
        let (sp, dp) = (key.src_port, key.dst_port);
        let listed = |p: u16| {
            self.tunnel_ports
                .get(usize::from(p >> 6))
                .is_some_and(|w| w & (1 << (p & 63)) != 0)
        };
        if !listed(sp) && !listed(dp) {
            return None;
        }
        // inner lengths must match exactly unless the capture cut the datagram
        let whole = UdpSlice::from_slice(data).is_ok_and(|u| !u.is_truncated());
        let with_id = |(id, c): (u32, tunnel::Carried<'d>)| (u64::from(id), carried(c));
        if a.vxlan_ports.contains(&dp) {
            tunnel::vxlan(payload, whole).map(with_id)
        } else if a.vxlan_gpe_ports.contains(&dp) {
            tunnel::vxlan_gpe(payload, whole).map(with_id)
        } else if a.gre_udp_ports.contains(&dp) {
            let g = GreSlice::from_slice(payload).ok()?;
            if !tunnel::gre_in_udp(&g, payload) {
                return None;
            }
            let inner = match gre_inner(&g)? {
                Inner::Network(et, d) => match tunnel::ip_packet(d, whole)? {
                    c @ tunnel::Carried::Ipv4(_) if et == EtherType::IPV4.0 => carried(c),
                    c @ tunnel::Carried::Ipv6(_) if et == EtherType::IPV6.0 => carried(c),
                    _ => return None,
                },
                other => other,
            };
            Some((gre_key_id(&g), inner))
        } else if a.mpls_udp_ports.contains(&dp) {
            tunnel::mpls_checked(payload, whole).map(|c| (0, carried(c)))
        } else if a.gtp_ports.contains(&dp) || a.gtp_ports.contains(&sp) {
            // a TEID is chosen by the receiving end (3GPP TS 29.281 §5.1):
            // uplink and downlink differ, so the outer address pair alone
            // (and the UDP port, 2152 both ways) tells the tunnel
            tunnel::gtp_u(payload, whole).map(|(_, c)| (0, carried(c)))
        } else if a.teredo_ports.contains(&dp) || a.teredo_ports.contains(&sp) {
            tunnel::teredo(payload, whole).map(|c| (0, carried(c)))
        } else if a.geneve_ports.contains(&dp) {
            tunnel::geneve(payload, whole).map(with_id)
        } else {
            None
        }
    }

    fn enter_tunnel(
        &mut self,
        packet: &Packet<'_>,
        l0: FlowContext,
        src: IpAddr,
        dst: IpAddr,
        id: u64,
        inner: Inner<'_>,
    ) {
        if l0.depth >= self.cfg.analyzer.max_tunnel_depth {
            self.stats.anomaly("tunnel_too_deep");
            return;
        }
        self.stats.tunnels += 1;
        let l1 = FlowContext {
            vlan: l0.vlan,
            depth: l0.depth + 1,
            tunnel: tunnel_hash(l0.tunnel, src, dst, id),
        };
        match inner {
            Inner::Ethernet(eth) => {
                let link = decode_ethernet(eth);
                self.link_layer(packet, l1, LinkType::ETHERNET, eth, link);
            }
            Inner::Network(et, d) => {
                self.stats.network += 1;
                self.network_layer(packet, l1, et, d);
            }
            Inner::Ppp(d) => match crate::wire::PppSlice::from_slice(d) {
                Ok(p) => match crate::decode::link::ppp_to_ethertype(p.protocol()) {
                    Ok(et) => self.network_layer(packet, l1, et, p.payload()),
                    Err(e) => self.stats.anomaly(&e.kind()),
                },
                Err(e) => self.decode_error(&e),
            },
        }
    }

    fn decapsulated(
        &mut self,
        packet: &Packet<'_>,
        l0: FlowContext,
        addrs: Option<(IpAddr, IpAddr)>,
        d: Decapsulated,
    ) {
        let (src, dst) = addrs.unwrap_or((IpAddr::from([0u8; 4]), IpAddr::from([0u8; 4])));
        match d.layer {
            DecapLayer::Ethernet => {
                self.enter_tunnel(packet, l0, src, dst, 0, Inner::Ethernet(&d.data))
            }
            DecapLayer::Network(et) => {
                self.enter_tunnel(packet, l0, src, dst, 0, Inner::Network(et, &d.data))
            }
            DecapLayer::Transport(proto) => {
                if l0.depth >= self.cfg.analyzer.max_tunnel_depth {
                    self.stats.anomaly("tunnel_too_deep");
                    return;
                }
                let l1 = FlowContext {
                    depth: l0.depth + 1,
                    ..l0
                };
                let frames = self.one_frame(packet, d.data.len() as u64, d.data.len());
                self.transport_layer(packet, l1, src, dst, proto, &d.data, &frames);
            }
        }
    }

    fn flush_ended(&mut self) {
        if !self.flows.has_ended() {
            return;
        }
        let mut ended = self.flows.take_ended_buffer();
        // handled where they lie (an entry is large: each move is a copy)
        for (entry, reason) in &mut ended {
            self.end_flow(&entry.flow, &mut entry.ext, *reason);
        }
        self.flows.restore_ended(ended);
    }

    fn end_flow(&mut self, flow: &Flow, ext: &mut FlowExt, reason: EndReason) {
        if let Some(mut streams) = ext.streams.take() {
            let pseudo = Packet::pseudo(flow.last_seen);
            let ctx = PacketContext::new(&pseudo, flow.context);
            let d = &mut self.dispatch;
            let stats = &mut self.stats;
            let Streams { dirs, listeners } = &mut *streams;
            for ((side, listeners), dir) in dirs
                .iter_mut()
                .zip(listeners.iter_mut())
                .zip([Direction::ToServer, Direction::ToClient])
            {
                if !listeners.is_empty() {
                    side.flush(&mut self.budget, &mut |ev| {
                        deliver_stream(d, stats, &ctx, flow, dir, listeners, ev)
                    });
                }
                stats.reassembly.add(side.stats());
            }
        }
        for k in 0..self.dispatch.flow_events.len() {
            let Some(&i) = self.dispatch.flow_events.get(k) else {
                continue;
            };
            self.dispatch
                .call(i, &mut self.stats, |p| p.flow_destroyed(flow, reason));
        }
    }

    /// Ends the input: rebuilds what it can of pending fragments, ends every
    /// flow (`flow_destroyed` with `EndOfInput`). Idempotent.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        // flows whose deadline the input's clock has passed end by timeout,
        // as they would at any later packet
        if let Some(now) = self.flows.now() {
            self.advance(now);
        }
        for failure in self.defrag.drain() {
            self.defrag_failed(failure);
        }
        self.flush_ended();
        // a few flows at a time: the ended ones are not held beside the
        // table (the table full of flows, as many again ended)
        let order = self.flows.drain_order();
        for chunk in order.chunks(1024) {
            self.flows.end_at_input_end(chunk);
            self.flush_ended();
        }
        self.flows.drain();
        self.flush_ended();
        self.publish();
    }

    /// Finishes the input and returns the plugin instances (to merge,
    /// post-process and save) with the counters.
    pub fn into_parts(mut self) -> (Vec<PluginHandle>, AnalyzerStats) {
        self.finish();
        let mut stats = std::mem::take(&mut self.stats);
        for s in &self.dispatch.slots {
            if s.errors > 0 {
                stats.plugin_errors.insert(s.name.clone(), s.errors);
            }
        }
        (std::mem::take(&mut self.dispatch).into_handles(), stats)
    }
}

fn carried(c: tunnel::Carried<'_>) -> Inner<'_> {
    match c {
        tunnel::Carried::Ipv4(d) => Inner::Network(EtherType::IPV4.0, d),
        tunnel::Carried::Ipv6(d) => Inner::Network(EtherType::IPV6.0, d),
        tunnel::Carried::Ethernet(d) => Inner::Ethernet(d),
    }
}

/// What a tunnel carries.
enum Inner<'a> {
    Ethernet(&'a [u8]),
    Network(u16, &'a [u8]),
    Ppp(&'a [u8]),
}

fn gre_inner<'a>(g: &GreSlice<'a>) -> Option<Inner<'a>> {
    let et = g.protocol_type();
    match et {
        EtherType::TEB => Some(Inner::Ethernet(g.payload())),
        EtherType::ERSPAN_II => {
            if g.seq_present() {
                ErspanSlice::from_slice_type2(g.payload())
                    .ok()
                    .map(|e| Inner::Ethernet(e.payload()))
            } else {
                // ERSPAN type I: no ERSPAN header
                Some(Inner::Ethernet(g.payload()))
            }
        }
        EtherType::ERSPAN_III => ErspanSlice::from_slice_type3(g.payload())
            .ok()
            .map(|e| Inner::Ethernet(e.payload())),
        EtherType(0x880B) => Some(Inner::Ppp(g.payload())),
        EtherType::IPV4 | EtherType::IPV6 => Some(Inner::Network(et.0, g.payload())),
        EtherType::MPLS_UC | EtherType::MPLS_MC => tunnel::mpls(g.payload()).map(carried),
        EtherType::NSH => tunnel::nsh(g.payload(), false).map(carried),
        _ => None,
    }
}

/// Ports (and TCP flags) from the first bytes of a transport header that
/// may be cut short: the ports are the first four bytes of TCP, UDP and SCTP.
fn ports_prefix(proto: u8, data: &[u8]) -> (u16, u16, u8) {
    match proto {
        ipproto::TCP | ipproto::UDP | ipproto::SCTP => {
            let sp = data
                .get(0..2)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            let dp = data
                .get(2..4)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            let flags = if proto == ipproto::TCP {
                data.get(13).copied().unwrap_or(0)
            } else {
                0
            };
            (sp, dp, flags)
        }
        _ => (0, 0, 0),
    }
}

fn deliver_stream(
    d: &mut Dispatch,
    stats: &mut AnalyzerStats,
    ctx: &PacketContext<'_>,
    flow: &Flow,
    dir: Direction,
    listeners: &mut StreamListeners,
    ev: StreamEvent<'_>,
) {
    if listeners.is_empty() {
        return;
    }
    let data = match ev {
        StreamEvent::Data { data, offset } => {
            stats.stream_bytes += data.len() as u64;
            StreamData::Data { offset, data }
        }
        StreamEvent::Gap { offset, len } => {
            stats.anomaly("tcp_stream_gap");
            StreamData::Gap { offset, len }
        }
    };
    for k in 0..d.stream.len() {
        let Some(&i) = d.stream.get(k) else { continue };
        if listeners.has(k) {
            let done = Cell::new(false);
            let ctx = ctx.with_stream_done(&done);
            d.call(i, stats, |p| p.handle_stream(&ctx, flow, dir, data));
            if done.get() {
                listeners.leave(k);
            }
        }
    }
}

#[cfg(test)]
mod tests;
