//! `community-id`: the Community ID v1 flow hash of every flow, as
//! `community_id` records ([`crate::output::schema::COMMUNITY_ID`]).
//!
//! For TCP, UDP and SCTP the hash covers the flow's 5-tuple and the record
//! is written when the flow ends (its endpoints then from the originator's
//! view, its time the flow's first packet's). For ICMP and ICMPv6 the type
//! and code of a message stand in for the ports, as the specification
//! says, so the messages of one ICMP flow may have different IDs (an echo
//! request/reply pair shares one, a destination unreachable has its own):
//! one record per distinct ID of the flow (up to 32 per flow), at the
//! first message that has it, with that message's type and code as the
//! ports. Writes `community-id.jsonl` (`.csv`, `.log`, `.parquet` with
//! `[output] format`).
//!
//! Config `[plugin.community-id]`: `seed` (default 0), `base64` (default
//! true; false writes the SHA-1 digest in hex, the specification's other
//! form).

use super::flows::proto_name;
use super::spool::OutputConfig;
use crate::output::schema::COMMUNITY_ID;
use crate::output::{Format, RecordSpool, RowBuf};
use crate::plugin::{
    Counters, Decapsulated, EndReason, Interest, Layers, PacketContext, Plugin, PluginBuilder,
    PluginError, PluginResult, TransportLayer, downcast,
};
use crate::proto::community_id::{community_id_v1, community_id_v1_hex};
use libpcap_tools::{Config, Flow, FlowId, Timestamp, ipproto};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Distinct IDs written per ICMP flow, at most.
const MAX_ICMP_IDS: usize = 32;

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
    /// The IDs written for each open ICMP flow.
    icmp: HashMap<FlowId, Vec<String>, foldhash::fast::RandomState>,
    /// ICMP IDs not written because a flow had `MAX_ICMP_IDS` already.
    icmp_ids_dropped: u64,
    spool: RecordSpool,
    format: Format,
    row: RowBuf,
}

fn is_icmp(proto: u8) -> bool {
    proto == ipproto::ICMP || proto == ipproto::ICMPV6
}

impl CommunityIdPlugin {
    /// Writes one record: `sport`/`dport` are the ports (ICMP: type, code).
    fn write(&mut self, ts: Option<Timestamp>, flow: &Flow, sport: u16, dport: u16, cid: &str) {
        let k = &flow.key;
        self.row.clear();
        self.row
            .opt_time(ts)
            .flow_id(flow.id.0)
            .ip(k.src)
            .u64(u64::from(sport))
            .ip(k.dst)
            .u64(u64::from(dport))
            .str(&proto_name(k.proto))
            .u64(u64::from(k.proto))
            .str(cid);
        // counted even without an output directory
        self.spool.push(ts, flow.id.0, &self.row);
    }
}

impl Plugin for CommunityIdPlugin {
    fn name(&self) -> &str {
        "community-id"
    }
    fn interest(&self) -> Interest {
        // transport callbacks for ICMP only (type and code stand for the
        // ports); other flows are hashed when they end, with no per-packet
        // work
        Interest::new(Layers::TRANSPORT | Layers::FLOW_EVENTS)
            .ip_protocols(&[ipproto::ICMP, ipproto::ICMPV6])
    }
    fn handle_transport(
        &mut self,
        ctx: &PacketContext<'_>,
        t: &TransportLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        if !is_icmp(t.key.proto) {
            return Ok(None);
        }
        let ty = t.data.first().copied().unwrap_or(0);
        let code = t.data.get(1).copied().unwrap_or(0);
        let cid = self.cfg.id(
            t.key.src,
            t.key.dst,
            t.key.proto,
            u16::from(ty),
            u16::from(code),
        );
        let ids = self.icmp.entry(t.flow.id).or_default();
        if ids.contains(&cid) {
            return Ok(None);
        }
        if ids.len() >= MAX_ICMP_IDS {
            self.icmp_ids_dropped += 1;
            return Ok(None);
        }
        ids.push(cid.clone());
        self.write(ctx.ts(), t.flow, u16::from(ty), u16::from(code), &cid);
        Ok(None)
    }
    fn flow_destroyed(&mut self, flow: &Flow, _: EndReason) -> PluginResult<()> {
        let k = &flow.key;
        if is_icmp(k.proto) {
            if self.icmp.remove(&flow.id).is_none() {
                // no message decoded (a truncated header): type and code of
                // the flow's first message, as the flows plugin hashes it
                let (t, c) = flow.conn.icmp_type_code.unwrap_or((0, 0));
                let cid = self
                    .cfg
                    .id(k.src, k.dst, k.proto, u16::from(t), u16::from(c));
                self.write(flow.first_seen, flow, u16::from(t), u16::from(c), &cid);
            }
            return Ok(());
        }
        let cid = self.cfg.id(k.src, k.dst, k.proto, k.src_port, k.dst_port);
        self.write(flow.first_seen, flow, k.src_port, k.dst_port, &cid);
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let o = downcast::<Self>("community-id", other)?;
        self.icmp_ids_dropped += o.icmp_ids_dropped;
        self.spool.merge(o.spool);
        Ok(())
    }
    fn results(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "records": self.spool.records() }))
    }
    fn counters(&self) -> Counters {
        Counters::new()
            .count("records", self.spool.records())
            .loss("icmp_ids_dropped", self.icmp_ids_dropped)
    }
    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        let saved = self
            .spool
            .save(dir, self.format)
            .map_err(|e| PluginError::wrap("community-id", e))?;
        Ok(saved.into_iter().collect())
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
        "Community ID v1 hash of every flow (of every ICMP message kind), base64 or hex"
    }
    fn build(&self, config: &Config) -> PluginResult<Box<dyn Plugin>> {
        let cfg = config
            .plugin("community-id")
            .map_err(|e| PluginError::wrap("community-id", e))?;
        let out = OutputConfig::from_config(config, "community-id")?;
        Ok(Box::new(CommunityIdPlugin {
            cfg,
            icmp: HashMap::default(),
            icmp_ids_dropped: 0,
            spool: out.spool(&COMMUNITY_ID),
            format: out.format,
            row: RowBuf::new(&COMMUNITY_ID),
        }))
    }
}
