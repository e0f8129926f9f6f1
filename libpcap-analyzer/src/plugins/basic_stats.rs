//! `basic-stats`: totals, per-layer counts, L3 and L4 conversations and
//! anomalies by kind.
//!
//! Conversations are gathered from the flows as they end (no per-packet
//! work): the L3 conversation of two addresses and the L4 conversation of a
//! bidirectional 5-tuple sum the packets and bytes of all their flows,
//! tunnel layers included. At most `max_conversations` of each are kept;
//! the rest are summed in `other`.
//!
//! Config `[plugin.basic-stats]`: `max_conversations` (default 1000000).
//! Writes `basic-stats.json`.

use crate::plugin::{
    EndReason, Interest, Layers, Plugin, PluginBuilder, PluginError, PluginResult, downcast,
};
use crate::stats::AnalyzerStats;
use libpcap_tools::{Config, FiveTuple, Flow, ipproto};
use std::collections::HashMap;
use std::net::IpAddr;

/// Configuration `[plugin.basic-stats]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct BasicStatsConfig {
    /// Most conversations kept per table.
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
    /// Packets from the first endpoint.
    pub packets_ab: u64,
    /// Bytes from the first endpoint.
    pub bytes_ab: u64,
    /// Packets from the second endpoint.
    pub packets_ba: u64,
    /// Bytes from the second endpoint.
    pub bytes_ba: u64,
    /// Flows.
    pub flows: u64,
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

/// The `basic-stats` plugin.
#[derive(Debug, Default)]
pub struct BasicStats {
    cfg: BasicStatsConfig,
    l3: HashMap<(IpAddr, IpAddr), Conv, foldhash::fast::RandomState>,
    l4: HashMap<FiveTuple, Conv, foldhash::fast::RandomState>,
    other_l3: Conv,
    other_l4: Conv,
    end_reasons: HashMap<EndReason, u64, foldhash::fast::RandomState>,
    run: AnalyzerStats,
}

fn bump<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Conv, foldhash::fast::RandomState>,
    cap: usize,
    other: &mut Conv,
    k: K,
    c: &Conv,
) {
    if let Some(v) = map.get_mut(&k) {
        v.add(c);
    } else if map.len() < cap {
        map.insert(k, *c);
    } else {
        other.add(c);
    }
}

impl BasicStats {
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
            ((key.src, key.dst), conv(f.to_server, f.to_client))
        } else {
            ((key.dst, key.src), conv(f.to_client, f.to_server))
        };
        let cap = self.cfg.max_conversations;
        bump(&mut self.l3, cap, &mut self.other_l3, pair, &c3);
        bump(&mut self.l4, cap, &mut self.other_l4, key.canonical(), &c4);
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
        let cap = self.cfg.max_conversations;
        for (k, v) in &o.l3 {
            bump(&mut self.l3, cap, &mut self.other_l3, *k, v);
        }
        for (k, v) in &o.l4 {
            bump(&mut self.l4, cap, &mut self.other_l4, *k, v);
        }
        self.other_l3.add(&o.other_l3);
        self.other_l4.add(&o.other_l4);
        for (k, v) in &o.end_reasons {
            *self.end_reasons.entry(*k).or_default() += v;
        }
        Ok(())
    }

    fn run_stats(&mut self, stats: &AnalyzerStats) {
        self.run = stats.clone();
    }

    fn results(&self) -> Option<serde_json::Value> {
        let mut l3: Vec<_> = self.l3.iter().collect();
        l3.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut l4: Vec<_> = self.l4.iter().collect();
        l4.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut reasons: Vec<_> = self
            .end_reasons
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        reasons.sort();
        let r = &self.run;
        Some(serde_json::json!({
            "totals": { "packets": r.packets, "bytes": r.bytes },
            "layers": {
                "network": r.network, "ipv4": r.ipv4, "ipv6": r.ipv6, "arp": r.arp,
                "other_network": r.other_network, "fragments": r.fragments, "reassembled": r.reassembled,
                "tcp": r.tcp, "udp": r.udp, "icmp": r.icmp, "sctp": r.sctp,
                "other_transport": r.other_transport, "tunnels": r.tunnels, "stream_bytes": r.stream_bytes,
            },
            "anomalies": r.anomalies,
            "plugin_errors": r.plugin_errors,
            "flows_ended": reasons.into_iter().map(|(k, v)| (k, serde_json::Value::from(v))).collect::<serde_json::Map<_, _>>(),
            "l3_conversations": l3.iter().map(|((a, b), c)| serde_json::json!({
                "a": a.to_string(), "b": b.to_string(),
                "packets_ab": c.packets_ab, "bytes_ab": c.bytes_ab,
                "packets_ba": c.packets_ba, "bytes_ba": c.bytes_ba, "flows": c.flows,
            })).collect::<Vec<_>>(),
            "l3_other": self.other_l3,
            "l4_conversations": l4.iter().map(|(k, c)| serde_json::json!({
                "protocol": ipproto::name(k.proto).map_or_else(|| k.proto.to_string(), str::to_string),
                "a": k.src.to_string(), "a_port": k.src_port, "b": k.dst.to_string(), "b_port": k.dst_port,
                "packets_ab": c.packets_ab, "bytes_ab": c.bytes_ab,
                "packets_ba": c.packets_ba, "bytes_ba": c.bytes_ba, "flows": c.flows,
            })).collect::<Vec<_>>(),
            "l4_other": self.other_l4,
        }))
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
        let cfg = config
            .plugin("basic-stats")
            .map_err(|e| PluginError::wrap("basic-stats", e))?;
        Ok(Box::new(BasicStats {
            cfg,
            ..BasicStats::default()
        }))
    }
}
