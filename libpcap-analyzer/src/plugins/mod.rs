//! The built-in plugins and the registry that builds them.
//!
//! | name | what it writes |
//! | --- | --- |
//! | `connections` | the connection report (`connections.txt`/`.csv`/`.jsonl`) |
//! | `basic-stats` | totals, per-layer counts, L3 and L4 conversations, anomalies (`basic-stats.json`) |
//! | `flows` | one JSON line per flow with why it ended (`flows.jsonl`) |
//! | `community-id` | the Community ID v1 of every flow, base64 or hex (`community-id.jsonl`) |
//! | `dns` | one JSON line per DNS message, UDP and TCP (`dns.jsonl`) |
//! | `tls` | one record per TLS hello: versions, SNI, ALPN, cipher suites and extensions with names, JA3/JA3S, JA4/JA4S (`tls.jsonl`) |
//! | `hexdump` | hex dump of the layers asked for (`hexdump.txt`; off by default) |

pub mod basic_stats;
mod checks;
pub mod community_id;
pub mod connections;
pub mod dns;
pub mod flows;
pub mod hexdump;
mod runs;
mod spool;
pub mod tls;

pub use checks::check_config;
pub use spool::{OutputConfig, Spool};

use crate::plugin::PluginRegistry;

/// A registry holding every built-in plugin builder.
pub fn builtin_registry() -> PluginRegistry {
    let mut r = PluginRegistry::new();
    r.add_builder(Box::new(connections::ConnectionsPluginBuilder));
    r.add_builder(Box::new(basic_stats::BasicStatsBuilder));
    r.add_builder(Box::new(flows::FlowsPluginBuilder));
    r.add_builder(Box::new(community_id::CommunityIdPluginBuilder));
    r.add_builder(Box::new(dns::DnsPluginBuilder));
    r.add_builder(Box::new(tls::TlsPluginBuilder));
    r.add_builder(Box::new(hexdump::HexdumpPluginBuilder));
    r
}
