//! PAL analysis engine: decoding, defragmentation, TCP reassembly, flows and
//! the plugin API.
//!
//! The usual entry point is [`Engine`]: it reads a
//! [`PacketSource`](libpcap_tools::PacketSource) with one or more worker
//! threads, each running an [`Analyzer`] with its own instances of the
//! [`plugin::Plugin`]s, and merges their results.
//!
//! ```
//! use libpcap_analyzer::plugins::builtin_registry;
//! use libpcap_analyzer::plugins::connections::ConnectionsPlugin;
//! use libpcap_analyzer::{Engine, build};
//! use libpcap_tools::{CaptureReader, Config, LinkType, Packet, PcapWriter, PcapWriterOptions, ReaderConfig, Timestamp};
//! use std::net::Ipv4Addr;
//!
//! // a capture with one UDP datagram, built and written in memory
//! let (c, s) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
//! let frame = build::ethernet(build::MAC_A, build::MAC_B, 0x0800,
//!     &build::ipv4(c, s, 17, 1, &build::udp(c.into(), s.into(), 5000, 53, b"hi")));
//! let mut w = PcapWriter::new(Vec::new(), LinkType::ETHERNET, PcapWriterOptions::default())?;
//! w.write_packet(&Packet { index: 0, interface: 0, linktype: LinkType::ETHERNET,
//!     ts: Some(Timestamp::from_secs_nanos(1_700_000_000, 0)), origlen: frame.len() as u32, data: &frame })?;
//! let mut source = CaptureReader::from_reader(std::io::Cursor::new(w.finish()?), "mem", &ReaderConfig::default())?;
//!
//! // the connection report, with two worker threads
//! let config = Config::new();
//! let registry = builtin_registry();
//! let names = vec!["connections".to_string()];
//! let factory = || registry.build(&names, &config);
//! let out = Engine::new(&config, 2)?.run(&factory, &mut source)?;
//! let any: &dyn std::any::Any = out.plugins[0].as_ref();
//! let report = any.downcast_ref::<ConnectionsPlugin>().unwrap().render();
//! assert!(report.contains("10.0.0.1; 5000; 10.0.0.2; 53; [UDP]; 1700000000000; 1700000000000; 44; 1"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod analyzer;
pub mod build;
pub mod clock;
pub mod config;
pub mod control;
pub mod decode;
pub mod defrag;
mod dispatch;
pub mod engine;
pub mod flood;
pub mod flow;
pub mod memory;
pub mod output;
pub mod plugin;
pub mod plugins;
pub mod proto;
pub mod reassembly;
pub mod samples;
pub mod service;
pub mod session;
mod shards;
pub mod stats;
pub mod wire;

pub use analyzer::{Analyzer, AnalyzerError};
pub use config::EngineConfig;
pub use control::{RunControl, RunCounters, RunState};
pub use dispatch::PluginHandle;
pub use engine::{Engine, PluginFactory, RunInput, RunOutput};
pub use session::{
    Session, SessionError, SessionHandle, SessionOutput, SessionState, SessionStats,
};
pub use stats::AnalyzerStats;
