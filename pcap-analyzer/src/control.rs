//! The tool's hold on a running session: signals (SIGINT/SIGTERM stop,
//! SIGUSR1 pauses and resumes, SIGUSR2 writes the current report) and the
//! progress bar, both on threads of their own that read the session through
//! its [`SessionHandle`].

use anyhow::{Context, Result};
use libpcap_analyzer::session::{SessionError, SessionHandle, SessionState};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The signal handling of a run: installed early (before the inputs are
/// opened, so that no signal kills the process while it sets up; no
/// thread, so that the privilege drop finds one), then served by a thread
/// once the session runs.
#[derive(Debug)]
pub(crate) struct Signals {
    signals: Option<signal_hook::iterator::Signals>,
    handle: signal_hook::iterator::Handle,
    thread: Option<JoinHandle<()>>,
    /// A signal asked the run to stop.
    stopped: Arc<AtomicBool>,
}

impl Signals {
    /// Installs the handlers; signals that come before [`Signals::serve`]
    /// wait for it. A second SIGINT or SIGTERM ends the process at once
    /// with code 130.
    ///
    /// # Errors
    /// When a handler cannot be installed.
    pub(crate) fn install() -> Result<Signals> {
        let stopped = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            signal_hook::flag::register_conditional_shutdown(sig, 130, stopped.clone())
                .and_then(|_| signal_hook::flag::register(sig, stopped.clone()))
                .context("installing the signal handlers")?;
        }
        let signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR1, SIGUSR2])
            .context("installing the signal handlers")?;
        Ok(Signals {
            handle: signals.handle(),
            signals: Some(signals),
            thread: None,
            stopped,
        })
    }

    /// Starts the thread that turns the signals into calls on `session`.
    ///
    /// # Errors
    /// When the thread cannot start.
    pub(crate) fn serve(&mut self, session: SessionHandle, quiet: bool) -> Result<()> {
        let Some(mut signals) = self.signals.take() else {
            return Ok(());
        };
        let say = move |m: &str| {
            log::info!("{m}");
            if !quiet {
                eprintln!("pcap-analyzer: {m}");
            }
        };
        let thread = std::thread::Builder::new()
            .name("pal-signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    match sig {
                        SIGINT | SIGTERM if session.request_stop().is_ok() => {
                            say("stopping (a second Ctrl-C ends at once)");
                        }
                        SIGUSR1 => match session.toggle_pause() {
                            Ok(SessionState::Paused) => say(
                                "paused (SIGUSR1): live packets are read and discarded, files \
                                 wait; SIGUSR1 again resumes",
                            ),
                            Ok(_) => say("resumed (SIGUSR1)"),
                            Err(e) => log::info!("SIGUSR1 ignored: {e}"),
                        },
                        SIGUSR2 => match session.request_report() {
                            Ok(()) => log::info!("SIGUSR2: writing the current report"),
                            Err(SessionError::NoOutputDir) => {
                                log::warn!("SIGUSR2: no output directory (-o), no report to write")
                            }
                            Err(e) => log::info!("SIGUSR2 ignored: {e}"),
                        },
                        _ => {}
                    }
                }
            })
            .context("starting the signal thread")?;
        self.thread = Some(thread);
        Ok(())
    }

    /// `true` when SIGINT or SIGTERM asked the run to stop.
    pub(crate) fn stop_requested(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Ends the signal thread (the handlers stay: a late Ctrl-C still ends
    /// the process).
    pub(crate) fn close(mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A progress bar fed by the session's figures.
#[derive(Debug)]
pub(crate) struct ProgressBar {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ProgressBar {
    /// Starts a bar on standard error for an input of `total` bytes (a
    /// spinner when unknown).
    pub(crate) fn start(session: SessionHandle, total: Option<u64>) -> ProgressBar {
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let template = if total.is_some() {
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {msg}"
        } else {
            "{spinner} [{elapsed_precise}] {bytes} {msg}"
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let done = Arc::new(AtomicBool::new(false));
        let stop = done.clone();
        let thread = std::thread::Builder::new()
            .name("pal-progress".into())
            .spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let s = session.snapshot();
                    bar.set_position(s.input_bytes);
                    let secs = started.elapsed().as_secs_f64().max(1e-3);
                    bar.set_message(format!(
                        "{} packets, {:.0} packets/s, {} flows{}",
                        s.packets,
                        s.packets as f64 / secs,
                        s.flows_created,
                        if s.state == SessionState::Paused {
                            " (paused)"
                        } else {
                            ""
                        }
                    ));
                    bar.tick();
                    std::thread::sleep(Duration::from_millis(200));
                }
                bar.finish_and_clear();
            })
            .ok();
        ProgressBar { done, thread }
    }

    /// Clears the bar.
    pub(crate) fn finish(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
