//! `dns`: DNS messages over UDP and TCP, one JSON line per message.
//!
//! UDP datagrams from or to a DNS port are decoded whole; TCP connections
//! on a DNS port are reassembled and split on the 2-byte length prefixes.
//! Each line has the time (ns), the flow id, the addresses and ports, the
//! transport and the decoded message (transaction id, query/response,
//! opcode, rcode, flags, questions, answers, authorities, additionals).
//! Malformed messages are counted (`malformed` in the results), never fatal,
//! and reported with the other losses in the run summary
//! ([`Plugin::counters`]: `malformed`, `tcp_resync`, `tcp_over_budget`).
//!
//! Config `[plugin.dns]`: `ports` (default `[53]`), `max_tcp_buffer`
//! (bytes of an incomplete TCP message kept per direction, default 65537),
//! `max_tcp_total` (bytes kept for all TCP connections of a worker, default
//! 64 MiB; beyond, data is dropped and counted as `tcp_over_budget`).
//! Writes `dns.jsonl`.

use super::spool::{OutputConfig, Spool};
use crate::plugin::{
    Counters, Decapsulated, EndReason, Interest, Layers, PacketContext, Plugin, PluginBuilder,
    PluginError, PluginResult, StreamData, TransportLayer, downcast,
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
    /// Bytes of incomplete TCP messages kept for all connections of a
    /// worker; beyond, new data is dropped (counted as `tcp_over_budget`).
    pub max_tcp_total: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            ports: vec![53],
            max_tcp_buffer: 65_537,
            max_tcp_total: 64 << 20,
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
    /// TCP data dropped because `max_tcp_total` was reached.
    pub tcp_over_budget: u64,
}

/// The `dns` plugin.
#[derive(Debug)]
pub struct DnsPlugin {
    cfg: DnsConfig,
    tcp: HashMap<(FlowId, bool), Vec<u8>, foldhash::fast::RandomState>,
    /// Bytes held in `tcp`.
    tcp_held: usize,
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
        let held = self.tcp.get(&k).map_or(0, Vec::len);
        let data = match data {
            StreamData::Data { data, .. } => data,
            StreamData::Gap { .. } => {
                if self.tcp.remove(&k).is_some() {
                    self.tcp_held = self.tcp_held.saturating_sub(held);
                    self.counters.tcp_resync += 1;
                }
                return Ok(());
            }
        };
        if self.tcp_held.saturating_add(data.len()) > self.cfg.max_tcp_total {
            if self.tcp.remove(&k).is_some() {
                self.tcp_held = self.tcp_held.saturating_sub(held);
            }
            self.counters.tcp_over_budget += 1;
            return Ok(());
        }
        let buf = self.tcp.entry(k).or_default();
        buf.extend_from_slice(data);
        let (msgs, consumed) = parse_dns_tcp_stream(buf);
        buf.drain(..consumed.min(buf.len()));
        let now_held = buf.len();
        let overflow = now_held > self.cfg.max_tcp_buffer;
        self.tcp_held = self.tcp_held.saturating_sub(held).saturating_add(now_held);
        if overflow {
            self.tcp.remove(&k);
            self.tcp_held = self.tcp_held.saturating_sub(now_held);
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
            for side in [true, false] {
                if let Some(b) = self.tcp.remove(&(flow.id, side)) {
                    self.tcp_held = self.tcp_held.saturating_sub(b.len());
                }
            }
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
        self.counters.tcp_over_budget += c.tcp_over_budget;
        self.spool.merge(o.spool)
    }

    fn results(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self.counters).ok()
    }

    fn counters(&self) -> Counters {
        let c = &self.counters;
        Counters::new()
            .count("messages", c.messages)
            .count("queries", c.queries)
            .count("responses", c.responses)
            .loss("malformed", c.malformed)
            .loss("tcp_resync", c.tcp_resync)
            .loss("tcp_over_budget", c.tcp_over_budget)
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
            tcp_held: 0,
            counters: DnsCounters::default(),
            spool: Spool::new("dns", out.dir),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libpcap_tools::{FiveTuple, FlowContext, Packet};
    use std::net::IpAddr;

    #[test]
    fn incomplete_tcp_messages_stay_under_the_global_budget() {
        let cfg = DnsConfig {
            ports: vec![53],
            max_tcp_buffer: 1000,
            max_tcp_total: 2500,
        };
        let mut p = DnsPlugin {
            cfg,
            tcp: HashMap::default(),
            tcp_held: 0,
            counters: DnsCounters::default(),
            spool: Spool::new("dns", None),
        };
        let pkt = Packet::pseudo(None);
        let ctx = PacketContext::new(&pkt, FlowContext::default());
        let key = FiveTuple {
            src: IpAddr::from([10, 0, 0, 1]),
            dst: IpAddr::from([10, 0, 0, 2]),
            src_port: 40000,
            dst_port: 53,
            proto: ipproto::TCP,
        };
        // a length prefix of 900 and 500 bytes of it: incomplete
        let mut partial = vec![0x03, 0x84];
        partial.extend_from_slice(&[0u8; 500]);
        for i in 0..10u64 {
            let f = Flow::new(FlowId(i), key, FlowContext::default());
            p.handle_stream(
                &ctx,
                &f,
                Direction::ToServer,
                StreamData::Data {
                    offset: 0,
                    data: &partial,
                },
            )
            .unwrap();
            assert!(p.tcp_held <= 2500, "{} held", p.tcp_held);
        }
        assert_eq!(
            p.counters.tcp_over_budget, 6,
            "4 partial messages of 502 bytes fit in 2500"
        );
        for i in 0..10u64 {
            let f = Flow::new(FlowId(i), key, FlowContext::default());
            p.flow_destroyed(&f, EndReason::EndOfInput).unwrap();
        }
        assert_eq!(p.tcp_held, 0);
    }
}
