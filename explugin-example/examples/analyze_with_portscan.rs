//! Runs the default built-in plugins plus `port-scan` over a capture file
//! and writes every plugin's results into an output directory.
//!
//! ```text
//! cargo run -p explugin-example --example analyze_with_portscan -- \
//!     CAPTURE OUTDIR [CONFIG.toml [JOBS]]
//! ```
//!
//! `CONFIG.toml` may hold `[plugin.port-scan]` and the engine sections;
//! `JOBS` is the number of worker threads (0, the default: one per CPU).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line example

use explugin_example::NAME;
use libpcap_analyzer::Engine;
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_tools::{CaptureReader, Config, ReaderConfig};
use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: analyze_with_portscan CAPTURE OUTDIR [CONFIG.toml [JOBS]]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(input), Some(outdir)) = (args.next(), args.next()) else {
        return Err(USAGE.into());
    };
    let (input, outdir) = (PathBuf::from(input), PathBuf::from(outdir));
    let mut config = match args.next() {
        Some(path) => Config::from_file(&PathBuf::from(path))?,
        None => Config::new(),
    };
    let jobs: usize = match args.next() {
        Some(j) => j.to_string_lossy().parse().map_err(|_| USAGE)?,
        None => 0,
    };

    // the built-in plugins write their line-oriented files under [output] dir
    std::fs::create_dir_all(&outdir)?;
    config.set("output", "dir", outdir.display().to_string());

    // one registry: the built-in builders and ours
    let mut registry = builtin_registry();
    explugin_example::register(&mut registry);
    // port-scan is not on by default: the default plugins, plus it by name
    let mut names = registry.select(None)?;
    names.push(NAME.to_string());
    let factory = || registry.build(&names, &config);

    let engine = Engine::new(&config, jobs)?;
    let reader_config: ReaderConfig = config.section("reader")?;
    let mut reader = CaptureReader::open(&input, &reader_config)?;
    let mut output = engine.run(&factory, &mut reader)?;
    if let Some(w) = &output.warning {
        eprintln!("warning: {w}");
    }
    for file in output.save_results(&outdir)? {
        println!("wrote {}", file.display());
    }
    // what each plugin counted, and what it could not analyse
    for (plugin, counters) in output.plugin_counters() {
        let all: Vec<String> = counters
            .iter()
            .map(|c| {
                format!(
                    "{}={}{}",
                    c.name,
                    c.value,
                    if c.loss { " (lost)" } else { "" }
                )
            })
            .collect();
        println!("{plugin}: {}", all.join(" "));
    }

    if let Some(results) = output.plugin(NAME).and_then(|p| p.results()) {
        let scanners = results["scanners"].as_array().cloned().unwrap_or_default();
        println!("{} suspected scan(s)", scanners.len());
        for s in scanners {
            println!(
                "  {} {} {} scan: {} ports, {} hosts, {} probes",
                s["source"].as_str().unwrap_or("?"),
                s["protocol"].as_str().unwrap_or("?"),
                s["kind"].as_str().unwrap_or("?"),
                s["distinct_ports"],
                s["distinct_hosts"],
                s["probes"],
            );
        }
    }
    Ok(())
}
