//! `basic-stats`: totals, per-layer counts, L3 and L4 conversations and
//! anomalies by kind.
//!
//! Conversations are gathered from the flows as they end (no per-packet
//! work): the L3 conversation of two addresses and the L4 conversation of a
//! bidirectional 5-tuple sum the packets and bytes of all their flows,
//! tunnel layers included. At most `max_conversations` of each are held in
//! memory by the whole run (also bounded by the `[memory] basic_stats`
//! share), each worker its part. Over it, with a directory to write into
//! (`[output] spill_dir`, else `[output] dir`), a table writes its rows as
//! a sorted run and starts again, and the runs are merged into the file at
//! the end: the file is the one of a run without a cap. Without one,
//! conversations are kept by a hash of their key, the same ones whatever
//! the number of workers ([`crate::memory::KeySampler`]), and the rest are
//! summed in `other`.
//!
//! Config `[plugin.basic-stats]`: `max_conversations` (default 1000000).
//! Writes `basic-stats.json`: compact JSON on one line (`jq .` pretty-prints it).

use super::runs::{self, Fold, Reader, Run, RunRow, Spill};
use crate::memory::{KeySampler, MemoryBudget, Share};
use crate::plugin::{
    EndReason, Interest, Layers, Plugin, PluginBuilder, PluginError, PluginResult, downcast,
    write_atomically_with,
};
use crate::shards::{Compact, KeyRef, SplitMap, v4, v4_pair};
use crate::stats::AnalyzerStats;
use libpcap_tools::{Config, FiveTuple, Flow, ipproto};
use serde::Serialize;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Configuration `[plugin.basic-stats]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct BasicStatsConfig {
    /// Most conversations held in memory per table by the whole run (also
    /// bounded by the `[memory] basic_stats` share, half for each table;
    /// past it, see the module docs).
    pub max_conversations: usize,
}

impl Default for BasicStatsConfig {
    fn default() -> Self {
        BasicStatsConfig {
            max_conversations: 1_000_000,
        }
    }
}

/// Packets and bytes of a conversation, per direction (a→b is from the
/// lower address/port to the higher).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Conv {
    // fields in the order of the JSON output (keys sorted)
    /// Bytes from the first endpoint.
    pub bytes_ab: u64,
    /// Bytes from the second endpoint.
    pub bytes_ba: u64,
    /// Flows.
    pub flows: u64,
    /// Packets from the first endpoint.
    pub packets_ab: u64,
    /// Packets from the second endpoint.
    pub packets_ba: u64,
}

/// A conversation in a run: its five counts.
impl RunRow for Conv {
    fn encode(&self, out: &mut Vec<u8>) {
        for x in [
            self.bytes_ab,
            self.bytes_ba,
            self.flows,
            self.packets_ab,
            self.packets_ba,
        ] {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }

    fn decode(r: &mut Reader) -> std::io::Result<Self> {
        Ok(Conv {
            bytes_ab: r.u64()?,
            bytes_ba: r.u64()?,
            flows: r.u64()?,
            packets_ab: r.u64()?,
            packets_ba: r.u64()?,
        })
    }
}

impl Fold for Conv {
    fn fold(&mut self, o: &Self) {
        self.add(o);
    }
}

/// An L3 key in a run: the two addresses.
impl RunRow for AddrPair {
    fn encode(&self, out: &mut Vec<u8>) {
        runs::put_ip(out, &self.0);
        runs::put_ip(out, &self.1);
    }

    fn decode(r: &mut Reader) -> std::io::Result<Self> {
        Ok(AddrPair(r.ip()?, r.ip()?))
    }
}

/// An L4 key in a run: the addresses, the ports, the protocol.
impl RunRow for FiveTuple {
    fn encode(&self, out: &mut Vec<u8>) {
        runs::put_endpoints(out, &self.src, &self.dst, [self.src_port, self.dst_port]);
        out.push(self.proto);
    }

    fn decode(r: &mut Reader) -> std::io::Result<Self> {
        let (src, dst, [src_port, dst_port]) = r.endpoints()?;
        let [proto] = r.array::<1>()?;
        Ok(FiveTuple {
            src,
            dst,
            src_port,
            dst_port,
            proto,
        })
    }
}

impl Conv {
    fn add(&mut self, o: &Conv) {
        self.packets_ab += o.packets_ab;
        self.bytes_ab += o.bytes_ab;
        self.packets_ba += o.packets_ba;
        self.bytes_ba += o.bytes_ba;
        self.flows += o.flows;
    }
}

/// The key of an L3 conversation: its two addresses, the lower first
/// (ordered as the pair of addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct AddrPair(IpAddr, IpAddr);

/// Hashed as two integers (the derived hash of the pair made six calls,
/// two of them byte writes, on every flow ended).
impl std::hash::Hash for AddrPair {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(libpcap_tools::ip_bits(&self.0));
        state.write_u128(libpcap_tools::ip_bits(&self.1));
    }
}

/// An [`AddrPair`] of two IPv4 addresses, as integers (in the pair's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct AddrPair4(u32, u32);

/// Hashed as one integer.
impl std::hash::Hash for AddrPair4 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64((u64::from(self.0) << 32) | u64::from(self.1));
    }
}

impl Compact for AddrPair {
    type Small = AddrPair4;
    fn small(&self) -> Option<AddrPair4> {
        v4_pair(&self.0, &self.1).map(|(a, b)| AddrPair4(a, b))
    }
    fn from_small(s: &AddrPair4) -> AddrPair {
        AddrPair(v4(s.0), v4(s.1))
    }
    fn rank(s: &AddrPair4) -> u128 {
        (u128::from(s.0) << 32) | u128::from(s.1)
    }
}

/// A [`FiveTuple`] of IPv4 addresses, the fields in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FiveTuple4 {
    src: u32,
    dst: u32,
    src_port: u16,
    dst_port: u16,
    proto: u8,
}

/// Hashed as two integers.
impl std::hash::Hash for FiveTuple4 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64((u64::from(self.src) << 32) | u64::from(self.dst));
        state.write_u64(
            (u64::from(self.src_port) << 24)
                | (u64::from(self.dst_port) << 8)
                | u64::from(self.proto),
        );
    }
}

/// The L4 key's small form: 16 bytes, where a `FiveTuple` takes 40.
impl Compact for FiveTuple {
    type Small = FiveTuple4;
    fn small(&self) -> Option<FiveTuple4> {
        let (src, dst) = v4_pair(&self.src, &self.dst)?;
        Some(FiveTuple4 {
            src,
            dst,
            src_port: self.src_port,
            dst_port: self.dst_port,
            proto: self.proto,
        })
    }
    fn from_small(s: &FiveTuple4) -> FiveTuple {
        FiveTuple {
            src: v4(s.src),
            dst: v4(s.dst),
            src_port: s.src_port,
            dst_port: s.dst_port,
            proto: s.proto,
        }
    }
    fn rank(s: &FiveTuple4) -> u128 {
        (u128::from(s.src) << 72)
            | (u128::from(s.dst) << 40)
            | (u128::from(s.src_port) << 24)
            | (u128::from(s.dst_port) << 8)
            | u128::from(s.proto)
    }
}

/// The `basic-stats` plugin.
#[derive(Debug, Default)]
pub struct BasicStats {
    cfg: BasicStatsConfig,
    l3: SplitMap<AddrPair, Conv>,
    l4: SplitMap<FiveTuple, Conv>,
    other_l3: Conv,
    other_l4: Conv,
    end_reasons: HashMap<EndReason, u64, foldhash::fast::RandomState>,
    run: AnalyzerStats,
    /// Sampling of the L3 table (with a memory budget).
    l3_sample: Sample,
    /// Sampling of the L4 table.
    l4_sample: Sample,
    /// Runs of the L3 table.
    l3_runs: Spill,
    /// Runs of the L4 table.
    l4_runs: Spill,
    /// The L4 rows of the flows ended, appended unfolded while the table
    /// spills runs (almost every flow is a conversation of its own: a
    /// hash table larger than the caches cost a few misses a flow).
    l4_staged: runs::Staged<FiveTuple, Conv>,
    /// Rows held in `l4` before L4 rows are staged.
    stage_from: runs::StageFrom,
    /// Rows held by each table (0: no limit but the sampler's): each
    /// worker's part of the cap when the tables spill.
    cap: usize,
    /// Conversations of the last file written (L3, L4).
    written: Option<(u64, u64)>,
}

/// The keys a table keeps by hash, shared by the workers, and the level
/// its rows were last pruned to.
#[derive(Debug, Default)]
struct Sample {
    sampler: Option<Arc<KeySampler>>,
    level: u32,
}

/// What becomes of conversations past the cap once a run cannot be
/// written.
const PAST_CAP: &str = "conversations past the cap are summed in other";

/// Estimated bytes of an L4 row (the larger).
const ROW_BYTES: u64 = crate::memory::row_bytes(std::mem::size_of::<(FiveTuple, Conv)>());

fn prune<K: Compact>(
    map: &mut SplitMap<K, Conv>,
    other: &mut Conv,
    sample: &mut Sample,
    level: u32,
) {
    map.retain(|k, v| {
        let keep = KeySampler::passes(KeySampler::hash(k), level);
        if !keep {
            other.add(v);
        }
        keep
    });
    sample.level = level;
}

/// Adds `c` to the row of `k`; `counting`: a key new to the table is
/// counted by the sampler (not when merging: it was counted where seen).
#[allow(clippy::too_many_arguments)]
fn bump<K: Compact + Ord + RunRow>(
    map: &mut SplitMap<K, Conv>,
    cap: usize,
    other: &mut Conv,
    sample: &mut Sample,
    spill: (&mut Spill, &str),
    k: K,
    c: &Conv,
    counting: bool,
) {
    let level = sample.sampler.as_ref().map(|s| s.level());
    if let Some(l) = level
        && l != sample.level
    {
        prune(map, other, sample, l);
    }
    let (spill, table) = spill;
    let full = spill.full_for(map, cap, k, table, PAST_CAP);
    // one lookup for a known key; a new key is hashed once more, for the
    // sampler. When admitting it raises the level, the rows the new level
    // drops go at the next call or at the end (`settle`).
    let sampled = sample.sampler.as_deref().zip(level);
    let row = map.get_or_try_insert(k, |k| {
        KeySampler::table_admits(sampled, k, counting, full).then(Conv::default)
    });
    match row {
        Some(row) => row.add(c),
        None => other.add(c),
    }
}

/// Folds `from`, a table of another worker, into `map`: its keys were
/// counted by the sampler where they were seen; a key refused goes to
/// `other`, as [`bump`] does.
fn absorb<K: Compact + Ord + RunRow>(
    map: &mut SplitMap<K, Conv>,
    from: SplitMap<K, Conv>,
    cap: usize,
    other: &mut Conv,
    sample: &mut Sample,
    spill: (&mut Spill, &str),
) {
    // room for the other's rows: the rows held go to a run first
    let (spill, table) = spill;
    spill.make_room(map, from.len(), cap, table, PAST_CAP);
    let level = sample.sampler.as_ref().map(|s| s.level());
    if let Some(l) = level
        && l != sample.level
    {
        prune(map, other, sample, l);
    }
    let sampled = sample.sampler.as_deref().zip(level);
    map.absorb(
        from,
        |row, c| row.add(&c),
        |k, c, len| {
            if KeySampler::table_admits(sampled, k, false, cap > 0 && len >= cap) {
                return Some(c);
            }
            other.add(&c);
            None
        },
    );
}

impl BasicStats {
    /// The plugin with `cfg`.
    pub fn new(cfg: BasicStatsConfig) -> BasicStats {
        BasicStats {
            cap: cfg.max_conversations,
            cfg,
            ..BasicStats::default()
        }
    }

    /// The plugin writing the conversations over its cap as sorted runs
    /// into `dir` (see the module docs); `None`: conversations over the
    /// cap are kept by a hash of their key, the rest summed in `other`.
    pub fn with_spill_dir(mut self, dir: Option<PathBuf>) -> BasicStats {
        self.l3_runs.dir.clone_from(&dir);
        self.l4_runs.dir = dir;
        self
    }

    fn add_flow(&mut self, f: &Flow) {
        let key = f.key;
        let conv = |ab: libpcap_tools::DirectionStats, ba: libpcap_tools::DirectionStats| Conv {
            packets_ab: ab.packets,
            bytes_ab: ab.bytes,
            packets_ba: ba.packets,
            bytes_ba: ba.bytes,
            flows: 1,
        };
        // L4: a is the lower (address, port) endpoint; L3: the lower address
        let c4 = if key.is_canonical() {
            conv(f.to_server, f.to_client)
        } else {
            conv(f.to_client, f.to_server)
        };
        let (pair, c3) = if key.src <= key.dst {
            (AddrPair(key.src, key.dst), conv(f.to_server, f.to_client))
        } else {
            (AddrPair(key.dst, key.src), conv(f.to_client, f.to_server))
        };
        let cap = self.cap;
        bump(
            &mut self.l3,
            cap,
            &mut self.other_l3,
            &mut self.l3_sample,
            (&mut self.l3_runs, "basic-stats.l3"),
            pair,
            &c3,
            true,
        );
        if self.stages_l4() {
            self.stage_l4_row(key.canonical(), c4);
        } else {
            self.bump_l4(key.canonical(), &c4);
        }
    }

    /// Adds `c` to the L4 row of `k` in `l4` (see [`bump`]).
    fn bump_l4(&mut self, k: FiveTuple, c: &Conv) {
        bump(
            &mut self.l4,
            self.cap,
            &mut self.other_l4,
            &mut self.l4_sample,
            (&mut self.l4_runs, "basic-stats.l4"),
            k,
            c,
            true,
        );
    }

    /// Appends an L4 row to `l4_staged` (a run written at the cap); out of
    /// line, so that the path of a table under its cap stays as it was.
    #[inline(never)]
    fn stage_l4_row(&mut self, k: FiveTuple, c: Conv) {
        self.l4_staged.push(k, c, self.cap);
        if self.l4_staged.len() + self.l4.len() >= self.cap {
            self.spill_l4_staged();
        }
    }

    /// Whether the L4 rows are appended to `l4_staged` rather than found
    /// in `l4` ([`Spill::stages`]).
    fn stages_l4(&self) -> bool {
        self.l4_runs
            .stages(self.l4.len(), self.cap, self.stage_from)
    }

    /// Writes the rows of `l4` and the staged L4 rows as a run; when that
    /// fails, they go into `l4` (what is past the cap summed in
    /// `other_l4`).
    fn spill_l4_staged(&mut self) {
        let (map, staged) = (&mut self.l4, &mut self.l4_staged);
        if !self
            .l4_runs
            .write_staged(map, staged, self.cap, "basic-stats.l4", PAST_CAP)
        {
            self.unstage_l4();
        }
    }

    /// Folds the staged L4 rows into `l4`.
    fn unstage_l4(&mut self) {
        for (k, c) in self.l4_staged.take() {
            self.bump_l4(k, &c);
        }
    }

    /// Appends `rows` to the staged L4 rows (a run written whenever they
    /// reach the cap).
    fn stage_l4(&mut self, rows: impl Iterator<Item = (FiveTuple, Conv)>) {
        for (k, c) in rows {
            self.stage_l4_row(k, c);
        }
    }

    /// Settles the staged L4 rows once the flows are counted (the end):
    /// a run when the table wrote runs, else into `l4`.
    fn settle_staged(&mut self) {
        if self.l4_staged.len() == 0 {
            return;
        }
        if self.l4_runs.runs.is_empty() {
            self.unstage_l4();
        } else {
            self.spill_l4_staged();
        }
    }

    /// Prunes both tables to their sampler's level (after a merge, at the
    /// end).
    fn settle(&mut self) {
        if let Some(l) = self.l3_sample.sampler.as_ref().map(|s| s.level()) {
            prune(&mut self.l3, &mut self.other_l3, &mut self.l3_sample, l);
        }
        if let Some(l) = self.l4_sample.sampler.as_ref().map(|s| s.level()) {
            prune(&mut self.l4, &mut self.other_l4, &mut self.l4_sample, l);
        }
    }
}

impl Plugin for BasicStats {
    fn name(&self) -> &str {
        "basic-stats"
    }

    fn interest(&self) -> Interest {
        Interest::new(Layers::FLOW_EVENTS)
    }

    fn flow_destroyed(&mut self, flow: &Flow, reason: EndReason) -> PluginResult<()> {
        *self.end_reasons.entry(reason).or_default() += 1;
        self.add_flow(flow);
        Ok(())
    }

    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let o = downcast::<Self>("basic-stats", other)?;
        let mut o = *o;
        // the other's staged L4 rows join ours, still staged
        let theirs = o.l4_staged.take();
        self.stage_l4(theirs);
        let cap = self.cap;
        self.l3_runs
            .adopt::<AddrPair, Conv>(&mut o.l3_runs, "basic-stats.l3");
        self.l4_runs
            .adopt::<FiveTuple, Conv>(&mut o.l4_runs, "basic-stats.l4");
        absorb(
            &mut self.l3,
            o.l3,
            cap,
            &mut self.other_l3,
            &mut self.l3_sample,
            (&mut self.l3_runs, "basic-stats.l3"),
        );
        absorb(
            &mut self.l4,
            o.l4,
            cap,
            &mut self.other_l4,
            &mut self.l4_sample,
            (&mut self.l4_runs, "basic-stats.l4"),
        );
        self.other_l3.add(&o.other_l3);
        self.other_l4.add(&o.other_l4);
        for (k, v) in &o.end_reasons {
            *self.end_reasons.entry(*k).or_default() += v;
        }
        self.settle();
        Ok(())
    }

    fn use_memory(&mut self, budget: &Arc<MemoryBudget>) {
        let share = budget.share(Share::BasicStats) / 2 / ROW_BYTES;
        let cap = (self.cfg.max_conversations as u64).min(share).max(1);
        if self.l3_runs.dir.is_some() {
            // each worker holds its part, and spills past it
            let part = (cap / budget.workers() as u64).max(1);
            self.cap = usize::try_from(part).unwrap_or(usize::MAX);
        } else {
            self.l3_sample.sampler = Some(budget.sampler("basic-stats.l3", cap));
            self.l4_sample.sampler = Some(budget.sampler("basic-stats.l4", cap));
        }
    }

    fn post_process(&mut self) -> PluginResult<()> {
        self.settle_staged();
        self.settle();
        Ok(())
    }

    fn run_stats(&mut self, stats: &AnalyzerStats) {
        self.run = stats.clone();
    }

    fn results(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self.report()).ok()
    }

    /// Conversations kept, and flows folded into the `other` rows because
    /// `max_conversations` was reached (their conversation is not listed).
    fn counters(&self) -> crate::plugin::Counters {
        // before a file is written, the rows held, staged and spilled (a
        // key in several runs, or staged several times, counted in each)
        let (l3, l4) = self.written.unwrap_or((
            self.l3.len() as u64 + self.l3_runs.rows(),
            (self.l4.len() + self.l4_staged.len()) as u64 + self.l4_runs.rows(),
        ));
        crate::plugin::Counters::new()
            .count("l3_conversations", l3)
            .count("l4_conversations", l4)
            .loss("l3_flows_in_other", self.other_l3.flows)
            .loss("l4_flows_in_other", self.other_l4.flows)
    }

    /// Writes `basic-stats.json` straight from the tables: a million
    /// conversations as a `serde_json::Value` took ~2 GB, streamed they
    /// take the sorted list of references.
    fn output_names(&self) -> Vec<String> {
        vec!["basic-stats.json".to_string()]
    }

    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        self.settle_staged();
        let path = dir.join("basic-stats.json");
        let mut written = None;
        write_atomically_with(&path, |w| {
            let mut w = std::io::BufWriter::with_capacity(1 << 16, w);
            let report = self.report();
            serde_json::to_writer(&mut w, &report).map_err(std::io::Error::other)?;
            written = Some((
                report.l3_conversations.written.get(),
                report.l4_conversations.written.get(),
            ));
            std::io::Write::write_all(&mut w, b"\n")?;
            std::io::Write::flush(&mut w)
        })
        .map_err(|e| PluginError::wrap("basic-stats", e))?;
        self.written = written;
        Ok(vec![path])
    }
}

impl BasicStats {
    /// The results, borrowing the tables (conversations sorted).
    fn report(&self) -> Report<'_> {
        let l3 = self.l3.sorted().collect();
        let l4 = self.l4.sorted().collect();
        let r = &self.run;
        Report {
            anomalies: &r.anomalies,
            flows_ended: self
                .end_reasons
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            l3_conversations: Rows::new(l3, &self.l3_runs.runs),
            l3_other: self.other_l3,
            l4_conversations: Rows::new(l4, &self.l4_runs.runs),
            l4_other: self.other_l4,
            layers: LayerCounts {
                arp: r.arp,
                fragments: r.fragments,
                icmp: r.icmp,
                ipv4: r.ipv4,
                ipv6: r.ipv6,
                network: r.network,
                other_network: r.other_network,
                other_transport: r.other_transport,
                reassembled: r.reassembled,
                sctp: r.sctp,
                stream_bytes: r.stream_bytes,
                tcp: r.tcp,
                tunnels: r.tunnels,
                udp: r.udp,
            },
            plugin_errors: &r.plugin_errors,
            totals: Totals {
                bytes: r.bytes,
                packets: r.packets,
            },
        }
    }
}

// The shape of `basic-stats.json`; fields in key order, as the file has
// always been written (sorted keys).
#[derive(Serialize)]
struct Report<'a> {
    anomalies: &'a BTreeMap<String, u64>,
    flows_ended: BTreeMap<String, u64>,
    l3_conversations: Rows<'a, AddrPair>,
    l3_other: Conv,
    l4_conversations: Rows<'a, FiveTuple>,
    l4_other: Conv,
    layers: LayerCounts,
    plugin_errors: &'a BTreeMap<String, u64>,
    totals: Totals,
}

#[derive(Serialize)]
struct Totals {
    bytes: u64,
    packets: u64,
}

#[derive(Serialize)]
struct LayerCounts {
    arp: u64,
    fragments: u64,
    icmp: u64,
    ipv4: u64,
    ipv6: u64,
    network: u64,
    other_network: u64,
    other_transport: u64,
    reassembled: u64,
    sctp: u64,
    stream_bytes: u64,
    tcp: u64,
    tunnels: u64,
    udp: u64,
}

/// The conversations of a table in key order: those held (sorted) and
/// those of its runs, merged as they are written.
struct Rows<'a, K: Compact> {
    held: Vec<(KeyRef<'a, K>, &'a Conv)>,
    runs: &'a [Arc<Run>],
    /// Rows written by the last serialization.
    written: Cell<u64>,
}

impl<'a, K: Compact + Ord + RunRow> Rows<'a, K> {
    fn new(held: Vec<(KeyRef<'a, K>, &'a Conv)>, runs: &'a [Arc<Run>]) -> Self {
        Rows {
            held,
            runs,
            written: Cell::new(0),
        }
    }

    /// Serializes the rows (each made by `row`) as a sequence, counting
    /// them; a run that cannot be read is an error.
    fn serialize_with<S: serde::Serializer, R: Serialize>(
        &self,
        s: S,
        row: impl Fn(K, Conv) -> R,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let held = self.held.iter().map(|(k, v)| (k.key(), **v));
        let mut merged = runs::Merged::new(held, self.runs).map_err(S::Error::custom)?;
        let mut n = 0u64;
        let out = s.collect_seq(merged.by_ref().map(|(k, v)| {
            n += 1;
            row(k, v)
        }));
        self.written.set(n);
        match merged.take_error() {
            Some(e) => Err(S::Error::custom(e)),
            None => out,
        }
    }
}

impl Serialize for Rows<'_, AddrPair> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Row {
            a: IpAddr,
            b: IpAddr,
            #[serde(flatten)]
            conv: Conv,
        }
        self.serialize_with(s, |AddrPair(a, b), conv| Row { a, b, conv })
    }
}

impl Serialize for Rows<'_, FiveTuple> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Row {
            a: IpAddr,
            a_port: u16,
            b: IpAddr,
            b_port: u16,
            #[serde(flatten)]
            conv: Conv,
            protocol: std::borrow::Cow<'static, str>,
        }
        self.serialize_with(s, |k, conv| Row {
            a: k.src,
            a_port: k.src_port,
            b: k.dst,
            b_port: k.dst_port,
            conv,
            protocol: ipproto::name(k.proto).map_or_else(|| k.proto.to_string().into(), Into::into),
        })
    }
}

/// Builder of [`BasicStats`].
#[derive(Debug)]
pub struct BasicStatsBuilder;

impl PluginBuilder for BasicStatsBuilder {
    fn name(&self) -> &str {
        "basic-stats"
    }
    fn description(&self) -> &str {
        "totals, per-layer counts, L3/L4 conversations and anomalies by kind"
    }
    fn build(&self, config: &Config) -> PluginResult<Box<dyn Plugin>> {
        let cfg: BasicStatsConfig = config
            .plugin("basic-stats")
            .map_err(|e| PluginError::wrap("basic-stats", e))?;
        cfg.validate()
            .map_err(|m| PluginError::new("basic-stats", m))?;
        let out = super::spool::OutputConfig::from_config(config, "basic-stats")?;
        Ok(Box::new(
            BasicStats::new(cfg).with_spill_dir(out.spill_dir.or(out.dir)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libpcap_tools::{DirectionStats, FlowContext, FlowId};

    /// The ranks of the small L3 and L4 keys (IPv4 addresses) are in the
    /// keys' order.
    #[test]
    fn small_keys_rank_in_key_order() {
        let mut rng = crate::proto::tls::test_support::XorShift(0x2545_f491_4f6c_dd1d);
        // few values a field, so that keys tie on their first fields
        let mut field = |n: u64| rng.next() % n;
        let ip = |f: &mut dyn FnMut(u64) -> u64| IpAddr::from([f(3) as u8 * 127, 0, 0, f(3) as u8]);
        let mut pairs = Vec::new();
        let mut tuples = Vec::new();
        for _ in 0..2_000 {
            pairs.push(AddrPair(ip(&mut field), ip(&mut field)));
            tuples.push(FiveTuple {
                src: ip(&mut field),
                dst: ip(&mut field),
                src_port: [0, 1, 0xffff][field(3) as usize],
                dst_port: [0, 53, 0xffff][field(3) as usize],
                proto: [0, 6, 255][field(3) as usize],
            });
        }
        assert_eq!(crate::shards::ranks_are_in_key_order(&pairs), pairs.len());
        assert_eq!(crate::shards::ranks_are_in_key_order(&tuples), tuples.len());
    }

    /// The small forms of the L3 and L4 keys give back their key and sort
    /// as their keys do, so the conversations come out in the same order
    /// from either table.
    #[test]
    fn small_keys_sort_as_their_keys() {
        let mut rng = crate::proto::tls::test_support::XorShift(0x2545_f491_4f6c_dd1d);
        // few values per field, so that keys often tie on the first ones
        let mut pairs = Vec::new();
        let mut tuples = Vec::new();
        for _ in 0..2_000 {
            let r = rng.next();
            let a = v4([0x0a00_0000, 0x0a00_0001, 0xc0a8_0001, 0xffff_fffe][(r & 3) as usize]);
            let b = v4([0x0a00_0001, 0x0a00_0000, 0x0101_0101, 0x8000_0000][(r >> 2 & 3) as usize]);
            pairs.push(AddrPair(a, b));
            tuples.push(FiveTuple {
                src: a,
                dst: b,
                src_port: [53, 443, 1024, 65535][(r >> 4 & 3) as usize],
                dst_port: [53, 80, 40000][(r >> 6) as usize % 3],
                proto: [6, 17, 1][(r >> 8) as usize % 3],
            });
        }
        for w in pairs.windows(2) {
            let (a, b) = (w[0].small().unwrap(), w[1].small().unwrap());
            assert_eq!(AddrPair::from_small(&a), w[0]);
            assert_eq!(a.cmp(&b), w[0].cmp(&w[1]), "{:?} {:?}", w[0], w[1]);
        }
        for w in tuples.windows(2) {
            let (a, b) = (w[0].small().unwrap(), w[1].small().unwrap());
            assert_eq!(FiveTuple::from_small(&a), w[0]);
            assert_eq!(a.cmp(&b), w[0].cmp(&w[1]), "{:?} {:?}", w[0], w[1]);
        }
        // an IPv6 address has no small form
        let six = AddrPair(pairs[0].0, "2001:db8::1".parse().unwrap());
        assert!(six.small().is_none());
    }

    fn flow(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, proto: u8, n: u64) -> Flow {
        let key = FiveTuple {
            src: IpAddr::from(src),
            dst: IpAddr::from(dst),
            src_port: sport,
            dst_port: dport,
            proto,
        };
        let mut f = Flow::new(FlowId(n), key, FlowContext::default());
        f.to_server = DirectionStats {
            packets: n,
            bytes: 100 * n,
            ..DirectionStats::default()
        };
        f.to_client = DirectionStats {
            packets: 1,
            bytes: 60,
            ..DirectionStats::default()
        };
        f
    }

    #[test]
    fn the_saved_file_is_the_compact_results_on_one_line() {
        let mut p = BasicStats::new(BasicStatsConfig {
            max_conversations: 3,
        });
        let flows = [
            flow([10, 0, 0, 1], 53, [10, 0, 0, 9], 5353, 17, 2),
            flow([10, 0, 0, 2], 40000, [10, 0, 0, 1], 443, 6, 3),
            flow([10, 0, 0, 3], 0, [10, 0, 0, 4], 0, 143, 1), // no protocol name
            // over the cap of 3 L4 conversations (its L3 pair is kept)
            flow([10, 0, 0, 2], 40001, [10, 0, 0, 1], 443, 6, 1),
            flow([10, 0, 0, 5], 1, [10, 0, 0, 6], 2, 17, 7), // over both caps
        ];
        for f in &flows {
            p.flow_destroyed(f, EndReason::Timeout).unwrap();
        }
        let mut stats = AnalyzerStats::default();
        stats.anomaly("ipv4_truncated");
        p.run_stats(&stats);
        let dir = tempfile::tempdir().unwrap();
        let files = p.save_results(dir.path()).unwrap();
        assert_eq!(files, [dir.path().join("basic-stats.json")]);
        let text = std::fs::read_to_string(&files[0]).unwrap();
        let value = p.results().unwrap();
        assert_eq!(text, serde_json::to_string(&value).unwrap() + "\n");
        assert_eq!(text.lines().count(), 1, "compact: one line");
        assert!(
            !text.contains(": ") && !text.contains("\n "),
            "no pretty-printing"
        );
        // what the file says, checked field by field
        let l4 = value["l4_conversations"].as_array().unwrap();
        assert_eq!(l4.len(), 3);
        // sorted by (a, b, ports); `a` is the lower endpoint, here the server
        assert_eq!(
            l4[0],
            serde_json::json!({"a": "10.0.0.1", "a_port": 443, "b": "10.0.0.2", "b_port": 40000,
                "bytes_ab": 60, "bytes_ba": 300, "flows": 1, "packets_ab": 1, "packets_ba": 3,
                "protocol": "TCP"})
        );
        assert_eq!(l4[1]["protocol"], "UDP");
        assert_eq!(l4[1]["bytes_ab"], 200);
        assert_eq!(l4[2]["protocol"], "143");
        assert_eq!(value["l4_other"]["flows"], 2);
        assert_eq!(value["l4_other"]["packets_ab"], 8);
        let l3 = value["l3_conversations"].as_array().unwrap();
        assert_eq!(l3.len(), 3);
        assert_eq!(
            (&l3[0]["b"], &l3[0]["flows"]),
            (&"10.0.0.2".into(), &2.into())
        );
        assert_eq!(value["l3_other"]["flows"], 1);
        assert_eq!(value["flows_ended"]["timeout"], 5);
        assert_eq!(value["anomalies"]["ipv4_truncated"], 1);
    }

    /// Tables over their cap write sorted runs and give the file of tables
    /// without a cap, byte for byte, also merged from several workers'
    /// instances; nothing goes to `other`, and the runs are removed with
    /// the instances.
    #[test]
    fn tables_spilling_runs_write_the_file_of_tables_without_a_cap() {
        let runs = tempfile::tempdir().unwrap();
        let flows: Vec<Flow> = (0..3_000u32)
            .map(|i| {
                // each conversation several times, far apart
                let x = (i % 700) * 13 % 700;
                let proto = if x % 4 == 0 { 6 } else { 17 };
                let mut f = flow(
                    [10, 0, (x >> 8) as u8, x as u8],
                    (1000 + x % 50) as u16,
                    [192, 0, 2, (x % 9) as u8],
                    53,
                    proto,
                    1 + u64::from(i % 5),
                );
                if x % 3 == 0 {
                    f.key.src = IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, x as u16]);
                    f.key.dst = IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 1, 1]);
                }
                f
            })
            .collect();
        let file = |p: &mut BasicStats| {
            let dir = tempfile::tempdir().unwrap();
            p.save_results(dir.path()).unwrap();
            std::fs::read(dir.path().join("basic-stats.json")).unwrap()
        };
        let spilling = || {
            let mut p = BasicStats::new(BasicStatsConfig::default())
                .with_spill_dir(Some(runs.path().to_path_buf()));
            p.cap = 97;
            // 30 rows in the hash table, then staged (they join the
            // staged rows at the spill)
            p.stage_from = runs::StageFrom(30);
            p
        };
        let mut whole = BasicStats::new(BasicStatsConfig::default());
        let mut one = spilling();
        for f in &flows {
            whole.flow_destroyed(f, EndReason::Timeout).unwrap();
            one.flow_destroyed(f, EndReason::Timeout).unwrap();
        }
        let mut parts: Vec<BasicStats> = (0..3).map(|_| spilling()).collect();
        for (i, f) in flows.iter().enumerate() {
            parts[i * 3 / flows.len()]
                .flow_destroyed(f, EndReason::Timeout)
                .unwrap();
        }
        let mut merged = parts.remove(0);
        for p in parts {
            merged.merge(Box::new(p)).unwrap();
        }
        let want = file(&mut whole);
        let kept = |p: &BasicStats| {
            let c = p.counters();
            (c.get("l3_conversations"), c.get("l4_conversations"))
        };
        for (name, p) in [("one", &mut one), ("merged", &mut merged)] {
            // several runs left at the end (FAN runs of one level, as the
            // workers' runs are adopted, are merged into one)
            let held = (p.l4_runs.runs.len(), p.l3_runs.runs.len());
            assert!(held.0 >= 2 && held.1 >= 2, "{name}: {held:?}");
            assert!(p.l4_runs.rows() > 5 * p.cap as u64, "{name}");
            assert!(file(p) == want, "{name}");
            assert_eq!(kept(p), kept(&whole), "{name}");
            assert_eq!((p.other_l3.flows, p.other_l4.flows), (0, 0), "{name}");
        }
        // under the cap no run is written: the L4 rows staged past 50 (of
        // one worker, or of three merged) go into the table at the end
        for workers in [1, 3] {
            let mut parts: Vec<BasicStats> = (0..workers)
                .map(|_| {
                    let mut p = spilling();
                    p.cap = 10_000;
                    p.stage_from = runs::StageFrom(50);
                    p
                })
                .collect();
            for (i, f) in flows.iter().enumerate() {
                parts[i * workers / flows.len()]
                    .flow_destroyed(f, EndReason::Timeout)
                    .unwrap();
            }
            assert!(parts.iter().all(|p| p.l4_staged.len() > 0), "{workers}");
            let mut p = parts.remove(0);
            for o in parts {
                p.merge(Box::new(o)).unwrap();
            }
            p.post_process().unwrap();
            assert!(p.l4_runs.runs.is_empty() && p.l3_runs.runs.is_empty());
            assert_eq!(p.l4_staged.len(), 0, "{workers}");
            assert!(file(&mut p) == want, "{workers} workers under the cap");
            assert_eq!(kept(&p), kept(&whole), "{workers}");
        }
        drop((one, merged));
        assert_eq!(std::fs::read_dir(runs.path()).unwrap().count(), 0);
    }
}
