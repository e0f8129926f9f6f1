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
//! looking for a hello, default 262144). Writes `tls.jsonl`.

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
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            max_buffer: 256 * 1024,
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
        let data = match data {
            StreamData::Data { data, .. } => data,
            StreamData::Gap { .. } => {
                side.done = true;
                side.buf = Vec::new();
                return Ok(());
            }
        };
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
        Ok(())
    }

    fn flow_destroyed(&mut self, flow: &Flow, _: EndReason) -> PluginResult<()> {
        if let Some(conn) = self.conns.remove(&flow.id) {
            self.emit(flow, conn)?;
        }
        Ok(())
    }

    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let o = downcast::<Self>("tls", other)?;
        self.connections += o.connections;
        self.spool.merge(o.spool)
    }

    fn results(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "tls_connections": self.connections }))
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
            spool: Spool::new("tls", out.dir),
        }))
    }
}
