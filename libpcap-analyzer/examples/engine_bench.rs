//! Runs the engine over one capture with the default plugins and prints
//! packets, seconds and packets/s:
//! `engine_bench FILE [JOBS] [PLUGIN,PLUGIN…]`.

use libpcap_analyzer::Engine;
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_tools::{Config, ReaderConfig, open_capture};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: engine_bench FILE [JOBS] [PLUGINS]")?;
    let jobs: usize = args.next().map_or(Ok(1), |j| j.parse())?;
    let registry = builtin_registry();
    let names: Option<Vec<String>> = args
        .next()
        .map(|p| p.split(',').map(str::to_string).collect());
    let names = registry.select(names.as_deref())?;
    let config = Config::new();
    let engine = Engine::new(&config, jobs)?;
    let factory = || registry.build(&names, &config);
    let started = std::time::Instant::now();
    let mut source = open_capture(Path::new(&path), &ReaderConfig::default())?;
    let out = engine.run(&factory, source.as_mut())?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} packets, {} flows, {:.3} s, {:.0} packets/s, plugins {}",
        out.stats.packets,
        out.flows.created,
        secs,
        out.stats.packets as f64 / secs,
        names.join(",")
    );
    Ok(())
}
