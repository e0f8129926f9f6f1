//! Embedding a capture session: read a capture file (or a live interface
//! with `-i IFACE`, as root), watch it, pause it, resume it, stop it, and
//! print the connection report it wrote.
//!
//! ```text
//! cargo run --release -p pcap-analyzer --example session -- testdata/pcap/sample.pcap
//! sudo target/release/examples/session -i eth0
//! ```
//!
//! The state machine is the library's `libpcap_analyzer::session` (its
//! module docs have the diagram): Initial → start → Running ⇄ Paused →
//! stop → Stopped, every other call an `InvalidTransition` error.

#![allow(clippy::print_stdout)] // an example prints what it does

use libpcap_analyzer::Engine;
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_analyzer::session::{Session, SessionInput};
use libpcap_tools::{Config, ReaderConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = Config::new();
    let engine = Engine::new(&config, 2)?;
    let registry = Arc::new(builtin_registry());
    let factory = {
        let config = config.clone();
        move || registry.build(&["connections".to_string()], &config)
    };
    let mut session = Session::new(engine.clone(), Arc::new(factory));
    // the input: one source per worker for a live interface (a kernel
    // fanout group), or one file read by one thread
    match args.as_slice() {
        [flag, iface] if flag == "-i" => {
            let group = libpcap_live::afpacket::open(
                iface,
                &libpcap_live::afpacket::LiveConfig::default(),
                engine.jobs(),
                libpcap_live::afpacket::CaptureLimits::default(),
            )?;
            session.set_capture_control(Arc::new(group.handle.clone()))?;
            session.set_input(SessionInput::PerWorker(
                group
                    .sources
                    .into_iter()
                    .map(|s| Box::new(s) as Box<dyn libpcap_tools::PacketSource>)
                    .collect(),
            ))?;
        }
        other => {
            let path = PathBuf::from(other.first().map_or("testdata/pcap/sample.pcap", |s| s));
            let source = libpcap_tools::open_capture(&path, &ReaderConfig::default())?;
            session.set_input(SessionInput::Source(source))?;
        }
    }
    let out = std::env::temp_dir().join(format!("pal-session-{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    session.set_output_dir(Some(out.clone()))?;
    // the connection report is rewritten every second while the run goes on
    session.set_report_interval(Some(Duration::from_secs(1)))?;

    session.start()?;
    println!("started: {:?}", session.state());
    std::thread::sleep(Duration::from_millis(500));
    let s = session.snapshot();
    println!(
        "after 0.5 s: {} packets, {} flows alive, kernel drops {:?}",
        s.packets, s.flows_alive, s.kernel_drops
    );
    if let Err(e) = session.resume() {
        println!("resume while running is refused: {e}");
    }
    session.pause()?;
    println!("paused: {:?}", session.state());
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "discarded while paused: {}",
        session.snapshot().discarded_while_paused
    );
    session.resume()?;
    // a report of what was seen so far, written now
    let files = session.write_report()?;
    println!("report now: {files:?}");
    std::thread::sleep(Duration::from_millis(500));
    let done = session.stop()?;
    println!(
        "stopped: {} packets, {} flows, {} reports written while running",
        done.stats.packets, done.stats.flows_created, done.stats.reports_written
    );
    let report = out.join("connections.txt");
    print!("{}", std::fs::read_to_string(&report)?);
    std::fs::remove_dir_all(&out)?;
    Ok(())
}
