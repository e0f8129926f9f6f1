//! Calling plugins: per-layer lists, error accounting, panic containment.

use crate::plugin::{Interest, Layers, Plugin, PluginError};
use crate::stats::AnalyzerStats;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

/// A plugin instance: owned by one worker, or shared by all behind a lock.
pub enum PluginHandle {
    /// This worker's own instance.
    Owned(Box<dyn Plugin>),
    /// One instance for all workers.
    Shared(Arc<Mutex<Box<dyn Plugin>>>),
}

impl std::fmt::Debug for PluginHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginHandle::Owned(p) => write!(f, "Owned({})", p.name()),
            PluginHandle::Shared(_) => write!(f, "Shared"),
        }
    }
}

/// The plugins of one analyzer and which of them each layer calls.
#[derive(Debug, Default)]
pub(crate) struct Dispatch {
    pub(crate) slots: Vec<Slot>,
    pub(crate) link: Vec<usize>,
    pub(crate) network: Vec<usize>,
    pub(crate) transport: Vec<usize>,
    pub(crate) stream: Vec<usize>,
    pub(crate) flow_events: Vec<usize>,
    /// Name of a plugin that panicked: the run must end with an error.
    pub(crate) panicked: Option<String>,
    pub(crate) max_errors: u64,
}

#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) handle: PluginHandle,
    pub(crate) interest: Interest,
    /// The transport and stream filter of `interest`, as bit sets.
    pub(crate) filter: KeyFilter,
    pub(crate) name: String,
    pub(crate) errors: u64,
    pub(crate) disabled: bool,
}

/// The stream plugins (by position in [`Dispatch::stream`]) still listening
/// to one direction of a flow's stream. Positions from 63 on share the last
/// bit, which is never cleared: those plugins cannot leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamListeners(u64);

impl StreamListeners {
    const SHARED: usize = 63;

    fn bit(k: usize) -> u64 {
        1 << k.min(Self::SHARED)
    }

    /// `true` if the plugin at position `k` listens.
    pub(crate) fn has(self, k: usize) -> bool {
        self.0 & Self::bit(k) != 0
    }

    /// The plugin at position `k` no longer listens.
    pub(crate) fn leave(&mut self, k: usize) {
        if k < Self::SHARED {
            self.0 &= !Self::bit(k);
        }
    }

    /// `true` if no plugin listens.
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The IP protocols and ports of an [`Interest`] as bit sets, so that the
/// check made for every packet and plugin is two bit tests instead of two
/// list scans.
#[derive(Debug)]
pub(crate) struct KeyFilter {
    protocols: Option<[u64; 4]>,
    ports: Option<Box<[u64; 1024]>>,
}

impl KeyFilter {
    fn new(interest: &Interest) -> KeyFilter {
        let protocols = interest.ip_protocols.as_ref().map(|list| {
            let mut set = [0u64; 4];
            for &p in list {
                if let Some(w) = set.get_mut(usize::from(p >> 6)) {
                    *w |= 1 << (p & 63);
                }
            }
            set
        });
        let ports = interest.ports.as_ref().map(|list| {
            let mut set = Box::new([0u64; 1024]);
            for &p in list {
                if let Some(w) = set.get_mut(usize::from(p >> 6)) {
                    *w |= 1 << (p & 63);
                }
            }
            set
        });
        KeyFilter { protocols, ports }
    }

    /// `true` if a packet of `key` passes (the layer is checked apart), as
    /// [`Interest::wants_key`].
    pub(crate) fn wants(&self, key: &libpcap_tools::FiveTuple) -> bool {
        let port = |p: u16| {
            self.ports.as_ref().is_none_or(|set| {
                set.get(usize::from(p >> 6))
                    .is_some_and(|w| w & (1 << (p & 63)) != 0)
            })
        };
        self.protocols.is_none_or(|set| {
            set.get(usize::from(key.proto >> 6))
                .is_some_and(|w| w & (1 << (key.proto & 63)) != 0)
        }) && (self.ports.is_none() || port(key.src_port) || port(key.dst_port))
    }
}

impl Dispatch {
    /// The stream plugins that want the reassembled stream of a flow of
    /// `key`, as a [`StreamListeners`] set (empty: no one does).
    pub(crate) fn stream_listeners(&self, key: &libpcap_tools::FiveTuple) -> StreamListeners {
        let mut set = 0u64;
        for (k, &i) in self.stream.iter().enumerate() {
            if self.slots.get(i).is_some_and(|s| s.filter.wants(key)) {
                set |= StreamListeners::bit(k);
            }
        }
        StreamListeners(set)
    }

    pub(crate) fn new(handles: Vec<PluginHandle>, max_errors: u64) -> Dispatch {
        let mut d = Dispatch {
            max_errors,
            ..Dispatch::default()
        };
        for handle in handles {
            let (name, interest) = match &handle {
                PluginHandle::Owned(p) => (p.name().to_string(), p.interest()),
                PluginHandle::Shared(m) => match m.lock() {
                    Ok(p) => (p.name().to_string(), p.interest()),
                    Err(_) => continue,
                },
            };
            let i = d.slots.len();
            let l = interest.layers;
            if l.contains(Layers::LINK) {
                d.link.push(i);
            }
            if l.contains(Layers::NETWORK) {
                d.network.push(i);
            }
            if l.contains(Layers::TRANSPORT) {
                d.transport.push(i);
            }
            if l.contains(Layers::STREAM) {
                d.stream.push(i);
            }
            if l.contains(Layers::FLOW_EVENTS) {
                d.flow_events.push(i);
            }
            d.slots.push(Slot {
                handle,
                filter: KeyFilter::new(&interest),
                interest,
                name,
                errors: 0,
                disabled: false,
            });
        }
        d
    }

    /// Calls `f` on plugin `i`, counting its error and containing a panic.
    #[inline]
    pub(crate) fn call<R: Default>(
        &mut self,
        i: usize,
        stats: &mut AnalyzerStats,
        f: impl FnOnce(&mut dyn Plugin) -> Result<R, PluginError>,
    ) -> R {
        let Some(slot) = self.slots.get_mut(i) else {
            return R::default();
        };
        if slot.disabled {
            return R::default();
        }
        let outcome = match &mut slot.handle {
            PluginHandle::Owned(p) => catch_unwind(AssertUnwindSafe(|| f(p.as_mut()))),
            PluginHandle::Shared(m) => match m.lock() {
                Ok(mut g) => catch_unwind(AssertUnwindSafe(|| f(g.as_mut()))),
                Err(_) => return R::default(),
            },
        };
        match outcome {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                slot.errors += 1;
                *stats.plugin_errors.entry(slot.name.clone()).or_default() += 1;
                if slot.errors == 1 {
                    log::warn!("{e} (further errors of this plugin are logged at debug level)");
                } else {
                    log::debug!("{e}");
                }
                if self.max_errors > 0 && slot.errors >= self.max_errors {
                    log::warn!(
                        "plugin {}: {} errors, disabled for the rest of the run",
                        slot.name,
                        slot.errors
                    );
                    slot.disabled = true;
                }
                R::default()
            }
            Err(_) => {
                log::error!(
                    "plugin {} panicked; the run will end with an error",
                    slot.name
                );
                slot.disabled = true;
                self.panicked.get_or_insert_with(|| slot.name.clone());
                R::default()
            }
        }
    }

    pub(crate) fn into_handles(self) -> Vec<PluginHandle> {
        self.slots.into_iter().map(|s| s.handle).collect()
    }
}
