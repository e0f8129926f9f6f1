//! `tls`: TLS handshake facts per connection.
//!
//! The first bytes of each direction of every TCP connection are
//! reassembled and parsed as TLS records until the ClientHello (client side)
//! and the ServerHello (server side) are found, or the data is not TLS.
//! One JSON line per TLS connection: flow id, addresses, and from the
//! ClientHello the versions, SNI, ALPN, offered cipher suites, extensions,
//! groups, JA3 and JA4; from the ServerHello the chosen version, cipher
//! suite, ALPN and JA3S.
//!
//! Each direction has its own [`TlsStreamParser`], fed every segment once:
//! a record or handshake message cut across segments or records is kept
//! until complete, so the work per direction is linear in the bytes seen.
//! Events count once the group of records carrying them ends with no
//! handshake message in progress (see [`TlsSink`]).
//!
//! Config `[plugin.tls]`: `max_buffer` (bytes per direction since the last
//! group end, plus the new segment, while looking for a hello; default
//! 262144), `max_total_buffer` (the sum of those counts over all
//! connections of a worker, default 64 MiB; beyond, handshakes are given up
//! and counted as `over_budget`). What a parser holds is never more than
//! about twice its count. Writes `tls.jsonl`.

use super::spool::{OutputConfig, Spool};
use crate::plugin::{
    Counters, EndReason, Interest, Layers, PacketContext, Plugin, PluginBuilder, PluginError,
    PluginResult, StreamData, downcast,
};
use crate::proto::tls::{TlsClientHello, TlsEvent, TlsServerHello, TlsSink, TlsStreamParser};
use libpcap_tools::{Config, Direction, Flow, FlowId, ipproto};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Configuration `[plugin.tls]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct TlsConfig {
    /// Bytes kept per direction while looking for a hello.
    pub max_buffer: usize,
    /// Bytes kept for all connections of a worker; beyond, new data of
    /// unfinished handshakes is not kept (counted as `over_budget`).
    pub max_total_buffer: usize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            max_buffer: 256 * 1024,
            max_total_buffer: 64 << 20,
        }
    }
}

/// A hello found in a group of records not known to be complete yet.
#[derive(Debug)]
enum Hello {
    Client(Box<TlsClientHello>),
    Server(Box<TlsServerHello>),
}

/// What the current group of records (see [`TlsSink`]) brings to a side,
/// applied at the group's boundary and dropped if the stream turns out not
/// to be TLS. Keeping only this, not the group's events, keeps a side's
/// memory bounded whatever the group holds.
#[derive(Debug, Default)]
struct Group {
    /// The last hello of the side's kind in the group.
    hello: Option<Hello>,
    /// The group ends the search (a hello, application data, a
    /// ChangeCipherSpec).
    done: bool,
}

/// A side still looking for its hello.
#[derive(Debug, Default)]
struct Search {
    parser: TlsStreamParser,
    group: Group,
    /// Bytes counted for this side in `TlsPlugin::buffered`: the bytes fed
    /// since the parser's last group end, which bound what it holds.
    held: usize,
}

#[derive(Debug, Default)]
struct Side {
    /// Allocated at the first data, dropped once `done`.
    search: Option<Box<Search>>,
    done: bool,
    hello: Option<serde_json::Value>,
}

impl Side {
    /// Bytes counted for this side in `TlsPlugin::buffered`.
    fn held(&self) -> usize {
        self.search.as_ref().map_or(0, |s| s.held)
    }

    /// Stops looking at this side and frees what it held.
    fn finish(&mut self) {
        self.done = true;
        self.search = None;
    }
}

/// Turns the events of one side into its hello and `done` flag.
struct SideSink<'a> {
    client: bool,
    group: &'a mut Group,
    hello: &'a mut Option<serde_json::Value>,
    done: &'a mut bool,
}

impl TlsSink for SideSink<'_> {
    fn event(&mut self, event: TlsEvent) {
        match event {
            TlsEvent::ClientHello(h) if self.client => {
                self.group.hello = Some(Hello::Client(h));
                self.group.done = true;
            }
            TlsEvent::ServerHello(h) if !self.client => {
                self.group.hello = Some(Hello::Server(h));
                self.group.done = true;
            }
            TlsEvent::Invalid { .. } => {
                *self.group = Group::default();
                *self.done = true;
            }
            TlsEvent::ApplicationData { .. } | TlsEvent::ChangeCipherSpec => {
                self.group.done = true;
            }
            _ => {}
        }
    }

    fn boundary(&mut self) {
        let group = std::mem::take(self.group);
        if let Some(h) = group.hello {
            *self.hello = match h {
                Hello::Client(h) => serde_json::to_value(&h).ok(),
                Hello::Server(h) => serde_json::to_value(&h).ok(),
            };
        }
        if group.done {
            *self.done = true;
        }
    }
}

#[derive(Debug, Default)]
struct Conn {
    sides: [Side; 2],
}

/// The `tls` plugin.
#[derive(Debug)]
pub struct TlsPlugin {
    cfg: TlsConfig,
    conns: HashMap<FlowId, Conn, foldhash::fast::RandomState>,
    connections: u64,
    /// Bytes counted in all sides (`Side::held`).
    buffered: usize,
    /// Handshakes given up because `max_total_buffer` was reached.
    over_budget: u64,
    /// Bytes examined by the parsers of all sides (see
    /// [`TlsStreamParser::bytes_examined`]).
    pub(crate) examined: u64,
    spool: Spool,
}

impl TlsPlugin {
    fn new(cfg: TlsConfig, spool: Spool) -> TlsPlugin {
        TlsPlugin {
            cfg,
            conns: HashMap::default(),
            connections: 0,
            buffered: 0,
            over_budget: 0,
            examined: 0,
            spool,
        }
    }

    fn emit(&mut self, flow: &Flow, conn: Conn) -> PluginResult<()> {
        let [c, s] = conn.sides;
        if c.hello.is_none() && s.hello.is_none() {
            return Ok(());
        }
        self.connections += 1;
        if !self.spool.is_writing() {
            return Ok(());
        }
        let k = &flow.key;
        self.spool.push(&serde_json::json!({
            "flow": flow.id.to_string(),
            "src_ip": k.src.to_string(), "src_port": k.src_port,
            "dst_ip": k.dst.to_string(), "dst_port": k.dst_port,
            "client_hello": c.hello,
            "server_hello": s.hello,
        }))
    }
}

impl Plugin for TlsPlugin {
    fn name(&self) -> &str {
        "tls"
    }

    fn interest(&self) -> Interest {
        Interest::new(Layers::STREAM | Layers::FLOW_EVENTS).ip_protocols(&[ipproto::TCP])
    }

    fn handle_stream(
        &mut self,
        _: &PacketContext<'_>,
        flow: &Flow,
        dir: Direction,
        data: StreamData<'_>,
    ) -> PluginResult<()> {
        let i = usize::from(dir == Direction::ToClient);
        let conn = self.conns.entry(flow.id).or_default();
        let Some(side) = conn.sides.get_mut(i) else {
            return Ok(());
        };
        if side.done {
            return Ok(());
        }
        let held = side.held();
        let data = match data {
            StreamData::Data { data, .. } => data,
            StreamData::Gap { .. } => {
                side.finish();
                self.buffered = self.buffered.saturating_sub(held);
                return Ok(());
            }
        };
        if self.buffered.saturating_add(data.len()) > self.cfg.max_total_buffer {
            side.finish();
            self.buffered = self.buffered.saturating_sub(held);
            self.over_budget += 1;
            return Ok(());
        }
        let Side {
            search,
            done,
            hello,
        } = side;
        let search = search.get_or_insert_with(Box::default);
        let before = search.parser.bytes_examined();
        search.parser.feed(
            data,
            &mut SideSink {
                client: i == 0,
                group: &mut search.group,
                hello,
                done,
            },
        );
        self.examined = self
            .examined
            .saturating_add(search.parser.bytes_examined().saturating_sub(before));
        search.held = search.parser.pending_len();
        // `max_buffer` bounds what was pending plus the new data, as when
        // the whole pending stream was kept and parsed again
        if side.done || held.saturating_add(data.len()) > self.cfg.max_buffer {
            side.finish();
        }
        self.buffered = self
            .buffered
            .saturating_sub(held)
            .saturating_add(side.held());
        Ok(())
    }

    fn flow_destroyed(&mut self, flow: &Flow, _: EndReason) -> PluginResult<()> {
        if let Some(conn) = self.conns.remove(&flow.id) {
            let held: usize = conn.sides.iter().map(Side::held).sum();
            self.buffered = self.buffered.saturating_sub(held);
            self.emit(flow, conn)?;
        }
        Ok(())
    }

    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let o = downcast::<Self>("tls", other)?;
        self.connections += o.connections;
        self.over_budget += o.over_budget;
        self.examined = self.examined.saturating_add(o.examined);
        self.spool.merge(o.spool)
    }

    fn results(&self) -> Option<serde_json::Value> {
        Some(
            serde_json::json!({ "tls_connections": self.connections, "over_budget": self.over_budget }),
        )
    }

    fn counters(&self) -> Counters {
        Counters::new()
            .count("connections", self.connections)
            .loss("over_budget", self.over_budget)
    }

    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        self.spool.save(dir, "tls.jsonl")
    }
}

/// Builder of [`TlsPlugin`].
#[derive(Debug)]
pub struct TlsPluginBuilder;

impl PluginBuilder for TlsPluginBuilder {
    fn name(&self) -> &str {
        "tls"
    }
    fn description(&self) -> &str {
        "TLS handshakes: versions, SNI, ALPN, cipher suites, JA3/JA3S/JA4"
    }
    fn build(&self, config: &Config) -> PluginResult<Box<dyn Plugin>> {
        let cfg = config
            .plugin("tls")
            .map_err(|e| PluginError::wrap("tls", e))?;
        let out = OutputConfig::from_config(config, "tls")?;
        Ok(Box::new(TlsPlugin::new(cfg, Spool::new("tls", out.dir))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::PacketContext;
    use crate::proto::tls::test_support;
    use libpcap_tools::{FiveTuple, FlowContext, Packet};

    #[test]
    fn partial_handshakes_stay_under_the_global_budget() {
        let cfg = TlsConfig {
            max_buffer: 1000,
            max_total_buffer: 4000,
        };
        let mut p = TlsPlugin::new(cfg, Spool::new("tls", None));
        let pkt = Packet::pseudo(None);
        let ctx = PacketContext::new(&pkt, FlowContext::default());
        // a record header announcing 16000 bytes, then part of it: never complete
        let mut partial = vec![0x16, 0x03, 0x01, 0x3e, 0x80, 0x01, 0x00, 0x3e, 0x7c];
        partial.extend_from_slice(&[0u8; 600]);
        for i in 0..20u64 {
            let f = Flow::new(FlowId(i), FiveTuple::default(), FlowContext::default());
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
            assert!(p.buffered <= 4000, "{} held", p.buffered);
        }
        assert_eq!(p.over_budget, 14, "6 handshakes of 609 bytes fit in 4000");
        for i in 0..20u64 {
            let f = Flow::new(FlowId(i), FiveTuple::default(), FlowContext::default());
            p.flow_destroyed(&f, EndReason::EndOfInput).unwrap();
        }
        assert_eq!(p.buffered, 0);
    }

    /// Feeds `data` of flow `id` in direction `dir` (a gap when `None`).
    fn feed(p: &mut TlsPlugin, id: u64, dir: Direction, data: Option<&[u8]>) {
        let pkt = Packet::pseudo(None);
        let ctx = PacketContext::new(&pkt, FlowContext::default());
        let f = Flow::new(FlowId(id), FiveTuple::default(), FlowContext::default());
        let data = match data {
            Some(data) => StreamData::Data { offset: 0, data },
            None => StreamData::Gap { offset: 0, len: 1 },
        };
        p.handle_stream(&ctx, &f, dir, data).unwrap();
    }

    fn end(p: &mut TlsPlugin, id: u64) {
        let f = Flow::new(FlowId(id), FiveTuple::default(), FlowContext::default());
        p.flow_destroyed(&f, EndReason::EndOfInput).unwrap();
    }

    /// The hellos found for flow `id`: (client, server).
    fn hellos(p: &TlsPlugin, id: u64) -> (Option<serde_json::Value>, Option<serde_json::Value>) {
        let [c, s] = &p.conns[&FlowId(id)].sides;
        (c.hello.clone(), s.hello.clone())
    }

    /// Feeds a client stream and a server stream cut as given, both
    /// directions interleaved segment by segment.
    fn run(client: &[&[u8]], server: &[&[u8]]) -> TlsPlugin {
        let mut p = TlsPlugin::new(TlsConfig::default(), Spool::new("tls", None));
        for k in 0..client.len().max(server.len()) {
            if let Some(seg) = client.get(k) {
                feed(&mut p, 1, Direction::ToServer, Some(seg));
            }
            if let Some(seg) = server.get(k) {
                feed(&mut p, 1, Direction::ToClient, Some(seg));
            }
        }
        p
    }

    #[test]
    fn hellos_are_the_same_whatever_the_segmentation() {
        let ch = crate::build::tls_client_hello("www.example.com", &["h2", "http/1.1"]);
        let sh = crate::build::tls_server_hello(0xc02f, Some("h2"));
        let whole = run(&[&ch], &[&sh]);
        let (Some(c), Some(s)) = hellos(&whole, 1) else {
            panic!("{:?}", hellos(&whole, 1))
        };
        assert_eq!(c["sni"], "www.example.com");
        assert_eq!(c["alpn"], serde_json::json!(["h2", "http/1.1"]));
        // JA3 by hand: TLS 1.2 (771), suites 0x1301 0xc02f 0x009c,
        // extensions SNI groups point-formats sigalgs ALPN versions,
        // groups x25519 secp256r1, point format uncompressed
        assert_eq!(c["ja3"], "771,4865-49199-156,0-10-11-13-16-43,29-23,0");
        // JA4: TLS 1.3 offered, SNI, 3 suites, 6 extensions, "h2"
        assert_eq!(
            c["ja4_r"],
            "t13d0306h2_009c,1301,c02f_000a,000b,000d,002b_0403,0804"
        );
        assert_eq!(s["alpn"], "h2");
        assert_eq!(s["ja3s"], "771,49199,65281-16");
        assert_eq!(s["cipher_suite"], 0xc02f);
        let expected = hellos(&whole, 1);
        let bytes = run(
            &ch.chunks(1).collect::<Vec<_>>(),
            &sh.chunks(1).collect::<Vec<_>>(),
        );
        assert_eq!(hellos(&bytes, 1), expected, "one byte per segment");
        for i in 1..ch.len().max(sh.len()) {
            let (c1, c2) = ch.split_at(i.min(ch.len() - 1));
            let (s1, s2) = sh.split_at(i.min(sh.len() - 1));
            let two = run(&[c1, c2], &[s1, s2]);
            assert_eq!(hellos(&two, 1), expected, "split at {i}");
            assert_eq!(two.buffered, 0);
        }
    }

    type OldSide = (Vec<u8>, bool, Option<serde_json::Value>);

    /// One segment of a flow and direction (a gap when `None`).
    type Segment = (u64, usize, Option<Vec<u8>>);

    /// The old plugin (before the incremental parser), for one worker: the
    /// per-side buffer parsed again from its start on every segment.
    #[derive(Debug, Default)]
    struct OldPlugin {
        /// Per (flow, direction): buffer, done, hello.
        sides: HashMap<(u64, usize), OldSide>,
        buffered: usize,
        over_budget: u64,
    }

    impl OldPlugin {
        /// The old `handle_stream`, line for line.
        fn handle(&mut self, cfg: &TlsConfig, id: u64, i: usize, data: Option<&[u8]>) {
            let side = self.sides.entry((id, i)).or_default();
            let (buf, done, hello) = side;
            if *done {
                return;
            }
            let held = buf.len();
            let Some(data) = data else {
                *done = true;
                *buf = Vec::new();
                self.buffered = self.buffered.saturating_sub(held);
                return;
            };
            if self.buffered.saturating_add(data.len()) > cfg.max_total_buffer {
                *done = true;
                *buf = Vec::new();
                self.buffered = self.buffered.saturating_sub(held);
                self.over_budget += 1;
                return;
            }
            buf.extend_from_slice(data);
            let (events, consumed) = test_support::old_parse_tls_records(buf);
            for ev in events {
                match ev {
                    TlsEvent::ClientHello(h) if i == 0 => {
                        *hello = serde_json::to_value(&h).ok();
                        *done = true;
                    }
                    TlsEvent::ServerHello(h) if i == 1 => {
                        *hello = serde_json::to_value(&h).ok();
                        *done = true;
                    }
                    TlsEvent::Invalid { .. }
                    | TlsEvent::ApplicationData { .. }
                    | TlsEvent::ChangeCipherSpec => {
                        *done = true;
                    }
                    _ => {}
                }
            }
            if *done || buf.len() > cfg.max_buffer {
                *done = true;
                *buf = Vec::new();
            } else {
                buf.drain(..consumed.min(buf.len()));
            }
            self.buffered = self.buffered.saturating_sub(held).saturating_add(buf.len());
        }

        fn end(&mut self, id: u64) {
            for i in 0..2 {
                if let Some((buf, ..)) = self.sides.remove(&(id, i)) {
                    self.buffered = self.buffered.saturating_sub(buf.len());
                }
            }
        }
    }

    /// Client and server streams of every kind: hellos whole and in small
    /// records, two hellos in one segment, a padded hello in small records,
    /// a flight with a large Certificate, encrypted records, non-TLS bytes,
    /// a group that never ends.
    fn plugin_streams() -> Vec<Vec<u8>> {
        use crate::build::{tls_client_hello, tls_server_hello};
        use test_support::{padded_client_hello, records, server_flight};
        let ch = tls_client_hello("a.example", &["h2"]);
        let ch2 = tls_client_hello("b.example", &[]);
        let sh = tls_server_hello(0x1301, None);
        let mut two = ch.clone();
        two.extend_from_slice(&ch2);
        let mut sh_ccs = sh.clone();
        sh_ccs.extend(records(20, &[1], 1));
        sh_ccs.extend(records(23, &[9; 30], 1 << 14));
        let mut app_first = records(23, &[1; 20], 1 << 14);
        app_first.extend_from_slice(&ch);
        let mut never_ends = sh[5..].to_vec();
        never_ends.extend(test_support::handshake(11, &[3; 2000]));
        let never_ends = records(22, &never_ends[..1500], 300);
        let mut not_tls = ch[..20].to_vec();
        not_tls.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        vec![
            ch.clone(),
            records(22, &ch[5..], 7),
            two,
            records(22, &padded_client_hello(3000), 50),
            sh.clone(),
            server_flight(5000, 1000),
            sh_ccs,
            app_first,
            never_ends,
            not_tls,
        ]
    }

    #[test]
    fn plugin_gives_the_old_results_and_budget_for_any_cuts() {
        let mut rng = test_support::XorShift(0x1234_5678_9abc_def1);
        let pool = plugin_streams();
        let mut seen_hellos = 0;
        let mut seen_over_budget = 0;
        for round in 0..150 {
            let cfg = TlsConfig {
                max_buffer: [400, 2000, 6000, 1 << 18][round % 4],
                max_total_buffer: [3000, 12_000, 1 << 26][round % 3],
            };
            let mut p = TlsPlugin::new(cfg, Spool::new("tls", None));
            let mut old = OldPlugin::default();
            // six flows, both directions, their segments interleaved
            let mut segs: Vec<Segment> = Vec::new();
            let mut queues: Vec<Vec<Segment>> = Vec::new();
            for id in 0..6u64 {
                for i in 0..2 {
                    let mut s = pool[rng.next() as usize % pool.len()].clone();
                    if rng.next().is_multiple_of(4) {
                        let x = rng.next();
                        let at = x as usize % s.len();
                        s[at] = (x >> 40) as u8;
                    }
                    let max = [1, 3, 64, 1460, 100_000][rng.next() as usize % 5];
                    let mut q: Vec<_> = rng
                        .cuts(&s, max)
                        .into_iter()
                        .map(|c| (id, i, Some(c.to_vec())))
                        .collect();
                    if rng.next().is_multiple_of(8) {
                        let at = rng.next() as usize % (q.len() + 1);
                        q.insert(at, (id, i, None));
                    }
                    q.reverse();
                    queues.push(q);
                }
            }
            while queues.iter().any(|q| !q.is_empty()) {
                let k = rng.next() as usize % queues.len();
                if let Some(seg) = queues[k].pop() {
                    segs.push(seg);
                }
            }
            for (id, i, data) in &segs {
                let dir = [Direction::ToServer, Direction::ToClient][*i];
                feed(&mut p, *id, dir, data.as_deref());
                old.handle(&cfg, *id, *i, data.as_deref());
                assert_eq!(p.buffered, old.buffered, "round {round}");
                assert_eq!(p.over_budget, old.over_budget, "round {round}");
                let side = &p.conns[&FlowId(*id)].sides[*i];
                let (buf, done, hello) = &old.sides[&(*id, *i)];
                assert_eq!(side.done, *done, "round {round}");
                assert_eq!(&side.hello, hello, "round {round}");
                assert_eq!(side.held(), buf.len(), "round {round}");
                let parser_held = side.search.as_ref().map_or(0, |s| s.parser.held());
                assert!(parser_held <= 2 * side.held() + 16);
                assert_eq!(side.search.is_none(), side.done, "freed once done");
            }
            for id in 0..6u64 {
                seen_hellos += p.conns[&FlowId(id)]
                    .sides
                    .iter()
                    .filter(|s| s.hello.is_some())
                    .count();
                end(&mut p, id);
                old.end(id);
                assert_eq!(p.buffered, old.buffered);
            }
            assert_eq!(p.buffered, 0);
            seen_over_budget += p.over_budget;
        }
        // the rounds did exercise both outcomes
        assert!(seen_hellos > 300, "{seen_hellos}");
        assert!(seen_over_budget > 40, "{seen_over_budget}");
    }

    #[test]
    fn large_handshakes_over_many_records_cost_linear_work() {
        use test_support::{handshake, padded_client_hello, records, server_flight};
        let ch = crate::build::tls_client_hello("www.example.com", &["h2", "http/1.1"]);
        // client: a 200 KB handshake message in 64-byte records before its
        // ClientHello; server: ServerHello, 200 KB Certificate, in 16 KiB
        // records, the ServerHello's group ending with the Certificate
        let mut client = records(22, &handshake(11, &[5; 200_000]), 64);
        client.extend_from_slice(&ch);
        let server = server_flight(200_000, 1 << 14);
        let n = (client.len() + server.len()) as u64;
        let p = run(
            &client.chunks(1460).collect::<Vec<_>>(),
            &server.chunks(1460).collect::<Vec<_>>(),
        );
        let (Some(c), Some(s)) = hellos(&p, 1) else {
            panic!("{:?}", hellos(&p, 1))
        };
        assert_eq!(c["sni"], "www.example.com");
        assert_eq!(s["alpn"], "h2");
        assert!(p.examined <= 4 * n, "{} bytes examined for {n}", p.examined);
        assert_eq!(p.buffered, 0);

        // a ClientHello padded to 30 KB, in records of one byte
        let m = padded_client_hello(30_000);
        let (reference, _) = crate::proto::tls::parse_tls_records(&records(22, &m, 1 << 14));
        let Some(TlsEvent::ClientHello(expected)) = reference.first() else {
            panic!("{reference:?}")
        };
        let client = records(22, &m, 1);
        for seg in [1, 1460] {
            let p = run(&client.chunks(seg).collect::<Vec<_>>(), &[]);
            let (c, _) = hellos(&p, 1);
            assert_eq!(c, serde_json::to_value(expected).ok(), "segments of {seg}");
            let n = client.len() as u64;
            assert!(p.examined <= 4 * n, "{} bytes examined for {n}", p.examined);
        }
    }
}
