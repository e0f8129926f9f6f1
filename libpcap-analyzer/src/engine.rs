//! Running the analyzer over a source with N worker threads, and combining
//! the results.
//!
//! # How packets travel
//! With one worker ([`Engine::jobs`] = 1) the [`Analyzer`] runs on the
//! calling thread. With N, the work is cut into N shards, each with its own
//! [`Analyzer`] (flow table, plugin instances) and a bounded queue of
//! batches. The calling thread reads the source and picks the shard of each
//! packet by a symmetric hash of its IP addresses (both directions of a
//! flow, and every fragment of a datagram, go to the same shard). Packets
//! travel in batches: reusable owned buffers, holding copies or references
//! to the reader's reference-counted chunks, sent back for reuse once
//! handled. No packet borrows the reader's buffer across threads.
//!
//! Each of the N worker threads handles the batches of its own shard, and
//! those of any other shard while its own queue is empty. A shard is locked
//! while one of its batches is handled, so the batches of a shard (hence
//! the packets of a flow) are handled one at a time and in capture order,
//! whichever thread takes them. When a queue is full, the reading thread
//! handles queued batches itself instead of sleeping, and waits only when
//! every shard is busy: memory stays bounded (back-pressure), and when
//! threads outnumber cores (the reading thread and N workers on N cores) no
//! core idles while the reader waits for one preempted worker. A worker
//! with nothing to take (its queue empty, the other shards locked) sleeps
//! until its queue has a message, looking again every [`BUSY_WAIT`]: it
//! used to spin on `sched_yield` (80,000 to 130,000 times per worker on a
//! 1 M-packet DNS capture at `-j 2` on two cores, where the run now takes
//! about 10 % less CPU and wall time).
//!
//! The reading thread also keeps the run's clock ([`crate::clock`]): each
//! packet travels with its time on it, and idle ticks are sent to every
//! shard, so flows expire as they would with one worker.
//!
//! At the end every shard drains its flows, and the instances of each
//! plugin are merged ([`crate::plugin::Plugin::merge`]) before
//! `post_process`. Plugins that ask for [`crate::plugin::Interest::shared`]
//! get a single instance behind a mutex.
//!
//! [`Engine::run_sources`] takes one source per worker instead (AF_PACKET
//! fanout, NFQUEUE queue balancing): the kernel has already balanced the
//! packets by flow, and there is no dispatching thread.

use crate::analyzer::{Analyzer, AnalyzerError};
use crate::clock::{PacketTime, RunClock};
use crate::config::EngineConfig;
use crate::control::{RunControl, RunState, SharedPlugin};
use crate::decode::link::decode_link;
use crate::dispatch::PluginHandle;
use crate::flow::FlowTableStats;
use crate::memory::MemoryBudget;
use crate::plugin::{Counters, Plugin, PluginError, PluginResult};
use crate::stats::AnalyzerStats;
use crossbeam_channel::{
    Receiver, Select, SendTimeoutError, Sender, TryRecvError, TrySendError, bounded,
};
use libpcap_tools::{
    Config, LinkType, Packet, PacketSource, SharedEvent, SourceEvent, Timestamp, Verdict,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Packets per batch sent to a worker.
const BATCH_PACKETS: usize = 512;
/// Bytes per batch before it is sent even if not full.
const BATCH_BYTES: usize = 1 << 20;
/// Batches queued per worker before the reader blocks.
const QUEUE_DEPTH: usize = 4;

/// The most workers a run may have: [`max_jobs`].
const MAX_JOBS: usize = 256;

/// The most worker threads an [`Engine`] runs (256): more shards than that
/// gain nothing on any machine (each has its own flow table and plugin
/// instances), and every worker holds a part of each memory pool of the
/// run ([`crate::memory`]). [`Engine::new`] refuses more.
pub fn max_jobs() -> usize {
    MAX_JOBS
}

/// Builds one set of plugin instances (called once per worker).
pub type PluginFactory<'a> = &'a (dyn Fn() -> PluginResult<Vec<Box<dyn Plugin>>> + Sync);

/// The result of a run: merged plugins and counters.
pub struct RunOutput {
    /// The plugins, merged across workers and post-processed, in the order
    /// the factory gave them.
    pub plugins: Vec<Box<dyn Plugin>>,
    /// Decoding counters of all workers.
    pub stats: AnalyzerStats,
    /// Flow-table counters of all workers.
    pub flows: FlowTableStats,
    /// A truncation of the input: every complete packet was analysed.
    pub warning: Option<libpcap_tools::Error>,
    /// The run's memory pools ([`crate::memory`]): name, limit, most
    /// held at once by all workers together, requests refused.
    pub memory: Vec<(String, u64, u64, u64)>,
    /// What the sources reported as having ended their input early
    /// ([`PacketSource::warnings`]: a truncated or partly corrupt file),
    /// as they word it.
    pub input_warnings: Vec<String>,
}

impl std::fmt::Debug for RunOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOutput")
            .field(
                "plugins",
                &self
                    .plugins
                    .iter()
                    .map(|p| p.name().to_string())
                    .collect::<Vec<_>>(),
            )
            .field("stats", &self.stats)
            .field("warning", &self.warning)
            .finish()
    }
}

impl RunOutput {
    /// Calls `save_results` of every plugin into `dir` (created if missing),
    /// each plugin on a thread of its own: the reports of a large capture
    /// (sorting and writing hundreds of MB) are written side by side instead
    /// of one after the other. The files come back in plugin order.
    ///
    /// # Errors
    /// The first plugin error (in plugin order); the other plugins are still
    /// saved. A plugin that panics while saving is an error naming it.
    pub fn save_results(&mut self, dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
        std::fs::create_dir_all(dir).map_err(|e| PluginError::wrap("output", e))?;
        let results: Vec<Result<Vec<PathBuf>, PluginError>> = std::thread::scope(|scope| {
            let pending: Vec<_> = self
                .plugins
                .iter_mut()
                .map(|p| {
                    let name = p.name().to_string();
                    let spawned = std::thread::Builder::new()
                        .name(format!("pal-save-{name}"))
                        .spawn_scoped(scope, || save_one(p.as_mut(), dir));
                    (name, spawned)
                })
                .collect();
            pending
                .into_iter()
                .map(|(name, spawned)| match spawned {
                    Ok(h) => h.join().unwrap_or_else(|panic| {
                        Err(PluginError::wrap(
                            &name,
                            std::io::Error::other(format!(
                                "panicked while saving its results: {}",
                                panic_message(&panic)
                            )),
                        ))
                    }),
                    Err(e) => Err(PluginError::wrap(&name, e)),
                })
                .collect()
        });
        let mut files = Vec::new();
        let mut first_err = None;
        for r in results {
            match r {
                Ok(f) => files.extend(f),
                Err(e) => {
                    log::error!("{e}");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(files),
        }
    }

    /// The counters of every plugin that has some ([`Plugin::counters`] of
    /// the merged instances), in plugin order. A plugin that panics while
    /// giving them has none.
    pub fn plugin_counters(&self) -> Vec<(String, Counters)> {
        self.plugins
            .iter()
            .filter_map(|p| {
                let c = plugin_counters(p.as_ref())?;
                (!c.is_empty()).then(|| (p.name().to_string(), c))
            })
            .collect()
    }

    /// The plugin named `name`.
    pub fn plugin(&self, name: &str) -> Option<&dyn Plugin> {
        self.plugins
            .iter()
            .find(|p| p.name() == name)
            .map(|p| p.as_ref())
    }
}

/// [`Plugin::counters`] of `p`, `None` (with a warning) if it panics.
pub(crate) fn plugin_counters(p: &dyn Plugin) -> Option<Counters> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.counters()))
        .map_err(|_| log::warn!("plugin {} panicked while giving its counters", p.name()))
        .ok()
}

/// Saves the results of one plugin, with a debug log of how long it took.
fn save_one(p: &mut dyn Plugin, dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
    let started = std::time::Instant::now();
    let r = p.save_results(dir);
    log::debug!("{}: results saved in {:?}", p.name(), started.elapsed());
    r
}

/// Called at the start of every worker thread (see [`Engine::with_worker_init`]).
pub type WorkerInit = Arc<dyn Fn() + Send + Sync>;

/// Runs the analysis with a number of worker threads.
#[derive(Clone)]
pub struct Engine {
    cfg: EngineConfig,
    jobs: usize,
    worker_init: Option<WorkerInit>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.cfg)
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine with the settings of `config` and `jobs` workers (0: one per
    /// CPU, at most [`max_jobs`]).
    ///
    /// # Errors
    /// When a configuration section is invalid, or `jobs` is above
    /// [`max_jobs`].
    pub fn new(config: &Config, jobs: usize) -> Result<Engine, AnalyzerError> {
        let jobs = if jobs == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_JOBS))
        } else if jobs > MAX_JOBS {
            return Err(AnalyzerError::Source(libpcap_tools::Error::Config(
                format!("{jobs} worker threads: give a number from 0 (one per CPU) to {MAX_JOBS}"),
            )));
        } else {
            jobs
        };
        Ok(Engine {
            cfg: EngineConfig::from_config(config)?,
            jobs,
            worker_init: None,
        })
    }

    /// Runs `init` at the start of each worker thread of [`Engine::run`]
    /// (the tool uses it to lower the workers' scheduling weight, so that
    /// the reading thread keeps a core when threads outnumber cores).
    pub fn with_worker_init(mut self, init: WorkerInit) -> Engine {
        self.worker_init = Some(init);
        self
    }

    /// Number of workers.
    pub fn jobs(&self) -> usize {
        self.jobs
    }

    /// Builds the plugin instances of one worker: owned ones, and the shared
    /// ones created once in `shared`.
    fn handles(
        factory: PluginFactory<'_>,
        shared: &mut Option<Vec<Option<SharedPlugin>>>,
    ) -> PluginResult<Vec<PluginHandle>> {
        let built = factory()?;
        let first = shared.is_none();
        let slots = shared.get_or_insert_with(Vec::new);
        let mut out = Vec::with_capacity(built.len());
        for (i, p) in built.into_iter().enumerate() {
            if first {
                if p.interest().shared {
                    let arc = Arc::new(Mutex::new(p));
                    slots.push(Some(arc.clone()));
                    out.push(PluginHandle::Shared(arc));
                } else {
                    slots.push(None);
                    out.push(PluginHandle::Owned(p));
                }
            } else {
                match slots.get(i) {
                    Some(Some(arc)) => out.push(PluginHandle::Shared(arc.clone())),
                    _ => out.push(PluginHandle::Owned(p)),
                }
            }
        }
        Ok(out)
    }

    /// Analyses everything `source` delivers.
    ///
    /// # Errors
    /// When the source fails (a truncation is a warning in the output), a
    /// plugin panics or cannot be built or merged, or a worker dies.
    pub fn run(
        &self,
        factory: PluginFactory<'_>,
        source: &mut dyn PacketSource,
    ) -> Result<RunOutput, AnalyzerError> {
        self.run_with(factory, RunInput::Source(source), &RunControl::new())
    }

    /// Analyses N sources already balanced by flow (one per worker thread).
    ///
    /// When one worker fails (its source returns an error, a plugin
    /// panics, the thread dies), the others stop reading their sources at
    /// their next event (live sources report an idle tick at least every
    /// poll interval) and the run ends with that error: a source that never
    /// ends by itself does not keep the run alive.
    ///
    /// # Errors
    /// As [`Engine::run`].
    pub fn run_sources(
        &self,
        factory: PluginFactory<'_>,
        sources: Vec<Box<dyn PacketSource>>,
    ) -> Result<RunOutput, AnalyzerError> {
        self.run_with(factory, RunInput::PerWorker(sources), &RunControl::new())
    }

    /// Runs `input` ([`Engine::run`] or [`Engine::run_sources`]) steered
    /// by `ctl`: paused, resumed or stopped from another thread, with
    /// counters and snapshots of the results while it goes on (see
    /// [`crate::control`]; [`crate::session::Session`] does this for you).
    ///
    /// # Errors
    /// As [`Engine::run`].
    pub fn run_with(
        &self,
        factory: PluginFactory<'_>,
        input: RunInput<'_>,
        ctl: &RunControl,
    ) -> Result<RunOutput, AnalyzerError> {
        let workers = match &input {
            RunInput::Source(_) => self.jobs.max(1),
            RunInput::PerWorker(sources) => sources.len(),
        };
        let memory = MemoryBudget::for_workers(&self.cfg, workers);
        let m = &memory;
        let out = match input {
            RunInput::Source(source) if self.jobs <= 1 => self.run_single(factory, source, ctl, m),
            RunInput::Source(source) => self.run_pool(factory, source, ctl, m),
            RunInput::PerWorker(sources) => self.run_per_worker(factory, sources, ctl, m),
        }
        .map(|mut out| {
            out.memory = memory.pools();
            out
        });
        ctl.end();
        out
    }

    /// `n` analyzers with their plugins (the shared instances created once)
    /// and their monitors, registered in `ctl` for a run reading `inputs`
    /// sources.
    fn analyzers(
        &self,
        factory: PluginFactory<'_>,
        n: usize,
        inputs: usize,
        ctl: &RunControl,
        memory: &Arc<MemoryBudget>,
    ) -> Result<Vec<Analyzer>, AnalyzerError> {
        let mut shared = None;
        let mut analyzers = Vec::with_capacity(n);
        for _ in 0..n {
            let handles = Self::handles(factory, &mut shared)?;
            analyzers.push(Analyzer::with_memory(self.cfg.clone(), handles, memory));
        }
        let monitors = ctl.begin(n, inputs, shared.unwrap_or_default());
        for (a, m) in analyzers.iter_mut().zip(monitors) {
            a.set_monitor(m);
        }
        Ok(analyzers)
    }

    /// One analyzer on the calling thread.
    fn run_single(
        &self,
        factory: PluginFactory<'_>,
        source: &mut dyn PacketSource,
        ctl: &RunControl,
        memory: &Arc<MemoryBudget>,
    ) -> Result<RunOutput, AnalyzerError> {
        let Some(mut a) = self.analyzers(factory, 1, 1, ctl, memory)?.pop() else {
            return Err(AnalyzerError::Worker("no analyzer".into()));
        };
        let r = a.run_controlled(source, ctl, 0, &AtomicBool::new(false));
        ctl.analyzer_ended(0);
        let warning = r?;
        let flows = *a.flow_stats();
        let (handles, stats) = a.into_parts();
        let mut out = finish(vec![handles], stats, flows, warning)?;
        out.input_warnings = warnings_of(source);
        Ok(out)
    }

    /// N shards fed by the calling thread (see the module docs).
    fn run_pool(
        &self,
        factory: PluginFactory<'_>,
        source: &mut dyn PacketSource,
        ctl: &RunControl,
        memory: &Arc<MemoryBudget>,
    ) -> Result<RunOutput, AnalyzerError> {
        let n = self.jobs;
        let failed = AtomicBool::new(false);
        let (recycle_tx, recycle_rx) = bounded::<Batch>(n * (QUEUE_DEPTH + 2));
        let mut senders = Vec::with_capacity(n);
        let mut shards = Vec::with_capacity(n);
        for analyzer in self.analyzers(factory, n, 1, ctl, memory)? {
            let (tx, rx) = bounded::<Msg>(QUEUE_DEPTH);
            senders.push(tx);
            shards.push(Shard {
                rx,
                state: Mutex::new(ShardState {
                    analyzer,
                    packets: 0,
                    finished: false,
                    error: None,
                }),
            });
        }
        let pool = Pool {
            shards,
            recycle: recycle_tx,
            failed,
            ctl,
        };
        let started = std::time::Instant::now();
        let read = std::thread::scope(|scope| {
            let mut threads = Vec::with_capacity(n);
            for w in 0..n {
                let pool = &pool;
                let init = self.worker_init.clone();
                let h = std::thread::Builder::new()
                    .name(format!("pal-worker-{w}"))
                    .spawn_scoped(scope, move || {
                        if let Some(init) = init {
                            init();
                        }
                        let c = pool.work(w);
                        log::debug!("engine: worker {w}: {c:?}, cpu {}", thread_cpu());
                    });
                match h {
                    Ok(h) => threads.push(h),
                    Err(e) => {
                        pool.failed.store(true, Ordering::Relaxed);
                        return Err(AnalyzerError::Worker(e.to_string()));
                    }
                }
            }
            let read = dispatch_loop(source, senders, &recycle_rx, &pool);
            log::debug!(
                "engine: input read and dispatched in {:?}",
                started.elapsed()
            );
            // the senders are gone: help until every queue is empty
            let c = pool.work(0);
            log::debug!("engine: reading thread after the input: {c:?}");
            let mut died = None;
            for h in threads {
                if let Err(panic) = h.join() {
                    died.get_or_insert_with(|| panic_message(&panic));
                }
            }
            match died {
                Some(msg) => Err(AnalyzerError::Worker(msg)),
                None => read,
            }
        });
        let out = pool.collect(read).map(|mut o| {
            o.input_warnings = warnings_of(source);
            o
        });
        log::debug!(
            "engine: workers joined and results merged after {:?}",
            started.elapsed()
        );
        out
    }

    /// One analyzer and one source per worker thread.
    fn run_per_worker(
        &self,
        factory: PluginFactory<'_>,
        sources: Vec<Box<dyn PacketSource>>,
        ctl: &RunControl,
        memory: &Arc<MemoryBudget>,
    ) -> Result<RunOutput, AnalyzerError> {
        let n = sources.len();
        let analyzers = self.analyzers(factory, n, n, ctl, memory)?;
        let failed = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let mut workers = Vec::with_capacity(n);
            for (w, (mut source, mut a)) in sources.into_iter().zip(analyzers).enumerate() {
                let stop = &failed;
                let h = std::thread::Builder::new()
                    .name(format!("pal-worker-{w}"))
                    .spawn_scoped(scope, move || -> WorkerResult {
                        // a panic of this thread stops the others too
                        let _guard = StopOnPanic(stop);
                        let r = a.run_controlled(source.as_mut(), ctl, w, stop);
                        ctl.analyzer_ended(w);
                        if r.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        let warnings = warnings_of(source.as_ref());
                        // the source ends here (a live one reads its last
                        // kernel counters, an inline one answers what it holds)
                        drop(source);
                        let flows = *a.flow_stats();
                        let (handles, stats) = a.into_parts();
                        r.map(|warning| (handles, stats, flows, warning, warnings))
                    });
                match h {
                    Ok(h) => workers.push(h),
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        let _ = collect(workers, Ok(None));
                        return Err(AnalyzerError::Worker(e.to_string()));
                    }
                }
            }
            collect(workers, Ok(None))
        })
    }
}

/// The input of [`Engine::run_with`].
pub enum RunInput<'a> {
    /// One source, read by the calling thread and routed to the workers
    /// by flow ([`Engine::run`]).
    Source(&'a mut dyn PacketSource),
    /// One source per worker, already balanced by flow
    /// ([`Engine::run_sources`]).
    PerWorker(Vec<Box<dyn PacketSource>>),
}

impl std::fmt::Debug for RunInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunInput::Source(s) => write!(f, "Source({})", s.name()),
            RunInput::PerWorker(v) => write!(f, "PerWorker({} sources)", v.len()),
        }
    }
}

/// Sets the flag when dropped during a panic (see [`Engine::run_sources`]).
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

type WorkerResult = Result<
    (
        Vec<PluginHandle>,
        AnalyzerStats,
        FlowTableStats,
        Option<libpcap_tools::Error>,
        Vec<String>,
    ),
    AnalyzerError,
>;

/// The warnings of a source, as text.
fn warnings_of(source: &dyn PacketSource) -> Vec<String> {
    source.warnings().iter().map(ToString::to_string).collect()
}

fn collect(
    workers: Vec<std::thread::ScopedJoinHandle<'_, WorkerResult>>,
    read: Result<Option<libpcap_tools::Error>, AnalyzerError>,
) -> Result<RunOutput, AnalyzerError> {
    let mut all = Vec::with_capacity(workers.len());
    let mut stats = AnalyzerStats::default();
    let mut flows = FlowTableStats::default();
    let mut first_err = None;
    let mut warning = None;
    let mut input_warnings = Vec::new();
    for h in workers {
        match h.join() {
            Ok(Ok((handles, s, f, w, iw))) => {
                input_warnings.extend(iw);
                stats.merge(&s);
                add_flow_stats(&mut flows, &f);
                all.push(handles);
                if warning.is_none() {
                    warning = w;
                }
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(panic) => {
                first_err.get_or_insert(AnalyzerError::Worker(panic_message(&panic)));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let warning = match read {
        Ok(w) => w.or(warning),
        Err(e) => return Err(e),
    };
    let mut out = finish(all, stats, flows, warning)?;
    out.input_warnings = input_warnings;
    Ok(out)
}

fn add_flow_stats(a: &mut FlowTableStats, b: &FlowTableStats) {
    a.created += b.created;
    a.ended_fin += b.ended_fin;
    a.ended_rst += b.ended_rst;
    a.ended_timeout += b.ended_timeout;
    a.ended_eviction += b.ended_eviction;
    a.ended_end_of_input += b.ended_end_of_input;
    a.peak += b.peak;
    a.direction_corrected += b.direction_corrected;
}

/// Merges the per-worker instances of each plugin and post-processes them,
/// a plugin at a time (merging them side by side gained nothing measurable
/// and raised the peak: each merge holds room for its growing table).
fn finish(
    per_worker: Vec<Vec<PluginHandle>>,
    stats: AnalyzerStats,
    flows: FlowTableStats,
    warning: Option<libpcap_tools::Error>,
) -> Result<RunOutput, AnalyzerError> {
    // the instances of each plugin, in worker order
    let mut columns: Vec<Vec<Box<dyn Plugin>>> = Vec::new();
    for handles in per_worker {
        for (i, h) in handles.into_iter().enumerate() {
            if columns.len() <= i {
                columns.resize_with(i + 1, Vec::new);
            }
            let Some(column) = columns.get_mut(i) else {
                continue;
            };
            match h {
                PluginHandle::Owned(p) => column.push(p),
                PluginHandle::Shared(arc) => {
                    // every worker holds a clone; the last one out unwraps it
                    if let Ok(m) = Arc::try_unwrap(arc) {
                        column.push(
                            m.into_inner()
                                .unwrap_or_else(std::sync::PoisonError::into_inner),
                        );
                    }
                }
            }
        }
    }
    let mut plugins = Vec::with_capacity(columns.len());
    for column in columns {
        if let Some(p) = merge_column(column, &stats) {
            plugins.push(p?);
        }
    }
    Ok(RunOutput {
        plugins,
        stats,
        flows,
        warning,
        memory: Vec::new(),
        input_warnings: Vec::new(),
    })
}

/// Folds the instances of one plugin into the first (in worker order), then
/// post-processes it; `None` without instances. A panic in the plugin is
/// its error.
fn merge_column(
    column: Vec<Box<dyn Plugin>>,
    stats: &AnalyzerStats,
) -> Option<Result<Box<dyn Plugin>, AnalyzerError>> {
    let started = std::time::Instant::now();
    let mut instances = column.into_iter();
    let mut acc = instances.next()?;
    let name = acc.name().to_string();
    let merged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for p in instances {
            acc.merge(p)?;
        }
        acc.run_stats(stats);
        acc.post_process()
    }));
    log::debug!(
        "engine: {name} merged and post-processed in {:?}",
        started.elapsed()
    );
    Some(match merged {
        Ok(Ok(())) => Ok(acc),
        Ok(Err(e)) => Err(e.into()),
        Err(panic) => Err(PluginError::new(
            &name,
            format!("panicked while merging results: {}", panic_message(&panic)),
        )
        .into()),
    })
}

/// One packet in a batch: its fields and where its bytes are in the buffer.
struct Desc {
    index: u64,
    interface: u32,
    linktype: LinkType,
    ts: Option<Timestamp>,
    /// Its time on the run's clock.
    time: PacketTime,
    origlen: u32,
    /// Index in `Batch::chunks` of the shared chunk holding the bytes, or
    /// `NO_CHUNK` when they were copied into `Batch::data`.
    chunk: u32,
    start: usize,
    len: usize,
}

const NO_CHUNK: u32 = u32::MAX;

/// Packets copied into one owned buffer, reused once handled.
#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    chunks: Vec<Arc<Vec<u8>>>,
    /// Number of the first chunk in `chunks` (counted by the dispatcher).
    first_chunk: u64,
    packets: Vec<Desc>,
    /// Sum of the packets' lengths (copied or referenced).
    size: usize,
}

/// The bytes of packet `d` of a batch (its copied data and its chunks).
fn batch_bytes<'b>(data: &'b [u8], chunks: &'b [Arc<Vec<u8>>], d: &Desc) -> &'b [u8] {
    let buf: &[u8] = if d.chunk == NO_CHUNK {
        data
    } else {
        chunks
            .get(d.chunk as usize)
            .map_or(&[][..], |c| c.as_slice())
    };
    buf.get(d.start..d.start + d.len).unwrap_or(&[])
}

impl Batch {
    /// Reads the headers of every packet once, before they are handled:
    /// the bytes were written on the reading thread's core, and these
    /// independent loads fetch them all at once, where handling the packets
    /// one by one waited for each in turn (a fifth of a worker's time).
    fn warm(&self) {
        let mut x = 0u8;
        for d in &self.packets {
            let b = batch_bytes(&self.data, &self.chunks, d);
            // one byte in every cache line of the first 96 bytes
            for off in [0, 48, 96] {
                x ^= b.get(off).copied().unwrap_or(0);
            }
        }
        std::hint::black_box(x);
    }

    fn clear(&mut self) {
        self.data.clear();
        self.chunks.clear();
        self.packets.clear();
        self.size = 0;
    }

    /// Bytes of the packets in the batch, copied or referenced (not their
    /// offsets: a packet late in a large read chunk does not fill a batch).
    fn bytes(&self) -> usize {
        self.size
    }
}

enum Msg {
    Batch(Batch),
    Tick(Timestamp),
}

/// One analysis shard: an analyzer and the queue of its messages. Whoever
/// holds the lock takes and handles the next message, so the messages of a
/// shard are handled one at a time and in the order they were sent, by
/// whichever thread is free.
struct Shard {
    rx: Receiver<Msg>,
    state: Mutex<ShardState>,
}

struct ShardState {
    analyzer: Analyzer,
    packets: u64,
    /// Flows drained (the queue is closed and empty).
    finished: bool,
    error: Option<AnalyzerError>,
}

/// What one attempt to work on a shard did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A message was handled.
    Handled,
    /// Nothing queued now.
    Empty,
    /// Another thread holds the shard.
    Busy,
    /// Nothing queued and nothing more to come.
    Closed,
}

/// The shards of a threaded run, and what their threads share.
struct Pool<'c> {
    shards: Vec<Shard>,
    recycle: Sender<Batch>,
    /// Set when a shard fails: every thread stops.
    failed: AtomicBool,
    /// The control of the run (snapshot requests).
    ctl: &'c RunControl,
}

impl Pool<'_> {
    /// Answers a new snapshot request (`seen` is the last one this thread
    /// saw): copies every shard not copied yet by another thread.
    fn snapshots(&self, seen: &mut u64) {
        let Some(epoch) = self.ctl.snapshot_wanted(seen) else {
            return;
        };
        for (i, shard) in self.shards.iter().enumerate() {
            if self.ctl.claim(epoch, i) {
                let st = shard
                    .state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let copies = st.analyzer.snapshot();
                drop(st);
                self.ctl.submit(epoch, i, copies);
            }
        }
    }

    /// Handles the next message of shard `i`; waits for its lock when
    /// `wait` is set.
    fn step(&self, i: usize, wait: bool) -> Step {
        let Some(shard) = self.shards.get(i) else {
            return Step::Closed;
        };
        let mut st = if wait {
            shard
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        } else {
            match shard.state.try_lock() {
                Ok(st) => st,
                Err(std::sync::TryLockError::WouldBlock) => return Step::Busy,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            }
        };
        if st.error.is_some() {
            return Step::Closed;
        }
        let msg = match shard.rx.try_recv() {
            Ok(msg) => msg,
            Err(TryRecvError::Empty) => return Step::Empty,
            Err(TryRecvError::Disconnected) => {
                if !st.finished {
                    st.finished = true;
                    st.analyzer.finish();
                    self.check(&mut st);
                }
                return Step::Closed;
            }
        };
        match msg {
            Msg::Batch(mut batch) => {
                st.packets += batch.packets.len() as u64;
                batch.warm();
                for d in batch.packets.drain(..) {
                    let data = batch_bytes(&batch.data, &batch.chunks, &d);
                    let p = Packet {
                        index: d.index,
                        interface: d.interface,
                        linktype: d.linktype,
                        ts: d.ts,
                        origlen: d.origlen,
                        data,
                    };
                    st.analyzer
                        .handle_packet_at(&p, decode_link(p.linktype, p.data), d.time);
                    st.analyzer.publish_due();
                }
                batch.clear();
                let _ = self.recycle.try_send(batch);
            }
            Msg::Tick(now) => st.analyzer.tick_at(now),
        }
        self.check(&mut st);
        Step::Handled
    }

    /// Records a plugin panic as the shard's error and stops every thread.
    fn check(&self, st: &mut ShardState) {
        if st.error.is_none()
            && let Some(name) = st.analyzer.panicked_plugin()
        {
            st.error = Some(AnalyzerError::PluginPanicked(name.to_string()));
            self.failed.store(true, Ordering::Relaxed);
        }
    }

    /// Handles one message of any shard that has one and is free, trying
    /// shard `from` first; `Closed` when every shard is closed.
    fn help(&self, from: usize) -> Step {
        let n = self.shards.len();
        let mut out = Step::Closed;
        for k in 0..n {
            match self.step((from + k) % n, false) {
                Step::Handled => return Step::Handled,
                Step::Busy => out = Step::Busy,
                Step::Empty if out == Step::Closed => out = Step::Empty,
                _ => {}
            }
        }
        out
    }

    /// The loop of a worker thread: its own shard first, then any other
    /// with work, until every shard is closed and drained (or one failed).
    fn work(&self, own: usize) -> WorkCounts {
        let mut c = WorkCounts::default();
        let mut seen = 0;
        while !self.failed.load(Ordering::Relaxed) {
            self.snapshots(&mut seen);
            if self.step(own, true) == Step::Handled {
                c.own += 1;
                continue;
            }
            match self.help(own) {
                Step::Handled => c.helped += 1,
                Step::Closed => break,
                // another thread is handling the only shard with work: sleep
                // until this worker's own queue has a message, or a moment
                // (that thread may be preempted with more work queued)
                Step::Busy => {
                    c.busy += 1;
                    if let Some(s) = self.shards.get(own) {
                        let mut sel = Select::new();
                        sel.recv(&s.rx);
                        // a closed queue is always ready: sleep instead of
                        // spinning (hundreds of workers would starve the one
                        // finishing the last batch)
                        if sel.ready_timeout(BUSY_WAIT).is_ok() && s.rx.is_empty() {
                            std::thread::sleep(BUSY_WAIT);
                        }
                    }
                }
                Step::Empty => {
                    c.waits += 1;
                    let mut sel = Select::new();
                    for s in &self.shards {
                        sel.recv(&s.rx);
                    }
                    // woken by a message or by the end of the input (the
                    // queues close); the timeout is only a safety net
                    let _ = sel.ready_timeout(IDLE_WAIT);
                }
            }
        }
        c
    }

    /// Takes the analyzers out, merges their results.
    fn collect(
        self,
        read: Result<Option<libpcap_tools::Error>, AnalyzerError>,
    ) -> Result<RunOutput, AnalyzerError> {
        let mut all = Vec::with_capacity(self.shards.len());
        let mut stats = AnalyzerStats::default();
        let mut flows = FlowTableStats::default();
        let mut first_err = None;
        for (i, shard) in self.shards.into_iter().enumerate() {
            let st = shard
                .state
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            log::debug!("engine: shard {i}: {} packets", st.packets);
            if let Some(e) = st.error {
                first_err.get_or_insert(e);
                continue;
            }
            add_flow_stats(&mut flows, st.analyzer.flow_stats());
            let (handles, s) = st.analyzer.into_parts();
            stats.merge(&s);
            all.push(handles);
        }
        let warning = read?;
        if let Some(e) = first_err {
            return Err(e);
        }
        finish(all, stats, flows, warning)
    }
}

/// What a thread of the pool did (debug log).
#[derive(Debug, Default)]
struct WorkCounts {
    /// Messages of its own shard handled.
    own: u64,
    /// Messages of other shards handled.
    helped: u64,
    /// Times it slept ([`BUSY_WAIT`] at most) while another thread held
    /// the only shard with work.
    busy: u64,
    /// Times it waited for messages.
    waits: u64,
}

/// An idle worker sleeps until a queue has a message or closes; it looks
/// again after this long regardless (live sources can be idle for long, so
/// this is not a polling period).
const IDLE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a worker whose own queue is empty sleeps while another thread
/// holds the only shard with work, before it looks again.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_micros(200);
/// How long the reading thread waits on a full queue, when every shard is
/// busy, before it checks for a failed run and tries to help again.
const FULL_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// The message of a thread's panic.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".to_string())
}

/// The CPU time of the calling thread (user and system), for debug logs;
/// empty where `/proc/thread-self/stat` cannot be read.
fn thread_cpu() -> String {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return String::new();
    };
    // fields after the parenthesised command name: utime is the 14th field
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // clock ticks are 100 Hz on Linux
    format!("user {} ms, sys {} ms", tick(11) * 10, tick(12) * 10)
}

/// Mixes a 64-bit value (the finaliser of MurmurHash3).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn fold(b: &[u8]) -> u64 {
    let mut h = 0u64;
    for c in b.chunks(8) {
        let mut w = [0u8; 8];
        w.get_mut(..c.len()).unwrap_or(&mut []).copy_from_slice(c);
        h ^= u64::from_le_bytes(w);
    }
    h
}

/// A symmetric hash of the IP endpoints of a network-layer packet: both
/// directions of a flow and every fragment of a datagram give the same
/// value. Non-IP packets give 0.
fn endpoint_hash(ethertype: u16, l3: &[u8]) -> u64 {
    let (a, b) = match ethertype {
        0x0800 => (l3.get(12..16), l3.get(16..20)),
        0x86DD => (l3.get(8..24), l3.get(24..40)),
        _ => (None, None),
    };
    let (Some(a), Some(b)) = (a, b) else { return 0 };
    let (x, y) = (fold(a), fold(b));
    mix(x.min(y).rotate_left(17) ^ x.max(y))
}

/// The worker hash of a frame, read straight from the usual offsets
/// (Ethernet with up to two VLAN tags, IPv4 or IPv6) with a full link-layer
/// decode for everything else. A function of the frame's own headers, so a
/// flow's packets always agree.
fn dispatch_hash(linktype: LinkType, frame: &[u8]) -> u64 {
    if linktype == LinkType::ETHERNET {
        let mut off = 12;
        for _ in 0..3 {
            match frame.get(off..off + 2) {
                Some([0x81, 0x00] | [0x88, 0xa8]) => off += 4,
                Some([0x08, 0x00]) => {
                    return endpoint_hash(0x0800, frame.get(off + 2..).unwrap_or(&[]));
                }
                Some([0x86, 0xdd]) => {
                    return endpoint_hash(0x86DD, frame.get(off + 2..).unwrap_or(&[]));
                }
                _ => break,
            }
        }
    }
    match decode_link(linktype, frame) {
        Ok(info) => endpoint_hash(info.ethertype, frame.get(info.l3_offset..).unwrap_or(&[])),
        Err(_) => 0,
    }
}

/// The reading side of the engine: routes packets to workers in batches.
struct Dispatcher<'a> {
    senders: Vec<Sender<Msg>>,
    recycle: &'a Receiver<Batch>,
    pool: &'a Pool<'a>,
    batches: Vec<Batch>,
    /// The run's clock: the time of every packet is worked out here and
    /// sent with it, and the clock goes to every worker at the end, so
    /// flows time out the same way whatever the number of workers.
    clock: RunClock,
    /// Time spent waiting for a worker's queue (debug log).
    blocked: std::time::Duration,
    /// Times a queue was full (debug log).
    full: u64,
    /// The chunk of the latest packet (its address, only compared) and how
    /// many chunks came before it.
    chunk: (usize, u64),
}

/// A batch still filling is sent once the chunk of its first packet is this
/// many chunks old: with many workers, a shard that gets few packets would
/// otherwise keep old chunks alive, and the chunks held would grow with the
/// number of workers instead of staying a few per queued batch.
const MAX_CHUNK_AGE: u64 = 4;

/// Where the bytes of a packet are.
enum Bytes<'p> {
    /// In a shared chunk, at `start..start + len`.
    Chunk(&'p Arc<Vec<u8>>, usize),
    /// To be copied into the batch.
    Copy(&'p [u8]),
}

impl Dispatcher<'_> {
    /// Queues one packet for its worker; `false` when the workers are gone.
    fn push(&mut self, p: &Packet<'_>, bytes: Bytes<'_>) -> bool {
        let time = self.clock.packet(p.interface, p.ts);
        let n = self.senders.len().max(1) as u64;
        let w = (dispatch_hash(p.linktype, p.data) % n) as usize;
        if let Bytes::Chunk(c, _) = bytes {
            let at = Arc::as_ptr(c) as usize;
            if at != self.chunk.0 {
                self.chunk = (at, self.chunk.1 + 1);
                if !self.flush_older(self.chunk.1.saturating_sub(MAX_CHUNK_AGE)) {
                    return false;
                }
            }
        }
        let seq = self.chunk.1;
        let Some(b) = self.batches.get_mut(w) else {
            return true;
        };
        let (chunk, start) = match bytes {
            Bytes::Chunk(c, start) => {
                if b.chunks.is_empty() {
                    b.first_chunk = seq;
                }
                // an `Arc` is cloned once per chunk and batch, not per packet
                if !b.chunks.last().is_some_and(|last| Arc::ptr_eq(last, c)) {
                    b.chunks.push(c.clone());
                }
                (u32::try_from(b.chunks.len() - 1).unwrap_or(NO_CHUNK), start)
            }
            Bytes::Copy(data) => {
                let start = b.data.len();
                b.data.extend_from_slice(data);
                (NO_CHUNK, start)
            }
        };
        b.packets.push(Desc {
            index: p.index,
            interface: p.interface,
            linktype: p.linktype,
            ts: p.ts,
            time,
            origlen: p.origlen,
            chunk,
            start,
            len: p.data.len(),
        });
        b.size += p.data.len();
        let full =
            b.packets.len() >= BATCH_PACKETS || b.bytes() >= BATCH_BYTES || b.chunks.len() > 2;
        !full || self.send(w)
    }

    /// Sends every filling batch whose first chunk came before chunk number
    /// `seq`; `false` when the workers are gone.
    fn flush_older(&mut self, seq: u64) -> bool {
        for w in 0..self.batches.len() {
            let old = self
                .batches
                .get(w)
                .is_some_and(|b| !b.chunks.is_empty() && b.first_chunk < seq);
            if old && !self.send(w) {
                return false;
            }
        }
        true
    }

    /// Sends the batch of worker `w`; `false` when the worker is gone.
    fn send(&mut self, w: usize) -> bool {
        let Some(b) = self.batches.get_mut(w) else {
            return true;
        };
        if b.packets.is_empty() {
            return true;
        }
        let fresh = self.recycle.try_recv().unwrap_or_default();
        let full = std::mem::replace(b, fresh);
        self.deliver(w, Msg::Batch(full))
    }

    /// Puts `msg` in the queue of shard `w`. While that queue is full the
    /// reading thread handles queued messages itself (of any free shard),
    /// and waits only when every shard is busy. `false` when the run failed.
    fn deliver(&mut self, w: usize, mut msg: Msg) -> bool {
        let Some(tx) = self.senders.get(w) else {
            return false;
        };
        loop {
            match tx.try_send(msg) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(m)) => msg = m,
            }
            if self.pool.failed.load(Ordering::Relaxed) {
                return false;
            }
            self.full += 1;
            if self.pool.help(w) != Step::Handled {
                let t = std::time::Instant::now();
                match tx.send_timeout(msg, FULL_WAIT) {
                    Ok(()) => {
                        self.blocked += t.elapsed();
                        return true;
                    }
                    Err(SendTimeoutError::Disconnected(_)) => return false,
                    Err(SendTimeoutError::Timeout(m)) => msg = m,
                }
                self.blocked += t.elapsed();
            }
        }
    }

    /// Sends every pending batch, then a clock tick (on the run's clock)
    /// to every worker.
    fn tick(&mut self, now: Option<Timestamp>) {
        for w in 0..self.senders.len() {
            self.send(w);
        }
        if let Some(now) = now {
            for w in 0..self.senders.len() {
                self.deliver(w, Msg::Tick(now));
            }
        }
    }
}

/// How a source error ends the dispatch: a truncation is a warning.
fn end_on(e: libpcap_tools::Error) -> Result<Option<libpcap_tools::Error>, AnalyzerError> {
    if e.is_truncation() {
        Ok(Some(e))
    } else {
        Err(AnalyzerError::Source(e))
    }
}

/// Reads `source` to its end and sends its packets to the shards; the
/// senders are dropped on return, which closes the queues.
fn dispatch_loop(
    source: &mut dyn PacketSource,
    senders: Vec<Sender<Msg>>,
    recycle: &Receiver<Batch>,
    pool: &Pool,
) -> Result<Option<libpcap_tools::Error>, AnalyzerError> {
    let failed = &pool.failed;
    let mut d = Dispatcher {
        batches: (0..senders.len()).map(|_| Batch::default()).collect(),
        senders,
        recycle,
        pool,
        clock: RunClock::new(),
        blocked: std::time::Duration::ZERO,
        full: 0,
        chunk: (0, 0),
    };
    let shared = source.can_share();
    let ctl = pool.ctl;
    let live = source.is_live();
    let inline = source.is_inline();
    let mut events = 0u64;
    let mut flushed = false;
    let result = loop {
        if failed.load(Ordering::Relaxed) {
            break Ok(None);
        }
        events += 1;
        if events.is_multiple_of(4096) {
            ctl.publish_input(0, source.progress());
        }
        match ctl.state() {
            RunState::Running => flushed = false,
            RunState::Stopping => break Ok(None),
            RunState::Paused => {
                if !flushed {
                    // what was read before the pause is analysed (and in
                    // the reports written while paused)
                    d.tick(None);
                    flushed = true;
                }
                if !live {
                    ctl.wait_paused(IDLE_WAIT);
                    continue;
                }
                match source.next_event() {
                    Ok(SourceEvent::Packet(p)) => {
                        let index = p.index;
                        ctl.discard();
                        if inline && let Err(e) = source.set_verdict(index, Verdict::Accept) {
                            break Err(AnalyzerError::Source(e));
                        }
                    }
                    Ok(SourceEvent::Timeout { now }) => {
                        let now = d.clock.tick(now);
                        d.tick(Some(now));
                        ctl.publish_input(0, source.progress());
                    }
                    Ok(SourceEvent::End) => break Ok(None),
                    Err(e) => break end_on(e),
                }
                continue;
            }
        }
        // the source reads into shared chunks (batches carry references) or
        // lends its packets (batches carry copies)
        let sent = if shared {
            match source.next_shared() {
                Ok(SharedEvent::Packet(p)) => {
                    d.push(&p.as_packet(), Bytes::Chunk(p.chunk, p.start))
                }
                Ok(SharedEvent::Timeout { now }) => {
                    let now = d.clock.tick(now);
                    d.tick(Some(now));
                    true
                }
                Ok(SharedEvent::End) => break Ok(None),
                Err(e) => break end_on(e),
            }
        } else {
            match source.next_event() {
                // a live packet is discarded when it arrives while paused
                Ok(SourceEvent::Packet(p)) if live && ctl.state() == RunState::Paused => {
                    let index = p.index;
                    ctl.discard();
                    if inline && let Err(e) = source.set_verdict(index, Verdict::Accept) {
                        break Err(AnalyzerError::Source(e));
                    }
                    true
                }
                Ok(SourceEvent::Packet(p)) => d.push(&p, Bytes::Copy(p.data)),
                Ok(SourceEvent::Timeout { now }) => {
                    let now = d.clock.tick(now);
                    d.tick(Some(now));
                    true
                }
                Ok(SourceEvent::End) => break Ok(None),
                Err(e) => break end_on(e),
            }
        };
        if !sent {
            break Ok(None);
        }
    };
    ctl.publish_input(0, source.progress());
    let clock = d.clock.now();
    d.tick(clock);
    log::debug!(
        "engine: reader found a full queue {} times and waited {:?}, cpu {}",
        d.full,
        d.blocked,
        thread_cpu()
    );
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build;
    use std::collections::HashSet;
    use std::net::{IpAddr, Ipv4Addr};

    /// Runs `f` on a dispatcher over `shards` shards whose queues are never
    /// read (and never full), then gives its result and the batches queued.
    fn with_dispatcher<R>(
        shards: usize,
        f: impl FnOnce(&mut Dispatcher<'_>) -> R,
    ) -> (R, Vec<Batch>) {
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..shards {
            let (tx, rx) = bounded::<Msg>(100_000);
            senders.push(tx);
            receivers.push(rx);
        }
        let (recycle, recycle_rx) = bounded::<Batch>(1);
        let ctl = RunControl::new();
        let pool = Pool {
            shards: Vec::new(),
            recycle,
            failed: AtomicBool::new(false),
            ctl: &ctl,
        };
        let mut d = Dispatcher {
            batches: (0..senders.len()).map(|_| Batch::default()).collect(),
            senders,
            recycle: &recycle_rx,
            pool: &pool,
            clock: RunClock::new(),
            blocked: std::time::Duration::ZERO,
            full: 0,
            chunk: (0, 0),
        };
        let r = f(&mut d);
        drop(d);
        let sent = receivers
            .iter()
            .flat_map(|rx| rx.try_iter())
            .filter_map(|m| match m {
                Msg::Batch(b) => Some(b),
                _ => None,
            })
            .collect();
        (r, sent)
    }

    /// Pushes the packets at `frames` (start, length) of `chunk`.
    fn push_chunk(d: &mut Dispatcher<'_>, chunk: &Arc<Vec<u8>>, frames: &[(usize, usize)]) {
        for &(start, len) in frames {
            let p = Packet {
                index: 0,
                interface: 0,
                linktype: LinkType::ETHERNET,
                ts: None,
                origlen: len as u32,
                data: &chunk[start..start + len],
            };
            assert!(d.push(&p, Bytes::Chunk(chunk, start)));
        }
    }

    /// The distinct chunks that the dispatcher's filling batches hold after
    /// 200 chunks of 40 packets: 39 of one busy flow and one of 120 sparse
    /// flows, over 16 shards.
    fn chunks_held_while_filling() -> usize {
        let ip = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        let (held, _) = with_dispatcher(16, |d| {
            let mut sparse = 0u8;
            for _ in 0..200 {
                let mut chunk = Vec::new();
                let mut frames = Vec::new();
                for k in 0..40 {
                    let (src, dst) = if k == 39 {
                        sparse = (sparse + 1) % 120;
                        (ip(10, 1, sparse, 1), ip(10, 2, sparse, 2))
                    } else {
                        (ip(10, 0, 0, 1), ip(10, 0, 0, 2))
                    };
                    let f = build::eth_ip(src, dst, 17, &build::udp(src, dst, 1, 2, &[0; 8]));
                    frames.push((chunk.len(), f.len()));
                    chunk.extend_from_slice(&f);
                }
                push_chunk(d, &Arc::new(chunk), &frames);
            }
            let held: HashSet<usize> = d
                .batches
                .iter()
                .flat_map(|b| b.chunks.iter().map(|c| Arc::as_ptr(c) as usize))
                .collect();
            held.len()
        });
        held
    }

    /// At `-j 2` each worker holds at most half the flows budget, whatever
    /// the other holds: 2,000 UDP flows that all go to worker 0, against
    /// 200 flows for the run, leave 100 at the end and 1,900 evicted. With
    /// one pool shared as it comes, the busy worker took the idle one's
    /// room too (1,800 evicted), and which flows a worker evicted depended
    /// on how fast the other took and gave back.
    #[test]
    fn each_worker_holds_its_part_of_the_flows_budget() {
        use libpcap_tools::synth::MemorySource;
        let ip = |a, b| IpAddr::V4(Ipv4Addr::new(10, 0, a, b));
        let mut packets = Vec::new();
        let mut k = 0u16;
        while packets.len() < 2000 {
            k += 1;
            let (src, dst) = (ip((k >> 8) as u8, k as u8), ip(255, 1));
            let f = build::eth_ip(src, dst, 17, &build::udp(src, dst, 1000, 53, &[0; 8]));
            if !dispatch_hash(LinkType::ETHERNET, &f).is_multiple_of(2) {
                continue;
            }
            packets.push(libpcap_tools::OwnedPacket {
                index: packets.len() as u64,
                interface: 0,
                linktype: LinkType::ETHERNET,
                ts: Some(libpcap_tools::Timestamp::from_secs_nanos(
                    1_000,
                    packets.len() as i64,
                )),
                origlen: f.len() as u32,
                data: f,
            });
        }
        let config = Config::from_toml("[flows]\nmax_flows = 200\n").unwrap();
        let factory = || Ok(Vec::new());
        for (jobs, held) in [(1, 200), (2, 100)] {
            let mut source = MemorySource::new(packets.clone());
            let out = Engine::new(&config, jobs)
                .unwrap()
                .run(&factory, &mut source)
                .unwrap();
            assert_eq!(out.flows.created, 2000, "-j {jobs}");
            assert_eq!(out.flows.ended_end_of_input, held, "-j {jobs}");
            assert_eq!(out.flows.ended_eviction, 2000 - held, "-j {jobs}");
        }
    }

    #[test]
    fn packets_late_in_a_large_chunk_still_fill_whole_batches() {
        // one 4 MiB read chunk (a `buffer_size` above BATCH_BYTES) of one
        // flow: the batches are full by packet count, not sent one packet
        // at a time once the packets' offsets pass BATCH_BYTES (which made
        // `-j 2` 3.5x slower with such a buffer)
        let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let f = build::eth_ip(src, dst, 17, &build::udp(src, dst, 1, 2, &[0; 958]));
        let n = (4 << 20) / f.len();
        let chunk: Vec<u8> = f.iter().copied().cycle().take(n * f.len()).collect();
        let frames: Vec<(usize, usize)> = (0..n).map(|i| (i * f.len(), f.len())).collect();
        let (_, sent) = with_dispatcher(1, |d| push_chunk(d, &Arc::new(chunk), &frames));
        assert_eq!(
            sent.len(),
            n / BATCH_PACKETS,
            "batches sent for {n} packets"
        );
        assert!(sent.iter().all(|b| b.packets.len() == BATCH_PACKETS));
        assert!(sent.iter().all(|b| b.bytes() == BATCH_PACKETS * f.len()));
    }

    #[test]
    fn sparse_shards_do_not_keep_old_chunks() {
        // at most the last MAX_CHUNK_AGE + 1 = 5 chunks; without the age rule
        // each sparse shard kept chunks of its own (16 here)
        assert_eq!(MAX_CHUNK_AGE, 4);
        let held = chunks_held_while_filling();
        assert!(held <= 5, "{held} chunks held");
    }
}
