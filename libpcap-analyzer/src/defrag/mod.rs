//! IPv4 and IPv6 defragmentation.
//!
//! A [`Defragmenter`] collects the fragments of IP datagrams, keyed by
//! [`FragmentKey`] (addresses, identification, protocol and an engine-chosen
//! context such as the VLAN or tunnel), and hands back the whole transport
//! payload once every byte from offset 0 to the end given by the last fragment
//! (`more == false`) has been received.
//!
//! # Overlap policy
//!
//! Fragments whose byte ranges overlap are handled by [`OverlapPolicy`]:
//!
//! * A fragment whose bytes are all already held, with identical content (a
//!   retransmitted or duplicated fragment), is a **duplicate**: it is counted
//!   in [`DefragStats::duplicates`] and never an overlap, whatever the policy.
//! * [`OverlapPolicy::First`] (the default): bytes already received win; only
//!   the parts of the new fragment that fill holes are kept (BSD/Windows-like).
//! * [`OverlapPolicy::Last`]: the new fragment's bytes replace what was held
//!   (old Linux-like for IPv4).
//! * [`OverlapPolicy::DropDatagram`]: any overlap other than a duplicate
//!   discards the whole datagram, as RFC 5722 mandates for IPv6 (and as Linux
//!   does for IPv6). The failure reason is [`FailureReason::Overlap`] when the
//!   overlapping bytes agree and [`FailureReason::ConflictingOverlap`] when
//!   they differ.
//!
//! Every overlap is counted in [`DefragStats::overlaps_seen`]; overlaps whose
//! bytes differ also in [`DefragStats::conflicting_overlaps`].
//!
//! # Other rules
//!
//! * An *atomic fragment* (offset 0, `more == false`, RFC 6946) completes at
//!   once and is processed in isolation: it never touches a pending datagram
//!   with the same key.
//! * A non-last fragment whose length is not a multiple of 8, a second last
//!   fragment giving a different end, or data beyond the end given by the last
//!   fragment fail the datagram with [`FailureReason::InconsistentLength`].
//! * The reassembled payload (bytes after the IP header) may not exceed 65 515
//!   bytes for IPv4 (65 535 minus the minimum 20-byte header) nor 65 527 bytes
//!   for IPv6 (65 535 payload length minus the 8-byte Fragment header); larger
//!   datagrams fail with [`FailureReason::TooLarge`] (jumbograms cannot be
//!   fragmented).
//! * A fragment captured shorter than its header says (`ip_truncated`) fails
//!   its datagram with [`FailureReason::TruncatedFragment`].
//!
//! # Failures and accounting
//!
//! Every fragment given to [`Defragmenter::add`] is reported exactly once:
//! inside a [`Reassembled`] datagram or inside a [`DefragFailure`], or it is
//! still pending. A datagram that failed because of one of its fragments
//! (overlap, length, truncation, too many fragments or bytes) leaves a small
//! tombstone until its timeout, so that its later fragments are not collected
//! again: each such straggler is returned at once as its own
//! [`DefragOutcome::Failed`] with the same reason and `frames == 1`; only the
//! first failure of a datagram is counted in [`DefragStats::failures`].
//!
//! # Time and memory
//!
//! A datagram expires [`DefragConfig::timeout_ns`] after its first
//! timestamped fragment (one value for IPv4 and IPv6: RFC 791 suggests 15 s,
//! Linux uses 30 s, RFC 8200 gives 60 s for IPv6; the default is 60 s),
//! counted on the run's clock when the fragments are given with
//! [`Defragmenter::add_at`] (the analyzer does: see [`crate::clock`]; a
//! capture whose time goes back then does not fail its datagrams).
//! Expiry uses an ordered index, so [`Defragmenter::expire`] costs nothing
//! when nothing expires. Datagrams with no timestamp never expire by time;
//! [`Defragmenter::drain`] reports them at the end of input.
//!
//! Memory is bounded by [`DefragConfig::max_datagrams`] (pending datagrams,
//! tombstones included), [`DefragConfig::max_bytes`] (fragment bytes held in
//! all, charging [`PIECE_OVERHEAD`] per held piece) and [`DefragConfig::max_fragments_per_datagram`]. Hitting the
//! first two evicts the oldest pending datagram (reported through
//! [`Defragmenter::take_evicted`]).

use libpcap_tools::Timestamp;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Largest reassembled IPv4 payload: 65 535 minus a 20-byte header.
pub const MAX_IPV4_PAYLOAD: u32 = 65_515;
/// Largest reassembled IPv6 fragmentable part: 65 535 minus the 8-byte
/// Fragment header.
pub const MAX_IPV6_PAYLOAD: u32 = 65_527;

/// Accounting overhead charged per held piece of fragment data, in bytes
/// (map node and vector header), so that many tiny fragments cannot exceed
/// [`DefragConfig::max_bytes`].
pub const PIECE_OVERHEAD: usize = 64;

/// Configuration of a [`Defragmenter`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefragConfig {
    /// Time after the first fragment of a datagram after which it is dropped,
    /// in nanoseconds. Default 60 s (RFC 8200; RFC 791 suggests 15 s for
    /// IPv4, Linux uses 30 s).
    pub timeout_ns: i64,
    /// Largest number of pending datagrams; default 10 000.
    pub max_datagrams: usize,
    /// Largest number of fragment bytes held in all (payload plus
    /// [`PIECE_OVERHEAD`] per held piece); default 64 MiB.
    pub max_bytes: usize,
    /// Largest number of fragments in one datagram; default 8192 (the
    /// largest legal IPv4 datagram in 8-byte fragments).
    pub max_fragments_per_datagram: usize,
    /// What to do with overlapping fragments; default [`OverlapPolicy::First`].
    pub policy: OverlapPolicy,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig {
            timeout_ns: 60 * Timestamp::NANOS_PER_SEC,
            max_datagrams: 10_000,
            max_bytes: 64 << 20,
            // the largest legal IPv4 datagram in 8-byte fragments: 65535 / 8
            max_fragments_per_datagram: 8192,
            policy: OverlapPolicy::First,
        }
    }
}

/// How overlapping fragments are resolved (see the [module doc](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverlapPolicy {
    /// Bytes already received win (BSD/Windows-like).
    #[default]
    First,
    /// Bytes of the newest fragment win.
    Last,
    /// Any overlap discards the whole datagram (RFC 5722, mandatory for IPv6).
    DropDatagram,
}

/// Identifies the datagram a fragment belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IPv4 identification (16 bits) or IPv6 Fragment header identification.
    pub id: u32,
    /// IPv4 protocol, or the IPv6 Fragment header's next header.
    pub proto: u8,
    /// VLAN and tunnel context of the IP header.
    pub context: libpcap_tools::FlowContext,
}

/// One fragment given to [`Defragmenter::add`].
#[derive(Clone, Copy, Debug)]
pub struct FragmentInfo<'a> {
    /// Offset of `payload` in the datagram, in bytes.
    pub offset_bytes: u32,
    /// The "more fragments" flag.
    pub more: bool,
    /// Bytes after the IP header (after the IPv6 Fragment header).
    pub payload: &'a [u8],
    /// Capture time of the frame.
    pub ts: Option<Timestamp>,
    /// Original length of the frame, for counting.
    pub wire_len: u32,
    /// The capture holds fewer bytes than the IP header says.
    pub ip_truncated: bool,
}

/// A datagram rebuilt from its fragments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassembled {
    /// Transport protocol (from the key).
    pub proto: u8,
    /// The whole transport datagram.
    pub payload: Vec<u8>,
    /// Number of frames (fragments, duplicates included) that made it.
    pub frames: u32,
    /// Sum of the frames' wire lengths.
    pub wire_bytes: u64,
    /// Timestamp of the first timestamped fragment.
    pub first_ts: Option<Timestamp>,
    /// Timestamp of the last timestamped fragment.
    pub last_ts: Option<Timestamp>,
}

/// Result of [`Defragmenter::add`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DefragOutcome {
    /// The datagram is complete.
    Complete(Reassembled),
    /// More fragments are needed.
    Pending,
    /// The datagram (or this straggling fragment of a failed one) failed.
    Failed(DefragFailure),
}

/// Why a datagram could not be reassembled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureReason {
    /// Not complete within the timeout.
    Timeout,
    /// Evicted as the oldest when `max_datagrams` was reached.
    TooManyDatagrams,
    /// Evicted (or refused) because `max_bytes` was reached.
    TooManyBytes,
    /// More than `max_fragments_per_datagram` fragments.
    TooManyFragments,
    /// Overlap with identical bytes under [`OverlapPolicy::DropDatagram`].
    Overlap,
    /// Overlap with differing bytes under [`OverlapPolicy::DropDatagram`].
    ConflictingOverlap,
    /// Larger than an IP datagram may be.
    TooLarge,
    /// Non-last fragment not a multiple of 8, conflicting last fragments, or
    /// data beyond the end.
    InconsistentLength,
    /// A fragment was captured shorter than its header says.
    TruncatedFragment,
    /// Still pending at the end of input ([`Defragmenter::drain`]).
    EndOfInput,
}

impl FailureReason {
    /// The anomaly name of a datagram that failed for this reason
    /// (`defrag_timeout`, `defrag_too_many_fragments`, …).
    pub fn anomaly(self) -> &'static str {
        match self {
            FailureReason::Timeout => "defrag_timeout",
            FailureReason::TooManyDatagrams => "defrag_too_many_datagrams",
            FailureReason::TooManyBytes => "defrag_too_many_bytes",
            FailureReason::TooManyFragments => "defrag_too_many_fragments",
            FailureReason::Overlap => "defrag_overlap",
            FailureReason::ConflictingOverlap => "defrag_conflicting_overlap",
            FailureReason::TooLarge => "defrag_too_large",
            FailureReason::InconsistentLength => "defrag_inconsistent_length",
            FailureReason::TruncatedFragment => "defrag_truncated_fragment",
            FailureReason::EndOfInput => "defrag_end_of_input",
        }
    }

    /// Every reason, in declaration order.
    pub const ALL: [FailureReason; 10] = [
        FailureReason::Timeout,
        FailureReason::TooManyDatagrams,
        FailureReason::TooManyBytes,
        FailureReason::TooManyFragments,
        FailureReason::Overlap,
        FailureReason::ConflictingOverlap,
        FailureReason::TooLarge,
        FailureReason::InconsistentLength,
        FailureReason::TruncatedFragment,
        FailureReason::EndOfInput,
    ];

    /// Short kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::TooManyDatagrams => "too-many-datagrams",
            FailureReason::TooManyBytes => "too-many-bytes",
            FailureReason::TooManyFragments => "too-many-fragments",
            FailureReason::Overlap => "overlap",
            FailureReason::ConflictingOverlap => "conflicting-overlap",
            FailureReason::TooLarge => "too-large",
            FailureReason::InconsistentLength => "inconsistent-length",
            FailureReason::TruncatedFragment => "truncated-fragment",
            FailureReason::EndOfInput => "end-of-input",
        }
    }
}

/// A datagram (or straggling fragment) that could not be reassembled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefragFailure {
    /// The datagram's key.
    pub key: FragmentKey,
    /// Why it failed.
    pub reason: FailureReason,
    /// Frames reported by this failure.
    pub frames: u32,
    /// Sum of their wire lengths.
    pub wire_bytes: u64,
    /// First timestamp among them.
    pub first_ts: Option<Timestamp>,
    /// Last timestamp among them.
    pub last_ts: Option<Timestamp>,
    /// Latest time among them on the run's clock (see
    /// [`Defragmenter::add_at`]; their timestamp when given by
    /// [`Defragmenter::add`]).
    pub last_at: Option<Timestamp>,
    /// The bytes held contiguously from offset 0 (the offset-0 fragment, or
    /// more), if received: lets the engine read the transport header.
    pub first_fragment: Option<Vec<u8>>,
}

/// Failure counters, one per [`FailureReason`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FailureCounts {
    /// [`FailureReason::Timeout`].
    pub timeout: u64,
    /// [`FailureReason::TooManyDatagrams`].
    pub too_many_datagrams: u64,
    /// [`FailureReason::TooManyBytes`].
    pub too_many_bytes: u64,
    /// [`FailureReason::TooManyFragments`].
    pub too_many_fragments: u64,
    /// [`FailureReason::Overlap`].
    pub overlap: u64,
    /// [`FailureReason::ConflictingOverlap`].
    pub conflicting_overlap: u64,
    /// [`FailureReason::TooLarge`].
    pub too_large: u64,
    /// [`FailureReason::InconsistentLength`].
    pub inconsistent_length: u64,
    /// [`FailureReason::TruncatedFragment`].
    pub truncated_fragment: u64,
    /// [`FailureReason::EndOfInput`].
    pub end_of_input: u64,
}

impl FailureCounts {
    fn slot(&mut self, reason: FailureReason) -> &mut u64 {
        match reason {
            FailureReason::Timeout => &mut self.timeout,
            FailureReason::TooManyDatagrams => &mut self.too_many_datagrams,
            FailureReason::TooManyBytes => &mut self.too_many_bytes,
            FailureReason::TooManyFragments => &mut self.too_many_fragments,
            FailureReason::Overlap => &mut self.overlap,
            FailureReason::ConflictingOverlap => &mut self.conflicting_overlap,
            FailureReason::TooLarge => &mut self.too_large,
            FailureReason::InconsistentLength => &mut self.inconsistent_length,
            FailureReason::TruncatedFragment => &mut self.truncated_fragment,
            FailureReason::EndOfInput => &mut self.end_of_input,
        }
    }

    /// The counter for `reason`.
    pub fn get(&self, reason: FailureReason) -> u64 {
        match reason {
            FailureReason::Timeout => self.timeout,
            FailureReason::TooManyDatagrams => self.too_many_datagrams,
            FailureReason::TooManyBytes => self.too_many_bytes,
            FailureReason::TooManyFragments => self.too_many_fragments,
            FailureReason::Overlap => self.overlap,
            FailureReason::ConflictingOverlap => self.conflicting_overlap,
            FailureReason::TooLarge => self.too_large,
            FailureReason::InconsistentLength => self.inconsistent_length,
            FailureReason::TruncatedFragment => self.truncated_fragment,
            FailureReason::EndOfInput => self.end_of_input,
        }
    }

    /// Sum of all counters.
    pub fn total(&self) -> u64 {
        FailureReason::ALL
            .iter()
            .fold(0u64, |acc, r| acc.saturating_add(self.get(*r)))
    }
}

/// Counters of a [`Defragmenter`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DefragStats {
    /// Fragments given to [`Defragmenter::add`] (atomic fragments included).
    pub fragments: u64,
    /// Datagrams reassembled (atomic fragments included).
    pub datagrams_completed: u64,
    /// Atomic fragments (offset 0, no more fragments).
    pub atomic_fragments: u64,
    /// Fragments whose bytes were all already held, identical.
    pub duplicates: u64,
    /// Fragments overlapping held bytes (duplicates excluded).
    pub overlaps_seen: u64,
    /// Overlaps whose bytes differed from the held ones.
    pub conflicting_overlaps: u64,
    /// Fragments of an already failed datagram, each returned as its own
    /// failure.
    pub stragglers: u64,
    /// Failed datagrams by reason (stragglers not counted).
    pub failures: FailureCounts,
    /// Fragment bytes held now (payload plus [`PIECE_OVERHEAD`] per piece).
    pub bytes_pending: u64,
    /// Datagrams pending now (tombstones not counted).
    pub datagrams_pending: u64,
}

/// A datagram being collected, or a tombstone of a failed one.
#[derive(Debug)]
struct Pending {
    /// Creation order, for eviction of the oldest.
    seq: u64,
    /// Key in the expiry index, once a timestamp is known.
    expiry_ns: Option<i64>,
    /// Non-overlapping pieces by offset.
    pieces: BTreeMap<u32, Vec<u8>>,
    /// Bytes in `pieces`.
    stored: usize,
    /// End of the datagram, from the last fragment.
    total: Option<u32>,
    /// Highest end of any held piece.
    max_end: u32,
    frames: u32,
    wire_bytes: u64,
    first_ts: Option<Timestamp>,
    last_ts: Option<Timestamp>,
    /// Earliest and latest times on the run's clock: expiry counts from
    /// the first.
    first_at: Option<Timestamp>,
    last_at: Option<Timestamp>,
    /// `Some` for a tombstone.
    dead: Option<FailureReason>,
    /// For a tombstone: the start of the datagram's first fragment (its
    /// transport ports), so that fragments arriving after the failure still
    /// count for the datagram's connection.
    head: Option<Vec<u8>>,
}

/// Bytes of a failed datagram's first fragment kept in its tombstone.
const HEAD_KEPT: usize = 64;

impl Pending {
    fn new(seq: u64) -> Self {
        Pending {
            seq,
            expiry_ns: None,
            pieces: BTreeMap::new(),
            stored: 0,
            total: None,
            max_end: 0,
            frames: 0,
            wire_bytes: 0,
            first_ts: None,
            last_ts: None,
            first_at: None,
            last_at: None,
            dead: None,
            head: None,
        }
    }

    /// Bytes charged against `max_bytes`: payload plus [`PIECE_OVERHEAD`]
    /// per piece.
    fn charge(&self) -> usize {
        self.stored
            .saturating_add(self.pieces.len().saturating_mul(PIECE_OVERHEAD))
    }

    /// Bytes held contiguously from offset 0.
    fn prefix(&self) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        let mut cursor = 0u64;
        for (&off, buf) in &self.pieces {
            if u64::from(off) != cursor {
                break;
            }
            out.get_or_insert_with(Vec::new).extend_from_slice(buf);
            cursor = cursor.saturating_add(buf.len() as u64);
        }
        out
    }
}

/// How a fragment overlaps the held pieces.
struct OverlapScan {
    bytes: usize,
    identical: bool,
}

/// IPv4 / IPv6 defragmenter (see the [module doc](self)).
#[derive(Debug)]
pub struct Defragmenter {
    cfg: DefragConfig,
    map: FastMap<FragmentKey, Pending>,
    /// Creation order -> key.
    by_seq: BTreeMap<u64, FragmentKey>,
    /// (first timestamp, creation order), for expiry.
    by_time: BTreeSet<(i64, u64)>,
    next_seq: u64,
    bytes_pending: usize,
    /// This worker's part of the run's fragment bytes ([`crate::memory`]).
    lease: crate::memory::Lease,
    /// This worker's part of the run's pending datagrams (`max_datagrams`
    /// is a budget of the run, shared by the workers).
    datagrams: crate::memory::Lease,
    dead_count: usize,
    evicted: Vec<DefragFailure>,
    stats: DefragStats,
}

fn ts_min(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn ts_max(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Byte range `start..end` of `buf`, relative to `base`, or empty if out of
/// range (never panics).
fn sub(buf: &[u8], base: u32, start: u32, end: u32) -> &[u8] {
    let s = start.saturating_sub(base) as usize;
    let e = end.saturating_sub(base) as usize;
    buf.get(s..e).unwrap_or(&[])
}

impl Defragmenter {
    /// A defragmenter with the given configuration.
    pub fn new(cfg: DefragConfig) -> Self {
        Defragmenter {
            cfg,
            map: FastMap::default(),
            by_seq: BTreeMap::new(),
            by_time: BTreeSet::new(),
            next_seq: 0,
            bytes_pending: 0,
            lease: crate::memory::Lease::unlimited(),
            datagrams: crate::memory::Lease::unlimited(),
            dead_count: 0,
            evicted: Vec::new(),
            stats: DefragStats::default(),
        }
    }

    /// Draws the bytes held from `lease` (a pool of the whole run, shared
    /// with the other workers) as well as from `max_bytes`: when it cannot
    /// cover them, the oldest datagrams are dropped (`too_many_bytes`).
    pub fn set_lease(&mut self, lease: crate::memory::Lease) {
        self.lease = lease;
    }

    /// Draws the pending datagrams from `lease` (a pool of the whole run
    /// counted in datagrams, [`crate::memory::MemoryBudget::fragment_datagrams`])
    /// as well as from `max_datagrams`: when it cannot cover one more, the
    /// oldest pending datagram is dropped (`too_many_datagrams`); a worker
    /// holding none whose lease cannot cover one fails the fragment.
    pub fn set_datagram_lease(&mut self, lease: crate::memory::Lease) {
        self.datagrams = lease;
    }

    /// Whether the bytes held are over `max_bytes` or the lease.
    fn over_bytes(&mut self) -> bool {
        self.bytes_pending > self.cfg.max_bytes || !self.lease.cover(self.bytes_pending as u64)
    }

    /// The configuration.
    pub fn config(&self) -> &DefragConfig {
        &self.cfg
    }

    /// Adds one fragment.
    ///
    /// Returns the reassembled datagram when this fragment completes it, or
    /// the failure this fragment caused (for its own datagram). Failures of
    /// other datagrams caused by this call (evictions for the caps, a timed
    /// out datagram with the same key) are kept for
    /// [`Defragmenter::take_evicted`].
    pub fn add(&mut self, key: FragmentKey, frag: FragmentInfo<'_>) -> DefragOutcome {
        let at = frag.ts;
        self.add_at(key, frag, at)
    }

    /// As [`Defragmenter::add`], with the fragment's time on the run's
    /// clock (`at`, see [`crate::clock`]) given apart from its capture
    /// time: timeouts count on the run's clock, so that a capture whose
    /// time goes back does not expire datagrams at once, while the
    /// timestamps reported stay the captured ones. [`Defragmenter::expire`]
    /// then takes the run's clock.
    pub fn add_at(
        &mut self,
        key: FragmentKey,
        frag: FragmentInfo<'_>,
        at: Option<Timestamp>,
    ) -> DefragOutcome {
        self.stats.fragments = self.stats.fragments.saturating_add(1);
        let out = self.add_inner(key, frag, at);
        self.sync_stats();
        out
    }

    fn add_inner(
        &mut self,
        key: FragmentKey,
        frag: FragmentInfo<'_>,
        at: Option<Timestamp>,
    ) -> DefragOutcome {
        let limit = match key.src {
            IpAddr::V4(_) => MAX_IPV4_PAYLOAD,
            IpAddr::V6(_) => MAX_IPV6_PAYLOAD,
        };
        let len64 = frag.payload.len() as u64;
        let end64 = u64::from(frag.offset_bytes).saturating_add(len64);

        // Atomic fragment: processed in isolation (RFC 6946).
        if frag.offset_bytes == 0 && !frag.more && !frag.ip_truncated && end64 <= u64::from(limit) {
            self.stats.atomic_fragments = self.stats.atomic_fragments.saturating_add(1);
            self.stats.datagrams_completed = self.stats.datagrams_completed.saturating_add(1);
            return DefragOutcome::Complete(Reassembled {
                proto: key.proto,
                payload: frag.payload.to_vec(),
                frames: 1,
                wire_bytes: u64::from(frag.wire_len),
                first_ts: frag.ts,
                last_ts: frag.ts,
            });
        }

        // A pending datagram whose timeout passed (expire not called yet).
        if let (Some(ts), Some(p)) = (at, self.map.get(&key))
            && let Some(first) = p.first_at
            && ts.nanos_since(first) >= self.cfg.timeout_ns
        {
            self.remove_and_report(&key, FailureReason::Timeout, true);
        }

        if !self.map.contains_key(&key) {
            while self.map.len() >= self.cfg.max_datagrams
                || !self.datagrams.cover(self.map.len() as u64 + 1)
            {
                if !self.evict_oldest(None, FailureReason::TooManyDatagrams) {
                    break;
                }
            }
            if self.map.len() >= self.cfg.max_datagrams
                || !self.datagrams.cover(self.map.len() as u64 + 1)
            {
                // max_datagrams == 0: nothing may be held.
                self.count_failure(FailureReason::TooManyDatagrams);
                return DefragOutcome::Failed(Self::single(
                    key,
                    &frag,
                    FailureReason::TooManyDatagrams,
                    at,
                ));
            }
            let seq = self.next_seq;
            self.next_seq = self.next_seq.wrapping_add(1);
            self.map.insert(key, Pending::new(seq));
            self.by_seq.insert(seq, key);
        }

        // Account the frame.
        let (dead, seq) = match self.map.get_mut(&key) {
            Some(p) => {
                if p.dead.is_none() {
                    p.frames = p.frames.saturating_add(1);
                    p.wire_bytes = p.wire_bytes.saturating_add(u64::from(frag.wire_len));
                    p.first_ts = ts_min(p.first_ts, frag.ts);
                    p.last_ts = ts_max(p.last_ts, frag.ts);
                }
                // a tombstone's expiry counts from its first fragment too
                p.first_at = ts_min(p.first_at, at);
                p.last_at = ts_max(p.last_at, at);
                (p.dead, p.seq)
            }
            None => return DefragOutcome::Pending,
        };
        self.index_time(&key);
        if let Some(reason) = dead {
            self.stats.stragglers = self.stats.stragglers.saturating_add(1);
            let mut failure = Self::single(key, &frag, reason, at);
            if let Some(p) = self.map.get_mut(&key) {
                match &failure.first_fragment {
                    // a first fragment after the failure: later stragglers use it
                    Some(first) => p.head = Some(first.iter().take(HEAD_KEPT).copied().collect()),
                    None => failure.first_fragment = p.head.clone(),
                }
            }
            return DefragOutcome::Failed(failure);
        }

        // Checks on the fragment alone.
        if frag.ip_truncated {
            return self.fail_in_place(key, &frag, FailureReason::TruncatedFragment);
        }
        if end64 > u64::from(limit) {
            return self.fail_in_place(key, &frag, FailureReason::TooLarge);
        }
        if frag.more && !len64.is_multiple_of(8) {
            return self.fail_in_place(key, &frag, FailureReason::InconsistentLength);
        }
        // end64 <= limit < u32::MAX from here on.
        let start = frag.offset_bytes;
        let end = u32::try_from(end64).unwrap_or(u32::MAX);

        let (scan, too_many, inconsistent) = match self.map.get(&key) {
            Some(p) => {
                let too_many = p.frames as usize > self.cfg.max_fragments_per_datagram;
                let inconsistent = if frag.more {
                    p.total.is_some_and(|t| end > t)
                } else {
                    p.total.is_some_and(|t| t != end) || p.max_end > end
                };
                (
                    Self::scan(p, start, end, frag.payload),
                    too_many,
                    inconsistent,
                )
            }
            None => return DefragOutcome::Pending,
        };
        if too_many {
            return self.fail_in_place(key, &frag, FailureReason::TooManyFragments);
        }
        if inconsistent {
            return self.fail_in_place(key, &frag, FailureReason::InconsistentLength);
        }
        if !frag.more
            && let Some(p) = self.map.get_mut(&key)
        {
            p.total = Some(end);
        }

        let len = frag.payload.len();
        if len > 0 && scan.bytes > 0 {
            if scan.identical && scan.bytes == len {
                self.stats.duplicates = self.stats.duplicates.saturating_add(1);
                return self.check_complete(key);
            }
            self.stats.overlaps_seen = self.stats.overlaps_seen.saturating_add(1);
            if !scan.identical {
                self.stats.conflicting_overlaps = self.stats.conflicting_overlaps.saturating_add(1);
            }
            if self.cfg.policy == OverlapPolicy::DropDatagram {
                let reason = if scan.identical {
                    FailureReason::Overlap
                } else {
                    FailureReason::ConflictingOverlap
                };
                return self.fail_in_place(key, &frag, reason);
            }
        }

        if len > 0 {
            let grow = len.saturating_sub(scan.bytes);
            let policy = self.cfg.policy;
            if let Some(p) = self.map.get_mut(&key) {
                let before = p.charge();
                if scan.bytes == 0 {
                    p.pieces.insert(start, frag.payload.to_vec());
                } else if policy == OverlapPolicy::Last {
                    Self::insert_last(p, start, end, frag.payload);
                } else {
                    Self::insert_first(p, start, end, frag.payload);
                }
                p.stored = p.stored.saturating_add(grow);
                p.max_end = p.max_end.max(end);
                let after = p.charge();
                self.bytes_pending = self
                    .bytes_pending
                    .saturating_add(after)
                    .saturating_sub(before);
            }
        }
        let outcome = self.check_complete(key);
        if !matches!(outcome, DefragOutcome::Pending) {
            return outcome;
        }

        // Byte cap: evict the oldest other datagrams, then give up on this one.
        while self.over_bytes() {
            if !self.evict_oldest(Some(seq), FailureReason::TooManyBytes) {
                break;
            }
        }
        if self.over_bytes() {
            return self.fail_in_place(key, &frag, FailureReason::TooManyBytes);
        }
        DefragOutcome::Pending
    }

    /// Overlap of `start..end` with the held pieces.
    fn scan(p: &Pending, start: u32, end: u32, payload: &[u8]) -> OverlapScan {
        let mut scan = OverlapScan {
            bytes: 0,
            identical: true,
        };
        if start >= end {
            return scan;
        }
        for (&ps, buf) in p.pieces.range(..end).rev() {
            let pe = ps.saturating_add(u32::try_from(buf.len()).unwrap_or(u32::MAX));
            if pe <= start {
                break;
            }
            let os = ps.max(start);
            let oe = pe.min(end);
            scan.bytes = scan.bytes.saturating_add(oe.saturating_sub(os) as usize);
            if sub(buf, ps, os, oe) != sub(payload, start, os, oe) {
                scan.identical = false;
            }
        }
        scan
    }

    /// Inserts the parts of `start..end` not already held.
    fn insert_first(p: &mut Pending, start: u32, end: u32, payload: &[u8]) {
        let held: Vec<(u32, u32)> = p
            .pieces
            .range(..end)
            .map(|(&ps, buf)| {
                (
                    ps,
                    ps.saturating_add(u32::try_from(buf.len()).unwrap_or(u32::MAX)),
                )
            })
            .filter(|&(_, pe)| pe > start)
            .collect();
        let mut cursor = start;
        for (ps, pe) in held {
            if ps > cursor {
                let part = sub(payload, start, cursor, ps.min(end));
                if !part.is_empty() {
                    p.pieces.insert(cursor, part.to_vec());
                }
            }
            cursor = cursor.max(pe);
        }
        if cursor < end {
            let part = sub(payload, start, cursor, end);
            if !part.is_empty() {
                p.pieces.insert(cursor, part.to_vec());
            }
        }
    }

    /// Replaces held bytes in `start..end` with the new fragment.
    fn insert_last(p: &mut Pending, start: u32, end: u32, payload: &[u8]) {
        let keys: Vec<u32> = p
            .pieces
            .range(..end)
            .filter(|(ps, buf)| {
                ps.saturating_add(u32::try_from(buf.len()).unwrap_or(u32::MAX)) > start
            })
            .map(|(&ps, _)| ps)
            .collect();
        for ps in keys {
            if let Some(buf) = p.pieces.remove(&ps) {
                let pe = ps.saturating_add(u32::try_from(buf.len()).unwrap_or(u32::MAX));
                if ps < start {
                    let head = sub(&buf, ps, ps, start);
                    p.pieces.insert(ps, head.to_vec());
                }
                if pe > end {
                    let tail = sub(&buf, ps, end, pe);
                    p.pieces.insert(end, tail.to_vec());
                }
            }
        }
        p.pieces.insert(start, payload.to_vec());
    }

    /// Completes `key` if every byte is held.
    fn check_complete(&mut self, key: FragmentKey) -> DefragOutcome {
        let done = self
            .map
            .get(&key)
            .is_some_and(|p| p.total.is_some_and(|t| p.stored == t as usize));
        if !done {
            return DefragOutcome::Pending;
        }
        let Some(p) = self.remove_entry(&key) else {
            return DefragOutcome::Pending;
        };
        let mut payload = Vec::with_capacity(p.stored);
        for buf in p.pieces.values() {
            payload.extend_from_slice(buf);
        }
        self.stats.datagrams_completed = self.stats.datagrams_completed.saturating_add(1);
        DefragOutcome::Complete(Reassembled {
            proto: key.proto,
            payload,
            frames: p.frames,
            wire_bytes: p.wire_bytes,
            first_ts: p.first_ts,
            last_ts: p.last_ts,
        })
    }

    /// A failure reporting one fragment only.
    fn single(
        key: FragmentKey,
        frag: &FragmentInfo<'_>,
        reason: FailureReason,
        at: Option<Timestamp>,
    ) -> DefragFailure {
        DefragFailure {
            key,
            reason,
            frames: 1,
            wire_bytes: u64::from(frag.wire_len),
            first_ts: frag.ts,
            last_ts: frag.ts,
            last_at: at,
            first_fragment: (frag.offset_bytes == 0 && !frag.payload.is_empty())
                .then(|| frag.payload.to_vec()),
        }
    }

    fn count_failure(&mut self, reason: FailureReason) {
        let slot = self.stats.failures.slot(reason);
        *slot = slot.saturating_add(1);
    }

    /// Fails `key` because of `frag` (already accounted in it) and leaves a
    /// tombstone.
    fn fail_in_place(
        &mut self,
        key: FragmentKey,
        frag: &FragmentInfo<'_>,
        reason: FailureReason,
    ) -> DefragOutcome {
        self.count_failure(reason);
        let Some(p) = self.map.get_mut(&key) else {
            return DefragOutcome::Failed(Self::single(key, frag, reason, frag.ts));
        };
        let mut first_fragment = p.prefix();
        if first_fragment.is_none() && frag.offset_bytes == 0 && !frag.payload.is_empty() {
            first_fragment = Some(frag.payload.to_vec());
        }
        let failure = DefragFailure {
            key,
            reason,
            frames: p.frames,
            wire_bytes: p.wire_bytes,
            first_ts: p.first_ts,
            last_ts: p.last_ts,
            last_at: p.last_at,
            first_fragment,
        };
        self.bytes_pending = self.bytes_pending.saturating_sub(p.charge());
        self.lease.cover(self.bytes_pending as u64);
        p.pieces = BTreeMap::new();
        p.stored = 0;
        p.frames = 0;
        p.wire_bytes = 0;
        p.dead = Some(reason);
        p.head = failure
            .first_fragment
            .as_ref()
            .map(|f| f.iter().take(HEAD_KEPT).copied().collect());
        self.dead_count = self.dead_count.saturating_add(1);
        DefragOutcome::Failed(failure)
    }

    /// Removes an entry from every index.
    fn remove_entry(&mut self, key: &FragmentKey) -> Option<Pending> {
        let p = self.map.remove(key)?;
        self.by_seq.remove(&p.seq);
        if let Some(t) = p.expiry_ns {
            self.by_time.remove(&(t, p.seq));
        }
        self.bytes_pending = self.bytes_pending.saturating_sub(p.charge());
        self.lease.cover(self.bytes_pending as u64);
        self.datagrams.cover(self.map.len() as u64);
        if p.dead.is_some() {
            self.dead_count = self.dead_count.saturating_sub(1);
        }
        Some(p)
    }

    /// Removes `key`; returns its failure unless it was a tombstone. With
    /// `to_evicted`, the failure goes to the evicted list instead.
    fn remove_and_report(
        &mut self,
        key: &FragmentKey,
        reason: FailureReason,
        to_evicted: bool,
    ) -> Option<DefragFailure> {
        let p = self.remove_entry(key)?;
        if p.dead.is_some() || p.frames == 0 {
            return None;
        }
        self.count_failure(reason);
        let failure = DefragFailure {
            key: *key,
            reason,
            frames: p.frames,
            wire_bytes: p.wire_bytes,
            first_ts: p.first_ts,
            last_ts: p.last_ts,
            last_at: p.last_at,
            first_fragment: p.prefix(),
        };
        if to_evicted {
            self.evicted.push(failure);
            None
        } else {
            Some(failure)
        }
    }

    /// Evicts the oldest entry other than `except`; false if none.
    fn evict_oldest(&mut self, except: Option<u64>, reason: FailureReason) -> bool {
        let victim = self
            .by_seq
            .iter()
            .find(|(seq, _)| Some(**seq) != except)
            .map(|(_, k)| *k);
        match victim {
            Some(k) => {
                self.remove_and_report(&k, reason, true);
                true
            }
            None => false,
        }
    }

    /// Puts `key` in the expiry index once its first timestamp is known (or
    /// moves it if an earlier timestamp arrived).
    fn index_time(&mut self, key: &FragmentKey) {
        if let Some(p) = self.map.get_mut(key)
            && let Some(first) = p.first_at
            && p.expiry_ns != Some(first.as_nanos())
        {
            if let Some(old) = p.expiry_ns {
                self.by_time.remove(&(old, p.seq));
            }
            p.expiry_ns = Some(first.as_nanos());
            self.by_time.insert((first.as_nanos(), p.seq));
        }
    }

    /// Fails every datagram whose first fragment is at least `timeout_ns`
    /// older than `now`. Cheap when nothing expires.
    pub fn expire(&mut self, now: Timestamp) -> Vec<DefragFailure> {
        let mut out = Vec::new();
        while let Some(&(t, seq)) = self.by_time.first() {
            if now.nanos_since(Timestamp(t)) < self.cfg.timeout_ns {
                break;
            }
            self.by_time.remove(&(t, seq));
            match self.by_seq.get(&seq).copied() {
                Some(key) => {
                    if let Some(f) = self.remove_and_report(&key, FailureReason::Timeout, false) {
                        out.push(f);
                    }
                }
                None => continue,
            }
        }
        self.sync_stats();
        out
    }

    /// Failures caused as side effects of [`Defragmenter::add`] (evictions
    /// for the caps, timeouts noticed on a new fragment). Call after each
    /// `add` (or often): the list grows until taken.
    pub fn take_evicted(&mut self) -> Vec<DefragFailure> {
        std::mem::take(&mut self.evicted)
    }

    /// End of input: fails everything pending with
    /// [`FailureReason::EndOfInput`] (oldest first), after any failures not
    /// yet taken with [`Defragmenter::take_evicted`].
    pub fn drain(&mut self) -> Vec<DefragFailure> {
        let mut out = std::mem::take(&mut self.evicted);
        let keys: Vec<FragmentKey> = self.by_seq.values().copied().collect();
        for key in keys {
            if let Some(f) = self.remove_and_report(&key, FailureReason::EndOfInput, false) {
                out.push(f);
            }
        }
        self.sync_stats();
        out
    }

    /// The counters.
    pub fn stats(&self) -> &DefragStats {
        &self.stats
    }

    /// Datagrams pending (tombstones of failed datagrams not counted).
    pub fn pending(&self) -> usize {
        self.map.len().saturating_sub(self.dead_count)
    }

    /// Fragment bytes held (payload plus [`PIECE_OVERHEAD`] per piece).
    pub fn bytes_pending(&self) -> usize {
        self.bytes_pending
    }

    fn sync_stats(&mut self) {
        self.stats.bytes_pending = self.bytes_pending as u64;
        self.stats.datagrams_pending = self.pending() as u64;
    }
}

#[cfg(test)]
mod tests;
