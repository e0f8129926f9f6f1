//! `connections`: the connection report.
//!
//! One row per unidirectional connection key (source ip, source port,
//! destination ip, destination port) with the transports seen on it, the
//! first and last packet times (milliseconds since the epoch, truncated),
//! the bytes (sum of the on-the-wire length of every frame) and the packets.
//! Protocols without ports use port 0. Every fragment of a datagram counts
//! for the connection of the rebuilt datagram; tunnelled traffic counts for
//! the outer connection and for each inner one, each with the whole frame.
//!
//! Rows are sorted by source address (IPv4 before IPv6, then numerically),
//! source port, destination address, destination port.
//!
//! Config `[plugin.connections]`: `format` (`text`, `csv` or `jsonl`),
//! `interval` (seconds between rewrites of the report while running; 0 or
//! absent: only at the end, except for live input where the tool defaults to
//! 5: read by the tool, which gives it to its
//! [`Session`](crate::session::Session)), `file` (base name, default
//! `connections`), `max_connections`.
//!
//! Flows are folded into the table when they end, which costs nothing per
//! packet; a report written while the run goes on
//! ([`Plugin::snapshot`]) folds the flows still open into a copy.
//!
//! Past its cap (`max_connections`, the `[memory] connections` share),
//! with a directory to write into (`[output] spill_dir`, else `[output]
//! dir`), a worker's table writes its rows as a sorted run and starts
//! again; the runs are merged into the report as it is written, which is
//! then the report of a table without a cap (see the `runs` module).
//! Without a directory, rows past the cap are kept by a hash of their key.

use crate::memory::{KeySampler, MemoryBudget, Share};
use crate::output::schema::CONNECTION;
use crate::output::{Format, RowBuf};
use crate::plugin::{
    Interest, Layers, Plugin, PluginBuilder, PluginError, PluginResult, downcast,
    write_atomically_with,
};
use crate::shards::{Compact, KeyRef, SplitMap, v4, v4_pair};
use libpcap_tools::{Config, ipproto};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::runs::{self, Fold, Reader, RunRow, Spill};

/// Output format of the report: the seed's text report, or the
/// `connection` records of the schema in one of the record formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// `; `-separated text with a header line, times in milliseconds: the
    /// report of the Nasoone seed, kept to the letter.
    #[default]
    Text,
    /// `connection` records as RFC 4180 CSV with a header row.
    Csv,
    /// `connection` records as JSON lines.
    Jsonl,
    /// `connection` records as a Zeek TSV log.
    Zeek,
    /// `connection` records as Parquet.
    Parquet,
}

impl ReportFormat {
    /// File extension of the format.
    pub fn extension(self) -> &'static str {
        match self.records() {
            Some(f) => f.extension(),
            None => "txt",
        }
    }

    /// The record format, for every format but the text report.
    pub fn records(self) -> Option<Format> {
        match self {
            ReportFormat::Text => None,
            ReportFormat::Csv => Some(Format::Csv),
            ReportFormat::Jsonl => Some(Format::Jsonl),
            ReportFormat::Zeek => Some(Format::Zeek),
            ReportFormat::Parquet => Some(Format::Parquet),
        }
    }
}

impl std::str::FromStr for ReportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" | "txt" => Ok(ReportFormat::Text),
            other => match other.parse::<Format>() {
                Ok(Format::Csv) => Ok(ReportFormat::Csv),
                Ok(Format::Jsonl) => Ok(ReportFormat::Jsonl),
                Ok(Format::Zeek) => Ok(ReportFormat::Zeek),
                Ok(Format::Parquet) => Ok(ReportFormat::Parquet),
                Err(_) => Err(format!(
                    "unknown format '{other}' (text, jsonl, csv, zeek, parquet)"
                )),
            },
        }
    }
}

/// Configuration `[plugin.connections]`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct ConnectionsConfig {
    /// Output format.
    pub format: ReportFormat,
    /// Seconds between rewrites of the report during the run (0: off).
    pub interval: f64,
    /// Base name of the report file.
    pub file: String,
    /// Most rows held in memory by the whole run (all workers, each its
    /// part; also bounded by the `[memory] connections` share). Over it,
    /// with a directory to spill into (`[output] spill_dir`, else `[output]
    /// dir`), the rows are written to disk as sorted runs and merged into
    /// the report at the end: the report is the same as without a cap.
    /// Without one, keys are kept by a hash of the key, the same ones
    /// whatever the number of workers ([`crate::memory::KeySampler`]); the
    /// others are counted (`dropped_keys`: flow directions not kept,
    /// `dropped_packets`, in the results and a warning) instead of growing
    /// memory without bound. 0: no limit but the memory share.
    pub max_connections: usize,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            format: ReportFormat::Text,
            interval: 0.0,
            file: "connections".to_string(),
            max_connections: 10_000_000,
        }
    }
}

/// A unidirectional connection key, ordered by source address (IPv4 before
/// IPv6), source port, destination address, destination port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnKey {
    /// Source address.
    pub src: IpAddr,
    /// Source port (0 without ports).
    pub src_port: u16,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port.
    pub dst_port: u16,
}

/// Hashed as three integers, as `FiveTuple` is (the derived hash made
/// seven calls, two of them byte writes, on every row looked up).
impl std::hash::Hash for ConnKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(libpcap_tools::ip_bits(&self.src));
        state.write_u128(libpcap_tools::ip_bits(&self.dst));
        state.write_u32((u32::from(self.src_port) << 16) | u32::from(self.dst_port));
    }
}

impl Ord for ConnKey {
    /// The order of the fields as `IpAddr` and `u16` give it, written by
    /// hand to compare addresses of one family as integers: the report's
    /// sort spends most of its time here.
    fn cmp(&self, o: &ConnKey) -> std::cmp::Ordering {
        fn ip(a: &IpAddr, b: &IpAddr) -> std::cmp::Ordering {
            match (a, b) {
                (IpAddr::V4(x), IpAddr::V4(y)) => x.to_bits().cmp(&y.to_bits()),
                (IpAddr::V6(x), IpAddr::V6(y)) => x.to_bits().cmp(&y.to_bits()),
                (IpAddr::V4(_), IpAddr::V6(_)) => std::cmp::Ordering::Less,
                (IpAddr::V6(_), IpAddr::V4(_)) => std::cmp::Ordering::Greater,
            }
        }
        ip(&self.src, &o.src)
            .then(self.src_port.cmp(&o.src_port))
            .then_with(|| ip(&self.dst, &o.dst))
            .then(self.dst_port.cmp(&o.dst_port))
    }
}

impl PartialOrd for ConnKey {
    fn partial_cmp(&self, o: &ConnKey) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// A [`ConnKey`] of two IPv4 addresses, the fields in its order: 12 bytes
/// of key in a row, where a `ConnKey` takes 38 (40 with the padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ConnKey4 {
    src: u32,
    src_port: u16,
    dst: u32,
    dst_port: u16,
}

/// Hashed as two integers.
impl std::hash::Hash for ConnKey4 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64((u64::from(self.src) << 32) | u64::from(self.dst));
        state.write_u32((u32::from(self.src_port) << 16) | u32::from(self.dst_port));
    }
}

impl Compact for ConnKey {
    type Small = ConnKey4;
    fn small(&self) -> Option<ConnKey4> {
        let (src, dst) = v4_pair(&self.src, &self.dst)?;
        Some(ConnKey4 {
            src,
            src_port: self.src_port,
            dst,
            dst_port: self.dst_port,
        })
    }
    fn from_small(k: &ConnKey4) -> ConnKey {
        ConnKey {
            src: v4(k.src),
            src_port: k.src_port,
            dst: v4(k.dst),
            dst_port: k.dst_port,
        }
    }
    fn rank(k: &ConnKey4) -> u128 {
        (u128::from(k.src) << 64)
            | (u128::from(k.src_port) << 48)
            | (u128::from(k.dst) << 16)
            | u128::from(k.dst_port)
    }
}

/// A row of the table: where its key lies, and its counts.
type Row<'a> = (KeyRef<'a, ConnKey>, &'a ConnStats);

/// The report's order: by key.
#[inline]
fn row_order(a: &Row<'_>, b: &Row<'_>) -> std::cmp::Ordering {
    a.0.cmp(&b.0)
}

/// Protocols a [`ProtoSet`] keeps inline before it moves to a bit set.
const INLINE_PROTOS: usize = 6;

/// A set of IP protocol numbers. Up to six are kept inline, sorted (almost
/// every row has one or two); a seventh moves the set to a boxed 256-bit set
/// (keys without ports, where ICMP, GRE, ESP… share port 0). 16 bytes per
/// row instead of the 32 of a bit set.
#[derive(Debug, Clone)]
pub struct ProtoSet(Protos);

#[derive(Debug, Clone)]
enum Protos {
    Inline { len: u8, p: [u8; INLINE_PROTOS] },
    Bits(Box<[u64; 4]>),
}

impl Default for ProtoSet {
    fn default() -> Self {
        ProtoSet(Protos::Inline {
            len: 0,
            p: [0; INLINE_PROTOS],
        })
    }
}

impl PartialEq for ProtoSet {
    fn eq(&self, o: &ProtoSet) -> bool {
        self.iter().eq(o.iter())
    }
}

impl Eq for ProtoSet {}

fn bit_insert(bits: &mut [u64; 4], p: u8) {
    if let Some(w) = bits.get_mut(usize::from(p >> 6)) {
        *w |= 1 << (p & 63);
    }
}

impl ProtoSet {
    /// Adds `p`.
    pub fn insert(&mut self, p: u8) {
        match &mut self.0 {
            Protos::Inline { len, p: list } => {
                let n = usize::from(*len).min(INLINE_PROTOS);
                let Some(have) = list.get_mut(..n) else {
                    return;
                };
                let Err(at) = have.binary_search(&p) else {
                    return;
                };
                if n < INLINE_PROTOS {
                    list.copy_within(at..n, at + 1);
                    if let Some(slot) = list.get_mut(at) {
                        *slot = p;
                    }
                    *len += 1;
                } else {
                    let mut bits = Box::new([0u64; 4]);
                    for &q in list.iter() {
                        bit_insert(&mut bits, q);
                    }
                    bit_insert(&mut bits, p);
                    self.0 = Protos::Bits(bits);
                }
            }
            Protos::Bits(bits) => bit_insert(bits, p),
        }
    }

    /// `true` if `p` is in the set.
    pub fn contains(&self, p: u8) -> bool {
        self.iter().any(|q| q == p)
    }

    /// The protocol numbers, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        let (inline, bits): (&[u8], [u64; 4]) = match &self.0 {
            Protos::Inline { len, p } => (p.get(..usize::from(*len)).unwrap_or(&[]), [0; 4]),
            Protos::Bits(b) => (&[], **b),
        };
        inline
            .iter()
            .copied()
            .chain((0u8..).zip(bits).flat_map(|(word, mut bits)| {
                std::iter::from_fn(move || {
                    if bits == 0 {
                        return None;
                    }
                    let bit = bits.trailing_zeros() as u8;
                    bits &= bits - 1;
                    Some(word * 64 + bit)
                })
            }))
    }

    fn union(&mut self, o: &ProtoSet) {
        for p in o.iter() {
            self.insert(p);
        }
    }
}

/// The counters of one connection key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnStats {
    /// IP protocol numbers seen.
    pub protocols: ProtoSet,
    /// Sum of the wire lengths of the frames.
    pub bytes: u64,
    /// Frames.
    pub packets: u64,
    /// Flows counted in this row.
    pub flows: u64,
    /// Id of the flow whose first packet is the row's first (the smallest
    /// id among equals).
    pub first_flow: u64,
    // times in ns since the epoch, valid when `has_first`/`has_last` (two
    // flags in the padding rather than two 16-byte `Option<i64>`s)
    first: i64,
    last: i64,
    has_first: bool,
    has_last: bool,
}

impl ConnStats {
    /// First packet time, ms since the epoch (truncated), when known.
    pub fn first_ms(&self) -> Option<i64> {
        self.first().map(libpcap_tools::Timestamp::as_millis)
    }

    /// Last packet time, ms since the epoch (truncated), when known.
    pub fn last_ms(&self) -> Option<i64> {
        self.last().map(libpcap_tools::Timestamp::as_millis)
    }

    /// First packet time, when known.
    pub fn first(&self) -> Option<libpcap_tools::Timestamp> {
        self.has_first
            .then_some(libpcap_tools::Timestamp(self.first))
    }

    /// Last packet time, when known.
    pub fn last(&self) -> Option<libpcap_tools::Timestamp> {
        self.has_last.then_some(libpcap_tools::Timestamp(self.last))
    }

    /// Counts the `packets` frames of `bytes` bytes of protocol `proto` of
    /// flow `flow`, seen between `first` and `last`.
    fn add(
        &mut self,
        proto: u8,
        flow: u64,
        first: Option<libpcap_tools::Timestamp>,
        last: Option<libpcap_tools::Timestamp>,
        bytes: u64,
        packets: u64,
    ) {
        self.protocols.insert(proto);
        self.take_first_flow(flow, first.map(|t| t.as_nanos()));
        self.add_times(first.map(|t| t.as_nanos()), last.map(|t| t.as_nanos()));
        self.bytes += bytes;
        self.packets += packets;
        self.flows += 1;
    }

    /// Keeps `flow` as the row's first flow if it starts before the one
    /// kept (or as early, with a smaller id): the same whatever the order
    /// the flows were counted in.
    fn take_first_flow(&mut self, flow: u64, first: Option<i64>) {
        let mine = (self.first().map(|t| t.as_nanos()), self.first_flow);
        let theirs = (first, flow);
        let earlier = match (mine.0, theirs.0) {
            _ if self.flows == 0 => true,
            (Some(a), Some(b)) => (b, theirs.1) < (a, mine.1),
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (None, None) => theirs.1 < mine.1,
        };
        if earlier {
            self.first_flow = flow;
        }
    }

    fn add_times(&mut self, first: Option<i64>, last: Option<i64>) {
        if let Some(ns) = first {
            self.first = if self.has_first {
                self.first.min(ns)
            } else {
                ns
            };
            self.has_first = true;
        }
        if let Some(ns) = last {
            self.last = if self.has_last { self.last.max(ns) } else { ns };
            self.has_last = true;
        }
    }

    fn merge(&mut self, o: &ConnStats) {
        self.protocols.union(&o.protocols);
        if o.flows > 0 {
            self.take_first_flow(o.first_flow, o.first().map(|t| t.as_nanos()));
        }
        self.add_times(
            o.first().map(|t| t.as_nanos()),
            o.last().map(|t| t.as_nanos()),
        );
        self.bytes += o.bytes;
        self.packets += o.packets;
        self.flows += o.flows;
    }

    /// Appends the protocol names to `out`, separated by `, `.
    fn push_protocol_names(&self, out: &mut Vec<u8>) {
        for (i, p) in self.protocols.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            match ipproto::name(p) {
                Some(name) => out.extend_from_slice(name.as_bytes()),
                None => {
                    out.extend_from_slice(b"IP");
                    out.extend_from_slice(itoa::Buffer::new().format(p).as_bytes());
                }
            }
        }
    }

    /// Protocol names, as in `[TCP, UDP]`.
    pub fn protocol_names(&self) -> Vec<String> {
        self.protocols
            .iter()
            .map(|p| ipproto::name(p).map_or_else(|| format!("IP{p}"), str::to_string))
            .collect()
    }
}

/// A key in a run: the addresses, then the ports.
impl RunRow for ConnKey {
    fn encode(&self, out: &mut Vec<u8>) {
        runs::put_endpoints(out, &self.src, &self.dst, [self.src_port, self.dst_port]);
    }

    fn decode(r: &mut Reader) -> std::io::Result<Self> {
        let (src, dst, [src_port, dst_port]) = r.endpoints()?;
        Ok(ConnKey {
            src,
            dst,
            src_port,
            dst_port,
        })
    }
}

/// A row in a run: the protocols (a u16 count: a set may hold all 256),
/// bytes, packets, flows, first flow, the two times and a byte of flags
/// (bit 0: first time known, bit 1: last time known).
impl RunRow for ConnStats {
    fn encode(&self, out: &mut Vec<u8>) {
        let n = self.protocols.iter().count() as u16;
        out.extend_from_slice(&n.to_le_bytes());
        out.extend(self.protocols.iter());
        for x in [self.bytes, self.packets, self.flows, self.first_flow] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&self.first.to_le_bytes());
        out.extend_from_slice(&self.last.to_le_bytes());
        out.push(u8::from(self.has_first) | (u8::from(self.has_last) << 1));
    }

    fn decode(r: &mut Reader) -> std::io::Result<Self> {
        let mut v = ConnStats::default();
        for _ in 0..r.u16()? {
            let [p] = r.array::<1>()?;
            v.protocols.insert(p);
        }
        v.bytes = r.u64()?;
        v.packets = r.u64()?;
        v.flows = r.u64()?;
        v.first_flow = r.u64()?;
        v.first = r.i64()?;
        v.last = r.i64()?;
        let [flags] = r.array::<1>()?;
        v.has_first = flags & 1 != 0;
        v.has_last = flags & 2 != 0;
        Ok(v)
    }
}

impl Fold for ConnStats {
    fn fold(&mut self, o: &Self) {
        self.merge(o);
    }
}

/// Estimated bytes of a row of the report.
pub const ROW_BYTES: u64 = crate::memory::row_bytes(std::mem::size_of::<(ConnKey, ConnStats)>());

/// The table of connections.
#[derive(Debug, Default, Clone)]
pub struct ConnTable {
    /// The rows (in parts: growing never holds the whole table twice).
    map: SplitMap<ConnKey, ConnStats>,
    /// Most rows kept (0: no limit), when there is no sampler.
    cap: usize,
    /// Keys kept by hash, shared by the workers.
    sampler: Option<Arc<KeySampler>>,
    /// The sampler's level the rows were last pruned to.
    level: u32,
    /// Whether new keys are counted by the sampler (not in copies).
    counting: bool,
    /// Packets of keys refused because the table was full.
    dropped_packets: u64,
    /// Flow directions refused because the table was full (counted once
    /// per refusal, and the flows of rows sampled out).
    dropped_keys: u64,
    /// Where rows over the cap are written as sorted runs (no sampler
    /// then), and the runs written.
    spill: Spill,
    /// The rows of the flows ended, appended unfolded while the table
    /// spills runs ([`ConnTable::stages`]): written as a run at the cap,
    /// and at the end as a run or into `map` ([`ConnTable::settle_staged`]).
    staged: runs::Staged<ConnKey, ConnStats>,
    /// Rows held in `map` before rows are staged.
    stage_from: runs::StageFrom,
    /// Rows of the last report written (see [`ConnTable::report_rows`]).
    reported: Reported,
}

/// What becomes of rows past the cap once a run cannot be written.
const PAST_CAP: &str = "rows past the cap are not kept";

/// Rows of the report, owned, in report order.
type OwnedRows<'a> = dyn Iterator<Item = (ConnKey, ConnStats)> + 'a;

/// The rows of the last report a table wrote, plus one (0: none yet); a
/// copy of the table starts with the same.
#[derive(Debug, Default)]
struct Reported(AtomicU64);

impl Clone for Reported {
    fn clone(&self) -> Self {
        Reported(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}

/// A row of the report as the writers read it: one of the table's
/// ([`Row`]), or one merged from the runs (owned).
trait ReportRow: Send + Sync {
    fn key(&self) -> ConnKey;
    fn stats(&self) -> &ConnStats;
}

impl ReportRow for Row<'_> {
    fn key(&self) -> ConnKey {
        self.0.key()
    }
    fn stats(&self) -> &ConnStats {
        self.1
    }
}

impl ReportRow for (ConnKey, ConnStats) {
    fn key(&self) -> ConnKey {
        self.0
    }
    fn stats(&self) -> &ConnStats {
        &self.1
    }
}

impl ConnTable {
    /// Counts direction `d` of flow `flow` (of protocol `proto`) in the row
    /// of `k`.
    fn record(&mut self, k: ConnKey, proto: u8, flow: u64, d: &libpcap_tools::DirectionStats) {
        let add = |s: &mut ConnStats| s.add(proto, flow, d.first, d.last, d.bytes, d.packets);
        if self.stages() {
            let mut row = ConnStats::default();
            add(&mut row);
            self.stage(k, row);
        } else if let Some(s) = self.row(k, d.packets) {
            add(s);
        }
    }

    /// Appends a row to `staged` (a run written at the cap); out of line,
    /// so that the path of a table under its cap stays as it was.
    #[inline(never)]
    fn stage(&mut self, k: ConnKey, row: ConnStats) {
        self.staged.push(k, row, self.cap);
        if self.staged.len() + self.map.len() >= self.cap {
            self.spill_staged();
        }
    }

    /// Whether rows are appended to `staged` rather than found in `map`
    /// ([`Spill::stages`]).
    fn stages(&self) -> bool {
        self.spill.stages(self.map.len(), self.cap, self.stage_from)
    }

    /// Writes the rows of `map` and the staged rows as a run; when that
    /// fails, they go into `map` (and what is past the cap is counted
    /// there).
    fn spill_staged(&mut self) {
        let (map, staged) = (&mut self.map, &mut self.staged);
        if !self
            .spill
            .write_staged(map, staged, self.cap, "connections", PAST_CAP)
        {
            self.unstage();
        }
    }

    /// Folds the staged rows into `map`.
    fn unstage(&mut self) {
        for (k, v) in self.staged.take() {
            if let Some(row) = self.row(k, v.packets) {
                row.merge(&v);
            }
        }
    }

    /// Settles the staged rows once the flows are counted (the end, a
    /// merge, a snapshot): a run when the table wrote runs already (the
    /// report merges them anyway), else into `map` (a table under its cap
    /// writes no file).
    fn settle_staged(&mut self) {
        if self.staged.len() == 0 {
            return;
        }
        if self.spill.runs.is_empty() {
            self.unstage();
        } else {
            self.spill_staged();
        }
    }

    /// The row of `k`, or `None` (counted) when the table is full.
    fn row(&mut self, k: ConnKey, packets: u64) -> Option<&mut ConnStats> {
        let level = self.sampler.as_ref().map(|s| s.level());
        if let Some(l) = level
            && l != self.level
        {
            self.prune(l);
        }
        let full = self
            .spill
            .full_for(&mut self.map, self.cap, k, "connections", PAST_CAP);
        // one lookup for a known key; a new key is hashed once more, for the
        // sampler. When admitting it raises the level, the rows the new
        // level drops go at the next call or at the end (`settle`).
        let (sampler, counting) = (&self.sampler, self.counting);
        let sampled = sampler.as_deref().zip(level);
        let row = self.map.get_or_try_insert(k, |k| {
            KeySampler::table_admits(sampled, k, counting, full).then(ConnStats::default)
        });
        if row.is_none() {
            self.dropped_keys += 1;
            self.dropped_packets += packets;
        }
        row
    }

    /// Drops the rows whose key does not pass `level` (counted).
    fn prune(&mut self, level: u32) {
        let (mut keys, mut packets) = (0, 0);
        self.map.retain(|k, v| {
            let keep = KeySampler::passes(KeySampler::hash(k), level);
            if !keep {
                keys += v.flows;
                packets += v.packets;
            }
            keep
        });
        self.dropped_keys += keys;
        self.dropped_packets += packets;
        self.level = level;
    }

    /// Rows of the report: those held when nothing was spilled; else the
    /// rows of the last report written, and before one, the rows held,
    /// staged and spilled (a key in several runs, or staged several
    /// times, counted in each).
    pub fn report_rows(&self) -> u64 {
        let held = (self.map.len() + self.staged.len()) as u64;
        if self.spill.runs.is_empty() {
            return held;
        }
        match self.reported.0.load(Ordering::Relaxed) {
            0 => held + self.spill.rows(),
            n => n - 1,
        }
    }

    /// Runs spilled to disk and their rows.
    pub fn spilled(&self) -> (usize, u64) {
        (self.spill.runs.len(), self.spill.rows())
    }

    /// Prunes to the sampler's current level (after a merge, at the end).
    fn settle(&mut self) {
        if let Some(level) = self.sampler.as_ref().map(|s| s.level())
            && level != self.level
        {
            self.prune(level);
        }
    }

    fn merge(&mut self, mut other: ConnTable) {
        self.settle_staged();
        other.settle_staged();
        self.dropped_keys += other.dropped_keys;
        self.dropped_packets += other.dropped_packets;
        self.spill
            .adopt::<ConnKey, ConnStats>(&mut other.spill, "connections");
        // room for the other's rows: the rows held go to a run first
        self.spill.make_room(
            &mut self.map,
            other.map.len(),
            self.cap,
            "connections",
            PAST_CAP,
        );
        let fold = |row: &mut ConnStats, v: ConnStats| row.merge(&v);
        let row_of = |v: &ConnStats| {
            let mut row = ConnStats::default();
            row.merge(v);
            row
        };
        if self.sampler.is_some() {
            // the keys were counted where they were seen
            self.map.absorb(other.map, fold, |_, v, _| Some(row_of(&v)));
            self.level = self.level.min(other.level);
            self.settle();
        } else {
            let cap = self.cap;
            let (mut keys, mut packets) = (0, 0);
            self.map.absorb(other.map, fold, |_, v, len| {
                if cap > 0 && len >= cap {
                    keys += 1;
                    packets += v.packets;
                    return None;
                }
                Some(row_of(&v))
            });
            self.dropped_keys += keys;
            self.dropped_packets += packets;
        }
    }

    /// Keys and packets refused because the table reached `max_connections`.
    pub fn dropped(&self) -> (u64, u64) {
        (self.dropped_keys, self.dropped_packets)
    }

    /// The rows in report order (the runs spilled merged in).
    ///
    /// # Errors
    /// When a run cannot be read back.
    pub fn rows(&self) -> std::io::Result<Vec<(ConnKey, ConnStats)>> {
        let mut rows = Vec::with_capacity(self.map.len());
        self.each_row(&mut |rows_in_order| {
            rows.extend(rows_in_order);
            Ok(())
        })?;
        Ok(rows)
    }

    /// Calls `f` with the rows in report order, owned: the table's, and
    /// the runs' merged in.
    fn each_row(
        &self,
        f: &mut dyn FnMut(&mut OwnedRows<'_>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let sorted = self.sorted(report_threads(self.map.len()));
        let mem = sorted.in_order().map(|(k, v)| (k.key(), v.clone()));
        let mut merged = runs::Merged::new(mem, &self.spill.runs)?;
        f(&mut merged)?;
        merged.take_error().map_or(Ok(()), Err)
    }

    /// The rows, sorted in parts on `threads` threads (the end of a run
    /// has every core to itself).
    fn sorted(&self, threads: usize) -> SortedRows<'_> {
        let mut rows = Vec::with_capacity(self.map.len());
        rows.extend(self.map.iter());
        let part = sort_parts(&mut rows, threads, &row_order);
        SortedRows { rows, part }
    }

    /// The rows in report order, sorted on `threads` threads.
    #[cfg(test)]
    fn rows_on(&self, threads: usize) -> Vec<Row<'_>> {
        self.sorted(threads).in_order().collect()
    }

    /// Renders the report (the text report, or `connection` records as
    /// JSON lines or CSV; Zeek and Parquet as their bytes, lossily). A run
    /// that cannot be read back ends it there: [`ConnTable::write_report`]
    /// gives the error.
    pub fn render(&self, format: ReportFormat) -> String {
        let mut out = Vec::with_capacity(64 + self.map.len() * 96);
        if let Err(e) = self.write_report(format, &mut out) {
            log::warn!("connections: the report is cut short: {e}");
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Writes the report to `w`: the text report in pieces of about 64 KiB
    /// (from 32 Ki rows on, sorted and rendered on every core, in pieces of
    /// 16 Ki rows), without holding it whole in memory (a report of a
    /// million rows is ~100 MB of text), or the `connection` records in a
    /// record format. The runs spilled to disk are merged in, read as the
    /// report is written.
    ///
    /// # Errors
    /// The first error of `w`, or of reading a run.
    pub fn write_report(
        &self,
        format: ReportFormat,
        w: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        let held = self.map.len() as u64 + self.spilled().1;
        let threads = report_threads(usize::try_from(held).unwrap_or(usize::MAX));
        let written = if self.spill.runs.is_empty() {
            let sorted = self.sorted(threads);
            write_rows(format, sorted.in_order(), threads, w)?
        } else if format.records().is_none() && threads > 1 {
            w.write_all(TEXT_HEADER)?;
            self.write_text_in_ranges(threads, RANGE_ROWS, w)?
        } else {
            let mut n = 0;
            self.each_row(&mut |rows| {
                n = write_rows(format, rows, threads, w)?;
                Ok(())
            })?;
            n
        };
        self.reported.0.store(written + 1, Ordering::Relaxed);
        Ok(())
    }
}

impl ConnTable {
    /// Writes the rows of the text report of a table that spilled runs
    /// (the header aside): the rows are cut into ranges of keys of about
    /// [`RANGE_ROWS`] rows ([`runs::cuts`]), range `i` merged from the
    /// runs and rendered by thread `i % threads` (here when that thread
    /// could not be started), and the ranges written in order. A thread
    /// holds at most two ranges of text, so the memory is bounded; the
    /// runs are read forward, from the mark before each range. The rows
    /// written.
    ///
    /// # Errors
    /// The first error of `w`, or of reading a run.
    fn write_text_in_ranges(
        &self,
        threads: usize,
        range_rows: u64,
        w: &mut dyn std::io::Write,
    ) -> std::io::Result<u64> {
        use std::io::{Error, Result};
        type Text = Result<(Vec<u8>, u64)>;
        let sorted = self.sorted(threads);
        let parts: Vec<&[Row<'_>]> = sorted.rows.chunks(sorted.part.max(1)).collect();
        let sample = parts.iter().flat_map(|p| {
            p.iter()
                .step_by(runs::MARK_EVERY as usize)
                .map(|r| r.0.key())
        });
        let cuts = runs::cuts(&self.spill.runs, sample, range_rows)?;
        let ranges = cuts.len() + 1;
        let runs = &self.spill.runs;
        // range `i`, from `cursors`, which come back for the next one
        let render = |i: usize, cursors: runs::Cursors<ConnKey, ConnStats>| {
            let lo = i.checked_sub(1).and_then(|j| cuts.get(j));
            let hi = cuts.get(i).copied();
            let held = parts
                .iter()
                .map(|p| {
                    let from = lo.map_or(0, |lo| p.partition_point(|r| r.0.key() < *lo));
                    let to = hi.map_or(p.len(), |hi| p.partition_point(|r| r.0.key() < hi));
                    p.get(from..to).unwrap_or_default()
                })
                .collect();
            let held = MergeParts::of(held, row_order).map(|(k, v)| (k.key(), v.clone()));
            let mut merged = runs::Merged::range(held, cursors, lo, hi)?;
            let mut text = Vec::with_capacity(usize::try_from(range_rows).unwrap_or(0) * 96);
            let mut n = 0u64;
            for (k, v) in merged.by_ref() {
                push_row(&mut text, &k, &v);
                text.push(b'\n');
                n += 1;
            }
            if let Some(e) = merged.take_error() {
                return Err(e);
            }
            Ok((text, n, merged.into_cursors()))
        };
        // the ranges of thread `t` in turn, from cursors of its own
        let ranges_of = |t: usize, send: &mut dyn FnMut(Text) -> bool| {
            let mut cursors = Some(runs::Cursors::new(runs, threads));
            for i in (t..ranges).step_by(threads) {
                let Some(c) = cursors.take() else { break };
                let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| render(i, c)))
                    .unwrap_or_else(|_| Err(Error::other("rendering the report failed")));
                let got = got.map(|(text, n, c)| {
                    cursors = Some(c);
                    (text, n)
                });
                let failed = got.is_err();
                if !send(got) || failed {
                    break;
                }
            }
        };
        std::thread::scope(|s| -> Result<u64> {
            let inboxes: Vec<_> = (0..threads)
                .map(|t| {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<Text>(1);
                    let ranges_of = &ranges_of;
                    let spawned = std::thread::Builder::new()
                        .name("pal-report".into())
                        .spawn_scoped(s, move || ranges_of(t, &mut |got| tx.send(got).is_ok()));
                    match spawned {
                        Ok(_) => Some(rx),
                        Err(e) => {
                            log::debug!("report rendered on fewer threads: {e}");
                            None
                        }
                    }
                })
                .collect();
            // the ranges of a thread that did not start, rendered here
            let mut mine = Some(runs::Cursors::new(runs, threads));
            let mut written = 0;
            for i in 0..ranges {
                let got = match inboxes.get(i % threads) {
                    Some(Some(rx)) => rx
                        .recv()
                        .unwrap_or_else(|_| Err(Error::other("the report's renderers stopped"))),
                    _ => mine
                        .take()
                        .ok_or_else(|| Error::other("the report's ranges failed"))
                        .and_then(|c| render(i, c))
                        .map(|(text, n, c)| {
                            mine = Some(c);
                            (text, n)
                        }),
                };
                let (text, n) = got?;
                w.write_all(&text)?;
                written += n;
            }
            Ok(written)
        })
    }
}

/// Writes the report of `rows` (in report order) to `w` in `format` (see
/// [`ConnTable::write_report`]), rendered on `threads` threads; the rows
/// written.
fn write_rows<T: ReportRow + Send>(
    format: ReportFormat,
    rows: impl Iterator<Item = T>,
    threads: usize,
    w: &mut dyn std::io::Write,
) -> std::io::Result<u64> {
    let mut n = 0u64;
    let rows = rows.inspect(|_| n += 1);
    match format.records() {
        None => {
            let mut out = Vec::with_capacity(REPORT_PIECE + 1024);
            render_text(rows, threads, &mut out, &mut |piece: &mut Vec<u8>| {
                w.write_all(piece)?;
                piece.clear();
                Ok(())
            })?;
        }
        Some(f) => write_records(f, rows, w)?,
    }
    Ok(n)
}

/// `rows` (in report order) as `connection` records in `format`.
fn write_records<T: ReportRow>(
    format: Format,
    rows: impl Iterator<Item = T>,
    w: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    // the writers own their output: lend `w` through a shared buffer
    struct Lent(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Lent {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("lock"))?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::with_capacity(REPORT_PIECE)));
    let mut out = crate::output::writer(format, &CONNECTION, Lent(buf.clone()))?;
    let mut row = RowBuf::new(&CONNECTION);
    let drain = |w: &mut dyn std::io::Write| -> std::io::Result<()> {
        let mut b = buf.lock().map_err(|_| std::io::Error::other("lock"))?;
        w.write_all(&b)?;
        b.clear();
        Ok(())
    };
    for r in rows {
        let (k, v) = (r.key(), r.stats());
        let names: Vec<std::borrow::Cow<'static, str>> = v
            .protocols
            .iter()
            .map(|p| {
                ipproto::name(p).map_or_else(|| format!("IP{p}").into(), std::borrow::Cow::from)
            })
            .collect();
        row.clear();
        row.opt_time(v.first())
            .opt_time(v.last())
            .flow_id(v.first_flow)
            .ip(k.src)
            .u64(u64::from(k.src_port))
            .ip(k.dst)
            .u64(u64::from(k.dst_port))
            .str_list(names.iter().map(|n| n.as_ref()))
            .u64(v.bytes)
            .u64(v.packets)
            .u64(v.flows);
        let Some(bytes) = row.finish() else { continue };
        let mut vals = Vec::with_capacity(CONNECTION.fields.len());
        crate::output::decode(&CONNECTION, bytes, &mut vals).map_err(std::io::Error::other)?;
        out.write_row(&vals)?;
        if buf.lock().map_or(0, |b| b.len()) > REPORT_PIECE {
            drain(w)?;
        }
    }
    out.finish()?;
    drain(w)
}

/// Appends the text report of `rows` (in report order) to `out`, handing
/// it to `flush` whenever it holds more than [`REPORT_PIECE`] bytes and at
/// the end (`flush` may empty it). On more than one thread the rows are
/// taken (merged from the runs) here while other threads render the
/// windows taken before: see [`render_pipelined`].
fn render_text<T: ReportRow + Send>(
    mut rows: impl Iterator<Item = T>,
    threads: usize,
    out: &mut Vec<u8>,
    flush: &mut dyn FnMut(&mut Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    out.extend_from_slice(TEXT_HEADER);
    if threads > 1 {
        flush(out)?;
        let rendered = render_pipelined(&mut rows, threads - 1, flush)?;
        if rendered {
            return flush(out);
        }
    }
    for r in rows {
        push_row(out, &r.key(), r.stats());
        out.push(b'\n');
        if out.len() > REPORT_PIECE {
            flush(out)?;
        }
    }
    flush(out)
}

/// The first line of the text report.
const TEXT_HEADER: &[u8] =
    b"source ip; source port; destination ip; destination port; protocols; first; last; bytes; packets\n";

/// Rows of the text report a thread renders at a time.
const RENDER_ROWS: usize = 16 * 1024;

/// Rows of a range of keys a thread merges from the runs and renders at a
/// time (see [`ConnTable::write_text_in_ranges`]).
const RANGE_ROWS: u64 = 16 * 1024;

/// Below this many rows the report is sorted and rendered by one thread.
const PARALLEL_ROWS: usize = 32 * 1024;

/// Threads that sort and render a report of `rows` rows.
fn report_threads(rows: usize) -> usize {
    if rows < PARALLEL_ROWS {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Renders `rows` in windows of [`RENDER_ROWS`] on `renderers` threads
/// while this thread takes the next windows from `rows` (the merge of the
/// runs, the report's longest part) and hands the rendered text to
/// `flush` in order. At most `renderers + 1` windows are taken and not yet
/// written, so the memory is bounded. `false` (nothing taken) when no
/// thread could be started: the caller renders the rows itself.
fn render_pipelined<T: ReportRow + Send>(
    rows: &mut impl Iterator<Item = T>,
    renderers: usize,
    flush: &mut dyn FnMut(&mut Vec<u8>) -> std::io::Result<()>,
) -> std::io::Result<bool> {
    use std::sync::mpsc;
    type Text = std::thread::Result<Vec<u8>>;
    let (to_render, windows) = mpsc::sync_channel::<(usize, Vec<T>)>(renderers);
    let windows = std::sync::Mutex::new(windows);
    let (rendered, texts) = mpsc::channel::<(usize, Text)>();
    std::thread::scope(|s| {
        let mut started = 0;
        for _ in 0..renderers {
            let (windows, rendered) = (&windows, rendered.clone());
            let spawned = std::thread::Builder::new()
                .name("pal-report".into())
                .spawn_scoped(s, move || {
                    loop {
                        // the lock is held only to take a window
                        let next = windows.lock().map(|w| w.recv());
                        let Ok(Ok((i, window))) = next else { break };
                        let text = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            render_rows(&window)
                        }));
                        drop(window);
                        if rendered.send((i, text)).is_err() {
                            break;
                        }
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => log::debug!("report rendered on fewer threads: {e}"),
            }
        }
        drop(rendered);
        if started == 0 {
            return Ok(false);
        }
        // windows taken (`taken`) and written (`written`); the texts that
        // came back before their turn wait in `ready`
        let (mut taken, mut written) = (0usize, 0usize);
        let mut ready = std::collections::BTreeMap::new();
        let result = (|| -> std::io::Result<()> {
            let mut more = true;
            while more || written < taken {
                if more && taken - written <= started {
                    let window: Vec<T> = rows.by_ref().take(RENDER_ROWS).collect();
                    if window.is_empty() {
                        more = false;
                    } else {
                        to_render
                            .send((taken, window))
                            .map_err(|_| std::io::Error::other("the report's renderers stopped"))?;
                        taken += 1;
                    }
                    // write what is ready without waiting
                    while let Ok((i, text)) = texts.try_recv() {
                        ready.insert(i, text);
                    }
                } else {
                    let (i, text) = texts
                        .recv()
                        .map_err(|_| std::io::Error::other("the report's renderers stopped"))?;
                    ready.insert(i, text);
                }
                while let Some(text) = ready.remove(&written) {
                    let mut text =
                        text.map_err(|_| std::io::Error::other("rendering the report failed"))?;
                    flush(&mut text)?;
                    written += 1;
                }
            }
            Ok(())
        })();
        // the renderers end when the windows do
        drop(to_render);
        result.map(|()| true)
    })
}

/// The text report's lines of `rows`.
fn render_rows<T: ReportRow>(rows: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 96);
    for r in rows {
        push_row(&mut out, &r.key(), r.stats());
        out.push(b'\n');
    }
    out
}

/// Sorts `v` by `cmp` in `parts` parts of `size` (returned) each, each
/// part on a thread of its own (inline when a thread cannot be had): the
/// parts are then read in order by [`MergeParts`].
fn sort_parts<T: Send>(
    v: &mut [T],
    parts: usize,
    cmp: &(impl Fn(&T, &T) -> std::cmp::Ordering + Sync),
) -> usize {
    if parts <= 1 || v.len() < 2 * parts {
        v.sort_unstable_by(cmp);
        return v.len().max(1);
    }
    let size = v.len().div_ceil(parts);
    std::thread::scope(|s| {
        for part in v.chunks_mut(size) {
            let spawned = std::thread::Builder::new()
                .name("pal-report".into())
                .spawn_scoped(s, move || part.sort_unstable_by(cmp));
            if let Err(e) = spawned {
                log::debug!("report sorted on fewer threads: {e}");
            }
        }
    });
    // a part whose thread did not start is sorted here (sorting a sorted
    // part is a single pass)
    for part in v.chunks_mut(size) {
        if !part.is_sorted_by(|a, b| cmp(a, b).is_le()) {
            part.sort_unstable_by(cmp);
        }
    }
    size
}

/// The rows of a table sorted in parts of `part` rows each.
struct SortedRows<'a> {
    rows: Vec<Row<'a>>,
    part: usize,
}

impl<'a> SortedRows<'a> {
    /// The rows in report order, read where they lie.
    fn in_order(&self) -> impl Iterator<Item = Row<'a>> + '_ {
        MergeParts::new(&self.rows, self.part, row_order)
    }
}

/// The items of sorted parts in order (the first part's on ties), read
/// where they lie: the report is never held twice, sorted and merged.
struct MergeParts<'a, T, F> {
    parts: Vec<&'a [T]>,
    cmp: F,
}

impl<'a, T: Copy, F: Fn(&T, &T) -> std::cmp::Ordering> MergeParts<'a, T, F> {
    /// The parts of `size` items of `v`, each sorted by `cmp`.
    fn new(v: &'a [T], size: usize, cmp: F) -> Self {
        MergeParts::of(v.chunks(size.max(1)).collect(), cmp)
    }

    /// The items of `parts`, each sorted by `cmp`.
    fn of(parts: Vec<&'a [T]>, cmp: F) -> Self {
        MergeParts { parts, cmp }
    }
}

impl<T: Copy, F: Fn(&T, &T) -> std::cmp::Ordering> Iterator for MergeParts<'_, T, F> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        // a few parts (one per core, at most 8): the smallest head by a scan
        let mut best: Option<(usize, &T)> = None;
        for (i, p) in self.parts.iter().enumerate() {
            if let Some(x) = p.first()
                && best.is_none_or(|(_, b)| (self.cmp)(x, b).is_lt())
            {
                best = Some((i, x));
            }
        }
        let (i, &x) = best?;
        if let Some(p) = self.parts.get_mut(i) {
            *p = p.get(1..).unwrap_or_default();
        }
        Some(x)
    }
}

/// Sorts `v` by `cmp` in `parts` parts, each on a thread of its own, and
/// merges them.
#[cfg(test)]
fn sort_in_parts<T: Copy + Send + Sync>(
    mut v: Vec<T>,
    parts: usize,
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering + Sync,
) -> Vec<T> {
    let size = sort_parts(&mut v, parts, &cmp);
    MergeParts::new(&v, size, &cmp).collect()
}

/// Size of the pieces in which [`ConnTable::write_report`] writes.
const REPORT_PIECE: usize = 64 * 1024;

/// Appends one row of the text report (without its line end): the fields
/// separated by `; `, the protocols in brackets, empty times when unknown
/// (the CSV form is written by the record writers). Written by hand with
/// `itoa`: `write!` made the report of 200 k rows take 0.2 s.
fn push_row(out: &mut Vec<u8>, k: &ConnKey, v: &ConnStats) {
    const SEP: &[u8; 2] = b"; ";
    let mut num = itoa::Buffer::new();
    push_ip(out, &k.src);
    out.extend_from_slice(SEP);
    out.extend_from_slice(num.format(k.src_port).as_bytes());
    out.extend_from_slice(SEP);
    push_ip(out, &k.dst);
    out.extend_from_slice(SEP);
    out.extend_from_slice(num.format(k.dst_port).as_bytes());
    out.extend_from_slice(SEP);
    out.push(b'[');
    v.push_protocol_names(out);
    out.push(b']');
    out.extend_from_slice(SEP);
    if let Some(ms) = v.first_ms() {
        out.extend_from_slice(num.format(ms).as_bytes());
    }
    out.extend_from_slice(SEP);
    if let Some(ms) = v.last_ms() {
        out.extend_from_slice(num.format(ms).as_bytes());
    }
    out.extend_from_slice(SEP);
    out.extend_from_slice(num.format(v.bytes).as_bytes());
    out.extend_from_slice(SEP);
    out.extend_from_slice(num.format(v.packets).as_bytes());
}

/// Appends an address (its `Display` text, RFC 5952 for IPv6).
fn push_ip(out: &mut Vec<u8>, ip: &IpAddr) {
    out.extend_from_slice(crate::output::iptext::IpText::new(ip).as_bytes());
}

/// The `connections` plugin.
#[derive(Debug, Clone)]
pub struct ConnectionsPlugin {
    cfg: ConnectionsConfig,
    table: ConnTable,
}

impl ConnectionsPlugin {
    /// A plugin with `cfg`.
    pub fn new(cfg: ConnectionsConfig) -> ConnectionsPlugin {
        let cap = cfg.max_connections;
        ConnectionsPlugin {
            cfg,
            table: ConnTable {
                cap,
                ..ConnTable::default()
            },
        }
    }

    /// The plugin writing the rows over its cap as sorted runs into `dir`
    /// (see [`ConnectionsConfig::max_connections`]); `None`: rows over the
    /// cap are kept by a hash of their key.
    pub fn with_spill_dir(mut self, dir: Option<PathBuf>) -> ConnectionsPlugin {
        self.table.spill.dir = dir;
        self
    }

    /// Calls `f` with the table (no copy).
    pub fn with_table<R>(&self, f: impl FnOnce(&ConnTable) -> R) -> R {
        f(&self.table)
    }

    /// A copy of the table (merged instances after the run).
    pub fn table(&self) -> ConnTable {
        self.table.clone()
    }

    /// The report in the configured format.
    pub fn render(&self) -> String {
        self.table.render(self.cfg.format)
    }

    /// Writes the report in the configured format to `w`, piece by piece
    /// ([`ConnTable::write_report`]).
    ///
    /// # Errors
    /// The first error of `w`.
    pub fn write_report(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        self.table.write_report(self.cfg.format, w)
    }

    /// Path of the report in `dir`.
    pub fn report_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.{}", self.cfg.file, self.cfg.format.extension()))
    }
}

/// Folds one direction of an ended flow into the table.
fn record_direction(
    t: &mut ConnTable,
    k: ConnKey,
    proto: u8,
    flow: u64,
    d: &libpcap_tools::DirectionStats,
) {
    if d.packets == 0 {
        return;
    }
    t.record(k, proto, flow, d);
}

fn record_flow(t: &mut ConnTable, f: &libpcap_tools::Flow) {
    let k = &f.key;
    let fwd = ConnKey {
        src: k.src,
        src_port: k.src_port,
        dst: k.dst,
        dst_port: k.dst_port,
    };
    let rev = ConnKey {
        src: k.dst,
        src_port: k.dst_port,
        dst: k.src,
        dst_port: k.src_port,
    };
    record_direction(t, fwd, k.proto, f.id.0, &f.to_server);
    record_direction(t, rev, k.proto, f.id.0, &f.to_client);
}

impl Plugin for ConnectionsPlugin {
    fn name(&self) -> &str {
        "connections"
    }

    fn interest(&self) -> Interest {
        Interest::new(Layers::FLOW_EVENTS)
    }

    fn flow_destroyed(
        &mut self,
        flow: &libpcap_tools::Flow,
        _: crate::plugin::EndReason,
    ) -> PluginResult<()> {
        record_flow(&mut self.table, flow);
        Ok(())
    }

    fn use_memory(&mut self, budget: &Arc<MemoryBudget>) {
        let share = budget.share(Share::Connections) / ROW_BYTES;
        let cap = match self.cfg.max_connections as u64 {
            0 => share,
            n => n.min(share),
        };
        if self.table.spill.dir.is_some() {
            // each worker holds its part, and spills past it
            let part = cap / budget.workers() as u64;
            self.table.cap = usize::try_from(part.max(1)).unwrap_or(usize::MAX);
            self.table.sampler = None;
        } else {
            self.table.sampler = Some(budget.sampler("connections", cap.max(1)));
            self.table.counting = true;
        }
    }

    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let other = downcast::<Self>("connections", other)?;
        self.table.merge(other.table);
        Ok(())
    }

    fn post_process(&mut self) -> PluginResult<()> {
        self.table.settle_staged();
        self.table.settle();
        Ok(())
    }

    fn results(&self) -> Option<serde_json::Value> {
        let t = &self.table;
        Some(serde_json::json!({
            "connections": t.report_rows(),
            "dropped_keys": t.dropped_keys,
            "dropped_packets": t.dropped_packets,
        }))
    }

    fn counters(&self) -> crate::plugin::Counters {
        let (keys, packets) = self.table.dropped();
        crate::plugin::Counters::new()
            .count("connections", self.table.report_rows())
            .loss("dropped_keys", keys)
            .loss("dropped_packets", packets)
    }

    fn output_names(&self) -> Vec<String> {
        self.report_path(Path::new(""))
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .into_iter()
            .collect()
    }

    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        let (keys, packets) = self.table.dropped();
        if keys > 0 {
            log::warn!(
                "connections: the report reached its cap ({} rows: max_connections or the [memory] connections share); {keys} flow directions ({packets} packets) were not kept (keys kept by hash)",
                self.table
                    .sampler
                    .as_ref()
                    .map_or(self.cfg.max_connections as u64, |s| s.cap())
            );
        }
        let (runs, rows) = self.table.spilled();
        if runs > 0 {
            log::debug!("connections: {rows} rows were spilled in {runs} sorted runs");
        }
        let path = self.report_path(dir);
        write_atomically_with(&path, |w| self.write_report(w))
            .map_err(|e| PluginError::wrap("connections", e))?;
        Ok(vec![path])
    }

    fn snapshot(
        &self,
        active: &mut dyn Iterator<Item = &libpcap_tools::Flow>,
    ) -> Option<Box<dyn Plugin>> {
        let mut copy = self.clone();
        copy.table.counting = false;
        for f in active {
            record_flow(&mut copy.table, f);
        }
        copy.table.settle_staged();
        Some(Box::new(copy))
    }
}

/// Builder of [`ConnectionsPlugin`].
#[derive(Debug, Default)]
pub struct ConnectionsPluginBuilder;

impl PluginBuilder for ConnectionsPluginBuilder {
    fn name(&self) -> &str {
        "connections"
    }

    fn description(&self) -> &str {
        "connection report: one row per unidirectional (ip, port) pair with protocols, times, bytes, packets"
    }

    fn build(&self, config: &Config) -> PluginResult<Box<dyn Plugin>> {
        let cfg: ConnectionsConfig = config
            .plugin("connections")
            .map_err(|e| PluginError::wrap("connections", e))?;
        cfg.validate()
            .map_err(|m| PluginError::new("connections", m))?;
        let out = super::spool::OutputConfig::from_config(config, "connections")?;
        Ok(Box::new(
            ConnectionsPlugin::new(cfg).with_spill_dir(out.spill_dir.or(out.dir)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_is_the_order_of_its_fields() {
        let addrs: Vec<IpAddr> = [
            "0.0.0.0",
            "0.0.0.1",
            "1.0.0.0",
            "10.0.0.255",
            "10.0.1.0",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "fe80::1",
            "ffff::",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let ports = [0u16, 1, 80, 443, 65535];
        let mut keys = Vec::new();
        for &src in &addrs {
            for &dst in addrs.iter().step_by(3) {
                for &src_port in &ports {
                    for &dst_port in ports.iter().step_by(2) {
                        keys.push(ConnKey {
                            src,
                            src_port,
                            dst,
                            dst_port,
                        });
                    }
                }
            }
        }
        for a in &keys {
            for b in &keys {
                let fields = |k: &ConnKey| (k.src, k.src_port, k.dst, k.dst_port);
                assert_eq!(a.cmp(b), fields(a).cmp(&fields(b)), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn cap_counts_instead_of_growing() {
        let mut t = ConnTable {
            cap: 2,
            ..ConnTable::default()
        };
        let k = |p: u16| ConnKey {
            src: IpAddr::from([1, 1, 1, 1]),
            src_port: p,
            dst: IpAddr::from([2, 2, 2, 2]),
            dst_port: 80,
        };
        for p in 0..5 {
            assert_eq!(t.row(k(p), 3).is_some(), p < 2);
        }
        assert!(t.row(k(1), 1).is_some(), "existing keys still count");
        assert_eq!(t.dropped(), (3, 9));
        assert_eq!(t.map.len(), 2);
    }

    #[test]
    fn rows_come_in_the_order_of_the_keys() {
        // addresses that tie on their low bits, IPv4 against IPv6 holding
        // the same number, ports that break ties: the derived order is truth
        let ips = [
            IpAddr::from([0, 0, 0, 1]),
            IpAddr::from([10, 0, 0, 1]),
            IpAddr::from([255, 255, 255, 255]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0x0a00, 1]),
            IpAddr::from([0x2001u16, 0xdb8, 0, 0, 0, 0, 0, 1]),
            IpAddr::from([0xffffu16; 8]),
        ];
        let mut t = ConnTable::default();
        let mut want = Vec::new();
        for (i, src) in ips.iter().enumerate() {
            for dst in ips.iter().rev() {
                for port in [0u16, 53, 65535] {
                    let k = ConnKey {
                        src: *src,
                        src_port: port ^ (i as u16),
                        dst: *dst,
                        dst_port: port,
                    };
                    t.row(k, 1);
                    want.push(k);
                }
            }
        }
        want.sort();
        let got: Vec<ConnKey> = t.rows().unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn sorting_in_parts_is_sorting() {
        // a fixed pseudo-random sequence with repeats
        let v: Vec<u64> = (0..10_007u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52)
            .collect();
        let mut want = v.clone();
        want.sort_unstable();
        for parts in [0, 1, 2, 3, 5, 8, 20_000] {
            assert_eq!(
                sort_in_parts(v.clone(), parts, |a, b| a.cmp(b)),
                want,
                "{parts}"
            );
        }
        assert!(sort_in_parts(Vec::<u64>::new(), 4, |a, b| a.cmp(b)).is_empty());
    }

    /// A report large enough to be sorted and rendered by several threads
    /// is the one a single thread writes, line for line.
    #[test]
    fn a_large_report_is_the_same_on_several_threads() {
        let mut t = ConnTable::default();
        for i in 0..(PARALLEL_ROWS as u32 + 5_000) {
            let x = i.wrapping_mul(0x9e37_79b9);
            let k = ConnKey {
                src: IpAddr::from((x % 50).to_be_bytes()),
                src_port: (x >> 16) as u16,
                dst: if i % 7 == 0 {
                    IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, (x & 0xffff) as u16])
                } else {
                    IpAddr::from(x.to_be_bytes())
                },
                dst_port: (i % 1000) as u16,
            };
            if let Some(r) = t.row(k, 1) {
                r.add(6, u64::from(i), None, None, 60, 1);
            }
        }
        let mut want = String::from(
            "source ip; source port; destination ip; destination port; protocols; first; last; bytes; packets\n",
        );
        want.push_str(&String::from_utf8(render_rows(&t.rows_on(1))).unwrap());
        let one: Vec<_> = t
            .rows_on(1)
            .into_iter()
            .map(|(k, v)| (k.key(), v.clone()))
            .collect();
        assert_eq!(t.rows().unwrap(), one);
        // the order of the keys themselves, IPv4 pairs held small among
        // the others (an IPv4 source with an IPv6 destination is not)
        let mut keys: Vec<ConnKey> = t.map.iter().map(|(k, _)| k.key()).collect();
        keys.sort();
        let got: Vec<ConnKey> = one.iter().map(|(k, _)| *k).collect();
        assert!(got == keys, "sorted as the keys are");
        let small = t
            .map
            .iter()
            .filter(|(k, _)| matches!(k, KeyRef::Small(_)))
            .count();
        assert!(
            small > 0 && small < t.map.len(),
            "{small} of {}",
            t.map.len()
        );
        let got = t.render(ReportFormat::Text);
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the reports differ");
    }

    #[test]
    fn the_pipelined_report_is_the_serial_one_and_stops_at_an_error() {
        let mut t = ConnTable::default();
        for i in 0..(3 * RENDER_ROWS as u32 + 77) {
            let x = i.wrapping_mul(0x9e37_79b9);
            let k = ConnKey {
                src: IpAddr::from(x.to_be_bytes()),
                src_port: (i % 60_000) as u16,
                dst: IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, (x & 0xffff) as u16]),
                dst_port: 53,
            };
            if let Some(r) = t.row(k, 1) {
                r.add(17, u64::from(i), None, None, 80, 1);
            }
        }
        let render = |threads: usize, limit: usize| {
            let mut got = Vec::new();
            let mut out = Vec::new();
            let r = render_text(
                t.rows_on(1).into_iter(),
                threads,
                &mut out,
                &mut |piece: &mut Vec<u8>| {
                    if got.len() + piece.len() > limit {
                        return Err(std::io::Error::other("disk full"));
                    }
                    got.extend_from_slice(piece);
                    piece.clear();
                    Ok(())
                },
            );
            (r, got)
        };
        let (r, serial) = render(1, usize::MAX);
        r.unwrap();
        assert_eq!(
            serial.iter().filter(|&&b| b == b'\n').count(),
            t.map.len() + 1
        );
        for threads in [2, 3, 5] {
            let (r, got) = render(threads, usize::MAX);
            r.unwrap();
            assert!(got == serial, "{threads} threads: the reports differ");
            // a writer failing part way: the error, the text before it whole
            let (r, got) = render(threads, serial.len() / 2);
            assert_eq!(r.unwrap_err().to_string(), "disk full");
            assert!(serial.starts_with(&got) && got.len() <= serial.len() / 2);
        }
    }

    #[test]
    fn protocol_sets_stay_sorted_and_grow_past_the_inline_six() {
        // the order of insertion does not matter, duplicates are ignored,
        // and a seventh protocol moves the set to bits with the same content
        let order = [47u8, 6, 17, 1, 6, 255, 0, 50, 17, 132, 58];
        let mut want: Vec<u8> = order.to_vec();
        want.sort_unstable();
        want.dedup();
        let mut s = ProtoSet::default();
        let mut seen = Vec::new();
        for p in order {
            s.insert(p);
            if !seen.contains(&p) {
                seen.push(p);
            }
            let mut sorted = seen.clone();
            sorted.sort_unstable();
            assert_eq!(s.iter().collect::<Vec<_>>(), sorted);
            assert_eq!(matches!(s.0, Protos::Bits(_)), seen.len() > INLINE_PROTOS);
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), want);
        assert!(s.contains(0) && s.contains(255) && !s.contains(2));
        // equal sets compare equal whatever their form
        let mut small = ProtoSet::default();
        let mut big = ProtoSet::default();
        for p in [1, 2, 3, 4, 5, 6, 7] {
            big.insert(p);
        }
        for p in [6, 17] {
            small.insert(p);
        }
        let mut u = small.clone();
        u.union(&big);
        assert_eq!(u.iter().collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7, 17]);
        let mut inline_again = ProtoSet::default();
        for p in [17, 6] {
            inline_again.insert(p);
        }
        assert_eq!(small, inline_again);
        assert_ne!(small, big);
    }

    #[test]
    fn rows_merge_times_and_counts_and_stay_small() {
        use libpcap_tools::Timestamp;
        let t = |s: i64, ns: i64| Some(Timestamp::from_secs_nanos(s, ns));
        let mut a = ConnStats::default();
        assert_eq!((a.first_ms(), a.last_ms()), (None, None));
        a.add(6, 5, t(10, 5_000_000), t(12, 0), 100, 2);
        let mut b = ConnStats::default();
        b.add(17, 3, None, None, 7, 1); // a frame with no time
        b.add(17, 9, t(9, 999_999_999), t(11, 0), 50, 1);
        let mut c = b.clone();
        a.merge(&b);
        assert_eq!((a.first_ms(), a.last_ms()), (Some(9_999), Some(12_000)));
        assert_eq!(a.first(), t(9, 999_999_999), "nanoseconds are kept");
        assert_eq!((a.bytes, a.packets, a.flows), (157, 4, 3));
        assert_eq!(a.protocol_names(), ["TCP", "UDP"]);
        // the first flow is the one that started first, in any merge order
        assert_eq!(a.first_flow, 9);
        let mut a2 = ConnStats::default();
        a2.add(6, 5, t(10, 5_000_000), t(12, 0), 100, 2);
        c.merge(&a2);
        assert_eq!(c.first_flow, 9);
        // 16-byte protocol set, two times, four counters, two flags
        assert_eq!(std::mem::size_of::<ProtoSet>(), 16);
        assert!(std::mem::size_of::<ConnStats>() <= 72);
    }

    #[test]
    fn the_report_is_written_in_pieces_equal_to_the_rendered_one() {
        /// Records the size of each write.
        struct Pieces(Vec<u8>, Vec<usize>);
        impl std::io::Write for Pieces {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.extend_from_slice(b);
                self.1.push(b.len());
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut t = ConnTable::default();
        for i in 0..3000u16 {
            let k = ConnKey {
                src: IpAddr::from([10, 0, (i >> 8) as u8, i as u8]),
                src_port: 1000 + i,
                dst: IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, i]),
                dst_port: 443,
            };
            if let Some(row) = t.row(k, 1) {
                let t = Some(libpcap_tools::Timestamp(
                    1_700_000_000_000_000_000 + i64::from(i),
                ));
                row.add(6, 1, t, t, 60, 1);
                row.add(u8::try_from(i % 200).unwrap_or(0), 2, t, t, 1, 1);
            }
        }
        for format in [ReportFormat::Text, ReportFormat::Csv, ReportFormat::Jsonl] {
            let mut w = Pieces(Vec::new(), Vec::new());
            t.write_report(format, &mut w).unwrap();
            assert_eq!(
                String::from_utf8(w.0).unwrap(),
                t.render(format),
                "{format:?}"
            );
            // several pieces, none much larger than REPORT_PIECE
            assert!(w.1.len() >= 3, "{format:?}: {} pieces", w.1.len());
            assert!(w.1.iter().all(|&n| n <= REPORT_PIECE + 512), "{:?}", w.1);
        }
        // the first error of the writer ends the report
        struct Full;
        impl std::io::Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let e = t.write_report(ReportFormat::Text, &mut Full).unwrap_err();
        assert_eq!(e.to_string(), "disk full");
    }

    /// Feeds the rows of flows `range` (keys repeating over the range, so
    /// that one key lies in several runs) into `t`.
    fn feed(t: &mut ConnTable, range: std::ops::Range<u32>) {
        for i in range {
            // every key twice, 45,000 flows apart, in a scattered order
            let x = (i % 45_000) * 7_919 % 45_000;
            let k = ConnKey {
                src: if x % 5 == 0 {
                    IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 1, x as u16])
                } else {
                    IpAddr::from([10, (x >> 16) as u8, (x >> 8) as u8, x as u8])
                },
                src_port: (x % 7) as u16,
                dst: IpAddr::from([192, 0, 2, (x % 3) as u8]),
                dst_port: 53,
            };
            let t0 = i64::from(i) * 1_000_000 + i64::from(x % 999);
            if let Some(r) = t.row(k, 1) {
                r.add(
                    if i % 11 == 0 { 1 } else { 17 },
                    u64::from(i),
                    (i % 17 != 0).then_some(libpcap_tools::Timestamp(t0)),
                    (i % 19 != 0).then_some(libpcap_tools::Timestamp(t0 + 5_000)),
                    100 + u64::from(i % 13),
                    1 + u64::from(i % 3),
                );
            }
        }
    }

    /// A table over its cap writes sorted runs and gives the report of a
    /// table without a cap, byte for byte, in every format, also merged
    /// from several workers' tables; nothing is dropped, and the runs are
    /// removed with the tables.
    #[test]
    fn a_table_spilling_runs_writes_the_report_of_one_without_a_cap() {
        let dir = tempfile::tempdir().unwrap();
        let spilling = |cap| ConnTable {
            cap,
            spill: Spill {
                dir: Some(dir.path().to_path_buf()),
                ..Spill::default()
            },
            ..ConnTable::default()
        };
        let mut whole = ConnTable::default();
        feed(&mut whole, 0..90_000);
        assert!(
            whole.map.len() > PARALLEL_ROWS,
            "rendered on several threads: {}",
            whole.map.len()
        );
        let mut one = spilling(5_000);
        feed(&mut one, 0..90_000);
        // 300 runs written: merged FAN at a time, fewer than FAN a level left
        let mut many = spilling(300);
        feed(&mut many, 0..90_000);
        assert!(many.spilled().0 < 3 * runs::FAN, "{:?}", many.spilled());
        // three workers, each with its flows, merged at the end
        let mut a = spilling(3_000);
        let mut b = spilling(3_000);
        let mut c = spilling(3_000);
        feed(&mut a, 0..20_000);
        feed(&mut b, 20_000..70_000);
        feed(&mut c, 70_000..90_000);
        a.merge(b);
        a.merge(c);
        for (name, t) in [("one", &one), ("merged", &a), ("many", &many)] {
            assert!(t.spilled().0 > 1, "{name}: {:?}", t.spilled());
            assert!(t.map.len() <= t.cap, "{name}");
            for f in [ReportFormat::Text, ReportFormat::Csv, ReportFormat::Jsonl] {
                assert!(t.render(f) == whole.render(f), "{name} {f:?}");
            }
            assert!(t.rows().unwrap() == whole.rows().unwrap(), "{name}");
            // in ranges of keys, on any number of threads: the rows of
            // each range merged from the mark before it
            let want = whole.render(ReportFormat::Text);
            for (threads, range_rows) in [(1, 1_000), (2, 700), (3, 5_000), (5, 300)] {
                let mut got = TEXT_HEADER.to_vec();
                let n = t
                    .write_text_in_ranges(threads, range_rows, &mut got)
                    .unwrap();
                assert_eq!(n, whole.map.len() as u64, "{name}");
                assert!(got == want.as_bytes(), "{name}: {threads} threads");
            }
            assert_eq!(t.report_rows(), whole.report_rows(), "{name}");
            assert_eq!(t.dropped(), (0, 0), "{name}");
        }
        assert!(std::fs::read_dir(dir.path()).unwrap().count() > 0);
        drop((one, a, many));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// The rank of a small key (two IPv4 addresses) is in the keys' order.
    #[test]
    fn small_keys_rank_in_key_order() {
        let mut rng = crate::proto::tls::test_support::XorShift(0x5851_f42d_4c95_7f2d);
        // few values a field, so that keys tie on their first fields
        let mut field = |n: u64| rng.next() % n;
        let keys: Vec<ConnKey> = (0..2_000)
            .map(|_| ConnKey {
                src: IpAddr::from([field(3) as u8 * 127, 0, 0, field(3) as u8]),
                src_port: [0, 1, 0xffff][field(3) as usize],
                dst: IpAddr::from([0, 0, 0, 0xff * field(2) as u8]),
                dst_port: [0, 53, 0xffff][field(3) as usize],
            })
            .collect();
        assert_eq!(crate::shards::ranks_are_in_key_order(&keys), keys.len());
    }

    /// Random tables (keys few or many, repeating or not, IPv4 and IPv6),
    /// random caps, threads and range sizes: the text report merged in
    /// ranges is the report of the table without a cap, byte for byte.
    #[test]
    fn reports_merged_in_ranges_are_the_report_without_a_cap() {
        let mut rng = crate::proto::tls::test_support::XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..12 {
            let dir = tempfile::tempdir().unwrap();
            let flows = 500 + rng.next() % 6_000;
            let keys = 1 + rng.next() % flows;
            let cap = 1 + (rng.next() % 400) as usize;
            let mut whole = ConnTable::default();
            let mut t = ConnTable {
                cap,
                spill: Spill {
                    dir: Some(dir.path().to_path_buf()),
                    ..Spill::default()
                },
                ..ConnTable::default()
            };
            for i in 0..flows {
                let x = rng.next() % keys;
                let k = ConnKey {
                    src: if x.is_multiple_of(4) {
                        IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, (x >> 16) as u16, x as u16])
                    } else {
                        IpAddr::from((x as u32 >> 3).to_be_bytes())
                    },
                    src_port: (x % 8) as u16,
                    dst: if x.is_multiple_of(4) {
                        IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1])
                    } else {
                        IpAddr::from([192, 0, 2, 1])
                    },
                    dst_port: 53,
                };
                let at = Some(libpcap_tools::Timestamp(
                    (rng.next() % 1_000_000_000) as i64,
                ));
                for table in [&mut whole, &mut t] {
                    if let Some(r) = table.row(k, 1) {
                        r.add(17, i, at, at, 100 + i % 7, 1);
                    }
                }
            }
            let want = whole.render(ReportFormat::Text);
            let threads = 1 + (rng.next() % 4) as usize;
            let range_rows = 1 + rng.next() % 3_000;
            let mut got = TEXT_HEADER.to_vec();
            let n = t
                .write_text_in_ranges(threads, range_rows, &mut got)
                .unwrap();
            let what = format!(
                "round {round}: {flows} flows, {keys} keys, cap {cap}, {threads} threads, \
                 ranges of {range_rows}, runs {:?}",
                t.spilled()
            );
            assert_eq!(n, whole.map.len() as u64, "{what}");
            assert!(got == want.as_bytes(), "{what}");
            assert!(t.spilled().0 < 3 * runs::FAN, "{what}");
        }
    }

    /// Rows appended unfolded (the path of a table that spills), by one to
    /// three workers whose tables are then merged, give the report of one
    /// table without a cap, in the text and record formats: under the cap
    /// (the staged rows go into the table at the end) and over it (runs
    /// sorted and folded from the staged rows).
    #[test]
    fn staged_rows_give_the_report_of_a_table_without_a_cap() {
        let mut rng = crate::proto::tls::test_support::XorShift(0x51ed_2701_a5a5_0f0f);
        let (mut spilled, mut held, mut staging) = (0, 0, 0);
        for round in 0..16 {
            let dir = tempfile::tempdir().unwrap();
            let flows = 200 + rng.next() % 5_000;
            let keys = 1 + rng.next() % flows;
            // odd rounds: a cap over the rows appended (no run)
            let cap = if round % 2 == 0 {
                1 + rng.next() % (2 * keys)
            } else {
                flows + 1 + rng.next() % 100
            } as usize;
            let workers = 1 + (rng.next() % 3) as usize;
            // rows held in the hash table before they are staged: none to
            // a few dozen (the map's rows then join the staged ones)
            let stage_from = runs::StageFrom((rng.next() % 50) as usize);
            let mut whole = ConnTable::default();
            let mut parts: Vec<ConnTable> = (0..workers)
                .map(|_| ConnTable {
                    cap,
                    stage_from,
                    spill: Spill {
                        dir: Some(dir.path().to_path_buf()),
                        ..Spill::default()
                    },
                    ..ConnTable::default()
                })
                .collect();
            for i in 0..flows {
                let x = rng.next() % keys;
                let v6 = x.is_multiple_of(3);
                let k = ConnKey {
                    src: if v6 {
                        IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, (x >> 16) as u16, x as u16])
                    } else {
                        IpAddr::from((x as u32 >> 2).to_be_bytes())
                    },
                    src_port: (x % 4) as u16,
                    dst: if v6 {
                        IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1])
                    } else {
                        IpAddr::from([192, 0, 2, 1])
                    },
                    dst_port: 53,
                };
                let first = libpcap_tools::Timestamp((rng.next() % 1_000_000_000) as i64);
                let last = libpcap_tools::Timestamp(first.0 + (rng.next() % 1_000) as i64);
                let known = !rng.next().is_multiple_of(5);
                let (first, last) = (known.then_some(first), known.then_some(last));
                let proto = [17, 6, 1, 47][(rng.next() % 4) as usize];
                let (bytes, packets) = (60 + rng.next() % 1_500, 1 + rng.next() % 9);
                if let Some(r) = whole.row(k, packets) {
                    r.add(proto, i, first, last, bytes, packets);
                }
                let w = (rng.next() % workers as u64) as usize;
                let d = libpcap_tools::DirectionStats {
                    packets,
                    bytes,
                    first,
                    last,
                };
                parts[w].record(k, proto, i, &d);
            }
            if parts.iter().all(ConnTable::stages) {
                staging += 1;
            }
            let mut t = parts.remove(0);
            for p in parts {
                t.merge(p);
            }
            t.settle_staged();
            assert_eq!(t.staged.len(), 0);
            let what = format!(
                "round {round}: {flows} flows, {keys} keys, cap {cap}, {workers} workers, runs {:?}",
                t.spilled()
            );
            if t.spilled().0 > 0 {
                spilled += 1;
            } else {
                held += 1;
            }
            for format in [ReportFormat::Text, ReportFormat::Csv, ReportFormat::Jsonl] {
                assert!(
                    t.render(format) == whole.render(format),
                    "{what}, {format:?}"
                );
            }
            assert_eq!(t.report_rows(), whole.map.len() as u64, "{what}");
            assert_eq!(t.dropped(), (0, 0), "{what}");
        }
        assert!(
            spilled > 2 && held > 2,
            "{spilled} rounds spilled, {held} held"
        );
        assert!(staging >= 12, "{staging} rounds staged rows");
    }

    /// A run that cannot be read back (cut short) makes the report an
    /// error, not a shorter report.
    #[test]
    fn a_damaged_run_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = ConnTable {
            cap: 100,
            spill: Spill {
                dir: Some(dir.path().to_path_buf()),
                ..Spill::default()
            },
            ..ConnTable::default()
        };
        feed(&mut t, 0..1_000);
        let run = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(run.path())
            .unwrap();
        f.set_len(f.metadata().unwrap().len() / 2).unwrap();
        let mut out = Vec::new();
        let e = t.write_report(ReportFormat::Text, &mut out).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
        for threads in [1, 2, 3] {
            let e = t
                .write_text_in_ranges(threads, 50, &mut Vec::new())
                .unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
        }
    }

    /// Without a directory for its runs (or once one cannot be written),
    /// a full table refuses new keys and counts them.
    #[test]
    fn a_table_that_cannot_spill_counts_what_it_drops() {
        let mut t = ConnTable {
            cap: 100,
            spill: Spill {
                dir: Some(PathBuf::from("/nonexistent/pal-spill-test")),
                ..Spill::default()
            },
            ..ConnTable::default()
        };
        feed(&mut t, 0..1_000);
        assert_eq!(t.map.len(), 100);
        assert!(t.spill.dir.is_none());
        assert_eq!(t.spilled(), (0, 0));
        assert!(t.dropped().0 > 0);
    }
}
