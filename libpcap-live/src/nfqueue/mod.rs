//! Inline mode: packets queued by netfilter (`NFQUEUE` target of iptables,
//! `queue` statement of nft) read from a `NETLINK_NETFILTER` socket per
//! queue, each given a verdict (accept or drop) by the reader.
//!
//! Each [`NfqueueSource`] is bound to one queue number. It hands over one
//! packet at a time and expects the verdict for it
//! ([`PacketSource::set_verdict`]) before the next call to
//! [`PacketSource::next_event`]: a packet still without verdict at that
//! point, or when the source ends or is dropped, is accepted. So every
//! packet gets exactly one verdict, whatever the reader does.
//!
//! At the end (stop request, count, duration, drop of the source) and when
//! fail-open is on, the queue's length is set to 0 first: the kernel then
//! accepts new packets by itself (fail-open) instead of queueing them,
//! and the packets already sent to us are read and accepted. Packets the
//! rule queues once the socket is closed are accepted only if the rule
//! says `--queue-bypass` (iptables) or `bypass` (nft); otherwise the kernel
//! drops them while no program listens on the queue.
//!
//! ```no_run
//! use libpcap_live::afpacket::CaptureLimits;
//! use libpcap_live::nfqueue::{open, NfqueueConfig};
//! use libpcap_tools::{PacketSource, SourceEvent, Verdict};
//!
//! // queues 0 and 1 (iptables ... -j NFQUEUE --queue-balance 0:1 --queue-bypass)
//! let group = open(0, 2, &NfqueueConfig::default(), CaptureLimits::default())?;
//! for mut source in group.sources {
//!     std::thread::spawn(move || {
//!         while let Ok(ev) = source.next_event() {
//!             let index = match ev {
//!                 SourceEvent::Packet(p) => p.index,
//!                 SourceEvent::Timeout { .. } => continue,
//!                 SourceEvent::End => break,
//!             };
//!             let _ = source.set_verdict(index, Verdict::Accept);
//!         }
//!     });
//! }
//! # Ok::<(), libpcap_live::nfqueue::NfqError>(())
//! ```

pub mod netlink;

use crate::limits::{CaptureLimits, StopState, now};
use crate::sys;
use libpcap_tools::{
    LinkType, Packet, PacketSource, SourceEvent, SourceProgress, Timestamp, Verdict,
};
use std::io::{self, Read, Seek};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Section `[nfqueue]` of the configuration: how each queue is set up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct NfqueueConfig {
    /// Bytes of each packet copied to us (from the IP header on; the
    /// kernel caps it at 65531). Longer packets are analysed cut, with
    /// their full length known.
    pub copy_range: u32,
    /// Most packets a queue holds waiting for a verdict; beyond, the
    /// kernel accepts (fail-open) or drops the new ones and counts them.
    pub queue_maxlen: u32,
    /// When the queue is full (or our socket cannot take more), the kernel
    /// accepts packets instead of dropping them (`NFQA_CFG_F_FAIL_OPEN`).
    pub fail_open: bool,
    /// Bytes of the socket's receive buffer (`SO_RCVBUFFORCE`): packets
    /// waiting for us; when it is full the kernel cannot hand us more
    /// (counted as user drops; accepted when fail-open).
    pub receive_buffer: u32,
    /// Milliseconds a queue waits for a packet before the source reports
    /// an idle tick (flows expire on the clock; stop requests are seen).
    pub poll_timeout_ms: u32,
}

impl Default for NfqueueConfig {
    fn default() -> Self {
        NfqueueConfig {
            copy_range: 65535,
            queue_maxlen: 4096,
            fail_open: true,
            receive_buffer: 8 << 20,
            poll_timeout_ms: 100,
        }
    }
}

impl NfqueueConfig {
    /// The configuration section's name.
    pub const SECTION: &'static str = "nfqueue";

    /// Checks the values.
    ///
    /// # Errors
    /// [`NfqError::Config`] naming the key and the rule.
    pub fn validate(&self) -> Result<(), NfqError> {
        let bad = |m: String| Err(NfqError::Config(m));
        if self.copy_range == 0 || self.copy_range > 65535 {
            return bad(format!(
                "[nfqueue] copy_range = {}: between 1 and 65535",
                self.copy_range
            ));
        }
        if self.queue_maxlen == 0 {
            return bad("[nfqueue] queue_maxlen = 0: at least 1".to_string());
        }
        if self.receive_buffer < 65536 || self.receive_buffer > 1 << 30 {
            return bad(format!(
                "[nfqueue] receive_buffer = {}: between 65536 and 1073741824",
                self.receive_buffer
            ));
        }
        if self.poll_timeout_ms == 0 || self.poll_timeout_ms > 60_000 {
            return bad(format!(
                "[nfqueue] poll_timeout_ms = {}: between 1 and 60000",
                self.poll_timeout_ms
            ));
        }
        Ok(())
    }
}

/// Why an NFQUEUE source could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NfqError {
    /// The process may not configure queues.
    #[error(
        "cannot bind NFQUEUE queue {queue}: {source}; inline mode needs root or the \
         CAP_NET_ADMIN capability"
    )]
    Permission {
        /// The queue.
        queue: u16,
        /// The OS error.
        source: io::Error,
    },
    /// Another socket (another process) is bound to the queue.
    #[error(
        "NFQUEUE queue {queue} is already bound by another program (see `cat \
         /proc/net/netfilter/nfnetlink_queue`: the second column is its netlink port id); \
         stop it or choose another queue number"
    )]
    Busy {
        /// The queue.
        queue: u16,
    },
    /// A `[nfqueue]` setting is out of range, or the queue numbers are.
    #[error("{0}")]
    Config(String),
    /// A system call or a configuration message failed.
    #[error("{what} (NFQUEUE queue {queue}): {source}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// The queue.
        queue: u16,
        /// The OS error.
        source: io::Error,
    },
}

/// Counters of the queues of a group: the kernel's (summed over the
/// queues, from `/proc/net/netfilter/nfnetlink_queue`) and ours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NfqStats {
    /// Packets the kernel could not queue because a queue was full
    /// (accepted when fail-open, else dropped).
    pub queue_dropped: u64,
    /// Packets the kernel could not hand to our socket (receive buffer
    /// full; accepted when fail-open, else dropped).
    pub user_dropped: u64,
    /// Times our socket reported lost messages (`ENOBUFS`).
    pub enobufs: u64,
    /// Packets accepted.
    pub accepted: u64,
    /// Packets dropped by verdict.
    pub dropped: u64,
    /// Malformed messages from the kernel (accepted when their packet id
    /// could be read).
    pub malformed: u64,
}

/// What the sources of one group share.
#[derive(Debug)]
struct Shared {
    first_queue: u16,
    queues: usize,
    /// The stop request, the limits, the packets delivered.
    end: StopState,
    enobufs: AtomicU64,
    accepted: AtomicU64,
    dropped: AtomicU64,
    malformed: AtomicU64,
    /// Latest kernel counters per queue: (queue dropped, user dropped).
    kernel: Vec<(AtomicU64, AtomicU64)>,
}

/// A handle on running queues: stop them, read their counters.
#[derive(Debug, Clone)]
pub struct QueueHandle(Arc<Shared>);

impl QueueHandle {
    /// Asks every source to end: each returns [`SourceEvent::End`] at its
    /// next packet or poll timeout, having accepted what it still held.
    pub fn stop(&self) {
        self.0.end.stop.store(true, Ordering::Relaxed);
    }

    /// The flag [`QueueHandle::stop`] sets (for a signal handler).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.0.end.stop.clone()
    }

    /// The counters so far (the kernel's are read at every poll timeout
    /// and when a source ends).
    pub fn stats(&self) -> NfqStats {
        let s = &self.0;
        let (q, u) = s.kernel.iter().fold((0, 0), |(q, u), (a, b)| {
            (q + a.load(Ordering::Relaxed), u + b.load(Ordering::Relaxed))
        });
        NfqStats {
            queue_dropped: q,
            user_dropped: u,
            enobufs: s.enobufs.load(Ordering::Relaxed),
            accepted: s.accepted.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            malformed: s.malformed.load(Ordering::Relaxed),
        }
    }

    /// Packets delivered by all sources.
    pub fn delivered(&self) -> u64 {
        self.0.end.delivered()
    }

    /// The first queue number.
    pub fn first_queue(&self) -> u16 {
        self.0.first_queue
    }

    /// Number of queues.
    pub fn queues(&self) -> usize {
        self.0.queues
    }
}

impl libpcap_tools::CaptureControl for QueueHandle {
    fn stop(&self) {
        QueueHandle::stop(self);
    }

    fn counters(&self) -> libpcap_tools::CaptureCounters {
        let k = self.stats();
        libpcap_tools::CaptureCounters {
            kernel_packets: None,
            kernel_drops: Some(k.queue_dropped + k.user_dropped),
        }
    }
}

/// The capabilities a group of queues still needs once bound:
/// `CAP_NET_ADMIN`, because the kernel checks it on every nfnetlink
/// message, verdicts included, against the task that sends it (see
/// [`crate::privs`] for the kernel source and the test that shows it).
pub const KEEP_AFTER_SETUP: &[crate::privs::Keep] = &[crate::privs::Keep::NetAdmin];

/// The sources of a group of queues (one per queue) and a handle on them.
#[derive(Debug)]
pub struct QueueGroup {
    /// One source per queue, each to be read by its own thread.
    pub sources: Vec<NfqueueSource>,
    /// Stops the sources, reads their counters.
    pub handle: QueueHandle,
}

/// Size of the receive buffer: the largest packet message (copy range
/// 65531 plus headers and attributes) fits.
const RECV_BUF: usize = 65536 + 8192;

/// One NFQUEUE queue as an inline [`PacketSource`].
#[derive(Debug)]
pub struct NfqueueSource {
    fd: OwnedFd,
    queue: u16,
    /// Index of this queue in the group.
    slot: usize,
    shared: Arc<Shared>,
    name: String,
    fail_open: bool,
    poll_timeout_ms: i32,
    buf: Vec<u8>,
    /// The received datagram: `buf[pos..len]` still to be read.
    pos: usize,
    len: usize,
    /// The packet handed over and still without verdict: (index, kernel id).
    pending: Option<(u64, u32)>,
    /// The highest id of the packets accepted but not yet told to the
    /// kernel, and how many they are: accepts go out as one batch verdict
    /// (every id up to it) before the source waits for more packets, or
    /// every [`MAX_DEFERRED`]; drops go out at once.
    deferred: Option<(u32, u32)>,
    packets: u64,
    bytes: u64,
    seq: u32,
    /// `/proc/net/netfilter/nfnetlink_queue` of the queue's namespace.
    proc_file: Option<std::fs::File>,
    ended: bool,
}

/// Most accepts held back before one batch verdict tells them to the
/// kernel (they are also told whenever the source is about to wait).
const MAX_DEFERRED: u32 = 64;

/// The facts of a decoded packet message, its payload as a range of the
/// receive buffer.
struct Found {
    id: u32,
    hw_protocol: u16,
    timestamp: Option<(u64, u64)>,
    cap_len: Option<u32>,
    offset: usize,
    len: usize,
}

/// Opens `count` queues (at least 1) numbered `first..first+count`, one
/// socket each, in the network namespace of the calling thread.
///
/// # Errors
/// [`NfqError::Permission`] without root or `CAP_NET_ADMIN`,
/// [`NfqError::Busy`] when a queue is bound by another program,
/// [`NfqError::Config`] for bad settings or queue numbers past 65535, or
/// the failing system call.
pub fn open(
    first: u16,
    count: usize,
    cfg: &NfqueueConfig,
    limits: CaptureLimits,
) -> Result<QueueGroup, NfqError> {
    cfg.validate()?;
    let n = count.max(1);
    if usize::from(first) + n - 1 > usize::from(u16::MAX) {
        return Err(NfqError::Config(format!(
            "queues {first}..{}: queue numbers go up to 65535",
            usize::from(first) + n - 1
        )));
    }
    let shared = Arc::new(Shared {
        first_queue: first,
        queues: n,
        end: StopState::new(limits),
        enobufs: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        malformed: AtomicU64::new(0),
        kernel: (0..n)
            .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
            .collect(),
    });
    let mut sources = Vec::with_capacity(n);
    for slot in 0..n {
        let queue = first + u16::try_from(slot).unwrap_or(0);
        sources.push(NfqueueSource::bind(queue, slot, cfg, shared.clone())?);
    }
    Ok(QueueGroup {
        sources,
        handle: QueueHandle(shared),
    })
}

impl NfqueueSource {
    fn bind(
        queue: u16,
        slot: usize,
        cfg: &NfqueueConfig,
        shared: Arc<Shared>,
    ) -> Result<NfqueueSource, NfqError> {
        let os = |what: &'static str| {
            move |source: io::Error| NfqError::Os {
                what,
                queue,
                source,
            }
        };
        let fd = sys::netlink_socket(netlink::NETLINK_NETFILTER)
            .map_err(os("socket(AF_NETLINK, NETLINK_NETFILTER)"))?;
        let mut s = NfqueueSource {
            fd,
            queue,
            slot,
            shared,
            name: format!("nfqueue:{queue}"),
            fail_open: cfg.fail_open,
            poll_timeout_ms: i32::try_from(cfg.poll_timeout_ms).unwrap_or(100),
            buf: vec![0; RECV_BUF],
            pos: 0,
            len: 0,
            pending: None,
            deferred: None,
            packets: 0,
            bytes: 0,
            seq: 0,
            proc_file: None,
            ended: false,
        };
        // before binding: packets may arrive while the queue is configured
        sys::set_receive_buffer(&s.fd, cfg.receive_buffer).map_err(os("setting SO_RCVBUF"))?;
        // PF_BIND for IPv4 and IPv6: no-ops since Linux 3.8, needed before.
        // nfnetlink checks CAP_NET_ADMIN for every message, so these also
        // tell a missing privilege from a queue bound by another socket (the
        // kernel answers EPERM to both when binding).
        for pf in [libc::AF_INET as u16, libc::AF_INET6 as u16] {
            if let Err(e) =
                s.request(|q, seq| netlink::config_cmd(q, seq, netlink::NFQNL_CFG_CMD_PF_BIND, pf))
            {
                if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
                    return Err(NfqError::Permission { queue, source: e });
                }
                log::debug!("nfqueue {queue}: PF_BIND {pf}: {e}");
            }
        }
        s.request(|q, seq| netlink::config_cmd(q, seq, netlink::NFQNL_CFG_CMD_BIND, 0))
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM | libc::EBUSY) => NfqError::Busy { queue },
                Some(libc::EACCES) => NfqError::Permission { queue, source: e },
                _ => os("binding the queue (is the nfnetlink_queue module available?)")(e),
            })?;
        s.request(|q, seq| netlink::config_params(q, seq, cfg.copy_range))
            .map_err(os("setting the copy mode"))?;
        s.request(|q, seq| netlink::config_maxlen(q, seq, cfg.queue_maxlen))
            .map_err(os("setting the queue length"))?;
        let mask = netlink::NFQA_CFG_F_FAIL_OPEN | netlink::NFQA_CFG_F_GSO;
        let flags = netlink::NFQA_CFG_F_GSO
            | if cfg.fail_open {
                netlink::NFQA_CFG_F_FAIL_OPEN
            } else {
                0
            };
        s.request(|q, seq| netlink::config_flags(q, seq, flags, mask))
            .map_err(os("setting the queue flags (fail-open, GSO)"))?;
        // the file of this thread's namespace, read later from any thread
        s.proc_file = std::fs::File::open("/proc/thread-self/net/netfilter/nfnetlink_queue").ok();
        s.read_kernel_stats();
        Ok(s)
    }

    /// Sends a configuration message built by `msg(queue, seq)` and waits
    /// for its acknowledgement (packets that arrive meanwhile are accepted).
    fn request(&mut self, msg: impl Fn(u16, u32) -> Vec<u8>) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        sys::netlink_send(&self.fd, &msg(self.queue, seq))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer from the kernel",
                ));
            }
            match sys::poll_in(&self.fd, i32::try_from(left.as_millis()).unwrap_or(100))? {
                sys::Readiness::Ready | sys::Readiness::Error(_) => {}
                sys::Readiness::Timeout | sys::Readiness::Interrupted => continue,
            }
            let Some(n) = sys::recv_nowait(&self.fd, &mut self.buf)? else {
                continue;
            };
            let mut at = 0;
            let end = n.min(self.buf.len());
            while at < end {
                let (m, used) = match netlink::next_message(&self.buf[at..end]) {
                    Ok(m) => m,
                    Err(e) => {
                        self.malformed(&e);
                        break;
                    }
                };
                at += used.max(1);
                if m.ty == netlink::NLMSG_ERROR && m.seq == seq {
                    return match netlink::parse_error(m.payload) {
                        Ok(0) => Ok(()),
                        Ok(code) => Err(io::Error::from_raw_os_error(code.saturating_neg())),
                        Err(e) => Err(io::Error::other(e)),
                    };
                }
                if netlink::is_queue_msg(m.ty, netlink::NFQNL_MSG_PACKET) {
                    self.accept_queued(m.payload)?;
                }
            }
        }
    }

    fn send_verdict(&self, id: u32, v: Verdict) -> io::Result<()> {
        let code = match v {
            Verdict::Accept => netlink::NF_ACCEPT,
            Verdict::Drop => netlink::NF_DROP,
        };
        sys::netlink_send(&self.fd, &netlink::verdict(self.queue, id, code))?;
        let c = match v {
            Verdict::Accept => &self.shared.accepted,
            Verdict::Drop => &self.shared.dropped,
        };
        c.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The verdict for packet `id`, read in order: a drop is sent at once,
    /// an accept joins the batch of deferred accepts (sent when it holds
    /// [`MAX_DEFERRED`]).
    fn give_verdict(&mut self, id: u32, v: Verdict) -> io::Result<()> {
        if v == Verdict::Drop {
            return self.send_verdict(id, v);
        }
        self.shared.accepted.fetch_add(1, Ordering::Relaxed);
        let n = self.deferred.map_or(0, |(_, n)| n) + 1;
        self.deferred = Some((id, n));
        if n >= MAX_DEFERRED {
            self.flush_accepts()?;
        }
        Ok(())
    }

    /// Tells the kernel the deferred accepts: one batch verdict for every
    /// packet up to the last one accepted (the dropped ones among them
    /// were already answered; ids grow in the order packets are read).
    fn flush_accepts(&mut self) -> io::Result<()> {
        match self.deferred.take() {
            Some((id, _)) => sys::netlink_send(
                &self.fd,
                &netlink::verdict_batch(self.queue, id, netlink::NF_ACCEPT),
            ),
            None => Ok(()),
        }
    }

    /// Accepts a packet message that is not to be analysed (one that came
    /// while the queue was being set up, or at the end); a malformed one is
    /// counted and still accepted when its id could be read.
    fn accept_queued(&self, payload: &[u8]) -> io::Result<()> {
        match netlink::parse_packet(payload) {
            Ok(p) => self.send_verdict(p.id, Verdict::Accept),
            Err(e) => {
                self.malformed(&e);
                match e.id {
                    Some(id) => self.send_verdict(id, Verdict::Accept),
                    None => Ok(()),
                }
            }
        }
    }

    /// Counts and logs a message from the kernel that could not be read.
    fn malformed(&self, e: &dyn std::fmt::Display) {
        log::warn!("{}: {e}", self.name);
        self.shared.malformed.fetch_add(1, Ordering::Relaxed);
    }

    /// Accepts the packet handed over last if it has no verdict yet.
    fn accept_pending(&mut self) -> io::Result<()> {
        match self.pending.take() {
            Some((_, id)) => self.give_verdict(id, Verdict::Accept),
            None => Ok(()),
        }
    }

    /// Reads this queue's line of `/proc/net/netfilter/nfnetlink_queue`
    /// (queue, port id, waiting, copy mode, copy range, queue dropped,
    /// user dropped, last id, 1).
    fn read_kernel_stats(&mut self) {
        let Some(f) = self.proc_file.as_mut() else {
            return;
        };
        let mut text = String::new();
        if f.rewind().is_err() || f.read_to_string(&mut text).is_err() {
            return;
        }
        if let Some((q, u)) = parse_proc_line(&text, self.queue)
            && let Some((a, b)) = self.shared.kernel.get(self.slot)
        {
            a.store(q, Ordering::Relaxed);
            b.store(u, Ordering::Relaxed);
        }
    }

    /// `true` when the capture must end (stop asked, duration over).
    fn must_stop(&self) -> bool {
        self.shared.end.must_stop()
    }

    /// Ends the source: accepts what it holds; with fail-open, lets the
    /// kernel accept new packets by itself (queue length 0) and accepts
    /// every packet already sent to us.
    fn finish(&mut self) -> io::Result<()> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        self.read_kernel_stats();
        let mut first_err = self.accept_pending().err();
        if let Err(e) = self.flush_accepts() {
            first_err.get_or_insert(e);
        }
        if self.fail_open {
            let q = self.queue;
            // unacknowledged: the answer would come among the packets
            let mut m = netlink::config_maxlen(q, 0, 0);
            m[6..8].copy_from_slice(&netlink::NLM_F_REQUEST.to_ne_bytes());
            if let Err(e) = sys::netlink_send(&self.fd, &m) {
                first_err.get_or_insert(e);
            }
        }
        // everything the kernel has queued for us (bounded, in case the
        // queue keeps filling without fail-open)
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            while self.pos < self.len {
                let (m, used) = match netlink::next_message(&self.buf[self.pos..self.len]) {
                    Ok(m) => m,
                    Err(e) => {
                        self.malformed(&e);
                        self.pos = self.len;
                        break;
                    }
                };
                let r = if netlink::is_queue_msg(m.ty, netlink::NFQNL_MSG_PACKET) {
                    self.accept_queued(m.payload)
                } else {
                    Ok(())
                };
                self.pos += used.max(1);
                if let Err(e) = r {
                    first_err.get_or_insert(e);
                }
            }
            if Instant::now() >= deadline {
                break;
            }
            match sys::recv_nowait(&self.fd, &mut self.buf) {
                Ok(Some(n)) => {
                    self.pos = 0;
                    self.len = n.min(self.buf.len());
                }
                Ok(None) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.shared.enobufs.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                    break;
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn end(&mut self) -> libpcap_tools::Result<SourceEvent<'_>> {
        self.finish()
            .map_err(|e| self.os_error("accepting the packets held at the end", e))?;
        Ok(SourceEvent::End)
    }

    fn os_error(&self, what: &'static str, source: io::Error) -> libpcap_tools::Error {
        libpcap_tools::Error::Source {
            context: self.name.clone(),
            source: Box::new(NfqError::Os {
                what,
                queue: self.queue,
                source,
            }),
        }
    }
}

/// The (queue dropped, user dropped) counters of `queue` in the text of
/// `/proc/net/netfilter/nfnetlink_queue`.
pub fn parse_proc_line(text: &str, queue: u16) -> Option<(u64, u64)> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first()?.parse::<u16>().ok()? != queue {
            return None;
        }
        Some((f.get(5)?.parse().ok()?, f.get(6)?.parse().ok()?))
    })
}

/// The link type of a queued packet: by the IP version nibble, else by
/// the hardware protocol the kernel gives.
fn linktype_of(payload: &[u8], hw_protocol: u16) -> LinkType {
    match (payload.first().map(|b| b >> 4), hw_protocol) {
        (Some(4), _) => LinkType::IPV4,
        (Some(6), _) => LinkType::IPV6,
        (_, 0x0800) => LinkType::IPV4,
        (_, 0x86dd) => LinkType::IPV6,
        _ => LinkType::RAW,
    }
}

impl PacketSource for NfqueueSource {
    fn next_event(&mut self) -> libpcap_tools::Result<SourceEvent<'_>> {
        if let Err(e) = self.accept_pending() {
            return Err(self.os_error("sending a verdict", e));
        }
        if self.ended {
            return Ok(SourceEvent::End);
        }
        loop {
            // the next message of the datagram received last
            while self.pos < self.len {
                let (msg, used) = match netlink::next_message(&self.buf[self.pos..self.len]) {
                    Ok(m) => m,
                    Err(e) => {
                        log::warn!("{}: {e}; rest of the datagram skipped", self.name);
                        self.shared.malformed.fetch_add(1, Ordering::Relaxed);
                        self.pos = self.len;
                        break;
                    }
                };
                let start = self.pos;
                self.pos += used.max(1);
                if !netlink::is_queue_msg(msg.ty, netlink::NFQNL_MSG_PACKET) {
                    if msg.ty == netlink::NLMSG_ERROR
                        && let Ok(code) = netlink::parse_error(msg.payload)
                        && code != 0
                    {
                        log::warn!(
                            "{}: the kernel refused a message: {}",
                            self.name,
                            io::Error::from_raw_os_error(code.saturating_neg())
                        );
                    }
                    continue;
                }
                let base = self.buf.as_ptr() as usize;
                let p = match netlink::parse_packet(msg.payload) {
                    Ok(p) => Found {
                        id: p.id,
                        hw_protocol: p.hw_protocol,
                        timestamp: p.timestamp,
                        cap_len: p.cap_len,
                        // where the payload is in `buf`, to borrow it again below
                        offset: (p.payload.as_ptr() as usize).wrapping_sub(base),
                        len: p.payload.len(),
                    },
                    Err(e) => {
                        log::warn!("{}: {e}", self.name);
                        self.shared.malformed.fetch_add(1, Ordering::Relaxed);
                        if let Some(id) = e.id
                            && let Err(e) = self.send_verdict(id, Verdict::Accept)
                        {
                            return Err(self.os_error("sending a verdict", e));
                        }
                        continue;
                    }
                };
                if !self.shared.end.take_packet() {
                    // beyond the count: not ours to analyse, accepted with
                    // the rest at the end
                    self.pos = start;
                    return self.end();
                }
                let index = self.packets;
                self.packets += 1;
                self.pending = Some((index, p.id));
                let origlen = p
                    .cap_len
                    .unwrap_or(0)
                    .max(u32::try_from(p.len).unwrap_or(u32::MAX));
                self.bytes += u64::from(origlen);
                let ts = match p.timestamp {
                    Some((sec, usec)) if sec > 0 => Timestamp::from_secs_nanos(
                        i64::try_from(sec).unwrap_or(i64::MAX),
                        i64::try_from(usec.min(999_999)).unwrap_or(0) * 1000,
                    ),
                    _ => now(),
                };
                // the payload again, borrowed for the caller
                let payload = self
                    .buf
                    .get(p.offset..p.offset.saturating_add(p.len))
                    .unwrap_or(&[]);
                let linktype = linktype_of(payload, p.hw_protocol);
                return Ok(SourceEvent::Packet(Packet {
                    index,
                    interface: u32::try_from(self.slot).unwrap_or(u32::MAX),
                    linktype,
                    ts: Some(ts),
                    origlen,
                    data: payload,
                }));
            }
            if self.must_stop() {
                return self.end();
            }
            match sys::recv_nowait(&self.fd, &mut self.buf) {
                Ok(Some(n)) => {
                    if n > self.buf.len() {
                        // cannot happen with our buffer and the kernel's copy range cap
                        log::warn!("{}: a message of {n} bytes was cut", self.name);
                        self.shared.malformed.fetch_add(1, Ordering::Relaxed);
                    }
                    self.pos = 0;
                    self.len = n.min(self.buf.len());
                    continue;
                }
                Ok(None) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // the kernel counts the packets (user dropped); fail-open accepted them
                    self.shared.enobufs.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => return Err(self.os_error("recv", e)),
            }
            // nothing more to read: tell the kernel the accepts held back
            if let Err(e) = self.flush_accepts() {
                return Err(self.os_error("sending a verdict", e));
            }
            match sys::poll_in(&self.fd, self.poll_timeout_ms) {
                Ok(sys::Readiness::Ready) => {}
                // the socket's error: ENOBUFS (the kernel could not deliver
                // to our full socket; it counts those) is counted and the
                // reading goes on, anything else ends the source
                Ok(sys::Readiness::Error(revents)) => match sys::take_socket_error(&self.fd) {
                    Ok(Some(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        self.shared.enobufs.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(e)) | Err(e) => return Err(self.os_error("waiting for packets", e)),
                    Ok(None) => {
                        let e = io::Error::other(format!("poll revents {revents:#x}"));
                        return Err(self.os_error("waiting for packets", e));
                    }
                },
                Ok(sys::Readiness::Timeout | sys::Readiness::Interrupted) => {
                    self.read_kernel_stats();
                    if self.must_stop() {
                        return self.end();
                    }
                    return Ok(SourceEvent::Timeout { now: now() });
                }
                Err(e) => return Err(self.os_error("poll", e)),
            }
        }
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn progress(&self) -> SourceProgress {
        let st = QueueHandle(self.shared.clone()).stats();
        SourceProgress {
            packets: self.packets,
            bytes: self.bytes,
            total_bytes: None,
            dropped: Some(st.queue_dropped + st.user_dropped),
        }
    }

    fn is_live(&self) -> bool {
        true
    }

    fn is_inline(&self) -> bool {
        true
    }

    fn set_verdict(&mut self, index: u64, verdict: Verdict) -> libpcap_tools::Result<()> {
        match self.pending {
            Some((i, id)) if i == index => {
                self.pending = None;
                self.give_verdict(id, verdict)
                    .map_err(|e| self.os_error("sending a verdict", e))
            }
            _ => Err(libpcap_tools::Error::Source {
                context: self.name.clone(),
                source: format!(
                    "verdict for packet {index}, which is not the packet waiting for one \
                     (verdicts are given before the next packet is read)"
                )
                .into(),
            }),
        }
    }
}

impl Drop for NfqueueSource {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            log::warn!("{}: at the end: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_named() {
        NfqueueConfig::default().validate().unwrap();
        let bad = |f: &dyn Fn(&mut NfqueueConfig)| {
            let mut c = NfqueueConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(bad(&|c| c.copy_range = 0).contains("copy_range"));
        assert!(bad(&|c| c.copy_range = 70000).contains("copy_range"));
        assert!(bad(&|c| c.queue_maxlen = 0).contains("queue_maxlen"));
        assert!(bad(&|c| c.receive_buffer = 1000).contains("receive_buffer"));
        assert!(bad(&|c| c.poll_timeout_ms = 0).contains("poll_timeout_ms"));
    }

    #[test]
    fn proc_counters_of_the_queue_are_read() {
        let text = "    0  12345     0 2 65531     0     0        7  1\n\
                    \x20   3  23456     2 2 65531    17     4       99  1\n";
        assert_eq!(parse_proc_line(text, 3), Some((17, 4)));
        assert_eq!(parse_proc_line(text, 0), Some((0, 0)));
        assert_eq!(parse_proc_line(text, 1), None);
        assert_eq!(parse_proc_line("garbage\n3 x", 3), None);
    }

    #[test]
    fn link_type_follows_the_version_nibble_then_the_protocol() {
        assert_eq!(linktype_of(&[0x45], 0x86dd), LinkType::IPV4);
        assert_eq!(linktype_of(&[0x60], 0x0800), LinkType::IPV6);
        assert_eq!(linktype_of(&[], 0x0800), LinkType::IPV4);
        assert_eq!(linktype_of(&[], 0x86dd), LinkType::IPV6);
        assert_eq!(linktype_of(&[0x10], 0), LinkType::RAW);
    }

    #[test]
    fn queue_numbers_past_65535_are_refused() {
        let e = open(
            65535,
            2,
            &NfqueueConfig::default(),
            CaptureLimits::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("65535"), "{e}");
    }
}
