//! `port-scan`: sources that probe many ports of one host (vertical scan) or
//! one port on many hosts (horizontal scan).
//!
//! # What is a probe
//! - a TCP segment with SYN and without ACK (a connection attempt);
//! - a UDP datagram sent by the initiator of its flow (replies, such as DNS
//!   answers to random client ports, are not probes), when `count_udp`.
//!
//! A *target* of a source is a (destination host, protocol, destination
//! port). A target is *probe-like* when the source sent it at most
//! `max_packets_per_target` probes and never sent it TCP payload: a client
//! that completes a handshake and talks to a server is not probing it.
//! When `count_replies` is on, a SYN-ACK from a target marks it open and a
//! RST marks it closed; both are reported, neither changes the detection.
//!
//! # Detection
//! Done once at the end, on the merged state: for each source, the
//! probe-like targets are grouped by (host, protocol) for vertical scans and
//! by (protocol, port) for horizontal scans; a sliding window of
//! `window_secs` over the time each target was first probed finds the most
//! targets probed within one window. `min_ports` (vertical) or `min_hosts`
//! (horizontal) targets within a window make a detection.
//!
//! # Memory
//! At most `max_sources` sources, `max_targets_per_source` targets per
//! source and `max_targets` targets in all are tracked (per worker, and
//! again when merging). Probes that hit a cap are not tracked; they are
//! counted in `dropped` and reported as losses by [`Plugin::counters`]
//! (`dropped_source_cap`, `dropped_target_cap`), which the tools show by
//! name in their run summary and log as warnings.
//!
//! # Workers
//! The engine sends both directions of a host pair to the same worker,
//! but the targets of one source are spread over all workers (a horizontal
//! scan talks to many hosts). Each instance keeps per-target state that
//! merges exactly (earliest first time, latest last time, summed probes),
//! so detection after [`Plugin::merge`] gives the same result as a single
//! worker as long as no cap was hit.

use libpcap_analyzer::plugin::{
    Counters, Decapsulated, Interest, Layers, PacketContext, Plugin, PluginBuilder, PluginError,
    PluginResult, TransportLayer, downcast, write_json_atomically,
};
use libpcap_tools::{Config, Direction, FiveTuple, Timestamp, ipproto};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Name of the plugin, of its configuration table `[plugin.port-scan]` and
/// of its output file (`port-scan.json`).
pub const NAME: &str = "port-scan";

/// TCP flag bits used by the plugin.
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Configuration `[plugin.port-scan]`; every key is optional.
///
/// ```
/// use explugin_example::PortScanConfig;
/// use libpcap_tools::Config;
/// let c = Config::from_toml("[plugin.port-scan]\nmin_ports = 20\n").unwrap();
/// let cfg: PortScanConfig = c.plugin("port-scan").unwrap();
/// assert_eq!(cfg.min_ports, 20);
/// assert_eq!(cfg.min_hosts, 50);
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct PortScanConfig {
    /// Distinct ports of one host within a window that make a vertical scan.
    pub min_ports: usize,
    /// Distinct hosts on one port within a window that make a horizontal scan.
    pub min_hosts: usize,
    /// Most probes a target may receive and still count as probed (a target
    /// receiving more is a real conversation).
    pub max_packets_per_target: u32,
    /// Length of the sliding window, in seconds.
    pub window_secs: f64,
    /// Most sources tracked.
    pub max_sources: usize,
    /// Most targets tracked per source.
    pub max_targets_per_source: usize,
    /// Most targets tracked in all.
    pub max_targets: usize,
    /// Count UDP datagrams as probes.
    pub count_udp: bool,
    /// Record SYN-ACK (open) and RST (closed) replies of the targets.
    pub count_replies: bool,
}

impl Default for PortScanConfig {
    fn default() -> Self {
        PortScanConfig {
            min_ports: 50,
            min_hosts: 50,
            max_packets_per_target: 3,
            window_secs: 60.0,
            max_sources: 100_000,
            max_targets_per_source: 8192,
            max_targets: 1_000_000,
            count_udp: true,
            count_replies: true,
        }
    }
}

impl PortScanConfig {
    /// Checks the values.
    ///
    /// # Errors
    /// A message naming the first invalid key.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.window_secs.is_finite() && self.window_secs > 0.0) {
            return Err(format!(
                "window_secs must be a positive number of seconds, not {}",
                self.window_secs
            ));
        }
        for (key, v) in [
            ("min_ports", self.min_ports),
            ("min_hosts", self.min_hosts),
            (
                "max_packets_per_target",
                self.max_packets_per_target as usize,
            ),
        ] {
            if v == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        Ok(())
    }

    fn window_nanos(&self) -> i64 {
        // a float-to-int `as` saturates; validate() rules out NaN and <= 0
        (self.window_secs * Timestamp::NANOS_PER_SEC as f64) as i64
    }
}

/// The kind of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScanKind {
    /// Many ports of one host.
    Vertical,
    /// One port on many hosts.
    Horizontal,
}

impl std::fmt::Display for ScanKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScanKind::Vertical => "vertical",
            ScanKind::Horizontal => "horizontal",
        })
    }
}

/// One suspected scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The scanning address.
    pub source: IpAddr,
    /// Vertical or horizontal.
    pub kind: ScanKind,
    /// IP protocol of the probes (6 TCP, 17 UDP).
    pub protocol: u8,
    /// The host scanned (vertical scans).
    pub host: Option<IpAddr>,
    /// The port scanned (horizontal scans).
    pub port: Option<u16>,
    /// Distinct ports probed within the window (1 for a horizontal scan).
    pub distinct_ports: usize,
    /// Distinct hosts probed within the window (1 for a vertical scan).
    pub distinct_hosts: usize,
    /// Probes sent to those targets.
    pub probes: u64,
    /// Targets that answered SYN-ACK.
    pub open: usize,
    /// Targets that answered RST.
    pub closed: usize,
    /// First probe of the window.
    pub first: Timestamp,
    /// Last probe to a target of the window.
    pub last: Timestamp,
}

impl Detection {
    /// The detection as a JSON object (timestamps as `"secs.nanos"`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "source": self.source.to_string(),
            "kind": self.kind,
            "protocol": proto_name(self.protocol),
            "host": self.host.map(|h| h.to_string()),
            "port": self.port,
            "distinct_ports": self.distinct_ports,
            "distinct_hosts": self.distinct_hosts,
            "probes": self.probes,
            "open": self.open,
            "closed": self.closed,
            "first": self.first.to_string(),
            "last": self.last.to_string(),
        })
    }
}

fn proto_name(p: u8) -> String {
    ipproto::name(p).map_or_else(|| p.to_string(), str::to_ascii_lowercase)
}

/// Probes not tracked because a cap was reached, in packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    /// Probes from a new source while `max_sources` were tracked.
    pub source_cap: u64,
    /// Probes to a new target while `max_targets_per_source` or
    /// `max_targets` were tracked.
    pub target_cap: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TargetKey {
    host: IpAddr,
    proto: u8,
    port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    first: Timestamp,
    last: Timestamp,
    probes: u32,
    engaged: bool,
    open: bool,
    closed: bool,
}

impl Target {
    fn absorb(&mut self, o: &Target) {
        self.first = self.first.min(o.first);
        self.last = self.last.max(o.last);
        self.probes = self.probes.saturating_add(o.probes);
        self.engaged |= o.engaged;
        self.open |= o.open;
        self.closed |= o.closed;
    }
}

type Map<K, V> = HashMap<K, V>;

/// The `port-scan` plugin; build it with [`PortScanPluginBuilder`] or
/// [`PortScanPlugin::new`].
#[derive(Debug)]
pub struct PortScanPlugin {
    cfg: PortScanConfig,
    window: i64,
    sources: Map<IpAddr, Map<TargetKey, Target>>,
    targets: usize,
    probes: u64,
    dropped: Dropped,
}

impl PortScanPlugin {
    /// A plugin with these settings.
    ///
    /// # Errors
    /// When the settings are invalid ([`PortScanConfig::validate`]).
    pub fn new(cfg: PortScanConfig) -> PluginResult<PortScanPlugin> {
        cfg.validate().map_err(|m| PluginError::new(NAME, m))?;
        Ok(PortScanPlugin {
            window: cfg.window_nanos(),
            cfg,
            sources: Map::new(),
            targets: 0,
            probes: 0,
            dropped: Dropped::default(),
        })
    }

    /// A plugin configured by the `[plugin.port-scan]` table of `config`.
    ///
    /// # Errors
    /// When the table has a value of the wrong type or an invalid value.
    pub fn from_config(config: &Config) -> PluginResult<PortScanPlugin> {
        let cfg: PortScanConfig = config
            .plugin(NAME)
            .map_err(|e| PluginError::wrap(NAME, e))?;
        PortScanPlugin::new(cfg)
    }

    /// The settings.
    pub fn config(&self) -> &PortScanConfig {
        &self.cfg
    }

    /// Sources tracked.
    pub fn sources_tracked(&self) -> usize {
        self.sources.len()
    }

    /// Targets tracked, all sources together.
    pub fn targets_tracked(&self) -> usize {
        self.targets
    }

    /// Probes seen (tracked or dropped).
    pub fn probes(&self) -> u64 {
        self.probes
    }

    /// Probes dropped at a cap.
    pub fn dropped(&self) -> Dropped {
        self.dropped
    }

    /// Adds a target's state to a source, under the caps; returns `false`
    /// (and counts the probes as dropped) when a cap refused it.
    fn add(&mut self, source: IpAddr, key: TargetKey, t: Target) -> bool {
        if !self.sources.contains_key(&source) {
            if self.sources.len() >= self.cfg.max_sources {
                self.dropped.source_cap += u64::from(t.probes);
                return false;
            }
            if self.targets >= self.cfg.max_targets {
                self.dropped.target_cap += u64::from(t.probes);
                return false;
            }
        }
        let targets = self.sources.entry(source).or_default();
        if let Some(cur) = targets.get_mut(&key) {
            cur.absorb(&t);
            return true;
        }
        if targets.len() >= self.cfg.max_targets_per_source || self.targets >= self.cfg.max_targets
        {
            self.dropped.target_cap += u64::from(t.probes);
            return false;
        }
        targets.insert(key, t);
        self.targets += 1;
        true
    }

    fn probe(&mut self, k: &FiveTuple, ts: Timestamp) {
        self.probes += 1;
        let key = TargetKey {
            host: k.dst,
            proto: k.proto,
            port: k.dst_port,
        };
        let t = Target {
            first: ts,
            last: ts,
            probes: 1,
            engaged: false,
            open: false,
            closed: false,
        };
        self.add(k.src, key, t);
    }

    /// The target of `source` at `host:port`, if tracked.
    fn target_mut(
        &mut self,
        source: IpAddr,
        host: IpAddr,
        proto: u8,
        port: u16,
    ) -> Option<&mut Target> {
        self.sources
            .get_mut(&source)?
            .get_mut(&TargetKey { host, proto, port })
    }

    /// The suspected scans, sorted by source, kind, protocol, host and port.
    pub fn detections(&self) -> Vec<Detection> {
        let mut sources: Vec<_> = self.sources.iter().collect();
        sources.sort_unstable_by_key(|(ip, _)| **ip);
        let mut out = Vec::new();
        for (ip, targets) in sources {
            let mut vertical: BTreeMap<(IpAddr, u8), Vec<(&TargetKey, &Target)>> = BTreeMap::new();
            let mut horizontal: BTreeMap<(u8, u16), Vec<(&TargetKey, &Target)>> = BTreeMap::new();
            for (k, t) in targets {
                if t.engaged || t.probes > self.cfg.max_packets_per_target {
                    continue;
                }
                vertical.entry((k.host, k.proto)).or_default().push((k, t));
                horizontal
                    .entry((k.proto, k.port))
                    .or_default()
                    .push((k, t));
            }
            for ((host, proto), mut group) in vertical {
                if let Some(w) = best_window(&mut group, self.window, self.cfg.min_ports) {
                    out.push(w.detection(*ip, ScanKind::Vertical, proto, Some(host), None));
                }
            }
            for ((proto, port), mut group) in horizontal {
                if let Some(w) = best_window(&mut group, self.window, self.cfg.min_hosts) {
                    out.push(w.detection(*ip, ScanKind::Horizontal, proto, None, Some(port)));
                }
            }
        }
        out.sort_by(|a, b| {
            (a.source, a.kind, a.protocol, a.host, a.port)
                .cmp(&(b.source, b.kind, b.protocol, b.host, b.port))
        });
        out
    }
}

/// The targets of the busiest window of one group.
struct Window {
    targets: usize,
    probes: u64,
    open: usize,
    closed: usize,
    first: Timestamp,
    last: Timestamp,
}

impl Window {
    fn detection(
        &self,
        source: IpAddr,
        kind: ScanKind,
        protocol: u8,
        host: Option<IpAddr>,
        port: Option<u16>,
    ) -> Detection {
        let (distinct_ports, distinct_hosts) = match kind {
            ScanKind::Vertical => (self.targets, 1),
            ScanKind::Horizontal => (1, self.targets),
        };
        Detection {
            source,
            kind,
            protocol,
            host,
            port,
            distinct_ports,
            distinct_hosts,
            probes: self.probes,
            open: self.open,
            closed: self.closed,
            first: self.first,
            last: self.last,
        }
    }
}

/// The earliest window of `window` nanoseconds holding the most targets
/// (by first-probe time), if it holds at least `min` of them.
fn best_window(group: &mut [(&TargetKey, &Target)], window: i64, min: usize) -> Option<Window> {
    if group.len() < min {
        return None;
    }
    group.sort_unstable_by_key(|(k, t)| (t.first, **k));
    let mut best: Option<(usize, usize)> = None;
    let mut start = 0;
    for (end, (_, t)) in group.iter().enumerate() {
        while let Some((_, s)) = group.get(start)
            && t.first.nanos_since(s.first) > window
        {
            start += 1;
        }
        let len = end + 1 - start;
        if best.is_none_or(|(bs, be)| len > be + 1 - bs) {
            best = Some((start, end));
        }
    }
    let (s, e) = best?;
    let items = group.get(s..=e)?;
    if items.len() < min {
        return None;
    }
    Some(Window {
        targets: items.len(),
        probes: items.iter().map(|(_, t)| u64::from(t.probes)).sum(),
        open: items.iter().filter(|(_, t)| t.open).count(),
        closed: items.iter().filter(|(_, t)| t.closed).count(),
        first: items.iter().map(|(_, t)| t.first).min()?,
        last: items.iter().map(|(_, t)| t.last).max()?,
    })
}

impl Plugin for PortScanPlugin {
    fn name(&self) -> &str {
        NAME
    }

    fn interest(&self) -> Interest {
        Interest::new(Layers::TRANSPORT).ip_protocols(&[ipproto::TCP, ipproto::UDP])
    }

    fn handle_transport(
        &mut self,
        ctx: &PacketContext<'_>,
        transport: &TransportLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        let k = &transport.key;
        let ts = transport.first_ts.or(ctx.ts()).unwrap_or_default();
        match k.proto {
            ipproto::TCP => {
                let flags = transport.tcp_flags;
                if flags & SYN != 0 && flags & ACK == 0 {
                    self.probe(k, ts);
                    return Ok(None);
                }
                // replies and conversations only update known targets
                if self.cfg.count_replies {
                    let rst = flags & RST != 0;
                    let syn_ack = flags & (SYN | ACK) == SYN | ACK;
                    if (rst || syn_ack)
                        && let Some(t) = self.target_mut(k.dst, k.src, k.proto, k.src_port)
                    {
                        if rst {
                            t.closed = true;
                        } else {
                            t.open = true;
                        }
                    }
                }
                if !transport.payload.is_empty()
                    && let Some(t) = self.target_mut(k.src, k.dst, k.proto, k.dst_port)
                {
                    t.engaged = true;
                }
            }
            ipproto::UDP if self.cfg.count_udp && transport.direction == Direction::ToServer => {
                self.probe(k, ts);
            }
            _ => {}
        }
        Ok(None)
    }

    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let other = downcast::<Self>(NAME, other)?;
        let PortScanPlugin {
            sources,
            probes,
            dropped,
            ..
        } = *other;
        self.probes += probes;
        self.dropped.source_cap += dropped.source_cap;
        self.dropped.target_cap += dropped.target_cap;
        // sorted, so that which entries a cap refuses does not depend on
        // hash order
        let mut sources: Vec<_> = sources.into_iter().collect();
        sources.sort_unstable_by_key(|(ip, _)| *ip);
        for (ip, targets) in sources {
            let mut targets: Vec<_> = targets.into_iter().collect();
            targets.sort_unstable_by_key(|(k, _)| *k);
            for (k, t) in targets {
                self.add(ip, k, t);
            }
        }
        Ok(())
    }

    fn post_process(&mut self) -> PluginResult<()> {
        // the probes dropped at a cap are reported by counters(): the tool
        // shows and logs them, no warning of our own
        log::debug!(
            "{NAME}: {} probes from {} sources to {} targets",
            self.probes,
            self.sources.len(),
            self.targets
        );
        Ok(())
    }

    /// Probes seen and what is tracked; the probes refused by a cap are
    /// losses. While the run goes on the tools add the workers' figures (a
    /// source seen by two workers counts twice in `sources_tracked` then);
    /// the final figures are the merged instance's.
    fn counters(&self) -> Counters {
        Counters::new()
            .count("probes", self.probes)
            .count("sources_tracked", self.sources.len() as u64)
            .count("targets_tracked", self.targets as u64)
            .loss("dropped_source_cap", self.dropped.source_cap)
            .loss("dropped_target_cap", self.dropped.target_cap)
    }

    fn results(&self) -> Option<serde_json::Value> {
        let scanners: Vec<_> = self.detections().iter().map(Detection::to_json).collect();
        Some(serde_json::json!({
            "config": self.cfg,
            "probes": self.probes,
            "sources_tracked": self.sources.len(),
            "targets_tracked": self.targets,
            "dropped": self.dropped,
            "scanners": scanners,
        }))
    }

    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        let Some(value) = self.results() else {
            return Ok(Vec::new());
        };
        let path = dir.join(format!("{NAME}.json"));
        write_json_atomically(&path, &value).map_err(|e| PluginError::wrap(NAME, e))?;
        Ok(vec![path])
    }
}

/// Builder of [`PortScanPlugin`]: reads `[plugin.port-scan]` as a
/// [`PortScanConfig`]. Not enabled by default: ask for `port-scan` by name.
#[derive(Debug, Clone, Copy, Default)]
pub struct PortScanPluginBuilder;

impl PluginBuilder for PortScanPluginBuilder {
    fn name(&self) -> &str {
        NAME
    }

    fn description(&self) -> &str {
        "sources probing many ports of a host or one port on many hosts (port-scan.json)"
    }

    fn enabled_by_default(&self) -> bool {
        false
    }

    fn build(&self, config: &Config) -> PluginResult<Box<dyn Plugin>> {
        Ok(Box::new(PortScanPlugin::from_config(config)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(first: i64) -> Target {
        Target {
            first: Timestamp(first),
            last: Timestamp(first),
            probes: 1,
            engaged: false,
            open: false,
            closed: false,
        }
    }

    fn key(port: u16) -> TargetKey {
        TargetKey {
            host: IpAddr::from([10, 0, 0, 1]),
            proto: 6,
            port,
        }
    }

    #[test]
    fn best_window_keeps_the_densest_window() {
        let keys: Vec<_> = (0..10).map(key).collect();
        // 3 targets at t=0..2, then 5 targets 100 ns apart starting at 1000
        let times = [0, 1, 2, 1000, 1100, 1200, 1300, 1400, 5000, 9000];
        let ts: Vec<_> = times.iter().map(|&x| t(x)).collect();
        let mut group: Vec<_> = keys.iter().zip(ts.iter()).collect();
        let w = best_window(&mut group, 400, 5).unwrap();
        assert_eq!(w.targets, 5);
        assert_eq!((w.first, w.last), (Timestamp(1000), Timestamp(1400)));
        assert!(best_window(&mut group, 399, 5).is_none());
    }

    #[test]
    fn invalid_config_is_refused() {
        for bad in [
            PortScanConfig {
                window_secs: 0.0,
                ..PortScanConfig::default()
            },
            PortScanConfig {
                window_secs: f64::NAN,
                ..PortScanConfig::default()
            },
            PortScanConfig {
                min_ports: 0,
                ..PortScanConfig::default()
            },
        ] {
            assert!(PortScanPlugin::new(bad).is_err());
        }
    }
}
