//! `tls`: one record per TLS hello.
//!
//! Each direction of every TCP connection is reassembled and parsed as TLS
//! records while hellos may still come: every ClientHello of the client,
//! every ServerHello and HelloRetryRequest of the server is written as a
//! `tls` record ([`crate::output::schema::TLS`]): flow id, endpoints (the
//! originator as source), the hello's type and index on its side, record,
//! legacy and negotiated versions, SNI, ALPN, supported versions, cipher
//! suites with their IANA names (`cipher_name` for the one a ServerHello
//! chose), compression, extensions with their names, groups, point formats,
//! signature algorithms, JA3/JA3S and JA4/JA4S with their raw forms.
//!
//! A side stops being parsed when no more hellos can come from it: the
//! server after a ServerHello (not after a HelloRetryRequest), either side
//! at application data, at a ChangeCipherSpec before TLS 1.3 (encryption
//! starts), at a gap, or when the bytes are not TLS. In TLS 1.3 the
//! ChangeCipherSpec is only for middlebox compatibility (RFC 8446 §5): once
//! the server chose TLS 1.3 (in a HelloRetryRequest or ServerHello), it
//! does not stop the search, so the second ClientHello after a
//! HelloRetryRequest and the ServerHello after it are written too.
//!
//! Each direction has its own [`TlsStreamParser`], fed every segment once:
//! a record or handshake message cut across segments or records is kept
//! until complete, so the work per direction is linear in the bytes seen.
//! Hellos count once the group of records carrying them ends with no
//! handshake message in progress (see [`TlsSink`]), or when the connection
//! ends (a ServerHello whose Certificate is cut by the end of the capture
//! still counts); records go to the record spool at once.
//!
//! QUIC (version 1, version 2, draft-23 to draft-34, and greased versions
//! whose packets use one of those keys): the Initial packets of a UDP flow
//! that starts with a client's Initial in a datagram of at least 1200 bytes
//! (RFC 9000 §14.1) are opened with the Initial keys derived from the
//! client's Destination Connection ID ([`crate::proto::quic`]; a Retry
//! moves them to its connection id), their CRYPTO frames put back in order
//! per side (at most 32 KiB each, and within `max_total_buffer`, beyond
//! counted as the loss `quic_crypto_dropped`) and parsed as handshake messages: the same
//! records, with `transport` `quic`, the QUIC version and connection ids,
//! `record_version` 0 and JA4/JA4S with the protocol letter `q`.
//! A flow whose first such datagram does not open is remembered (at most
//! 65536 flows) and not tried again, so a flood pays the key trials once per
//! flow (`quic_key_trials` counts them); a Version Negotiation packet
//! answering the client (its connection ids swapped, RFC 9000 §17.2.1) is
//! counted (`quic_version_negotiation`) and lets the client's next Initial
//! be tried. Long headers that do not parse are counted: `quic_truncated`
//! when the capture cut the datagram (fewer bytes than its UDP length),
//! `quic_malformed` otherwise; Initial packets that do not decrypt are
//! `quic_not_opened`.
//!
//! A direction that does not start with a TLS record may start with a
//! plaintext exchange: SOCKS4/4a, SOCKS5, HTTP `CONNECT`, STARTTLS on SMTP,
//! IMAP, POP3 or FTP, or another line-based upgrade
//! ([`crate::proto::preamble`]). It is skipped and TLS is read from the first
//! byte of the application data after it, in each direction (counted as
//! `after_preamble`); a direction whose exchange goes on past `max_preamble`
//! bytes is given up (counted as `preamble_over_limit`: most are plain
//! text protocols, not lost TLS).
//!
//! Config `[plugin.tls]`: `max_buffer` (bytes per direction since the last
//! group end, plus the new segment, while looking for a hello; default
//! 262144), `max_total_buffer` (the sum of those counts, of the QUIC
//! connections followed and of their CRYPTO bytes, over all connections
//! of the run, each of N workers
//! holding at most 1/N of it; default 64 MiB; beyond, handshakes are given
//! up and counted as `over_budget`, CRYPTO bytes as `quic_crypto_dropped`),
//! `max_preamble` (bytes of plaintext skipped
//! per direction before TLS, default 16384, 0 to read TLS only from a
//! stream's first byte). What a parser holds is never more than
//! about twice its count. Writes `tls.jsonl` (`.csv`, `.log`, `.parquet`
//! with `[output] format`).

use super::spool::OutputConfig;
use crate::memory::Lease;
use crate::output::schema::TLS;
use crate::output::{Format, RecordSpool, RowBuf};
use crate::plugin::{
    Counters, Decapsulated, EndReason, Interest, Layers, PacketContext, Plugin, PluginBuilder,
    PluginError, PluginResult, StreamData, TransportLayer, downcast,
};
use crate::proto::preamble::{self, PreambleSkipper, Step};
use crate::proto::quic;
use crate::proto::tls::{
    TlsClientHello, TlsEvent, TlsServerHello, TlsSink, TlsStreamParser, cipher_name,
    extension_name, is_grease, version_name,
};
use libpcap_tools::{Config, Direction, FiveTuple, Flow, FlowId, Timestamp, ipproto};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Configuration `[plugin.tls]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct TlsConfig {
    /// Bytes kept per direction while looking for a hello.
    pub max_buffer: usize,
    /// Bytes kept for all connections of the run (TCP sides, QUIC
    /// connections and their CRYPTO streams; each of N workers holds at
    /// most 1/N of it); beyond,
    /// new data of unfinished handshakes is not kept (counted as
    /// `over_budget`, or `quic_crypto_dropped` for QUIC).
    pub max_total_buffer: usize,
    /// Bytes of a plaintext exchange (SOCKS, HTTP `CONNECT`, STARTTLS, see
    /// [`crate::proto::preamble`]) skipped per direction before TLS; beyond,
    /// the direction is given up (counted as `preamble_over_limit`); 0 reads
    /// TLS only from a stream's first byte.
    pub max_preamble: usize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            max_buffer: 256 * 1024,
            max_total_buffer: 64 << 20,
            max_preamble: preamble::DEFAULT_MAX_PREAMBLE,
        }
    }
}

/// A decoded hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A ClientHello.
    Client(Box<TlsClientHello>),
    /// A ServerHello or HelloRetryRequest.
    Server(Box<TlsServerHello>),
}

/// What the current group of records (see [`TlsSink`]) brings to a side,
/// applied at the group's boundary and dropped if the stream turns out not
/// to be TLS. Keeping only this, not the group's events, keeps a side's
/// memory bounded whatever the group holds.
#[derive(Debug, Default)]
struct Group {
    /// The hellos of the side's kind in the group, with the time of the
    /// packet that completed each.
    hellos: Vec<(Hello, Option<Timestamp>)>,
    /// The group ends the search (application data, encryption, a final
    /// ServerHello).
    done: bool,
}

/// A side still looking for hellos.
#[derive(Debug, Default)]
struct Search {
    parser: TlsStreamParser,
    group: Group,
    /// Bytes counted for this side in `HandshakeBytes::tcp`: the bytes fed
    /// since the parser's last group end, which bound what it holds.
    held: usize,
}

#[derive(Debug, Default)]
struct Side {
    /// The plaintext exchange before TLS, while it lasts.
    preamble: Option<Box<PreambleSkipper>>,
    /// Allocated at the first data, dropped once `done`.
    search: Option<Box<Search>>,
    done: bool,
    /// Hellos written for this side (the next one's index).
    hellos: u64,
}

impl Side {
    /// Bytes counted for this side in `HandshakeBytes::tcp`.
    fn held(&self) -> usize {
        self.search.as_ref().map_or(0, |s| s.held) + self.preamble.as_ref().map_or(0, |p| p.held())
    }

    /// Stops looking at this side and frees what it held.
    fn finish(&mut self) {
        self.done = true;
        self.search = None;
        self.preamble = None;
    }
}

/// Turns the events of one side into its hellos and `done` flag.
struct SideSink<'a> {
    client: bool,
    /// Time of the packet being fed.
    ts: Option<Timestamp>,
    /// The connection is TLS 1.3 (known from the server's hello).
    tls13: &'a mut bool,
    group: &'a mut Group,
    /// Hellos of complete groups, to be written.
    ready: &'a mut Vec<(Hello, Option<Timestamp>)>,
    done: &'a mut bool,
}

impl TlsSink for SideSink<'_> {
    fn event(&mut self, event: TlsEvent) {
        match event {
            TlsEvent::Invalid { .. } => {
                *self.group = Group::default();
                *self.done = true;
            }
            // the search ended: nothing after it counts
            _ if *self.done || self.group.done => {}
            TlsEvent::ClientHello(h) if self.client => {
                self.group.hellos.push((Hello::Client(h), self.ts));
            }
            TlsEvent::ServerHello(h) if !self.client => {
                if h.version == 0x0304 || h.hello_retry_request {
                    *self.tls13 = true;
                }
                // no hello comes after a ServerHello (renegotiation is
                // encrypted); one comes after a HelloRetryRequest
                if !h.hello_retry_request {
                    self.group.done = true;
                }
                self.group.hellos.push((Hello::Server(h), self.ts));
            }
            TlsEvent::ApplicationData { .. } | TlsEvent::EncryptedHandshake { .. } => {
                self.group.done = true;
            }
            TlsEvent::ChangeCipherSpec if !*self.tls13 => {
                self.group.done = true;
            }
            _ => {}
        }
    }

    fn boundary(&mut self) {
        let group = std::mem::take(self.group);
        self.ready.extend(group.hellos);
        if group.done {
            *self.done = true;
        }
    }
}

#[derive(Debug, Default)]
struct Conn {
    sides: [Side; 2],
    /// The server chose TLS 1.3.
    tls13: bool,
}

/// Fills `row` with the `tls` record of `hello`, the `index`th hello of
/// its side, in flow `flow` whose key is `key` (originator first).
pub fn fill_row(
    row: &mut RowBuf,
    ts: Option<Timestamp>,
    flow: FlowId,
    key: &FiveTuple,
    index: u64,
    hello: &Hello,
    quic: Option<&QuicCarrier>,
) {
    let u16s = |v: &[u16]| v.iter().map(|x| u64::from(*x)).collect::<Vec<_>>();
    row.clear();
    row.opt_time(ts)
        .flow_id(flow.0)
        .ip(key.src)
        .u64(u64::from(key.src_port))
        .ip(key.dst)
        .u64(u64::from(key.dst_port));
    match hello {
        Hello::Client(h) => {
            let version = h
                .supported_versions
                .iter()
                .copied()
                .filter(|v| !is_grease(*v))
                .max()
                .unwrap_or(h.legacy_version);
            let names: Vec<_> = h.cipher_suites.iter().map(|c| cipher_name(*c)).collect();
            let ext_names: Vec<_> = h.extensions.iter().map(|e| extension_name(*e)).collect();
            row.str("client_hello")
                .u64(index)
                .u64(u64::from(h.record_version))
                .u64(u64::from(h.legacy_version))
                .u64(u64::from(version))
                .str(&version_name(version));
            if h.extensions.contains(&43) {
                row.u64_list(u16s(&h.supported_versions));
            } else {
                row.null();
            }
            row.opt_str(h.sni.as_deref());
            if h.extensions.contains(&16) {
                row.str_list(h.alpn.iter().map(String::as_str));
            } else {
                row.null();
            }
            row.null()
                .null()
                .u64_list(u16s(&h.cipher_suites))
                .str_list(names.iter().map(|n| n.as_ref()))
                .null()
                .u64_list(u16s(&h.extensions))
                .str_list(ext_names.iter().map(|n| n.as_ref()));
            let ext_list = |present: bool, row: &mut RowBuf, v: Vec<u64>| {
                if present {
                    row.u64_list(v);
                } else {
                    row.null();
                }
            };
            ext_list(h.extensions.contains(&10), row, u16s(&h.supported_groups));
            ext_list(
                h.extensions.contains(&11),
                row,
                h.ec_point_formats.iter().map(|x| u64::from(*x)).collect(),
            );
            ext_list(
                h.extensions.contains(&13),
                row,
                u16s(&h.signature_algorithms),
            );
            row.str(&h.ja3)
                .str(&h.ja3_hash)
                .null()
                .null()
                .str(&h.ja4)
                .str(&h.ja4_r)
                .null()
                .null();
        }
        Hello::Server(h) => {
            let ext_names: Vec<_> = h.extensions.iter().map(|e| extension_name(*e)).collect();
            row.str(if h.hello_retry_request {
                "hello_retry_request"
            } else {
                "server_hello"
            })
            .u64(index)
            .u64(u64::from(h.record_version))
            .u64(u64::from(h.legacy_version))
            .u64(u64::from(h.version))
            .str(&version_name(h.version));
            match h.selected_version {
                Some(v) => row.u64_list([u64::from(v)]),
                None => row.null(),
            };
            row.null();
            match &h.alpn {
                Some(a) => row.str_list([a.as_str()]),
                None => row.null(),
            };
            row.u64(u64::from(h.cipher_suite))
                .str(&cipher_name(h.cipher_suite))
                .null()
                .null()
                .u64(u64::from(h.compression))
                .u64_list(u16s(&h.extensions))
                .str_list(ext_names.iter().map(|n| n.as_ref()))
                .null()
                .null()
                .null()
                .null()
                .null()
                .str(&h.ja3s)
                .str(&h.ja3s_hash)
                .null()
                .null()
                .str(&h.ja4s)
                .str(&h.ja4s_r);
        }
    }
    match quic {
        Some(q) => {
            row.str("quic")
                .u64(u64::from(q.version))
                .str(&crate::proto::to_hex(&q.dcid))
                .str(&crate::proto::to_hex(&q.scid))
                .u64(u64::from(q.key_version));
        }
        None => {
            row.str("tcp").null().null().null().null();
        }
    }
}

/// The QUIC packets that carried a hello: their version, the client's
/// first Destination Connection ID (the Initial keys' input) and the
/// sender's Source Connection ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicCarrier {
    /// QUIC version on the wire of the Initial packet that completed the
    /// hello (a greased one, RFC 9000 §15, stays as sent).
    pub version: u32,
    /// Version whose Initial keys opened the packets: `version`, or for a
    /// greased one the version the AEAD tag showed to be right.
    pub key_version: u32,
    /// The client's first Destination Connection ID.
    pub dcid: Vec<u8>,
    /// The sender's Source Connection ID.
    pub scid: Vec<u8>,
}

/// Bytes of CRYPTO data kept per direction of a QUIC connection: a
/// ClientHello with post-quantum key shares fits several times over.
const QUIC_CRYPTO_LIMIT: usize = 32 * 1024;

/// Bytes a QUIC connection holds besides its CRYPTO bytes (its two sides'
/// keys with their AES key schedules, the streams, the connection ids),
/// counted in `max_total_buffer` while it is followed.
const QUIC_CONN_BYTES: usize = std::mem::size_of::<QuicConn>() + 128;

/// The Initial packets of one QUIC connection, as far as hellos may come.
#[derive(Debug)]
struct QuicConn {
    /// Version whose Initial keys opened the client's packets (that of the
    /// packets, or the one a greased version turned out to use).
    version: u32,
    /// The client's Destination Connection ID the Initial keys come from
    /// (its first one, or the one a Retry gave).
    client_dcid: Vec<u8>,
    keys: [quic::InitialKeys; 2],
    crypto: [quic::CryptoStream; 2],
    /// CRYPTO bytes of each side already parsed.
    parsed: [usize; 2],
    /// Source Connection ID of each side's Initial packets.
    scid: [Vec<u8>; 2],
    /// No more hellos come from that side.
    done: [bool; 2],
    /// Hellos written per side (the next one's index).
    hellos: [u64; 2],
}

impl QuicConn {
    /// Keys for a client whose first Initial went to `dcid` in `version`.
    fn new(version: u32, dcid: &[u8]) -> Option<QuicConn> {
        Some(QuicConn {
            version,
            client_dcid: dcid.to_vec(),
            keys: [
                quic::InitialKeys::new(version, dcid, true)?,
                quic::InitialKeys::new(version, dcid, false)?,
            ],
            crypto: [
                quic::CryptoStream::new(QUIC_CRYPTO_LIMIT),
                quic::CryptoStream::new(QUIC_CRYPTO_LIMIT),
            ],
            parsed: [0; 2],
            scid: [Vec::new(), Vec::new()],
            done: [false; 2],
            hellos: [0; 2],
        })
    }
}

/// Versions whose Initial keys are tried for a packet of `version`: its
/// own, or for a version with unknown keys (a greased one that forces
/// version negotiation, RFC 9000 §15) those of version 1, draft-29 and
/// version 2; the AEAD tag tells which is right.
fn quic_key_versions(version: u32) -> ([u32; 3], usize) {
    if quic::is_known_version(version) {
        ([version, 0, 0], 1)
    } else {
        ([quic::VERSION_1, quic::DRAFT_29, quic::VERSION_2], 3)
    }
}

/// Whether a direction's first bytes look like a TLS record (RFC 8446
/// §5.1: a content type from 20 to 24, version major 3): those are parsed as
/// TLS at once (an alert may come before the ServerHello), others may be a
/// plaintext exchange before TLS.
fn starts_like_a_record(data: &[u8]) -> bool {
    matches!(data, [20..=24, 3, ..] | [20..=24])
}

/// A UDP flow whose client's first long-header datagram of at least 1200
/// bytes did not open as a QUIC Initial: its next datagrams are not tried
/// again (until a Version Negotiation answers it), so a flood of such
/// datagrams pays the key trials once per flow.
#[derive(Debug)]
struct NotQuic {
    /// The client's Destination and Source Connection IDs (at most 20
    /// bytes each, else empty), which a Version Negotiation swaps.
    client_dcid: Vec<u8>,
    client_scid: Vec<u8>,
}

impl NotQuic {
    /// The ids of the client's long header `h` (empty when longer than 20
    /// bytes).
    fn of(h: &quic::LongHeader<'_>) -> NotQuic {
        let short = |c: &[u8]| {
            if c.len() <= 20 {
                c.to_vec()
            } else {
                Vec::new()
            }
        };
        NotQuic {
            client_dcid: short(h.dcid),
            client_scid: short(h.scid),
        }
    }
}

/// Flows remembered as not QUIC at most (beyond, new ones are tried again
/// at each big datagram, as before).
const MAX_NOT_QUIC: usize = 65_536;

/// The least size of a UDP datagram carrying a client's first Initial
/// packet (RFC 9000 §14.1): smaller ones do not start a QUIC connection.
const QUIC_MIN_CLIENT_DATAGRAM: usize = 1200;

/// The handshake bytes a `tls` plugin holds: TCP sides and QUIC
/// connections with their CRYPTO streams, within `max_total_buffer` and
/// this worker's lease on the run's part of it.
#[derive(Debug)]
struct HandshakeBytes {
    /// Bytes counted in all TCP sides (`Side::held`).
    tcp: usize,
    /// Bytes of the QUIC connections: [`QUIC_CONN_BYTES`] each and their
    /// CRYPTO streams.
    quic: usize,
    /// `max_total_buffer`.
    max: usize,
    /// This worker's part of the run's `max_total_buffer`
    /// ([`Plugin::use_memory`]; without it, `max` alone bounds).
    lease: Lease,
}

impl HandshakeBytes {
    /// Whether `more` bytes fit beside those held now (the lease then
    /// covers them).
    fn admits(&mut self, more: usize) -> bool {
        let total = self.tcp.saturating_add(self.quic).saturating_add(more);
        total <= self.max && self.lease.cover(total as u64)
    }

    /// A TCP side that counted `was` bytes counts `now`.
    fn tcp_now(&mut self, was: usize, now: usize) {
        self.tcp = self.tcp.saturating_sub(was).saturating_add(now);
    }

    /// A QUIC connection that counted `was` bytes counts `now`.
    fn quic_now(&mut self, was: usize, now: usize) {
        self.quic = self.quic.saturating_sub(was).saturating_add(now);
    }

    /// Makes the lease hold what is held now (giving back what was freed).
    fn settle(&mut self) {
        self.lease.cover(self.tcp.saturating_add(self.quic) as u64);
    }
}

/// The `tls` plugin.
#[derive(Debug)]
pub struct TlsPlugin {
    cfg: TlsConfig,
    conns: HashMap<FlowId, Conn, foldhash::fast::RandomState>,
    /// Connections with at least one hello.
    connections: u64,
    /// Hellos written.
    hellos: u64,
    /// The handshake bytes held, within `max_total_buffer`.
    held: HandshakeBytes,
    /// Handshakes given up because `max_total_buffer` was reached.
    over_budget: u64,
    /// Directions where TLS started after a plaintext exchange.
    after_preamble: u64,
    /// Directions given up after `max_preamble` bytes of plaintext.
    preamble_over_limit: u64,
    /// QUIC connections whose Initial packets are being read.
    quic: HashMap<FlowId, Box<QuicConn>, foldhash::fast::RandomState>,
    /// QUIC Initial packets opened.
    quic_initials: u64,
    /// QUIC Initial packets that did not open (keys unknown: the client's
    /// first Initial was not seen, or a version without known keys).
    quic_not_opened: u64,
    /// CRYPTO bytes refused over the per-connection limit or the run's
    /// `max_total_buffer`.
    quic_crypto_dropped: u64,
    /// Flows whose first big long-header datagram did not open.
    not_quic: HashMap<FlowId, NotQuic, foldhash::fast::RandomState>,
    /// Initial keys derived to try a flow's first datagram (one per version
    /// tried).
    quic_key_trials: u64,
    /// Version Negotiation packets answering a client's long header.
    quic_version_negotiation: u64,
    /// Long-header packets of QUIC datagrams cut by the capture (fewer bytes
    /// captured than the UDP header's length).
    quic_truncated: u64,
    /// Long-header packets of QUIC datagrams captured whole whose header does
    /// not parse (a length past the datagram, a connection id too long).
    quic_malformed: u64,
    /// Bytes examined by the parsers of all sides (see
    /// [`TlsStreamParser::bytes_examined`]).
    pub(crate) examined: u64,
    /// Hellos of complete groups, waiting to be written.
    ready: Vec<(Hello, Option<Timestamp>)>,
    spool: RecordSpool,
    format: Format,
    row: RowBuf,
    /// Every hello found, by flow and side (tests only).
    #[cfg(test)]
    log: Vec<(FlowId, usize, Hello)>,
}

impl TlsPlugin {
    fn new(cfg: TlsConfig, spool: RecordSpool, format: Format) -> TlsPlugin {
        TlsPlugin {
            cfg,
            conns: HashMap::default(),
            connections: 0,
            hellos: 0,
            held: HandshakeBytes {
                tcp: 0,
                quic: 0,
                max: cfg.max_total_buffer,
                lease: Lease::unlimited(),
            },
            over_budget: 0,
            after_preamble: 0,
            preamble_over_limit: 0,
            quic: HashMap::default(),
            quic_initials: 0,
            quic_not_opened: 0,
            quic_crypto_dropped: 0,
            not_quic: HashMap::default(),
            quic_key_trials: 0,
            quic_version_negotiation: 0,
            quic_truncated: 0,
            quic_malformed: 0,
            examined: 0,
            ready: Vec::new(),
            spool,
            format,
            row: RowBuf::new(&TLS),
            #[cfg(test)]
            log: Vec::new(),
        }
    }

    /// The long-header packets of one UDP datagram of `flow` (a datagram
    /// may coalesce several, RFC 9000 §12.2): Initial packets are opened,
    /// their CRYPTO frames put in order per side and parsed as handshake
    /// messages; Retry packets move the client's keys to the connection id
    /// they give (RFC 9001 §5.2).
    fn quic_datagram(
        &mut self,
        ts: Option<Timestamp>,
        flow: &Flow,
        dir: Direction,
        mut d: &[u8],
        cut: bool,
    ) {
        let from_client = dir == Direction::ToServer;
        for _ in 0..8 {
            let h = match quic::parse_long_header(d) {
                Ok(h) => h,
                // a short-header packet coalesced after long ones
                Err(quic::QuicError::NotLongHeader) => return,
                Err(_) if cut => {
                    self.quic_truncated += 1;
                    return;
                }
                Err(_) => {
                    self.quic_malformed += 1;
                    return;
                }
            };
            let packet = d.get(..h.len).unwrap_or(d);
            let version = h.version;
            let initial = match version {
                quic::VERSION_2 => packet.first().is_some_and(|b| (b >> 4) & 3 == 0b01),
                _ => packet.first().is_some_and(|b| (b >> 4) & 3 == 0b00),
            };
            let retry = match version {
                quic::VERSION_2 => packet.first().is_some_and(|b| (b >> 4) & 3 == 0b00),
                _ => packet.first().is_some_and(|b| (b >> 4) & 3 == 0b11),
            };
            if retry && !from_client {
                // the client's next Initial goes to the Retry's connection
                // id, and both sides' keys come from it
                if let Some(q) = self.quic.get_mut(&flow.id)
                    && let Some(new) = QuicConn::new(q.version, h.scid)
                {
                    q.keys = new.keys;
                    q.client_dcid = new.client_dcid;
                }
                return;
            }
            if initial {
                self.quic_initial(ts, flow, from_client, packet, &h);
            }
            if h.len == 0 || h.len >= d.len() {
                return;
            }
            d = d.get(h.len..).unwrap_or_default();
        }
    }

    /// A Version Negotiation packet (RFC 9000 §17.2.1) from the server of a
    /// flow whose client sent a long header: counted when it answers that
    /// client (its connection ids are the client's, swapped) with a list of
    /// versions; the client's next Initial, in a version of the list, is
    /// tried again.
    fn quic_version_negotiation(&mut self, flow: &Flow, dir: Direction, d: &[u8]) {
        if dir != Direction::ToClient
            || !(self.quic.contains_key(&flow.id) || self.not_quic.contains_key(&flow.id))
        {
            return;
        }
        let Ok(h) = quic::parse_long_header(d) else {
            self.quic_malformed += 1;
            return;
        };
        let listed = d.len() > 7 + h.dcid.len() + h.scid.len()
            && (d.len() - 7 - h.dcid.len() - h.scid.len()).is_multiple_of(4);
        let answers = match (self.quic.get(&flow.id), self.not_quic.get(&flow.id)) {
            (Some(q), _) => h.scid == q.client_dcid.as_slice() && h.dcid == q.scid[0].as_slice(),
            (None, Some(n)) => {
                h.scid == n.client_dcid.as_slice() && h.dcid == n.client_scid.as_slice()
            }
            (None, None) => return,
        };
        if !listed || !answers {
            self.quic_malformed += 1;
            return;
        }
        self.quic_version_negotiation += 1;
        self.not_quic.remove(&flow.id);
    }

    /// A UDP datagram of `flow` whose payload `p` starts with a long header
    /// and whose UDP length is `udp_len`: QUIC Initial, Retry and Version
    /// Negotiation packets are read (see the module documentation).
    fn udp_datagram(
        &mut self,
        ts: Option<Timestamp>,
        flow: &Flow,
        dir: Direction,
        udp_len: usize,
        p: &[u8],
    ) {
        let [first, v0, v1, v2, v3, ..] = *p else {
            return;
        };
        let version = u32::from_be_bytes([v0, v1, v2, v3]);
        if first & 0x80 == 0 {
            return;
        }
        if version == 0 {
            // the fixed bit of a Version Negotiation is not set by rule
            self.quic_version_negotiation(flow, dir, p);
            return;
        }
        // only long-header packets with the fixed bit (RFC 9000 §17.2): a
        // cheap test that leaves other UDP (DNS, QUIC short headers) at once
        if first & 0x40 == 0 || p.len() < 7 {
            return;
        }
        // a connection starts with a client's Initial in a datagram of at
        // least 1200 bytes; later packets count only on a known connection,
        // and a flow whose first such datagram did not open is not tried
        // again
        let size = udp_len.max(p.len());
        if !self.quic.contains_key(&flow.id)
            && (size < QUIC_MIN_CLIENT_DATAGRAM || self.not_quic.contains_key(&flow.id))
        {
            return;
        }
        self.quic_datagram(ts, flow, dir, p, p.len() < udp_len);
    }

    /// One Initial packet (`packet`, its bytes only) from the client
    /// (`from_client`) or the server.
    fn quic_initial(
        &mut self,
        ts: Option<Timestamp>,
        flow: &Flow,
        from_client: bool,
        packet: &[u8],
        header: &quic::LongHeader<'_>,
    ) {
        let side = usize::from(!from_client);
        let version = header.version;
        // the header as version `v`'s rules read it: the one already parsed
        // when `v` is the packet's own version
        let read_as = |v: u32| {
            if v == version {
                Ok(header.clone())
            } else {
                quic::parse_long_header_as(packet, Some(v))
            }
        };
        if !self.quic.contains_key(&flow.id) {
            if !from_client {
                // the client's first Initial was not seen: no keys
                self.quic_not_opened += 1;
                return;
            }
            let (versions, n) = quic_key_versions(version);
            let mut trials = 0;
            let opened = versions.get(..n).unwrap_or_default().iter().find_map(|v| {
                let h = read_as(*v).ok()?;
                if h.packet_type != Some(quic::PacketType::Initial) {
                    return None;
                }
                trials += 1;
                let q = QuicConn::new(*v, h.dcid)?;
                q.keys[0].open(packet, &h).ok().map(|_| q)
            });
            self.quic_key_trials += trials;
            if opened.is_some() && !self.held.admits(QUIC_CONN_BYTES) {
                // no room to follow it: given up, as a TCP handshake is,
                // and not tried again
                self.over_budget += 1;
                self.held.settle();
                if self.not_quic.len() < MAX_NOT_QUIC {
                    self.not_quic.insert(flow.id, NotQuic::of(header));
                }
                return;
            }
            match opened {
                Some(q) => {
                    self.not_quic.remove(&flow.id);
                    self.quic.insert(flow.id, Box::new(q));
                    self.held.quic_now(0, QUIC_CONN_BYTES);
                }
                None => {
                    self.quic_not_opened += 1;
                    if self.not_quic.len() < MAX_NOT_QUIC {
                        self.not_quic.insert(flow.id, NotQuic::of(header));
                    }
                    return;
                }
            }
        }
        let Some(q) = self.quic.get_mut(&flow.id) else {
            return;
        };
        if q.done[side] {
            return;
        }
        // the header as the version the keys belong to reads it
        let Ok(h) = read_as(q.version) else {
            return;
        };
        let Some(keys) = q.keys.get(side) else {
            return;
        };
        let Ok((_, plain)) = keys.open(packet, &h) else {
            self.quic_not_opened += 1;
            return;
        };
        self.quic_initials += 1;
        if q.scid[side].is_empty() {
            q.scid[side] = h.scid.to_vec();
        }
        let frames = quic::crypto_frames(&plain).unwrap_or_default();
        let stream = &mut q.crypto[side];
        // the frames are kept only within the run's budget (as much as
        // they would add at most: their bytes)
        let incoming: usize = frames.iter().map(|f| f.data.len()).sum();
        if !self.held.admits(incoming) {
            self.quic_crypto_dropped += incoming as u64;
            self.held.settle();
            return;
        }
        let (dropped, held) = (stream.dropped, stream.held());
        for f in frames {
            stream.add(f.offset, f.data);
        }
        self.quic_crypto_dropped += stream.dropped - dropped;
        self.held.quic_now(held, stream.held());
        self.held.settle();
        let data = stream
            .contiguous()
            .get(q.parsed[side]..)
            .unwrap_or_default();
        let (events, used) = crate::proto::tls::quic_handshake_messages(data);
        q.parsed[side] += used;
        let carrier = QuicCarrier {
            version,
            key_version: q.version,
            dcid: q.client_dcid.clone(),
            scid: q.scid[side].clone(),
        };
        for e in events {
            let hello = match e {
                TlsEvent::ClientHello(c) if from_client => Hello::Client(c),
                TlsEvent::ServerHello(sh) if !from_client => {
                    // no hello comes after a ServerHello; one comes after
                    // a HelloRetryRequest
                    if !sh.hello_retry_request {
                        q.done[side] = true;
                    }
                    Hello::Server(sh)
                }
                TlsEvent::Invalid { .. } => {
                    q.done[side] = true;
                    continue;
                }
                _ => continue,
            };
            let index = q.hellos[side];
            q.hellos[side] += 1;
            self.hellos += 1;
            if self.spool.is_writing() {
                fill_row(
                    &mut self.row,
                    ts,
                    flow.id,
                    &flow.key,
                    index,
                    &hello,
                    Some(&carrier),
                );
                self.spool.push(ts, flow.id.0, &self.row);
            }
            #[cfg(test)]
            self.log.push((flow.id, side, hello));
        }
    }

    /// Writes the hellos in `self.ready`, found on side `i` of `flow`.
    fn write_ready(&mut self, flow: &Flow, i: usize) {
        if self.ready.is_empty() {
            return;
        }
        let ready = std::mem::take(&mut self.ready);
        let Some(side) = self
            .conns
            .get_mut(&flow.id)
            .and_then(|c| c.sides.get_mut(i))
        else {
            return;
        };
        for (hello, ts) in &ready {
            let index = side.hellos;
            side.hellos += 1;
            self.hellos += 1;
            if self.spool.is_writing() {
                fill_row(&mut self.row, *ts, flow.id, &flow.key, index, hello, None);
                self.spool.push(*ts, flow.id.0, &self.row);
            }
        }
        #[cfg(test)]
        self.log
            .extend(ready.iter().map(|(h, _)| (flow.id, i, h.clone())));
        // keep the allocation for the next hellos
        self.ready = ready;
        self.ready.clear();
    }
}

impl Plugin for TlsPlugin {
    fn name(&self) -> &str {
        "tls"
    }
    fn use_memory(&mut self, budget: &std::sync::Arc<crate::memory::MemoryBudget>) {
        // the records waiting in memory draw on the run's spool share
        self.spool.share_memory(budget.spool_lease());
        // the handshake bytes held: `max_total_buffer` for the run
        let pool = budget.pool("tls.buffer", self.cfg.max_total_buffer as u64);
        self.held.lease = budget.lease(&pool);
    }

    fn interest(&self) -> Interest {
        // TCP streams; UDP datagrams for QUIC Initial packets
        Interest::new(Layers::STREAM | Layers::TRANSPORT | Layers::FLOW_EVENTS)
            .ip_protocols(&[ipproto::TCP, ipproto::UDP])
    }

    fn handle_transport(
        &mut self,
        ctx: &PacketContext<'_>,
        t: &TransportLayer<'_>,
    ) -> PluginResult<Option<Decapsulated>> {
        let p = t.payload;
        if t.key.proto != ipproto::UDP || p.first().is_none_or(|b| b & 0x80 == 0) {
            return Ok(None);
        }
        // the datagram's size from the UDP header (RFC 768), the payload
        // being shorter when the capture cut it
        let udp_len = match t.data {
            [_, _, _, _, a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])).saturating_sub(8),
            _ => p.len(),
        };
        self.udp_datagram(ctx.ts(), t.flow, t.direction, udp_len, p);
        Ok(None)
    }

    fn handle_stream(
        &mut self,
        ctx: &PacketContext<'_>,
        flow: &Flow,
        dir: Direction,
        data: StreamData<'_>,
    ) -> PluginResult<()> {
        let i = usize::from(dir == Direction::ToClient);
        let conn = self.conns.entry(flow.id).or_default();
        let Conn { sides, tls13 } = conn;
        let Some(side) = sides.get_mut(i) else {
            return Ok(());
        };
        if side.done {
            ctx.stream_done();
            return Ok(());
        }
        let held = side.held();
        let data = match data {
            StreamData::Data { data, .. } => data,
            StreamData::Gap { .. } => {
                side.finish();
                ctx.stream_done();
                self.held.tcp_now(held, 0);
                return Ok(());
            }
        };
        if !self.held.admits(data.len()) {
            side.finish();
            ctx.stream_done();
            self.held.tcp_now(held, 0);
            self.over_budget += 1;
            self.held.settle();
            return Ok(());
        }
        // a direction that does not start with a TLS record may start with
        // a plaintext exchange: skipped, TLS starts after it
        let owned;
        let data = if side.preamble.is_some()
            || (side.search.is_none() && self.cfg.max_preamble > 0 && !starts_like_a_record(data))
        {
            let p = side.preamble.get_or_insert_with(|| {
                Box::new(PreambleSkipper::new(i == 0, self.cfg.max_preamble))
            });
            let step = p.feed(data);
            if step != Step::More {
                side.preamble = None;
            }
            match step {
                Step::Tls(v) => {
                    // what the skipper held is freed; the parser's bytes
                    // are counted below
                    self.held.tcp_now(held, 0);
                    self.after_preamble += 1;
                    owned = v;
                    owned.as_slice()
                }
                step => {
                    if step == Step::OverLimit {
                        self.preamble_over_limit += 1;
                    }
                    if step != Step::More {
                        side.finish();
                        ctx.stream_done();
                    }
                    self.held.tcp_now(held, side.held());
                    return Ok(());
                }
            }
        } else {
            data
        };
        let held = side.held();
        let Side { search, done, .. } = side;
        let search = search.get_or_insert_with(Box::default);
        if *tls13 {
            search.parser.set_tls13();
        }
        let before = search.parser.bytes_examined();
        search.parser.feed(
            data,
            &mut SideSink {
                client: i == 0,
                ts: ctx.ts(),
                tls13,
                group: &mut search.group,
                ready: &mut self.ready,
                done,
            },
        );
        self.examined = self
            .examined
            .saturating_add(search.parser.bytes_examined().saturating_sub(before));
        search.held = search.parser.pending_len();
        // `max_buffer` bounds what was pending plus the new data, as when
        // the whole pending stream was kept and parsed again
        if side.done || held.saturating_add(data.len()) > self.cfg.max_buffer {
            side.finish();
            ctx.stream_done();
        }
        self.held.tcp_now(held, side.held());
        self.held.settle();
        self.write_ready(flow, i);
        Ok(())
    }

    fn flow_destroyed(&mut self, flow: &Flow, _: EndReason) -> PluginResult<()> {
        // hellos of a group still open are complete messages: no more data
        // can come to end their group (a ServerHello whose Certificate is
        // cut by the end of the capture)
        for i in 0..2 {
            if let Some(search) = self
                .conns
                .get_mut(&flow.id)
                .and_then(|c| c.sides.get_mut(i))
                .and_then(|s| s.search.as_mut())
            {
                self.ready.append(&mut search.group.hellos);
                self.write_ready(flow, i);
            }
        }
        self.not_quic.remove(&flow.id);
        if let Some(q) = self.quic.remove(&flow.id) {
            let held: usize = q.crypto.iter().map(quic::CryptoStream::held).sum();
            self.held.quic_now(held.saturating_add(QUIC_CONN_BYTES), 0);
            if q.hellos.iter().any(|n| *n > 0) {
                self.connections += 1;
            }
        }
        if let Some(conn) = self.conns.remove(&flow.id) {
            let held: usize = conn.sides.iter().map(Side::held).sum();
            self.held.tcp_now(held, 0);
            if conn.sides.iter().any(|s| s.hellos > 0) {
                self.connections += 1;
            }
        }
        self.held.settle();
        Ok(())
    }

    fn merge(&mut self, other: Box<dyn Plugin>) -> PluginResult<()> {
        let o = downcast::<Self>("tls", other)?;
        self.connections += o.connections;
        self.hellos += o.hellos;
        self.over_budget += o.over_budget;
        self.after_preamble += o.after_preamble;
        self.preamble_over_limit += o.preamble_over_limit;
        self.quic_initials += o.quic_initials;
        self.quic_not_opened += o.quic_not_opened;
        self.quic_crypto_dropped += o.quic_crypto_dropped;
        self.quic_key_trials += o.quic_key_trials;
        self.quic_version_negotiation += o.quic_version_negotiation;
        self.quic_truncated += o.quic_truncated;
        self.quic_malformed += o.quic_malformed;
        self.examined = self.examined.saturating_add(o.examined);
        self.spool.merge(o.spool);
        Ok(())
    }

    fn results(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "tls_connections": self.connections,
            "hellos": self.hellos,
            "over_budget": self.over_budget,
            "after_preamble": self.after_preamble,
            "preamble_over_limit": self.preamble_over_limit,
            "quic_initials": self.quic_initials,
            "quic_not_opened": self.quic_not_opened,
            "quic_crypto_dropped": self.quic_crypto_dropped,
            "quic_key_trials": self.quic_key_trials,
            "quic_version_negotiation": self.quic_version_negotiation,
            "quic_truncated": self.quic_truncated,
            "quic_malformed": self.quic_malformed,
        }))
    }

    fn counters(&self) -> Counters {
        Counters::new()
            .count("connections", self.connections)
            .count("hellos", self.hellos)
            .loss("over_budget", self.over_budget)
            .count("after_preamble", self.after_preamble)
            .count("preamble_over_limit", self.preamble_over_limit)
            .count("quic_initials", self.quic_initials)
            .count("quic_not_opened", self.quic_not_opened)
            .loss("quic_crypto_dropped", self.quic_crypto_dropped)
            .count("quic_key_trials", self.quic_key_trials)
            .count("quic_version_negotiation", self.quic_version_negotiation)
            .count("quic_truncated", self.quic_truncated)
            .count("quic_malformed", self.quic_malformed)
    }

    fn save_results(&mut self, dir: &Path) -> PluginResult<Vec<PathBuf>> {
        super::spool::save_records("tls", &mut self.spool, dir, self.format)
    }
}

/// Builder of [`TlsPlugin`].
#[derive(Debug)]
pub struct TlsPluginBuilder;

impl PluginBuilder for TlsPluginBuilder {
    fn name(&self) -> &str {
        "tls"
    }
    fn description(&self) -> &str {
        "one record per TLS hello: versions, SNI, ALPN, cipher suites with names, extensions, JA3/JA3S, JA4/JA4S"
    }
    fn build(&self, config: &Config) -> PluginResult<Box<dyn Plugin>> {
        let cfg = config
            .plugin("tls")
            .map_err(|e| PluginError::wrap("tls", e))?;
        let out = OutputConfig::from_config(config, "tls")?;
        Ok(Box::new(TlsPlugin::new(cfg, out.spool(&TLS), out.format)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::PacketContext;
    use crate::proto::tls::test_support;
    use libpcap_tools::{FlowContext, Packet};

    /// The protected client Initial of RFC 9001 Appendix A.2 (QUIC version
    /// 1, Destination Connection ID 8394c8f03e515708, empty Source
    /// Connection ID, 1200 bytes, a ClientHello for example.com).
    fn rfc9001_client_initial() -> Vec<u8> {
        let path = format!(
            "{}/testdata/quic/rfc9001-a2-client-initial.hex",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        let hex: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn udp(p: &mut TlsPlugin, id: u64, dir: Direction, udp_len: usize, payload: &[u8]) {
        let f = Flow::new(FlowId(id), FiveTuple::default(), FlowContext::default());
        p.udp_datagram(None, &f, dir, udp_len, payload);
    }

    fn plugin() -> TlsPlugin {
        TlsPlugin::new(
            TlsConfig::default(),
            RecordSpool::new(&TLS, None),
            Format::Jsonl,
        )
    }

    #[test]
    fn a_quic_flow_whose_first_initial_fails_is_tried_once() {
        let good = rfc9001_client_initial();
        assert_eq!(good.len(), 1200);
        let mut p = plugin();
        udp(&mut p, 1, Direction::ToServer, good.len(), &good);
        assert_eq!((p.quic_initials, p.quic_key_trials, p.hellos), (1, 1, 1));
        // a damaged payload: the AEAD tag fails, one key trial, then the
        // flow is remembered and its next big datagrams cost nothing
        let mut bad = good.clone();
        bad[600] ^= 0x55;
        for _ in 0..5 {
            udp(&mut p, 2, Direction::ToServer, bad.len(), &bad);
        }
        assert_eq!(p.quic_key_trials, 2);
        assert_eq!(p.quic_not_opened, 1);
        // even the good Initial on that flow is not tried
        udp(&mut p, 2, Direction::ToServer, good.len(), &good);
        assert_eq!((p.quic_key_trials, p.quic_initials), (2, 1));
        // a greased version: the keys of v1 and draft-29 are tried, once for
        // the flow (version 2 reads the type bits 00 as a Retry, RFC 9369
        // §3.2, so it has no Initial to try)
        let mut greased = bad.clone();
        greased[1..5].copy_from_slice(&0x1a2a_3a4a_u32.to_be_bytes());
        udp(&mut p, 3, Direction::ToServer, greased.len(), &greased);
        udp(&mut p, 3, Direction::ToServer, greased.len(), &greased);
        assert_eq!(p.quic_key_trials, 4);
        // the flow's end forgets it
        let f = Flow::new(FlowId(2), FiveTuple::default(), FlowContext::default());
        p.flow_destroyed(&f, EndReason::Timeout).unwrap();
        udp(&mut p, 2, Direction::ToServer, good.len(), &good);
        assert_eq!((p.quic_key_trials, p.quic_initials), (5, 2));
    }

    /// QUIC connections ([`QUIC_CONN_BYTES`] each) and their CRYPTO bytes
    /// count in `max_total_buffer` with the TCP sides, and that budget is
    /// the run's: each of two workers holds at most half of it. The
    /// ClientHello of RFC 9001 A.2 is one CRYPTO frame of 241 bytes.
    #[test]
    fn quic_crypto_bytes_stay_under_the_run_budget() {
        let good = rfc9001_client_initial();
        let per = QUIC_CONN_BYTES + 241;
        // four connections with their hellos, a fifth without room for its
        // CRYPTO bytes
        let cfg = TlsConfig {
            max_total_buffer: 4 * per + QUIC_CONN_BYTES + 100,
            ..TlsConfig::default()
        };
        let new = || TlsPlugin::new(cfg, RecordSpool::new(&TLS, None), Format::Jsonl);
        let end = |p: &mut TlsPlugin, id: u64| {
            let f = Flow::new(FlowId(id), FiveTuple::default(), FlowContext::default());
            p.flow_destroyed(&f, EndReason::EndOfInput).unwrap();
        };
        let mut p = new();
        for id in 0..10 {
            udp(&mut p, id, Direction::ToServer, good.len(), &good);
        }
        assert_eq!((p.quic_initials, p.hellos), (5, 4));
        assert_eq!(p.held.quic, 4 * per + QUIC_CONN_BYTES);
        assert_eq!(p.quic_crypto_dropped, 241);
        // the five others are given up, once each
        assert_eq!(p.over_budget, 5);
        udp(&mut p, 9, Direction::ToServer, good.len(), &good);
        assert_eq!((p.over_budget, p.quic_key_trials), (5, 10));
        // the TCP sides draw on the same bytes: a partial record of 609
        // bytes does not fit beside them
        let mut partial = vec![0x16, 0x03, 0x01, 0x3e, 0x80, 0x01, 0x00, 0x3e, 0x7c];
        partial.extend_from_slice(&[0u8; 600]);
        feed(&mut p, 20, Direction::ToServer, Some(&partial));
        assert_eq!(p.over_budget, 6);
        for id in 0..10 {
            end(&mut p, id);
        }
        assert_eq!(p.held.quic, 0);
        feed(&mut p, 21, Direction::ToServer, Some(&partial));
        assert_eq!((p.over_budget, p.held.tcp), (6, 609));
        // two workers of one run: half each, whatever the other holds
        let budget = crate::memory::MemoryBudget::for_workers(&crate::EngineConfig::default(), 2);
        let cfg = TlsConfig {
            max_total_buffer: 4 * per + 100,
            ..TlsConfig::default()
        };
        let new = || TlsPlugin::new(cfg, RecordSpool::new(&TLS, None), Format::Jsonl);
        let (mut a, mut b) = (new(), new());
        a.use_memory(&budget);
        b.use_memory(&budget);
        for id in 0..10 {
            udp(&mut a, id, Direction::ToServer, good.len(), &good);
        }
        assert_eq!((a.hellos, a.held.quic), (2, 2 * per));
        for id in 10..20 {
            udp(&mut b, id, Direction::ToServer, good.len(), &good);
        }
        assert_eq!((b.hellos, b.held.quic), (2, 2 * per));
        // what a worker frees is its own again
        end(&mut a, 0);
        udp(&mut a, 30, Direction::ToServer, good.len(), &good);
        assert_eq!((a.hellos, a.held.quic), (3, 2 * per));
    }

    /// RFC 9000 §17.2.1: a Version Negotiation packet has version 0, the
    /// client's Source Connection ID as its Destination and the client's
    /// Destination Connection ID as its Source, then the versions.
    fn version_negotiation(dcid: &[u8], scid: &[u8], versions: &[u32]) -> Vec<u8> {
        let mut v = vec![0x80 | 0x2a, 0, 0, 0, 0, dcid.len() as u8];
        v.extend_from_slice(dcid);
        v.push(scid.len() as u8);
        v.extend_from_slice(scid);
        for x in versions {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v
    }

    #[test]
    fn a_version_negotiation_is_counted_and_lets_the_client_try_again() {
        let good = rfc9001_client_initial();
        let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
        let mut p = plugin();
        // the client's first Initial in a greased version does not open
        let mut greased = good.clone();
        greased[1..5].copy_from_slice(&0x0a0a_0a0a_u32.to_be_bytes());
        greased[700] ^= 1;
        udp(&mut p, 1, Direction::ToServer, greased.len(), &greased);
        assert_eq!(p.quic_not_opened, 1);
        // a VN of another connection (wrong ids), one from the client's side,
        // one with a cut version list: not counted as such
        let vn = version_negotiation(&[], &dcid, &[quic::VERSION_1, quic::VERSION_2]);
        udp(&mut p, 1, Direction::ToServer, vn.len(), &vn);
        let other = version_negotiation(&[1], &dcid, &[quic::VERSION_1]);
        udp(&mut p, 1, Direction::ToClient, other.len(), &other);
        udp(
            &mut p,
            1,
            Direction::ToClient,
            vn.len() - 1,
            &vn[..vn.len() - 1],
        );
        assert_eq!(p.quic_version_negotiation, 0);
        assert_eq!(p.quic_malformed, 2);
        // on a flow with no QUIC client, nothing is read at all
        udp(&mut p, 9, Direction::ToClient, vn.len(), &vn);
        assert_eq!((p.quic_version_negotiation, p.quic_malformed), (0, 2));
        // the server's answer
        udp(&mut p, 1, Direction::ToClient, vn.len(), &vn);
        assert_eq!(p.quic_version_negotiation, 1);
        // the client starts again in version 1 on the same flow: opened
        udp(&mut p, 1, Direction::ToServer, good.len(), &good);
        assert_eq!((p.quic_initials, p.hellos), (1, 1));
        let (_, _, Hello::Client(h)) = &p.log[0] else {
            panic!("{:?}", p.log)
        };
        assert_eq!(h.sni.as_deref(), Some("example.com"));
        assert!(h.ja4.starts_with("q13d"), "{}", h.ja4);
    }

    /// The client Initial of RFC 9369 Appendix A.2 (QUIC version 2) gives
    /// the same ClientHello, with the version in the record's carrier.
    #[test]
    fn a_version_2_initial_gives_its_client_hello() {
        let path = format!(
            "{}/testdata/quic/rfc9369-a2-client-initial.hex",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        let hex: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let v2: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut p = plugin();
        udp(&mut p, 1, Direction::ToServer, v2.len(), &v2);
        assert_eq!((p.quic_initials, p.quic_key_trials), (1, 1));
        assert_eq!(
            p.quic.get(&FlowId(1)).map(|q| q.version),
            Some(quic::VERSION_2)
        );
        let (_, _, Hello::Client(h)) = &p.log[0] else {
            panic!("{:?}", p.log)
        };
        assert_eq!(h.sni.as_deref(), Some("example.com"));
        assert!(h.ja4.starts_with("q13d"), "{}", h.ja4);
    }

    #[test]
    fn truncated_and_malformed_quic_initials_are_counted() {
        let good = rfc9001_client_initial();
        let mut p = plugin();
        // captured with a snap length of 600: the UDP length says 1200
        udp(&mut p, 1, Direction::ToServer, good.len(), &good[..600]);
        assert_eq!((p.quic_truncated, p.quic_key_trials), (1, 0));
        // whole, but its Length field (0x449e = 1182) raised past the
        // datagram's end
        let mut long = good.clone();
        assert_eq!(&good[16..18], &[0x44, 0x9e]);
        long[16] = 0x4f;
        udp(&mut p, 2, Direction::ToServer, long.len(), &long);
        assert_eq!((p.quic_malformed, p.quic_key_trials), (1, 0));
        // a damaged payload does not decrypt
        let mut bad = good.clone();
        bad[1100] ^= 0x80;
        udp(&mut p, 3, Direction::ToServer, bad.len(), &bad);
        assert_eq!((p.quic_not_opened, p.quic_initials), (1, 0));
        // none of them gave a hello, and the counters say so
        assert_eq!(p.hellos, 0);
        let c = p.counters();
        assert_eq!(c.get("quic_truncated"), Some(1));
        assert_eq!(c.get("quic_malformed"), Some(1));
        assert_eq!(c.get("quic_not_opened"), Some(1));
    }

    #[test]
    fn partial_handshakes_stay_under_the_global_budget() {
        let cfg = TlsConfig {
            max_buffer: 1000,
            max_total_buffer: 4000,
            ..TlsConfig::default()
        };
        let mut p = TlsPlugin::new(cfg, RecordSpool::new(&TLS, None), Format::Jsonl);
        let pkt = Packet::pseudo(None);
        let ctx = PacketContext::new(&pkt, FlowContext::default());
        // a record header announcing 16000 bytes, then part of it: never complete
        let mut partial = vec![0x16, 0x03, 0x01, 0x3e, 0x80, 0x01, 0x00, 0x3e, 0x7c];
        partial.extend_from_slice(&[0u8; 600]);
        for i in 0..20u64 {
            let f = Flow::new(FlowId(i), FiveTuple::default(), FlowContext::default());
            p.handle_stream(
                &ctx,
                &f,
                Direction::ToServer,
                StreamData::Data {
                    offset: 0,
                    data: &partial,
                },
            )
            .unwrap();
            assert!(p.held.tcp <= 4000, "{} held", p.held.tcp);
        }
        assert_eq!(p.over_budget, 14, "6 handshakes of 609 bytes fit in 4000");
        for i in 0..20u64 {
            let f = Flow::new(FlowId(i), FiveTuple::default(), FlowContext::default());
            p.flow_destroyed(&f, EndReason::EndOfInput).unwrap();
        }
        assert_eq!(p.held.tcp, 0);
    }

    /// Feeds `data` of flow `id` in direction `dir` (a gap when `None`).
    fn feed(p: &mut TlsPlugin, id: u64, dir: Direction, data: Option<&[u8]>) {
        let pkt = Packet::pseudo(None);
        let ctx = PacketContext::new(&pkt, FlowContext::default());
        let f = Flow::new(FlowId(id), FiveTuple::default(), FlowContext::default());
        let data = match data {
            Some(data) => StreamData::Data { offset: 0, data },
            None => StreamData::Gap { offset: 0, len: 1 },
        };
        p.handle_stream(&ctx, &f, dir, data).unwrap();
    }

    fn end(p: &mut TlsPlugin, id: u64) {
        let f = Flow::new(FlowId(id), FiveTuple::default(), FlowContext::default());
        p.flow_destroyed(&f, EndReason::EndOfInput).unwrap();
    }

    /// The last hellos found for flow `id`: (client, server).
    fn hellos(p: &TlsPlugin, id: u64) -> (Option<serde_json::Value>, Option<serde_json::Value>) {
        let last = |side: usize| {
            p.log
                .iter()
                .rev()
                .find(|(f, i, _)| *f == FlowId(id) && *i == side)
                .map(|(_, _, h)| hello_json(h))
        };
        (last(0), last(1))
    }

    /// Every hello found for flow `id` on side `side`, as JSON.
    fn all_hellos(p: &TlsPlugin, id: u64, side: usize) -> Vec<serde_json::Value> {
        p.log
            .iter()
            .filter(|(f, i, _)| *f == FlowId(id) && *i == side)
            .map(|(_, _, h)| hello_json(h))
            .collect()
    }

    fn hello_json(h: &Hello) -> serde_json::Value {
        match h {
            Hello::Client(h) => serde_json::to_value(h).unwrap(),
            Hello::Server(h) => serde_json::to_value(h).unwrap(),
        }
    }

    /// Feeds a client stream and a server stream cut as given, both
    /// directions interleaved segment by segment.
    fn run(client: &[&[u8]], server: &[&[u8]]) -> TlsPlugin {
        let mut p = TlsPlugin::new(
            TlsConfig::default(),
            RecordSpool::new(&TLS, None),
            Format::Jsonl,
        );
        for k in 0..client.len().max(server.len()) {
            if let Some(seg) = client.get(k) {
                feed(&mut p, 1, Direction::ToServer, Some(seg));
            }
            if let Some(seg) = server.get(k) {
                feed(&mut p, 1, Direction::ToClient, Some(seg));
            }
        }
        p
    }

    #[test]
    fn hellos_are_the_same_whatever_the_segmentation() {
        let ch = crate::build::tls_client_hello("www.example.com", &["h2", "http/1.1"]);
        let sh = crate::build::tls_server_hello(0xc02f, Some("h2"));
        let whole = run(&[&ch], &[&sh]);
        let (Some(c), Some(s)) = hellos(&whole, 1) else {
            panic!("{:?}", hellos(&whole, 1))
        };
        assert_eq!(c["sni"], "www.example.com");
        assert_eq!(c["alpn"], serde_json::json!(["h2", "http/1.1"]));
        // JA3 by hand: TLS 1.2 (771), suites 0x1301 0xc02f 0x009c,
        // extensions SNI groups point-formats sigalgs ALPN versions,
        // groups x25519 secp256r1, point format uncompressed
        assert_eq!(c["ja3"], "771,4865-49199-156,0-10-11-13-16-43,29-23,0");
        // JA4: TLS 1.3 offered, SNI, 3 suites, 6 extensions, "h2"
        assert_eq!(
            c["ja4_r"],
            "t13d0306h2_009c,1301,c02f_000a,000b,000d,002b_0403,0804"
        );
        assert_eq!(s["alpn"], "h2");
        assert_eq!(s["ja3s"], "771,49199,65281-16");
        assert_eq!(s["cipher_suite"], 0xc02f);
        let expected = hellos(&whole, 1);
        let bytes = run(
            &ch.chunks(1).collect::<Vec<_>>(),
            &sh.chunks(1).collect::<Vec<_>>(),
        );
        assert_eq!(hellos(&bytes, 1), expected, "one byte per segment");
        for i in 1..ch.len().max(sh.len()) {
            let (c1, c2) = ch.split_at(i.min(ch.len() - 1));
            let (s1, s2) = sh.split_at(i.min(sh.len() - 1));
            let two = run(&[c1, c2], &[s1, s2]);
            assert_eq!(hellos(&two, 1), expected, "split at {i}");
            assert_eq!(two.held.tcp, 0);
        }
    }

    /// The JSON line of the record of `hello`.
    fn json_of(hello: &Hello, index: u64) -> serde_json::Value {
        let key = FiveTuple {
            src: std::net::IpAddr::from([10, 0, 0, 1]),
            dst: std::net::IpAddr::from([10, 0, 0, 2]),
            src_port: 40000,
            dst_port: 443,
            proto: ipproto::TCP,
        };
        let mut row = RowBuf::new(&TLS);
        fill_row(
            &mut row,
            Some(Timestamp(1_500_000_000)),
            FlowId(0xab),
            &key,
            index,
            hello,
            None,
        );
        let mut vals = Vec::new();
        crate::output::decode(&TLS, row.finish().expect("complete row"), &mut vals).unwrap();
        let buf = SharedBuf::default();
        let mut w = crate::output::writer(Format::Jsonl, &TLS, buf.clone()).unwrap();
        w.write_row(&vals).unwrap();
        w.finish().unwrap();
        let out = buf.0.lock().unwrap().clone();
        serde_json::from_slice(&out).unwrap()
    }

    #[derive(Default, Clone)]
    struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for SharedBuf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn records_name_every_code_and_leave_the_other_sides_fields_null() {
        let ch = crate::build::tls_client_hello("www.example.com", &["h2", "http/1.1"]);
        let sh = crate::build::tls_server_hello(0xc02f, Some("h2"));
        let p = run(&[&ch], &[&sh]);
        let c = json_of(&p.log[0].2, 0);
        assert_eq!(c["ts"], "1970-01-01T00:00:01.500000000Z");
        assert_eq!(c["flow_id"], "00000000000000ab");
        assert_eq!(c["hello"], "client_hello");
        assert_eq!(c["index"], 0);
        assert_eq!(
            (c["record_version"].as_u64(), c["legacy_version"].as_u64()),
            (Some(0x0301), Some(0x0303))
        );
        assert_eq!(c["version"], 0x0304);
        assert_eq!(c["version_name"], "TLS 1.3");
        assert_eq!(c["supported_versions"], serde_json::json!([0x0304, 0x0303]));
        assert_eq!(c["sni"], "www.example.com");
        assert_eq!(c["alpn"], serde_json::json!(["h2", "http/1.1"]));
        assert_eq!(c["ciphers"], serde_json::json!([0x1301, 0xc02f, 0x009c]));
        assert_eq!(
            c["cipher_names"],
            serde_json::json!([
                "TLS_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_RSA_WITH_AES_128_GCM_SHA256"
            ])
        );
        assert_eq!(c["extensions"], serde_json::json!([0, 10, 11, 13, 16, 43]));
        assert_eq!(
            c["extension_names"][4],
            "application_layer_protocol_negotiation"
        );
        assert_eq!(c["groups"], serde_json::json!([29, 23]));
        assert_eq!(c["ec_point_formats"], serde_json::json!([0]));
        assert_eq!(
            c["signature_algorithms"],
            serde_json::json!([0x0403, 0x0804])
        );
        assert_eq!(c["ja3"], "771,4865-49199-156,0-10-11-13-16-43,29-23,0");
        assert!(c["ja4"].as_str().unwrap().starts_with("t13d0306h2_"));
        for k in [
            "cipher",
            "cipher_name",
            "compression",
            "ja3s",
            "ja3s_hash",
            "ja4s",
            "ja4s_r",
        ] {
            assert!(c.get(k).is_none(), "{k} in a client record: {c}");
        }
        let s = json_of(&p.log[1].2, 0);
        assert_eq!(s["hello"], "server_hello");
        assert_eq!(s["version_name"], "TLS 1.2");
        assert_eq!(s["cipher"], 0xc02f);
        assert_eq!(s["cipher_name"], "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
        assert_eq!(s["compression"], 0);
        assert_eq!(s["alpn"], serde_json::json!(["h2"]));
        assert_eq!(
            s["extension_names"],
            serde_json::json!([
                "renegotiation_info",
                "application_layer_protocol_negotiation"
            ])
        );
        assert_eq!(s["ja3s"], "771,49199,65281-16");
        // JA4S by hand: TLS 1.2, 2 extensions, "h2", c02f, ff01,0010 hashed
        let hash = {
            use sha2::Digest as _;
            let d = sha2::Sha256::digest(b"ff01,0010");
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        assert_eq!(s["ja4s"], format!("t1202h2_c02f_{}", &hash[..12]));
        assert_eq!(s["ja4s_r"], "t1202h2_c02f_ff01,0010");
        for k in [
            "sni",
            "ciphers",
            "cipher_names",
            "groups",
            "ja3",
            "ja4",
            "ja4_r",
            "supported_versions",
        ] {
            assert!(s.get(k).is_none(), "{k} in a server record: {s}");
        }
    }

    #[test]
    fn every_hello_of_a_tls13_retry_is_written() {
        use test_support::{records, tls13_server_hello};
        let ch = crate::build::tls_client_hello("retry.example", &[]);
        let ccs = records(20, &[1], 1);
        let app = records(23, &[9; 30], 1 << 14);
        // server: HelloRetryRequest, ChangeCipherSpec; later the
        // ServerHello and its encrypted flight
        let mut s1 = tls13_server_hello(true);
        s1.extend_from_slice(&ccs);
        let mut s2 = tls13_server_hello(false);
        s2.extend_from_slice(&app);
        // client: ClientHello; later ChangeCipherSpec, second ClientHello;
        // then its encrypted Finished
        let mut c2 = ccs.clone();
        c2.extend_from_slice(&ch);
        let p = run(&[&ch, &c2, &app], &[&s1, &s2]);
        let kinds: Vec<(usize, String, u64)> = p
            .log
            .iter()
            .enumerate()
            .map(|(n, (_, side, h))| {
                let j = json_of(h, [0, 0, 1, 1][n.min(3)]);
                (
                    *side,
                    j["hello"].as_str().unwrap().to_string(),
                    j["index"].as_u64().unwrap(),
                )
            })
            .collect();
        // order of discovery: CH, HRR, CH, SH
        assert_eq!(
            kinds
                .iter()
                .map(|k| (k.0, k.1.as_str()))
                .collect::<Vec<_>>(),
            [
                (0, "client_hello"),
                (1, "hello_retry_request"),
                (0, "client_hello"),
                (1, "server_hello")
            ]
        );
        let conn = &p.conns[&FlowId(1)];
        assert_eq!((conn.sides[0].hellos, conn.sides[1].hellos), (2, 2));
        assert!(
            conn.sides.iter().all(|s| s.done),
            "application data ends both searches"
        );
        assert_eq!(p.hellos, 4);
        // TLS 1.2: the client's ChangeCipherSpec starts encryption, a
        // handshake record after it is not a hello
        let sh = crate::build::tls_server_hello(0xc02f, None);
        let p = run(&[&ch, &c2], &[&sh]);
        assert_eq!(p.hellos, 2, "{:?}", p.log);
        assert!(p.conns[&FlowId(1)].sides.iter().all(|s| s.done));
    }

    #[test]
    fn a_hello_whose_group_never_ends_is_written_at_the_flow_end() {
        use test_support::{handshake, records};
        // ServerHello and the start of a Certificate in one record: the
        // capture ends before the Certificate does
        let sh = crate::build::tls_server_hello(0xc02f, None);
        let mut msgs = sh[5..].to_vec();
        msgs.extend_from_slice(&handshake(11, &[3; 2000])[..500]);
        let server = records(22, &msgs, 1 << 14);
        let mut p = run(&[], &[&server]);
        assert!(p.log.is_empty(), "the group is still open");
        end(&mut p, 1);
        assert_eq!(p.log.len(), 1);
        assert!(matches!(&p.log[0].2, Hello::Server(h) if h.cipher_suite == 0xc02f));
        assert_eq!((p.hellos, p.connections, p.held.tcp), (1, 1, 0));
    }

    type OldSide = (Vec<u8>, bool, Vec<serde_json::Value>);

    /// One segment of a flow and direction (a gap when `None`).
    type Segment = (u64, usize, Option<Vec<u8>>);

    /// The old plugin (before the incremental parser), for one worker: the
    /// per-side buffer parsed again from its start on every segment; with
    /// the search going on after a hello while more may come (the client
    /// until encryption or application data, the server after a
    /// HelloRetryRequest).
    #[derive(Debug, Default)]
    struct OldPlugin {
        /// Per (flow, direction): buffer, done, hellos.
        sides: HashMap<(u64, usize), OldSide>,
        /// Flows whose server chose TLS 1.3.
        tls13: std::collections::HashSet<u64>,
        buffered: usize,
        over_budget: u64,
    }

    impl OldPlugin {
        /// The old `handle_stream`, line for line.
        fn handle(&mut self, cfg: &TlsConfig, id: u64, i: usize, data: Option<&[u8]>) {
            let tls13 = self.tls13.contains(&id);
            let side = self.sides.entry((id, i)).or_default();
            let (buf, done, hellos) = side;
            if *done {
                return;
            }
            let held = buf.len();
            let Some(data) = data else {
                *done = true;
                *buf = Vec::new();
                self.buffered = self.buffered.saturating_sub(held);
                return;
            };
            if self.buffered.saturating_add(data.len()) > cfg.max_total_buffer {
                *done = true;
                *buf = Vec::new();
                self.buffered = self.buffered.saturating_sub(held);
                self.over_budget += 1;
                return;
            }
            buf.extend_from_slice(data);
            let (events, consumed) = test_support::old_parse_tls_records(buf);
            for ev in events {
                match ev {
                    TlsEvent::ClientHello(h) if i == 0 => {
                        hellos.push(serde_json::to_value(&h).unwrap());
                    }
                    TlsEvent::ServerHello(h) if i == 1 => {
                        hellos.push(serde_json::to_value(&h).unwrap());
                        if h.version == 0x0304 || h.hello_retry_request {
                            self.tls13.insert(id);
                        }
                        if !h.hello_retry_request {
                            *done = true;
                        }
                    }
                    TlsEvent::ChangeCipherSpec if tls13 => {}
                    TlsEvent::Invalid { .. }
                    | TlsEvent::ApplicationData { .. }
                    | TlsEvent::EncryptedHandshake { .. }
                    | TlsEvent::ChangeCipherSpec => {
                        *done = true;
                    }
                    _ => {}
                }
                if *done {
                    break;
                }
            }
            if *done || buf.len() > cfg.max_buffer {
                *done = true;
                *buf = Vec::new();
            } else {
                buf.drain(..consumed.min(buf.len()));
            }
            self.buffered = self.buffered.saturating_sub(held).saturating_add(buf.len());
        }

        fn end(&mut self, id: u64) {
            for i in 0..2 {
                if let Some((buf, ..)) = self.sides.remove(&(id, i)) {
                    self.buffered = self.buffered.saturating_sub(buf.len());
                }
            }
        }
    }

    /// Client and server streams of every kind: hellos whole and in small
    /// records, two hellos in one segment, a padded hello in small records,
    /// a flight with a large Certificate, encrypted records, non-TLS bytes,
    /// a group that never ends.
    fn plugin_streams() -> Vec<Vec<u8>> {
        use crate::build::{tls_client_hello, tls_server_hello};
        use test_support::{padded_client_hello, records, server_flight};
        let ch = tls_client_hello("a.example", &["h2"]);
        let ch2 = tls_client_hello("b.example", &[]);
        let sh = tls_server_hello(0x1301, None);
        let mut two = ch.clone();
        two.extend_from_slice(&ch2);
        let mut sh_ccs = sh.clone();
        sh_ccs.extend(records(20, &[1], 1));
        sh_ccs.extend(records(23, &[9; 30], 1 << 14));
        let mut app_first = records(23, &[1; 20], 1 << 14);
        app_first.extend_from_slice(&ch);
        let mut never_ends = sh[5..].to_vec();
        never_ends.extend(test_support::handshake(11, &[3; 2000]));
        let never_ends = records(22, &never_ends[..1500], 300);
        let mut not_tls = ch[..20].to_vec();
        not_tls.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        vec![
            ch.clone(),
            records(22, &ch[5..], 7),
            two,
            records(22, &padded_client_hello(3000), 50),
            sh.clone(),
            server_flight(5000, 1000),
            sh_ccs,
            app_first,
            never_ends,
            not_tls,
        ]
    }

    #[test]
    fn plugin_gives_the_old_results_and_budget_for_any_cuts() {
        let mut rng = test_support::XorShift(0x1234_5678_9abc_def1);
        let pool = plugin_streams();
        let mut seen_hellos = 0;
        let mut seen_over_budget = 0;
        for round in 0..150 {
            let cfg = TlsConfig {
                max_buffer: [400, 2000, 6000, 1 << 18][round % 4],
                max_total_buffer: [3000, 12_000, 1 << 26][round % 3],
                // the old plugin read TLS from a stream's first byte only
                max_preamble: 0,
            };
            let mut p = TlsPlugin::new(cfg, RecordSpool::new(&TLS, None), Format::Jsonl);
            let mut old = OldPlugin::default();
            // six flows, both directions, their segments interleaved
            let mut segs: Vec<Segment> = Vec::new();
            let mut queues: Vec<Vec<Segment>> = Vec::new();
            for id in 0..6u64 {
                for i in 0..2 {
                    let mut s = pool[rng.next() as usize % pool.len()].clone();
                    if rng.next().is_multiple_of(4) {
                        let x = rng.next();
                        let at = x as usize % s.len();
                        s[at] = (x >> 40) as u8;
                    }
                    let max = [1, 3, 64, 1460, 100_000][rng.next() as usize % 5];
                    let mut q: Vec<_> = rng
                        .cuts(&s, max)
                        .into_iter()
                        .map(|c| (id, i, Some(c.to_vec())))
                        .collect();
                    if rng.next().is_multiple_of(8) {
                        let at = rng.next() as usize % (q.len() + 1);
                        q.insert(at, (id, i, None));
                    }
                    q.reverse();
                    queues.push(q);
                }
            }
            while queues.iter().any(|q| !q.is_empty()) {
                let k = rng.next() as usize % queues.len();
                if let Some(seg) = queues[k].pop() {
                    segs.push(seg);
                }
            }
            for (id, i, data) in &segs {
                let dir = [Direction::ToServer, Direction::ToClient][*i];
                feed(&mut p, *id, dir, data.as_deref());
                old.handle(&cfg, *id, *i, data.as_deref());
                assert_eq!(p.held.tcp, old.buffered, "round {round}");
                assert_eq!(p.over_budget, old.over_budget, "round {round}");
                let side = &p.conns[&FlowId(*id)].sides[*i];
                let (buf, done, hellos) = &old.sides[&(*id, *i)];
                assert_eq!(side.done, *done, "round {round}");
                assert_eq!(&all_hellos(&p, *id, *i), hellos, "round {round}");
                assert_eq!(side.hellos, hellos.len() as u64, "round {round}");
                assert_eq!(side.held(), buf.len(), "round {round}");
                let parser_held = side.search.as_ref().map_or(0, |s| s.parser.held());
                assert!(parser_held <= 2 * side.held() + 16);
                assert_eq!(side.search.is_none(), side.done, "freed once done");
            }
            for id in 0..6u64 {
                seen_hellos += p.conns[&FlowId(id)]
                    .sides
                    .iter()
                    .map(|s| s.hellos)
                    .sum::<u64>();
                end(&mut p, id);
                old.end(id);
                assert_eq!(p.held.tcp, old.buffered);
            }
            assert_eq!(p.held.tcp, 0);
            seen_over_budget += p.over_budget;
        }
        // the rounds did exercise both outcomes
        assert!(seen_hellos > 300, "{seen_hellos}");
        assert!(seen_over_budget > 40, "{seen_over_budget}");
    }

    #[test]
    fn large_handshakes_over_many_records_cost_linear_work() {
        use test_support::{handshake, padded_client_hello, records, server_flight};
        let ch = crate::build::tls_client_hello("www.example.com", &["h2", "http/1.1"]);
        // client: a 200 KB handshake message in 64-byte records before its
        // ClientHello; server: ServerHello, 200 KB Certificate, in 16 KiB
        // records, the ServerHello's group ending with the Certificate
        let mut client = records(22, &handshake(11, &[5; 200_000]), 64);
        client.extend_from_slice(&ch);
        let server = server_flight(200_000, 1 << 14);
        let n = (client.len() + server.len()) as u64;
        let p = run(
            &client.chunks(1460).collect::<Vec<_>>(),
            &server.chunks(1460).collect::<Vec<_>>(),
        );
        let (Some(c), Some(s)) = hellos(&p, 1) else {
            panic!("{:?}", hellos(&p, 1))
        };
        assert_eq!(c["sni"], "www.example.com");
        assert_eq!(s["alpn"], "h2");
        assert!(p.examined <= 4 * n, "{} bytes examined for {n}", p.examined);
        assert_eq!(p.held.tcp, 0);

        // a ClientHello padded to 30 KB, in records of one byte
        let m = padded_client_hello(30_000);
        let (reference, _) = crate::proto::tls::parse_tls_records(&records(22, &m, 1 << 14));
        let Some(TlsEvent::ClientHello(expected)) = reference.first() else {
            panic!("{reference:?}")
        };
        let client = records(22, &m, 1);
        for seg in [1, 1460] {
            let p = run(&client.chunks(seg).collect::<Vec<_>>(), &[]);
            let (c, _) = hellos(&p, 1);
            assert_eq!(c, serde_json::to_value(expected).ok(), "segments of {seg}");
            let n = client.len() as u64;
            assert!(p.examined <= 4 * n, "{} bytes examined for {n}", p.examined);
        }
    }
}
