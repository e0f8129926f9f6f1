//! Steering a run from another thread: pause, resume and stop, the counters
//! each analyzer publishes while it runs, and copies of the plugins'
//! results taken between two packets (intermediate reports).
//!
//! [`Session`](crate::session::Session) is the API built on it; a
//! [`RunControl`] is what the [`Engine`](crate::Engine) and each
//! [`Analyzer`](crate::Analyzer) read:
//!
//! - **State.** Before each event the reading loops look at the state (one
//!   relaxed atomic load). *Running*: as usual. *Stopping*: the loop ends as
//!   at the end of the input (flows drained). *Paused*: a live source is
//!   still read, so that the kernel does not drop, but its packets are
//!   discarded and counted (an inline source's are accepted); a file is not
//!   read until the run resumes or stops.
//! - **Counters.** Each analyzer publishes its counters (packets, bytes,
//!   anomalies, flows alive) every 1024 packets, at every idle tick of a
//!   live source and when it ends; reading loops publish the progress of
//!   their source as often. [`RunControl::counters`] sums them.
//! - **Snapshots.** [`RunControl::request_snapshot`] asks every analyzer
//!   for a copy of its plugins' results ([`Plugin::snapshot`]): each answers
//!   at its next event (a live source has one at least every poll interval;
//!   an idle worker wakes at least every 100 ms), and the copies are merged
//!   plugin by plugin. Plugins shared by all workers
//!   ([`Interest::shared`](crate::plugin::Interest::shared)) are copied
//!   once, without the active flows.

use crate::plugin::{Counters, Plugin};
use crate::stats::AnalyzerStats;
use libpcap_tools::SourceProgress;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A plugin instance shared by every worker.
pub(crate) type SharedPlugin = Arc<Mutex<Box<dyn Plugin>>>;

/// The copies of one analyzer's plugins, in plugin order (`None` for the
/// plugins that keep no intermediate results).
pub(crate) type PluginCopies = Vec<Option<Box<dyn Plugin>>>;

/// What the reading loops of a run do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Packets are analysed.
    Running,
    /// Live packets are read and discarded; files are not read.
    Paused,
    /// The loops end at their next event, as at the end of the input.
    Stopping,
}

impl RunState {
    fn from_u8(v: u8) -> RunState {
        match v {
            1 => RunState::Paused,
            2 => RunState::Stopping,
            _ => RunState::Running,
        }
    }
}

/// What the analyzers of a run have published so far (see the module docs
/// for how fresh it is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunCounters {
    /// Decoding counters of all analyzers (packets, bytes, anomalies, …).
    pub stats: AnalyzerStats,
    /// Flows in the flow tables now.
    pub flows_alive: u64,
    /// Flows created since the start.
    pub flows_created: u64,
    /// Live packets read while paused and discarded unanalysed.
    pub discarded_while_paused: u64,
    /// Progress of the sources, summed (`total_bytes` only when every
    /// source knows its own).
    pub input: SourceProgress,
    /// The plugins' counters ([`Plugin::counters`]), the workers' added by
    /// name; plugins shared by all workers are not in it (their counters
    /// come with the final results).
    pub plugins: BTreeMap<String, Counters>,
}

/// The counters one analyzer publishes.
#[derive(Debug, Default)]
pub(crate) struct ShardMonitor {
    flows_alive: AtomicU64,
    flows_created: AtomicU64,
    stats: Mutex<AnalyzerStats>,
    plugins: Mutex<Vec<(String, Counters)>>,
}

impl ShardMonitor {
    /// Publishes an analyzer's counters and its plugins'.
    pub(crate) fn publish(
        &self,
        stats: &AnalyzerStats,
        alive: usize,
        created: u64,
        plugins: Vec<(String, Counters)>,
    ) {
        self.flows_alive.store(alive as u64, Ordering::Relaxed);
        self.flows_created.store(created, Ordering::Relaxed);
        lock(&self.stats).clone_from(stats);
        *lock(&self.plugins) = plugins;
    }
}

/// Pending snapshot requests and the copies received.
#[derive(Default)]
struct Hub {
    /// Between [`RunControl::begin`] and [`RunControl::end`].
    open: bool,
    /// The current request.
    epoch: u64,
    /// One slot per analyzer.
    parts: Vec<Option<PluginCopies>>,
    /// Analyzers whose copy is being taken (pool workers share shards).
    claimed: Vec<bool>,
    /// Analyzers that ended: no copy will come.
    ended: Vec<bool>,
    /// The shared plugin instances, by plugin index.
    shared: Vec<Option<SharedPlugin>>,
}

/// The control of one run, shared by the thread that steers it and the
/// threads that run it. See the module docs.
pub struct RunControl {
    state: AtomicU8,
    wake_lock: Mutex<()>,
    wake: Condvar,
    discarded: AtomicU64,
    /// The epoch of the latest snapshot request (read at every event).
    requested: AtomicU64,
    hub: Mutex<Hub>,
    hub_ready: Condvar,
    monitors: Mutex<Vec<Arc<ShardMonitor>>>,
    inputs: Mutex<Vec<SourceProgress>>,
}

impl std::fmt::Debug for RunControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunControl")
            .field("state", &self.state())
            .field("discarded", &self.discarded.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for RunControl {
    fn default() -> Self {
        RunControl::new()
    }
}

/// Locks `m`, going on with the data of a thread that panicked while
/// holding it (counters and copies stay usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RunControl {
    /// A control in state [`RunState::Running`].
    pub fn new() -> RunControl {
        RunControl {
            state: AtomicU8::new(0),
            wake_lock: Mutex::new(()),
            wake: Condvar::new(),
            discarded: AtomicU64::new(0),
            requested: AtomicU64::new(0),
            hub: Mutex::new(Hub::default()),
            hub_ready: Condvar::new(),
            monitors: Mutex::new(Vec::new()),
            inputs: Mutex::new(Vec::new()),
        }
    }

    /// The current state.
    pub fn state(&self) -> RunState {
        RunState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Sets the state and wakes the loops waiting while paused. Once
    /// [`RunState::Stopping`], the state does not change any more.
    pub fn set_state(&self, s: RunState) {
        let v = match s {
            RunState::Running => 0,
            RunState::Paused => 1,
            RunState::Stopping => 2,
        };
        let _ = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                (cur != 2).then_some(v)
            });
        self.notify();
    }

    /// Wakes the loops waiting while paused.
    fn notify(&self) {
        let _g = lock(&self.wake_lock);
        self.wake.notify_all();
    }

    /// Waits while the run is paused, at most `limit` (the loop then looks
    /// at snapshot requests and the state again).
    pub(crate) fn wait_paused(&self, limit: Duration) {
        let g = lock(&self.wake_lock);
        if self.state() != RunState::Paused {
            return;
        }
        let _ = self.wake.wait_timeout(g, limit);
    }

    /// Counts a live packet discarded while paused.
    pub(crate) fn discard(&self) {
        self.discarded.fetch_add(1, Ordering::Relaxed);
    }

    /// Registers a run of `analyzers` analyzers reading `inputs` sources,
    /// with the shared plugin instances (by plugin index), and returns the
    /// monitor of each analyzer.
    pub(crate) fn begin(
        &self,
        analyzers: usize,
        inputs: usize,
        shared: Vec<Option<SharedPlugin>>,
    ) -> Vec<Arc<ShardMonitor>> {
        let monitors: Vec<_> = (0..analyzers)
            .map(|_| Arc::new(ShardMonitor::default()))
            .collect();
        *lock(&self.monitors) = monitors.clone();
        *lock(&self.inputs) = vec![SourceProgress::default(); inputs];
        let mut hub = lock(&self.hub);
        hub.open = true;
        hub.parts = (0..analyzers).map(|_| None).collect();
        hub.claimed = vec![false; analyzers];
        hub.ended = vec![false; analyzers];
        hub.shared = shared;
        monitors
    }

    /// The run ended: snapshot requests fail from now on.
    pub(crate) fn end(&self) {
        let mut hub = lock(&self.hub);
        hub.open = false;
        hub.shared.clear();
        hub.parts.iter_mut().for_each(|p| *p = None);
        drop(hub);
        self.hub_ready.notify_all();
    }

    /// Publishes the progress of source `i`.
    pub(crate) fn publish_input(&self, i: usize, p: SourceProgress) {
        if let Some(slot) = lock(&self.inputs).get_mut(i) {
            *slot = p;
        }
    }

    /// The counters published so far.
    pub fn counters(&self) -> RunCounters {
        let mut c = RunCounters {
            discarded_while_paused: self.discarded.load(Ordering::Relaxed),
            ..RunCounters::default()
        };
        for m in lock(&self.monitors).iter() {
            c.flows_alive += m.flows_alive.load(Ordering::Relaxed);
            c.flows_created += m.flows_created.load(Ordering::Relaxed);
            c.stats.merge(&lock(&m.stats));
            for (name, counters) in lock(&m.plugins).iter() {
                c.plugins.entry(name.clone()).or_default().add(counters);
            }
        }
        let inputs = lock(&self.inputs);
        let mut total = Some(0u64);
        for p in inputs.iter() {
            c.input.packets += p.packets;
            c.input.bytes += p.bytes;
            total = total.zip(p.total_bytes).map(|(a, b)| a + b);
            if let Some(d) = p.dropped {
                c.input.dropped = Some(c.input.dropped.unwrap_or(0) + d);
            }
        }
        c.input.total_bytes = total.filter(|_| !inputs.is_empty());
        c
    }

    /// The epoch of a snapshot request not answered yet by the analyzer
    /// that last saw `seen` (which is updated), if any. One atomic load.
    pub(crate) fn snapshot_wanted(&self, seen: &mut u64) -> Option<u64> {
        let e = self.requested.load(Ordering::Acquire);
        if e == *seen {
            return None;
        }
        *seen = e;
        Some(e)
    }

    /// Claims the copy of analyzer `i` for request `epoch`: `false` when
    /// another thread took it already or the request is over.
    pub(crate) fn claim(&self, epoch: u64, i: usize) -> bool {
        let mut hub = lock(&self.hub);
        if !hub.open || hub.epoch != epoch {
            return false;
        }
        match hub.claimed.get_mut(i) {
            Some(c) if !*c => {
                *c = true;
                true
            }
            _ => false,
        }
    }

    /// Hands over the copies of analyzer `i` for request `epoch`.
    pub(crate) fn submit(&self, epoch: u64, i: usize, copies: PluginCopies) {
        let mut hub = lock(&self.hub);
        if hub.open
            && hub.epoch == epoch
            && let Some(slot) = hub.parts.get_mut(i)
            && slot.is_none()
        {
            *slot = Some(copies);
            drop(hub);
            self.hub_ready.notify_all();
        }
    }

    /// Analyzer `i` ended: it answers no request any more.
    pub(crate) fn analyzer_ended(&self, i: usize) {
        let mut hub = lock(&self.hub);
        if let Some(e) = hub.ended.get_mut(i) {
            *e = true;
        }
        drop(hub);
        self.hub_ready.notify_all();
    }

    /// Asks every analyzer for a copy of its plugins' results and merges
    /// them, plugin by plugin (plugins without intermediate results are
    /// left out). `None` when the run is not going on, when an analyzer
    /// ended or did not answer within `timeout`: a partial copy is never
    /// returned.
    pub fn request_snapshot(&self, timeout: Duration) -> Option<Vec<Box<dyn Plugin>>> {
        let deadline = Instant::now() + timeout;
        let mut hub = lock(&self.hub);
        if !hub.open {
            return None;
        }
        hub.epoch += 1;
        let epoch = hub.epoch;
        hub.parts.iter_mut().for_each(|p| *p = None);
        hub.claimed.iter_mut().for_each(|c| *c = false);
        self.requested.store(epoch, Ordering::Release);
        drop(hub);
        // a paused reader waits on this: let it answer
        self.notify();
        let mut hub = lock(&self.hub);
        loop {
            if !hub.open || hub.epoch != epoch {
                return None;
            }
            if hub.parts.iter().all(Option::is_some) {
                break;
            }
            if hub
                .parts
                .iter()
                .zip(&hub.ended)
                .any(|(p, e)| p.is_none() && *e)
            {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                log::debug!("snapshot {epoch}: not every analyzer answered in {timeout:?}");
                return None;
            }
            hub = self
                .hub_ready
                .wait_timeout(hub, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        let parts: Vec<PluginCopies> = hub.parts.iter_mut().filter_map(Option::take).collect();
        let shared = hub.shared.clone();
        drop(hub);
        Some(merge_copies(parts, &shared))
    }
}

/// Merges the copies of each plugin across analyzers; shared plugins are
/// copied once from their single instance.
fn merge_copies(parts: Vec<PluginCopies>, shared: &[Option<SharedPlugin>]) -> Vec<Box<dyn Plugin>> {
    let mut merged: Vec<Option<Box<dyn Plugin>>> = Vec::new();
    for copies in parts {
        for (i, copy) in copies.into_iter().enumerate() {
            if merged.len() <= i {
                merged.resize_with(i + 1, || None);
            }
            let (Some(copy), Some(slot)) = (copy, merged.get_mut(i)) else {
                continue;
            };
            match slot {
                None => *slot = Some(copy),
                Some(acc) => {
                    let name = acc.name().to_string();
                    if let Err(e) = acc.merge(copy) {
                        log::warn!("intermediate results of {name}: {e}");
                        *slot = None;
                    }
                }
            }
        }
    }
    for (i, s) in shared.iter().enumerate() {
        let Some(arc) = s else { continue };
        if merged.len() <= i {
            merged.resize_with(i + 1, || None);
        }
        let copy = lock(arc).snapshot(&mut std::iter::empty());
        if let Some(slot) = merged.get_mut(i) {
            *slot = copy;
        }
    }
    merged.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_is_final_and_pausing_is_not() {
        let c = RunControl::new();
        assert_eq!(c.state(), RunState::Running);
        c.set_state(RunState::Paused);
        assert_eq!(c.state(), RunState::Paused);
        c.set_state(RunState::Running);
        assert_eq!(c.state(), RunState::Running);
        c.set_state(RunState::Stopping);
        c.set_state(RunState::Running);
        assert_eq!(c.state(), RunState::Stopping);
    }

    #[test]
    fn a_snapshot_outside_a_run_or_with_an_ended_analyzer_is_refused() {
        let c = RunControl::new();
        assert!(c.request_snapshot(Duration::from_millis(10)).is_none());
        c.begin(2, 1, Vec::new());
        c.analyzer_ended(1);
        let t = Instant::now();
        assert!(c.request_snapshot(Duration::from_secs(5)).is_none());
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "no wait for an ended analyzer"
        );
    }

    #[test]
    fn a_snapshot_waits_for_every_analyzer() {
        let c = Arc::new(RunControl::new());
        c.begin(2, 1, Vec::new());
        let answer = {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut seen = [0u64; 2];
                let mut answered = 0;
                while answered < 2 {
                    for (i, s) in seen.iter_mut().enumerate() {
                        if let Some(e) = c.snapshot_wanted(s)
                            && c.claim(e, i)
                        {
                            c.submit(e, i, vec![None]);
                            answered += 1;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let merged = c.request_snapshot(Duration::from_secs(10));
        answer.join().unwrap();
        // both answered, with no plugin copies: an empty but complete set
        assert_eq!(merged.map(|m| m.len()), Some(0));
    }
}
