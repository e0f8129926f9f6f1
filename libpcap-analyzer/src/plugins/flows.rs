//! `flows`: one `flow` record per flow (Zeek's `conn.log`), written when
//! the flow ends.
//!
//! Each record has the flow id, the endpoints (the originator as source),
//! first and last packet times and the duration, the protocol, the
//! services recognised by content, payload, IP and wire bytes and packets
//! per side, Zeek's `conn_state` and `history` ([`libpcap_tools::conn`]),
//! the bytes missed in sequence gaps, the ids of the tunnels' flows, the
//! VLAN, the Community ID, the TCP flags seen from each side (as letters,
//! `FSRPAUEC`) and why the flow ended (`fin`, `rst`, `timeout`,
//! `eviction`, `end-of-input`). Fields and types: the `flow` kind of
//! [`crate::output::schema`]. Records come sorted by first packet time;
//! the file is `flows.jsonl` (`.csv`, `.log`, `.parquet` with `[output]
//! format`) in the output directory; without one, flows are only counted.

use super::spool::OutputConfig;
use crate::output::schema::FLOW;
use crate::output::{Format, RecordSpool, RowBuf};
use crate::plugin::{
    Counters, EndReason, Interest, Layers, Plugin, PluginBuilder, PluginResult, downcast,
};
use crate::proto::community_id::community_id_v1;
use crate::wire::TcpFlags;
use libpcap_tools::{Config, Flow, ipproto};
use std::path::{Path, PathBuf};

/// The protocol's name as the `proto` field gives it: lower case, the
/// number when it has no name.
pub fn proto_name(proto: u8) -> &'static str {
    // made once: a record per flow asks for it
    static NAMES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        (0..=u8::MAX)
            .map(|p| ipproto::name(p).map_or_else(|| p.to_string(), str::to_ascii_lowercase))
            .collect()
    });
    NAMES.get(usize::from(proto)).map_or("", String::as_str)
}

/// The Community ID v1 (seed 0, base64) of a flow. An ICMP flow's ports
/// are already the specification's (type, counterpart type or code), and
/// the type alone decides the mapping again, so the key serves as it is.
pub fn flow_community_id(f: &Flow) -> String {
    let k = &f.key;
    community_id_v1(0, k.src, k.dst, k.proto, k.src_port, k.dst_port)
}

/// Fills `row` with the `flow` record of `f`, ended for `reason`.
pub fn fill_flow_row(row: &mut RowBuf, f: &Flow, reason: EndReason) {
    let k = &f.key;
    let c = &f.conn;
    let duration = match (f.first_seen, f.last_seen) {
        (Some(a), Some(b)) => b.0.saturating_sub(a.0).max(0),
        _ => 0,
    };
    let parents: Vec<String> = f
        .tunnel_parents
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|id| format!("{:016x}", id.0))
        .collect();
    let service = c.service_text();
    row.clear();
    row.opt_time(f.first_seen)
        .flow_id(f.id.0)
        .ip(k.src)
        .u64(u64::from(k.src_port))
        .ip(k.dst)
        .u64(u64::from(k.dst_port))
        .opt_time(f.last_seen)
        .duration(duration)
        .str(proto_name(k.proto))
        .u64(u64::from(k.proto))
        .opt_str(service.as_deref())
        .u64(c.orig.payload_bytes)
        .u64(c.resp.payload_bytes)
        .str(c.conn_state(k.proto))
        .u64(c.orig.missed.saturating_add(c.resp.missed))
        .str(c.history())
        .u64(f.to_server.packets)
        .u64(c.orig.ip_bytes)
        .u64(f.to_client.packets)
        .u64(c.resp.ip_bytes)
        .u64(f.to_server.bytes)
        .u64(f.to_client.bytes);
    if parents.is_empty() {
        row.null();
    } else {
        row.str_list(parents.iter().map(String::as_str));
    }
    row.u64(u64::from(f.context.depth));
    if f.context.vlan == 0 {
        row.null();
    } else {
        row.u64(u64::from(f.context.vlan));
    }
    row.str(&flow_community_id(f))
        .str(TcpFlags(u16::from(f.tcp_flags_to_server)).letters(&mut [0; 9]))
        .str(TcpFlags(u16::from(f.tcp_flags_to_client)).letters(&mut [0; 9]))
        .str(reason.as_str());
}

/// The `flows` plugin.
#[derive(Debug)]
pub struct FlowsPlugin {
    spool: RecordSpool,
    format: Format,
    row: RowBuf,
    flows: u64,
}

impl Plugin for FlowsPlugin {
    fn name(&self) -> &str {
        "flows"
    }
    fn interest(&self) -> Interest {
        Interest::new(Layers::FLOW_EVENTS)
    }
    fn use_memory(&mut self, budget: &std::sync::Arc<crate::memory::MemoryBudget>) {
        self.spool.share_memory(budget.spool_lease());
    }
    fn flow_destroyed(&mut self, flow: &Flow, reason: EndReason) -> PluginResult<()> {
        self.flows += 1;
        if self.spool.is_writing() {
            fill_flow_row(&mut self.row, flow, reason);
            self.spool.push(flow.first_seen, flow.id.0, &self.row);
        }
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let o = downcast::<Self>("flows", other)?;
        self.flows += o.flows;
        self.spool.merge(o.spool);
        Ok(())
    }
    fn results(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "flows": self.flows }))
    }
    fn counters(&self) -> Counters {
        Counters::new().count("flows", self.flows)
    }
    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        super::spool::save_records("flows", &mut self.spool, dir, self.format)
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
        "every flow as a Zeek-grade connection record: endpoints, times, duration, service, payload/IP/wire bytes and packets per side, conn_state, history, missed bytes, tunnel parents, Community ID, end reason"
    }
    fn build(&self, config: &Config) -> PluginResult<Box<dyn Plugin>> {
        let out = OutputConfig::from_config(config, "flows")?;
        Ok(Box::new(FlowsPlugin {
            spool: out.spool(&FLOW),
            format: out.format,
            row: RowBuf::new(&FLOW),
            flows: 0,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::{TcpFlags, proto_name};

    /// Each flag's letter (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR: the
    /// header's bits from the lowest), in that order, for all 256 values.
    #[test]
    fn tcp_flags_are_their_letters_in_bit_order() {
        let letters = ['F', 'S', 'R', 'P', 'A', 'U', 'E', 'C'];
        for f in 0..=255u8 {
            let want: String = (0..8)
                .filter(|b| f >> b & 1 == 1)
                .map(|b| letters[b])
                .collect();
            let flags = TcpFlags(u16::from(f));
            assert_eq!(flags.letters(&mut [0; 9]), want, "{f:#04x}");
            assert_eq!(flags.to_string(), want, "{f:#04x}");
        }
        assert_eq!(TcpFlags(0x12).letters(&mut [0; 9]), "SA");
    }

    #[test]
    fn protocol_names_are_lower_case_or_the_number() {
        // IANA protocol numbers: 6 TCP, 58 IPv6-ICMP, 132 SCTP; 253 is
        // reserved for experiments (RFC 3692) and has no name here
        assert_eq!(proto_name(6), "tcp");
        assert_eq!(proto_name(58), "icmpv6");
        assert_eq!(proto_name(132), "sctp");
        assert_eq!(proto_name(253), "253");
        assert_eq!(proto_name(0), "0");
    }
}
