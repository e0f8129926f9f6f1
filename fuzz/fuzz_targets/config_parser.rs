//! Arbitrary text as a configuration file: parsing, every section's typed
//! reading and the engine's validation give values or errors, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use libpcap_analyzer::config::EngineConfig;
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_tools::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml(text) else {
        return;
    };
    if let Ok(engine) = EngineConfig::from_config(&config) {
        let _ = engine.validate();
    }
    // every built-in plugin reads (and checks) its own section
    let registry = builtin_registry();
    for name in registry.names() {
        let _ = registry.build(&[name.to_string()], &config);
    }
    let _ = config.take_warnings();
});
