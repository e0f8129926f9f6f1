//! `Engine::run_sources` with live sources that never end by themselves:
//! when one worker fails, the others stop and the run ends with the error.

use crate::engine::{Bomb, Mem};
use libpcap_analyzer::plugin::{Plugin, PluginResult};
use libpcap_analyzer::samples::sample_trace;
use libpcap_analyzer::{AnalyzerError, Engine};
use libpcap_tools::{Config, PacketSource, SourceEvent, SourceProgress, Timestamp};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A live source with no traffic: an idle tick every 2 ms, forever.
struct Endless(Arc<AtomicU64>);

impl PacketSource for Endless {
    fn next_event(&mut self) -> libpcap_tools::Result<SourceEvent<'_>> {
        std::thread::sleep(Duration::from_millis(2));
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        Ok(SourceEvent::Timeout {
            now: Timestamp::from_secs_nanos(1_700_000_000 + n as i64, 0),
        })
    }
    fn name(&self) -> &str {
        "endless"
    }
    fn progress(&self) -> SourceProgress {
        SourceProgress::default()
    }
    fn is_live(&self) -> bool {
        true
    }
}

/// What the failing source does after its packets.
enum Failure {
    Error,
    Panic,
}

/// Delivers the sample trace, then fails.
struct Failing(Mem, Failure);

impl PacketSource for Failing {
    fn next_event(&mut self) -> libpcap_tools::Result<SourceEvent<'_>> {
        std::thread::sleep(Duration::from_millis(20));
        // the borrow checker wants the end known before the packet is lent
        let ended = {
            let e = self.0.next_event()?;
            matches!(e, SourceEvent::End)
        };
        if ended {
            return match self.1 {
                Failure::Error => Err(libpcap_tools::Error::Source {
                    context: "capture on 'fake0'".into(),
                    source: "the network is down".into(),
                }),
                Failure::Panic => panic!("source bug"),
            };
        }
        Ok(SourceEvent::Timeout {
            now: Timestamp::from_secs_nanos(1_700_000_000, 0),
        })
    }
    fn name(&self) -> &str {
        "failing"
    }
    fn progress(&self) -> SourceProgress {
        SourceProgress::default()
    }
    fn is_live(&self) -> bool {
        true
    }
}

/// Runs `sources` on another thread; the result, or a panic after 20 s
/// (the run did not stop).
fn run_with_deadline(
    sources: Vec<Box<dyn PacketSource>>,
    with_panicking_plugin: bool,
) -> Result<libpcap_analyzer::RunOutput, AnalyzerError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let config = Config::new();
        let engine = Engine::new(&config, sources.len()).unwrap();
        let factory = || -> PluginResult<Vec<Box<dyn Plugin>>> {
            Ok(if with_panicking_plugin {
                vec![Box::new(Bomb::at_first())]
            } else {
                Vec::new()
            })
        };
        let _ = tx.send(engine.run_sources(&factory, sources));
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the run did not end: the endless sources were not stopped")
}

#[test]
fn a_failing_source_stops_the_endless_ones_and_the_run_ends_with_its_error() {
    let ticks = Arc::new(AtomicU64::new(0));
    let sources: Vec<Box<dyn PacketSource>> = vec![
        Box::new(Endless(ticks.clone())),
        Box::new(Failing(
            Mem::new(sample_trace()[..3].to_vec()),
            Failure::Error,
        )),
        Box::new(Endless(ticks.clone())),
    ];
    match run_with_deadline(sources, false) {
        Err(AnalyzerError::Source(e)) => {
            assert_eq!(e.to_string(), "capture on 'fake0': the network is down")
        }
        other => panic!("{other:?}"),
    }
    assert!(ticks.load(Ordering::Relaxed) > 0, "the endless sources ran");
}

#[test]
fn a_panicking_plugin_stops_the_endless_sources() {
    let sources: Vec<Box<dyn PacketSource>> = vec![
        Box::new(Endless(Arc::default())),
        Box::new(Mem::new(sample_trace())),
    ];
    match run_with_deadline(sources, true) {
        Err(AnalyzerError::PluginPanicked(name)) => assert_eq!(name, "bomb"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_panicking_source_thread_stops_the_endless_sources() {
    let sources: Vec<Box<dyn PacketSource>> = vec![
        Box::new(Failing(
            Mem::new(sample_trace()[..2].to_vec()),
            Failure::Panic,
        )),
        Box::new(Endless(Arc::default())),
    ];
    match run_with_deadline(sources, false) {
        Err(AnalyzerError::Worker(msg)) => assert_eq!(msg, "source bug"),
        other => panic!("{other:?}"),
    }
}
