//! The value checks of the built-in plugins' sections (`[plugin.NAME]`):
//! every count, size and name against its accepted range, with a message
//! naming the key. [`check_config`] runs them all; each builder runs its own
//! too, so a plugin built from a bad section fails the same way.

use super::basic_stats::BasicStatsConfig;
use super::community_id::CommunityIdConfig;
use super::connections::ConnectionsConfig;
use super::dns::DnsConfig;
use super::hexdump::HexdumpConfig;
use super::tls::TlsConfig;
use crate::config::{MAX_BYTES, MAX_COUNT, check_count};
use crate::plugin::{PluginError, PluginResult};
use libpcap_tools::Config;

impl ConnectionsConfig {
    /// Checks the values: `interval` seconds from 0 to 86400, `file` a
    /// plain file name, `max_connections` at most 10^9 (0: no limit).
    ///
    /// # Errors
    /// A message naming the key, its value and the accepted range.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.interval.is_finite() && (0.0..=86_400.0).contains(&self.interval)) {
            return Err(format!(
                "[plugin.connections] interval = {}: give seconds between 0 (off) and 86400",
                self.interval
            ));
        }
        let name = format!("{}.{}", self.file, self.format.extension());
        libpcap_tools::outfile::check_file_name("[plugin.connections] file", &self.file)?;
        libpcap_tools::outfile::check_file_name("[plugin.connections] file", &name)?;
        check_count(
            "[plugin.connections] max_connections",
            self.max_connections as u64,
            0,
            MAX_COUNT,
        )
    }
}

impl BasicStatsConfig {
    /// Checks `max_conversations` (1 to 10^9).
    ///
    /// # Errors
    /// A message naming the key, its value and the accepted range.
    pub fn validate(&self) -> Result<(), String> {
        check_count(
            "[plugin.basic-stats] max_conversations",
            self.max_conversations as u64,
            1,
            MAX_COUNT,
        )
    }
}

impl HexdumpConfig {
    /// Checks the values: `max_bytes` 1 to 65535, `max_packets` 1 to 10^9,
    /// `layers` names (`link`, `network`, `transport`).
    ///
    /// # Errors
    /// A message naming the key, its value and the accepted range.
    pub fn validate(&self) -> Result<(), String> {
        check_count(
            "[plugin.hexdump] max_bytes",
            self.max_bytes as u64,
            1,
            65_535,
        )?;
        check_count(
            "[plugin.hexdump] max_packets",
            self.max_packets,
            1,
            MAX_COUNT,
        )?;
        if let Some(bad) = self
            .layers
            .iter()
            .find(|l| !matches!(l.as_str(), "link" | "network" | "transport"))
        {
            return Err(format!(
                "[plugin.hexdump] layers: unknown layer '{bad}'; give link, network or transport"
            ));
        }
        Ok(())
    }
}

impl DnsConfig {
    /// Checks the values: at least one port, `max_tcp_buffer` from 514
    /// bytes (a 512-byte message and its length) to 16 MiB, `max_tcp_total`
    /// from `max_tcp_buffer` to 1 TiB, `max_pending` from 1 to 10^9.
    ///
    /// # Errors
    /// A message naming the key, its value and the accepted range.
    pub fn validate(&self) -> Result<(), String> {
        if self.ports.is_empty() {
            return Err(
                "[plugin.dns] ports = []: give at least one port (53 is DNS's)".to_string(),
            );
        }
        check_count(
            "[plugin.dns] max_tcp_buffer",
            self.max_tcp_buffer as u64,
            514,
            16 << 20,
        )?;
        check_count(
            "[plugin.dns] max_tcp_total",
            self.max_tcp_total as u64,
            self.max_tcp_buffer as u64,
            MAX_BYTES,
        )?;
        check_count(
            "[plugin.dns] max_pending",
            self.max_pending as u64,
            1,
            MAX_COUNT,
        )
    }
}

impl TlsConfig {
    /// Checks the values: `max_buffer` from 1 byte to 1 GiB,
    /// `max_total_buffer` from `max_buffer` to 1 TiB, `max_preamble` from 0
    /// to 1 GiB.
    ///
    /// # Errors
    /// A message naming the key, its value and the accepted range.
    pub fn validate(&self) -> Result<(), String> {
        check_count(
            "[plugin.tls] max_buffer",
            self.max_buffer as u64,
            1,
            1 << 30,
        )?;
        check_count(
            "[plugin.tls] max_total_buffer",
            self.max_total_buffer as u64,
            self.max_buffer as u64,
            MAX_BYTES,
        )?;
        check_count(
            "[plugin.tls] max_preamble",
            self.max_preamble as u64,
            0,
            1 << 30,
        )
    }
}

/// Reads and checks the section of the built-in plugin `name`.
fn section<T: serde::de::DeserializeOwned>(
    config: &Config,
    name: &str,
    check: impl Fn(&T) -> Result<(), String>,
) -> PluginResult<()> {
    let cfg: T = config
        .plugin(name)
        .map_err(|e| PluginError::wrap(name, e))?;
    check(&cfg).map_err(|m| PluginError::new(name, m))
}

/// Checks the sections of every built-in plugin, run or not (a bad value
/// is a mistake in the file either way).
///
/// # Errors
/// The first section with a value of the wrong type or out of its range,
/// naming the key.
pub fn check_config(config: &Config) -> PluginResult<()> {
    section(config, "connections", ConnectionsConfig::validate)?;
    section(config, "basic-stats", BasicStatsConfig::validate)?;
    section(config, "hexdump", HexdumpConfig::validate)?;
    section(config, "dns", DnsConfig::validate)?;
    section(config, "tls", TlsConfig::validate)?;
    section(config, "community-id", |_: &CommunityIdConfig| Ok(()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_each_bad_value_names_its_key() {
        check_config(&Config::new()).unwrap();
        for (toml, key) in [
            ("[plugin.connections]\ninterval = -1.0", "interval = -1"),
            ("[plugin.connections]\ninterval = nan", "interval = NaN"),
            ("[plugin.connections]\nfile = \"../x\"", "file = \"../x\""),
            (
                "[plugin.connections]\nfile = \"/tmp/x\"",
                "file = \"/tmp/x\"",
            ),
            (
                "[plugin.basic-stats]\nmax_conversations = 0",
                "max_conversations = 0",
            ),
            ("[plugin.hexdump]\nmax_bytes = 0", "max_bytes = 0"),
            (
                "[plugin.hexdump]\nlayers = [\"stream\"]",
                "unknown layer 'stream'",
            ),
            ("[plugin.dns]\nports = []", "ports = []"),
            ("[plugin.dns]\nmax_tcp_buffer = 10", "max_tcp_buffer = 10"),
            ("[plugin.dns]\nmax_tcp_total = 1000", "max_tcp_total = 1000"),
            ("[plugin.dns]\nmax_pending = 0", "max_pending = 0"),
            ("[plugin.tls]\nmax_buffer = 0", "max_buffer = 0"),
            ("[plugin.tls]\nmax_total_buffer = 5", "max_total_buffer = 5"),
        ] {
            let c = Config::from_toml(toml).unwrap();
            let e = check_config(&c).unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }
}
