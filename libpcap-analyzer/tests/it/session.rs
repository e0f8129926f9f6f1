//! The capture session: its state machine, pausing a file, reports written
//! while the run goes on and when it stops (live pausing is tested with
//! real traffic in libpcap-live's and pcap-analyzer's live tests).

use crate::engine::{Mem, report};
use libpcap_analyzer::Engine;
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_analyzer::samples::sample_trace;
use libpcap_analyzer::session::{Session, SessionError, SessionInput, SessionState, SharedFactory};
use libpcap_tools::{Config, OwnedPacket, PacketSource, SourceEvent, SourceProgress};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A memory source that counts the events it was asked for.
struct Counting {
    inner: Mem,
    asked: Arc<AtomicU64>,
}

impl PacketSource for Counting {
    fn next_event(&mut self) -> libpcap_tools::Result<SourceEvent<'_>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.inner.next_event()
    }
    fn name(&self) -> &str {
        "counting"
    }
    fn progress(&self) -> SourceProgress {
        self.inner.progress()
    }
}

/// `rounds` copies of the sample trace, each shifted by 1000 s so the
/// flows of one round have ended before the next starts.
fn long_trace(rounds: i64) -> Vec<OwnedPacket> {
    let mut out = Vec::new();
    for r in 0..rounds {
        for mut p in sample_trace() {
            p.ts =
                p.ts.map(|t| libpcap_tools::Timestamp(t.0 + r * 1_000_000_000_000));
            out.push(p);
        }
    }
    out
}

fn factory() -> SharedFactory {
    let config = Config::new();
    let registry = builtin_registry();
    Arc::new(move || registry.build(&["connections".to_string()], &config))
}

/// The report of an uninterrupted run over `packets`.
fn reference(packets: Vec<OwnedPacket>) -> String {
    let f = factory();
    let out = Engine::new(&Config::new(), 1)
        .unwrap()
        .run(&*f, &mut Mem::new(packets))
        .unwrap();
    report(&out)
}

fn session(jobs: usize, source: impl PacketSource + 'static) -> Session {
    let mut s = Session::new(Engine::new(&Config::new(), jobs).unwrap(), factory());
    s.set_input(SessionInput::Source(Box::new(source))).unwrap();
    s
}

/// Waits until `cond` holds, at most 20 s.
fn until(what: &str, cond: impl Fn() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn invalid(r: Result<impl std::fmt::Debug, SessionError>, state: SessionState) {
    match r {
        Err(SessionError::InvalidTransition { state: s, .. }) => assert_eq!(s, state),
        other => panic!("expected an invalid transition from {state}: {other:?}"),
    }
}

#[test]
fn every_transition_and_every_invalid_one() {
    for jobs in [1, 2] {
        let trace = long_trace(20);
        let total = trace.len() as u64;
        let mut s = Session::new(Engine::new(&Config::new(), jobs).unwrap(), factory());
        let h = s.handle();
        assert_eq!(s.state(), SessionState::Initial);
        // nothing but settings and start before start
        invalid(s.pause(), SessionState::Initial);
        invalid(s.resume(), SessionState::Initial);
        invalid(h.toggle_pause(), SessionState::Initial);
        invalid(h.request_stop(), SessionState::Initial);
        invalid(h.request_report(), SessionState::Initial);
        invalid(s.write_report(), SessionState::Initial);
        invalid(s.stop(), SessionState::Initial);
        invalid(s.wait(), SessionState::Initial);
        assert!(matches!(s.start(), Err(SessionError::NoInput)));
        assert_eq!(s.state(), SessionState::Initial);
        s.set_input(SessionInput::Source(Box::new(
            Mem::new(trace).with_delay(Duration::from_micros(500)),
        )))
        .unwrap();
        s.set_report_interval(None).unwrap();
        s.start().unwrap();
        assert_eq!(s.state(), SessionState::Running);
        // settings are for the initial state only
        invalid(s.set_output_dir(None).map(|_| ()), SessionState::Running);
        invalid(
            s.set_report_interval(None).map(|_| ()),
            SessionState::Running,
        );
        invalid(
            s.set_input(SessionInput::PerWorker(Vec::new())).map(|_| ()),
            SessionState::Running,
        );
        invalid(s.start(), SessionState::Running);
        invalid(s.resume(), SessionState::Running);
        // no output directory: no report
        assert!(matches!(h.request_report(), Err(SessionError::NoOutputDir)));
        assert!(matches!(s.write_report(), Err(SessionError::NoOutputDir)));
        s.pause().unwrap();
        assert_eq!(s.state(), SessionState::Paused);
        invalid(s.pause(), SessionState::Paused);
        assert_eq!(h.toggle_pause().unwrap(), SessionState::Running);
        assert_eq!(h.toggle_pause().unwrap(), SessionState::Paused);
        s.resume().unwrap();
        assert_eq!(s.state(), SessionState::Running);
        h.request_stop().unwrap();
        assert_eq!(s.state(), SessionState::Stopping);
        invalid(h.request_stop(), SessionState::Stopping);
        invalid(s.pause(), SessionState::Stopping);
        invalid(h.toggle_pause(), SessionState::Stopping);
        let out = s.stop().unwrap();
        assert_eq!(s.state(), SessionState::Stopped);
        assert!(out.stats.finished);
        assert!(
            out.output.stats.packets < total,
            "-j {jobs}: stopped before the end ({} of {total})",
            out.output.stats.packets
        );
        assert_eq!(out.stats.packets, out.output.stats.packets);
        for r in [s.pause(), s.resume(), h.request_stop()] {
            invalid(r, SessionState::Stopped);
        }
        invalid(s.stop(), SessionState::Stopped);
        invalid(s.wait(), SessionState::Stopped);
        invalid(s.start(), SessionState::Stopped);
        invalid(h.request_report(), SessionState::Stopped);
        // the figures stay readable
        assert_eq!(h.snapshot().state, SessionState::Stopped);
    }
}

#[test]
fn a_paused_file_is_not_read_and_the_run_resumes_where_it_stopped() {
    for jobs in [1, 2] {
        let trace = long_trace(30);
        let want = reference(trace.clone());
        let asked = Arc::new(AtomicU64::new(0));
        let src = Counting {
            inner: Mem::new(trace).with_delay(Duration::from_micros(300)),
            asked: asked.clone(),
        };
        let mut s = session(jobs, src);
        s.start().unwrap();
        until("some packets read", || asked.load(Ordering::SeqCst) > 100);
        s.pause().unwrap();
        // the event being read when the pause came may still finish
        std::thread::sleep(Duration::from_millis(50));
        let at_pause = asked.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(
            asked.load(Ordering::SeqCst),
            at_pause,
            "-j {jobs}: the file was read while paused"
        );
        assert_eq!(s.snapshot().state, SessionState::Paused);
        assert_eq!(
            s.snapshot().discarded_while_paused,
            0,
            "a file discards nothing"
        );
        s.resume().unwrap();
        let out = s.wait().unwrap();
        assert!(asked.load(Ordering::SeqCst) > at_pause);
        assert_eq!(
            report(&out.output),
            want,
            "-j {jobs}: nothing lost or doubled"
        );
        assert_eq!(out.stats.discarded_while_paused, 0);
    }
}

/// Every row of `report` (header included), in file order.
fn read_report(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[test]
fn reports_are_rewritten_while_running_and_stop_writes_a_complete_one() {
    for jobs in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connections.txt");
        let trace = long_trace(40);
        let mut s = session(
            jobs,
            Mem::new(trace.clone()).with_delay(Duration::from_micros(300)),
        );
        s.set_output_dir(Some(dir.path().to_path_buf())).unwrap();
        s.set_report_interval(Some(Duration::from_millis(40)))
            .unwrap();
        s.start().unwrap();
        // every version seen while the run goes on is a complete report
        let mut versions = std::collections::BTreeSet::new();
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(800) {
            if let Some(text) = read_report(&path) {
                assert!(text.starts_with("source ip;"), "partial report: {text:?}");
                assert!(text.ends_with('\n'), "partial report: {text:?}");
                versions.insert(text);
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        assert!(
            versions.len() >= 2,
            "-j {jobs}: the report was not rewritten ({} versions)",
            versions.len()
        );
        assert!(s.snapshot().reports_written >= 2);
        let out = s.stop().unwrap();
        let analysed = out.output.stats.packets as usize;
        assert!(analysed < trace.len(), "stopped before the end");
        let last = read_report(&path).unwrap();
        assert_eq!(
            last,
            report(&out.output),
            "-j {jobs}: the final report is the run's"
        );
        if jobs == 1 {
            // one reader: what was analysed is exactly the first packets
            assert_eq!(last, reference(trace[..analysed].to_vec()));
        }
        assert!(out.files.contains(&path));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn a_report_on_demand_holds_the_flows_still_open() {
    for jobs in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connections.txt");
        // one round: its flows stay open until the end of the input
        let trace = long_trace(1);
        let src = Mem::new(trace.clone()).with_delay(Duration::from_millis(5));
        let asked = Arc::new(AtomicU64::new(0));
        let mut s = session(
            jobs,
            Counting {
                inner: src,
                asked: asked.clone(),
            },
        );
        s.set_output_dir(Some(dir.path().to_path_buf())).unwrap();
        s.start().unwrap();
        until("half the trace read", || {
            asked.load(Ordering::SeqCst) as usize > trace.len() / 2
        });
        s.pause().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let read = asked.load(Ordering::SeqCst) as usize;
        let files = s.write_report().unwrap();
        assert_eq!(files, vec![path.clone()]);
        let text = read_report(&path).unwrap();
        // what a run over the packets read so far reports at its end
        assert_eq!(text, reference(trace[..read].to_vec()), "-j {jobs}");
        assert!(text.lines().count() > 1, "rows of open flows");
        // and on request through a handle, from the writer thread
        let before = s.snapshot().reports_written;
        s.handle().request_report().unwrap();
        until("the requested report", || {
            s.snapshot().reports_written > before
        });
        s.resume().unwrap();
        let out = s.wait().unwrap();
        assert_eq!(read_report(&path).unwrap(), reference(trace.clone()));
        assert_eq!(out.stats.packets, trace.len() as u64);
    }
}

#[test]
fn figures_grow_while_running_and_are_exact_at_the_end() {
    let trace = long_trace(60);
    let total = trace.len() as u64;
    let mut s = session(2, Mem::new(trace).with_delay(Duration::from_micros(100)));
    s.start().unwrap();
    let h = s.handle();
    let watcher = std::thread::spawn(move || {
        let mut last = 0;
        let mut seen_flows = false;
        while !h.snapshot().finished {
            let f = h.snapshot();
            assert!(f.packets >= last, "packets never go back");
            last = f.packets;
            seen_flows |= f.flows_alive > 0;
            std::thread::sleep(Duration::from_millis(5));
        }
        (last, seen_flows)
    });
    let out = s.wait().unwrap();
    let (last, seen_flows) = watcher.join().unwrap();
    assert!(last > 0 && last <= total);
    assert!(seen_flows, "flows alive were seen while running");
    assert_eq!(out.stats.packets, total);
    assert_eq!(out.stats.flows_alive, 0);
    assert_eq!(out.stats.flows_created, out.output.flows.created);
    assert!(out.stats.input_bytes > 0);
    assert_eq!(out.stats.input_total_bytes, Some(out.stats.input_bytes));
}
