//! conf/pcap-analyzer.conf documents the defaults: every section the
//! engine and the built-in plugins read is in it with exactly the values of
//! the code, and it has no key they do not know.

use libpcap_analyzer::config::{AnalyzerConfig, DefragSection, StreamSection};
use libpcap_analyzer::flow::FlowConfig;
use libpcap_analyzer::plugins::basic_stats::BasicStatsConfig;
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_analyzer::plugins::community_id::CommunityIdConfig;
use libpcap_analyzer::plugins::connections::ConnectionsConfig;
use libpcap_analyzer::plugins::dns::DnsConfig;
use libpcap_analyzer::plugins::hexdump::HexdumpConfig;
use libpcap_analyzer::plugins::tls::TlsConfig;
use libpcap_tools::{Config, ReaderConfig};
use serde::Serialize;
use std::path::Path;

fn conf() -> Config {
    Config::from_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/pcap-analyzer.conf"))
        .unwrap()
}

fn same<T: Serialize + Default>(table: Option<&toml::Value>, what: &str) {
    let default = toml::Value::try_from(T::default()).unwrap();
    let file = table
        .cloned()
        .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
    assert_eq!(
        file, default,
        "[{what}] in conf/pcap-analyzer.conf differs from the defaults"
    );
}

#[test]
fn documented_values_are_the_defaults() {
    let c = conf();
    let t = c.table();
    same::<ReaderConfig>(t.get("reader"), "reader");
    same::<AnalyzerConfig>(t.get("analyzer"), "analyzer");
    same::<FlowConfig>(t.get("flows"), "flows");
    same::<DefragSection>(t.get("defrag"), "defrag");
    same::<StreamSection>(t.get("tcp_reassembly"), "tcp_reassembly");
    same::<libpcap_analyzer::memory::MemoryConfig>(t.get("memory"), "memory");
    let p = t.get("plugin");
    let plugin = |n: &str| p.and_then(|p| p.get(n));
    same::<ConnectionsConfig>(plugin("connections"), "plugin.connections");
    same::<BasicStatsConfig>(plugin("basic-stats"), "plugin.basic-stats");
    same::<CommunityIdConfig>(plugin("community-id"), "plugin.community-id");
    same::<DnsConfig>(plugin("dns"), "plugin.dns");
    same::<TlsConfig>(plugin("tls"), "plugin.tls");
    same::<HexdumpConfig>(plugin("hexdump"), "plugin.hexdump");
}

#[test]
fn every_builtin_plugin_builds_from_it_without_warnings() {
    let c = conf();
    let registry = builtin_registry();
    let names: Vec<String> = registry.names().into_iter().map(str::to_string).collect();
    registry.build(&names, &c).unwrap();
    libpcap_analyzer::EngineConfig::from_config(&c).unwrap();
    let _: ReaderConfig = c.section("reader").unwrap();
    assert_eq!(c.take_warnings(), Vec::<String>::new());
}
