//! TCP stream reassembly, one direction at a time.
//!
//! A [`TcpStreamDirection`] turns the segments of one direction of a TCP
//! connection into an ordered byte stream, delivered through a callback as
//! [`StreamEvent`]s: `Data` for bytes in stream order, `Gap` for bytes that
//! were never seen (lost, or given up on because of a memory cap).
//!
//! # Semantics
//!
//! * **Start.** The first segment sets the initial sequence number: with SYN,
//!   stream offset 0 is `seq + 1`; without SYN (capture started mid-stream),
//!   offset 0 is the first segment's `seq`. Bytes before offset 0 seen later
//!   are counted as retransmitted and dropped.
//! * **Offsets.** Sequence numbers wrap modulo 2^32; each segment is placed
//!   by its signed 32-bit distance from the next expected byte, and the
//!   stream offset is kept as a `u64` so it never wraps.
//! * **In order data** is handed to the callback straight from the caller's
//!   slice (zero copy); it is never buffered.
//! * **Retransmissions** of bytes already delivered are dropped and counted in
//!   [`StreamStats::retransmitted_bytes`] (delivered bytes are not kept, so a
//!   retransmission with different content cannot be told apart).
//! * **Out of order segments** are copied into a buffer ordered by offset.
//!   Overlaps among buffered bytes, or between buffered bytes and a new
//!   segment, are resolved **first received wins**; overlapping bytes are
//!   counted in [`StreamStats::overlap_bytes`] and the differing ones in
//!   [`StreamStats::conflicting_overlap_bytes`].
//! * **Memory.** Buffered bytes are charged with a fixed overhead of
//!   [`SEGMENT_OVERHEAD`] bytes per buffered piece, against both
//!   [`StreamConfig::max_buffered_per_direction`] and the [`StreamBudget`]
//!   shared by all streams of a worker. When a segment does not fit, the
//!   stream skips forward to the lowest buffered offset (or to the segment
//!   itself when nothing is buffered before it), reports the hole as a `Gap`
//!   and delivers what became contiguous; the skip is counted in
//!   [`StreamStats::dropped_over_cap`]. Memory is thus strictly bounded.
//! * **Window.** Segments more than [`StreamConfig::max_window_ahead`] bytes
//!   ahead of the next expected byte are counted in
//!   [`StreamStats::out_of_window_segments`] and dropped.
//! * **FIN** marks the end offset; the direction is closed once every byte
//!   before it was delivered (or at [`TcpStreamDirection::flush`], after
//!   reporting the missing bytes as a gap). Data past the FIN is dropped and
//!   counted in [`StreamStats::data_after_close_bytes`].
//! * **RST** flushes the buffer (holes become gaps) and closes the direction;
//!   data carried by the RST segment itself is not stream data and is
//!   ignored.
//!
//! A direction holding buffered bytes must be given back its budget with
//! [`TcpStreamDirection::flush`] or [`TcpStreamDirection::discard`] before it
//! is dropped.

use std::collections::BTreeMap;

/// Accounting overhead charged per buffered piece, in bytes (map node and
/// vector header), so that many tiny segments cannot exceed the caps.
pub const SEGMENT_OVERHEAD: usize = 64;

/// Configuration of TCP reassembly.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Out-of-order bytes held per direction (plus [`SEGMENT_OVERHEAD`] per
    /// piece); over it, skip forward and report a gap. Default 1 MiB.
    pub max_buffered_per_direction: usize,
    /// Bytes held by all the streams of the run (all workers; also bounded
    /// by the `[memory] tcp_reassembly` share), enforced through each
    /// worker's [`StreamBudget`]. Default 256 MiB.
    pub max_buffered_total: usize,
    /// Segments starting more than this many bytes after the next expected
    /// byte are dropped as out of window. Default 1 GiB; at most 2^31 - 1.
    pub max_window_ahead: u32,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            max_buffered_per_direction: 1 << 20,
            max_buffered_total: 256 << 20,
            max_window_ahead: 1 << 30,
        }
    }
}

/// Byte budget shared by all the streams of one worker, drawing on the
/// run's pool of out-of-order bytes ([`crate::memory`]) when it has a
/// lease.
#[derive(Clone, Debug)]
pub struct StreamBudget {
    max: usize,
    used: usize,
    lease: crate::memory::Lease,
}

impl StreamBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Self {
        StreamBudget {
            max,
            used: 0,
            lease: crate::memory::Lease::unlimited(),
        }
    }

    /// A budget of at most `max` bytes of this worker, and of what `lease`
    /// (a pool of the whole run, shared with the other workers) covers.
    pub fn with_lease(max: usize, lease: crate::memory::Lease) -> Self {
        StreamBudget {
            max,
            used: 0,
            lease,
        }
    }

    /// A budget of [`StreamConfig::max_buffered_total`] bytes.
    pub fn from_config(cfg: &StreamConfig) -> Self {
        Self::new(cfg.max_buffered_total)
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes still available.
    pub fn available(&self) -> usize {
        self.max.saturating_sub(self.used)
    }

    /// Charges `n` bytes if they fit; returns whether they were charged.
    pub fn try_take(&mut self, n: usize) -> bool {
        match self.used.checked_add(n) {
            Some(u) if u <= self.max && self.lease.cover(u as u64) => {
                self.used = u;
                true
            }
            _ => false,
        }
    }

    /// Gives back `n` bytes.
    pub fn release(&mut self, n: usize) {
        self.used = self.used.saturating_sub(n);
        self.lease.cover(self.used as u64);
    }
}

/// What a direction delivers, in stream order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// Bytes of the stream.
    Data {
        /// The bytes (borrowed from the caller's segment when it was in
        /// order).
        data: &'a [u8],
        /// Stream offset of `data[0]` (0 is the byte after the SYN).
        offset: u64,
    },
    /// Bytes that will never be delivered.
    Gap {
        /// Stream offset of the first missing byte.
        offset: u64,
        /// Number of missing bytes.
        len: u64,
    },
}

/// Counters of one direction.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamStats {
    /// Segments seen.
    pub segments: u64,
    /// Bytes delivered as `Data`.
    pub bytes_delivered: u64,
    /// Bytes received again after being delivered (or before the start).
    pub retransmitted_bytes: u64,
    /// Bytes received again while buffered (first received wins).
    pub overlap_bytes: u64,
    /// Overlapping bytes whose value differed.
    pub conflicting_overlap_bytes: u64,
    /// Segments that arrived ahead of the next expected byte.
    pub out_of_order_segments: u64,
    /// Gaps reported.
    pub gaps: u64,
    /// Bytes reported as gaps.
    pub gap_bytes: u64,
    /// Times a cap (per direction or global) forced a skip forward.
    pub dropped_over_cap: u64,
    /// Segments dropped as too far ahead.
    pub out_of_window_segments: u64,
    /// Bytes ignored as not stream data: past the FIN, carried by an RST, or
    /// received after an RST.
    pub data_after_close_bytes: u64,
    /// Payload bytes of segments not reassembled because no plugin listens
    /// to the direction any more (each said
    /// [`PacketContext::stream_done`](crate::plugin::PacketContext::stream_done)):
    /// not a loss, nothing asked for them.
    pub unwanted_bytes: u64,
}

impl StreamStats {
    /// Adds `other` (another direction or worker) to these counters.
    pub fn add(&mut self, other: &StreamStats) {
        let StreamStats {
            segments,
            bytes_delivered,
            retransmitted_bytes,
            overlap_bytes,
            conflicting_overlap_bytes,
            out_of_order_segments,
            gaps,
            gap_bytes,
            dropped_over_cap,
            out_of_window_segments,
            data_after_close_bytes,
            unwanted_bytes,
        } = other;
        for (a, b) in [
            (&mut self.segments, segments),
            (&mut self.bytes_delivered, bytes_delivered),
            (&mut self.retransmitted_bytes, retransmitted_bytes),
            (&mut self.overlap_bytes, overlap_bytes),
            (
                &mut self.conflicting_overlap_bytes,
                conflicting_overlap_bytes,
            ),
            (&mut self.out_of_order_segments, out_of_order_segments),
            (&mut self.gaps, gaps),
            (&mut self.gap_bytes, gap_bytes),
            (&mut self.dropped_over_cap, dropped_over_cap),
            (&mut self.out_of_window_segments, out_of_window_segments),
            (&mut self.data_after_close_bytes, data_after_close_bytes),
            (&mut self.unwanted_bytes, unwanted_bytes),
        ] {
            *a = a.saturating_add(*b);
        }
    }

    /// The counters by name, for the run summary: the skips forced by a
    /// memory cap (`dropped_over_cap`) and the segments dropped as out of
    /// window (`out_of_window_segments`) are losses, the rest counts.
    pub fn counters(&self) -> crate::plugin::Counters {
        crate::plugin::Counters::new()
            .count("segments", self.segments)
            .count("bytes_delivered", self.bytes_delivered)
            .count("out_of_order_segments", self.out_of_order_segments)
            .count("retransmitted_bytes", self.retransmitted_bytes)
            .count("overlap_bytes", self.overlap_bytes)
            .count("conflicting_overlap_bytes", self.conflicting_overlap_bytes)
            .count("gaps", self.gaps)
            .count("gap_bytes", self.gap_bytes)
            .count("data_after_close_bytes", self.data_after_close_bytes)
            .count("unwanted_bytes", self.unwanted_bytes)
            .loss("dropped_over_cap", self.dropped_over_cap)
            .loss("out_of_window_segments", self.out_of_window_segments)
    }
}

/// Reassembly state of one direction of a TCP connection (see the
/// [module doc](self)).
#[derive(Debug, Default)]
pub struct TcpStreamDirection {
    /// Sequence number of stream offset 0, once known.
    base: Option<u32>,
    /// Next stream offset to deliver.
    next: u64,
    /// Out-of-order pieces, non-overlapping, by stream offset.
    buf: BTreeMap<u64, Vec<u8>>,
    /// Payload bytes in `buf`.
    buffered: usize,
    /// Bytes charged to the budget (payload plus overhead).
    charged: usize,
    /// Stream offset of the FIN.
    fin: Option<u64>,
    closed: bool,
    /// An RST was seen: everything after it is ignored.
    reset: bool,
    stats: StreamStats,
}

fn count_diff(a: &[u8], b: &[u8]) -> u64 {
    a.iter().zip(b).filter(|(x, y)| x != y).count() as u64
}

fn emit(
    stats: &mut StreamStats,
    next: &mut u64,
    data: &[u8],
    sink: &mut dyn FnMut(StreamEvent<'_>),
) {
    if data.is_empty() {
        return;
    }
    sink(StreamEvent::Data {
        data,
        offset: *next,
    });
    *next = next.saturating_add(data.len() as u64);
    stats.bytes_delivered = stats.bytes_delivered.saturating_add(data.len() as u64);
}

/// `data[from..]`, empty when out of range.
fn tail(data: &[u8], from: u64) -> &[u8] {
    usize::try_from(from)
        .ok()
        .and_then(|f| data.get(f..))
        .unwrap_or(&[])
}

impl TcpStreamDirection {
    /// A direction that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A direction whose data starts at sequence number `start`: what its
    /// first segment, carrying nothing, set (a SYN at `start - 1`, or a
    /// bare segment at `start`), the segment itself counted elsewhere.
    pub fn start_at(&mut self, start: u32) {
        self.base = Some(start);
    }

    /// One segment of this direction. `seq` is the raw sequence number;
    /// `syn`/`fin`/`rst` the flags; `data` the TCP payload (may be empty).
    ///
    /// Delivers in-order data (and gaps) through `sink`, possibly several
    /// events per call (buffered data that becomes contiguous).
    #[allow(clippy::too_many_arguments)] // the API fixed with the engine
    pub fn segment(
        &mut self,
        seq: u32,
        syn: bool,
        fin: bool,
        rst: bool,
        data: &[u8],
        cfg: &StreamConfig,
        budget: &mut StreamBudget,
        sink: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        self.stats.segments = self.stats.segments.saturating_add(1);
        if self.reset {
            self.stats.data_after_close_bytes = self
                .stats
                .data_after_close_bytes
                .saturating_add(data.len() as u64);
            return;
        }
        let data_seq = if syn { seq.wrapping_add(1) } else { seq };
        let base = *self.base.get_or_insert(data_seq);
        if rst {
            self.stats.data_after_close_bytes = self
                .stats
                .data_after_close_bytes
                .saturating_add(data.len() as u64);
            self.flush(budget, sink);
            self.closed = true;
            self.reset = true;
            return;
        }

        // Place the segment relative to the next expected byte.
        let next_seq = base.wrapping_add(self.next as u32);
        let diff = i64::from(data_seq.wrapping_sub(next_seq) as i32);
        let ahead = i64::from(cfg.max_window_ahead.min(i32::MAX as u32));
        if diff > ahead {
            self.stats.out_of_window_segments = self.stats.out_of_window_segments.saturating_add(1);
            return;
        }
        let mut data = data;
        let raw_start = (self.next as i64).saturating_add(diff);
        let mut start = if raw_start < 0 {
            // Bytes before the stream start.
            let cut = raw_start.unsigned_abs().min(data.len() as u64);
            self.stats.retransmitted_bytes = self.stats.retransmitted_bytes.saturating_add(cut);
            data = tail(data, cut);
            0u64
        } else {
            raw_start as u64
        };
        let end = start.saturating_add(data.len() as u64);
        if fin && self.fin.is_none() && raw_start >= 0 {
            self.fin = Some(end);
            self.trim_after(end, budget);
        }
        if let Some(f) = self.fin
            && end > f
        {
            let keep = f.saturating_sub(start);
            let dropped = (data.len() as u64).saturating_sub(keep);
            self.stats.data_after_close_bytes =
                self.stats.data_after_close_bytes.saturating_add(dropped);
            data = usize::try_from(keep)
                .ok()
                .and_then(|k| data.get(..k))
                .unwrap_or(&[]);
        }
        if start < self.next && !data.is_empty() {
            let cut = (self.next - start).min(data.len() as u64);
            self.stats.retransmitted_bytes = self.stats.retransmitted_bytes.saturating_add(cut);
            data = tail(data, cut);
            start = start.saturating_add(cut);
        }
        if !data.is_empty() {
            if start == self.next {
                self.deliver_from(start, data, budget, sink);
            } else {
                self.out_of_order(start, data, cfg, budget, sink);
            }
        }
        self.check_fin();
    }

    /// Drops buffered bytes at or after `f` (data past the FIN).
    fn trim_after(&mut self, f: u64, budget: &mut StreamBudget) {
        let mut dropped = 0u64;
        let after = self.buf.split_off(&f);
        for piece in after.into_values() {
            dropped = dropped.saturating_add(piece.len() as u64);
            self.release(piece.len(), budget);
        }
        if let Some(mut last) = self.buf.last_entry() {
            let keep = usize::try_from(f.saturating_sub(*last.key())).unwrap_or(usize::MAX);
            let piece = last.get_mut();
            if keep < piece.len() {
                let cut = piece.len() - keep;
                piece.truncate(keep);
                dropped = dropped.saturating_add(cut as u64);
                self.buffered = self.buffered.saturating_sub(cut);
                self.charged = self.charged.saturating_sub(cut);
                budget.release(cut);
            }
        }
        self.stats.data_after_close_bytes =
            self.stats.data_after_close_bytes.saturating_add(dropped);
    }

    fn check_fin(&mut self) {
        if let Some(f) = self.fin
            && self.next >= f
        {
            self.closed = true;
        }
    }

    fn release(&mut self, len: usize, budget: &mut StreamBudget) {
        let cost = len.saturating_add(SEGMENT_OVERHEAD);
        self.buffered = self.buffered.saturating_sub(len);
        self.charged = self.charged.saturating_sub(cost);
        budget.release(cost);
    }

    fn gap_to(&mut self, offset: u64, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        if offset > self.next {
            let len = offset - self.next;
            sink(StreamEvent::Gap {
                offset: self.next,
                len,
            });
            self.stats.gaps = self.stats.gaps.saturating_add(1);
            self.stats.gap_bytes = self.stats.gap_bytes.saturating_add(len);
            self.next = offset;
        }
    }

    /// Delivers `data` (stream offset `seg_start <= next`) merged with the
    /// buffered pieces (first received wins), then whatever buffered data
    /// became contiguous.
    fn deliver_from(
        &mut self,
        seg_start: u64,
        data: &[u8],
        budget: &mut StreamBudget,
        sink: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        loop {
            let rem = tail(data, self.next.saturating_sub(seg_start));
            let first = self.buf.first_key_value().map(|(k, _)| *k);
            match first {
                Some(off) if off <= self.next => {
                    let Some((off, piece)) = self.buf.pop_first() else {
                        break;
                    };
                    self.release(piece.len(), budget);
                    let part = tail(&piece, self.next - off);
                    let ov = part.len().min(rem.len());
                    if ov > 0 {
                        let (a, b) = (part.get(..ov).unwrap_or(&[]), rem.get(..ov).unwrap_or(&[]));
                        self.stats.overlap_bytes =
                            self.stats.overlap_bytes.saturating_add(ov as u64);
                        self.stats.conflicting_overlap_bytes = self
                            .stats
                            .conflicting_overlap_bytes
                            .saturating_add(count_diff(a, b));
                    }
                    emit(&mut self.stats, &mut self.next, part, sink);
                }
                _ => {
                    if rem.is_empty() {
                        break;
                    }
                    let lim = match first {
                        Some(off) => usize::try_from(off - self.next)
                            .unwrap_or(usize::MAX)
                            .min(rem.len()),
                        None => rem.len(),
                    };
                    let out = rem.get(..lim).unwrap_or(&[]);
                    emit(&mut self.stats, &mut self.next, out, sink);
                }
            }
        }
    }

    /// Pieces of `start..start+len` not already buffered, and the overlap.
    fn uncovered(&self, start: u64, data: &[u8]) -> (Vec<(u64, u64)>, u64, u64) {
        let end = start.saturating_add(data.len() as u64);
        let mut pieces = Vec::new();
        let mut overlap = 0u64;
        let mut conflicting = 0u64;
        let mut cursor = start;
        // The piece starting before `start` that may cover it.
        let before = self.buf.range(..start).next_back();
        let after = self.buf.range(start..end);
        for (&ps, buf) in before.into_iter().chain(after) {
            let pe = ps.saturating_add(buf.len() as u64);
            if pe <= start {
                continue;
            }
            if ps > cursor {
                pieces.push((cursor, ps.min(end)));
            }
            let os = ps.max(start);
            let oe = pe.min(end);
            if oe > os {
                overlap = overlap.saturating_add(oe - os);
                let a = tail(buf, os - ps);
                let b = tail(data, os - start);
                let n = usize::try_from(oe - os).unwrap_or(usize::MAX);
                conflicting = conflicting.saturating_add(count_diff(
                    a.get(..n).unwrap_or(&[]),
                    b.get(..n).unwrap_or(&[]),
                ));
            }
            cursor = cursor.max(pe);
        }
        if cursor < end {
            pieces.push((cursor, end));
        }
        (pieces, overlap, conflicting)
    }

    fn out_of_order(
        &mut self,
        mut start: u64,
        mut data: &[u8],
        cfg: &StreamConfig,
        budget: &mut StreamBudget,
        sink: &mut dyn FnMut(StreamEvent<'_>),
    ) {
        self.stats.out_of_order_segments = self.stats.out_of_order_segments.saturating_add(1);
        let mut skipped = false;
        loop {
            if data.is_empty() {
                return;
            }
            if start <= self.next {
                // A skip made it contiguous: bytes before `next` were just
                // delivered from the buffer.
                let cut = (self.next - start).min(data.len() as u64);
                self.stats.overlap_bytes = self.stats.overlap_bytes.saturating_add(cut);
                data = tail(data, cut);
                start = self.next;
                self.deliver_from(start, data, budget, sink);
                return;
            }
            let (pieces, overlap, conflicting) = self.uncovered(start, data);
            let cost = pieces.iter().fold(0usize, |acc, (s, e)| {
                acc.saturating_add(usize::try_from(e - s).unwrap_or(usize::MAX))
                    .saturating_add(SEGMENT_OVERHEAD)
            });
            let fits = self.charged.saturating_add(cost) <= cfg.max_buffered_per_direction
                && budget.try_take(cost);
            if fits {
                self.stats.overlap_bytes = self.stats.overlap_bytes.saturating_add(overlap);
                self.stats.conflicting_overlap_bytes = self
                    .stats
                    .conflicting_overlap_bytes
                    .saturating_add(conflicting);
                for (s, e) in pieces {
                    let part = tail(data, s - start);
                    let n = usize::try_from(e - s).unwrap_or(usize::MAX);
                    let part = part.get(..n).unwrap_or(&[]);
                    self.buffered = self.buffered.saturating_add(part.len());
                    self.charged = self
                        .charged
                        .saturating_add(part.len().saturating_add(SEGMENT_OVERHEAD));
                    self.buf.insert(s, part.to_vec());
                }
                return;
            }
            if !skipped {
                self.stats.dropped_over_cap = self.stats.dropped_over_cap.saturating_add(1);
                skipped = true;
            }
            // Over a cap: skip forward to the lowest buffered piece, or to
            // this segment when nothing is buffered before it.
            let target = match self.buf.first_key_value() {
                Some((&off, _)) if off < start => off,
                _ => start,
            };
            self.gap_to(target, sink);
            self.deliver_from(self.next, &[], budget, sink);
        }
    }

    /// Drops what the direction holds out of order, undelivered (counted as
    /// `unwanted_bytes`), and gives its bytes back to `budget`: no one wants
    /// the rest of the stream.
    pub fn abandon(&mut self, budget: &mut StreamBudget) {
        while let Some((_, piece)) = self.buf.pop_first() {
            self.stats.unwanted_bytes =
                self.stats.unwanted_bytes.saturating_add(piece.len() as u64);
            self.release(piece.len(), budget);
        }
    }

    /// Counts a segment of `len` payload bytes that is not reassembled
    /// because no one wants the rest of the stream (after
    /// [`TcpStreamDirection::abandon`]).
    pub fn pass(&mut self, len: usize) {
        self.stats.segments = self.stats.segments.saturating_add(1);
        self.stats.unwanted_bytes = self.stats.unwanted_bytes.saturating_add(len as u64);
    }

    /// End of the flow: delivers what is buffered, reporting holes (and
    /// missing bytes before a FIN) as gaps, and gives back the budget.
    pub fn flush(&mut self, budget: &mut StreamBudget, sink: &mut dyn FnMut(StreamEvent<'_>)) {
        while let Some((off, piece)) = self.buf.pop_first() {
            self.release(piece.len(), budget);
            self.gap_to(off, sink);
            let part = tail(&piece, self.next.saturating_sub(off));
            emit(&mut self.stats, &mut self.next, part, sink);
        }
        if let Some(f) = self.fin {
            self.gap_to(f, sink);
        }
        self.check_fin();
    }

    /// Drops what is buffered without delivering it and gives back the
    /// budget.
    pub fn discard(&mut self, budget: &mut StreamBudget) {
        budget.release(self.charged);
        self.charged = 0;
        self.buffered = 0;
        self.buf.clear();
    }

    /// The counters.
    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// `true` once the FIN was reached in order, or after an RST.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Payload bytes buffered out of order.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Bytes charged to the budget (payload plus [`SEGMENT_OVERHEAD`] per
    /// piece).
    pub fn charged_bytes(&self) -> usize {
        self.charged
    }

    /// Next stream offset to be delivered.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// Sequence number of stream offset 0, once known.
    pub fn base_seq(&self) -> Option<u32> {
        self.base
    }
}

#[cfg(test)]
mod tests;
