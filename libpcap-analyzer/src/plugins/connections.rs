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
//! 5), `file` (base name, default `connections`).

use crate::plugin::{
    Interest, Layers, PacketContext, Plugin, PluginBuilder, PluginError, PluginResult,
    TransportLayer, downcast, write_atomically,
};
use libpcap_tools::{Config, ipproto};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Output format of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// `; `-separated text with a header line.
    #[default]
    Text,
    /// RFC 4180 CSV with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl ReportFormat {
    /// File extension of the format.
    pub fn extension(self) -> &'static str {
        match self {
            ReportFormat::Text => "txt",
            ReportFormat::Csv => "csv",
            ReportFormat::Jsonl => "jsonl",
        }
    }
}

impl std::str::FromStr for ReportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" | "txt" => Ok(ReportFormat::Text),
            "csv" => Ok(ReportFormat::Csv),
            "jsonl" | "json" => Ok(ReportFormat::Jsonl),
            other => Err(format!(
                "unknown report format '{other}' (text, csv, jsonl)"
            )),
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
    /// Most rows kept (per worker, and after merging); further keys are
    /// counted (`dropped_keys`, `dropped_packets` in the results and a warning)
    /// instead of growing memory without bound. 0: no limit.
    pub max_connections: usize,
    /// Directory of the periodic report (set by the tool from `--outdir`).
    pub outdir: Option<PathBuf>,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            format: ReportFormat::Text,
            interval: 0.0,
            file: "connections".to_string(),
            max_connections: 10_000_000,
            outdir: None,
        }
    }
}

/// A unidirectional connection key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// A set of IP protocol numbers, stored inline (no allocation per row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProtoSet([u64; 4]);

impl ProtoSet {
    /// Adds `p`.
    pub fn insert(&mut self, p: u8) {
        if let Some(w) = self.0.get_mut(usize::from(p >> 6)) {
            *w |= 1 << (p & 63);
        }
    }

    /// `true` if `p` is in the set.
    pub fn contains(&self, p: u8) -> bool {
        self.0
            .get(usize::from(p >> 6))
            .is_some_and(|w| w & (1 << (p & 63)) != 0)
    }

    /// The protocol numbers, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0u8..).zip(self.0).flat_map(|(word, mut bits)| {
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let bit = bits.trailing_zeros() as u8;
                bits &= bits - 1;
                Some(word * 64 + bit)
            })
        })
    }

    fn union(&mut self, o: &ProtoSet) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a |= b;
        }
    }
}

/// The counters of one connection key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnStats {
    /// IP protocol numbers seen.
    pub protocols: ProtoSet,
    /// First packet time, ms since the epoch.
    pub first_ms: Option<i64>,
    /// Last packet time, ms since the epoch.
    pub last_ms: Option<i64>,
    /// Sum of the wire lengths of the frames.
    pub bytes: u64,
    /// Frames.
    pub packets: u64,
}

impl ConnStats {
    fn add_proto(&mut self, p: u8) {
        self.protocols.insert(p);
    }

    fn merge(&mut self, o: &ConnStats) {
        self.protocols.union(&o.protocols);
        self.first_ms = match (self.first_ms, o.first_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_ms = match (self.last_ms, o.last_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.bytes += o.bytes;
        self.packets += o.packets;
    }

    /// Appends the protocol names to `out`, separated by `, `.
    fn push_protocol_names(&self, out: &mut String) {
        for (i, p) in self.protocols.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            match ipproto::name(p) {
                Some(name) => out.push_str(name),
                None => {
                    out.push_str("IP");
                    out.push_str(itoa::Buffer::new().format(p));
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

/// The table of connections.
#[derive(Debug, Default, Clone)]
pub struct ConnTable {
    map: HashMap<ConnKey, ConnStats, foldhash::fast::RandomState>,
    /// Most rows kept (0: no limit).
    cap: usize,
    /// Packets of keys refused because the table was full.
    dropped_packets: u64,
    /// Keys refused because the table was full (counted once per refusal).
    dropped_keys: u64,
}

impl ConnTable {
    /// The row of `k`, or `None` (counted) when the table is full.
    fn row(&mut self, k: ConnKey, packets: u64) -> Option<&mut ConnStats> {
        if self.cap > 0 && self.map.len() >= self.cap && !self.map.contains_key(&k) {
            self.dropped_keys += 1;
            self.dropped_packets += packets;
            return None;
        }
        Some(self.map.entry(k).or_default())
    }

    fn merge(&mut self, other: &ConnTable) {
        for (k, v) in &other.map {
            if let Some(row) = self.row(*k, v.packets) {
                row.merge(v);
            }
        }
        self.dropped_keys += other.dropped_keys;
        self.dropped_packets += other.dropped_packets;
    }

    /// Keys and packets refused because the table reached `max_connections`.
    pub fn dropped(&self) -> (u64, u64) {
        (self.dropped_keys, self.dropped_packets)
    }

    /// The rows in report order.
    pub fn rows(&self) -> Vec<(&ConnKey, &ConnStats)> {
        let mut v: Vec<_> = self.map.iter().collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    /// Renders the report.
    pub fn render(&self, format: ReportFormat) -> String {
        let rows = self.rows();
        let mut out = String::with_capacity(64 + rows.len() * 96);
        match format {
            ReportFormat::Text => {
                out.push_str(
                    "source ip; source port; destination ip; destination port; protocols; first; last; bytes; packets\n",
                );
                for (k, v) in rows {
                    push_row(&mut out, k, v, "; ", false);
                    out.push('\n');
                }
            }
            ReportFormat::Csv => {
                out.push_str(
                    "source ip,source port,destination ip,destination port,protocols,first,last,bytes,packets\r\n",
                );
                for (k, v) in rows {
                    push_row(&mut out, k, v, ",", true);
                    out.push_str("\r\n");
                }
            }
            ReportFormat::Jsonl => {
                for (k, v) in rows {
                    let line = serde_json::json!({
                        "source_ip": k.src.to_string(),
                        "source_port": k.src_port,
                        "destination_ip": k.dst.to_string(),
                        "destination_port": k.dst_port,
                        "protocols": v.protocol_names(),
                        "first": v.first_ms,
                        "last": v.last_ms,
                        "bytes": v.bytes,
                        "packets": v.packets,
                    });
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        out
    }
}

/// Appends one row of the text or CSV report (without its line end):
/// the fields separated by `sep`, the protocols in brackets (quoted when
/// `csv` and they hold a comma), empty times when unknown. Written by hand
/// with `itoa`: `write!` made the report of 200 k rows take 0.2 s.
fn push_row(out: &mut String, k: &ConnKey, v: &ConnStats, sep: &str, csv: bool) {
    let mut num = itoa::Buffer::new();
    push_ip(out, &k.src);
    out.push_str(sep);
    out.push_str(num.format(k.src_port));
    out.push_str(sep);
    push_ip(out, &k.dst);
    out.push_str(sep);
    out.push_str(num.format(k.dst_port));
    out.push_str(sep);
    let quote = csv && v.protocols.iter().nth(1).is_some();
    if quote {
        out.push('"');
    }
    out.push('[');
    v.push_protocol_names(out);
    out.push(']');
    if quote {
        out.push('"');
    }
    out.push_str(sep);
    if let Some(ms) = v.first_ms {
        out.push_str(num.format(ms));
    }
    out.push_str(sep);
    if let Some(ms) = v.last_ms {
        out.push_str(num.format(ms));
    }
    out.push_str(sep);
    out.push_str(num.format(v.bytes));
    out.push_str(sep);
    out.push_str(num.format(v.packets));
}

/// Appends an address: IPv4 by hand, IPv6 through `Display` (RFC 5952).
fn push_ip(out: &mut String, ip: &IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            for (i, x) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if x >= 100 {
                    out.push(char::from(b'0' + x / 100));
                }
                if x >= 10 {
                    out.push(char::from(b'0' + x / 10 % 10));
                }
                out.push(char::from(b'0' + x % 10));
            }
        }
        IpAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

/// Where an instance keeps its table: its own, or one the periodic writer
/// thread can also read.
#[derive(Debug)]
enum Store {
    Local(ConnTable),
    Shared(Arc<Mutex<ConnTable>>),
}

/// The `connections` plugin.
#[derive(Debug)]
pub struct ConnectionsPlugin {
    cfg: ConnectionsConfig,
    /// Record every transport layer (needed for reports written while the
    /// run goes on); otherwise flows are folded in when they end, which costs
    /// nothing per packet.
    per_packet: bool,
    store: Store,
    _writer: Option<Arc<PeriodicWriter>>,
}

impl ConnectionsPlugin {
    /// A plugin with `cfg` (no periodic writer).
    pub fn new(cfg: ConnectionsConfig) -> ConnectionsPlugin {
        let cap = cfg.max_connections;
        ConnectionsPlugin {
            cfg,
            per_packet: false,
            store: Store::Local(ConnTable {
                cap,
                ..ConnTable::default()
            }),
            _writer: None,
        }
    }

    /// Calls `f` with the table (no copy).
    pub fn with_table<R>(&self, f: impl FnOnce(&ConnTable) -> R) -> R {
        match &self.store {
            Store::Local(t) => f(t),
            Store::Shared(m) => match m.lock() {
                Ok(t) => f(&t),
                Err(_) => f(&ConnTable::default()),
            },
        }
    }

    /// A copy of the table (merged instances after the run).
    pub fn table(&self) -> ConnTable {
        self.with_table(ConnTable::clone)
    }

    /// The report in the configured format.
    pub fn render(&self) -> String {
        self.with_table(|t| t.render(self.cfg.format))
    }

    /// The table, moved out of this instance.
    fn into_table(self) -> ConnTable {
        match self.store {
            Store::Local(t) => t,
            Store::Shared(m) => m.lock().map(|t| t.clone()).unwrap_or_default(),
        }
    }

    /// Path of the report in `dir`.
    pub fn report_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.{}", self.cfg.file, self.cfg.format.extension()))
    }
}

/// Folds one direction of an ended flow into the table.
fn record_direction(t: &mut ConnTable, k: ConnKey, proto: u8, d: &libpcap_tools::DirectionStats) {
    if d.packets == 0 {
        return;
    }
    let Some(s) = t.row(k, d.packets) else { return };
    s.add_proto(proto);
    if let Some(f) = d.first {
        let ms = f.as_millis();
        s.first_ms = Some(s.first_ms.map_or(ms, |x| x.min(ms)));
    }
    if let Some(l) = d.last {
        let ms = l.as_millis();
        s.last_ms = Some(s.last_ms.map_or(ms, |x| x.max(ms)));
    }
    s.bytes += d.bytes;
    s.packets += d.packets;
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
    record_direction(t, fwd, k.proto, &f.to_server);
    record_direction(t, rev, k.proto, &f.to_client);
}

fn record(t: &mut ConnTable, tl: &TransportLayer<'_>) {
    let k = ConnKey {
        src: tl.key.src,
        src_port: tl.key.src_port,
        dst: tl.key.dst,
        dst_port: tl.key.dst_port,
    };
    let Some(s) = t.row(k, u64::from(tl.frames)) else {
        return;
    };
    s.add_proto(tl.key.proto);
    if let Some(f) = tl.first_ts {
        let ms = f.as_millis();
        s.first_ms = Some(s.first_ms.map_or(ms, |x| x.min(ms)));
    }
    if let Some(l) = tl.last_ts {
        let ms = l.as_millis();
        s.last_ms = Some(s.last_ms.map_or(ms, |x| x.max(ms)));
    }
    s.bytes += tl.wire_bytes;
    s.packets += u64::from(tl.frames);
}

impl Plugin for ConnectionsPlugin {
    fn name(&self) -> &str {
        "connections"
    }

    fn interest(&self) -> Interest {
        if self.per_packet {
            Interest::new(Layers::TRANSPORT)
        } else {
            Interest::new(Layers::FLOW_EVENTS)
        }
    }

    fn flow_destroyed(
        &mut self,
        flow: &libpcap_tools::Flow,
        _: crate::plugin::EndReason,
    ) -> PluginResult<()> {
        if !self.per_packet {
            match &mut self.store {
                Store::Local(t) => record_flow(t, flow),
                Store::Shared(m) => {
                    if let Ok(mut t) = m.lock() {
                        record_flow(&mut t, flow);
                    }
                }
            }
        }
        Ok(())
    }

    fn handle_transport(
        &mut self,
        _ctx: &PacketContext<'_>,
        tl: &TransportLayer<'_>,
    ) -> PluginResult<Option<crate::plugin::Decapsulated>> {
        match &mut self.store {
            Store::Local(t) => record(t, tl),
            Store::Shared(m) => {
                if let Ok(mut t) = m.lock() {
                    record(&mut t, tl);
                }
            }
        }
        Ok(None)
    }

    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let other = downcast::<Self>("connections", other)?;
        let theirs = other.into_table();
        match &mut self.store {
            Store::Local(t) => t.merge(&theirs),
            Store::Shared(m) => {
                // stop sharing: the run is over, and the writer must not
                // count the other instance twice
                let mut mine = m.lock().map(|t| t.clone()).unwrap_or_default();
                mine.merge(&theirs);
                self.store = Store::Local(mine);
            }
        }
        Ok(())
    }

    fn results(&self) -> Option<serde_json::Value> {
        Some(self.with_table(|t| {
            serde_json::json!({
                "connections": t.map.len(),
                "dropped_keys": t.dropped_keys,
                "dropped_packets": t.dropped_packets,
            })
        }))
    }

    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        if let Some(w) = self._writer.take() {
            w.stop();
        }
        let (keys, packets) = self.with_table(ConnTable::dropped);
        if keys > 0 {
            log::warn!(
                "connections: the report reached max_connections ({}); {keys} keys ({packets} packets) were not kept",
                self.cfg.max_connections
            );
        }
        let path = self.report_path(dir);
        write_atomically(&path, self.render().as_bytes())
            .map_err(|e| PluginError::wrap("connections", e))?;
        Ok(vec![path])
    }
}

/// The thread that rewrites the report every `interval` seconds from the
/// tables of all instances.
#[derive(Debug)]
pub struct PeriodicWriter {
    tables: Mutex<Vec<Arc<Mutex<ConnTable>>>>,
    stop: Mutex<bool>,
    wake: std::sync::Condvar,
}

impl PeriodicWriter {
    fn start(interval: f64, path: PathBuf, format: ReportFormat) -> Arc<PeriodicWriter> {
        let w = Arc::new(PeriodicWriter {
            tables: Mutex::new(Vec::new()),
            stop: Mutex::new(false),
            wake: std::sync::Condvar::new(),
        });
        let me = w.clone();
        let period = std::time::Duration::from_secs_f64(interval.max(0.05));
        let spawned = std::thread::Builder::new()
            .name("pal-conn-writer".into())
            .spawn(move || {
                let mut stopped = me.stop.lock().map(|g| *g).unwrap_or(true);
                while !stopped {
                    if let Ok(g) = me.stop.lock() {
                        match me.wake.wait_timeout(g, period) {
                            Ok((g, _)) => stopped = *g,
                            Err(_) => stopped = true,
                        }
                    }
                    if stopped {
                        break;
                    }
                    let mut all = ConnTable::default();
                    if let Ok(tables) = me.tables.lock() {
                        for t in tables.iter() {
                            if let Ok(t) = t.lock() {
                                all.merge(&t);
                            }
                        }
                    }
                    if let Err(e) = write_atomically(&path, all.render(format).as_bytes()) {
                        log::warn!("connections: cannot write {}: {e}", path.display());
                    }
                }
            });
        if let Err(e) = spawned {
            log::warn!("connections: cannot start the report writer: {e}");
        }
        w
    }

    fn stop(&self) {
        if let Ok(mut s) = self.stop.lock() {
            *s = true;
        }
        self.wake.notify_all();
    }
}

/// Builder of [`ConnectionsPlugin`].
#[derive(Debug, Default)]
pub struct ConnectionsPluginBuilder {
    writer: Mutex<Option<Arc<PeriodicWriter>>>,
}

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
        let mut p = ConnectionsPlugin::new(cfg.clone());
        if let (true, Some(dir)) = (cfg.interval > 0.0, cfg.outdir.as_ref()) {
            let mut w = self
                .writer
                .lock()
                .map_err(|_| PluginError::new("connections", "writer lock poisoned"))?;
            let path = p.report_path(dir);
            let writer = w
                .get_or_insert_with(|| PeriodicWriter::start(cfg.interval, path, cfg.format))
                .clone();
            let shared = Arc::new(Mutex::new(ConnTable {
                cap: cfg.max_connections,
                ..ConnTable::default()
            }));
            if let Ok(mut t) = writer.tables.lock() {
                t.push(shared.clone());
            }
            p.store = Store::Shared(shared);
            p.per_packet = true;
            p._writer = Some(writer);
        }
        Ok(Box::new(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
