//! The multi-threaded engine: panics, one source per worker, and the
//! periodic connection report.

use libpcap_analyzer::plugin::{
    Decapsulated, Interest, Layers, PacketContext, Plugin, PluginResult, TransportLayer,
};
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_analyzer::plugins::connections::ConnectionsPlugin;
use libpcap_analyzer::samples::sample_trace;
use libpcap_analyzer::{AnalyzerError, Engine};
use libpcap_tools::{Config, OwnedPacket, PacketSource, SourceEvent, SourceProgress};

/// An in-memory source.
struct Mem {
    packets: Vec<OwnedPacket>,
    next: usize,
    delay: Option<std::time::Duration>,
}

impl Mem {
    fn new(packets: Vec<OwnedPacket>) -> Mem {
        Mem {
            packets,
            next: 0,
            delay: None,
        }
    }
}

impl PacketSource for Mem {
    fn next_event(&mut self) -> libpcap_tools::Result<SourceEvent<'_>> {
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        let i = self.next;
        self.next += 1;
        Ok(match self.packets.get(i) {
            Some(p) => SourceEvent::Packet(p.as_packet()),
            None => SourceEvent::End,
        })
    }
    fn name(&self) -> &str {
        "memory"
    }
    fn progress(&self) -> SourceProgress {
        SourceProgress {
            packets: self.next as u64,
            ..SourceProgress::default()
        }
    }
}

/// Panics on the 20th transport layer it sees.
struct Bomb(u32);

impl Plugin for Bomb {
    fn name(&self) -> &str {
        "bomb"
    }
    fn interest(&self) -> Interest {
        Interest::new(Layers::TRANSPORT)
    }
    fn handle_transport(
        &mut self,
        _: &PacketContext<'_>,
        _: &TransportLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        self.0 += 1;
        assert!(self.0 < 20, "bomb goes off");
        Ok(None)
    }
}

#[test]
fn a_panicking_plugin_ends_a_multi_threaded_run_with_its_name() {
    let config = Config::new();
    for jobs in [1, 2, 4] {
        let engine = Engine::new(&config, jobs).unwrap();
        let factory = || -> PluginResult<Vec<Box<dyn Plugin>>> { Ok(vec![Box::new(Bomb(0))]) };
        let mut trace = Vec::new();
        for _ in 0..20 {
            trace.extend(sample_trace());
        }
        let r = engine.run(&factory, &mut Mem::new(trace));
        match r {
            Err(AnalyzerError::PluginPanicked(name)) => assert_eq!(name, "bomb"),
            other => panic!("-j {jobs}: {other:?}"),
        }
    }
}

fn report(out: &libpcap_analyzer::RunOutput) -> String {
    out.plugins
        .iter()
        .find_map(|p| {
            let any: &dyn std::any::Any = p.as_ref();
            any.downcast_ref::<ConnectionsPlugin>()
                .map(ConnectionsPlugin::render)
        })
        .unwrap()
}

#[test]
fn one_source_per_worker_gives_the_same_report_as_one_reader() {
    let config = Config::new();
    let registry = builtin_registry();
    let names = vec!["connections".to_string()];
    let factory = || registry.build(&names, &config);
    let trace = sample_trace();
    let whole = Engine::new(&config, 1)
        .unwrap()
        .run(&factory, &mut Mem::new(trace.clone()))
        .unwrap();
    // split by a symmetric function of the addresses, as a kernel fanout would
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for p in trace {
        let sum: u32 = p.data.iter().skip(26).take(8).map(|x| u32::from(*x)).sum();
        if sum.is_multiple_of(2) {
            a.push(p)
        } else {
            b.push(p)
        }
    }
    let sources: Vec<Box<dyn PacketSource>> = vec![Box::new(Mem::new(a)), Box::new(Mem::new(b))];
    let split = Engine::new(&config, 2)
        .unwrap()
        .run_sources(&factory, sources)
        .unwrap();
    assert_eq!(report(&split), report(&whole));
    assert_eq!(split.stats.packets, whole.stats.packets);
}

#[test]
fn the_periodic_report_is_replaced_while_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml(&format!(
        "[plugin.connections]\ninterval = 0.05\nformat = \"csv\"\noutdir = \"{}\"\n",
        dir.path().display()
    ))
    .unwrap();
    let registry = builtin_registry();
    let names = vec!["connections".to_string()];
    let factory = || registry.build(&names, &config);
    let path = dir.path().join("connections.csv");
    let mut src = Mem::new(sample_trace());
    src.delay = Some(std::time::Duration::from_millis(2));
    let watcher = {
        let path = path.clone();
        std::thread::spawn(move || {
            // every version seen while the run goes on is a complete report
            let mut seen = 0;
            for _ in 0..200 {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    assert!(
                        text.starts_with("source ip,source port,"),
                        "partial report: {text:?}"
                    );
                    assert!(text.ends_with("\r\n"), "partial report");
                    seen += 1;
                }
                std::thread::sleep(std::time::Duration::from_millis(3));
            }
            seen
        })
    };
    let mut out = Engine::new(&config, 2)
        .unwrap()
        .run(&factory, &mut src)
        .unwrap();
    let seen = watcher.join().unwrap();
    assert!(seen > 0, "no intermediate report was written");
    out.save_results(dir.path()).unwrap();
    let last = std::fs::read_to_string(&path).unwrap();
    assert_eq!(last.lines().count(), 1 + report(&out).lines().count() - 1);
    // no temporary file is left behind
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
