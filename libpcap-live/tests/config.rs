//! `[live]` and `[nfqueue]` in conf/pcap-analyzer.conf document exactly the code's defaults.

#![allow(clippy::unwrap_used, missing_docs)] // tests fail loudly

use libpcap_live::afpacket::LiveConfig;
use libpcap_live::nfqueue::NfqueueConfig;
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

#[test]
fn documented_nfqueue_section_is_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/pcap-analyzer.conf");
    let c = Config::from_file(&path).unwrap();
    let file = c.table().get(NfqueueConfig::SECTION).cloned().unwrap();
    let default = toml::Value::try_from(NfqueueConfig::default()).unwrap();
    assert_eq!(
        file, default,
        "[nfqueue] in conf/pcap-analyzer.conf differs from the defaults"
    );
    let parsed: NfqueueConfig = c.section(NfqueueConfig::SECTION).unwrap();
    assert_eq!(parsed, NfqueueConfig::default());
    assert_eq!(c.take_warnings(), Vec::<String>::new());
}
