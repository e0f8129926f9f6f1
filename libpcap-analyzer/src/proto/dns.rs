//! DNS message parser (RFC 1035, RFC 3596 AAAA, RFC 2782 SRV, RFC 6891 EDNS(0)).
//!
//! ```text
//!                                 1  1  1  1  1  1
//!   0  1  2  3  4  5  6  7  8  9  0  1  2  3  4  5
//! +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
//! |                      ID                       |
//! |QR|   Opcode  |AA|TC|RD|RA|   Z    |   RCODE   |
//! |                    QDCOUNT                    |
//! |                    ANCOUNT                    |
//! |                    NSCOUNT                    |
//! |                    ARCOUNT                    |
//! +--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+--+
//! ```
//!
//! Parsers are pure `nom` functions over the whole message (compression
//! pointers are offsets from the start of the message). Nothing here panics on
//! input, and no allocation is sized from a count read off the wire beyond a
//! small cap (16 records per section are preallocated; more are pushed one by
//! one as they are decoded), and a count that cannot fit in the remaining
//! bytes is rejected up front.
//!
//! # Name presentation
//!
//! Names are rendered the way tshark shows `dns.qry.name`: labels joined by
//! `.`, no trailing dot, and the root name as `<Root>`. Label bytes use the
//! RFC 4343 §2.1 / RFC 1035 §5.1 presentation escaping (as `dig` does):
//! a `.` or `\` inside a label is written `\.` / `\\`, and any byte outside
//! printable ASCII `0x21..=0x7E` (including space) is written `\DDD` with three
//! decimal digits. Case is preserved.
//!
//! # Compression limits
//!
//! Pointers may go forward or backward, but a name may follow at most
//! [`MAX_POINTER_JUMPS`] pointers, its uncompressed wire form may not exceed
//! 255 bytes, and label length bytes `0x40..=0xBF` (labels over 63 bytes, or the
//! obsolete extended label types) are rejected.

use crate::output::iptext::IpText;
use crate::wire::{be16, be32};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::to_hex;
use nom::bytes::complete::take;
use nom::error::{ErrorKind, ParseError};
use nom::number::complete::{be_u8, be_u16, be_u32};
use nom::{IResult, Parser};
use serde::Serialize;

/// Largest number of compression pointers followed while reading one name.
pub const MAX_POINTER_JUMPS: usize = 64;
/// Largest uncompressed wire length of a name (RFC 1035 §2.3.4).
pub const MAX_NAME_WIRE_LEN: usize = 255;
/// Fixed DNS header length.
pub const DNS_HEADER_LEN: usize = 12;

/// Which section of a message a record count belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DnsSection {
    /// Question section (QDCOUNT).
    Question,
    /// Answer section (ANCOUNT).
    Answer,
    /// Authority section (NSCOUNT).
    Authority,
    /// Additional section (ARCOUNT).
    Additional,
}

impl std::fmt::Display for DnsSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            DnsSection::Question => "question",
            DnsSection::Answer => "answer",
            DnsSection::Authority => "authority",
            DnsSection::Additional => "additional",
        };
        f.write_str(s)
    }
}

/// Errors returned by the DNS parsers. Offsets are from the start of the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The message ends before a field that starts at `offset`.
    #[error("dns: truncated at offset {offset}")]
    Truncated {
        /// Offset of the field that could not be read.
        offset: usize,
    },
    /// A label length byte in `0x40..=0xBF` (label over 63 bytes or extended label type).
    #[error("dns: label length byte {len:#x} at offset {offset} is over 63")]
    LabelTooLong {
        /// Offset of the length byte.
        offset: usize,
        /// The length byte.
        len: u8,
    },
    /// A name whose uncompressed form is longer than 255 bytes.
    #[error("dns: name at offset {offset} is longer than 255 bytes")]
    NameTooLong {
        /// Offset where the name starts.
        offset: usize,
    },
    /// A name that follows more than [`MAX_POINTER_JUMPS`] compression pointers.
    #[error("dns: compression pointer loop in name at offset {offset}")]
    PointerLoop {
        /// Offset where the name starts.
        offset: usize,
    },
    /// A compression pointer to a position outside the message.
    #[error("dns: compression pointer at offset {offset} points outside the message ({target})")]
    BadPointer {
        /// Offset of the pointer.
        offset: usize,
        /// Target offset of the pointer.
        target: usize,
    },
    /// A section count that cannot fit in the bytes left in the message.
    #[error("dns: {section} count {claimed} cannot fit in the {available} bytes left")]
    TooManyRecords {
        /// Section of the count.
        section: DnsSection,
        /// Count claimed by the header.
        claimed: u16,
        /// Bytes left in the message when the section starts.
        available: usize,
    },
    /// RDATA that does not match its type or its RDLENGTH.
    #[error("dns: invalid RDATA for type {rtype} at offset {offset}")]
    InvalidRData {
        /// Record type.
        rtype: u16,
        /// Offset where the RDATA starts.
        offset: usize,
    },
}

/// A domain name in presentation form. Names of up to 24 bytes (most) are
/// kept inline, without an allocation ([`compact_str`]); it derefs to `str`.
pub type DnsName = compact_str::CompactString;

/// A question entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsQuestion {
    /// Queried name (see the module docs for the presentation format).
    pub name: DnsName,
    /// Query type, serialized as its mnemonic (see [`rr_type_name`]).
    #[serde(rename = "type", serialize_with = "ser_rr_type")]
    pub qtype: u16,
    /// Query class.
    #[serde(rename = "class")]
    pub qclass: u16,
}

/// A resource record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsRecord {
    /// Owner name.
    pub name: DnsName,
    /// Record type, serialized as its mnemonic (see [`rr_type_name`]).
    #[serde(rename = "type", serialize_with = "ser_rr_type")]
    pub rtype: u16,
    /// Record class (for OPT: the requestor's UDP payload size).
    #[serde(rename = "class")]
    pub rclass: u16,
    /// Time to live (for OPT: extended rcode, version and flags).
    pub ttl: u32,
    /// Decoded RDATA.
    pub data: DnsRData,
}

/// Decoded RDATA. Serialized untagged: the record's `type` names the variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum DnsRData {
    /// IPv4 address (type 1).
    A(Ipv4Addr),
    /// IPv6 address (type 28, RFC 3596).
    Aaaa(Ipv6Addr),
    /// Canonical name (type 5).
    Cname(DnsName),
    /// Name server (type 2).
    Ns(DnsName),
    /// Domain name pointer (type 12).
    Ptr(DnsName),
    /// Mail exchange (type 15).
    Mx {
        /// Preference.
        preference: u16,
        /// Exchange host.
        exchange: DnsName,
    },
    /// Text strings (type 16), each rendered with the label escaping rules.
    Txt(Vec<String>),
    /// Start of authority (type 6).
    Soa {
        /// Primary name server.
        mname: DnsName,
        /// Responsible mailbox.
        rname: DnsName,
        /// Serial number.
        serial: u32,
        /// Refresh interval.
        refresh: u32,
        /// Retry interval.
        retry: u32,
        /// Expire limit.
        expire: u32,
        /// Minimum / negative-caching TTL.
        minimum: u32,
    },
    /// Service location (type 33, RFC 2782).
    Srv {
        /// Priority.
        priority: u16,
        /// Weight.
        weight: u16,
        /// Port.
        port: u16,
        /// Target host.
        target: DnsName,
    },
    /// EDNS(0) pseudo-record (type 41, RFC 6891).
    Opt {
        /// Requestor's UDP payload size (the CLASS field).
        udp_payload_size: u16,
        /// Upper 8 bits of the extended rcode.
        ext_rcode: u8,
        /// EDNS version.
        version: u8,
        /// DNSSEC OK bit.
        do_bit: bool,
        /// Options as `(code, data)`; data serialized as lowercase hex.
        #[serde(serialize_with = "ser_opt_options")]
        options: Vec<(u16, Vec<u8>)>,
    },
    /// Any other type: raw RDATA, serialized as lowercase hex.
    Other(#[serde(serialize_with = "ser_hex")] Vec<u8>),
}

impl DnsRData {
    /// The data as one line of text, the way zone files write it (an
    /// address, a name, `PREFERENCE EXCHANGE` for MX, the quoted strings of
    /// TXT, the SOA and SRV fields; OPT as `udp=SIZE ver=V do=B`; other
    /// types as lowercase hex).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.write_text(&mut s);
        s
    }

    /// Appends [`DnsRData::to_text`] to `out` (addresses and names without
    /// an allocation of their own).
    pub fn write_text(&self, out: &mut String) {
        let text = match self {
            DnsRData::A(a) => {
                out.push_str(IpText::new(&IpAddr::V4(*a)).as_str());
                return;
            }
            DnsRData::Aaaa(a) => {
                out.push_str(IpText::new(&IpAddr::V6(*a)).as_str());
                return;
            }
            DnsRData::Cname(n) | DnsRData::Ns(n) | DnsRData::Ptr(n) => {
                out.push_str(n);
                return;
            }
            other => other.other_text(),
        };
        out.push_str(&text);
    }

    /// The text of the types not written in place by [`DnsRData::write_text`].
    fn other_text(&self) -> String {
        match self {
            DnsRData::A(_) | DnsRData::Aaaa(_) => String::new(),
            DnsRData::Cname(n) | DnsRData::Ns(n) | DnsRData::Ptr(n) => n.to_string(),
            DnsRData::Mx {
                preference,
                exchange,
            } => format!("{preference} {exchange}"),
            DnsRData::Txt(parts) => parts
                .iter()
                .map(|p| format!("\"{}\"", p.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect::<Vec<_>>()
                .join(" "),
            DnsRData::Soa {
                mname,
                rname,
                serial,
                refresh,
                retry,
                expire,
                minimum,
            } => format!("{mname} {rname} {serial} {refresh} {retry} {expire} {minimum}"),
            DnsRData::Srv {
                priority,
                weight,
                port,
                target,
            } => format!("{priority} {weight} {port} {target}"),
            DnsRData::Opt {
                udp_payload_size,
                version,
                do_bit,
                ..
            } => format!(
                "udp={udp_payload_size} ver={version} do={}",
                u8::from(*do_bit)
            ),
            DnsRData::Other(raw) => to_hex(raw),
        }
    }
}

/// A parsed DNS message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DnsMessage {
    /// Transaction id.
    pub id: u16,
    /// QR bit.
    pub is_response: bool,
    /// Opcode (4 bits).
    pub opcode: u8,
    /// AA bit.
    pub authoritative: bool,
    /// TC bit.
    pub truncated: bool,
    /// RD bit.
    pub recursion_desired: bool,
    /// RA bit.
    pub recursion_available: bool,
    /// Response code: header RCODE, plus `ext_rcode << 4` when an OPT RR is present.
    pub rcode: u16,
    /// The header's whole flags word (QR, opcode, AA, TC, RD, RA, Z, AD,
    /// CD, RCODE), for the bits not given their own field.
    #[serde(skip)]
    pub flags: u16,
    /// Question section.
    pub questions: Vec<DnsQuestion>,
    /// Answer section.
    pub answers: Vec<DnsRecord>,
    /// Authority section.
    pub authorities: Vec<DnsRecord>,
    /// Additional section (including the OPT pseudo-record, if any).
    pub additionals: Vec<DnsRecord>,
    /// The section where decoding stopped on damaged bytes, with what was
    /// wrong: the records before the damage are kept (the sections before
    /// it whole, it up to the damaged record), the sections after it are
    /// empty. `None` for a message decoded to its end.
    #[serde(skip)]
    pub damaged: Option<(DnsSection, DnsError)>,
}

/// The mnemonic of an RR type from the IANA registry ("Resource Record
/// (RR) TYPEs", as of 2025), or `None` when unassigned.
pub fn rr_type_mnemonic(rtype: u16) -> Option<&'static str> {
    Some(match rtype {
        1 => "A",
        2 => "NS",
        3 => "MD",
        4 => "MF",
        5 => "CNAME",
        6 => "SOA",
        7 => "MB",
        8 => "MG",
        9 => "MR",
        10 => "NULL",
        11 => "WKS",
        12 => "PTR",
        13 => "HINFO",
        14 => "MINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        19 => "X25",
        20 => "ISDN",
        21 => "RT",
        22 => "NSAP",
        23 => "NSAP-PTR",
        24 => "SIG",
        25 => "KEY",
        26 => "PX",
        27 => "GPOS",
        28 => "AAAA",
        29 => "LOC",
        30 => "NXT",
        31 => "EID",
        32 => "NIMLOC",
        33 => "SRV",
        34 => "ATMA",
        35 => "NAPTR",
        36 => "KX",
        37 => "CERT",
        38 => "A6",
        39 => "DNAME",
        40 => "SINK",
        41 => "OPT",
        42 => "APL",
        43 => "DS",
        44 => "SSHFP",
        45 => "IPSECKEY",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        49 => "DHCID",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        53 => "SMIMEA",
        55 => "HIP",
        56 => "NINFO",
        57 => "RKEY",
        58 => "TALINK",
        59 => "CDS",
        60 => "CDNSKEY",
        61 => "OPENPGPKEY",
        62 => "CSYNC",
        63 => "ZONEMD",
        64 => "SVCB",
        65 => "HTTPS",
        66 => "DSYNC",
        67 => "HHIT",
        68 => "BRID",
        99 => "SPF",
        100 => "UINFO",
        101 => "UID",
        102 => "GID",
        103 => "UNSPEC",
        104 => "NID",
        105 => "L32",
        106 => "L64",
        107 => "LP",
        108 => "EUI48",
        109 => "EUI64",
        128 => "NXNAME",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        253 => "MAILB",
        254 => "MAILA",
        // IANA writes "*"; every tool says ANY
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        258 => "AVC",
        259 => "DOA",
        260 => "AMTRELAY",
        261 => "RESINFO",
        262 => "WALLET",
        263 => "CLA",
        264 => "IPN",
        32768 => "TA",
        32769 => "DLV",
        _ => return None,
    })
}

/// Returns the mnemonic of an RR type (`"A"`, `"AAAA"`, `"NULL"`, ...),
/// or `"TYPE<n>"` (RFC 3597) when unassigned.
pub fn rr_type_name(rtype: u16) -> String {
    match rr_type_mnemonic(rtype) {
        Some(s) => s.to_string(),
        None => format!("TYPE{rtype}"),
    }
}

/// The name of a DNS opcode (IANA "DNS OpCodes"), or `None` when
/// unassigned.
pub fn opcode_name(opcode: u8) -> Option<&'static str> {
    Some(match opcode {
        0 => "QUERY",
        1 => "IQUERY",
        2 => "STATUS",
        4 => "NOTIFY",
        5 => "UPDATE",
        6 => "DSO",
        _ => return None,
    })
}

/// The name of a DNS response code (IANA "DNS RCODEs"; 16 is BADVERS as an
/// extended rcode), or `None` when unassigned.
pub fn rcode_name(rcode: u16) -> Option<&'static str> {
    Some(match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        11 => "DSOTYPENI",
        16 => "BADVERS",
        17 => "BADKEY",
        18 => "BADTIME",
        19 => "BADMODE",
        20 => "BADNAME",
        21 => "BADALG",
        22 => "BADTRUNC",
        23 => "BADCOOKIE",
        _ => return None,
    })
}

/// The name of a DNS class as Zeek writes it (`C_INTERNET`, …; IANA "DNS
/// CLASSes"), or `None` when unassigned.
pub fn class_name(class: u16) -> Option<&'static str> {
    Some(match class {
        1 => "C_INTERNET",
        3 => "C_CHAOS",
        4 => "C_HESIOD",
        254 => "C_NONE",
        255 => "C_ANY",
        _ => return None,
    })
}

fn ser_rr_type<S: serde::Serializer>(t: &u16, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rr_type_name(*t))
}

fn ser_hex<S: serde::Serializer>(d: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&to_hex(d))
}

fn ser_opt_options<S: serde::Serializer>(o: &[(u16, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Opt {
        code: u16,
        data: String,
    }
    s.collect_seq(o.iter().map(|(code, d)| Opt {
        code: *code,
        data: to_hex(d),
    }))
}

/// Internal nom error: the remaining input length (to compute an offset) and,
/// for semantic errors, the [`DnsError`] itself.
#[derive(Debug)]
struct PErr {
    remaining: usize,
    kind: Option<DnsError>,
}

impl ParseError<&[u8]> for PErr {
    fn from_error_kind(input: &[u8], _kind: ErrorKind) -> Self {
        PErr {
            remaining: input.len(),
            kind: None,
        }
    }
    fn append(_input: &[u8], _kind: ErrorKind, other: Self) -> Self {
        other
    }
}

type PResult<'a, T> = IResult<&'a [u8], T, PErr>;

fn fail<T>(e: DnsError) -> Result<T, nom::Err<PErr>> {
    Err(nom::Err::Failure(PErr {
        remaining: 0,
        kind: Some(e),
    }))
}

/// Converts a nom error into a [`DnsError`] for a message of `msg_len` bytes.
fn to_dns_error(e: nom::Err<PErr>, msg_len: usize) -> DnsError {
    match e {
        nom::Err::Incomplete(_) => DnsError::Truncated { offset: msg_len },
        nom::Err::Error(p) | nom::Err::Failure(p) => p.kind.unwrap_or(DnsError::Truncated {
            offset: msg_len.saturating_sub(p.remaining),
        }),
    }
}

/// Where [`push_escaped_label`] writes.
trait Bytes {
    fn put(&mut self, b: &[u8]);
}

impl Bytes for Vec<u8> {
    fn put(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
}

/// Bytes of a name's presentation form kept on the stack: every name
/// without escapes (at most 253 bytes); a longer one moves to the heap.
const NAME_STACK: usize = 256;

/// A name's presentation bytes, built on the stack.
struct NameText {
    buf: [u8; NAME_STACK],
    len: usize,
    /// All the bytes, once they outgrew `buf`.
    spill: Vec<u8>,
}

impl NameText {
    fn new() -> NameText {
        NameText {
            buf: [0; NAME_STACK],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0 && self.spill.is_empty()
    }

    fn bytes(&self) -> &[u8] {
        if self.spill.is_empty() {
            self.buf.get(..self.len).unwrap_or_default()
        } else {
            &self.spill
        }
    }

    /// The name (only ASCII is ever written).
    fn name(&self) -> DnsName {
        match std::str::from_utf8(self.bytes()) {
            Ok(s) => DnsName::from(s),
            Err(_) => DnsName::from(String::from_utf8_lossy(self.bytes())),
        }
    }
}

impl NameText {
    /// Appends a label (after a `.` unless it is the first) with
    /// [`push_escaped_label`]'s escaping: a label with nothing to escape
    /// is copied and checked in one pass.
    fn push_label(&mut self, label: &[u8]) {
        if self.spill.is_empty() {
            let body_at = self.len.saturating_add(usize::from(self.len != 0));
            let end = body_at.saturating_add(label.len());
            if let Some(dst) = self.buf.get_mut(self.len..end) {
                let (dot, body) = dst.split_at_mut(dst.len().saturating_sub(label.len()));
                if let Some(d) = dot.first_mut() {
                    *d = b'.';
                }
                let mut plain = true;
                for (d, &b) in body.iter_mut().zip(label) {
                    *d = b;
                    plain &= is_plain(b);
                }
                if plain {
                    self.len = end;
                    return;
                }
            }
        }
        if !self.is_empty() {
            self.put(b".");
        }
        push_escaped_label(self, label);
    }
}

impl Bytes for NameText {
    fn put(&mut self, b: &[u8]) {
        if self.spill.is_empty() {
            let end = self.len.saturating_add(b.len());
            if let Some(dst) = self.buf.get_mut(self.len..end) {
                dst.copy_from_slice(b);
                self.len = end;
                return;
            }
            self.spill
                .extend_from_slice(self.buf.get(..self.len).unwrap_or_default());
        }
        self.spill.extend_from_slice(b);
    }
}

/// The bytes a label shows as they are: printable ASCII but `.` and `\\`.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x21u8;
    while b <= 0x7e {
        t[b as usize] = b != b'.' && b != b'\\';
        b += 1;
    }
    t
};

/// Whether a label byte is written as it is (see [`PLAIN`]).
fn is_plain(b: u8) -> bool {
    PLAIN.get(usize::from(b)).copied().unwrap_or(false)
}

/// Appends one label to `out` with RFC 4343 presentation escaping. Only
/// ASCII is written, so `out` stays valid UTF-8.
fn push_escaped_label(out: &mut impl Bytes, label: &[u8]) {
    // fast path: a whole label with nothing to escape
    if label.iter().all(|&b| is_plain(b)) {
        out.put(label);
        return;
    }
    for &b in label {
        match b {
            b'.' | b'\\' => out.put(&[b'\\', b]),
            0x21..=0x7e => out.put(&[b]),
            _ => out.put(&[b'\\', b'0' + b / 100, b'0' + b / 10 % 10, b'0' + b % 10]),
        }
    }
}

/// The presentation bytes built by [`push_escaped_label`] as a `String`.
fn ascii_string(v: Vec<u8>) -> String {
    // always Ok: only ASCII is ever written
    String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Names already rendered, by the offset where their (pointer-free) labels
/// start in the message: the question names, which the records of a
/// response usually point back to (`c0 0c`).
type Known<'n> = [(usize, &'n DnsName)];

/// The presentation of the root name.
const ROOT: &str = "<Root>";

/// An unused slot of a [`Known`] table.
static NO_NAME: DnsName = DnsName::const_new("");

/// Wire length of the name at `start` when it is made of labels only (no
/// compression pointer), else `None`.
fn plain_name_len(msg: &[u8], start: usize) -> Option<usize> {
    let mut pos = start;
    loop {
        match *msg.get(pos)? {
            0 => return Some(pos.saturating_sub(start).saturating_add(1)),
            l @ 1..=63 => pos = pos.saturating_add(usize::from(l) + 1),
            _ => return None,
        }
    }
}

/// The name at `start` when it is made of labels only (no pointer), with
/// nothing to escape, at least one label, and within the length limit (the
/// usual question name), and the offset just past it; else `None` (the
/// general path then reads it, or reports what is wrong). Its presentation
/// is its wire bytes after the first length byte, with the other length
/// bytes made dots: one copy, no escaping.
fn plain_name(msg: &[u8], start: usize) -> Option<(DnsName, usize)> {
    let wire = plain_name_len(msg, start)?;
    if wire > MAX_NAME_WIRE_LEN {
        return None;
    }
    // the labels without the first length byte and the root label (none
    // for the root name itself, which has no label)
    let span = msg.get(start.saturating_add(1)..start.saturating_add(wire - 1))?;
    let first_len = usize::from(*msg.get(start)?);
    // most names fit the small buffer, cheaper to clear
    let name = if span.len() <= 64 {
        dotted::<64>(span, first_len)?
    } else {
        dotted::<MAX_NAME_WIRE_LEN>(span, first_len)?
    };
    Some((name, start.saturating_add(wire)))
}

/// The labels `span` (a name's wire bytes after its first length byte,
/// `first_len`; the walk of [`plain_name_len`] found them whole) with their
/// length bytes made dots, in a stack buffer of `N` bytes; `None` when it
/// does not fit or a label has a byte to escape.
fn dotted<const N: usize>(span: &[u8], first_len: usize) -> Option<DnsName> {
    let mut buf = [0u8; N];
    let text = buf.get_mut(..span.len())?;
    text.copy_from_slice(span);
    let (mut from, mut at) = (0, first_len);
    loop {
        if !text.get(from..at)?.iter().all(|&b| is_plain(b)) {
            return None;
        }
        let Some(b) = text.get_mut(at) else { break };
        from = at.saturating_add(1);
        at = from.saturating_add(usize::from(*b));
        *b = b'.';
    }
    // only plain bytes and dots: always UTF-8
    Some(DnsName::from(std::str::from_utf8(text).ok()?))
}

/// Reads a possibly compressed name starting at `start` in `msg`.
///
/// Returns the presentation form and the offset just past the name's bytes at
/// its original position (after the first pointer, or after the root label).
/// A name that is just a pointer to a name of `known` is a copy of it: the
/// same result as rendering it again (one pointer, then the same labels).
fn read_name(msg: &[u8], start: usize, known: &Known<'_>) -> Result<(DnsName, usize), DnsError> {
    match msg.get(start) {
        // the root name (an OPT record's owner): nothing to build
        Some(0) => return Ok((DnsName::const_new(ROOT), start.saturating_add(1))),
        Some(&hi @ 0xc0..=0xff) => {
            if let Some(&lo) = msg.get(start.saturating_add(1)) {
                let target = (usize::from(hi & 0x3f) << 8) | usize::from(lo);
                if let Some((_, name)) = known.iter().find(|(o, _)| *o == target) {
                    return Ok(((*name).clone(), start.saturating_add(2)));
                }
            }
        }
        _ => {}
    }
    if let Some(found) = plain_name(msg, start) {
        return Ok(found);
    }
    let mut out = NameText::new();
    let mut pos = start;
    let mut end: Option<usize> = None;
    let mut jumps = 0usize;
    let mut wire_len = 1usize; // the terminating root label
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Truncated { offset: pos })?;
        match len {
            0 => {
                let end = end.unwrap_or(pos.saturating_add(1));
                if out.is_empty() {
                    out.put(ROOT.as_bytes());
                }
                return Ok((out.name(), end));
            }
            1..=63 => {
                let l = usize::from(len);
                wire_len = wire_len.saturating_add(l + 1);
                if wire_len > MAX_NAME_WIRE_LEN {
                    return Err(DnsError::NameTooLong { offset: start });
                }
                let label_start = pos.saturating_add(1);
                let label = msg.get(label_start..label_start.saturating_add(l)).ok_or(
                    DnsError::Truncated {
                        offset: label_start,
                    },
                )?;
                out.push_label(label);
                pos = label_start.saturating_add(l);
            }
            0xc0..=0xff => {
                let lo = *msg
                    .get(pos.saturating_add(1))
                    .ok_or(DnsError::Truncated { offset: pos })?;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(lo);
                jumps = jumps.saturating_add(1);
                if jumps > MAX_POINTER_JUMPS {
                    return Err(DnsError::PointerLoop { offset: start });
                }
                if target >= msg.len() {
                    return Err(DnsError::BadPointer {
                        offset: pos,
                        target,
                    });
                }
                if end.is_none() {
                    end = Some(pos.saturating_add(2));
                }
                pos = target;
            }
            _ => return Err(DnsError::LabelTooLong { offset: pos, len }),
        }
    }
}

/// nom parser for a name inside `msg`; `i` must be a suffix of `msg`.
fn dns_name<'a>(msg: &'a [u8], i: &'a [u8], known: &Known<'_>) -> PResult<'a, DnsName> {
    let start = msg.len().saturating_sub(i.len());
    match read_name(msg, start, known) {
        Ok((name, end)) => {
            let rest = msg.get(end..).unwrap_or_default();
            Ok((rest, name))
        }
        Err(e) => fail(e),
    }
}

/// Flags and counts of the fixed header.
struct Header {
    id: u16,
    flags: u16,
    counts: [u16; 4],
}

/// The first `N` bytes of `i` (a block of big-endian fields ending at
/// `ends`, the last at `N`) and the rest. On input too short, the error is
/// the one a sequence of nom's `be_u16`/`be_u32` would give: at the start
/// of the first field that does not fit.
fn fixed<'a, const N: usize>(i: &'a [u8], ends: &[usize]) -> PResult<'a, &'a [u8; N]> {
    match i.split_first_chunk::<N>() {
        Some((head, rest)) => Ok((rest, head)),
        None => {
            let start = ends
                .iter()
                .take_while(|&&e| e <= i.len())
                .last()
                .copied()
                .unwrap_or(0);
            let at = i.get(start..).unwrap_or_default();
            Err(nom::Err::Error(PErr::from_error_kind(at, ErrorKind::Eof)))
        }
    }
}

fn dns_header(i: &[u8]) -> PResult<'_, Header> {
    let (i, h) = fixed::<DNS_HEADER_LEN>(i, &[2, 4, 6, 8, 10, 12])?;
    let u = |at| be16(h, at);
    Ok((
        i,
        Header {
            id: u(0),
            flags: u(2),
            counts: [u(4), u(6), u(8), u(10)],
        },
    ))
}

fn dns_question<'a>(msg: &'a [u8], i: &'a [u8]) -> PResult<'a, DnsQuestion> {
    let (i, name) = dns_name(msg, i, &[])?;
    let (i, f) = fixed::<4>(i, &[2, 4])?;
    let (qtype, qclass) = (be16(f, 0), be16(f, 2));
    Ok((
        i,
        DnsQuestion {
            name,
            qtype,
            qclass,
        },
    ))
}

/// Parses character-strings until the end of `i` (TXT RDATA).
fn character_strings(i: &[u8]) -> PResult<'_, Vec<String>> {
    let mut out = Vec::new();
    let mut i = i;
    while !i.is_empty() {
        let (rest, len) = be_u8(i)?;
        let (rest, s) = take(usize::from(len))(rest)?;
        let mut txt = Vec::with_capacity(s.len());
        push_escaped_label(&mut txt, s);
        out.push(ascii_string(txt));
        i = rest;
    }
    Ok((i, out))
}

fn edns_options(i: &[u8]) -> PResult<'_, Vec<(u16, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut i = i;
    while !i.is_empty() {
        let (rest, code) = be_u16(i)?;
        let (rest, len) = be_u16(rest)?;
        let (rest, data) = take(usize::from(len))(rest)?;
        out.push((code, data.to_vec()));
        i = rest;
    }
    Ok((i, out))
}

/// Decodes RDATA of `rtype`. `rdata` is a sub-slice of `msg` starting at
/// `rdata_start`; names may point anywhere in `msg` but their own bytes must lie
/// inside RDATA, and the whole of `rdata` must be used.
fn dns_rdata<'a>(
    msg: &'a [u8],
    rdata: &'a [u8],
    rdata_start: usize,
    rtype: u16,
    rclass: u16,
    ttl: u32,
    known: &Known<'_>,
) -> PResult<'a, DnsRData> {
    let invalid = DnsError::InvalidRData {
        rtype,
        offset: rdata_start,
    };
    let name_in_rdata = |i: &'a [u8]| -> PResult<'a, DnsName> {
        let used = rdata.len().saturating_sub(i.len());
        let start = rdata_start.saturating_add(used);
        match read_name(msg, start, known) {
            Ok((name, end)) => match end.checked_sub(rdata_start).and_then(|e| rdata.get(e..)) {
                Some(rest) => Ok((rest, name)),
                None => fail(invalid.clone()),
            },
            Err(DnsError::Truncated { .. }) => fail(invalid.clone()),
            Err(e) => fail(e),
        }
    };
    let (rest, data) = match rtype {
        1 => {
            let (r, b) = take(4usize)(rdata)?;
            let a: [u8; 4] = b.try_into().unwrap_or([0; 4]);
            (r, DnsRData::A(Ipv4Addr::from(a)))
        }
        28 => {
            let (r, b) = take(16usize)(rdata)?;
            let a: [u8; 16] = b.try_into().unwrap_or([0; 16]);
            (r, DnsRData::Aaaa(Ipv6Addr::from(a)))
        }
        2 | 5 | 12 => {
            let (r, n) = name_in_rdata(rdata)?;
            let d = match rtype {
                2 => DnsRData::Ns(n),
                5 => DnsRData::Cname(n),
                _ => DnsRData::Ptr(n),
            };
            (r, d)
        }
        15 => {
            let (r, preference) = be_u16(rdata)?;
            let (r, exchange) = name_in_rdata(r)?;
            (
                r,
                DnsRData::Mx {
                    preference,
                    exchange,
                },
            )
        }
        16 => {
            let (r, t) = character_strings(rdata)?;
            (r, DnsRData::Txt(t))
        }
        6 => {
            let (r, mname) = name_in_rdata(rdata)?;
            let (r, rname) = name_in_rdata(r)?;
            let (r, (serial, refresh, retry, expire, minimum)) =
                (be_u32, be_u32, be_u32, be_u32, be_u32).parse(r)?;
            (
                r,
                DnsRData::Soa {
                    mname,
                    rname,
                    serial,
                    refresh,
                    retry,
                    expire,
                    minimum,
                },
            )
        }
        33 => {
            let (r, (priority, weight, port)) = (be_u16, be_u16, be_u16).parse(rdata)?;
            let (r, target) = name_in_rdata(r)?;
            (
                r,
                DnsRData::Srv {
                    priority,
                    weight,
                    port,
                    target,
                },
            )
        }
        41 => {
            let (r, options) = edns_options(rdata)?;
            let [ext_rcode, version, flags_hi, _] = ttl.to_be_bytes();
            (
                r,
                DnsRData::Opt {
                    udp_payload_size: rclass,
                    ext_rcode,
                    version,
                    do_bit: flags_hi & 0x80 != 0,
                    options,
                },
            )
        }
        _ => (
            rdata.get(..0).unwrap_or_default(),
            DnsRData::Other(rdata.to_vec()),
        ),
    };
    if !rest.is_empty() {
        return fail(DnsError::InvalidRData {
            rtype,
            offset: rdata_start,
        });
    }
    Ok((rest, data))
}

/// [`dns_rdata`] with its errors as a record reports them: its own
/// [`DnsError`], else invalid RDATA at the start of the RDATA.
fn rdata_of(
    msg: &[u8],
    rdata: &[u8],
    rdata_start: usize,
    rtype: u16,
    rclass: u16,
    ttl: u32,
    known: &Known<'_>,
) -> Result<DnsRData, nom::Err<PErr>> {
    match dns_rdata(msg, rdata, rdata_start, rtype, rclass, ttl, known) {
        Ok((_, d)) => Ok(d),
        Err(nom::Err::Failure(PErr { kind: Some(e), .. })) => fail(e),
        Err(_) => fail(DnsError::InvalidRData {
            rtype,
            offset: rdata_start,
        }),
    }
}

fn dns_record<'a>(msg: &'a [u8], i: &'a [u8], known: &Known<'_>) -> PResult<'a, DnsRecord> {
    let (i, name) = dns_name(msg, i, known)?;
    let (i, f) = fixed::<10>(i, &[2, 4, 8, 10])?;
    let (rtype, rclass, ttl, rdlen) = (be16(f, 0), be16(f, 2), be32(f, 4), be16(f, 8));
    let rdata_start = msg.len().saturating_sub(i.len());
    let (i, rdata) = take(usize::from(rdlen))(i)?;
    // the usual answers, A and AAAA of the right length, straight from
    // their bytes (any other length is dns_rdata's error, as for any type)
    let data = match (rtype, rdata) {
        (1, &[a, b, c, d]) => DnsRData::A(Ipv4Addr::new(a, b, c, d)),
        (28, _) if let Ok(a) = <[u8; 16]>::try_from(rdata) => DnsRData::Aaaa(Ipv6Addr::from(a)),
        _ => rdata_of(msg, rdata, rdata_start, rtype, rclass, ttl, known)?,
    };
    Ok((
        i,
        DnsRecord {
            name,
            rtype,
            rclass,
            ttl,
            data,
        },
    ))
}

/// Parses `count` entries with `f` into `out` (emptied first), checking
/// first that `count * min_len` bytes remain. Entries are pushed as
/// decoded; room for at most 16 is reserved up front.
fn dns_section<'a, T>(
    msg: &'a [u8],
    i: &'a [u8],
    count: u16,
    min_len: usize,
    section: DnsSection,
    out: &mut Vec<T>,
    f: impl Fn(&'a [u8], &'a [u8]) -> PResult<'a, T>,
) -> PResult<'a, ()> {
    out.clear();
    if usize::from(count).saturating_mul(min_len) > i.len() {
        return fail(DnsError::TooManyRecords {
            section,
            claimed: count,
            available: i.len(),
        });
    }
    // the reservation is capped, so a forged count costs nothing up front
    out.reserve(usize::from(count).min(16));
    let mut i = i;
    for _ in 0..count {
        let (rest, item) = f(msg, i)?;
        out.push(item);
        i = rest;
    }
    Ok((i, ()))
}

/// Parses one DNS message (as carried in a UDP payload, or one TCP frame
/// without its length prefix). Trailing bytes after the last record are ignored.
///
/// # Errors
///
/// Returns a [`DnsError`] on a truncated message, an invalid or looping name,
/// a section count that cannot fit in the data, or RDATA that does not match
/// its type and length.
pub fn parse_dns_message(data: &[u8]) -> Result<DnsMessage, DnsError> {
    let mut out = DnsMessage::default();
    parse_dns_message_into(data, &mut out)?;
    Ok(out)
}

/// [`parse_dns_message`] into `out`, whose section vectors are emptied and
/// refilled (their room is reused: a caller decoding message after message
/// into the same `out` allocates nothing for the sections). On `Ok`, `out`
/// is what [`parse_dns_message`] returns; on `Err`, its content is
/// unspecified.
///
/// # Errors
///
/// As [`parse_dns_message`].
pub fn parse_dns_message_into(data: &[u8], out: &mut DnsMessage) -> Result<(), DnsError> {
    parse_message_inner(data, out).map_err(|e| to_dns_error(e, data.len()))
}

fn parse_message_inner(msg: &[u8], out: &mut DnsMessage) -> Result<(), nom::Err<PErr>> {
    let DnsMessage {
        questions,
        answers,
        authorities,
        additionals,
        ..
    } = out;
    for s in [&mut *answers, &mut *authorities, &mut *additionals] {
        s.clear();
    }
    let (i, h) = dns_header(msg)?;
    let [qd, an, ns, ar] = h.counts;
    // Minimum sizes: a question is a root name + 4 bytes, a record a root name + 10.
    let (i, ()) = dns_section(msg, i, qd, 5, DnsSection::Question, questions, dns_question)?;
    // the first (pointer-free) question names, for the records pointing at them
    let mut known: [(usize, &DnsName); 4] = [(usize::MAX, &NO_NAME); 4];
    let mut at = DNS_HEADER_LEN;
    for (slot, q) in known.iter_mut().zip(questions.iter()) {
        let Some(len) = plain_name_len(msg, at) else {
            break;
        };
        *slot = (at, &q.name);
        at = at.saturating_add(len).saturating_add(4);
    }
    let record = |m, i| dns_record(m, i, &known);
    // a damaged record section keeps the sections before it (the question
    // and answers of a response whose additional section is corrupt are
    // still the response's)
    let mut damaged = None;
    let mut i = i;
    for (slot, count, section) in [
        (&mut *answers, an, DnsSection::Answer),
        (&mut *authorities, ns, DnsSection::Authority),
        (&mut *additionals, ar, DnsSection::Additional),
    ] {
        // room for the announced records (capped: a forged count costs
        // nothing up front); record by record, so that the records before
        // the damage stay
        slot.reserve(usize::from(count).min(16));
        for _ in 0..count {
            match record(msg, i) {
                Ok((rest, r)) => {
                    slot.push(r);
                    i = rest;
                }
                Err(e) => {
                    damaged = Some((section, to_dns_error(e, msg.len())));
                    break;
                }
            }
        }
        if damaged.is_some() {
            break;
        }
    }
    // damage before anything past the header: nothing to report
    if let Some((_, e)) = &damaged
        && questions.is_empty()
        && answers.is_empty()
    {
        return fail(e.clone());
    }
    let mut rcode = h.flags & 0x000f;
    if let Some(DnsRData::Opt { ext_rcode, .. }) = additionals
        .iter()
        .map(|r| &r.data)
        .find(|d| matches!(d, DnsRData::Opt { .. }))
    {
        rcode |= u16::from(*ext_rcode) << 4;
    }
    out.id = h.id;
    out.is_response = h.flags & 0x8000 != 0;
    out.opcode = ((h.flags >> 11) & 0x0f) as u8;
    out.authoritative = h.flags & 0x0400 != 0;
    out.truncated = h.flags & 0x0200 != 0;
    out.recursion_desired = h.flags & 0x0100 != 0;
    out.recursion_available = h.flags & 0x0080 != 0;
    out.rcode = rcode;
    out.flags = h.flags;
    out.damaged = damaged;
    Ok(())
}

/// Splits a TCP stream (RFC 1035 §4.2.2: 2-byte big-endian length prefix per
/// message) and parses each complete message.
///
/// Returns one result per complete frame and the number of bytes consumed (the
/// end of the last complete frame); an incomplete trailing frame is left for
/// the caller to retry with more data.
pub fn parse_dns_tcp_stream(buf: &[u8]) -> (Vec<Result<DnsMessage, DnsError>>, usize) {
    let mut out = Vec::new();
    let mut consumed = 0usize;
    let mut rest = buf;
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let Some((frame, after)) = tail.split_at_checked(len) else {
            break;
        };
        out.push(parse_dns_message(frame));
        consumed = consumed.saturating_add(2 + len);
        rest = after;
    }
    (out, consumed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a name in wire format (no compression).
    fn wire_name(name: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in name.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    }

    fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(&flags.to_be_bytes());
        for c in counts {
            v.extend_from_slice(&c.to_be_bytes());
        }
        v
    }

    fn rr(name: &[u8], rtype: u16, class: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
        let mut v = name.to_vec();
        v.extend_from_slice(&rtype.to_be_bytes());
        v.extend_from_slice(&class.to_be_bytes());
        v.extend_from_slice(&ttl.to_be_bytes());
        v.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        v.extend_from_slice(rdata);
        v
    }

    /// A response for `www.example.com` A with one record of each type and EDNS.
    /// The question name sits at offset 12, so `0xc0 0x0c` points at it and
    /// `0xc0 0x10` points at `example.com`.
    fn full_response() -> Vec<u8> {
        // id 0xbeef, QR=1 opcode=0 AA=1 RD=1 RA=1 rcode=3 (NXDOMAIN low bits)
        let mut m = header(0xbeef, 0x8583, [1, 6, 1, 3]);
        m.extend_from_slice(&wire_name("www.example.com")); // 12..29
        m.extend_from_slice(&[0, 1, 0, 1]); // A IN
        let ptr_q = [0xc0, 0x0c];
        let ptr_ex = [0xc0, 0x10];
        // answers
        m.extend(rr(&ptr_q, 1, 1, 300, &[93, 184, 216, 34]));
        m.extend(rr(
            &ptr_q,
            28,
            1,
            300,
            &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        ));
        m.extend(rr(&ptr_q, 5, 1, 60, &[3, b'c', b'd', b'n', 0xc0, 0x10])); // cdn.example.com
        let mut mx = vec![0, 10];
        mx.extend_from_slice(&[4, b'm', b'a', b'i', b'l', 0xc0, 0x10]);
        m.extend(rr(&ptr_ex, 15, 1, 60, &mx));
        m.extend(rr(
            &ptr_ex,
            16,
            1,
            60,
            &[5, b'h', b'e', b'l', b'l', b'o', 3, b'a', b' ', b'b'],
        ));
        let mut srv = vec![0, 1, 0, 5, 0x13, 0xc4]; // prio 1 weight 5 port 5060
        srv.extend_from_slice(&[3, b's', b'i', b'p', 0xc0, 0x10]);
        m.extend(rr(&wire_name("_sip._udp.example.com"), 33, 1, 60, &srv));
        // authority: SOA
        let mut soa = vec![
            2, b'n', b's', 0xc0, 0x10, 4, b'h', b'o', b's', b't', 0xc0, 0x10,
        ];
        for v in [2024010101u32, 7200, 3600, 1209600, 300] {
            soa.extend_from_slice(&v.to_be_bytes());
        }
        m.extend(rr(&ptr_ex, 6, 1, 3600, &soa));
        // additional: NS-less PTR, unknown type, OPT with ext rcode 1, DO, one option
        m.extend(rr(
            &wire_name("4.3.2.1.in-addr.arpa"),
            12,
            1,
            10,
            &[0xc0, 0x10],
        ));
        m.extend(rr(&ptr_ex, 65, 1, 10, &[0, 1, 0]));
        let opt_ttl = u32::from_be_bytes([1, 0, 0x80, 0]);
        m.extend(rr(&[0], 41, 1232, opt_ttl, &[0, 10, 0, 2, 0xab, 0xcd]));
        m
    }

    #[test]
    fn dns_full_response_parses_every_rdata_type() {
        let m = parse_dns_message(&full_response()).unwrap();
        assert_eq!(m.id, 0xbeef);
        assert!(m.is_response && m.authoritative && m.recursion_desired && m.recursion_available);
        assert!(!m.truncated);
        assert_eq!(m.opcode, 0);
        assert_eq!(m.rcode, 3 | (1 << 4));
        assert_eq!(m.questions[0].name, "www.example.com");
        let d: Vec<&DnsRData> = m.answers.iter().map(|r| &r.data).collect();
        assert_eq!(d[0], &DnsRData::A(Ipv4Addr::new(93, 184, 216, 34)));
        assert_eq!(d[1], &DnsRData::Aaaa("2001:db8::1".parse().unwrap()));
        assert_eq!(d[2], &DnsRData::Cname("cdn.example.com".into()));
        assert_eq!(
            d[3],
            &DnsRData::Mx {
                preference: 10,
                exchange: "mail.example.com".into()
            }
        );
        assert_eq!(d[4], &DnsRData::Txt(vec!["hello".into(), "a\\032b".into()]));
        assert_eq!(
            d[5],
            &DnsRData::Srv {
                priority: 1,
                weight: 5,
                port: 5060,
                target: "sip.example.com".into()
            }
        );
        assert_eq!(m.answers[5].name, "_sip._udp.example.com");
        assert_eq!(
            m.authorities[0].data,
            DnsRData::Soa {
                mname: "ns.example.com".into(),
                rname: "host.example.com".into(),
                serial: 2024010101,
                refresh: 7200,
                retry: 3600,
                expire: 1209600,
                minimum: 300
            }
        );
        assert_eq!(m.additionals[0].data, DnsRData::Ptr("example.com".into()));
        assert_eq!(m.additionals[1].data, DnsRData::Other(vec![0, 1, 0]));
        assert_eq!(m.additionals[2].name, "<Root>");
        assert_eq!(
            m.additionals[2].data,
            DnsRData::Opt {
                udp_payload_size: 1232,
                ext_rcode: 1,
                version: 0,
                do_bit: true,
                options: vec![(10, vec![0xab, 0xcd])]
            }
        );
    }

    #[test]
    fn dns_json_shape() {
        let m = parse_dns_message(&full_response()).unwrap();
        let j = serde_json::to_value(&m).unwrap();
        assert_eq!(j["questions"][0]["type"], "A");
        assert_eq!(j["answers"][0]["data"], "93.184.216.34");
        assert_eq!(j["answers"][1]["type"], "AAAA");
        assert_eq!(j["answers"][3]["data"]["exchange"], "mail.example.com");
        assert_eq!(j["additionals"][1]["type"], "HTTPS");
        assert_eq!(j["additionals"][1]["data"], "000100");
        assert_eq!(j["additionals"][2]["data"]["options"][0]["data"], "abcd");
        assert!(!serde_json::to_string(&m).unwrap().contains('\n'));
    }

    #[test]
    fn dns_query_parses() {
        let mut q = header(0x1234, 0x0100, [1, 0, 0, 0]);
        q.extend_from_slice(&wire_name("example.org"));
        q.extend_from_slice(&[0, 28, 0, 1]);
        let m = parse_dns_message(&q).unwrap();
        assert!(!m.is_response);
        assert!(m.recursion_desired);
        assert_eq!(m.rcode, 0);
        assert_eq!(
            m.questions,
            vec![DnsQuestion {
                name: "example.org".into(),
                qtype: 28,
                qclass: 1
            }]
        );
    }

    #[test]
    fn dns_rr_type_name_known_and_unknown() {
        assert_eq!(rr_type_name(1), "A");
        assert_eq!(rr_type_name(28), "AAAA");
        assert_eq!(rr_type_name(65), "HTTPS");
        assert_eq!(rr_type_name(65280), "TYPE65280");
    }

    #[test]
    fn dns_root_and_escaped_names() {
        let mut q = header(1, 0, [2, 0, 0, 0]);
        q.extend_from_slice(&[0, 0, 2, 0, 1]); // root, NS IN
        q.extend_from_slice(&[4, b'a', b'.', 0x00, 0xff, 1, b'\\', 0, 0, 1, 0, 1]);
        let m = parse_dns_message(&q).unwrap();
        assert_eq!(m.questions[0].name, "<Root>");
        assert_eq!(m.questions[1].name, "a\\.\\000\\255.\\\\");
    }

    #[test]
    fn a_truncated_fixed_field_is_reported_where_it_starts() {
        let mut q = header(0x1234, 0x0100, [1, 0, 0, 0]);
        q.extend_from_slice(&wire_name("example.org")); // 12..25
        q.extend_from_slice(&[0, 28, 0, 1]); // qtype 25..27, qclass 27..29
        let at = |n: usize| match parse_dns_message(&q[..n]) {
            Err(DnsError::Truncated { offset }) => offset,
            other => panic!("prefix {n}: {other:?}"),
        };
        // header fields are 2 bytes each: a cut inside one points at its start
        assert_eq!(at(0), 0);
        assert_eq!(at(5), 4);
        assert_eq!(at(11), 10);
        assert_eq!(at(26), 25);
        assert_eq!(at(27), 27);
        assert_eq!(at(28), 27);
        // a record's fixed part: type, class, TTL (4 bytes), RDLENGTH
        let mut r = header(1, 0x8180, [0, 1, 0, 0]);
        r.extend_from_slice(&[0]); // root owner name, 12..13
        r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 1, 0, 0, 4, 1, 2, 3, 4]);
        let partial = |n: usize| match parse_dns_message(&r[..n]) {
            Err(DnsError::Truncated { offset }) => offset,
            other => panic!("prefix {n}: {other:?}"),
        };
        assert_eq!(partial(14), 13);
        assert_eq!(partial(16), 15);
        assert_eq!(partial(20), 17);
        assert_eq!(partial(22), 21);
        assert_eq!(partial(23), 23);
        assert!(parse_dns_message(&r).is_ok());
    }

    #[test]
    fn dns_truncated_at_every_offset_is_err_or_partial() {
        let full = full_response();
        for n in 0..full.len() {
            let r = parse_dns_message(&full[..n]);
            assert!(
                r.is_err() || r.is_ok_and(|m| m.damaged.is_some()),
                "prefix {n} parsed whole"
            );
        }
    }

    #[test]
    fn dns_pointer_loops_are_rejected() {
        // pointer to itself
        let mut q = header(1, 0, [1, 0, 0, 0]);
        q.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(
            parse_dns_message(&q),
            Err(DnsError::PointerLoop { offset: 12 })
        );
        // two pointers pointing at each other (forward then backward)
        let mut q = header(1, 0, [1, 0, 0, 0]);
        q.extend_from_slice(&[0xc0, 18, 0, 1, 0, 1, 0xc0, 12]);
        assert_eq!(
            parse_dns_message(&q),
            Err(DnsError::PointerLoop { offset: 12 })
        );
        // a loop through a short label hits the jump bound first
        let mut q = header(1, 0, [1, 0, 0, 0]);
        q.extend_from_slice(&[1, b'a', 0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(
            parse_dns_message(&q),
            Err(DnsError::PointerLoop { offset: 12 })
        );
        // a loop through long labels hits the 255-byte bound first
        let mut q = header(1, 0, [1, 0, 0, 0]);
        q.push(60);
        q.extend_from_slice(&[b'x'; 60]);
        q.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(
            parse_dns_message(&q),
            Err(DnsError::NameTooLong { offset: 12 })
        );
        // pointer outside the message
        let mut q = header(1, 0, [1, 0, 0, 0]);
        q.extend_from_slice(&[0xff, 0xff, 0, 1, 0, 1]);
        assert!(matches!(
            parse_dns_message(&q),
            Err(DnsError::BadPointer { .. })
        ));
    }

    #[test]
    fn dns_pointers_to_question_names_give_the_same_names() {
        // two questions, answers owned by pointers to each, to the middle of
        // the first, and to the root question; a CNAME pointing at the second
        let mut m = header(9, 0x8180, [3, 5, 0, 0]);
        m.extend_from_slice(&wire_name("a.example")); // 12..23
        m.extend_from_slice(&[0, 1, 0, 1]);
        m.extend_from_slice(&[1, b'\\', 0xc0, 14]); // 27: "\\.example" (compressed)
        m.extend_from_slice(&[0, 1, 0, 1]);
        m.extend_from_slice(&[0, 0, 2, 0, 1]); // 35: root
        m.extend(rr(&[0xc0, 12], 1, 1, 5, &[1, 2, 3, 4]));
        m.extend(rr(&[0xc0, 27], 1, 1, 5, &[1, 2, 3, 4]));
        m.extend(rr(&[0xc0, 14], 1, 1, 5, &[1, 2, 3, 4]));
        m.extend(rr(&[0xc0, 35], 1, 1, 5, &[1, 2, 3, 4]));
        m.extend(rr(&[0xc0, 12], 5, 1, 5, &[0xc0, 27]));
        let r = parse_dns_message(&m).unwrap();
        let names: Vec<&str> = r.answers.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "a.example",
                "\\\\.example",
                "example",
                "<Root>",
                "a.example"
            ]
        );
        assert_eq!(r.answers[4].data, DnsRData::Cname("\\\\.example".into()));
    }

    #[test]
    fn dns_forward_pointer_is_allowed() {
        let mut q = header(1, 0, [1, 0, 0, 0]);
        q.extend_from_slice(&[0xc0, 18, 0, 1, 0, 1]); // name -> offset 18
        q.extend_from_slice(&wire_name("fwd.example"));
        let m = parse_dns_message(&q).unwrap();
        assert_eq!(m.questions[0].name, "fwd.example");
    }

    #[test]
    fn dns_label_over_63_is_rejected() {
        let mut q = header(1, 0, [1, 0, 0, 0]);
        q.push(64);
        q.extend_from_slice(&[b'x'; 64]);
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(
            parse_dns_message(&q),
            Err(DnsError::LabelTooLong {
                offset: 12,
                len: 64
            })
        );
    }

    #[test]
    fn dns_name_over_255_is_rejected() {
        let mut q = header(1, 0, [1, 0, 0, 0]);
        for _ in 0..5 {
            q.push(63);
            q.extend_from_slice(&[b'x'; 63]);
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(
            parse_dns_message(&q),
            Err(DnsError::NameTooLong { offset: 12 })
        );
    }

    #[test]
    fn address_records_read_as_std_writes_the_address() {
        for a in ["0.0.0.0", "192.0.2.1", "10.200.30.4", "255.255.255.255"] {
            let ip: Ipv4Addr = a.parse().unwrap();
            assert_eq!(DnsRData::A(ip).to_text(), ip.to_string());
        }
        for a in [
            "::",
            "::1",
            "2001:db8::1",
            "::ffff:192.0.2.1",
            "fe80::1:0:0:1",
        ] {
            let ip: Ipv6Addr = a.parse().unwrap();
            assert_eq!(DnsRData::Aaaa(ip).to_text(), ip.to_string());
        }
    }

    #[test]
    fn long_and_escaped_names_are_whole() {
        // the longest plain name (4 labels, 253 characters) and one whose
        // escapes make it 4 times its wire length (past the stack buffer)
        for (byte, text) in [(b'x', "x"), (0u8, "\\000"), (b'.', "\\.")] {
            let mut q = header(1, 0, [1, 0, 0, 0]);
            let labels = [63usize, 63, 63, 61];
            for &n in &labels {
                q.push(n as u8);
                q.extend(std::iter::repeat_n(byte, n));
            }
            q.extend_from_slice(&[0, 0, 1, 0, 1]);
            let want = labels
                .iter()
                .map(|&n| text.repeat(n))
                .collect::<Vec<_>>()
                .join(".");
            let m = parse_dns_message(&q).unwrap();
            assert_eq!(m.questions[0].name.as_str(), want, "{byte}");
        }
    }

    #[test]
    fn names_of_mixed_labels_read_as_their_bytes_escaped_one_by_one() {
        // labels of plain and escaped bytes in every order, short and long
        // (past the stack buffer, then plain labels after it), compared with
        // the byte-by-byte escaping of the module docs
        fn reference(labels: &[Vec<u8>]) -> String {
            let label = |l: &Vec<u8>| {
                l.iter()
                    .map(|&b| match b {
                        b'.' | b'\\' => format!("\\{}", b as char),
                        0x21..=0x7e => (b as char).to_string(),
                        _ => format!("\\{b:03}"),
                    })
                    .collect::<String>()
            };
            labels.iter().map(label).collect::<Vec<_>>().join(".")
        }
        let bytes = [
            b'a', b'Z', b'-', b'0', b'.', b'\\', 0, b' ', 0x7f, 0xff, b'~', b'!',
        ];
        let mut s: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut escaped = 0;
        for round in 0..2000 {
            let mut labels: Vec<Vec<u8>> = Vec::new();
            let mut wire = 1;
            loop {
                let len = (next() % 63 + 1) as usize;
                if wire + len + 1 > MAX_NAME_WIRE_LEN {
                    break;
                }
                // half the labels plain, the other half with some escapes
                let plain = next() % 2 == 0;
                let label: Vec<u8> = (0..len)
                    .map(|_| {
                        let r = next() as usize;
                        let pick = if plain { r % 4 } else { r % bytes.len() };
                        bytes[pick]
                    })
                    .collect();
                wire += len + 1;
                labels.push(label);
                if next() % 4 == 0 {
                    break;
                }
            }
            let mut q = header(1, 0, [1, 0, 0, 0]);
            for l in &labels {
                q.push(l.len() as u8);
                q.extend_from_slice(l);
            }
            q.extend_from_slice(&[0, 0, 1, 0, 1]);
            let want = reference(&labels);
            escaped += usize::from(want.contains('\\'));
            let m = parse_dns_message(&q).unwrap();
            assert_eq!(m.questions[0].name.as_str(), want, "round {round}");
        }
        assert!(escaped > 500 && escaped < 2000, "{escaped}");
    }

    #[test]
    fn dns_counts_larger_than_data_are_rejected_without_allocation() {
        let q = header(1, 0x8000, [0xffff, 0xffff, 0xffff, 0xffff]);
        assert_eq!(
            parse_dns_message(&q),
            Err(DnsError::TooManyRecords {
                section: DnsSection::Question,
                claimed: 0xffff,
                available: 0
            })
        );
        // three answers announced, one there: it is kept, the rest is damage
        let mut r = header(1, 0x8000, [0, 3, 0, 0]);
        r.extend(rr(&[0], 1, 1, 0, &[1, 2, 3, 4]));
        let m = parse_dns_message(&r).unwrap();
        assert_eq!(m.answers.len(), 1);
        assert!(matches!(m.damaged, Some((DnsSection::Answer, _))));
    }

    #[test]
    fn dns_rdata_length_mismatch_is_invalid_rdata() {
        let mut r = header(1, 0x8000, [0, 1, 0, 0]);
        r.extend(rr(&[0], 1, 1, 0, &[1, 2, 3])); // A with 3 bytes
        assert_eq!(
            parse_dns_message(&r),
            Err(DnsError::InvalidRData {
                rtype: 1,
                offset: 23
            })
        );
        let mut r = header(1, 0x8000, [0, 1, 0, 0]);
        r.extend(rr(&[0], 5, 1, 0, &[3, b'a', b'b'])); // CNAME label runs past RDATA
        assert!(matches!(
            parse_dns_message(&r),
            Err(DnsError::InvalidRData { rtype: 5, .. })
        ));
    }

    #[test]
    fn decoding_into_a_used_message_is_decoding_afresh() {
        // one message reused for a big response, a query, a response whose
        // additional section is damaged, errors in between: each result is
        // the fresh one, nothing left over from the message before
        let full = full_response();
        let mut q = header(7, 0x0100, [1, 0, 0, 0]);
        q.extend_from_slice(&wire_name("a.b"));
        q.extend_from_slice(&[0, 1, 0, 1]);
        let mut damaged = full.clone();
        damaged[11] += 1; // one more additional record than there is
        let mut out = DnsMessage::default();
        let inputs: [&[u8]; 8] = [
            &full,
            &q,
            &full[..20],
            &damaged,
            &full[..60],
            &full,
            &[],
            &q,
        ];
        let mut seen_err = 0;
        for (n, m) in inputs.into_iter().enumerate() {
            let fresh = parse_dns_message(m);
            match parse_dns_message_into(m, &mut out) {
                Ok(()) => assert_eq!(Ok(&out), fresh.as_ref(), "input {n}"),
                Err(e) => {
                    seen_err += 1;
                    assert_eq!(Err(e), fresh, "input {n}");
                }
            }
        }
        assert_eq!(seen_err, 2);
        assert!(parse_dns_message(&damaged).is_ok_and(|m| m.damaged.is_some()));
    }

    #[test]
    fn address_records_of_any_other_length_are_invalid_rdata() {
        // header 12 bytes, root owner 1, fixed fields 10: RDATA at 23
        let record = |rtype: u16, rdata: &[u8]| {
            let mut r = header(1, 0x8000, [0, 1, 0, 0]);
            r.extend(rr(&[0], rtype, 1, 0, rdata));
            parse_dns_message(&r)
        };
        let v6: Vec<u8> = (1..=16).collect();
        assert_eq!(
            record(1, &[192, 0, 2, 1]).map(|m| m.answers[0].data.clone()),
            Ok(DnsRData::A(Ipv4Addr::new(192, 0, 2, 1)))
        );
        assert_eq!(
            record(28, &v6).map(|m| m.answers[0].data.clone()),
            Ok(DnsRData::Aaaa(Ipv6Addr::from(
                <[u8; 16]>::try_from(v6.as_slice()).unwrap()
            )))
        );
        for (rtype, len) in [(1, 0), (1, 3), (1, 5), (1, 16), (28, 4), (28, 15), (28, 17)] {
            assert_eq!(
                record(rtype, &v6.repeat(2)[..len]),
                Err(DnsError::InvalidRData { rtype, offset: 23 }),
                "type {rtype}, {len} bytes"
            );
        }
    }

    #[test]
    fn dns_tcp_stream_framing() {
        let msg = full_response();
        let mut q = header(7, 0x0100, [1, 0, 0, 0]);
        q.extend_from_slice(&wire_name("a.b"));
        q.extend_from_slice(&[0, 1, 0, 1]);
        let mut stream = Vec::new();
        for m in [&msg, &q] {
            stream.extend_from_slice(&(m.len() as u16).to_be_bytes());
            stream.extend_from_slice(m);
        }
        stream.extend_from_slice(&[0, 40, 1, 2, 3]); // incomplete third frame
        let (res, consumed) = parse_dns_tcp_stream(&stream);
        assert_eq!(res.len(), 2);
        assert_eq!(consumed, msg.len() + q.len() + 4);
        assert_eq!(res[0].as_ref().unwrap().id, 0xbeef);
        assert_eq!(res[1].as_ref().unwrap().questions[0].name, "a.b");
        // a garbage frame gives an Err but framing continues
        let (res, consumed) = parse_dns_tcp_stream(&[0, 3, 1, 2, 3, 0]);
        assert_eq!(res.len(), 1);
        assert!(res[0].is_err());
        assert_eq!(consumed, 5);
        for n in 0..stream.len() {
            let (_, c) = parse_dns_tcp_stream(&stream[..n]);
            assert!(c <= n);
        }
    }

    #[test]
    fn dns_fuzz_xorshift_never_panics() {
        let base = full_response();
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for round in 0..10_000 {
            let r = next();
            let buf: Vec<u8> = if round % 2 == 0 {
                // mutate a valid message: flip a few bytes and maybe truncate
                let mut b = base.clone();
                for _ in 0..(r % 8 + 1) {
                    let x = next();
                    let idx = (x as usize) % b.len();
                    b[idx] = (x >> 32) as u8;
                }
                let cut = (next() as usize) % (b.len() + 1);
                b.truncate(cut.max(b.len() / 2));
                b
            } else {
                let len = (r % 300) as usize;
                (0..len).map(|_| next() as u8).collect()
            };
            let _ = parse_dns_message(&buf);
            let _ = parse_dns_tcp_stream(&buf);
        }
    }

    #[test]
    fn a_damaged_additional_section_keeps_the_question_and_answers() {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 1];
        m.extend_from_slice(b"\x01a\x01b\x00\x00\x01\x00\x01");
        for last in [4u8, 5] {
            // answers: A 1.2.3.4 and 1.2.3.5, the owner a pointer to the question
            m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, last]);
        }
        // an additional record announcing 10 bytes of RDATA, 2 there
        m.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 10, 9, 9]);
        let msg = parse_dns_message(&m).unwrap();
        assert_eq!(msg.questions.len(), 1);
        assert_eq!(msg.questions[0].name, "a.b");
        assert_eq!(msg.answers.len(), 2);
        assert!(msg.additionals.is_empty());
        assert!(matches!(msg.damaged, Some((DnsSection::Additional, _))));
        // the second answer damaged instead: the first one stays
        let mut cut = m[..12 + 9 + 16 + 11].to_vec();
        cut.extend_from_slice(&[0, 9, 1]);
        let msg = parse_dns_message(&cut).unwrap();
        assert_eq!(msg.answers.len(), 1);
        assert!(matches!(msg.damaged, Some((DnsSection::Answer, _))));
        // a damaged question is still an error: nothing is left to report
        assert!(parse_dns_message(&m[..12 + 4]).is_err());
        // an announced record missing altogether is damage too
        let msg = parse_dns_message(&m[..12 + 9 + 32]).unwrap();
        assert!(matches!(msg.damaged, Some((DnsSection::Additional, _))));
        // a whole message has none
        let mut whole = m[..12 + 9 + 32].to_vec();
        whole[11] = 0;
        let msg = parse_dns_message(&whole).unwrap();
        assert_eq!((msg.answers.len(), msg.damaged), (2, None));
    }
}
