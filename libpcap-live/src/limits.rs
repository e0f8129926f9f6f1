//! What the live sources of one capture share to know when to end: the
//! stop request, the `--count` / `--duration` limits and the count of
//! packets delivered by all of them.

use libpcap_tools::Timestamp;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When a capture stops by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureLimits {
    /// Stop once this many packets were delivered (by all sources together).
    pub max_packets: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

/// The stop request, the limits and the packets delivered so far, shared
/// by the sources of one capture.
#[derive(Debug)]
pub(crate) struct StopState {
    /// Set to end every source (by a handle, a signal or a limit).
    pub(crate) stop: Arc<AtomicBool>,
    limits: CaptureLimits,
    started: Instant,
    delivered: AtomicU64,
}

impl StopState {
    pub(crate) fn new(limits: CaptureLimits) -> StopState {
        StopState {
            stop: Arc::new(AtomicBool::new(false)),
            limits,
            started: Instant::now(),
            delivered: AtomicU64::new(0),
        }
    }

    /// `true` when the capture must end (stop asked, duration over).
    pub(crate) fn must_stop(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return true;
        }
        if self
            .limits
            .duration
            .is_some_and(|d| self.started.elapsed() >= d)
        {
            self.stop.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Counts a packet a source is about to deliver: `false` when the
    /// packet count was already reached by the sources together (the
    /// packet is not to be delivered). Delivering the last one asks every
    /// source to end at its next call.
    pub(crate) fn take_packet(&self) -> bool {
        let before = self.delivered.fetch_add(1, Ordering::Relaxed);
        match self.limits.max_packets {
            Some(max) if before >= max => {
                self.stop.store(true, Ordering::Relaxed);
                false
            }
            Some(max) if before + 1 == max => {
                self.stop.store(true, Ordering::Relaxed);
                true
            }
            _ => true,
        }
    }

    /// Packets delivered by all sources (refused ones beyond the count
    /// limit excluded).
    pub(crate) fn delivered(&self) -> u64 {
        let n = self.delivered.load(Ordering::Relaxed);
        self.limits.max_packets.map_or(n, |max| n.min(max))
    }
}

/// The wall clock as a [`Timestamp`] (for packets and idle timeouts without
/// a kernel time).
pub(crate) fn now() -> Timestamp {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => Timestamp::from_secs_nanos(
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            i64::from(d.subsec_nanos()),
        ),
        Err(_) => Timestamp(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_limit_lets_exactly_n_packets_through_and_asks_to_stop() {
        let s = StopState::new(CaptureLimits {
            max_packets: Some(3),
            duration: None,
        });
        assert!(s.take_packet() && s.take_packet());
        assert!(!s.must_stop());
        assert!(s.take_packet(), "the third is delivered");
        assert!(s.must_stop(), "and every source is asked to end");
        assert!(!s.take_packet(), "a fourth, from another source, is not");
        assert_eq!(s.delivered(), 3);
        let unlimited = StopState::new(CaptureLimits::default());
        for _ in 0..5 {
            assert!(unlimited.take_packet());
        }
        assert_eq!(unlimited.delivered(), 5);
        assert!(!unlimited.must_stop());
    }

    #[test]
    fn the_duration_limit_and_the_stop_request_end_the_capture() {
        let s = StopState::new(CaptureLimits {
            max_packets: None,
            duration: Some(Duration::ZERO),
        });
        assert!(s.must_stop());
        assert!(s.stop.load(Ordering::Relaxed), "seen by the other sources");
        let s = StopState::new(CaptureLimits::default());
        assert!(!s.must_stop());
        s.stop.store(true, Ordering::Relaxed);
        assert!(s.must_stop());
    }
}
