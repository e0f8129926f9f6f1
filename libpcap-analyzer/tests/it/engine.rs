//! The multi-threaded engine: panics, one source per worker, the order of
//! a flow's packets.

use libpcap_analyzer::plugin::{
    Decapsulated, Interest, Layers, PacketContext, Plugin, PluginResult, TransportLayer,
};
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_analyzer::plugins::connections::ConnectionsPlugin;
use libpcap_analyzer::samples::sample_trace;
use libpcap_analyzer::{AnalyzerError, Engine};
use libpcap_tools::{Config, OwnedPacket, PacketSource};

/// Packets held in memory, as a source (also used by other test modules).
pub(crate) use libpcap_tools::synth::MemorySource as Mem;

/// Panics on the 20th transport layer it sees (also used by the live-stop
/// tests, from its first with [`Bomb::at_first`]).
pub(crate) struct Bomb(u32);

impl Bomb {
    /// A bomb that goes off on the first transport layer.
    pub(crate) fn at_first() -> Bomb {
        Bomb(19)
    }
}

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

/// Panics when the instances of two workers are folded at the end.
struct MergeBomb;

impl Plugin for MergeBomb {
    fn name(&self) -> &str {
        "merge-bomb"
    }
    fn interest(&self) -> Interest {
        Interest::new(Layers::TRANSPORT)
    }
    fn merge(&mut self, _: Box<dyn Plugin>) -> PluginResult<()> {
        panic!("merge goes off")
    }
}

#[test]
fn a_plugin_panicking_while_merged_ends_the_run_with_an_error_naming_it() {
    let engine = Engine::new(&Config::new(), 2).unwrap();
    let factory = || -> PluginResult<Vec<Box<dyn Plugin>>> { Ok(vec![Box::new(MergeBomb)]) };
    match engine.run(&factory, &mut Mem::new(sample_trace())) {
        Err(AnalyzerError::Plugin(e)) => {
            let text = e.to_string();
            assert!(
                text.contains("merge-bomb") && text.contains("merge goes off"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
}

pub(crate) fn report(out: &libpcap_analyzer::RunOutput) -> String {
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

/// Records, per flow, the index of every packet it sees and the threads
/// that handed them over; slow enough that the workers fall behind the
/// reader.
#[derive(Default)]
struct Order {
    per_flow: std::collections::HashMap<libpcap_tools::FlowId, Vec<u64>>,
    threads: std::collections::BTreeSet<String>,
}

impl Plugin for Order {
    fn name(&self) -> &str {
        "order"
    }
    fn interest(&self) -> Interest {
        Interest::new(Layers::TRANSPORT)
    }
    fn handle_transport(
        &mut self,
        ctx: &PacketContext<'_>,
        t: &TransportLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        std::thread::sleep(std::time::Duration::from_micros(5));
        self.per_flow
            .entry(t.flow.id)
            .or_default()
            .push(ctx.packet.index);
        let name = std::thread::current().name().unwrap_or("").to_string();
        self.threads.insert(name);
        Ok(None)
    }
    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let any: Box<dyn std::any::Any> = other;
        let other = any.downcast::<Order>().unwrap();
        for (flow, v) in other.per_flow {
            assert!(
                self.per_flow.insert(flow, v).is_none(),
                "flow {flow} was handled in two shards"
            );
        }
        self.threads.extend(other.threads);
        Ok(())
    }
}

#[test]
fn each_flow_is_handled_in_capture_order_while_the_reader_helps_full_queues() {
    use libpcap_analyzer::build;
    use std::net::{IpAddr, Ipv4Addr};
    // 64 UDP flows in both directions, interleaved packet by packet
    let mut trace = Vec::new();
    let t0 = 1_700_000_000_000_000_000i64;
    for round in 0..400u16 {
        for f in 0..64u8 {
            let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, f));
            let b = IpAddr::V4(Ipv4Addr::new(10, 1, 0, f));
            let (src, dst, sp, dp) = if round % 3 == 2 {
                (b, a, 53, 4000 + u16::from(f))
            } else {
                (a, b, 4000 + u16::from(f), 53)
            };
            let frame = build::eth_ip(
                src,
                dst,
                17,
                &build::udp(src, dst, sp, dp, &[round as u8; 32]),
            );
            let index = trace.len() as u64;
            trace.push(OwnedPacket {
                index,
                interface: 0,
                linktype: libpcap_tools::LinkType::ETHERNET,
                ts: Some(libpcap_tools::Timestamp(t0 + index as i64 * 1000)),
                origlen: frame.len() as u32,
                data: frame,
            });
        }
    }
    let config = Config::new();
    let factory = || -> PluginResult<Vec<Box<dyn Plugin>>> { Ok(vec![Box::new(Order::default())]) };
    let reader = std::thread::current().name().unwrap_or("").to_string();
    for jobs in [2, 3] {
        let out = Engine::new(&config, jobs)
            .unwrap()
            .run(&factory, &mut Mem::new(trace.clone()))
            .unwrap();
        let any: &dyn std::any::Any = out.plugins[0].as_ref();
        let order = any.downcast_ref::<Order>().unwrap();
        assert_eq!(order.per_flow.len(), 64, "-j {jobs}");
        for (flow, seen) in &order.per_flow {
            assert_eq!(seen.len(), 400, "-j {jobs}, flow {flow}");
            assert!(
                seen.windows(2).all(|w| w[0] < w[1]),
                "-j {jobs}, flow {flow}: out of capture order: {seen:?}"
            );
        }
        // the workers, and the reading thread while their queues were full
        assert!(
            order.threads.contains(&reader),
            "-j {jobs}: {:?}",
            order.threads
        );
        assert!(
            order.threads.iter().any(|t| t.starts_with("pal-worker-")),
            "-j {jobs}: {:?}",
            order.threads
        );
    }
}
