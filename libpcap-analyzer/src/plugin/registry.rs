//! Plugin builders and the registry that holds them.

use super::{Plugin, PluginError, PluginResult};
use libpcap_tools::Config;

/// Creates instances of one plugin from the configuration.
///
/// The analyzer calls [`PluginBuilder::build`] once per worker thread (once
/// in all for shared plugins). A builder reads its `[plugin.NAME]` table as
/// a typed struct with [`Config::plugin`].
pub trait PluginBuilder: Send + Sync {
    /// Name of the plugin built (kebab-case, as given to `--plugins`).
    fn name(&self) -> &str;

    /// One line saying what the plugin does.
    fn description(&self) -> &str;

    /// `true` if the plugin runs when no plugin list is given.
    fn enabled_by_default(&self) -> bool {
        true
    }

    /// Builds one instance.
    ///
    /// # Errors
    /// When the plugin's configuration is invalid.
    fn build(&self, config: &Config) -> PluginResult<Box<dyn Plugin>>;
}

/// The set of known plugin builders: the built-in ones and any added by a
/// third-party crate.
#[derive(Default)]
pub struct PluginRegistry {
    builders: Vec<Box<dyn PluginBuilder>>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.builders.iter().map(|b| b.name()))
            .finish()
    }
}

impl PluginRegistry {
    /// An empty registry.
    pub fn new() -> PluginRegistry {
        PluginRegistry::default()
    }

    /// Adds a builder; a builder with the same name replaces the earlier one.
    pub fn add_builder(&mut self, builder: Box<dyn PluginBuilder>) {
        self.builders.retain(|b| b.name() != builder.name());
        self.builders.push(builder);
    }

    /// The builders, in registration order.
    pub fn builders(&self) -> impl Iterator<Item = &dyn PluginBuilder> {
        self.builders.iter().map(|b| b.as_ref())
    }

    /// The builder of `name`.
    pub fn builder(&self, name: &str) -> Option<&dyn PluginBuilder> {
        self.builders
            .iter()
            .find(|b| b.name() == name)
            .map(|b| b.as_ref())
    }

    /// Names of all builders, in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.builders.iter().map(|b| b.name()).collect()
    }

    /// Checks a list of plugin names and returns them (the default plugins
    /// when `names` is `None`).
    ///
    /// # Errors
    /// A message naming the unknown plugin and listing the available ones.
    pub fn select(&self, names: Option<&[String]>) -> Result<Vec<String>, PluginError> {
        match names {
            None => Ok(self
                .builders
                .iter()
                .filter(|b| b.enabled_by_default())
                .map(|b| b.name().to_string())
                .collect()),
            Some(list) => {
                let mut out: Vec<String> = Vec::new();
                for n in list {
                    if self.builder(n).is_none() {
                        return Err(PluginError::new(
                            n,
                            format!(
                                "unknown plugin '{n}'; available plugins: {}",
                                self.names().join(", ")
                            ),
                        ));
                    }
                    if !out.contains(n) {
                        out.push(n.clone());
                    }
                }
                Ok(out)
            }
        }
    }

    /// Builds one instance of each named plugin.
    ///
    /// # Errors
    /// When a name is unknown or a builder fails.
    pub fn build(&self, names: &[String], config: &Config) -> PluginResult<Vec<Box<dyn Plugin>>> {
        names
            .iter()
            .map(|n| {
                self.builder(n)
                    .ok_or_else(|| PluginError::new(n, format!("unknown plugin '{n}'")))
                    .and_then(|b| b.build(config))
            })
            .collect()
    }
}
