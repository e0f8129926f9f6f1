//! `community-id`: the Community ID v1 flow hash of every flow.
//!
//! For TCP, UDP and SCTP the hash covers the flow's 5-tuple; for ICMP and
//! ICMPv6 the type and code of the flow's first message stand in for the
//! ports, as the specification says. Writes `community-id.jsonl` (one line per
//! flow: flow id, 5-tuple, `community_id`).
//!
//! Config `[plugin.community-id]`: `seed` (default 0).

use super::spool::{OutputConfig, Spool};
use crate::plugin::{
    Decapsulated, Interest, Layers, PacketContext, Plugin, PluginBuilder, PluginError,
    PluginResult, TransportLayer, downcast,
};
use crate::proto::community_id::community_id_v1;
use libpcap_tools::{Config, FlowId, ipproto};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Configuration `[plugin.community-id]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct CommunityIdConfig {
    /// The hash seed.
    pub seed: u16,
}

/// The `community-id` plugin.
#[derive(Debug)]
pub struct CommunityIdPlugin {
    cfg: CommunityIdConfig,
    seen: HashSet<FlowId, foldhash::fast::RandomState>,
    spool: Spool,
}

impl Plugin for CommunityIdPlugin {
    fn name(&self) -> &str {
        "community-id"
    }
    fn interest(&self) -> Interest {
        // transport callbacks for ICMP only (type and code stand for the
        // ports); other flows are hashed when created, with no per-packet work
        Interest::new(Layers::TRANSPORT | Layers::FLOW_EVENTS)
            .ip_protocols(&[ipproto::ICMP, ipproto::ICMPV6])
    }
    fn flow_created(&mut self, flow: &libpcap_tools::Flow) -> PluginResult<()> {
        let k = &flow.key;
        if k.proto == ipproto::ICMP || k.proto == ipproto::ICMPV6 {
            return Ok(());
        }
        let cid = community_id_v1(self.cfg.seed, k.src, k.dst, k.proto, k.src_port, k.dst_port);
        self.emit(flow, &cid)
    }
    fn handle_transport(
        &mut self,
        _: &PacketContext<'_>,
        t: &TransportLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        // one hash per ICMP flow, from its first message
        if !self.seen.insert(t.flow.id) {
            return Ok(None);
        }
        let ty = t.data.first().copied().unwrap_or(0);
        let code = t.data.get(1).copied().unwrap_or(0);
        let cid = community_id_v1(
            self.cfg.seed,
            t.key.src,
            t.key.dst,
            t.key.proto,
            u16::from(ty),
            u16::from(code),
        );
        self.emit(t.flow, &cid)?;
        Ok(None)
    }
    fn flow_destroyed(
        &mut self,
        flow: &libpcap_tools::Flow,
        _: crate::plugin::EndReason,
    ) -> PluginResult<()> {
        self.seen.remove(&flow.id);
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let o = downcast::<Self>("community-id", other)?;
        self.spool.merge(o.spool)
    }
    fn results(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "flows": self.spool.lines() }))
    }
    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        self.spool.save(dir, "community-id.jsonl")
    }
}

impl CommunityIdPlugin {
    fn emit(&mut self, flow: &libpcap_tools::Flow, cid: &str) -> PluginResult<()> {
        let k = &flow.key;
        if self.spool.is_writing() {
            self.spool.push(&serde_json::json!({
                "id": flow.id.to_string(),
                "protocol": k.proto,
                "src_ip": k.src.to_string(), "src_port": k.src_port,
                "dst_ip": k.dst.to_string(), "dst_port": k.dst_port,
                "community_id": cid,
            }))?;
        } else {
            self.spool.push(&serde_json::Value::Null)?;
        }
        Ok(())
    }
}

/// Builder of [`CommunityIdPlugin`].
#[derive(Debug)]
pub struct CommunityIdPluginBuilder;

impl PluginBuilder for CommunityIdPluginBuilder {
    fn name(&self) -> &str {
        "community-id"
    }
    fn description(&self) -> &str {
        "Community ID v1 hash of every flow"
    }
    fn build(&self, config: &Config) -> PluginResult<Box<dyn Plugin>> {
        let cfg = config
            .plugin("community-id")
            .map_err(|e| PluginError::wrap("community-id", e))?;
        let out = OutputConfig::from_config(config, "community-id")?;
        Ok(Box::new(CommunityIdPlugin {
            cfg,
            seen: HashSet::default(),
            spool: Spool::new("community-id", out.dir),
        }))
    }
}
