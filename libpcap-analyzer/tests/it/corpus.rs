//! Tests on the shared corpus of real captures (`PAL_CORPUS`, default
//! `../shared/corpus` next to the workspace): the connection report against
//! the tshark oracle, tunnels, malformed files, and the same results with
//! 1, 2 and 4 workers.

use libpcap_analyzer::plugin::{EndReason, Interest, Layers, Plugin, PluginResult, downcast};
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_analyzer::plugins::connections::ConnectionsPlugin;
use libpcap_analyzer::{Engine, RunOutput};
use libpcap_tools::{CaptureReader, Config, Flow, LenientSource, ReaderConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The corpus folder, or `None` (the caller prints SKIPPED) when absent.
fn corpus() -> Option<PathBuf> {
    libpcap_tools::synth::corpus_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
}

/// Every capture of the corpus (relative paths), from MANIFEST.tsv.
fn manifest(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .map(str::to_string)
        .collect()
}

fn run(path: &Path, plugins: Vec<Box<dyn Plugin>>, config: &Config, jobs: usize) -> RunOutput {
    let engine = Engine::new(config, jobs).unwrap();
    let cell = std::sync::Mutex::new(Some(plugins));
    let factory = || Ok(cell.lock().unwrap().take().unwrap_or_default());
    let mut reader = match CaptureReader::open(path, &ReaderConfig::default()) {
        Ok(r) => LenientSource::new(r),
        Err(e) => panic!("{}: {e}", path.display()),
    };
    engine
        .run(&factory, &mut reader)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn connections(out: &RunOutput) -> &ConnectionsPlugin {
    out.plugins
        .iter()
        .find_map(|p| {
            let any: &dyn std::any::Any = p.as_ref();
            any.downcast_ref::<ConnectionsPlugin>()
        })
        .expect("connections plugin in the output")
}

/// The TCP/UDP rows of our report in the oracle's TSV form.
fn our_rows(c: &ConnectionsPlugin) -> Vec<String> {
    let table = c.table();
    table
        .rows()
        .expect("the report rows")
        .into_iter()
        .filter_map(|(k, v)| {
            let names: Vec<String> = v
                .protocol_names()
                .into_iter()
                .filter(|n| n == "TCP" || n == "UDP")
                .collect();
            if names.is_empty() {
                return None;
            }
            let opt = |x: Option<i64>| x.map_or_else(String::new, |x| x.to_string());
            Some(format!(
                "{}\t{}\t{}\t{}\t[{}]\t{}\t{}\t{}\t{}",
                k.src,
                k.src_port,
                k.dst,
                k.dst_port,
                names.join(","),
                opt(v.first_ms()),
                opt(v.last_ms()),
                v.bytes,
                v.packets
            ))
        })
        .collect()
}

#[test]
fn connection_report_equals_the_tshark_oracle() {
    let Some(dir) = corpus() else { return };
    let index = std::fs::read_to_string(dir.join("oracle/INDEX.tsv")).unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in index.lines().skip(1) {
        let mut cols = line.split('\t');
        let (Some(file), Some("oracle")) = (cols.next(), cols.next()) else {
            continue;
        };
        let config = Config::new();
        let plugin = builtin_registry()
            .build(&["connections".to_string()], &config)
            .unwrap();
        let out = run(&dir.join(file), plugin, &config, 1);
        let ours = our_rows(connections(&out));
        let oracle_text =
            std::fs::read_to_string(dir.join(format!("oracle/{file}.conn.tsv"))).unwrap();
        let theirs: Vec<String> = oracle_text.lines().skip(1).map(str::to_string).collect();
        if ours != theirs {
            failures.push(format!(
                "{file}: {} rows vs oracle {}",
                ours.len(),
                theirs.len()
            ));
            continue;
        }
        // the summary counts
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("oracle/{file}.summary.json"))).unwrap(),
        )
        .unwrap();
        let get = |k: &str| {
            summary
                .get(k)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(u64::MAX)
        };
        let table = connections(&out).table();
        let rows = table.rows().expect("the report rows");
        let count = |proto: u8| -> u64 {
            rows.iter()
                .filter(|(_, v)| v.protocols.contains(proto))
                .map(|(_, v)| v.packets)
                .sum()
        };
        let mut bidir = BTreeSet::new();
        for (k, v) in &rows {
            for p in v.protocols.iter().filter(|p| *p == 6 || *p == 17) {
                let a = (k.src, k.src_port);
                let b = (k.dst, k.dst_port);
                bidir.insert((p, a.min(b), a.max(b)));
            }
        }
        let bytes: u64 = rows
            .iter()
            .filter(|(_, v)| v.protocols.iter().any(|p| p == 6 || p == 17))
            .map(|(_, v)| v.bytes)
            .sum();
        let facts = [
            ("packets", out.stats.packets, get("packets")),
            ("ip_packets", out.stats.ip_frames, get("ip_packets")),
            ("tcp_packets", count(6), get("tcp_packets")),
            ("udp_packets", count(17), get("udp_packets")),
            (
                "unidirectional_keys",
                theirs.len() as u64,
                get("unidirectional_keys"),
            ),
            (
                "bidirectional_5tuples",
                bidir.len() as u64,
                get("bidirectional_5tuples"),
            ),
            ("bytes_in_connections", bytes, get("bytes_in_connections")),
        ];
        for (name, ours, theirs) in facts {
            if ours != theirs {
                failures.push(format!("{file}: {name} {ours} vs oracle {theirs}"));
            }
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 140, "only {checked} oracle files checked");
    eprintln!("{checked} oracle files: every TCP/UDP row and summary count equal");
}

/// Records the tunnel depth of every flow.
#[derive(Default)]
struct Depths(BTreeMap<u8, u64>);

impl Plugin for Depths {
    fn name(&self) -> &str {
        "depths"
    }
    fn interest(&self) -> Interest {
        Interest::new(Layers::FLOW_EVENTS)
    }
    fn flow_destroyed(&mut self, flow: &Flow, _: EndReason) -> PluginResult<()> {
        *self.0.entry(flow.context.depth).or_default() += 1;
        Ok(())
    }
    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        for (k, v) in downcast::<Self>("depths", other)?.0 {
            *self.0.entry(k).or_default() += v;
        }
        Ok(())
    }
}

#[test]
fn tunnel_captures_give_outer_and_inner_flows() {
    let Some(dir) = corpus() else { return };
    // not tunnels in the sense of an inner IP flow: 802.1ah PBB is a link
    // layer (its flows are outer ones), and various_gre carries only GRE
    // protocols 0x8909/0x0000 and CDP, which have no IP inside
    let no_inner = ["tunnels/zeek_pbb.pcap", "tunnels/tcpdump_various_gre.pcap"];
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in manifest(&dir)
        .into_iter()
        .filter(|f| f.starts_with("tunnels/"))
    {
        let out = run(
            &dir.join(&file),
            vec![Box::new(Depths::default())],
            &Config::new(),
            1,
        );
        let any: &dyn std::any::Any = out.plugins[0].as_ref();
        let depths = &any.downcast_ref::<Depths>().unwrap().0;
        let outer = depths.get(&0).copied().unwrap_or(0);
        let inner: u64 = depths.range(1..).map(|(_, v)| v).sum();
        let expect_inner = !no_inner.contains(&file.as_str());
        if outer == 0 || (expect_inner && inner == 0) {
            failures.push(format!("{file}: flows by depth {depths:?}"));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 30, "{checked}");
}

#[test]
fn malformed_captures_end_cleanly_with_every_plugin() {
    let Some(dir) = corpus() else { return };
    let registry = builtin_registry();
    let names: Vec<String> = registry.names().into_iter().map(str::to_string).collect();
    let config = Config::new();
    for file in manifest(&dir)
        .into_iter()
        .filter(|f| f.starts_with("malformed/"))
    {
        for jobs in [1, 2] {
            let started = std::time::Instant::now();
            let engine = Engine::new(&config, jobs).unwrap();
            let factory = || registry.build(&names, &config);
            // a file may be unreadable from its first byte: a clean error
            let Ok(mut reader) = CaptureReader::open(&dir.join(&file), &ReaderConfig::default())
            else {
                continue;
            };
            let r = engine.run(&factory, &mut reader);
            if let Err(e) = &r {
                assert!(!e.to_string().contains("panicked"), "{file}: {e}");
            }
            assert!(
                started.elapsed().as_secs() < 20,
                "{file} took {:?}",
                started.elapsed()
            );
        }
    }
}

/// The saved results of a run in canonical form: file name to sorted lines
/// (or the parsed JSON document).
fn saved(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let canon = if name.ends_with(".json") {
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap()
                .to_string()
        } else {
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort_unstable();
            lines.join("\n")
        };
        out.insert(name, canon);
    }
    out
}

#[test]
fn results_do_not_depend_on_the_number_of_workers() {
    let Some(dir) = corpus() else { return };
    let registry = builtin_registry();
    let names: Vec<String> = registry.names().into_iter().map(str::to_string).collect();
    let mut failures = Vec::new();
    let mut files = 0;
    for file in manifest(&dir) {
        let mut results = Vec::new();
        for jobs in [1, 2, 4] {
            let tmp = tempfile::tempdir().unwrap();
            let mut config = Config::new();
            config.set("output", "dir", tmp.path().display().to_string());
            let engine = Engine::new(&config, jobs).unwrap();
            let factory = || registry.build(&names, &config);
            let Ok(reader) = CaptureReader::open(&dir.join(&file), &ReaderConfig::default()) else {
                break;
            };
            let mut reader = LenientSource::new(reader);
            let Ok(mut out) = engine.run(&factory, &mut reader) else {
                break;
            };
            out.save_results(tmp.path()).unwrap();
            results.push((jobs, saved(tmp.path())));
        }
        if let Some((_, first)) = results.first() {
            for (jobs, r) in &results[1..] {
                for (name, content) in first {
                    if r.get(name) != Some(content) {
                        failures.push(format!("{file}: {name} differs with -j {jobs}"));
                    }
                }
            }
            files += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(files > 250, "{files}");
}

/// Over budget too, the files are the same at -j 1, 2 and 4, on a built
/// flood of 3000 short DNS flows with caps far below them (no corpus
/// needed): the connection report and basic-stats' conversations spill
/// sorted runs into the output directory, and the files are those of a run
/// without caps; without a directory, they keep the same rows (by a hash
/// of the key, not by arrival in each worker).
#[test]
fn results_do_not_depend_on_the_number_of_workers_over_budget() {
    use libpcap_analyzer::flood::{Flood, FloodKind};
    use libpcap_tools::synth::MemorySource;
    use libpcap_tools::{LinkType, OwnedPacket};
    let registry = builtin_registry();
    let names: Vec<String> = ["connections", "basic-stats", "dns", "flows"]
        .map(String::from)
        .to_vec();
    let packets: Vec<OwnedPacket> = Flood::new(FloodKind::DnsFlows)
        .take(6000)
        .enumerate()
        .map(|(i, (ts, data))| OwnedPacket {
            index: i as u64,
            interface: 0,
            linktype: LinkType::ETHERNET,
            ts: Some(ts),
            origlen: data.len() as u32,
            data,
        })
        .collect();
    // with a directory for the runs (the last run without caps), then
    // without one: rows kept by a hash of their key
    for spill in [true, false] {
        let mut results = Vec::new();
        let runs: &[(usize, u32)] = if spill {
            &[(1, 400), (2, 400), (4, 400), (1, 0)]
        } else {
            &[(1, 400), (2, 400), (4, 400)]
        };
        for &(jobs, cap) in runs {
            let tmp = tempfile::tempdir().unwrap();
            let conversations = if cap == 0 { 1_000_000 } else { 250 };
            let mut config = Config::from_toml(&format!(
                "[plugin.connections]\nmax_connections = {cap}\n\
                 [plugin.basic-stats]\nmax_conversations = {conversations}\n"
            ))
            .unwrap();
            if spill {
                config.set("output", "dir", tmp.path().display().to_string());
            }
            let factory = || registry.build(&names, &config);
            let mut source = MemorySource::new(packets.clone());
            let mut out = Engine::new(&config, jobs)
                .unwrap()
                .run(&factory, &mut source)
                .unwrap();
            let counters = out.plugin_counters();
            let get = |p: &str, n: &str| {
                counters
                    .iter()
                    .find(|(name, _)| name == p)
                    .and_then(|(_, c)| c.get(n))
                    .unwrap_or(0)
            };
            if spill {
                // the rows were spilled, none left out
                assert_eq!(get("connections", "dropped_keys"), 0, "-j {jobs}");
                assert_eq!(get("connections", "connections"), 6000, "-j {jobs}");
                assert_eq!(get("basic-stats", "l4_flows_in_other"), 0, "-j {jobs}");
                assert_eq!(get("basic-stats", "l4_conversations"), 3000, "-j {jobs}");
            } else {
                // rows were left out, and said so
                assert!(get("connections", "dropped_keys") > 0, "-j {jobs}");
                assert!(get("connections", "connections") <= 400, "-j {jobs}");
                assert!(get("basic-stats", "l4_flows_in_other") > 0, "-j {jobs}");
            }
            out.save_results(tmp.path()).unwrap();
            drop(out);
            let files = saved(tmp.path());
            // the runs are gone with the results
            assert!(
                files.keys().all(|n| !n.starts_with('.')),
                "{:?}",
                files.keys()
            );
            results.push((jobs, files));
        }
        let (_, first) = &results[0];
        assert!(first.keys().any(|n| n.starts_with("connections")));
        for (jobs, r) in &results[1..] {
            for (name, content) in first {
                assert!(
                    r.get(name) == Some(content),
                    "{name} differs with -j {jobs} (spill: {spill})"
                );
            }
        }
    }
}
