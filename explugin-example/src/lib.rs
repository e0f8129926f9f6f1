#![doc = include_str!("../README.md")]

pub mod port_scan;

pub use port_scan::{
    Detection, Dropped, NAME, PortScanConfig, PortScanPlugin, PortScanPluginBuilder, ScanKind,
};

use libpcap_analyzer::plugin::PluginRegistry;

/// Adds this crate's plugin builders (`port-scan`) to `registry`.
///
/// ```
/// let mut registry = libpcap_analyzer::plugins::builtin_registry();
/// explugin_example::register(&mut registry);
/// assert!(registry.builder("port-scan").is_some());
/// ```
pub fn register(registry: &mut PluginRegistry) {
    registry.add_builder(Box::new(PortScanPluginBuilder));
}
