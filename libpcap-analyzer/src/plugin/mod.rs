//! The plugin API: the [`Plugin`] trait, what each callback receives, and
//! how plugins are built from the configuration ([`PluginBuilder`],
//! [`PluginRegistry`]).
//!
//! # Threads
//! Every worker thread of the analyzer owns its own instance of each plugin
//! (built by the plugin's builder), so callbacks take `&mut self` and no lock
//! is ever contended. The packets of one flow always go to the same worker,
//! in capture order, and for one packet the callbacks come outer layer
//! first. At the end, the instances of a plugin are combined with
//! [`Plugin::merge`] before [`Plugin::post_process`] and
//! [`Plugin::save_results`] run on the merged instance. A plugin that needs
//! one global view instead asks for [`Interest::shared`]: the analyzer then
//! keeps a single instance behind a mutex.
//!
//! # Inline mode: verdicts
//! With an inline source (NFQUEUE: `pcap-analyzer --nfqueue N`, or
//! [`crate::Engine::run_sources`] with `libpcap_live::nfqueue` sources),
//! each packet waits in the kernel until the analyzer has handled it, and a
//! plugin can have it discarded: any callback of a frame may call
//! [`PacketContext::drop_packet`] (or [`PacketContext::set_verdict`]). All
//! the contexts of one frame (its link, network, transport and stream
//! callbacks, at every tunnel depth, in every plugin) share one verdict,
//! reset to [`Verdict::Accept`] for each frame; the strictest one given
//! wins (a drop cannot be taken back), and after the last callback the
//! analyzer hands it to the source ([`crate::Analyzer::verdict`]). Frames no
//! plugin voted on, and frames the analyzer could not decode, are accepted.
//! With other sources (files, AF_PACKET) verdicts are recorded and ignored.
//!
//! The verdict is per frame, given when that frame is handled:
//! - An IP fragment held for reassembly gets its verdict right away (from
//!   the callbacks it caused, usually none: accepted). The datagram's
//!   network and transport callbacks run on its last fragment, so a drop
//!   there discards that fragment only; the earlier fragments have already
//!   been accepted and cannot be taken back (the receiver will not be able
//!   to reassemble the datagram, which drops it in effect).
//! - TCP stream data ([`Plugin::handle_stream`]) is delivered with the
//!   frame that made it contiguous, so a drop applies to that frame, not to
//!   the earlier segments of the data.
//! - Callbacks outside a frame (flow end, [`Plugin::flow_destroyed`], a
//!   stream flushed when a flow times out) have no verdict to give.
//!
//! ```
//! use libpcap_analyzer::plugin::*;
//!
//! /// Drops UDP datagrams to port 9999.
//! struct Block9999;
//! impl Plugin for Block9999 {
//!     fn name(&self) -> &str { "block-9999" }
//!     fn interest(&self) -> Interest {
//!         Interest::new(Layers::TRANSPORT).ip_protocols(&[17]).ports(&[9999])
//!     }
//!     fn handle_transport(&mut self, ctx: &PacketContext<'_>, t: &TransportLayer<'_>)
//!         -> PluginResult<Option<Decapsulated>> {
//!         if t.key.dst_port == 9999 {
//!             ctx.drop_packet();
//!         }
//!         Ok(None)
//!     }
//! }
//! ```
//!
//! # Example
//! ```
//! use libpcap_analyzer::plugin::*;
//! use libpcap_tools::Config;
//!
//! /// Counts TCP packets.
//! #[derive(Default)]
//! struct TcpCounter { packets: u64 }
//!
//! impl Plugin for TcpCounter {
//!     fn name(&self) -> &str { "tcp-counter" }
//!     fn interest(&self) -> Interest {
//!         Interest::new(Layers::TRANSPORT).ip_protocols(&[6])
//!     }
//!     fn handle_transport(&mut self, _ctx: &PacketContext<'_>, _t: &TransportLayer<'_>)
//!         -> PluginResult<Option<Decapsulated>> {
//!         self.packets += 1;
//!         Ok(None)
//!     }
//!     fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
//!         let other = downcast::<Self>(self.name(), other)?;
//!         self.packets += other.packets;
//!         Ok(())
//!     }
//!     fn results(&self) -> Option<serde_json::Value> {
//!         Some(serde_json::json!({ "packets": self.packets }))
//!     }
//! }
//!
//! struct TcpCounterBuilder;
//! impl PluginBuilder for TcpCounterBuilder {
//!     fn name(&self) -> &str { "tcp-counter" }
//!     fn description(&self) -> &str { "counts TCP packets" }
//!     fn build(&self, _config: &Config) -> PluginResult<Box<dyn Plugin>> {
//!         Ok(Box::new(TcpCounter::default()))
//!     }
//! }
//!
//! let mut registry = PluginRegistry::new();
//! registry.add_builder(Box::new(TcpCounterBuilder));
//! assert!(registry.builder("tcp-counter").is_some());
//! ```

mod counters;
mod registry;

pub use counters::{Counter, Counters};
pub use registry::{PluginBuilder, PluginRegistry};

/// The verdict type of inline mode (from `libpcap-tools`).
pub use libpcap_tools::Verdict;
use libpcap_tools::{Direction, FiveTuple, Flow, FlowContext, LinkType, Packet, Timestamp};
use std::any::Any;
use std::cell::Cell;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

bitflags::bitflags! {
    /// The layers and events a plugin wants to be called for.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Layers: u16 {
        /// The link layer ([`Plugin::handle_link`]), once per frame (and once per
        /// inner Ethernet frame of a tunnel).
        const LINK = 1;
        /// The network layer ([`Plugin::handle_network`]): IPv4, IPv6 (after
        /// defragmentation), ARP and other ethertypes.
        const NETWORK = 1 << 1;
        /// The transport layer ([`Plugin::handle_transport`]).
        const TRANSPORT = 1 << 2;
        /// Reassembled TCP stream data ([`Plugin::handle_stream`]).
        const STREAM = 1 << 3;
        /// Flow creation and destruction events.
        const FLOW_EVENTS = 1 << 4;
    }
}

/// What a plugin wants to see, returned once by [`Plugin::interest`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interest {
    /// The layers and events.
    pub layers: Layers,
    /// At the network layer, only these ethertypes (`None`: all).
    pub ethertypes: Option<Vec<u16>>,
    /// At the transport and stream layers, only these IP protocols (`None`: all).
    pub ip_protocols: Option<Vec<u8>>,
    /// At the transport and stream layers, only packets with one of these
    /// ports on either side (`None`: all).
    pub ports: Option<Vec<u16>>,
    /// Run as one instance shared by all workers behind a lock, instead of
    /// one instance per worker merged at the end.
    pub shared: bool,
}

impl Interest {
    /// Interest in `layers`, every protocol.
    pub fn new(layers: Layers) -> Interest {
        Interest {
            layers,
            ..Interest::default()
        }
    }

    /// Restricts the network layer to these ethertypes.
    pub fn ethertypes(mut self, ethertypes: &[u16]) -> Interest {
        self.ethertypes = Some(ethertypes.to_vec());
        self
    }

    /// Restricts the transport and stream layers to these IP protocols.
    pub fn ip_protocols(mut self, protocols: &[u8]) -> Interest {
        self.ip_protocols = Some(protocols.to_vec());
        self
    }

    /// Restricts the transport and stream layers to these ports (either side).
    pub fn ports(mut self, ports: &[u16]) -> Interest {
        self.ports = Some(ports.to_vec());
        self
    }

    /// `true` if the plugin wants `layer` (TRANSPORT or STREAM) for a packet
    /// of this key.
    pub fn wants_key(&self, layer: Layers, key: &libpcap_tools::FiveTuple) -> bool {
        self.wants_protocol(layer, key.proto)
            && self
                .ports
                .as_ref()
                .is_none_or(|p| p.contains(&key.src_port) || p.contains(&key.dst_port))
    }

    /// Asks for a single shared instance (see [`Interest::shared`]).
    pub fn shared(mut self) -> Interest {
        self.shared = true;
        self
    }

    /// `true` if the plugin wants the network layer of `ethertype`.
    pub fn wants_ethertype(&self, ethertype: u16) -> bool {
        self.layers.contains(Layers::NETWORK)
            && self
                .ethertypes
                .as_ref()
                .is_none_or(|e| e.contains(&ethertype))
    }

    /// `true` if the plugin wants `layer` (TRANSPORT or STREAM) for `proto`.
    pub fn wants_protocol(&self, layer: Layers, proto: u8) -> bool {
        self.layers.contains(layer)
            && self
                .ip_protocols
                .as_ref()
                .is_none_or(|p| p.contains(&proto))
    }
}

/// An error raised by a plugin. It is counted against the plugin and never
/// stops the run.
#[derive(Debug, thiserror::Error)]
#[error("plugin {plugin}: {source}")]
pub struct PluginError {
    /// Name of the plugin.
    pub plugin: String,
    /// What went wrong.
    pub source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl PluginError {
    /// A plugin error from a message.
    pub fn new(plugin: &str, message: impl Into<String>) -> PluginError {
        PluginError {
            plugin: plugin.to_string(),
            source: message.into().into(),
        }
    }

    /// A plugin error wrapping another error.
    pub fn wrap(
        plugin: &str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> PluginError {
        PluginError {
            plugin: plugin.to_string(),
            source: Box::new(source),
        }
    }
}

/// Result of a plugin callback.
pub type PluginResult<T> = Result<T, PluginError>;

/// Where decapsulated data returned by a plugin should be decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecapLayer {
    /// An Ethernet frame.
    Ethernet,
    /// A network-layer packet of this ethertype (0x0800 IPv4, 0x86DD IPv6, …).
    Network(u16),
    /// A transport-layer segment of this IP protocol, between the addresses
    /// of the packet that carried it.
    Transport(u8),
}

/// Data a plugin has decapsulated from a layer (a custom tunnel), to be
/// decoded further by the analyzer, one tunnel level deeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decapsulated {
    /// The layer at which to decode `data`.
    pub layer: DecapLayer,
    /// The inner bytes.
    pub data: Vec<u8>,
}

/// What every callback gets to know about the frame being decoded.
#[derive(Debug, Clone, Copy)]
pub struct PacketContext<'a> {
    /// The captured frame.
    pub packet: &'a Packet<'a>,
    /// Tunnel depth of the layer being handed over (0 = outermost).
    pub depth: u8,
    /// VLAN id and tunnel context of this layer.
    pub context: FlowContext,
    /// The verdict of the frame, shared by the contexts of all its layers
    /// (`None`: a context outside a frame, whose verdict goes nowhere).
    verdict: Option<&'a Cell<Verdict>>,
    /// Set by [`PacketContext::stream_done`] (`None`: outside a stream
    /// delivery).
    stream_done: Option<&'a Cell<bool>>,
}

impl<'a> PacketContext<'a> {
    /// The context of the layer of `packet` in `context` (its depth is the
    /// context's).
    pub fn new(packet: &'a Packet<'a>, context: FlowContext) -> PacketContext<'a> {
        PacketContext {
            packet,
            depth: context.depth,
            context,
            verdict: None,
            stream_done: None,
        }
    }

    /// The same context, recording [`PacketContext::stream_done`] in `cell`
    /// (the analyzer gives one per stream delivery).
    pub(crate) fn with_stream_done(mut self, cell: &'a Cell<bool>) -> PacketContext<'a> {
        self.stream_done = Some(cell);
        self
    }

    /// In [`Plugin::handle_stream`]: this plugin needs no more of the
    /// direction being delivered (it found what it looks for, or that the
    /// stream is not its protocol). Later data of that direction, and its
    /// flush at the end of the flow, are no longer delivered to it; once no
    /// plugin listens to a direction, the analyzer stops reassembling it
    /// and frees what it held. The flow's events (`flow_destroyed`) still
    /// come. Elsewhere it does nothing.
    pub fn stream_done(&self) {
        if let Some(c) = self.stream_done {
            c.set(true);
        }
    }

    /// The same context, recording verdicts in `cell` (the analyzer gives
    /// one cell per frame, shared by the contexts of all its layers).
    pub fn with_verdict(mut self, cell: &'a Cell<Verdict>) -> PacketContext<'a> {
        self.verdict = Some(cell);
        self
    }

    /// Asks for the frame to be dropped (inline mode; see the module
    /// documentation). Once a callback of a frame asked for it, no other
    /// callback of that frame can take it back.
    pub fn drop_packet(&self) {
        self.set_verdict(Verdict::Drop);
    }

    /// Gives a verdict for the frame: the strictest of all those given for
    /// it wins ([`Verdict::strictest`]).
    pub fn set_verdict(&self, verdict: Verdict) {
        if let Some(c) = self.verdict {
            c.set(c.get().strictest(verdict));
        }
    }

    /// The frame's verdict so far ([`Verdict::Accept`] for a context
    /// without a verdict cell).
    pub fn verdict(&self) -> Verdict {
        self.verdict.map_or(Verdict::Accept, Cell::get)
    }

    /// Capture time of the frame.
    pub fn ts(&self) -> Option<Timestamp> {
        self.packet.ts
    }
}

/// The link layer of a frame (or of an inner Ethernet frame of a tunnel).
#[derive(Debug, Clone, Copy)]
pub struct LinkLayer<'a> {
    /// Link type of `data`.
    pub linktype: LinkType,
    /// The frame from its link header on.
    pub data: &'a [u8],
    /// Ethertype of what follows the link headers (VLAN, MPLS and PPPoE
    /// stripped), 0 when unknown.
    pub ethertype: u16,
    /// The network-layer bytes.
    pub payload: &'a [u8],
    /// VLAN ids found, outermost first (at most 8 are kept).
    pub vlans: &'a [u16],
}

/// The network layer: IPv4, IPv6 (reassembled when it was fragmented), ARP
/// or any other ethertype.
#[derive(Debug, Clone, Copy)]
pub struct NetworkLayer<'a> {
    /// Ethertype of this layer.
    pub ethertype: u16,
    /// The network packet from its header on (for a reassembled datagram:
    /// the header of the first fragment followed by the reassembled payload
    /// is not rebuilt; `data` is then the last fragment's bytes).
    pub data: &'a [u8],
    /// Source address (IP only).
    pub src: Option<IpAddr>,
    /// Destination address (IP only).
    pub dst: Option<IpAddr>,
    /// Transport protocol number (IP only; 0 otherwise).
    pub protocol: u8,
    /// The transport bytes (after IPv6 extension headers; the whole datagram
    /// when reassembled).
    pub payload: &'a [u8],
    /// `true` if `payload` was rebuilt from fragments.
    pub reassembled: bool,
}

/// The transport layer of a packet (or of a reassembled datagram).
#[derive(Debug, Clone, Copy)]
pub struct TransportLayer<'a> {
    /// The unidirectional key as seen in this packet.
    pub key: FiveTuple,
    /// The transport header and payload.
    pub data: &'a [u8],
    /// The transport payload (after the TCP/UDP/SCTP/ICMP header).
    pub payload: &'a [u8],
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    /// The flow this packet belongs to.
    pub flow: &'a Flow,
    /// Direction of the packet in its flow.
    pub direction: Direction,
    /// Frames this layer stands for: 1, or the number of fragments of a
    /// reassembled datagram.
    pub frames: u32,
    /// Sum of the on-the-wire lengths of those frames.
    pub wire_bytes: u64,
    /// Earliest timestamp of those frames.
    pub first_ts: Option<Timestamp>,
    /// Latest timestamp of those frames.
    pub last_ts: Option<Timestamp>,
}

/// A chunk of reassembled TCP stream data, or a hole in it.
#[derive(Debug, Clone, Copy)]
pub enum StreamData<'a> {
    /// In-order bytes starting at `offset` in the direction's stream.
    Data {
        /// Offset of `data[0]` from the start of the stream.
        offset: u64,
        /// The bytes.
        data: &'a [u8],
    },
    /// Bytes that were never seen (lost or over a buffer cap).
    Gap {
        /// Offset of the hole.
        offset: u64,
        /// Length of the hole.
        len: u64,
    },
}

/// Why a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndReason {
    /// Both sides sent FIN.
    Fin,
    /// A side sent RST.
    Rst,
    /// No packet for longer than the protocol's idle timeout.
    Timeout,
    /// Evicted to make room under the flow cap.
    Eviction,
    /// The input ended.
    EndOfInput,
}

impl EndReason {
    /// The reason's name in the results (`fin`, `rst`, `timeout`,
    /// `eviction`, `end-of-input`), as `Display` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::Timeout => "timeout",
            EndReason::Eviction => "eviction",
            EndReason::EndOfInput => "end-of-input",
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets [`Plugin::merge`] recover the concrete type of another instance.
pub trait AsAny: Any + Send {
    /// `self` as `Box<dyn Any>`.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<T: Any + Send> AsAny for T {
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// Recovers the concrete type of `other` in a [`Plugin::merge`]
/// implementation.
///
/// # Errors
/// When `other` is not a `T` (two different plugins with the same name).
pub fn downcast<T: Plugin>(name: &str, other: Box<dyn Plugin>) -> PluginResult<Box<T>> {
    other
        .into_any()
        .downcast::<T>()
        .map_err(|_| PluginError::new(name, "merge with an instance of another type"))
}

/// An analysis plugin.
///
/// Every callback has a default that does nothing, so a plugin implements
/// only what it needs, and declares it in [`Plugin::interest`]: the analyzer
/// calls only the plugins concerned by a layer and protocol. Callbacks are
/// called by the worker thread that owns the instance (see the module docs).
///
/// A callback that returns `Err` has the error counted against the plugin
/// (the first one is logged as a warning, the next ones at debug level);
/// the run goes on. A plugin that fails too often (`analyzer.max_plugin_errors`)
/// is disabled for the rest of the run.
///
/// ```
/// use libpcap_analyzer::plugin::*;
/// use libpcap_analyzer::{Analyzer, build};
/// use libpcap_tools::{Config, LinkType, Packet, Timestamp};
/// use std::net::Ipv4Addr;
///
/// /// Sums the UDP payload bytes it sees.
/// #[derive(Default)]
/// struct UdpBytes(u64);
///
/// impl Plugin for UdpBytes {
///     fn name(&self) -> &str { "udp-bytes" }
///     fn interest(&self) -> Interest { Interest::new(Layers::TRANSPORT).ip_protocols(&[17]) }
///     fn handle_transport(&mut self, _: &PacketContext<'_>, t: &TransportLayer<'_>)
///         -> PluginResult<Option<Decapsulated>> {
///         self.0 += t.payload.len() as u64;
///         Ok(None)
///     }
/// }
///
/// let (c, s) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
/// let frame = build::ethernet(build::MAC_A, build::MAC_B, 0x0800,
///     &build::ipv4(c, s, 17, 1, &build::udp(c.into(), s.into(), 1, 2, b"hello")));
/// let mut a = Analyzer::new(&Config::new(), vec![Box::new(UdpBytes::default())]).unwrap();
/// a.handle_packet(&Packet { index: 0, interface: 0, linktype: LinkType::ETHERNET,
///     ts: Some(Timestamp(0)), origlen: frame.len() as u32, data: &frame });
/// let (plugins, _) = a.into_parts();
/// let libpcap_analyzer::PluginHandle::Owned(p) = &plugins[0] else { unreachable!() };
/// let any: &dyn std::any::Any = p.as_ref();
/// assert_eq!(any.downcast_ref::<UdpBytes>().unwrap().0, 5);
/// ```
pub trait Plugin: AsAny {
    /// The plugin's name, as given to `--plugins` (kebab-case).
    fn name(&self) -> &str;

    /// The layers, events and protocols the plugin wants. Called once, when
    /// the plugin is registered with the analyzer.
    fn interest(&self) -> Interest;

    /// Hands the plugin the run's memory budget, once, before
    /// [`Plugin::pre_process`]: the same [`MemoryBudget`] for the instances
    /// of every worker, so that a table or buffer the plugin caps is capped
    /// for the whole run, not per worker. Take a [`crate::memory::Lease`]
    /// on a pool of a share ([`MemoryBudget::pool`] with
    /// [`MemoryBudget::share`]), or a [`crate::memory::KeySampler`] for a
    /// keyed table whose rows are results ([`MemoryBudget::sampler`]: the
    /// same keys kept whatever the number of workers). The default ignores
    /// it.
    ///
    /// [`MemoryBudget`]: crate::memory::MemoryBudget
    /// [`MemoryBudget::pool`]: crate::memory::MemoryBudget::pool
    /// [`MemoryBudget::share`]: crate::memory::MemoryBudget::share
    /// [`MemoryBudget::sampler`]: crate::memory::MemoryBudget::sampler
    fn use_memory(&mut self, _budget: &std::sync::Arc<crate::memory::MemoryBudget>) {}

    /// Called once before the first packet.
    fn pre_process(&mut self) -> PluginResult<()> {
        Ok(())
    }

    /// A link layer. Returning `Some` asks the analyzer to decode the
    /// returned data too (a custom encapsulation).
    fn handle_link(
        &mut self,
        ctx: &PacketContext<'_>,
        link: &LinkLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        let _ = (ctx, link);
        Ok(None)
    }

    /// A network layer (see [`Plugin::handle_link`] for the return value).
    fn handle_network(
        &mut self,
        ctx: &PacketContext<'_>,
        net: &NetworkLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        let _ = (ctx, net);
        Ok(None)
    }

    /// A transport layer (see [`Plugin::handle_link`] for the return value).
    fn handle_transport(
        &mut self,
        ctx: &PacketContext<'_>,
        transport: &TransportLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        let _ = (ctx, transport);
        Ok(None)
    }

    /// Reassembled TCP data of `flow` in direction `dir`, in stream order.
    /// A plugin that needs no more of the direction says so with
    /// [`PacketContext::stream_done`]: reassembly stops once no plugin
    /// listens to it.
    fn handle_stream(
        &mut self,
        ctx: &PacketContext<'_>,
        flow: &Flow,
        dir: Direction,
        data: StreamData<'_>,
    ) -> PluginResult<()> {
        let _ = (ctx, flow, dir, data);
        Ok(())
    }

    /// A new flow (its first packet has not been counted yet).
    fn flow_created(&mut self, flow: &Flow) -> PluginResult<()> {
        let _ = flow;
        Ok(())
    }

    /// A flow ended; called exactly once per flow created.
    fn flow_destroyed(&mut self, flow: &Flow, reason: EndReason) -> PluginResult<()> {
        let _ = (flow, reason);
        Ok(())
    }

    /// Folds the results of another instance of this plugin (from another
    /// worker) into this one. The default refuses, which is only right for
    /// plugins that never run with several workers (`Interest::shared`).
    ///
    /// # Errors
    /// When the instances cannot be combined.
    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let _ = other;
        Err(PluginError::new(
            self.name(),
            "this plugin cannot merge results from several workers",
        ))
    }

    /// The decoding counters of the whole run (all workers), given once after
    /// the instances were merged and before [`Plugin::post_process`].
    fn run_stats(&mut self, stats: &crate::stats::AnalyzerStats) {
        let _ = stats;
    }

    /// Called once after the last packet, after all flows were destroyed and
    /// the instances merged.
    fn post_process(&mut self) -> PluginResult<()> {
        Ok(())
    }

    /// The plugin's results as a JSON value (summaries, tests).
    fn results(&self) -> Option<serde_json::Value> {
        None
    }

    /// Named counters for the run summary: what the plugin counted and,
    /// marked as losses ([`Counters::loss`]), what it saw but could not
    /// analyse (malformed messages, data over a memory cap). The tools
    /// show them by name (`pcap-analyzer`: `"plugins": {"NAME": {..}}` in
    /// `--stats-json`, a line per plugin on standard error, a warning in
    /// the log for each loss that is not zero), so that nothing a plugin
    /// drops goes unsaid. The default: none.
    ///
    /// Called by the worker thread that owns the instance each time the
    /// analyzer publishes its counters (every 1024 packets and at every
    /// idle tick; the workers' counters are then added by name:
    /// [`crate::control::RunCounters::plugins`]), and on the merged
    /// instance after [`Plugin::post_process`] for the final figures
    /// ([`crate::RunOutput::plugin_counters`]). Keep it cheap: read fields,
    /// do not compute.
    fn counters(&self) -> Counters {
        Counters::new()
    }

    /// Writes the results into `dir` (created by the caller), returning the
    /// files written. The default writes `results()` as `NAME.json` if there
    /// are results. Write each file atomically ([`write_atomically`]), under
    /// a name [`Plugin::output_names`] declares.
    ///
    /// # Errors
    /// When a file cannot be written.
    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        let Some(value) = self.results() else {
            return Ok(Vec::new());
        };
        let path = dir.join(format!("{}.json", self.name()));
        write_json_atomically(&path, &value).map_err(|e| PluginError::wrap(self.name(), e))?;
        Ok(vec![path])
    }

    /// The names of the files [`Plugin::save_results`] may write into the
    /// output directory (plain file names). Called once on the instance
    /// built from the configuration, before the run: the tool refuses a run
    /// in which one of them is an input or another output, and its run
    /// manifest tells a file of a plugin from a user's file by these names.
    /// The default is `NAME.json` (what the default `save_results` writes)
    /// and `NAME.EXT` for every record format (a record spool saved under the
    /// plugin's name); declaring a name that is not written is harmless.
    fn output_names(&self) -> Vec<String> {
        let mut v = vec![format!("{}.json", self.name())];
        for f in crate::output::Format::ALL {
            v.push(format!("{}.{}", self.name(), f.extension()));
        }
        v
    }

    /// A copy of this instance's results as they would be if the input
    /// ended now, for the reports a run writes while it goes on (the
    /// [`Session`](crate::session::Session)'s periodic and on-demand
    /// reports). `active` holds the flows of this worker that have not ended
    /// yet (no `flow_destroyed` was called for them): a plugin that folds
    /// flows in when they end folds these into the copy, not into itself.
    ///
    /// The copies of all workers are merged ([`Plugin::merge`]), given
    /// [`Plugin::run_stats`] and [`Plugin::post_process`], then saved with
    /// [`Plugin::save_results`] into the output directory, replacing the
    /// previous report (each file atomically). `None`, the default: this
    /// plugin writes no intermediate results. Called by the worker thread
    /// that owns the instance, between two packets.
    fn snapshot(&self, active: &mut dyn Iterator<Item = &Flow>) -> Option<Box<dyn Plugin>> {
        let _ = active;
        None
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory (`.NAME.tmpPID-N`), fsync, then rename, so that a reader never
/// sees a partial file ([`libpcap_tools::outfile::AtomicFile`]).
///
/// # Errors
/// The I/O error of whichever step failed, naming the path.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, |w| w.write_all(bytes))
}

/// As [`write_atomically`], with the content written by `write` (in as many
/// pieces as it likes, through a buffer) instead of held in memory first.
/// Every call has its own temporary file: two writers of one file (a
/// periodic report and the final one) never share one.
///
/// The size and SHA-256 of what was written are noted
/// ([`crate::output::note_written`]), so that a run manifest need not read
/// the file back.
///
/// # Errors
/// The I/O error of whichever step failed (the first error of `write`
/// included), naming the path; the temporary file is then removed.
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut digest = None;
    libpcap_tools::outfile::write_atomically_with(path, |w| {
        let (mut counted, d) = crate::output::DigestWriter::new(w);
        digest = Some(d);
        write(&mut counted)
    })?;
    if let Some(d) = digest {
        let (size, sha256) = d.result();
        crate::output::note_written(path, size, sha256);
    }
    Ok(())
}

/// Writes a JSON value, pretty-printed, with [`write_atomically`].
///
/// # Errors
/// The I/O error of whichever step failed.
pub fn write_json_atomically(path: &Path, value: &serde_json::Value) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write_atomically(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_writers_of_one_file_never_share_a_temporary_file() {
        // the periodic connection report and the final one write the same
        // path; with one temporary name per process, one writer's rename
        // took the other's file away (NotFound) or renamed a mix of both
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.txt");
        let writers: Vec<_> = [b'a', b'b']
            .into_iter()
            .map(|c| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let content = vec![c; 64 * 1024];
                    for _ in 0..300 {
                        write_atomically(&path, &content).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let last = std::fs::read(&path).unwrap();
        assert_eq!(last.len(), 64 * 1024);
        assert!(last.iter().all(|&c| c == last[0]), "a mix of two writes");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.txt"], "no temporary file left");
    }
}
