//! `dns`: DNS over UDP and TCP, one record per transaction (Zeek's model).
//!
//! UDP datagrams from or to a DNS port are decoded whole; TCP connections
//! on a DNS port are reassembled and split on the 2-byte length prefixes.
//! A query waits (in its flow, by transaction id) for its response; the two
//! make one `dns` record with the response time (`rtt`). A query still
//! unanswered when its flow ends, or beyond `max_pending` waiting queries,
//! is written alone; a response without its query (an mDNS announcement, a
//! query before the capture) too.
//!
//! A record ([`crate::output::schema::DNS`]) has the query's time, the flow
//! id and the flow's endpoints (the client as source), the transport, the
//! transaction id, the first question (name, class, type, with names), the
//! opcode, the response's rcode and flags, its answers as text with their
//! types and TTLs, its section counts, and EDNS. Malformed messages are
//! counted (`malformed`), never fatal, and reported with the other losses
//! in the run summary ([`Plugin::counters`]: `malformed`, `tcp_resync`,
//! `tcp_over_budget`).
//!
//! Config `[plugin.dns]`: `ports` (default `[53, 5353, 5355]`: DNS, mDNS, LLMNR), `max_tcp_buffer`
//! (bytes of an incomplete TCP message kept per direction, default 65537),
//! `max_tcp_total` (bytes kept for all TCP connections of a worker, default
//! 64 MiB; beyond, data is dropped and counted as `tcp_over_budget`),
//! `max_pending` (queries waiting for their response in a worker, default
//! 50000; beyond, a query is written unanswered at once).
//! Writes `dns.jsonl` (`.csv`, `.log`, `.parquet` with `[output] format`).

use super::spool::OutputConfig;
use crate::memory::{Lease, MemoryBudget, Share};
use crate::output::schema::DNS;
use crate::output::{RecordSpool, RowBuf};
use crate::plugin::{
    Counters, Decapsulated, EndReason, Interest, Layers, PacketContext, Plugin, PluginBuilder,
    PluginError, PluginResult, StreamData, TransportLayer, downcast,
};
use crate::proto::dns::{
    DnsMessage, DnsQuestion, DnsRData, class_name, opcode_name, parse_dns_message_into,
    parse_dns_tcp_stream, rcode_name, rr_type_mnemonic,
};
use libpcap_tools::{Config, Direction, FiveTuple, Flow, FlowId, Timestamp, ipproto};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Estimated bytes of a query waiting for its response: the message, its
/// names and records on the heap, and its place in the table.
pub const PENDING_BYTES: u64 = std::mem::size_of::<Message>() as u64 + 256;

/// The multicast DNS port (RFC 6762).
const MDNS_PORT: u16 = 5353;

/// Configuration `[plugin.dns]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct DnsConfig {
    /// Ports carrying DNS (either side of the connection).
    pub ports: Vec<u16>,
    /// Bytes of an incomplete TCP message kept per direction.
    pub max_tcp_buffer: usize,
    /// Bytes of incomplete TCP messages kept for all connections of the
    /// run (all workers; also bounded by a quarter of the `[memory] dns`
    /// share); beyond, new data is dropped (counted as `tcp_over_budget`).
    pub max_tcp_total: usize,
    /// Queries waiting for their response in the whole run (all workers;
    /// also bounded by three quarters of the `[memory] dns` share, at
    /// [`PENDING_BYTES`] a query); beyond, a new query is written
    /// unanswered at once (counted as `unpaired`).
    pub max_pending: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            // DNS, multicast DNS (RFC 6762) and LLMNR (RFC 4795)
            ports: vec![53, 5353, 5355],
            max_tcp_buffer: 65_537,
            max_tcp_total: 64 << 20,
            max_pending: 50_000,
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
    /// Messages decoded in part: a record section was damaged, the
    /// sections before it are kept and the record says `partial`.
    pub partial: u64,
    /// TCP buffers dropped (gap in the stream, or over `max_tcp_buffer`).
    pub tcp_resync: u64,
    /// TCP data dropped because `max_tcp_total` was reached.
    pub tcp_over_budget: u64,
    /// Records written: transactions, lone queries, lone responses.
    pub records: u64,
    /// Queries written without a response (none came while the flow lasted).
    pub unanswered: u64,
    /// Responses written without their query.
    pub unsolicited: u64,
    /// Queries written at once because `max_pending` queries were waiting.
    pub unpaired: u64,
}

/// The `dns` plugin.
#[derive(Debug)]
pub struct DnsPlugin {
    cfg: DnsConfig,
    tcp: HashMap<(FlowId, bool), Vec<u8>, foldhash::fast::RandomState>,
    /// Bytes held in `tcp`.
    tcp_held: usize,
    counters: DnsCounters,
    /// Queries waiting for their response, by flow.
    pending: HashMap<FlowId, Waiting, foldhash::fast::RandomState>,
    /// Queries in `pending`.
    waiting: usize,
    /// This worker's part of the run's waiting queries.
    pending_lease: Lease,
    /// This worker's part of the run's TCP bytes.
    tcp_lease: Lease,
    spool: RecordSpool,
    format: crate::output::Format,
    row: RowBuf,
    /// The message of the datagram at hand (its section vectors reused;
    /// taken out while in use, boxed so that taking it moves a pointer).
    scratch: Option<Box<Message>>,
}

/// The queries of one flow waiting for their response, in arrival order:
/// one kept inline (almost always: no allocation per query), more in a list.
#[derive(Debug)]
enum Waiting {
    One(Query),
    Many(Vec<Query>),
}

impl Waiting {
    fn push(&mut self, q: Query) {
        match self {
            Waiting::Many(list) => list.push(q),
            Waiting::One(_) => {
                let first = std::mem::replace(self, Waiting::Many(Vec::with_capacity(2)));
                if let (Waiting::One(first), Waiting::Many(list)) = (first, self) {
                    list.push(first);
                    list.push(q);
                }
            }
        }
    }

    fn as_slice(&self) -> &[Query] {
        match self {
            Waiting::One(q) => std::slice::from_ref(q),
            Waiting::Many(list) => list,
        }
    }
}

/// A decoded message and its time.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// Time of the packet (of the last segment, over TCP).
    pub ts: Option<Timestamp>,
    /// The message.
    pub msg: DnsMessage,
}

/// What a record takes from the message that opens it (its query, or a
/// response alone) and what pairing needs, with the first question `Q`:
/// borrowed from a [`Message`] (`Head<&DnsQuestion>`), or owned by a
/// waiting query ([`Query`]), which keeps nothing else of its message.
#[derive(Debug, Clone, Copy)]
struct Head<Q> {
    ts: Option<Timestamp>,
    id: u16,
    /// The first question.
    question: Option<Q>,
    opcode: u8,
    flags: u16,
    /// EDNS payload size and DO bit (see [`edns`]).
    edns: Option<(u16, bool)>,
    /// The message was decoded in part.
    damaged: bool,
}

/// A query waiting for its response: all it keeps of its message.
type Query = Head<DnsQuestion>;

impl<'a> Head<&'a DnsQuestion> {
    fn of(m: &'a Message) -> Self {
        let msg = &m.msg;
        Head {
            ts: m.ts,
            id: msg.id,
            question: msg.questions.first(),
            opcode: msg.opcode,
            flags: msg.flags,
            edns: edns(msg),
            damaged: msg.damaged.is_some(),
        }
    }
}

impl<Q> Head<Q> {
    /// The same head with `question` instead.
    fn with_question<R>(&self, question: Option<R>) -> Head<R> {
        Head {
            ts: self.ts,
            id: self.id,
            question,
            opcode: self.opcode,
            flags: self.flags,
            edns: self.edns,
            damaged: self.damaged,
        }
    }
}

impl Query {
    /// What a waiting query keeps of its message.
    fn new(m: &Message) -> Query {
        let head = Head::of(m);
        head.with_question(head.question.cloned())
    }

    fn head(&self) -> Head<&DnsQuestion> {
        self.with_question(self.question.as_ref())
    }
}

/// Names of the header flags that are set (aa, tc, rd, ra, ad, cd).
fn flag_names(flags: u16) -> impl Iterator<Item = &'static str> {
    [
        (0x0400, "aa"),
        (0x0200, "tc"),
        (0x0100, "rd"),
        (0x0080, "ra"),
        (0x0020, "ad"),
        (0x0010, "cd"),
    ]
    .into_iter()
    .filter(move |(bit, _)| flags & bit != 0)
    .map(|(_, n)| n)
}

/// The EDNS payload size and DO bit of a message's OPT record.
fn edns(msg: &DnsMessage) -> Option<(u16, bool)> {
    msg.additionals.iter().find_map(|r| match &r.data {
        DnsRData::Opt {
            udp_payload_size,
            do_bit,
            ..
        } => Some((*udp_payload_size, *do_bit)),
        _ => None,
    })
}

/// Fills `row` with the `dns` record of a transaction: a query, its
/// response, or both (at least one); `flow_key` is the flow's key, client
/// first.
pub fn fill_row(
    row: &mut RowBuf,
    flow: FlowId,
    flow_key: &FiveTuple,
    query: Option<&Message>,
    response: Option<&Message>,
) {
    fill_row_head(row, flow, flow_key, query.map(Head::of), response);
}

/// [`fill_row`] with the query as a [`Head`].
fn fill_row_head(
    row: &mut RowBuf,
    flow: FlowId,
    flow_key: &FiveTuple,
    query: Option<Head<&DnsQuestion>>,
    response: Option<&Message>,
) {
    let name = |known: Option<&'static str>, code: u64| -> std::borrow::Cow<'static, str> {
        known.map_or_else(|| code.to_string().into(), Into::into)
    };
    let Some(head) = query.or_else(|| response.map(Head::of)) else {
        return;
    };
    let q = head.question;
    let rtt = match (query.and_then(|m| m.ts), response.and_then(|m| m.ts)) {
        (Some(a), Some(b)) => Some(b.nanos_since(a)),
        _ => None,
    };
    // the head's (the query's, or the lone response's, read once by
    // Head::of), else the response's when a query without EDNS heads it
    let edns = head
        .edns
        .or_else(|| query.and(response).and_then(|m| edns(&m.msg)));
    row.clear();
    row.opt_time(head.ts)
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
        .u64(u64::from(head.id));
    match rtt {
        Some(ns) => row.duration(ns),
        None => row.null(),
    };
    row.opt_str(q.map(|q| q.name.as_str()))
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
        )
        .u64(u64::from(head.opcode))
        .str(&name(opcode_name(head.opcode), u64::from(head.opcode)));
    let r = response.map(|m| &m.msg);
    row.opt_u64(r.map(|r| u64::from(r.rcode)))
        .opt_str(
            r.map(|r| name(rcode_name(r.rcode), u64::from(r.rcode)))
                .as_deref(),
        )
        .str_list(flag_names(r.map_or(head.flags, |r| r.flags)));
    match r.filter(|r| !r.answers.is_empty()) {
        Some(r) => {
            row.str_list_with(&r.answers, |a, out| a.data.write_text(out))
                .str_list_with(&r.answers, |a, out| match rr_type_mnemonic(a.rtype) {
                    Some(m) => out.push_str(m),
                    None => {
                        use std::fmt::Write as _;
                        let _ = write!(out, "TYPE{}", a.rtype);
                    }
                })
                .u64_list(r.answers.iter().map(|a| u64::from(a.ttl)));
        }
        None => {
            row.null().null().null();
        }
    }
    row.opt_u64(r.map(|r| r.authorities.len() as u64))
        .opt_u64(r.map(|r| r.additionals.len() as u64))
        .opt_u64(edns.map(|(s, _)| u64::from(s)))
        .opt_bool(edns.map(|(_, d)| d));
    let partial =
        query.is_some_and(|m| m.damaged) || response.is_some_and(|m| m.msg.damaged.is_some());
    if partial {
        row.bool(true);
    } else {
        row.null();
    }
}

impl DnsPlugin {
    fn on_port(&self, k: &FiveTuple) -> bool {
        self.cfg.ports.contains(&k.src_port) || self.cfg.ports.contains(&k.dst_port)
    }

    /// Writes one record (a transaction, a lone query or response).
    fn write(
        &mut self,
        flow: FlowId,
        key: &FiveTuple,
        query: Option<Head<&DnsQuestion>>,
        response: Option<&Message>,
    ) {
        self.counters.records += 1;
        if query.is_some() && response.is_none() {
            self.counters.unanswered += 1;
        }
        if query.is_none() {
            self.counters.unsolicited += 1;
        }
        if self.spool.is_writing() {
            fill_row_head(&mut self.row, flow, key, query, response);
            let ts = match query {
                Some(q) => q.ts,
                None => response.and_then(|m| m.ts),
            };
            self.spool.push(ts, flow.0, &self.row);
        }
    }

    /// A decoded message of flow `flow` (key client first): a query waits
    /// for its response, a response completes its query's record.
    fn emit(&mut self, flow: FlowId, key: &FiveTuple, m: &Message) {
        self.counters.messages += 1;
        if m.msg.damaged.is_some() {
            self.counters.partial += 1;
        }
        if !m.msg.is_response {
            self.counters.queries += 1;
            let q = Query::new(m);
            if self.waiting >= self.cfg.max_pending
                || !self.pending_lease.cover(self.waiting as u64 + 1)
            {
                self.counters.unpaired += 1;
                self.write(flow, key, Some(q.head()), None);
                return;
            }
            match self.pending.entry(flow) {
                Entry::Occupied(mut o) => o.get_mut().push(q),
                Entry::Vacant(v) => {
                    v.insert(Waiting::One(q));
                }
            }
            self.waiting += 1;
            return;
        }
        self.counters.responses += 1;
        // a multicast DNS response carries no question and id 0 (RFC 6762
        // §6, §18.1): nothing ties it to a query, so it stays alone; a
        // unicast DNS response without its question (some servers' errors)
        // pairs by id
        let mdns = key.src_port == MDNS_PORT || key.dst_port == MDNS_PORT;
        let same = |q: &Query| {
            q.id == m.msg.id
                && match (q.question.as_ref(), m.msg.questions.first()) {
                    (Some(a), Some(b)) => {
                        a.qtype == b.qtype && a.name.eq_ignore_ascii_case(&b.name)
                    }
                    (Some(_), None) => !mdns,
                    _ => true,
                }
        };
        // the first waiting query it answers, taken out (the flow's entry
        // too when it was the last)
        let found = match self.pending.entry(flow) {
            Entry::Occupied(mut o) => match o.get_mut() {
                Waiting::One(q) if same(q) => match o.remove() {
                    Waiting::One(q) => Some(q),
                    Waiting::Many(_) => None,
                },
                Waiting::One(_) => None,
                Waiting::Many(list) => {
                    let found = list.iter().position(&same).map(|i| list.remove(i));
                    if list.is_empty() {
                        o.remove();
                    }
                    found
                }
            },
            Entry::Vacant(_) => None,
        };
        match found {
            Some(q) => {
                self.waiting = self.waiting.saturating_sub(1);
                self.pending_lease.cover(self.waiting as u64);
                self.write(flow, key, Some(q.head()), Some(m));
            }
            None => self.write(flow, key, None, Some(m)),
        }
    }
}

impl Plugin for DnsPlugin {
    fn name(&self) -> &str {
        "dns"
    }

    fn use_memory(&mut self, budget: &Arc<MemoryBudget>) {
        let share = budget.share(Share::Dns);
        let pending = (share / 4 * 3 / PENDING_BYTES).min(self.cfg.max_pending as u64);
        self.pending_lease = budget.lease(&budget.pool("dns.pending", pending.max(1)));
        let tcp = (share / 4).min(self.cfg.max_tcp_total as u64);
        self.tcp_lease = budget.lease(&budget.pool("dns.tcp", tcp));
        self.spool.share_memory(budget.spool_lease());
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
        // decoded into the plugin's message, whose sections keep their
        // room from one datagram to the next
        let mut m = self.scratch.take().unwrap_or_default();
        match parse_dns_message_into(t.payload, &mut m.msg) {
            Ok(()) => {
                m.ts = t.last_ts.or(ctx.ts());
                self.emit(t.flow.id, &t.flow.key, &m);
            }
            Err(_) => self.counters.malformed += 1,
        }
        self.scratch = Some(m);
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
        let total = self.tcp_held.saturating_add(data.len());
        if total > self.cfg.max_tcp_total || !self.tcp_lease.cover(total as u64) {
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
                Ok(msg) => self.emit(flow.id, &key, &Message { ts: ctx.ts(), msg }),
                Err(_) => self.counters.malformed += 1,
            }
        }
        Ok(())
    }

    fn flow_destroyed(&mut self, flow: &Flow, _: EndReason) -> PluginResult<()> {
        if let Some(queries) = self.pending.remove(&flow.id) {
            let queries = queries.as_slice();
            self.waiting = self.waiting.saturating_sub(queries.len());
            self.pending_lease.cover(self.waiting as u64);
            for q in queries {
                self.write(flow.id, &flow.key, Some(q.head()), None);
            }
        }
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
        self.counters.partial += c.partial;
        self.counters.tcp_resync += c.tcp_resync;
        self.counters.tcp_over_budget += c.tcp_over_budget;
        self.counters.records += c.records;
        self.counters.unanswered += c.unanswered;
        self.counters.unsolicited += c.unsolicited;
        self.counters.unpaired += c.unpaired;
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
            .count("records", c.records)
            .count("unanswered", c.unanswered)
            .count("unsolicited", c.unsolicited)
            .count("unpaired", c.unpaired)
            .loss("malformed", c.malformed)
            .loss("partial", c.partial)
            .loss("tcp_resync", c.tcp_resync)
            .loss("tcp_over_budget", c.tcp_over_budget)
    }

    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        super::spool::save_records("dns", &mut self.spool, dir, self.format)
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
            pending: HashMap::default(),
            waiting: 0,
            pending_lease: Lease::unlimited(),
            tcp_lease: Lease::unlimited(),
            spool: out.spool(&DNS),
            format: out.format,
            row: RowBuf::new(&DNS),
            scratch: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::dns::parse_dns_message;
    use libpcap_tools::{FiveTuple, FlowContext, Packet};
    use std::net::IpAddr;

    /// The key of a client 10.0.0.1:40000 asking server 10.0.0.`server` on
    /// port 53 over `proto`.
    fn client_key(server: u8, proto: u8) -> FiveTuple {
        FiveTuple {
            src: IpAddr::from([10, 0, 0, 1]),
            dst: IpAddr::from([10, 0, 0, server]),
            src_port: 40000,
            dst_port: 53,
            proto,
        }
    }

    #[test]
    fn incomplete_tcp_messages_stay_under_the_global_budget() {
        let cfg = DnsConfig {
            ports: vec![53],
            max_tcp_buffer: 1000,
            max_tcp_total: 2500,
            ..DnsConfig::default()
        };
        let mut p = DnsPlugin {
            cfg,
            tcp: HashMap::default(),
            tcp_held: 0,
            counters: DnsCounters::default(),
            pending: HashMap::default(),
            waiting: 0,
            pending_lease: Lease::unlimited(),
            tcp_lease: Lease::unlimited(),
            spool: RecordSpool::new(&DNS, None),
            format: crate::output::Format::Jsonl,
            row: RowBuf::new(&DNS),
            scratch: None,
        };
        let pkt = Packet::pseudo(None);
        let ctx = PacketContext::new(&pkt, FlowContext::default());
        let key = client_key(2, ipproto::TCP);
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

    /// The JSON line of the record `fill_row` makes of a query and/or a
    /// response (times 1 s and 1.5 s).
    fn json_of(query: Option<&[u8]>, response: Option<&[u8]>, proto: u8) -> serde_json::Value {
        let msg = |b: &[u8], ts: i64| Message {
            ts: Some(libpcap_tools::Timestamp(ts)),
            msg: parse_dns_message(b).unwrap(),
        };
        let q = query.map(|b| msg(b, 1_000_000_001));
        let r = response.map(|b| msg(b, 1_500_000_001));
        let key = client_key(53, proto);
        let mut row = RowBuf::new(&DNS);
        fill_row(&mut row, FlowId(0xab), &key, q.as_ref(), r.as_ref());
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
    fn a_transaction_names_every_code_and_keeps_the_client_as_source() {
        let query = crate::build::dns_query(7, "example.org", 1);
        let addrs = [IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2])];
        let response = crate::build::dns_response(7, "example.org", 1, 3, &addrs, 300);
        let t = json_of(Some(&query), Some(&response), ipproto::UDP);
        assert_eq!(
            t["ts"], "1970-01-01T00:00:01.000000001Z",
            "the query's time"
        );
        assert_eq!(t["rtt"], 0.5);
        assert_eq!(t["flow_id"], "00000000000000ab");
        assert_eq!(
            (t["src_ip"].as_str(), t["dst_port"].as_u64()),
            (Some("10.0.0.1"), Some(53))
        );
        assert_eq!(t["proto"], "udp");
        assert_eq!(t["trans_id"], 7);
        assert_eq!(
            (t["opcode"].as_u64(), t["opcode_name"].as_str()),
            (Some(0), Some("QUERY"))
        );
        assert_eq!(
            (t["qtype"].as_u64(), t["qtype_name"].as_str()),
            (Some(1), Some("A"))
        );
        assert_eq!(t["qclass_name"], "C_INTERNET");
        assert_eq!(t["query"], "example.org");
        assert_eq!(
            (t["rcode"].as_u64(), t["rcode_name"].as_str()),
            (Some(3), Some("NXDOMAIN"))
        );
        assert_eq!(
            t["flags"],
            serde_json::json!(["rd", "ra"]),
            "the response's"
        );
        assert_eq!(t["answers"], serde_json::json!(["192.0.2.1", "192.0.2.2"]));
        assert_eq!(t["answer_types"], serde_json::json!(["A", "A"]));
        assert_eq!(t["ttls"], serde_json::json!([300, 300]));
        assert_eq!(
            (t["authorities"].as_u64(), t["additionals"].as_u64()),
            (Some(0), Some(0))
        );
        assert!(t.get("partial").is_none());
        // a query alone: no rcode, no rtt, no answers, its own flags
        let q = json_of(
            Some(&crate::build::dns_query(8, "x.test", 28)),
            None,
            ipproto::TCP,
        );
        assert_eq!(q["proto"], "tcp");
        for k in ["rtt", "rcode", "rcode_name", "answers", "authorities"] {
            assert!(q.get(k).is_none(), "{k}: {q}");
        }
        assert_eq!(q["flags"], serde_json::json!(["rd"]));
        assert_eq!(q["qtype_name"], "AAAA");
        // a response alone: its time, its question
        let r = json_of(None, Some(&response), ipproto::UDP);
        assert_eq!(r["ts"], "1970-01-01T00:00:01.500000001Z");
        assert!(r.get("rtt").is_none());
        assert_eq!(r["query"], "example.org");
        // a type without a mnemonic keeps the RFC 3597 form; NULL has one
        let n = json_of(
            Some(&crate::build::dns_query(8, "x.test", 10)),
            None,
            ipproto::UDP,
        );
        assert_eq!(n["qtype_name"], "NULL");
        let u = json_of(
            Some(&crate::build::dns_query(9, "x.test", 65280)),
            None,
            ipproto::UDP,
        );
        assert_eq!(u["qtype_name"], "TYPE65280");
    }

    #[test]
    fn a_waiting_query_makes_the_record_its_whole_message_makes() {
        // a query with EDNS (payload 1232, DO) and one announced record
        // missing (partial); another without either; a long name (on the heap)
        let mut edns = crate::build::dns_query(7, "example.org", 28);
        edns[11] = 2; // ARCOUNT: the OPT record and one that is not there
        edns.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]);
        let long = "a-name-longer-than-twenty-four-bytes.example.org";
        let queries = [
            edns,
            crate::build::dns_query(8, "example.org", 1),
            crate::build::dns_query(9, long, 16),
        ];
        let key = client_key(53, ipproto::UDP);
        let response = Message {
            ts: Some(libpcap_tools::Timestamp(2_000)),
            msg: parse_dns_message(&crate::build::dns_response(7, "x", 1, 0, &[], 1)).unwrap(),
        };
        let mut partial = 0;
        for (i, b) in queries.iter().enumerate() {
            let q = Message {
                ts: Some(libpcap_tools::Timestamp(1_000 + i as i64)),
                msg: parse_dns_message(b).unwrap(),
            };
            partial += usize::from(q.msg.damaged.is_some());
            let kept = Query::new(&q);
            for r in [None, Some(&response)] {
                let mut whole = RowBuf::new(&DNS);
                fill_row(&mut whole, FlowId(3), &key, Some(&q), r);
                let mut row = RowBuf::new(&DNS);
                fill_row_head(&mut row, FlowId(3), &key, Some(kept.head()), r);
                assert_eq!(row.finish().unwrap(), whole.finish().unwrap(), "query {i}");
            }
        }
        assert_eq!(partial, 1);
        let mut row = RowBuf::new(&DNS);
        let q = Message {
            ts: None,
            msg: parse_dns_message(&queries[0]).unwrap(),
        };
        fill_row_head(&mut row, FlowId(3), &key, Some(Query::new(&q).head()), None);
        let mut vals = Vec::new();
        crate::output::decode(&DNS, row.finish().unwrap(), &mut vals).unwrap();
        let text = format!("{vals:?}");
        assert!(text.contains("1232"), "the query's EDNS: {text}");
    }

    /// The EDNS fields of a record: the query's when it has an OPT record,
    /// else the response's.
    #[test]
    fn the_edns_of_a_record_is_the_querys_else_the_responses() {
        // an OPT record: root owner, type 41, payload size, DO bit
        let with_opt = |mut m: Vec<u8>, size: u16, dnssec_ok: bool| {
            m[11] = 1; // ARCOUNT
            m.extend_from_slice(&[0, 0, 41]);
            m.extend_from_slice(&size.to_be_bytes());
            m.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
            m
        };
        let msg = |b: Vec<u8>, ts: i64| Message {
            ts: Some(libpcap_tools::Timestamp(ts)),
            msg: parse_dns_message(&b).unwrap(),
        };
        let query = |opt: Option<(u16, bool)>| {
            let q = crate::build::dns_query(5, "example.org", 1);
            msg(opt.map_or(q.clone(), |(s, d)| with_opt(q, s, d)), 1)
        };
        let response = |opt: Option<(u16, bool)>| {
            let r = crate::build::dns_response(5, "example.org", 1, 0, &[], 60);
            msg(opt.map_or(r.clone(), |(s, d)| with_opt(r, s, d)), 2)
        };
        let key = client_key(53, ipproto::UDP);
        let edns_of = |q: Option<&Message>, r: Option<&Message>| {
            let mut row = RowBuf::new(&DNS);
            fill_row(&mut row, FlowId(1), &key, q, r);
            let mut vals = Vec::new();
            crate::output::decode(&DNS, row.finish().unwrap(), &mut vals).unwrap();
            let at = |name: &str| DNS.fields.iter().position(|f| f.name == name).unwrap();
            use crate::output::Value;
            let size = match vals[at("edns_udp_size")] {
                Value::U64(s) => Some(s),
                _ => None,
            };
            let dnssec_ok = match vals[at("edns_do")] {
                Value::Bool(d) => Some(d),
                _ => None,
            };
            (size, dnssec_ok)
        };
        let (q_opt, r_opt) = (query(Some((1232, true))), response(Some((4096, false))));
        let (q_none, r_none) = (query(None), response(None));
        let edns = |s: u64, d: bool| (Some(s), Some(d));
        assert_eq!(edns_of(Some(&q_opt), Some(&r_opt)), edns(1232, true));
        assert_eq!(edns_of(Some(&q_none), Some(&r_opt)), edns(4096, false));
        assert_eq!(edns_of(Some(&q_opt), Some(&r_none)), edns(1232, true));
        assert_eq!(edns_of(None, Some(&r_opt)), edns(4096, false));
        assert_eq!(edns_of(Some(&q_opt), None), edns(1232, true));
        assert_eq!(edns_of(Some(&q_none), Some(&r_none)), (None, None));
        assert_eq!(edns_of(None, Some(&r_none)), (None, None));
    }

    #[test]
    fn responses_pair_with_their_queries_by_flow_and_id() {
        let mut p = DnsPlugin {
            cfg: DnsConfig {
                max_pending: 3,
                ..DnsConfig::default()
            },
            tcp: HashMap::default(),
            tcp_held: 0,
            counters: DnsCounters::default(),
            pending: HashMap::default(),
            waiting: 0,
            pending_lease: Lease::unlimited(),
            tcp_lease: Lease::unlimited(),
            spool: RecordSpool::new(&DNS, None),
            format: crate::output::Format::Jsonl,
            row: RowBuf::new(&DNS),
            scratch: None,
        };
        let key = client_key(2, ipproto::UDP);
        let ts = Some(libpcap_tools::Timestamp(1));
        let m = |b: Vec<u8>| Message {
            ts,
            msg: parse_dns_message(&b).unwrap(),
        };
        p.emit(FlowId(1), &key, &m(crate::build::dns_query(1, "a.test", 1)));
        p.emit(FlowId(1), &key, &m(crate::build::dns_query(2, "b.test", 1)));
        // the same id in another flow does not pair
        p.emit(
            FlowId(2),
            &key,
            &m(crate::build::dns_response(1, "a.test", 1, 0, &[], 1)),
        );
        p.emit(
            FlowId(1),
            &key,
            &m(crate::build::dns_response(2, "b.test", 1, 0, &[], 1)),
        );
        assert_eq!((p.counters.records, p.counters.unsolicited), (2, 1));
        assert_eq!(p.waiting, 1);
        // the cap: two more queries, the second is written at once
        p.emit(FlowId(3), &key, &m(crate::build::dns_query(3, "c.test", 1)));
        p.emit(FlowId(3), &key, &m(crate::build::dns_query(4, "d.test", 1)));
        p.emit(FlowId(3), &key, &m(crate::build::dns_query(5, "e.test", 1)));
        assert_eq!((p.counters.unpaired, p.waiting), (1, 3));
        // the flows end: their queries are written unanswered
        for id in [1, 3] {
            let f = Flow::new(FlowId(id), key, FlowContext::default());
            p.flow_destroyed(&f, EndReason::Timeout).unwrap();
        }
        assert_eq!(p.waiting, 0);
        assert!(p.pending.is_empty());
        assert_eq!(p.counters.unanswered, 1 + 1 + 2);
        assert_eq!(p.counters.records, 2 + 1 + 3);
        // two queries of one flow answered out of order each find theirs;
        // a response to no waiting query leaves the one waiting in place
        let before = p.counters.records;
        for id in [10, 11] {
            p.emit(
                FlowId(7),
                &key,
                &m(crate::build::dns_query(id, "f.test", 1)),
            );
        }
        p.emit(
            FlowId(8),
            &key,
            &m(crate::build::dns_query(20, "g.test", 1)),
        );
        for id in [11, 10] {
            p.emit(
                FlowId(7),
                &key,
                &m(crate::build::dns_response(id, "f.test", 1, 0, &[], 1)),
            );
        }
        p.emit(
            FlowId(8),
            &key,
            &m(crate::build::dns_response(21, "g.test", 1, 0, &[], 1)),
        );
        assert_eq!(p.counters.records - before, 2 + 1);
        assert_eq!((p.counters.unsolicited, p.waiting), (1 + 1, 1));
        assert!(!p.pending.contains_key(&FlowId(7)));
        assert_eq!(
            p.pending.get(&FlowId(8)).map(|w| w.as_slice().len()),
            Some(1)
        );
    }
}
