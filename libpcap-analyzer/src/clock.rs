//! The run's clock: what "now" is for flow and fragment timeouts when the
//! capture's time does not only go forward.
//!
//! Capture time can go back: a pcapng file whose second section was
//! recorded before the first, several files given out of order, a live
//! clock stepped back by NTP or by hand, interfaces of one file whose
//! clocks disagree. Flows time out on idle time, so if "now" simply
//! followed the packets, every packet older than the latest one seen would
//! be idle for longer than its timeout the moment it arrived: its flow would
//! end at once, and one connection would be reported as many one-packet
//! flows with no stream data (the pcapng case: issue 13).
//!
//! # Semantics
//! - **Time is per interface.** Every packet's capture time is read on the
//!   clock of its interface (the pcapng interface id within its section; 0
//!   for pcap files, each file of a list included). The run's time of a
//!   packet is its capture time plus the *offset* of its interface, 0 until
//!   that interface's clock first goes back.
//! - **The run's clock is the highest run time seen** (packets and idle
//!   ticks of live sources). It never goes back. Flows and fragments expire
//!   when the run's clock passes their deadline, and only then.
//! - **A packet older than the clock does not expire anything** and is
//!   attributed to its flow as usual. Up to [`STEP_TOLERANCE`] behind the
//!   clock it is a packet out of order (interfaces interleaved, a
//!   multi-queue capture), handled at its own time.
//! - **Further behind, its interface's clock went back** (counted once per
//!   episode: anomaly `clock_step_back`). The packet, and those of the
//!   interface that follow it in the same earlier time, are *at the run's
//!   clock* (their flows are active now) until that earlier time has gone
//!   on for [`STEP_TOLERANCE`] of its own: the step is then taken, the
//!   interface's offset set so that its packets follow on from the clock,
//!   and time runs again for everything. A packet of the interface back in
//!   the clock's time before that ends the episode with no offset taken: a
//!   lone packet with a wrong timestamp (a capture glitch) changes nothing.
//!   Idle time counted before a step is kept: a flow idle for 50 s before
//!   the step times out 10 s after it (UDP, 60 s).
//! - **Forward jumps are time passing**: a capture that resumes an hour
//!   later expires what was idle for longer than its timeout, as a live
//!   capture would (a clock stepped forward looks the same).
//! - Packets without a timestamp (pcapng Simple Packet Blocks) neither move
//!   the clock nor refresh their flow's idle time.
//! - Reports keep the captured timestamps: the offsets only decide expiry.
//!
//! With several workers, the reading thread keeps the one clock of the run
//! and gives each packet its run time ([`PacketTime`]), so results do not
//! depend on the number of workers.
//!
//! ```
//! use libpcap_analyzer::clock::RunClock;
//! use libpcap_tools::Timestamp;
//!
//! let mut clock = RunClock::new();
//! let t = |s| Some(Timestamp::from_secs_nanos(s, 0));
//! assert_eq!(clock.packet(0, t(1_000)).at, t(1_000));
//! // the second section of a pcapng file, recorded a day earlier
//! let p = clock.packet(0, t(1_000 - 86_400));
//! assert!(p.stepped);
//! assert_eq!(p.at, t(1_000));
//! // its next packet, 2 s later on its own clock
//! assert_eq!(clock.packet(0, t(1_002 - 86_400)).at, t(1_002));
//! assert_eq!(clock.now(), t(1_002));
//! ```

use libpcap_tools::Timestamp;

/// How far behind the run's clock a packet may be and still be a packet out
/// of order rather than a clock gone back, and how long the earlier time
/// must go on before the step is taken: 1 s.
pub const STEP_TOLERANCE: i64 = Timestamp::NANOS_PER_SEC;

/// Interfaces with their own offset; higher interface ids share the last.
const MAX_DOMAINS: usize = 64;

/// The time of one packet on the run's clock (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketTime {
    /// The packet's run time (its capture time plus its interface's
    /// offset): its flow's idle time counts from here. `None` without a
    /// timestamp.
    pub at: Option<Timestamp>,
    /// The run's clock after this packet: deadlines before it have passed.
    pub now: Option<Timestamp>,
    /// This packet's interface clock went back (the first packet of an
    /// episode: see the module docs).
    pub stepped: bool,
}

impl PacketTime {
    /// The time of a packet whose capture time is the run's time (a single
    /// clock that only goes forward).
    pub fn plain(ts: Option<Timestamp>) -> PacketTime {
        PacketTime {
            at: ts,
            now: ts,
            stepped: false,
        }
    }
}

/// The clock of a run (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct RunClock {
    now: Option<i64>,
    /// Each interface (index: interface id, capped), and the idle ticks
    /// (last slot).
    domains: Vec<Domain>,
    steps: u64,
}

/// The clock of one interface.
#[derive(Debug, Clone, Copy, Default)]
struct Domain {
    /// Added to its capture times.
    offset: i64,
    /// Its time went back and the step is not taken yet: the capture time
    /// of the first packet of the episode and the run's clock then.
    behind: Option<(i64, i64)>,
}

impl RunClock {
    /// A clock that has seen nothing yet.
    pub fn new() -> RunClock {
        RunClock::default()
    }

    /// The run time of a packet captured at `ts` on `interface`; moves the
    /// clock.
    #[inline]
    pub fn packet(&mut self, interface: u32, ts: Option<Timestamp>) -> PacketTime {
        // the usual case, inline (once per packet): a known interface in the
        // clock's time, at or after the clock
        let i = interface as usize;
        if let (Some(ts), Some(now)) = (ts, self.now)
            && i < MAX_DOMAINS - 1
            && let Some(d) = self.domains.get(i)
            && d.behind.is_none()
        {
            let at = ts.0.saturating_add(d.offset);
            if at >= now {
                self.now = Some(at);
                return PacketTime {
                    at: Some(Timestamp(at)),
                    now: Some(Timestamp(at)),
                    stepped: false,
                };
            }
        }
        self.packet_at(interface, ts)
    }

    /// [`RunClock::packet`], every case.
    fn packet_at(&mut self, interface: u32, ts: Option<Timestamp>) -> PacketTime {
        let domain = usize::try_from(interface)
            .unwrap_or(usize::MAX)
            .min(MAX_DOMAINS - 1);
        let Some(ts) = ts else {
            return PacketTime {
                at: None,
                now: self.now(),
                stepped: false,
            };
        };
        let (at, stepped) = self.observe(domain, ts.0);
        PacketTime {
            at: Some(Timestamp(at)),
            now: self.now(),
            stepped,
        }
    }

    /// The run time of an idle tick of a live source at `now` (the source's
    /// clock, with its own offset); moves the clock.
    pub fn tick(&mut self, now: Timestamp) -> Timestamp {
        let _ = self.observe(MAX_DOMAINS, now.0);
        self.now().unwrap_or(now)
    }

    /// The run's clock: the highest run time seen.
    pub fn now(&self) -> Option<Timestamp> {
        self.now.map(Timestamp)
    }

    /// Times an interface clock stepped back.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn observe(&mut self, domain: usize, ts: i64) -> (i64, bool) {
        if self.domains.len() <= domain {
            self.domains.resize(domain + 1, Domain::default());
        }
        let Some(d) = self.domains.get_mut(domain) else {
            return (ts, false);
        };
        let at = ts.saturating_add(d.offset);
        let Some(now) = self.now else {
            self.now = Some(at);
            return (at, false);
        };
        if at >= now.saturating_sub(STEP_TOLERANCE) {
            // in the clock's time (again): an episode not taken was a glitch
            d.behind = None;
            self.now = Some(now.max(at));
            return (at, false);
        }
        match d.behind {
            Some((first, start)) if ts >= first.saturating_sub(STEP_TOLERANCE) => {
                let gone_on = ts.saturating_sub(first);
                if gone_on < STEP_TOLERANCE {
                    return (now, false);
                }
                // the step: this packet follows on from where the episode
                // began, or from the clock if other interfaces moved it further
                let target = now.max(start.saturating_add(gone_on));
                d.offset = target.saturating_sub(ts);
                d.behind = None;
                self.now = Some(target);
                (target, false)
            }
            _ => {
                d.behind = Some((ts, now));
                self.steps = self.steps.saturating_add(1);
                (now, true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Option<Timestamp> {
        Some(Timestamp::from_secs_nanos(s, 0))
    }

    /// The inline case of `packet` gives what the whole function gives,
    /// on random times (forward, small and large steps back, no time) over
    /// a few interfaces, ticks among them.
    #[test]
    fn the_inline_case_agrees_with_the_whole_function() {
        let (mut fast, mut full) = (RunClock::new(), RunClock::new());
        let mut x = 0x9e37_79b9u64;
        let mut base = 1_000_000_000_000i64;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let interface = [0u32, 0, 0, 1, 2, 63, 64, 500][(x % 8) as usize];
            base += (x >> 8) as i64 % 5_000_000;
            let ts = match (x >> 20) % 16 {
                0 => None,
                1 => Some(Timestamp(base - 3_000_000_000)),
                2 => Some(Timestamp(base - 500_000_000)),
                3 => Some(Timestamp(base + 40_000_000_000)),
                _ => Some(Timestamp(base)),
            };
            if (x >> 30).is_multiple_of(50) {
                let now = Timestamp(base);
                assert_eq!(fast.tick(now), full.tick(now));
            }
            assert_eq!(
                fast.packet(interface, ts),
                full.packet_at(interface, ts),
                "{interface} {ts:?}"
            );
            assert_eq!(fast.steps(), full.steps());
        }
        assert!(full.steps() > 0, "steps were taken");
    }

    #[test]
    fn forward_time_is_unchanged() {
        let mut c = RunClock::new();
        for s in [10, 11, 11, 40, 1000] {
            assert_eq!(c.packet(0, t(s)), PacketTime::plain(t(s)));
        }
        assert_eq!(c.steps(), 0);
    }

    #[test]
    fn small_reordering_is_not_a_step() {
        let mut c = RunClock::new();
        c.packet(0, t(100));
        let p = c.packet(
            1,
            Some(Timestamp(
                Timestamp::from_secs_nanos(100, 0).0 - 900_000_000,
            )),
        );
        assert!(!p.stepped);
        assert_eq!(p.now, t(100));
        assert_eq!(
            p.at,
            Some(Timestamp(Timestamp::from_secs_nanos(99, 100_000_000).0))
        );
        assert_eq!(c.steps(), 0);
    }

    #[test]
    fn a_step_back_continues_from_the_clock() {
        let mut c = RunClock::new();
        c.packet(0, t(5000));
        let p = c.packet(0, t(100));
        assert_eq!((p.at, p.now, p.stepped), (t(5000), t(5000), true));
        assert_eq!(c.packet(0, t(160)).at, t(5060));
        assert_eq!(c.now(), t(5060));
        // another interface has its own offset: it steps once too
        let q = c.packet(3, t(200));
        assert_eq!((q.at, q.stepped), (t(5060), true));
        assert_eq!(c.packet(3, t(201)).at, t(5061));
        assert_eq!(c.packet(0, t(161)).at, t(5061));
        assert_eq!(c.steps(), 2);
    }

    #[test]
    fn interfaces_with_different_clocks_settle() {
        // two interfaces interleaved, one clock an hour behind: one step,
        // then both advance together
        let mut c = RunClock::new();
        let mut steps = Vec::new();
        for i in 0..100 {
            steps.push(c.packet(0, t(10_000 + i)).stepped);
            steps.push(c.packet(1, t(6_400 + i)).stepped);
        }
        assert_eq!(steps.iter().filter(|s| **s).count(), 1);
        assert_eq!(c.now(), t(10_099));
    }

    #[test]
    fn a_lone_wrong_timestamp_changes_nothing() {
        // as suricata_bug-1450-04 (frame 2 is 21 years early)
        let mut c = RunClock::new();
        c.packet(0, t(1000));
        let p = c.packet(0, t(1000 - 662_322_442));
        assert_eq!((p.at, p.stepped), (t(1000), true));
        assert_eq!(c.packet(0, t(1001)).at, t(1001));
        assert_eq!(c.packet(0, t(1002)).at, t(1002));
        assert_eq!(c.steps(), 1);
    }

    #[test]
    fn packets_of_the_earlier_time_are_at_the_clock_until_the_step() {
        let mut c = RunClock::new();
        c.packet(0, t(1000));
        for ms in [0, 100, 500, 999] {
            let p = c.packet(0, Some(secs_ms(100, ms)));
            assert_eq!(p.at, t(1000), "{ms} ms");
        }
        // another interface moves the clock meanwhile: the step follows on
        // from it
        c.packet(1, t(1005));
        assert_eq!(c.packet(0, Some(secs_ms(101, 0))).at, t(1005));
        assert_eq!(c.packet(0, Some(secs_ms(102, 0))).at, t(1006));
        // going further back starts another episode
        assert!(c.packet(0, t(50)).stepped);
        assert_eq!(c.steps(), 2);
    }

    fn secs_ms(s: i64, ms: i64) -> Timestamp {
        Timestamp::from_secs_nanos(s, ms * 1_000_000)
    }

    #[test]
    fn no_timestamp_moves_nothing() {
        let mut c = RunClock::new();
        assert_eq!(c.packet(0, None), PacketTime::default());
        c.packet(0, t(7));
        assert_eq!(c.packet(0, None).now, t(7));
    }

    #[test]
    fn ticks_have_their_own_offset() {
        let mut c = RunClock::new();
        c.packet(0, t(1000));
        assert_eq!(
            c.tick(Timestamp::from_secs_nanos(1001, 0)),
            Timestamp::from_secs_nanos(1001, 0)
        );
        // the system clock stepped back an hour: ticks and packets follow on
        assert_eq!(
            c.tick(Timestamp::from_secs_nanos(1001 - 3600, 0)),
            Timestamp::from_secs_nanos(1001, 0)
        );
        assert_eq!(
            c.tick(Timestamp::from_secs_nanos(1011 - 3600, 0)),
            Timestamp::from_secs_nanos(1011, 0)
        );
        assert_eq!(c.packet(0, t(1012 - 3600)).at, t(1011));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let mut c = RunClock::new();
        for ts in [i64::MAX, i64::MIN, 0, i64::MAX, i64::MIN, -1] {
            let _ = c.packet(0, Some(Timestamp(ts)));
            let _ = c.packet(u32::MAX, Some(Timestamp(ts)));
            let _ = c.tick(Timestamp(ts));
        }
    }
}
