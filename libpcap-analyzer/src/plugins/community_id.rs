//! `community-id`: the Community ID v1 flow hash of every flow, as
//! `community_id` records ([`crate::output::schema::COMMUNITY_ID`]).
//!
//! The hash covers the flow's key: the 5-tuple for TCP, UDP and SCTP; for
//! ICMP and ICMPv6 the flow is keyed as the specification hashes it (the
//! type as source port, the counterpart type of a request/response pair
//! or the code as destination port), so an echo exchange is one flow with
//! one ID and another message type its own. The record is written when
//! the flow ends: its endpoints from the originator's view (the key's
//! ports, ICMP's type and counterpart/code included), its time the flow's
//! first packet's. Writes `community-id.jsonl` (`.csv`, `.log`,
//! `.parquet` with `[output] format`).
//!
//! Config `[plugin.community-id]`: `seed` (default 0), `base64` (default
//! true; false writes the SHA-1 digest in hex, the specification's other
//! form).

use super::flows::proto_name;
use super::spool::OutputConfig;
use crate::output::schema::COMMUNITY_ID;
use crate::output::{Format, RecordSpool, RowBuf};
use crate::plugin::{
    Counters, EndReason, Interest, Layers, Plugin, PluginBuilder, PluginError, PluginResult,
    downcast,
};
use crate::proto::community_id::{community_id_v1, community_id_v1_hex};
use libpcap_tools::{Config, Flow};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Configuration `[plugin.community-id]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct CommunityIdConfig {
    /// The hash seed.
    pub seed: u16,
    /// `true`: `1:` then the base64 of the SHA-1 digest (the default form);
    /// `false`: `1:` then its lowercase hex.
    pub base64: bool,
}

impl Default for CommunityIdConfig {
    fn default() -> Self {
        CommunityIdConfig {
            seed: 0,
            base64: true,
        }
    }
}

impl CommunityIdConfig {
    /// The Community ID of a flow or message in the configured form (ICMP:
    /// type and code as the ports).
    pub fn id(&self, src: IpAddr, dst: IpAddr, proto: u8, sport: u16, dport: u16) -> String {
        if self.base64 {
            community_id_v1(self.seed, src, dst, proto, sport, dport)
        } else {
            community_id_v1_hex(self.seed, src, dst, proto, sport, dport)
        }
    }
}

/// The `community-id` plugin.
#[derive(Debug)]
pub struct CommunityIdPlugin {
    cfg: CommunityIdConfig,
    spool: RecordSpool,
    format: Format,
    row: RowBuf,
    /// Flows hashed (the records, written or not).
    records: u64,
}

impl Plugin for CommunityIdPlugin {
    fn name(&self) -> &str {
        "community-id"
    }
    fn use_memory(&mut self, budget: &std::sync::Arc<crate::memory::MemoryBudget>) {
        // the records waiting in memory draw on the run's spool share
        self.spool.share_memory(budget.spool_lease());
    }
    fn interest(&self) -> Interest {
        // flows are hashed when they end: no per-packet work
        Interest::new(Layers::FLOW_EVENTS)
    }
    fn flow_destroyed(&mut self, flow: &Flow, _: EndReason) -> PluginResult<()> {
        self.records += 1;
        if !self.spool.is_writing() {
            // counted; hashed only where the record is written
            return Ok(());
        }
        let k = &flow.key;
        let cid = self.cfg.id(k.src, k.dst, k.proto, k.src_port, k.dst_port);
        self.row.clear();
        self.row
            .opt_time(flow.first_seen)
            .flow_id(flow.id.0)
            .ip(k.src)
            .u64(u64::from(k.src_port))
            .ip(k.dst)
            .u64(u64::from(k.dst_port))
            .str(proto_name(k.proto))
            .u64(u64::from(k.proto))
            .str(&cid);
        self.spool.push(flow.first_seen, flow.id.0, &self.row);
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let o = downcast::<Self>("community-id", other)?;
        self.records += o.records;
        self.spool.merge(o.spool);
        Ok(())
    }
    fn results(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "records": self.records }))
    }
    fn counters(&self) -> Counters {
        Counters::new().count("records", self.records)
    }
    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        super::spool::save_records("community-id", &mut self.spool, dir, self.format)
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
        "Community ID v1 hash of every flow, base64 or hex"
    }
    fn build(&self, config: &Config) -> PluginResult<Box<dyn Plugin>> {
        let cfg = config
            .plugin("community-id")
            .map_err(|e| PluginError::wrap("community-id", e))?;
        let out = OutputConfig::from_config(config, "community-id")?;
        Ok(Box::new(CommunityIdPlugin {
            cfg,
            spool: out.spool(&COMMUNITY_ID),
            format: out.format,
            row: RowBuf::new(&COMMUNITY_ID),
            records: 0,
        }))
    }
}
