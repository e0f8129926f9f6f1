//! Typed configuration sections of the analyzer.

use crate::defrag::{DefragConfig, OverlapPolicy};
use crate::flow::FlowConfig;
use crate::reassembly::StreamConfig;
use libpcap_tools::{Config, Result};

/// Section `[analyzer]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct AnalyzerConfig {
    /// Verify IPv4 header checksums and count bad ones as anomalies
    /// (`ipv4_bad_checksum`); packets are decoded either way.
    pub do_checksums: bool,
    /// Most tunnel levels decoded below the outer packet.
    pub max_tunnel_depth: u8,
    /// UDP destination ports decoded as VXLAN (4789 is IANA's, 8472 the
    /// Linux kernel's default).
    pub vxlan_ports: Vec<u16>,
    /// UDP destination ports decoded as Geneve.
    pub geneve_ports: Vec<u16>,
    /// UDP destination ports decoded as VXLAN-GPE (with NSH).
    pub vxlan_gpe_ports: Vec<u16>,
    /// UDP destination ports decoded as GRE-in-UDP (RFC 8086).
    pub gre_udp_ports: Vec<u16>,
    /// UDP destination ports decoded as MPLS-in-UDP (RFC 7510).
    pub mpls_udp_ports: Vec<u16>,
    /// UDP ports (either side) decoded as GTP-U.
    pub gtp_ports: Vec<u16>,
    /// UDP ports (either side) decoded as Teredo when an IPv6 packet follows.
    pub teredo_ports: Vec<u16>,
    /// Errors after which a plugin is disabled (0: never).
    pub max_plugin_errors: u64,
}

impl Default for AnalyzerConfig {
    fn default() -> Self {
        AnalyzerConfig {
            do_checksums: false,
            max_tunnel_depth: 4,
            vxlan_ports: vec![4789, 8472],
            geneve_ports: vec![6081],
            vxlan_gpe_ports: vec![4790],
            gre_udp_ports: vec![4754],
            mpls_udp_ports: vec![6635],
            gtp_ports: vec![2152],
            teredo_ports: vec![3544],
            max_plugin_errors: 1000,
        }
    }
}

/// Section `[defrag]`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct DefragSection {
    /// Seconds a partial datagram waits for its missing fragments.
    pub timeout: f64,
    /// Most datagrams being reassembled at once (the oldest is dropped beyond).
    pub max_datagrams: usize,
    /// Most fragment bytes buffered at once by the whole run (all workers;
    /// also bounded by the `[memory] fragments` share).
    pub max_bytes: usize,
    /// Most fragments in one datagram.
    pub max_fragments_per_datagram: usize,
    /// What to do with overlapping fragments: `first` (bytes received first
    /// win), `last`, or `drop-datagram` (RFC 5722).
    pub overlap_policy: OverlapPolicy,
}

impl Default for DefragSection {
    fn default() -> Self {
        let d = DefragConfig::default();
        DefragSection {
            timeout: d.timeout_ns as f64 / 1e9,
            max_datagrams: d.max_datagrams,
            max_bytes: d.max_bytes,
            max_fragments_per_datagram: d.max_fragments_per_datagram,
            overlap_policy: d.policy,
        }
    }
}

impl DefragSection {
    /// The defragmenter's settings.
    pub fn to_config(&self) -> DefragConfig {
        DefragConfig {
            timeout_ns: (self.timeout.max(0.0) * 1e9).min(i64::MAX as f64) as i64,
            max_datagrams: self.max_datagrams,
            max_bytes: self.max_bytes,
            max_fragments_per_datagram: self.max_fragments_per_datagram,
            policy: self.overlap_policy,
        }
    }
}

/// Section `[tcp_reassembly]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct StreamSection {
    /// Out-of-order bytes held per direction of a connection; beyond, the
    /// stream skips to the buffered data and reports a gap.
    pub max_buffered_per_direction: usize,
    /// Out-of-order bytes held for all connections of the run (all
    /// workers; also bounded by the `[memory] tcp_reassembly` share).
    pub max_buffered_total: usize,
    /// Segments further ahead of the next expected byte than this are
    /// dropped (counted) instead of buffered.
    pub max_window_ahead: u32,
}

impl Default for StreamSection {
    fn default() -> Self {
        let s = StreamConfig::default();
        StreamSection {
            max_buffered_per_direction: s.max_buffered_per_direction,
            max_buffered_total: s.max_buffered_total,
            max_window_ahead: s.max_window_ahead,
        }
    }
}

impl StreamSection {
    /// The reassembler's settings.
    pub fn to_config(&self) -> StreamConfig {
        StreamConfig {
            max_buffered_per_direction: self.max_buffered_per_direction,
            max_buffered_total: self.max_buffered_total,
            max_window_ahead: self.max_window_ahead,
        }
    }
}

/// All sections the analyzer reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EngineConfig {
    /// `[analyzer]`.
    pub analyzer: AnalyzerConfig,
    /// `[flows]`.
    pub flows: FlowConfig,
    /// `[defrag]`.
    pub defrag: DefragSection,
    /// `[tcp_reassembly]`.
    pub tcp_reassembly: StreamSection,
    /// `[memory]`: the run's memory budget and its shares.
    pub memory: crate::memory::MemoryConfig,
}

impl EngineConfig {
    /// The sections this config reads (for unknown-section warnings).
    pub const SECTIONS: &'static [&'static str] =
        &["analyzer", "flows", "defrag", "tcp_reassembly", "memory"];

    /// Reads the sections from `config`, and checks their values
    /// ([`EngineConfig::validate`]).
    ///
    /// # Errors
    /// When a value has the wrong type or is out of its range.
    pub fn from_config(config: &Config) -> Result<EngineConfig> {
        let cfg = EngineConfig {
            analyzer: config.section("analyzer")?,
            flows: config.section("flows")?,
            defrag: config.section("defrag")?,
            tcp_reassembly: config.section("tcp_reassembly")?,
            memory: config.section("memory")?,
        };
        cfg.validate().map_err(libpcap_tools::Error::Config)?;
        Ok(cfg)
    }

    /// Checks every value against its accepted range: timeouts are finite
    /// seconds (positive, at most a year), caps at least 1.
    ///
    /// # Errors
    /// A message naming the first key out of range, its value and the
    /// accepted range.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let a = &self.analyzer;
        check_count(
            "[analyzer] max_tunnel_depth",
            a.max_tunnel_depth.into(),
            0,
            32,
        )?;
        let f = &self.flows;
        check_count("[flows] max_flows", f.max_flows as u64, 1, MAX_COUNT)?;
        check_secs("[flows] tcp_timeout", f.tcp_timeout, false)?;
        check_secs("[flows] tcp_close_timeout", f.tcp_close_timeout, true)?;
        check_secs("[flows] udp_timeout", f.udp_timeout, false)?;
        check_secs("[flows] icmp_timeout", f.icmp_timeout, false)?;
        check_secs("[flows] other_timeout", f.other_timeout, false)?;
        let d = &self.defrag;
        check_secs("[defrag] timeout", d.timeout, false)?;
        check_count(
            "[defrag] max_datagrams",
            d.max_datagrams as u64,
            1,
            MAX_COUNT,
        )?;
        check_count("[defrag] max_bytes", d.max_bytes as u64, 1, MAX_BYTES)?;
        check_count(
            "[defrag] max_fragments_per_datagram",
            d.max_fragments_per_datagram as u64,
            1,
            65_535,
        )?;
        let t = &self.tcp_reassembly;
        check_count(
            "[tcp_reassembly] max_buffered_total",
            t.max_buffered_total as u64,
            1,
            MAX_BYTES,
        )?;
        check_count(
            "[tcp_reassembly] max_buffered_per_direction",
            t.max_buffered_per_direction as u64,
            1,
            t.max_buffered_total as u64,
        )?;
        check_count(
            "[tcp_reassembly] max_window_ahead",
            t.max_window_ahead.into(),
            1,
            u32::MAX.into(),
        )?;
        self.memory.validate()?;
        Ok(())
    }
}

/// The largest count a cap may have (flows, datagrams, rows): 10^9.
pub const MAX_COUNT: u64 = 1_000_000_000;
/// The largest byte budget a cap may have: 1 TiB.
pub const MAX_BYTES: u64 = 1 << 40;
/// The longest timeout: one year, in seconds.
pub const MAX_SECS: f64 = 365.0 * 86_400.0;

/// Checks that `value` of key `key` is in `min..=max`.
///
/// # Errors
/// A message naming the key, the value and the range.
pub fn check_count(key: &str, value: u64, min: u64, max: u64) -> std::result::Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{key} = {value}: give a whole number from {min} to {max}"
        ))
    }
}

/// Checks that the seconds `value` of key `key` are finite, at most
/// [`MAX_SECS`], and positive (or zero when `zero_ok`).
///
/// # Errors
/// A message naming the key, the value and the range.
pub fn check_secs(key: &str, value: f64, zero_ok: bool) -> std::result::Result<(), String> {
    let low_ok = if zero_ok { value >= 0.0 } else { value > 0.0 };
    if value.is_finite() && low_ok && value <= MAX_SECS {
        Ok(())
    } else {
        Err(format!(
            "{key} = {value}: give seconds {} {MAX_SECS} (one year)",
            if zero_ok {
                "from 0 to"
            } else {
                "above 0, at most"
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_key_and_range() {
        assert_eq!(EngineConfig::default().validate(), Ok(()));
        let mut c = EngineConfig::default();
        c.flows.udp_timeout = f64::NAN;
        assert_eq!(
            c.validate(),
            Err(
                "[flows] udp_timeout = NaN: give seconds above 0, at most 31536000 (one year)"
                    .to_string()
            )
        );
        let mut c = EngineConfig::default();
        c.flows.tcp_close_timeout = 0.0;
        assert_eq!(c.validate(), Ok(()));
        c.defrag.max_datagrams = 0;
        assert_eq!(
            c.validate(),
            Err("[defrag] max_datagrams = 0: give a whole number from 1 to 1000000000".to_string())
        );
        let mut c = EngineConfig::default();
        c.tcp_reassembly.max_buffered_per_direction = c.tcp_reassembly.max_buffered_total + 1;
        assert!(
            c.validate()
                .unwrap_err()
                .starts_with("[tcp_reassembly] max_buffered_per_direction")
        );
        let t = Config::from_toml("[defrag]\ntimeout = -inf\n").unwrap();
        let e = EngineConfig::from_config(&t).unwrap_err().to_string();
        assert!(e.contains("[defrag] timeout = -inf"), "{e}");
    }
}
