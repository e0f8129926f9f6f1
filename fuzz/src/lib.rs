//! Shared pieces of PAL's fuzz targets: how an input chooses its link type
//! and configuration, how a trace input is cut into frames, and one
//! analyzer run with every built-in plugin.
//!
//! # Input formats
//!
//! `analyzer_frame`: `[setup] [frame bytes…]`.
//!
//! `analyzer_trace`: `[setup]` then records `[len_hi] [len_lo] [dt] [len
//! bytes]` until the input ends (the last record takes what is left). `dt`
//! is the time since the previous frame: `0..=199` milliseconds,
//! `200..=251` `(dt - 199) * 10` seconds (enough to pass every idle and
//! fragment timeout), `252` the latest time there is (`i64::MAX` ns, as a
//! pcapng timestamp saturates), `253` the earliest, `254` no timestamp,
//! `255` one second back in time.
//!
//! The setup byte: bits 0–3 the link type ([`LINKTYPES`]), bit 4 tight caps
//! (a few flows, datagrams and buffered bytes, so that eviction and budget
//! paths run), bit 5 frames are truncated (`origlen` larger than the bytes
//! captured), bits 6–7 the fragment overlap policy (`first`, `last`,
//! `drop-datagram`) or, for 3, `first` with IPv4 checksum checks.

use libpcap_analyzer::Analyzer;
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_analyzer::plugins::connections::ConnectionsPlugin;
use libpcap_analyzer::{PluginHandle, plugin::PluginRegistry};
use libpcap_tools::{Config, LinkType, OwnedPacket, Packet, Timestamp};
use std::sync::OnceLock;

/// The link types the setup byte chooses from (Ethernet three times: it is
/// the one with the most below it).
pub const LINKTYPES: [LinkType; 16] = [
    LinkType::ETHERNET,
    LinkType::RAW,
    LinkType::LINUX_SLL,
    LinkType::LINUX_SLL2,
    LinkType::NULL,
    LinkType::LOOP,
    LinkType::PPP,
    LinkType::PPP_HDLC,
    LinkType::RAW_12,
    LinkType::RAW_14,
    LinkType::IPV4,
    LinkType::IPV6,
    LinkType::IEEE802_11,
    LinkType::ETHERNET,
    LinkType::ETHERNET,
    LinkType::NFLOG,
];

/// Start of every trace: 2023-11-14T22:13:20Z, as the sample trace.
pub const T0: i64 = 1_700_000_000 * 1_000_000_000;

/// What the setup byte says.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Link type of every frame.
    pub linktype: LinkType,
    /// Index in the configuration variants (tight caps, overlap policy).
    pub variant: usize,
    /// `origlen` exceeds the captured bytes.
    pub truncated: bool,
}

impl Setup {
    /// Decodes a setup byte.
    pub fn from_byte(b: u8) -> Setup {
        Setup {
            linktype: LINKTYPES[usize::from(b & 0x0f)],
            variant: usize::from((b >> 4) & 1) | usize::from(b >> 6) << 1,
            truncated: b & 0x20 != 0,
        }
    }

    /// The setup byte for a link type's index in [`LINKTYPES`] and the
    /// other settings.
    pub fn to_byte(link_index: u8, tight: bool, truncated: bool, policy: u8) -> u8 {
        (link_index & 0x0f) | u8::from(tight) << 4 | u8::from(truncated) << 5 | (policy & 3) << 6
    }

    /// The configuration of this setup.
    pub fn config(&self) -> &'static Config {
        &configs()[self.variant]
    }
}

/// A directory in memory for the plugins' JSON lines, so that their
/// serialisation runs too (the spools remove their files when dropped).
fn output_dir() -> String {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("pal-fuzz-{}", std::process::id()))
        .display()
        .to_string()
}

fn configs() -> &'static [Config; 8] {
    static CONFIGS: OnceLock<[Config; 8]> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let dir = output_dir();
        std::array::from_fn(|v| {
            let tight = v & 1 != 0;
            let policy = ["first", "last", "drop-datagram", "first"][v >> 1];
            let checksums = v >> 1 == 3;
            let mut toml = format!(
                "[output]\ndir = {dir:?}\n\
                 [analyzer]\ndo_checksums = {checksums}\n\
                 [plugin.hexdump]\nmax_packets = 4\nmax_bytes = 64\n\
                 [defrag]\noverlap_policy = \"{policy}\"\n"
            );
            if tight {
                toml.push_str(
                    "max_datagrams = 2\nmax_bytes = 3000\nmax_fragments_per_datagram = 6\n\
                     [flows]\nmax_flows = 3\n\
                     [tcp_reassembly]\nmax_buffered_per_direction = 600\n\
                     max_buffered_total = 1500\nmax_window_ahead = 5000\n\
                     [plugin.dns]\nmax_tcp_buffer = 300\nmax_tcp_total = 700\n\
                     [plugin.tls]\nmax_buffer = 400\nmax_total_buffer = 900\n\
                     [plugin.connections]\nmax_connections = 3\n\
                     [plugin.basic-stats]\nmax_conversations = 3\n",
                );
            }
            match Config::from_toml(&toml) {
                Ok(c) => c,
                Err(e) => panic!("fuzz configuration {v} is invalid: {e}\n{toml}"),
            }
        })
    })
}

fn registry() -> &'static PluginRegistry {
    static REGISTRY: OnceLock<PluginRegistry> = OnceLock::new();
    REGISTRY.get_or_init(builtin_registry)
}

/// An analyzer with every built-in plugin (the default ones and hexdump).
///
/// # Panics
/// When the configuration is refused (a bug of the fuzz setup).
pub fn analyzer(config: &Config) -> Analyzer {
    let r = registry();
    let names: Vec<String> = r.names().into_iter().map(String::from).collect();
    let plugins = match r.build(&names, config) {
        Ok(p) => p,
        Err(e) => panic!("plugins refused the fuzz configuration: {e}"),
    };
    match Analyzer::new(config, plugins) {
        Ok(a) => a,
        Err(e) => panic!("analyzer refused the fuzz configuration: {e}"),
    }
}

/// Ends the analysis as the engine does (finish, statistics, post-processing,
/// results, the connection report) and panics if a plugin panicked, so that
/// a panic the dispatcher caught is still a crash for the fuzzer.
///
/// # Panics
/// When a plugin panicked.
pub fn finish(analyzer: Analyzer) {
    if let Some(name) = analyzer.panicked_plugin() {
        panic!("plugin {name} panicked");
    }
    let (handles, stats) = analyzer.into_parts();
    for h in handles {
        let PluginHandle::Owned(mut p) = h else {
            continue;
        };
        p.run_stats(&stats);
        let _ = p.post_process();
        let _ = std::hint::black_box(p.results());
        let any: &dyn std::any::Any = p.as_ref();
        if let Some(c) = any.downcast_ref::<ConnectionsPlugin>() {
            let _ = std::hint::black_box(c.render());
        }
    }
    let _ = std::hint::black_box(serde_json::to_string(&stats));
}

/// Decodes a time step of a trace record (see the module docs): the new
/// clock, and the timestamp of the frame.
pub fn step_time(clock: i64, dt: u8) -> (i64, Option<Timestamp>) {
    let ms = 1_000_000i64;
    let clock = match dt {
        0..=199 => clock.saturating_add(i64::from(dt) * ms),
        200..=251 => clock.saturating_add(i64::from(dt - 199) * 10_000 * ms),
        252 => i64::MAX,
        253 => i64::MIN,
        254 => return (clock, None),
        255 => clock.saturating_sub(1000 * ms),
    };
    (clock, Some(Timestamp(clock)))
}

/// Splits a trace input (after its setup byte) into frames.
pub fn split_trace(mut data: &[u8]) -> Vec<(Option<Timestamp>, &[u8])> {
    let mut clock = T0;
    let mut out = Vec::new();
    while let [hi, lo, dt, rest @ ..] = data {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let (frame, after) = rest.split_at(len.min(rest.len()));
        let (c, ts) = step_time(clock, *dt);
        clock = c;
        out.push((ts, frame));
        data = after;
    }
    out
}

/// A packet of the fuzz input.
pub fn packet<'a>(setup: Setup, index: u64, ts: Option<Timestamp>, data: &'a [u8]) -> Packet<'a> {
    let caplen = u32::try_from(data.len()).unwrap_or(u32::MAX);
    Packet {
        index,
        interface: 0,
        linktype: setup.linktype,
        ts,
        origlen: if setup.truncated {
            caplen.saturating_add(100)
        } else {
            caplen
        },
        data,
    }
}

/// Encodes frames as a trace input (for seeds): the setup byte, then one
/// record per packet with the time step closest to the packet's gap.
pub fn encode_trace(setup: u8, packets: &[OwnedPacket]) -> Vec<u8> {
    let mut out = vec![setup];
    let mut clock = T0;
    for p in packets {
        let dt = match p.ts {
            None => 254,
            Some(t) => {
                let gap = t.0.saturating_sub(clock);
                let ms = gap / 1_000_000;
                if gap < 0 {
                    255
                } else if ms < 200 {
                    ms as u8
                } else {
                    (199 + (ms / 10_000).clamp(1, 52)) as u8
                }
            }
        };
        let (c, _) = step_time(clock, dt);
        clock = c;
        let len = p.data.len().min(usize::from(u16::MAX));
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.push(dt);
        out.extend_from_slice(&p.data[..len]);
    }
    out
}
