//! The `trace` plugin: one line per packet with the layers the analyzer
//! decoded and the flow the packet joined.
//!
//! It is an ordinary [`Plugin`] built on the public API: it asks for the
//! link, network and transport callbacks, records what each one received
//! under the packet's index, and renders the records in packet order (so it
//! gives the same text with any number of workers).
//!
//! A line looks like
//! ```text
//! #5 1700000000.001000 len=74 | d0 link ETHERNET ethertype=0x0800 | d0 ipv4 ethertype=0x0800 192.168.1.10 > 192.168.1.1 proto=17 (UDP) | d0 UDP 192.168.1.10:53000 > 192.168.1.1:53 flow=0000000000000002 to-server
//! ```
//! where `dN` is the tunnel depth of the layer (0 for the outer packet).

use libpcap_analyzer::plugin::{
    Decapsulated, Interest, Layers, LinkLayer, NetworkLayer, PacketContext, Plugin, PluginError,
    PluginResult, TransportLayer, downcast, write_atomically,
};
use libpcap_tools::{Direction, Packet, ipproto};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Name of the plugin.
pub const NAME: &str = "trace";

/// What was recorded for one packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Record {
    /// Timestamp and length.
    head: String,
    /// One entry per callback, in call order.
    layers: Vec<String>,
}

/// Records the decoded layers of every packet (see the module docs).
#[derive(Debug, Default)]
pub struct TracePlugin {
    records: BTreeMap<u64, Record>,
}

/// Name of an ethertype, for the trace.
fn ethertype_name(e: u16) -> &'static str {
    match e {
        0x0800 => "ipv4",
        0x86DD => "ipv6",
        0x0806 => "arp",
        0x8035 => "rarp",
        0x88CC => "lldp",
        0x8847 | 0x8848 => "mpls",
        0x8863 | 0x8864 => "pppoe",
        0x6558 => "ethernet",
        _ => "network",
    }
}

fn proto_name(p: u8) -> String {
    ipproto::name(p).map_or_else(|| format!("proto-{p}"), str::to_string)
}

/// TCP flags as letters (`S`, `A`, `F`, `R`, `P`, `U`, `E`, `C`).
fn tcp_flags(f: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (0x02, 'S'),
        (0x10, 'A'),
        (0x01, 'F'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'C'),
    ] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

impl TracePlugin {
    /// An empty trace.
    pub fn new() -> TracePlugin {
        TracePlugin::default()
    }

    fn record(&mut self, packet: &Packet<'_>, layer: String) {
        let r = self.records.entry(packet.index).or_insert_with(|| Record {
            head: head(packet),
            layers: Vec::new(),
        });
        r.layers.push(layer);
    }

    /// Number of packets with at least one recorded layer.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// `true` when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The trace, one line per packet in index order. With `packets`
    /// (the number of packets the run handled, indexes `0..packets`), packets
    /// no callback saw get a line saying so.
    pub fn render(&self, packets: Option<u64>) -> String {
        let mut out = String::new();
        let mut line = |i: u64, r: Option<&Record>| match r {
            Some(r) => {
                let _ = writeln!(out, "#{i} {} | {}", r.head, r.layers.join(" | "));
            }
            None => {
                let _ = writeln!(out, "#{i} (no layer decoded)");
            }
        };
        match packets {
            Some(n) => {
                let last = self.records.keys().next_back().map_or(0, |k| k + 1);
                for i in 0..n.max(last) {
                    line(i, self.records.get(&i));
                }
            }
            None => {
                for (i, r) in &self.records {
                    line(*i, Some(r));
                }
            }
        }
        out
    }
}

fn head(p: &Packet<'_>) -> String {
    let ts = p.ts.map_or_else(
        || "-".to_string(),
        |t| format!("{}.{:06}", t.secs(), t.subsec_nanos() / 1000),
    );
    format!("{ts} len={}", p.origlen)
}

impl Plugin for TracePlugin {
    fn name(&self) -> &str {
        NAME
    }

    fn interest(&self) -> Interest {
        Interest::new(Layers::LINK | Layers::NETWORK | Layers::TRANSPORT)
    }

    fn handle_link(
        &mut self,
        ctx: &PacketContext<'_>,
        link: &LinkLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        let mut s = format!(
            "d{} link {} ethertype=0x{:04x}",
            ctx.depth, link.linktype, link.ethertype
        );
        if !link.vlans.is_empty() {
            let v: Vec<String> = link.vlans.iter().map(u16::to_string).collect();
            let _ = write!(s, " vlan={}", v.join(","));
        }
        self.record(ctx.packet, s);
        Ok(None)
    }

    fn handle_network(
        &mut self,
        ctx: &PacketContext<'_>,
        net: &NetworkLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        let mut s = format!(
            "d{} {} ethertype=0x{:04x}",
            ctx.depth,
            ethertype_name(net.ethertype),
            net.ethertype
        );
        if let (Some(src), Some(dst)) = (net.src, net.dst) {
            let _ = write!(
                s,
                " {src} > {dst} proto={} ({})",
                net.protocol,
                proto_name(net.protocol)
            );
        }
        if net.reassembled {
            s.push_str(" reassembled");
        }
        self.record(ctx.packet, s);
        Ok(None)
    }

    fn handle_transport(
        &mut self,
        ctx: &PacketContext<'_>,
        t: &TransportLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        let dir = match t.direction {
            Direction::ToServer => "to-server",
            Direction::ToClient => "to-client",
        };
        let mut s = format!("d{} {}", ctx.depth, t.key);
        if t.key.proto == ipproto::TCP {
            let _ = write!(s, " flags={}", tcp_flags(t.tcp_flags));
        }
        let _ = write!(s, " payload={} flow={} {dir}", t.payload.len(), t.flow.id);
        if t.frames > 1 {
            let _ = write!(s, " frames={}", t.frames);
        }
        self.record(ctx.packet, s);
        Ok(None)
    }

    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let other = downcast::<Self>(NAME, other)?;
        for (i, r) in other.records {
            let mine = self.records.entry(i).or_insert_with(|| Record {
                head: r.head.clone(),
                layers: Vec::new(),
            });
            mine.layers.extend(r.layers);
        }
        Ok(())
    }

    fn results(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "packets": self.records.len() }))
    }

    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        let path = dir.join("trace.txt");
        write_atomically(&path, self.render(None).as_bytes())
            .map_err(|e| PluginError::wrap(NAME, e))?;
        Ok(vec![path])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_flags_are_letters() {
        assert_eq!(tcp_flags(0x12), "SA");
        assert_eq!(tcp_flags(0), ".");
    }

    #[test]
    fn render_fills_packets_no_callback_saw() {
        let mut t = TracePlugin::new();
        t.records.insert(
            1,
            Record {
                head: "0.000000 len=60".into(),
                layers: vec!["d0 link".into()],
            },
        );
        let text = t.render(Some(3));
        assert_eq!(
            text,
            "#0 (no layer decoded)\n#1 0.000000 len=60 | d0 link\n#2 (no layer decoded)\n"
        );
    }
}
