//! The TOML configuration, with typed access to each section.
//!
//! A configuration file is a TOML document whose top-level tables are
//! sections (`[reader]`, `[analyzer]`, …) and whose `[plugin.NAME]` tables
//! configure plugins. Each consumer reads its section as a typed struct with
//! [`Config::section`]; keys the struct does not know are reported with a
//! `log::warn!` and returned by [`Config::take_warnings`], never silently lost.

use crate::{Error, Result};
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::Mutex;

/// A parsed configuration.
#[derive(Debug, Default)]
pub struct Config {
    table: toml::Table,
    warnings: Mutex<Vec<String>>,
}

impl Clone for Config {
    fn clone(&self) -> Self {
        Config {
            table: self.table.clone(),
            warnings: Mutex::new(Vec::new()),
        }
    }
}

impl Config {
    /// An empty configuration: every section takes its defaults.
    pub fn new() -> Config {
        Config::default()
    }

    /// Parses a configuration from TOML text.
    ///
    /// # Errors
    /// [`Error::Config`] with the TOML parser's message (line and column).
    pub fn from_toml(text: &str) -> Result<Config> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| Error::Config(e.to_string()))?;
        Ok(Config {
            table,
            warnings: Mutex::new(Vec::new()),
        })
    }

    /// Reads and parses a configuration file.
    ///
    /// # Errors
    /// [`Error::Open`] when the file cannot be read, [`Error::Config`] when it
    /// is not valid TOML.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// The raw TOML table.
    pub fn table(&self) -> &toml::Table {
        &self.table
    }

    /// Sets `section.key = value`, creating the section if needed (used to let
    /// command-line options override the file).
    pub fn set(&mut self, section: &str, key: &str, value: impl Into<toml::Value>) {
        let entry = self
            .table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        if let toml::Value::Table(t) = entry {
            t.insert(key.to_string(), value.into());
        }
    }

    /// Reads the top-level table `name` as a `T`; a missing table gives
    /// `T`'s defaults (through an empty table, so `#[serde(default)]` applies).
    ///
    /// # Errors
    /// [`Error::Config`] when a value has the wrong type or is out of range.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let value = self
            .table
            .get(name)
            .cloned()
            .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
        self.decode(name, value)
    }

    /// Reads the table `[plugin.NAME]` as a `T` (defaults when missing).
    ///
    /// # Errors
    /// [`Error::Config`] when a value has the wrong type.
    pub fn plugin<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let value = self
            .table
            .get("plugin")
            .and_then(|p| p.get(name))
            .cloned()
            .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
        self.decode(&format!("plugin.{name}"), value)
    }

    /// `true` when the file has a `[plugin.NAME]` table.
    pub fn has_plugin_table(&self, name: &str) -> bool {
        self.table.get("plugin").and_then(|p| p.get(name)).is_some()
    }

    /// Warns about top-level sections that are not in `known` (and about
    /// `[plugin.X]` tables whose X is not in `known_plugins`, when given).
    pub fn check_sections(&self, known: &[&str], known_plugins: Option<&[&str]>) {
        for key in self.table.keys() {
            if key != "plugin" && !known.contains(&key.as_str()) {
                self.warn(format!(
                    "unknown configuration section or key '{key}' (ignored)"
                ));
            }
        }
        if let (Some(kp), Some(toml::Value::Table(p))) = (known_plugins, self.table.get("plugin")) {
            for key in p.keys() {
                if !kp.contains(&key.as_str()) {
                    self.warn(format!(
                        "configuration for unknown plugin 'plugin.{key}' (ignored)"
                    ));
                }
            }
        }
    }

    /// The warnings collected so far (unknown keys), emptied.
    pub fn take_warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    fn warn(&self, msg: String) {
        log::warn!("{msg}");
        if let Ok(mut w) = self.warnings.lock()
            && !w.contains(&msg)
        {
            w.push(msg);
        }
    }

    fn decode<T: DeserializeOwned>(&self, name: &str, value: toml::Value) -> Result<T> {
        let mut unknown = Vec::new();
        let r = serde_ignored::deserialize(value, |path| unknown.push(path.to_string())).map_err(
            |e: toml::de::Error| {
                let m = e.to_string();
                Error::Config(format!("[{name}]: {}{}", m.trim_end(), range_hint(&m)))
            },
        )?;
        for path in unknown {
            self.warn(format!(
                "unknown configuration key '{name}.{path}' (ignored)"
            ));
        }
        Ok(r)
    }
}

/// The accepted range of an integer type serde names in `message`
/// ("expected u16"), to say what to give instead.
fn range_hint(message: &str) -> String {
    let ranges = [
        ("expected u8", u64::from(u8::MAX)),
        ("expected u16", u64::from(u16::MAX)),
        ("expected u32", u64::from(u32::MAX)),
        ("expected u64", u64::MAX),
        ("expected usize", usize::MAX as u64),
    ];
    ranges
        .iter()
        .find(|(t, _)| message.contains(t))
        .map(|(_, max)| format!(" (give a whole number from 0 to {max})"))
        .unwrap_or_default()
}

/// Settings of the capture file readers (section `[reader]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct ReaderConfig {
    /// Initial size of the circular read buffer, in bytes.
    pub buffer_size: usize,
    /// Largest block or record accepted, in bytes: the buffer grows up to this
    /// size for a large valid block; a longer declared length is a corrupt file.
    /// Also the memory a decompressor may use for its history (xz dictionary,
    /// zstd window), at least 128 MiB.
    pub max_block_size: usize,
    /// Read classic pcap files into shared chunks, so that packets reach
    /// worker threads without a copy ([`crate::open_capture`]); `false` reads
    /// every format through the streaming reader and copies packets into
    /// batches for the workers.
    pub shared_chunks: bool,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            buffer_size: 1 << 20,
            max_block_size: 256 << 20,
            shared_chunks: true,
        }
    }
}

impl ReaderConfig {
    /// Checks the values: `max_block_size` from 64 bytes to 4 GiB - 1 (the
    /// largest length a pcapng block can declare), `buffer_size` from 64
    /// bytes to `max_block_size`.
    ///
    /// # Errors
    /// A message naming the key, its value and the accepted range.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let max = u64::from(u32::MAX);
        let block = self.max_block_size as u64;
        if !(64..=max).contains(&block) {
            return Err(format!(
                "[reader] max_block_size = {block}: give a number of bytes from 64 to {max}"
            ));
        }
        let buf = self.buffer_size as u64;
        if !(64..=block).contains(&buf) {
            return Err(format!(
                "[reader] buffer_size = {buf}: give a number of bytes from 64 to max_block_size \
                 ({block})"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_limits_are_checked() {
        assert!(ReaderConfig::default().validate().is_ok());
        for (buffer_size, max_block_size, key) in [
            (0, 1 << 20, "buffer_size = 0"),
            (1 << 21, 1 << 20, "buffer_size = 2097152"),
            (64, 63, "max_block_size = 63"),
            (64, 1 << 33, "max_block_size = 8589934592"),
        ] {
            let e = ReaderConfig {
                buffer_size,
                max_block_size,
                ..ReaderConfig::default()
            }
            .validate()
            .unwrap_err();
            assert!(e.starts_with(&format!("[reader] {key}:")), "{e}");
        }
    }

    #[test]
    fn missing_section_gives_defaults() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(
            c.section::<ReaderConfig>("reader").unwrap(),
            ReaderConfig::default()
        );
    }

    #[test]
    fn unknown_keys_are_warned_not_fatal() {
        let c = Config::from_toml("[reader]\nbuffer_size = 4096\nbufer_size = 1\n[foo]\n").unwrap();
        let r: ReaderConfig = c.section("reader").unwrap();
        assert_eq!(r.buffer_size, 4096);
        c.check_sections(&["reader"], None);
        let w = c.take_warnings();
        assert!(w.iter().any(|m| m.contains("reader.bufer_size")), "{w:?}");
        assert!(w.iter().any(|m| m.contains("'foo'")), "{w:?}");
    }

    #[test]
    fn wrong_type_is_an_error() {
        let c = Config::from_toml("[reader]\nbuffer_size = \"big\"\n").unwrap();
        let e = c.section::<ReaderConfig>("reader").unwrap_err();
        assert!(e.to_string().contains("[reader]"), "{e}");
    }

    #[test]
    fn out_of_type_integers_say_the_range() {
        let c = Config::from_toml("[reader]\nbuffer_size = -1\n").unwrap();
        let e = c.section::<ReaderConfig>("reader").unwrap_err().to_string();
        assert!(e.contains("buffer_size"), "{e}");
        assert!(e.contains("give a whole number from 0 to"), "{e}");
    }

    #[test]
    fn set_overrides() {
        let mut c = Config::from_toml("[reader]\nbuffer_size = 4096\n").unwrap();
        c.set("reader", "buffer_size", 8192i64);
        assert_eq!(
            c.section::<ReaderConfig>("reader").unwrap().buffer_size,
            8192
        );
    }

    #[test]
    fn plugin_tables() {
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct P {
            n: u32,
        }
        let c = Config::from_toml("[plugin.x]\nn = 3\n").unwrap();
        assert_eq!(c.plugin::<P>("x").unwrap().n, 3);
        assert_eq!(c.plugin::<P>("y").unwrap().n, 0);
        assert!(c.has_plugin_table("x"));
    }
}
