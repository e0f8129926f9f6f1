//! Connection state the way Zeek's `conn.log` reports it: the state of
//! each endpoint, the `history` letters, payload and IP bytes per side,
//! bytes missed in sequence gaps and the services recognised by content.
//!
//! A [`ConnTrack`] lives in every [`crate::Flow`] and is updated once per
//! packet with a [`Segment`] (the facts of its transport header). It
//! holds a fixed amount of memory (about 150 bytes) whatever the traffic.
//!
//! # History letters
//! Upper case for the originator (the flow's client), lower case for the
//! responder, in the order first seen:
//!
//! | letter | meaning | recorded |
//! | --- | --- | --- |
//! | `S` | a SYN without ACK | again when its sequence number differs from the last SYN's |
//! | `H` | a SYN-ACK | as `S` |
//! | `A` | a pure ACK (no payload, no SYN/FIN/RST) | once |
//! | `D` | a packet with payload (TCP, UDP and other transports) | once |
//! | `F` | a FIN | as `S` |
//! | `R` | a RST | as `S` |
//! | `G` | a gap: data beyond the next expected byte | at the 1st, 10th, 100th … |
//! | `T` | a retransmission: data entirely below the next expected byte, not filling a gap | as `G` |
//! | `W` | a zero window advertisement (not on a RST) | as `G` |
//! | `I` | an inconsistent packet: FIN and RST | once |
//! | `Q` | a multi-flag packet: SYN with FIN or RST | once |
//! | `^` | the roles were swapped (a SYN-ACK or SYN showed who the client is): the letters before it are re-cased to the new roles | once |
//!
//! The history keeps at most [`HISTORY_MAX`] letters; later ones are
//! dropped (a repeat-letter flood cannot grow it). Bad checksums (`C`)
//! and Zeek's `x` are not recorded.
//!
//! # Bytes
//! `payload_bytes` of a TCP side is the sequence space its data covered
//! (as Zeek's `orig_bytes`): new bytes beyond the highest seen, plus the
//! bytes of gaps ([`ConnSide::missed`], Zeek's `missed_bytes`), minus gaps
//! filled later (one open gap per side is remembered; an older one counts
//! as missed for good). A jump of more than 1 GiB is a resynchronisation,
//! not a gap. Other transports count their payload. `ip_bytes` sums the
//! IP total length of each packet (Zeek's `orig_ip_bytes`).

/// Letters kept in a history at most.
pub const HISTORY_MAX: usize = 24;

/// TCP flag bits as in the header.
mod flag {
    pub(super) const FIN: u8 = 0x01;
    pub(super) const SYN: u8 = 0x02;
    pub(super) const RST: u8 = 0x04;
    pub(super) const ACK: u8 = 0x10;
}

/// A sequence jump beyond this is a resynchronisation, not a gap.
const MAX_GAP: u32 = 1 << 30;

/// The state of one TCP endpoint (Zeek's `TCP_*` endpoint states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointState {
    /// Nothing sent yet.
    #[default]
    Inactive,
    /// Sent a SYN.
    SynSent,
    /// Sent a SYN-ACK.
    SynAckSent,
    /// Sent data or ACKs without a handshake seen ("midstream").
    Partial,
    /// Handshake completed.
    Established,
    /// Sent a FIN.
    Closed,
    /// Sent a RST.
    Reset,
}

/// Services recognised by content ([`ConnTrack::service`] bits).
pub mod service {
    /// DNS.
    pub const DNS: u8 = 1;
    /// TLS (Zeek's `ssl`).
    pub const SSL: u8 = 2;
    /// HTTP/1.
    pub const HTTP: u8 = 4;
    /// SSH.
    pub const SSH: u8 = 8;
    /// QUIC.
    pub const QUIC: u8 = 16;
    /// Every bit with its name, in output order.
    pub const NAMES: [(u8, &str); 5] = [
        (DNS, "dns"),
        (SSL, "ssl"),
        (HTTP, "http"),
        (SSH, "ssh"),
        (QUIC, "quic"),
    ];
}

/// One side of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnSide {
    /// TCP endpoint state.
    pub state: EndpointState,
    /// Payload bytes (TCP: sequence space covered, gaps included).
    pub payload_bytes: u64,
    /// Sum of the IP total lengths.
    pub ip_bytes: u64,
    /// Bytes of sequence gaps never filled.
    pub missed: u64,
    /// Next expected sequence number (highest data end seen).
    next_seq: u32,
    /// Start and length of the open gap still unfilled.
    hole: (u32, u32),
    /// Sequence numbers of the last SYN, SYN-ACK, FIN, RST.
    last_flag_seq: [u32; 4],
    /// Counts of gaps, retransmissions, zero windows (for the logarithmic
    /// letters).
    counts: [u32; 3],
    /// Bits: sequence base known; flags seen (SYN, SYN-ACK, FIN, RST).
    seen: u8,
    /// Payload packets probed for a service.
    pub(crate) probes: u8,
}

const SEQ_KNOWN: u8 = 1;

/// The facts of one packet that [`ConnTrack::update`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Segment {
    /// TCP flags (0 for other transports).
    pub flags: u8,
    /// TCP sequence number.
    pub seq: u32,
    /// TCP window is zero.
    pub zero_window: bool,
    /// `true` for TCP.
    pub tcp: bool,
    /// Transport payload length (as the header says, even when the capture
    /// holds less).
    pub payload_len: u32,
    /// IP total length.
    pub ip_bytes: u64,
}

/// Zeek-style connection state of a flow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnTrack {
    /// The originator's side.
    pub orig: ConnSide,
    /// The responder's side.
    pub resp: ConnSide,
    /// Services recognised by content ([`service`] bits).
    pub service: u8,
    /// ICMP type and code of the flow's first message (ICMP flows).
    pub icmp_type_code: Option<(u8, u8)>,
    history: [u8; HISTORY_MAX],
    history_len: u8,
    /// History letters recorded once, as bits (`A D I Q ^`, by side).
    once: u16,
}

impl ConnTrack {
    /// The history letters.
    pub fn history(&self) -> &str {
        let n = usize::from(self.history_len).min(HISTORY_MAX);
        // only ASCII letters are ever stored
        std::str::from_utf8(self.history.get(..n).unwrap_or(&[])).unwrap_or("")
    }

    fn push(&mut self, orig: bool, upper: u8) {
        let l = if orig {
            upper
        } else {
            upper.to_ascii_lowercase()
        };
        if let Some(slot) = self.history.get_mut(usize::from(self.history_len)) {
            *slot = l;
            self.history_len += 1;
        }
    }

    fn once(&mut self, orig: bool, upper: u8, bit: u16) {
        let bit = if orig { bit } else { bit << 8 };
        if self.once & bit == 0 {
            self.once |= bit;
            self.push(orig, upper);
        }
    }

    /// The roles were swapped: sides exchanged, letters re-cased, `^`
    /// recorded (once).
    pub fn flip(&mut self) {
        std::mem::swap(&mut self.orig, &mut self.resp);
        let n = usize::from(self.history_len).min(HISTORY_MAX);
        for l in self.history.iter_mut().take(n) {
            if l.is_ascii_uppercase() {
                *l = l.to_ascii_lowercase();
            } else if l.is_ascii_lowercase() {
                *l = l.to_ascii_uppercase();
            }
        }
        self.once = self.once.rotate_left(8);
        if self.once & 0x80 == 0 {
            self.once |= 0x80 | 0x8000;
            self.push(true, b'^');
        }
    }

    /// Counts one packet from the originator (`orig`) or the responder.
    pub fn update(&mut self, orig: bool, s: &Segment) {
        // The first packet came from the responder: Zeek would have made
        // its sender the originator and then flipped the roles.
        if !orig && self.once & 0x80 == 0 && self.orig.ip_bytes == 0 && self.resp.ip_bytes == 0 {
            self.once |= 0x80 | 0x8000;
            self.push(true, b'^');
        }
        let side = if orig { &mut self.orig } else { &mut self.resp };
        side.ip_bytes = side.ip_bytes.saturating_add(s.ip_bytes);
        if !s.tcp {
            side.payload_bytes = side.payload_bytes.saturating_add(u64::from(s.payload_len));
            if side.state == EndpointState::Inactive {
                side.state = EndpointState::Partial;
            }
            if s.payload_len > 0 {
                self.once(orig, b'D', 2);
            }
            return;
        }
        let f = s.flags;
        let (syn, ack, fin, rst) = (
            f & flag::SYN != 0,
            f & flag::ACK != 0,
            f & flag::FIN != 0,
            f & flag::RST != 0,
        );
        // letters
        let flag_letter = |t: &mut Self, idx: usize, upper: u8| {
            let side = if orig { &mut t.orig } else { &mut t.resp };
            let bit = 2u8 << idx;
            if side.seen & bit == 0 || side.last_flag_seq[idx] != s.seq {
                side.seen |= bit;
                side.last_flag_seq[idx] = s.seq;
                t.push(orig, upper);
            }
        };
        if syn && (fin || rst) {
            self.once(orig, b'Q', 8);
        } else if fin && rst {
            self.once(orig, b'I', 4);
        } else {
            if syn && !ack {
                flag_letter(self, 0, b'S');
            }
            if syn && ack {
                flag_letter(self, 1, b'H');
            }
            if fin {
                flag_letter(self, 2, b'F');
            }
            if rst {
                flag_letter(self, 3, b'R');
            }
            if s.payload_len > 0 {
                self.once(orig, b'D', 2);
            } else if ack && !syn && !fin && !rst {
                self.once(orig, b'A', 1);
            }
        }
        if s.zero_window && !rst {
            self.log_letter(orig, 2, b'W');
        }
        self.sequence(orig, s, syn);
        // endpoint states (Zeek's TCP analyzer, simplified)
        let (side, peer) = if orig {
            (&mut self.orig, &mut self.resp)
        } else {
            (&mut self.resp, &mut self.orig)
        };
        if rst {
            side.state = EndpointState::Reset;
        } else if fin {
            if side.state != EndpointState::Reset {
                side.state = EndpointState::Closed;
            }
        } else if syn {
            if side.state == EndpointState::Inactive {
                side.state = if ack {
                    EndpointState::SynAckSent
                } else {
                    EndpointState::SynSent
                };
            }
        } else {
            match side.state {
                EndpointState::Inactive => side.state = EndpointState::Partial,
                EndpointState::SynSent | EndpointState::SynAckSent
                    if peer.state != EndpointState::Inactive =>
                {
                    side.state = EndpointState::Established;
                    if matches!(
                        peer.state,
                        EndpointState::SynSent | EndpointState::SynAckSent
                    ) {
                        peer.state = EndpointState::Established;
                    }
                }
                _ => {}
            }
        }
    }

    /// Gap, retransmission and byte accounting of a TCP segment.
    fn sequence(&mut self, orig: bool, s: &Segment, syn: bool) {
        let side = if orig { &mut self.orig } else { &mut self.resp };
        // SYN and FIN take one sequence number each, no payload byte
        let data_start = s.seq.wrapping_add(u32::from(syn));
        let end = data_start.wrapping_add(s.payload_len);
        if side.seen & SEQ_KNOWN == 0 {
            if !syn && s.payload_len == 0 {
                return; // a bare ACK or FIN says nothing about data yet
            }
            side.seen |= SEQ_KNOWN;
            side.next_seq = data_start;
        }
        if s.payload_len == 0 {
            return;
        }
        let ahead = data_start.wrapping_sub(side.next_seq);
        if ahead == 0 || (ahead as i32) > 0 {
            if ahead >= MAX_GAP {
                // a jump too far: a new sequence base, not a gap
                side.next_seq = end;
                side.payload_bytes = side.payload_bytes.saturating_add(u64::from(s.payload_len));
                return;
            }
            if ahead > 0 {
                // a gap opens: an older open gap is missed for good
                side.missed = side.missed.saturating_add(u64::from(side.hole.1));
                side.hole = (side.next_seq, ahead);
                side.counts[0] = side.counts[0].saturating_add(1);
            }
            side.payload_bytes = side
                .payload_bytes
                .saturating_add(u64::from(ahead) + u64::from(s.payload_len));
            side.next_seq = end;
            if ahead > 0 {
                self.log_letter_at(orig, 0, b'G');
            }
            return;
        }
        // data starting below the next expected byte
        let over = end.wrapping_sub(side.next_seq);
        if over != 0 && (over as i32) > 0 && over < MAX_GAP {
            // part new: extends the stream
            side.payload_bytes = side.payload_bytes.saturating_add(u64::from(over));
            side.next_seq = end;
        }
        let (hs, hl) = side.hole;
        let he = hs.wrapping_add(hl);
        // overlap of [data_start, end) with the open gap [hs, he)
        let lo = if data_start.wrapping_sub(hs) < hl {
            data_start
        } else {
            hs
        };
        let hi = if he.wrapping_sub(end) < hl { end } else { he };
        let filled = if hl > 0 && hi.wrapping_sub(lo) <= hl && lo != hi {
            hi.wrapping_sub(lo)
        } else {
            0
        };
        if filled > 0 {
            side.hole.1 = hl.saturating_sub(filled);
        } else if over == 0 || (over as i32) < 0 {
            side.counts[1] = side.counts[1].saturating_add(1);
            self.log_letter_at(orig, 1, b'T');
        }
    }

    fn log_letter(&mut self, orig: bool, idx: usize, upper: u8) {
        let side = if orig { &mut self.orig } else { &mut self.resp };
        if let Some(c) = side.counts.get_mut(idx) {
            *c = c.saturating_add(1);
        }
        self.log_letter_at(orig, idx, upper);
    }

    /// Records `upper` when the count of `idx` has just reached 1, 10, 100 …
    fn log_letter_at(&mut self, orig: bool, idx: usize, upper: u8) {
        let side = if orig { &self.orig } else { &self.resp };
        let n = side.counts.get(idx).copied().unwrap_or(0);
        let mut p = 1u32;
        while p < n {
            p = p.saturating_mul(10);
        }
        if p == n {
            self.push(orig, upper);
        }
    }

    /// The flow ended: open gaps count as missed.
    pub fn finish(&mut self) {
        for side in [&mut self.orig, &mut self.resp] {
            side.missed = side.missed.saturating_add(u64::from(side.hole.1));
            side.hole = (0, 0);
        }
    }

    /// `true` while fewer than `n` payload packets of this side were
    /// probed for a service; counts this one.
    pub fn probe(&mut self, orig: bool, n: u8) -> bool {
        let side = if orig { &mut self.orig } else { &mut self.resp };
        if side.probes >= n {
            return false;
        }
        side.probes += 1;
        true
    }

    /// Names of the services recognised, comma-separated (`None` when none).
    pub fn service_names(&self) -> Option<String> {
        self.service_text().map(std::borrow::Cow::into_owned)
    }

    /// As [`ConnTrack::service_names`], without allocating for a single
    /// service (the usual case).
    pub fn service_text(&self) -> Option<std::borrow::Cow<'static, str>> {
        if self.service == 0 {
            return None;
        }
        let mut names = service::NAMES
            .iter()
            .filter(|(b, _)| self.service & b != 0)
            .map(|(_, n)| *n);
        let first = names.next()?;
        Some(match names.next() {
            None => std::borrow::Cow::Borrowed(first),
            Some(second) => {
                let mut all = format!("{first},{second}");
                for n in names {
                    all.push(',');
                    all.push_str(n);
                }
                std::borrow::Cow::Owned(all)
            }
        })
    }

    /// Zeek's `conn_state` for a flow of IP protocol `proto`.
    pub fn conn_state(&self, proto: u8) -> &'static str {
        use EndpointState as E;
        let (os, rs) = (self.orig.state, self.resp.state);
        let o_inactive = matches!(os, E::Inactive | E::Partial);
        let r_inactive = matches!(rs, E::Inactive | E::Partial);
        match proto {
            6 => {
                if rs == E::Reset {
                    if matches!(os, E::SynSent | E::SynAckSent)
                        || (os == E::Reset
                            && self.orig.payload_bytes == 0
                            && self.resp.payload_bytes == 0)
                    {
                        "REJ"
                    } else if o_inactive {
                        "RSTRH"
                    } else {
                        "RSTR"
                    }
                } else if os == E::Reset {
                    if r_inactive {
                        if self.syn_then_rst() { "RSTOS0" } else { "OTH" }
                    } else {
                        "RSTO"
                    }
                } else if rs == E::Closed && os == E::Closed {
                    "SF"
                } else if os == E::Closed {
                    if r_inactive { "SH" } else { "S2" }
                } else if rs == E::Closed {
                    if o_inactive { "SHR" } else { "S3" }
                } else if os == E::SynSent && rs == E::Inactive {
                    "S0"
                } else if os == E::Established && rs == E::Established {
                    "S1"
                } else {
                    "OTH"
                }
            }
            17 => match (os != E::Inactive, rs != E::Inactive) {
                (true, true) => "SF",
                (true, false) => "S0",
                (false, true) => "SHR",
                (false, false) => "OTH",
            },
            _ => "OTH",
        }
    }

    /// The history matches `^?S[^HAFGIQ]*R`: the originator sent a SYN
    /// then a RST with nothing from it in between.
    fn syn_then_rst(&self) -> bool {
        let h = self.history().as_bytes();
        let h = h.strip_prefix(b"^").unwrap_or(h);
        let Some(rest) = h.strip_prefix(b"S") else {
            return false;
        };
        for &c in rest {
            match c {
                b'R' => return true,
                b'H' | b'A' | b'F' | b'G' | b'I' | b'Q' => return false,
                _ => {}
            }
        }
        false
    }
}

#[cfg(test)]
mod tests;
