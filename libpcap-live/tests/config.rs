//! `[live]` in conf/pcap-analyzer.conf documents exactly the code's defaults.

#![allow(clippy::unwrap_used, missing_docs)] // tests fail loudly

use libpcap_live::afpacket::LiveConfig;
use libpcap_tools::Config;
use std::path::Path;

#[test]
fn documented_live_section_is_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/pcap-analyzer.conf");
    let c = Config::from_file(&path).unwrap();
    let file = c.table().get(LiveConfig::SECTION).cloned().unwrap();
    let default = toml::Value::try_from(LiveConfig::default()).unwrap();
    assert_eq!(
        file, default,
        "[live] in conf/pcap-analyzer.conf differs from the defaults"
    );
    let parsed: LiveConfig = c.section(LiveConfig::SECTION).unwrap();
    assert_eq!(parsed, LiveConfig::default());
    assert_eq!(c.take_warnings(), Vec::<String>::new());
}
