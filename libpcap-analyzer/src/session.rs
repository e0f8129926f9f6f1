//! A capture session: a run of the [`Engine`] that its owner can start,
//! pause, resume and stop from any thread, watch while it goes on, and that
//! rewrites its reports at an interval or on demand.
//!
//! ```text
//!            set_*()                         pause()
//!          ┌────────┐   start()          ─────────────►
//!          │Initial │ ───────────► Running              Paused
//!          └────────┘                    ◄─────────────
//!                                          resume()
//!                                   │                   │
//!                    request_stop() │                   │ request_stop()
//!                                   ▼                   ▼
//!                                   Stopping ◄──────────┘
//!                                   │
//!        stop() (from Running,      │ stop() / wait()
//!        Paused or Stopping),       ▼
//!        wait() (input ended)     Stopped
//! ```
//!
//! - **Initial**: the only state where settings change ([`Session::set_input`],
//!   [`Session::set_output_dir`], [`Session::set_report_interval`],
//!   [`Session::set_capture_control`]).
//! - **Running**: packets are analysed. The run may end by itself (end of the
//!   files, `--count`, `--duration`): [`SessionStats::finished`] turns true
//!   and [`Session::wait`] returns.
//! - **Paused**: live sources are still read, so that the kernel does not
//!   drop, but their packets are discarded and counted
//!   ([`SessionStats::discarded_while_paused`]; inline packets are
//!   accepted); files are not read until the session resumes or stops.
//! - **Stopping**: asked to stop ([`SessionHandle::request_stop`], e.g. from
//!   a signal handler): the sources end at their next event (live ones
//!   within their poll interval) and the flows are drained.
//! - **Stopped**: [`Session::stop`] or [`Session::wait`] drained the flows,
//!   wrote the final results into the output directory and returned them
//!   with the last [`SessionStats`].
//!
//! A call that the state does not allow (pausing a session not started,
//! resuming one that is not paused, stopping twice, changing a setting after
//! start) returns [`SessionError::InvalidTransition`]; nothing panics.
//!
//! **Reports while running.** With an output directory, a writer thread
//! saves a copy of the results ([`Plugin::snapshot`]: the connection report
//! today) every report interval and whenever [`SessionHandle::request_report`]
//! or [`Session::write_report`] asks; each file is replaced atomically, and
//! a copy is written only when every worker gave its part. The final
//! results are written after the writer stopped, so they are never replaced
//! by an older copy.
//!
//! **Watching.** [`SessionHandle::snapshot`] may be called at any time from
//! any thread: packets and bytes analysed, input read, flows alive and
//! created, anomalies, live packets discarded while paused, the kernel's
//! counters of a live capture. The analyzers publish their counters every
//! 1024 packets and at every idle tick, so the figures lag by at most that
//! much while packets flow and are exact once the run ended.
//!
//! ```
//! use libpcap_analyzer::plugins::builtin_registry;
//! use libpcap_analyzer::session::{Session, SessionInput, SessionState};
//! use libpcap_analyzer::{Engine, build};
//! use libpcap_tools::{Config, LinkType, Packet, Timestamp};
//! use std::sync::Arc;
//!
//! // a capture of one UDP datagram, in memory
//! let (c, s) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
//! let frame = build::ethernet(build::MAC_A, build::MAC_B, 0x0800,
//!     &build::ipv4(c, s, 17, 1, &build::udp(c.into(), s.into(), 5000, 53, b"hi")));
//! let packets = vec![Packet { index: 0, interface: 0, linktype: LinkType::ETHERNET,
//!     ts: Some(Timestamp::from_secs_nanos(1_700_000_000, 0)), origlen: frame.len() as u32,
//!     data: &frame }.to_owned()];
//! let source = libpcap_tools::synth::MemorySource::new(packets);
//!
//! let config = Config::new();
//! let registry = Arc::new(builtin_registry());
//! let factory = move || registry.build(&["connections".to_string()], &config);
//! let mut session = Session::new(Engine::new(&Config::new(), 1)?, Arc::new(factory));
//! session.set_input(SessionInput::Source(Box::new(source)))?;
//! session.start()?;
//! assert!(session.resume().is_err(), "only a paused session resumes");
//! let done = session.wait()?;
//! assert_eq!(session.state(), SessionState::Stopped);
//! assert_eq!(done.stats.packets, 1);
//! assert_eq!(done.output.stats.packets, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::analyzer::AnalyzerError;
use crate::control::{RunControl, RunState};
use crate::engine::{Engine, RunInput, RunOutput};
use crate::flow::FlowTableStats;
use crate::plugin::{Counters, Plugin, PluginError, PluginResult};
use libpcap_tools::{CaptureControl, PacketSource};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Builds one set of plugin instances (called once per worker), owned by
/// the session's threads.
pub type SharedFactory = Arc<dyn Fn() -> PluginResult<Vec<Box<dyn Plugin>>> + Send + Sync>;

/// How long a report waits for every worker's copy before it is skipped.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a session reads.
pub enum SessionInput {
    /// One source read by one thread and routed to the workers by flow
    /// (files, standard input).
    Source(Box<dyn PacketSource>),
    /// One source per worker, already balanced by flow (an AF_PACKET
    /// fanout group, NFQUEUE queues).
    PerWorker(Vec<Box<dyn PacketSource>>),
}

impl std::fmt::Debug for SessionInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionInput::Source(s) => write!(f, "Source({})", s.name()),
            SessionInput::PerWorker(v) => write!(f, "PerWorker({} sources)", v.len()),
        }
    }
}

/// The states of a session (see the module docs for the diagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Built, not started: settings may change.
    Initial,
    /// Analysing packets.
    Running,
    /// Reading live packets without analysing them; files wait.
    Paused,
    /// Asked to stop; the sources are ending.
    Stopping,
    /// Ended; the results were returned.
    Stopped,
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionState::Initial => "initial",
            SessionState::Running => "running",
            SessionState::Paused => "paused",
            SessionState::Stopping => "stopping",
            SessionState::Stopped => "stopped",
        })
    }
}

/// Why a session call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The call is not allowed in the current state.
    #[error("cannot {action} a session that is {state}")]
    InvalidTransition {
        /// The state the session was in.
        state: SessionState,
        /// What was asked (`start`, `pause`, `resume`, `stop`, …).
        action: &'static str,
    },
    /// `start` without an input.
    #[error("no input: give the session one with set_input before starting it")]
    NoInput,
    /// A report was asked of a session without an output directory.
    #[error("no output directory: the session writes no report")]
    NoOutputDir,
    /// The run failed.
    #[error(transparent)]
    Run(#[from] AnalyzerError),
    /// The results could not be written.
    #[error("cannot save the results: {0}")]
    Save(PluginError),
    /// A thread of the session could not be started.
    #[error("cannot start a session thread: {0}")]
    Thread(std::io::Error),
}

/// The figures of a session at one moment (see the module docs for how
/// fresh they are).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SessionStats {
    /// The state when the figures were taken.
    pub state: SessionState,
    /// The input ended (or the run failed): nothing more will be analysed.
    pub finished: bool,
    /// Seconds since the session started.
    pub elapsed_s: f64,
    /// Packets analysed.
    pub packets: u64,
    /// Their on-the-wire bytes.
    pub bytes: u64,
    /// Bytes of input read (compressed bytes of a compressed file).
    pub input_bytes: u64,
    /// Size of the input, when every source knows its own.
    pub input_total_bytes: Option<u64>,
    /// Live packets read while paused and discarded unanalysed.
    pub discarded_while_paused: u64,
    /// Packets the kernel handed to a live capture (drops included).
    pub kernel_packets: Option<u64>,
    /// Packets the kernel dropped (ring, queue or socket full).
    pub kernel_drops: Option<u64>,
    /// Flows in the flow tables now.
    pub flows_alive: u64,
    /// Flows created since the start.
    pub flows_created: u64,
    /// Anomalies by kind (see [`crate::stats::AnalyzerStats::anomalies`]).
    pub anomalies: BTreeMap<String, u64>,
    /// The plugins' counters, by plugin ([`crate::control::RunCounters::plugins`]).
    pub plugins: BTreeMap<String, Counters>,
    /// Intermediate reports written.
    pub reports_written: u64,
}

/// What a stopped session returns.
#[derive(Debug)]
pub struct SessionOutput {
    /// The merged plugins and counters of the run.
    pub output: RunOutput,
    /// The last figures.
    pub stats: SessionStats,
    /// The files written into the output directory (none without one).
    pub files: Vec<PathBuf>,
}

/// Settings fixed at start.
#[derive(Debug)]
struct Fixed {
    outdir: Option<PathBuf>,
    capture: Option<Arc<dyn CaptureControl>>,
    started: Instant,
}

/// Requests to the report writer.
#[derive(Debug, Default)]
struct Writer {
    pending: bool,
    stop: bool,
}

/// What the session's threads and handles share.
struct Shared {
    state: Mutex<SessionState>,
    ctl: RunControl,
    fixed: OnceLock<Fixed>,
    finished: AtomicBool,
    writer: Mutex<Writer>,
    writer_wake: Condvar,
    /// Held while a report is copied and saved: reports never interleave.
    saving: Mutex<()>,
    reports: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("state", &*lock(&self.state))
            .field("ctl", &self.ctl)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A handle on a session for other threads (signal handlers, a progress
/// display, a control socket): pause, resume, stop requests, reports and
/// figures. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionHandle(Arc<Shared>);

impl SessionHandle {
    /// The current state.
    pub fn state(&self) -> SessionState {
        *lock(&self.0.state)
    }

    /// Moves from `from` to `to`, or fails naming `action`.
    fn transition(
        &self,
        from: &[SessionState],
        to: SessionState,
        action: &'static str,
    ) -> Result<(), SessionError> {
        let mut st = lock(&self.0.state);
        if !from.contains(&st) {
            return Err(SessionError::InvalidTransition { state: *st, action });
        }
        *st = to;
        self.0.ctl.set_state(match to {
            SessionState::Paused => RunState::Paused,
            SessionState::Stopping | SessionState::Stopped => RunState::Stopping,
            _ => RunState::Running,
        });
        Ok(())
    }

    /// Running → Paused.
    ///
    /// # Errors
    /// [`SessionError::InvalidTransition`] in any other state.
    pub fn pause(&self) -> Result<(), SessionError> {
        self.transition(&[SessionState::Running], SessionState::Paused, "pause")
    }

    /// Paused → Running.
    ///
    /// # Errors
    /// [`SessionError::InvalidTransition`] in any other state.
    pub fn resume(&self) -> Result<(), SessionError> {
        self.transition(&[SessionState::Paused], SessionState::Running, "resume")
    }

    /// Pauses a running session or resumes a paused one, and returns the
    /// new state (what SIGUSR1 does in the tool).
    ///
    /// # Errors
    /// [`SessionError::InvalidTransition`] when neither running nor paused.
    pub fn toggle_pause(&self) -> Result<SessionState, SessionError> {
        let mut st = lock(&self.0.state);
        let to = match *st {
            SessionState::Running => SessionState::Paused,
            SessionState::Paused => SessionState::Running,
            other => {
                return Err(SessionError::InvalidTransition {
                    state: other,
                    action: "pause or resume",
                });
            }
        };
        *st = to;
        self.0.ctl.set_state(if to == SessionState::Paused {
            RunState::Paused
        } else {
            RunState::Running
        });
        Ok(to)
    }

    /// Running or Paused → Stopping: the sources end at their next event (a
    /// live capture is told to stop). Returns at once; [`Session::stop`] or
    /// [`Session::wait`] collect the results.
    ///
    /// # Errors
    /// [`SessionError::InvalidTransition`] in any other state.
    pub fn request_stop(&self) -> Result<(), SessionError> {
        self.transition(
            &[SessionState::Running, SessionState::Paused],
            SessionState::Stopping,
            "stop",
        )?;
        if let Some(c) = self.0.fixed.get().and_then(|f| f.capture.as_ref()) {
            c.stop();
        }
        Ok(())
    }

    /// Asks the writer thread for a report now (what SIGUSR2 does in the
    /// tool); returns at once.
    ///
    /// # Errors
    /// [`SessionError::NoOutputDir`] without an output directory,
    /// [`SessionError::InvalidTransition`] before start or once stopped.
    pub fn request_report(&self) -> Result<(), SessionError> {
        self.check_report("request a report of")?;
        lock(&self.0.writer).pending = true;
        self.0.writer_wake.notify_all();
        Ok(())
    }

    fn check_report(&self, action: &'static str) -> Result<&Path, SessionError> {
        let st = self.state();
        if matches!(st, SessionState::Initial | SessionState::Stopped) {
            return Err(SessionError::InvalidTransition { state: st, action });
        }
        self.0
            .fixed
            .get()
            .and_then(|f| f.outdir.as_deref())
            .ok_or(SessionError::NoOutputDir)
    }

    /// The figures now (callable from any thread, in any state).
    pub fn snapshot(&self) -> SessionStats {
        let sh = &self.0;
        let c = sh.ctl.counters();
        let fixed = sh.fixed.get();
        let kernel = fixed.and_then(|f| f.capture.as_ref()).map(|c| c.counters());
        SessionStats {
            state: self.state(),
            finished: sh.finished.load(Ordering::Acquire),
            elapsed_s: fixed.map_or(0.0, |f| f.started.elapsed().as_secs_f64()),
            packets: c.stats.packets,
            bytes: c.stats.bytes,
            input_bytes: c.input.bytes,
            input_total_bytes: c.input.total_bytes,
            discarded_while_paused: c.discarded_while_paused,
            kernel_packets: kernel.and_then(|k| k.kernel_packets),
            kernel_drops: kernel.and_then(|k| k.kernel_drops),
            flows_alive: c.flows_alive,
            flows_created: c.flows_created,
            anomalies: c.stats.anomalies,
            plugins: c.plugins,
            reports_written: sh.reports.load(Ordering::Relaxed),
        }
    }
}

/// Copies the results and saves them into `dir` (see the module docs);
/// `Ok(None)` when no complete copy could be taken.
fn write_intermediate(sh: &Shared, dir: &Path) -> Result<Option<Vec<PathBuf>>, PluginError> {
    let _g = lock(&sh.saving);
    let Some(mut plugins) = sh.ctl.request_snapshot(SNAPSHOT_TIMEOUT) else {
        return Ok(None);
    };
    if plugins.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let stats = sh.ctl.counters().stats;
    for p in &mut plugins {
        p.run_stats(&stats);
        p.post_process()?;
    }
    let mut out = RunOutput {
        plugins,
        stats,
        flows: FlowTableStats::default(),
        warning: None,
        memory: Vec::new(),
        input_warnings: Vec::new(),
    };
    let files = out.save_results(dir)?;
    sh.reports.fetch_add(1, Ordering::Relaxed);
    Ok(Some(files))
}

/// The report writer thread: a report every `interval` and on request,
/// until told to stop.
fn writer_loop(sh: &Shared, dir: &Path, interval: Option<Duration>) {
    let mut last = Instant::now();
    loop {
        let due = {
            let mut w = lock(&sh.writer);
            loop {
                if w.stop {
                    return;
                }
                if w.pending {
                    w.pending = false;
                    break true;
                }
                let wait = match interval {
                    Some(i) => match i.checked_sub(last.elapsed()) {
                        Some(left) if !left.is_zero() => left,
                        _ => break true,
                    },
                    None => Duration::from_secs(3600),
                };
                w = sh
                    .writer_wake
                    .wait_timeout(w, wait)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        };
        if due && !sh.finished.load(Ordering::Acquire) {
            match write_intermediate(sh, dir) {
                Ok(Some(files)) => log::debug!("intermediate report: {} files", files.len()),
                Ok(None) => log::debug!("intermediate report skipped: no complete copy"),
                Err(e) => log::warn!("cannot write the intermediate report: {e}"),
            }
        }
        last = Instant::now();
    }
}

/// A capture session (see the module docs).
pub struct Session {
    shared: Arc<Shared>,
    engine: Engine,
    factory: SharedFactory,
    input: Option<SessionInput>,
    outdir: Option<PathBuf>,
    interval: Option<Duration>,
    capture: Option<Arc<dyn CaptureControl>>,
    run: Option<std::thread::JoinHandle<Result<RunOutput, AnalyzerError>>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &self.state())
            .field("engine", &self.engine)
            .field("input", &self.input)
            .field("outdir", &self.outdir)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session in state [`SessionState::Initial`] that will run `engine`
    /// with the plugins `factory` builds (once per worker).
    pub fn new(engine: Engine, factory: SharedFactory) -> Session {
        Session {
            shared: Arc::new(Shared {
                state: Mutex::new(SessionState::Initial),
                ctl: RunControl::new(),
                fixed: OnceLock::new(),
                finished: AtomicBool::new(false),
                writer: Mutex::new(Writer::default()),
                writer_wake: Condvar::new(),
                saving: Mutex::new(()),
                reports: AtomicU64::new(0),
            }),
            engine,
            factory,
            input: None,
            outdir: None,
            interval: None,
            capture: None,
            run: None,
            writer: None,
        }
    }

    /// A handle for other threads.
    pub fn handle(&self) -> SessionHandle {
        SessionHandle(self.shared.clone())
    }

    /// The current state.
    pub fn state(&self) -> SessionState {
        self.handle().state()
    }

    fn initial(&self, action: &'static str) -> Result<(), SessionError> {
        match self.state() {
            SessionState::Initial => Ok(()),
            state => Err(SessionError::InvalidTransition { state, action }),
        }
    }

    /// Sets what the session reads.
    ///
    /// # Errors
    /// [`SessionError::InvalidTransition`] after start.
    pub fn set_input(&mut self, input: SessionInput) -> Result<&mut Session, SessionError> {
        self.initial("set the input of")?;
        self.input = Some(input);
        Ok(self)
    }

    /// Sets the directory of the reports (intermediate and final), which
    /// must exist; `None`: nothing is written.
    ///
    /// # Errors
    /// [`SessionError::InvalidTransition`] after start.
    pub fn set_output_dir(&mut self, dir: Option<PathBuf>) -> Result<&mut Session, SessionError> {
        self.initial("set the output directory of")?;
        self.outdir = dir;
        Ok(self)
    }

    /// Sets the time between two intermediate reports (`None` or zero: only
    /// on request).
    ///
    /// # Errors
    /// [`SessionError::InvalidTransition`] after start.
    pub fn set_report_interval(
        &mut self,
        interval: Option<Duration>,
    ) -> Result<&mut Session, SessionError> {
        self.initial("set the report interval of")?;
        self.interval = interval.filter(|d| !d.is_zero());
        Ok(self)
    }

    /// Sets the control of a live capture read by the input: stopping the
    /// session stops it, and its kernel counters join the figures.
    ///
    /// # Errors
    /// [`SessionError::InvalidTransition`] after start.
    pub fn set_capture_control(
        &mut self,
        capture: Arc<dyn CaptureControl>,
    ) -> Result<&mut Session, SessionError> {
        self.initial("set the capture control of")?;
        self.capture = Some(capture);
        Ok(self)
    }

    /// Initial → Running: starts the run (and the report writer, with an
    /// output directory) on threads of their own.
    ///
    /// # Errors
    /// [`SessionError::InvalidTransition`] when already started,
    /// [`SessionError::NoInput`], [`SessionError::Thread`].
    pub fn start(&mut self) -> Result<(), SessionError> {
        self.initial("start")?;
        let input = self.input.take().ok_or(SessionError::NoInput)?;
        let _ = self.shared.fixed.set(Fixed {
            outdir: self.outdir.clone(),
            capture: self.capture.clone(),
            started: Instant::now(),
        });
        let sh = self.shared.clone();
        let engine = self.engine.clone();
        let factory = self.factory.clone();
        let run = std::thread::Builder::new()
            .name("pal-session".into())
            .spawn(move || {
                let r = match input {
                    SessionInput::Source(mut s) => {
                        engine.run_with(&*factory, RunInput::Source(s.as_mut()), &sh.ctl)
                    }
                    SessionInput::PerWorker(v) => {
                        engine.run_with(&*factory, RunInput::PerWorker(v), &sh.ctl)
                    }
                };
                sh.finished.store(true, Ordering::Release);
                r
            })
            .map_err(SessionError::Thread)?;
        self.run = Some(run);
        if let Some(dir) = self.outdir.clone() {
            let sh = self.shared.clone();
            let interval = self.interval;
            match std::thread::Builder::new()
                .name("pal-report-writer".into())
                .spawn(move || writer_loop(&sh, &dir, interval))
            {
                Ok(h) => self.writer = Some(h),
                Err(e) => {
                    // no writer: end the run that started
                    let _ = self.handle().request_stop();
                    let _ = self.finish();
                    return Err(SessionError::Thread(e));
                }
            }
        }
        *lock(&self.shared.state) = SessionState::Running;
        Ok(())
    }

    /// Running → Paused (see [`SessionHandle::pause`]).
    ///
    /// # Errors
    /// [`SessionError::InvalidTransition`] in any other state.
    pub fn pause(&self) -> Result<(), SessionError> {
        self.handle().pause()
    }

    /// Paused → Running (see [`SessionHandle::resume`]).
    ///
    /// # Errors
    /// [`SessionError::InvalidTransition`] in any other state.
    pub fn resume(&self) -> Result<(), SessionError> {
        self.handle().resume()
    }

    /// The figures now (see [`SessionHandle::snapshot`]).
    pub fn snapshot(&self) -> SessionStats {
        self.handle().snapshot()
    }

    /// Writes a report of the results so far into the output directory now,
    /// on the calling thread, and returns the files written (none when no
    /// complete copy could be taken: the run ended, or a worker did not
    /// answer in time).
    ///
    /// # Errors
    /// [`SessionError::NoOutputDir`], [`SessionError::InvalidTransition`]
    /// before start or once stopped, [`SessionError::Save`].
    pub fn write_report(&self) -> Result<Vec<PathBuf>, SessionError> {
        let h = self.handle();
        let dir = h.check_report("write a report of")?;
        match write_intermediate(&self.shared, dir) {
            Ok(files) => Ok(files.unwrap_or_default()),
            Err(e) => Err(SessionError::Save(e)),
        }
    }

    /// Running, Paused or Stopping → Stopped: asks the sources to end,
    /// drains the flows, writes the final results into the output
    /// directory and returns them.
    ///
    /// # Errors
    /// [`SessionError::InvalidTransition`] before start or once stopped,
    /// [`SessionError::Run`] when the run failed, [`SessionError::Save`].
    pub fn stop(&mut self) -> Result<SessionOutput, SessionError> {
        match self.state() {
            SessionState::Running | SessionState::Paused => self.handle().request_stop()?,
            SessionState::Stopping => {}
            state => {
                return Err(SessionError::InvalidTransition {
                    state,
                    action: "stop",
                });
            }
        }
        self.finish()
    }

    /// Waits for the run to end by itself (end of the input, a limit of a
    /// live capture, or [`SessionHandle::request_stop`] from another
    /// thread), then ends as [`Session::stop`]. A paused file source waits
    /// until another thread resumes or stops the session.
    ///
    /// # Errors
    /// As [`Session::stop`].
    pub fn wait(&mut self) -> Result<SessionOutput, SessionError> {
        match self.state() {
            SessionState::Running | SessionState::Paused | SessionState::Stopping => {}
            state => {
                return Err(SessionError::InvalidTransition {
                    state,
                    action: "wait for",
                });
            }
        }
        self.finish()
    }

    /// Joins the run and the writer, saves the results, → Stopped.
    fn finish(&mut self) -> Result<SessionOutput, SessionError> {
        let run = self
            .run
            .take()
            .map(|h| {
                h.join().unwrap_or_else(|p| {
                    Err(AnalyzerError::Worker(
                        p.downcast_ref::<&str>()
                            .map(|s| (*s).to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "the session thread panicked".into()),
                    ))
                })
            })
            .unwrap_or_else(|| Err(AnalyzerError::Worker("the run never started".into())));
        self.shared.finished.store(true, Ordering::Release);
        lock(&self.shared.writer).stop = true;
        self.shared.writer_wake.notify_all();
        if let Some(w) = self.writer.take()
            && w.join().is_err()
        {
            log::warn!("the report writer thread panicked");
        }
        *lock(&self.shared.state) = SessionState::Stopped;
        self.shared.ctl.set_state(RunState::Stopping);
        let mut output = run?;
        let files = match &self.outdir {
            Some(dir) => {
                let _g = lock(&self.shared.saving);
                output.save_results(dir).map_err(SessionError::Save)?
            }
            None => Vec::new(),
        };
        let mut stats = self.handle().snapshot();
        // the counters of the merged run, exact
        stats.packets = output.stats.packets;
        stats.bytes = output.stats.bytes;
        stats.anomalies = output.stats.anomalies.clone();
        stats.flows_created = output.flows.created;
        stats.flows_alive = 0;
        Ok(SessionOutput {
            output,
            stats,
            files,
        })
    }
}

impl Drop for Session {
    /// A session dropped while running is stopped (its results are not
    /// saved): no thread outlives it.
    fn drop(&mut self) {
        if self.run.is_some() {
            let _ = self.handle().request_stop();
            self.shared.ctl.set_state(RunState::Stopping);
            if let Some(h) = self.run.take() {
                let _ = h.join();
            }
        }
        lock(&self.shared.writer).stop = true;
        self.shared.writer_wake.notify_all();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}
