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
//! Config `[plugin.tls]`: `max_buffer` (bytes kept per direction while
//! looking for a hello, default 262144), `max_total_buffer` (bytes kept for
//! all connections of a worker, default 64 MiB; beyond, handshakes are given
//! up and counted as `over_budget`). Writes `tls.jsonl`.

use super::spool::{OutputConfig, Spool};
use crate::plugin::{
    EndReason, Interest, Layers, PacketContext, Plugin, PluginBuilder, PluginError, PluginResult,
    StreamData, downcast,
};
use crate::proto::tls::{TlsEvent, parse_tls_records};
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

#[derive(Debug, Default)]
struct Side {
    buf: Vec<u8>,
    done: bool,
    hello: Option<serde_json::Value>,
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
    /// Bytes held in all side buffers.
    buffered: usize,
    /// Handshakes given up because `max_total_buffer` was reached.
    over_budget: u64,
    spool: Spool,
}

impl TlsPlugin {
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
        let held = side.buf.len();
        let data = match data {
            StreamData::Data { data, .. } => data,
            StreamData::Gap { .. } => {
                side.done = true;
                side.buf = Vec::new();
                self.buffered = self.buffered.saturating_sub(held);
                return Ok(());
            }
        };
        if self.buffered.saturating_add(data.len()) > self.cfg.max_total_buffer {
            side.done = true;
            side.buf = Vec::new();
            self.buffered = self.buffered.saturating_sub(held);
            self.over_budget += 1;
            return Ok(());
        }
        side.buf.extend_from_slice(data);
        let (events, consumed) = parse_tls_records(&side.buf);
        for ev in events {
            match ev {
                TlsEvent::ClientHello(h) if i == 0 => {
                    side.hello = serde_json::to_value(&h).ok();
                    side.done = true;
                }
                TlsEvent::ServerHello(h) if i == 1 => {
                    side.hello = serde_json::to_value(&h).ok();
                    side.done = true;
                }
                TlsEvent::Invalid { .. }
                | TlsEvent::ApplicationData { .. }
                | TlsEvent::ChangeCipherSpec => {
                    side.done = true;
                }
                _ => {}
            }
        }
        if side.done || side.buf.len() > self.cfg.max_buffer {
            side.done = true;
            side.buf = Vec::new();
        } else {
            side.buf.drain(..consumed.min(side.buf.len()));
        }
        self.buffered = self
            .buffered
            .saturating_sub(held)
            .saturating_add(side.buf.len());
        Ok(())
    }

    fn flow_destroyed(&mut self, flow: &Flow, _: EndReason) -> PluginResult<()> {
        if let Some(conn) = self.conns.remove(&flow.id) {
            let held: usize = conn.sides.iter().map(|s| s.buf.len()).sum();
            self.buffered = self.buffered.saturating_sub(held);
            self.emit(flow, conn)?;
        }
        Ok(())
    }

    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let o = downcast::<Self>("tls", other)?;
        self.connections += o.connections;
        self.over_budget += o.over_budget;
        self.spool.merge(o.spool)
    }

    fn results(&self) -> Option<serde_json::Value> {
        Some(
            serde_json::json!({ "tls_connections": self.connections, "over_budget": self.over_budget }),
        )
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
        Ok(Box::new(TlsPlugin {
            cfg,
            conns: HashMap::default(),
            connections: 0,
            buffered: 0,
            over_budget: 0,
            spool: Spool::new("tls", out.dir),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::PacketContext;
    use libpcap_tools::{FiveTuple, FlowContext, LinkType, Packet};

    #[test]
    fn partial_handshakes_stay_under_the_global_budget() {
        let cfg = TlsConfig {
            max_buffer: 1000,
            max_total_buffer: 4000,
        };
        let mut p = TlsPlugin {
            cfg,
            conns: HashMap::default(),
            connections: 0,
            buffered: 0,
            over_budget: 0,
            spool: Spool::new("tls", None),
        };
        let d = [0u8; 0];
        let pkt = Packet {
            index: 0,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: None,
            origlen: 0,
            data: &d,
        };
        let ctx = PacketContext {
            packet: &pkt,
            depth: 0,
            context: FlowContext::default(),
        };
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
}
