//! The plugins' counters ([`Plugin::counters`]) and the reassembly
//! counters: published while a run goes on, whole at its end, the same
//! with one worker or several (issue 13: every loss where the user looks).

use libpcap_analyzer::plugin::{Counters, Interest, Layers, Plugin, PluginResult};
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_analyzer::session::{Session, SessionInput, SharedFactory};
use libpcap_analyzer::{Engine, build};
use libpcap_tools::synth::MemorySource;
use libpcap_tools::{Config, LinkType, OwnedPacket, Timestamp};
use std::sync::Arc;

fn owned(frames: Vec<Vec<u8>>) -> Vec<OwnedPacket> {
    frames
        .into_iter()
        .enumerate()
        .map(|(i, data)| OwnedPacket {
            index: i as u64,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: Some(Timestamp::from_secs_nanos(1_700_000_000, i as i64 * 1000)),
            origlen: data.len() as u32,
            data,
        })
        .collect()
}

/// A DNS response whose question name is a pointer past the message end,
/// from a server to a client port that spreads them over the workers.
fn malformed(i: u16) -> Vec<u8> {
    let mut m = i.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0, 1, 0, 1]);
    let client = [10, 0, (i >> 8) as u8, i as u8];
    build::eth_udp4(
        build::MAC_B,
        build::MAC_A,
        None,
        [192, 0, 2, 53],
        client,
        53,
        5353,
        &m,
    )
}

#[test]
fn dns_losses_reach_the_session_figures_and_the_output() {
    let config = Config::new();
    let registry = Arc::new(builtin_registry());
    let factory: SharedFactory = Arc::new(move || registry.build(&["dns".to_string()], &config));
    for jobs in [1, 2, 3] {
        let frames: Vec<_> = (0..3000u16).map(malformed).collect();
        let mut session = Session::new(Engine::new(&Config::new(), jobs).unwrap(), factory.clone());
        session
            .set_input(SessionInput::Source(Box::new(MemorySource::new(owned(
                frames,
            )))))
            .unwrap();
        session.start().unwrap();
        let done = session.wait().unwrap();
        // the figures published by the workers, added by name
        let live = &done.stats.plugins["dns"];
        assert_eq!(live.get("malformed"), Some(3000), "-j {jobs}");
        assert_eq!(live.get("messages"), Some(0), "-j {jobs}");
        // the merged instance's
        let out = done.output.plugin_counters();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, "dns");
        let losses: Vec<_> = out[0]
            .1
            .losses()
            .map(|l| (l.name.to_string(), l.value))
            .collect();
        assert_eq!(losses, [("malformed".to_string(), 3000)], "-j {jobs}");
    }
}

/// Counts packets; its counters panic after the first call when asked to.
struct Flaky {
    packets: u64,
    panic: bool,
}

impl Plugin for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn interest(&self) -> Interest {
        Interest::new(Layers::LINK)
    }
    fn handle_link(
        &mut self,
        _: &libpcap_analyzer::plugin::PacketContext<'_>,
        _: &libpcap_analyzer::plugin::LinkLayer<'_>,
    ) -> PluginResult<Option<libpcap_analyzer::plugin::Decapsulated>> {
        self.packets += 1;
        Ok(None)
    }
    fn counters(&self) -> Counters {
        assert!(!self.panic, "counters of a broken plugin");
        Counters::new().count("packets", self.packets)
    }
}

#[test]
fn a_plugin_whose_counters_panic_has_none_and_the_run_goes_on() {
    for panic in [false, true] {
        let frames: Vec<_> = (0..2100u16).map(malformed).collect();
        let cell = std::sync::Mutex::new(Some(vec![
            Box::new(Flaky { packets: 0, panic }) as Box<dyn Plugin>
        ]));
        let factory = || Ok(cell.lock().unwrap().take().unwrap_or_default());
        let out = Engine::new(&Config::new(), 1)
            .unwrap()
            .run(&factory, &mut MemorySource::new(owned(frames)))
            .unwrap();
        assert_eq!(out.stats.packets, 2100);
        let c = out.plugin_counters();
        if panic {
            assert!(c.is_empty(), "{c:?}");
        } else {
            assert_eq!(c[0].1.get("packets"), Some(2100));
        }
    }
}

/// A TCP segment of 10.0.0.1:40000 -> 10.0.0.2:80, or of the connection
/// `n` (other addresses) to spread connections over workers.
fn seg(n: u8, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    build::eth_tcp4(
        build::MAC_A,
        build::MAC_B,
        [10, 0, 1, n],
        [10, 0, 2, n],
        40000,
        80,
        seq,
        1,
        flags,
        payload,
    )
}

#[test]
fn reassembly_drops_are_counted_whatever_the_workers() {
    // per connection: a SYN, 3 segments beyond the window, 1 in order
    let mut config = Config::new();
    config.set("tcp_reassembly", "max_window_ahead", 100_000i64);
    let mut frames = Vec::new();
    for n in 0..8u8 {
        frames.push(seg(n, 0, 0x02, &[]));
        for k in 0..3u32 {
            frames.push(seg(n, 1 + 200_000 + k * 1000, 0x18, b"far"));
        }
        frames.push(seg(n, 1, 0x18, b"near"));
    }
    let registry = builtin_registry();
    let mut first = None;
    for jobs in [1, 2, 4] {
        let factory = || registry.build(&["tls".to_string()], &config);
        let out = Engine::new(&config, jobs)
            .unwrap()
            .run(&factory, &mut MemorySource::new(owned(frames.clone())))
            .unwrap();
        let r = &out.stats.reassembly;
        assert_eq!(r.segments, 40, "-j {jobs}");
        assert_eq!(r.out_of_window_segments, 24, "-j {jobs}");
        assert_eq!(r.bytes_delivered, 32, "-j {jobs}");
        let c = r.counters();
        assert_eq!(c.losses().map(|l| l.value).sum::<u64>(), 24);
        match &first {
            None => first = Some(r.clone()),
            Some(f) => assert_eq!(f, r, "-j {jobs}"),
        }
    }
}

#[test]
fn tls_handshakes_over_the_budget_are_a_named_loss() {
    // 6 connections whose ClientHello does not fit a 100-byte budget
    let config = Config::from_toml("[plugin.tls]\nmax_total_buffer = 100\n").unwrap();
    let hello = build::tls_client_hello("example.org", &["h2"]);
    assert!(hello.len() > 100);
    let mut frames = Vec::new();
    for n in 0..6u8 {
        frames.push(seg(n, 0, 0x02, &[]));
        frames.push(seg(n, 1, 0x18, &hello));
    }
    let registry = builtin_registry();
    for jobs in [1, 2] {
        let factory = || registry.build(&["tls".to_string()], &config);
        let out = Engine::new(&config, jobs)
            .unwrap()
            .run(&factory, &mut MemorySource::new(owned(frames.clone())))
            .unwrap();
        let c = out.plugin_counters();
        let tls = &c.iter().find(|(n, _)| n == "tls").unwrap().1;
        let losses: Vec<_> = tls
            .losses()
            .map(|l| (l.name.to_string(), l.value))
            .collect();
        assert_eq!(losses, [("over_budget".to_string(), 6)], "-j {jobs}");
        assert_eq!(tls.get("connections"), Some(0), "-j {jobs}");
    }
}
