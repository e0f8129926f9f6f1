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
//! Writes `dns.jsonl` (`.csv`, `.log`, `.parquet` with `[output] format`).

use super::spool::OutputConfig;
use crate::output::schema::DNS;
use crate::output::{RecordSpool, RowBuf};
use crate::plugin::{
    Counters, Decapsulated, EndReason, Interest, Layers, PacketContext, Plugin, PluginBuilder,
    PluginError, PluginResult, StreamData, TransportLayer, downcast,
};
use crate::proto::dns::{
    DnsMessage, DnsRData, class_name, opcode_name, parse_dns_message, parse_dns_tcp_stream,
    rcode_name, rr_type_mnemonic,
};
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
    spool: RecordSpool,
    format: crate::output::Format,
    row: RowBuf,
}

/// Fills `row` with the `dns` record of `msg` (see the module docs);
/// `flow_key` is the flow's key, client first.
pub fn fill_row(
    row: &mut RowBuf,
    ts: Option<Timestamp>,
    flow: FlowId,
    flow_key: &FiveTuple,
    msg: &DnsMessage,
) {
    let name = |known: Option<&'static str>, code: u64| -> std::borrow::Cow<'static, str> {
        known.map_or_else(|| code.to_string().into(), Into::into)
    };
    let q = msg.questions.first();
    let opt = msg.additionals.iter().find_map(|r| match &r.data {
        DnsRData::Opt {
            udp_payload_size,
            do_bit,
            ..
        } => Some((*udp_payload_size, *do_bit)),
        _ => None,
    });
    row.clear();
    row.opt_time(ts)
        .flow_id(flow.0)
        .ip(flow_key.src)
        .u64(u64::from(flow_key.src_port))
        .ip(flow_key.dst)
        .u64(u64::from(flow_key.dst_port))
        .str(if flow_key.proto == ipproto::TCP {
            "tcp"
        } else {
            "udp"
        })
        .u64(u64::from(msg.id))
        .bool(msg.is_response)
        .u64(u64::from(msg.opcode))
        .str(&name(opcode_name(msg.opcode), u64::from(msg.opcode)))
        .u64(u64::from(msg.rcode))
        .str(&name(rcode_name(msg.rcode), u64::from(msg.rcode)))
        .bool(msg.authoritative)
        .bool(msg.truncated)
        .bool(msg.recursion_desired)
        .bool(msg.recursion_available)
        .bool(msg.flags & 0x0020 != 0)
        .bool(msg.flags & 0x0010 != 0)
        .opt_str(q.map(|q| q.name.as_str()))
        .opt_u64(q.map(|q| u64::from(q.qclass)))
        .opt_str(
            q.map(|q| name(class_name(q.qclass), u64::from(q.qclass)))
                .as_deref(),
        )
        .opt_u64(q.map(|q| u64::from(q.qtype)))
        .opt_str(
            q.map(|q| {
                rr_type_mnemonic(q.qtype)
                    .map_or_else(|| format!("TYPE{}", q.qtype).into(), std::borrow::Cow::from)
            })
            .as_deref(),
        );
    row.u64(msg.questions.len() as u64);
    if msg.answers.is_empty() {
        row.null().null().null();
    } else {
        let data: Vec<String> = msg.answers.iter().map(|r| r.data.to_text()).collect();
        let types: Vec<std::borrow::Cow<'static, str>> = msg
            .answers
            .iter()
            .map(|r| {
                rr_type_mnemonic(r.rtype)
                    .map_or_else(|| format!("TYPE{}", r.rtype).into(), std::borrow::Cow::from)
            })
            .collect();
        row.str_list(data.iter().map(String::as_str))
            .str_list(types.iter().map(|t| t.as_ref()))
            .u64_list(msg.answers.iter().map(|r| u64::from(r.ttl)));
    }
    row.u64(msg.authorities.len() as u64)
        .u64(msg.additionals.len() as u64);
    let (size, dob) = match opt {
        Some((s, d)) => (Some(u64::from(s)), Some(d)),
        None => (None, None),
    };
    row.opt_u64(size).opt_bool(dob).bool(false);
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
            fill_row(&mut self.row, ts, flow, key, msg);
            self.spool.push(ts, flow.0, &self.row);
        }
        Ok(())
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
            Ok(msg) => self.emit(t.last_ts.or(ctx.ts()), t.flow.id, &t.flow.key, &msg)?,
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
        let key = flow.key;
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
        self.spool.merge(o.spool);
        Ok(())
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
        let saved = self
            .spool
            .save(dir, self.format)
            .map_err(|e| PluginError::wrap("dns", e))?;
        Ok(saved.into_iter().collect())
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
            spool: out.spool(&DNS),
            format: out.format,
            row: RowBuf::new(&DNS),
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
            spool: RecordSpool::new(&DNS, None),
            format: crate::output::Format::Jsonl,
            row: RowBuf::new(&DNS),
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

    /// The JSON line of the record `fill_row` makes of `msg`.
    fn json_of(msg: &[u8], proto: u8) -> serde_json::Value {
        let m = parse_dns_message(msg).unwrap();
        let key = FiveTuple {
            src: IpAddr::from([10, 0, 0, 1]),
            dst: IpAddr::from([10, 0, 0, 53]),
            src_port: 40000,
            dst_port: 53,
            proto,
        };
        let mut row = RowBuf::new(&DNS);
        fill_row(
            &mut row,
            Some(libpcap_tools::Timestamp(1_000_000_001)),
            FlowId(0xab),
            &key,
            &m,
        );
        let mut vals = Vec::new();
        crate::output::decode(&DNS, row.finish().unwrap(), &mut vals).unwrap();
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        struct W(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut w =
            crate::output::writer(crate::output::Format::Jsonl, &DNS, W(buf.clone())).unwrap();
        w.write_row(&vals).unwrap();
        w.finish().unwrap();
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        serde_json::from_str(text.trim()).unwrap()
    }

    #[test]
    fn records_name_every_code_and_keep_the_client_as_source() {
        let q = json_of(&crate::build::dns_query(7, "example.org", 28), ipproto::UDP);
        assert_eq!(q["ts"], "1970-01-01T00:00:01.000000001Z");
        assert_eq!(q["flow_id"], "00000000000000ab");
        assert_eq!(
            (q["src_ip"].as_str(), q["dst_port"].as_u64()),
            (Some("10.0.0.1"), Some(53))
        );
        assert_eq!(q["proto"], "udp");
        assert_eq!(q["trans_id"], 7);
        assert_eq!(q["qr"], false);
        assert_eq!(
            (q["opcode"].as_u64(), q["opcode_name"].as_str()),
            (Some(0), Some("QUERY"))
        );
        assert_eq!(
            (q["qtype"].as_u64(), q["qtype_name"].as_str()),
            (Some(28), Some("AAAA"))
        );
        assert_eq!(q["qclass_name"], "C_INTERNET");
        assert_eq!(q["query"], "example.org");
        assert_eq!(q["rd"], true);
        assert!(q.get("answers").is_none(), "no answers: null, left out");
        let addrs = [IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2])];
        let r = json_of(
            &crate::build::dns_response(7, "example.org", 1, 3, &addrs, 300),
            ipproto::TCP,
        );
        assert_eq!(r["qr"], true);
        assert_eq!(r["proto"], "tcp");
        assert_eq!(
            (r["rcode"].as_u64(), r["rcode_name"].as_str()),
            (Some(3), Some("NXDOMAIN"))
        );
        assert_eq!(r["answers"], serde_json::json!(["192.0.2.1", "192.0.2.2"]));
        assert_eq!(r["answer_types"], serde_json::json!(["A", "A"]));
        assert_eq!(r["ttls"], serde_json::json!([300, 300]));
        assert_eq!(
            (r["questions"].as_u64(), r["authorities"].as_u64()),
            (Some(1), Some(0))
        );
        // a type without a mnemonic keeps the RFC 3597 form; NULL has one
        let n = json_of(&crate::build::dns_query(8, "x.test", 10), ipproto::UDP);
        assert_eq!(n["qtype_name"], "NULL");
        let u = json_of(&crate::build::dns_query(9, "x.test", 65280), ipproto::UDP);
        assert_eq!(u["qtype_name"], "TYPE65280");
    }
}
