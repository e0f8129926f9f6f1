//! PAL analysis engine: decoding, defragmentation, TCP reassembly, flows and
//! the plugin API.
//!
//! The usual entry point is [`Engine`]: it reads a
//! [`PacketSource`](libpcap_tools::PacketSource) with one or more worker
//! threads, each running an [`Analyzer`] with its own instances of the
//! [`plugin::Plugin`]s, and merges their results.

pub mod analyzer;
pub mod build;
pub mod config;
pub mod decode;
pub mod defrag;
mod dispatch;
pub mod engine;
pub mod flow;
pub mod plugin;
pub mod plugins;
pub mod proto;
pub mod reassembly;
pub mod samples;
pub mod stats;
pub mod wire;

pub use analyzer::{Analyzer, AnalyzerError};
pub use config::EngineConfig;
pub use dispatch::PluginHandle;
pub use engine::{Engine, PluginFactory, RunOutput};
pub use stats::AnalyzerStats;
