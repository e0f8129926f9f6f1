//! No tunnel by port alone: a datagram on a tunnel port whose payload is
//! no valid tunnel header is analysed as the UDP it is (issue 13), while
//! real tunnel packets on those ports are still decoded. Built packets.

use libpcap_analyzer::plugin::{EndReason, Interest, Layers, Plugin, PluginResult, downcast};
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_analyzer::{Engine, RunOutput, build};
use libpcap_tools::synth::MemorySource;
use libpcap_tools::{Config, Flow, LinkType, OwnedPacket, Timestamp};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// Flows by tunnel depth and protocol.
#[derive(Default)]
struct Depths(BTreeMap<(u8, u8), u64>);

impl Plugin for Depths {
    fn name(&self) -> &str {
        "depths"
    }
    fn interest(&self) -> Interest {
        Interest::new(Layers::FLOW_EVENTS)
    }
    fn flow_destroyed(&mut self, flow: &Flow, _: EndReason) -> PluginResult<()> {
        *self
            .0
            .entry((flow.context.depth, flow.key.proto))
            .or_default() += 1;
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        for (k, v) in downcast::<Self>("depths", other)?.0 {
            *self.0.entry(k).or_default() += v;
        }
        Ok(())
    }
}

fn packets(frames: Vec<Vec<u8>>) -> Vec<OwnedPacket> {
    frames
        .into_iter()
        .enumerate()
        .map(|(i, data)| OwnedPacket {
            index: i as u64,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: Some(Timestamp::from_secs_nanos(1_700_000_000 + i as i64, 0)),
            origlen: data.len() as u32,
            data,
        })
        .collect()
}

fn run(frames: Vec<Vec<u8>>, jobs: usize) -> RunOutput {
    let registry = builtin_registry();
    let config = Config::new();
    let engine = Engine::new(&config, jobs).unwrap();
    let factory = || {
        let mut v = registry.build(&["dns".to_string()], &config)?;
        v.push(Box::new(Depths::default()) as Box<dyn Plugin>);
        Ok(v)
    };
    let mut source = MemorySource::new(packets(frames));
    engine.run(&factory, &mut source).unwrap()
}

fn depths(out: &RunOutput) -> BTreeMap<(u8, u8), u64> {
    let any: &dyn std::any::Any = out.plugin("depths").unwrap();
    any.downcast_ref::<Depths>().unwrap().0.clone()
}

fn dns_messages(out: &RunOutput) -> (u64, u64) {
    let r = out.plugin("dns").unwrap().results().unwrap();
    (
        r["messages"].as_u64().unwrap(),
        r["malformed"].as_u64().unwrap(),
    )
}

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [192, 0, 2, 53];

/// The tunnel ports of the default configuration.
const TUNNEL_PORTS: [u16; 8] = [4789, 8472, 4790, 6081, 2152, 3544, 6635, 4754];

/// A query from `port` to 53 and its reply, with transaction id `id`.
fn exchange(port: u16, id: u16) -> [Vec<u8>; 2] {
    let a = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    let q = build::dns_query(id, "www.example.org", 1);
    let r = build::dns_response(id, "www.example.org", 1, 0, &[a], 300);
    let nx = build::dns_response(id, "www.example.org", 1, 3, &[], 300);
    let reply = if id.is_multiple_of(2) { r } else { nx };
    [
        build::eth_udp4(
            build::MAC_A,
            build::MAC_B,
            None,
            CLIENT,
            SERVER,
            port,
            53,
            &q,
        ),
        build::eth_udp4(
            build::MAC_B,
            build::MAC_A,
            None,
            SERVER,
            CLIENT,
            53,
            port,
            &reply,
        ),
    ]
}

#[test]
fn dns_to_a_client_on_a_tunnel_port_is_plain_udp() {
    // the ids the old rules took for tunnels: the VXLAN I bit (0x08..),
    // the GBP and I bits (0x88..), the IPv6 version nibble (0x6...), the
    // Teredo indicators (0x0000, 0x0001), a GTP-U version 1 flags byte
    let ids = [
        0x0800, 0x0801, 0x8800, 0x6000, 0x6abc, 0x0000, 0x0001, 0x30ff, 0x3401,
    ];
    for port in TUNNEL_PORTS {
        for id in ids {
            for jobs in [1, 2] {
                let out = run(exchange(port, id).to_vec(), jobs);
                let what = format!("port {port}, id {id:#06x}, -j {jobs}");
                assert_eq!(out.stats.tunnels, 0, "{what}");
                assert!(
                    out.stats.anomalies.is_empty(),
                    "{what}: {:?}",
                    out.stats.anomalies
                );
                assert_eq!(depths(&out), BTreeMap::from([((0, 17), 1)]), "{what}");
                assert_eq!(dns_messages(&out), (2, 0), "{what}");
            }
        }
    }
}

/// A frame from `src:sport` to `dst:dport` carrying `payload` over UDP.
fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    build::eth_udp4(
        build::MAC_A,
        build::MAC_B,
        None,
        [172, 16, 0, 1],
        [172, 16, 0, 2],
        sport,
        dport,
        payload,
    )
}

#[test]
fn real_tunnels_on_those_ports_are_still_decoded() {
    let (a, b) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 1, 0, 2));
    let inner_udp = build::udp(
        a.into(),
        b.into(),
        1111,
        53,
        &build::dns_query(7, "in.example", 1),
    );
    let inner_ip = build::ipv4(a, b, 17, 9, &inner_udp);
    let inner_eth = build::ethernet(build::MAC_A, build::MAC_B, 0x0800, &inner_ip);
    let mut gtp = vec![0x30, 0xff];
    gtp.extend_from_slice(&(inner_ip.len() as u16).to_be_bytes());
    gtp.extend_from_slice(&[0, 0, 0, 42]);
    gtp.extend_from_slice(&inner_ip);
    let mut gpe = vec![0x0c, 0, 0, 1, 0, 0, 5, 0];
    gpe.extend_from_slice(&inner_ip);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("vxlan", udp(40000, 4789, &build::vxlan(5, &inner_eth))),
        ("vxlan 8472", udp(40000, 8472, &build::vxlan(5, &inner_eth))),
        (
            "geneve",
            udp(40000, 6081, &build::geneve(5, 0x6558, &inner_eth)),
        ),
        ("gtp-u", udp(2152, 2152, &gtp)),
        ("vxlan-gpe", udp(40000, 4790, &gpe)),
        (
            "gre-in-udp",
            udp(40000, 4754, &build::gre(0x0800, None, &inner_ip)),
        ),
    ];
    for (name, frame) in cases {
        for jobs in [1, 2] {
            let out = run(vec![frame.clone()], jobs);
            assert_eq!(out.stats.tunnels, 1, "{name}");
            assert!(
                out.stats.anomalies.is_empty(),
                "{name}: {:?}",
                out.stats.anomalies
            );
            assert_eq!(
                depths(&out),
                BTreeMap::from([((0, 17), 1), ((1, 17), 1)]),
                "{name}"
            );
            assert_eq!(dns_messages(&out), (1, 0), "{name}: the inner query");
        }
    }
}
