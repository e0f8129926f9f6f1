//! `flows`: one JSON line per flow, written when the flow ends.
//!
//! Each line has the flow id, the 5-tuple (client as source), the VLAN and
//! tunnel depth, first and last seen (ns since the epoch), packets and bytes
//! per direction, the TCP flags seen from each side (as letters, `FSRPAU`)
//! and why the flow ended (`fin`, `rst`, `timeout`, `eviction`,
//! `end-of-input`). Lines come in the order flows ended; sort them for a
//! canonical order. Writes `flows.jsonl` in the output directory (without
//! one, flows are only counted).

use super::spool::{OutputConfig, Spool};
use crate::plugin::{EndReason, Interest, Layers, Plugin, PluginBuilder, PluginResult, downcast};
use libpcap_tools::{Config, Flow, ipproto};
use std::path::{Path, PathBuf};

/// TCP flags as letters (`F`, `S`, `R`, `P`, `A`, `U`, `E`, `C`).
pub fn tcp_flags_string(f: u8) -> String {
    const L: [(u8, char); 8] = [
        (1, 'F'),
        (2, 'S'),
        (4, 'R'),
        (8, 'P'),
        (16, 'A'),
        (32, 'U'),
        (64, 'E'),
        (128, 'C'),
    ];
    L.iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// The JSON record of a flow.
pub fn flow_json(f: &Flow, reason: Option<EndReason>) -> serde_json::Value {
    let k = &f.key;
    serde_json::json!({
        "id": f.id.to_string(),
        "protocol": ipproto::name(k.proto).map_or_else(|| k.proto.to_string(), str::to_string),
        "src_ip": k.src.to_string(),
        "src_port": k.src_port,
        "dst_ip": k.dst.to_string(),
        "dst_port": k.dst_port,
        "vlan": f.context.vlan,
        "tunnel_depth": f.context.depth,
        "first_seen_ns": f.first_seen.map(|t| t.as_nanos()),
        "last_seen_ns": f.last_seen.map(|t| t.as_nanos()),
        "packets_to_server": f.to_server.packets,
        "bytes_to_server": f.to_server.bytes,
        "packets_to_client": f.to_client.packets,
        "bytes_to_client": f.to_client.bytes,
        "tcp_flags_to_server": tcp_flags_string(f.tcp_flags_to_server),
        "tcp_flags_to_client": tcp_flags_string(f.tcp_flags_to_client),
        "end_reason": reason.map(|r| r.to_string()),
    })
}

/// The `flows` plugin.
#[derive(Debug)]
pub struct FlowsPlugin {
    spool: Spool,
}

impl Plugin for FlowsPlugin {
    fn name(&self) -> &str {
        "flows"
    }
    fn interest(&self) -> Interest {
        Interest::new(Layers::FLOW_EVENTS)
    }
    fn flow_destroyed(&mut self, flow: &Flow, reason: EndReason) -> PluginResult<()> {
        if self.spool.is_writing() {
            self.spool.push(&flow_json(flow, Some(reason)))
        } else {
            self.spool.push(&serde_json::Value::Null)
        }
    }
    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let o = downcast::<Self>("flows", other)?;
        self.spool.merge(o.spool)
    }
    fn results(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "flows": self.spool.lines() }))
    }
    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        self.spool.save(dir, "flows.jsonl")
    }
}

/// Builder of [`FlowsPlugin`].
#[derive(Debug)]
pub struct FlowsPluginBuilder;

impl PluginBuilder for FlowsPluginBuilder {
    fn name(&self) -> &str {
        "flows"
    }
    fn description(&self) -> &str {
        "every flow as a JSON line: id, 5-tuple, times, per-direction counters, TCP flags, end reason"
    }
    fn build(&self, config: &Config) -> PluginResult<Box<dyn Plugin>> {
        let out = OutputConfig::from_config(config, "flows")?;
        Ok(Box::new(FlowsPlugin {
            spool: Spool::new("flows", out.dir),
        }))
    }
}
