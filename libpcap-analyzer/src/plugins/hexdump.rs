//! `hexdump`: a hex dump of the layers asked for, for debugging (off by
//! default).
//!
//! Config `[plugin.hexdump]`: `layers` (any of `link`, `network`,
//! `transport`; default all three), `max_bytes` (bytes dumped per layer,
//! default 256), `max_packets` (packets dumped, default 1000). Writes
//! `hexdump.txt`; under test-analyzer the lines also go to the debug log.

use crate::plugin::{
    Decapsulated, Interest, Layers, LinkLayer, NetworkLayer, PacketContext, Plugin, PluginBuilder,
    PluginError, PluginResult, TransportLayer, downcast, write_atomically,
};
use libpcap_tools::Config;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Configuration `[plugin.hexdump]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct HexdumpConfig {
    /// Layers dumped: `link`, `network`, `transport`.
    pub layers: Vec<String>,
    /// Bytes dumped per layer.
    pub max_bytes: usize,
    /// Packets dumped at most (per worker).
    pub max_packets: u64,
}

impl Default for HexdumpConfig {
    fn default() -> Self {
        HexdumpConfig {
            layers: vec!["link".into(), "network".into(), "transport".into()],
            max_bytes: 256,
            max_packets: 1000,
        }
    }
}

/// Formats `data` as `offset  hex  |ascii|` lines.
pub fn hexdump(data: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in data.chunks(16).enumerate() {
        let _ = write!(out, "{:08x}  ", i * 16);
        for j in 0..16 {
            match chunk.get(j) {
                Some(b) => {
                    let _ = write!(out, "{b:02x} ");
                }
                None => out.push_str("   "),
            }
        }
        out.push('|');
        out.extend(chunk.iter().map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                *b as char
            } else {
                '.'
            }
        }));
        out.push_str("|\n");
    }
    out
}

/// The `hexdump` plugin.
#[derive(Debug, Default)]
pub struct HexdumpPlugin {
    cfg: HexdumpConfig,
    layers: Layers,
    out: Vec<(u64, String)>,
    packets: u64,
    last_index: Option<u64>,
}

impl HexdumpPlugin {
    fn dump(&mut self, ctx: &PacketContext<'_>, what: &str, data: &[u8]) {
        // layers rebuilt when a partial datagram expires have no frame of their own
        if ctx.packet.index == u64::MAX {
            return;
        }
        if self.last_index != Some(ctx.packet.index) {
            if self.packets >= self.cfg.max_packets {
                return;
            }
            self.packets += 1;
            self.last_index = Some(ctx.packet.index);
        }
        let cut = data
            .get(..self.cfg.max_bytes.min(data.len()))
            .unwrap_or(data);
        let text = format!(
            "packet {} depth {} {what} ({} bytes)\n{}",
            ctx.packet.index,
            ctx.depth,
            data.len(),
            hexdump(cut)
        );
        log::debug!("{text}");
        self.out.push((ctx.packet.index, text));
    }
}

impl Plugin for HexdumpPlugin {
    fn name(&self) -> &str {
        "hexdump"
    }
    fn interest(&self) -> Interest {
        Interest::new(self.layers)
    }
    fn handle_link(
        &mut self,
        ctx: &PacketContext<'_>,
        l: &LinkLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        self.dump(ctx, &format!("link {}", l.linktype), l.data);
        Ok(None)
    }
    fn handle_network(
        &mut self,
        ctx: &PacketContext<'_>,
        n: &NetworkLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        self.dump(
            ctx,
            &format!("network ethertype 0x{:04x}", n.ethertype),
            n.data,
        );
        Ok(None)
    }
    fn handle_transport(
        &mut self,
        ctx: &PacketContext<'_>,
        t: &TransportLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        self.dump(ctx, &format!("transport {}", t.key), t.data);
        Ok(None)
    }
    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let mut o = downcast::<Self>("hexdump", other)?;
        self.out.append(&mut o.out);
        Ok(())
    }
    fn output_names(&self) -> Vec<String> {
        vec!["hexdump.txt".to_string()]
    }

    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        // every worker kept its first packets: the first `max_packets` of the
        // whole input are among them, whatever the number of workers
        self.out.sort_by_key(|(i, _)| *i);
        let mut kept = 0u64;
        let mut last = None;
        self.out.retain(|(i, _)| {
            if last != Some(*i) {
                last = Some(*i);
                kept += 1;
            }
            kept <= self.cfg.max_packets
        });
        let text: String = self
            .out
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let path = dir.join("hexdump.txt");
        write_atomically(&path, text.as_bytes()).map_err(|e| PluginError::wrap("hexdump", e))?;
        Ok(vec![path])
    }
}

/// Builder of [`HexdumpPlugin`].
#[derive(Debug)]
pub struct HexdumpPluginBuilder;

impl PluginBuilder for HexdumpPluginBuilder {
    fn name(&self) -> &str {
        "hexdump"
    }
    fn description(&self) -> &str {
        "hex dump of the link, network and transport layers (debugging)"
    }
    fn enabled_by_default(&self) -> bool {
        false
    }
    fn build(&self, config: &Config) -> PluginResult<Box<dyn Plugin>> {
        let cfg: HexdumpConfig = config
            .plugin("hexdump")
            .map_err(|e| PluginError::wrap("hexdump", e))?;
        cfg.validate().map_err(|m| PluginError::new("hexdump", m))?;
        let mut layers = Layers::empty();
        for l in &cfg.layers {
            layers |= match l.as_str() {
                "link" => Layers::LINK,
                "network" => Layers::NETWORK,
                "transport" => Layers::TRANSPORT,
                other => {
                    return Err(PluginError::new(
                        "hexdump",
                        format!("unknown layer '{other}'"),
                    ));
                }
            };
        }
        Ok(Box::new(HexdumpPlugin {
            cfg,
            layers,
            ..HexdumpPlugin::default()
        }))
    }
}
