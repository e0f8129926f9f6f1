//! `dns`: DNS messages over UDP and TCP, one JSON line per message.
//!
//! UDP datagrams from or to a DNS port are decoded whole; TCP connections
//! on a DNS port are reassembled and split on the 2-byte length prefixes.
//! Each line has the time (ns), the flow id, the addresses and ports, the
//! transport and the decoded message (transaction id, query/response,
//! opcode, rcode, flags, questions, answers, authorities, additionals).
//! Malformed messages are counted (`malformed` in the results), never fatal.
//!
//! Config `[plugin.dns]`: `ports` (default `[53]`), `max_tcp_buffer`
//! (bytes of an incomplete TCP message kept per direction, default 65537).
//! Writes `dns.jsonl`.

use super::spool::{OutputConfig, Spool};
use crate::plugin::{
    Decapsulated, EndReason, Interest, Layers, PacketContext, Plugin, PluginBuilder, PluginError,
    PluginResult, StreamData, TransportLayer, downcast,
};
use crate::proto::dns::{DnsMessage, parse_dns_message, parse_dns_tcp_stream};
use libpcap_tools::{Config, Direction, FiveTuple, Flow, FlowId, Timestamp, ipproto};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Configuration `[plugin.dns]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct DnsConfig {
    /// Ports carrying DNS (either side of the connection).
    pub ports: Vec<u16>,
    /// Bytes of an incomplete TCP message kept per direction.
    pub max_tcp_buffer: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            ports: vec![53],
            max_tcp_buffer: 65_537,
        }
    }
}

/// Counters of the `dns` plugin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DnsCounters {
    /// Messages decoded.
    pub messages: u64,
    /// Queries among them.
    pub queries: u64,
    /// Responses among them.
    pub responses: u64,
    /// Messages that failed to decode.
    pub malformed: u64,
    /// TCP buffers dropped (gap in the stream, or over `max_tcp_buffer`).
    pub tcp_resync: u64,
}

/// The `dns` plugin.
#[derive(Debug)]
pub struct DnsPlugin {
    cfg: DnsConfig,
    tcp: HashMap<(FlowId, bool), Vec<u8>, foldhash::fast::RandomState>,
    counters: DnsCounters,
    spool: Spool,
}

/// The JSON line of one message.
pub fn dns_json(
    ts: Option<Timestamp>,
    flow: FlowId,
    key: &FiveTuple,
    msg: &DnsMessage,
) -> serde_json::Value {
    let mut v = serde_json::to_value(msg).unwrap_or(serde_json::Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("ts_ns".into(), ts.map(|t| t.as_nanos()).into());
        o.insert("flow".into(), flow.to_string().into());
        o.insert(
            "transport".into(),
            if key.proto == ipproto::TCP {
                "tcp"
            } else {
                "udp"
            }
            .into(),
        );
        o.insert("src_ip".into(), key.src.to_string().into());
        o.insert("src_port".into(), key.src_port.into());
        o.insert("dst_ip".into(), key.dst.to_string().into());
        o.insert("dst_port".into(), key.dst_port.into());
    }
    v
}

impl DnsPlugin {
    fn on_port(&self, k: &FiveTuple) -> bool {
        self.cfg.ports.contains(&k.src_port) || self.cfg.ports.contains(&k.dst_port)
    }

    fn emit(
        &mut self,
        ts: Option<Timestamp>,
        flow: FlowId,
        key: &FiveTuple,
        msg: &DnsMessage,
    ) -> PluginResult<()> {
        self.counters.messages += 1;
        if msg.is_response {
            self.counters.responses += 1;
        } else {
            self.counters.queries += 1;
        }
        if self.spool.is_writing() {
            self.spool.push(&dns_json(ts, flow, key, msg))
        } else {
            Ok(())
        }
    }
}

impl Plugin for DnsPlugin {
    fn name(&self) -> &str {
        "dns"
    }

    fn interest(&self) -> Interest {
        Interest::new(Layers::TRANSPORT | Layers::STREAM | Layers::FLOW_EVENTS)
            .ip_protocols(&[ipproto::UDP, ipproto::TCP])
            .ports(&self.cfg.ports)
    }

    fn handle_transport(
        &mut self,
        ctx: &PacketContext<'_>,
        t: &TransportLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        // An empty payload is no DNS message: an empty datagram, or one the
        // defragmenter could not rebuild (transport plugins then get the
        // first fragment's ports and no payload). Neither is "malformed".
        if t.key.proto != ipproto::UDP || t.payload.is_empty() || !self.on_port(&t.key) {
            return Ok(None);
        }
        match parse_dns_message(t.payload) {
            Ok(msg) => self.emit(t.last_ts.or(ctx.ts()), t.flow.id, &t.key, &msg)?,
            Err(_) => self.counters.malformed += 1,
        }
        Ok(None)
    }

    fn handle_stream(
        &mut self,
        ctx: &PacketContext<'_>,
        flow: &Flow,
        dir: Direction,
        data: StreamData<'_>,
    ) -> PluginResult<()> {
        if !self.on_port(&flow.key) {
            return Ok(());
        }
        let k = (flow.id, dir == Direction::ToServer);
        let key = if dir == Direction::ToServer {
            flow.key
        } else {
            flow.key.reversed()
        };
        let data = match data {
            StreamData::Data { data, .. } => data,
            StreamData::Gap { .. } => {
                if self.tcp.remove(&k).is_some() {
                    self.counters.tcp_resync += 1;
                }
                return Ok(());
            }
        };
        let buf = self.tcp.entry(k).or_default();
        buf.extend_from_slice(data);
        let (msgs, consumed) = parse_dns_tcp_stream(buf);
        buf.drain(..consumed.min(buf.len()));
        let overflow = buf.len() > self.cfg.max_tcp_buffer;
        if overflow {
            self.tcp.remove(&k);
            self.counters.tcp_resync += 1;
        }
        for m in msgs {
            match m {
                Ok(msg) => self.emit(ctx.ts(), flow.id, &key, &msg)?,
                Err(_) => self.counters.malformed += 1,
            }
        }
        Ok(())
    }

    fn flow_destroyed(&mut self, flow: &Flow, _: EndReason) -> PluginResult<()> {
        if flow.key.proto == ipproto::TCP {
            self.tcp.remove(&(flow.id, true));
            self.tcp.remove(&(flow.id, false));
        }
        Ok(())
    }

    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let o = downcast::<Self>("dns", other)?;
        let c = o.counters;
        self.counters.messages += c.messages;
        self.counters.queries += c.queries;
        self.counters.responses += c.responses;
        self.counters.malformed += c.malformed;
        self.counters.tcp_resync += c.tcp_resync;
        self.spool.merge(o.spool)
    }

    fn results(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self.counters).ok()
    }

    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        self.spool.save(dir, "dns.jsonl")
    }
}

/// Builder of [`DnsPlugin`].
#[derive(Debug)]
pub struct DnsPluginBuilder;

impl PluginBuilder for DnsPluginBuilder {
    fn name(&self) -> &str {
        "dns"
    }
    fn description(&self) -> &str {
        "DNS messages over UDP and TCP as JSON lines (questions, answers, rcode)"
    }
    fn build(&self, config: &Config) -> PluginResult<Box<dyn Plugin>> {
        let cfg = config
            .plugin("dns")
            .map_err(|e| PluginError::wrap("dns", e))?;
        let out = OutputConfig::from_config(config, "dns")?;
        Ok(Box::new(DnsPlugin {
            cfg,
            tcp: HashMap::default(),
            counters: DnsCounters::default(),
            spool: Spool::new("dns", out.dir),
        }))
    }
}
