//! The record kinds PAL writes and their fields: the one place where field
//! names, types and meanings are decided (see the module docs of
//! [`crate::output`] for the conventions).

/// The type of a field. Every value of a field has its type (or is null
/// where the field is nullable), whatever its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ty {
    /// `true`/`false`.
    Bool,
    /// Unsigned integer (64 bits).
    U64,
    /// Signed integer (64 bits).
    I64,
    /// Floating point (64 bits).
    F64,
    /// UTF-8 text.
    Str,
    /// An IPv4 or IPv6 address (text in JSON, CSV and Zeek: `192.0.2.1`,
    /// `2001:db8::1`).
    Ip,
    /// A point in time: RFC 3339 UTC with nanoseconds in JSON and CSV,
    /// a nanosecond timestamp (UTC) in Parquet, epoch seconds in Zeek logs.
    Time,
    /// A length of time: seconds (a decimal number, nanosecond precision)
    /// in JSON, CSV and Zeek, `f64` seconds in Parquet.
    Duration,
    /// A list of texts (JSON array; `a,b` in CSV and Zeek).
    StrList,
    /// A list of unsigned integers.
    U64List,
}

impl Ty {
    /// The type's name in the documentation and the JSON schemas.
    pub fn name(self) -> &'static str {
        match self {
            Ty::Bool => "bool",
            Ty::U64 => "u64",
            Ty::I64 => "i64",
            Ty::F64 => "f64",
            Ty::Str => "string",
            Ty::Ip => "ip",
            Ty::Time => "time",
            Ty::Duration => "duration",
            Ty::StrList => "list<string>",
            Ty::U64List => "list<u64>",
        }
    }

    /// The type's name in a Zeek log's `#types` line.
    pub fn zeek(self) -> &'static str {
        match self {
            Ty::Bool => "bool",
            Ty::U64 => "count",
            Ty::I64 => "int",
            Ty::F64 => "double",
            Ty::Str => "string",
            Ty::Ip => "addr",
            Ty::Time => "time",
            Ty::Duration => "interval",
            Ty::StrList => "vector[string]",
            Ty::U64List => "vector[count]",
        }
    }
}

/// One field of a record kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Name (snake_case).
    pub name: &'static str,
    /// Type.
    pub ty: Ty,
    /// May be null (absent from a JSON line, empty in CSV, `-` in Zeek).
    pub nullable: bool,
    /// The name in a Zeek log, where Zeek has the field (`id.orig_h`, …).
    pub zeek: Option<&'static str>,
    /// What it means, with its unit.
    pub doc: &'static str,
}

/// A kind of record: its name, its file and its fields in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// Name (`flow`, `dns`, …).
    pub name: &'static str,
    /// Base name of its file in the output directory (`flows` →
    /// `flows.jsonl`, `flows.csv`, `flows.parquet`, `flows.log`).
    pub file: &'static str,
    /// The `#path` of its Zeek log, where it has a Zeek counterpart.
    pub zeek_path: Option<&'static str>,
    /// What one record is.
    pub doc: &'static str,
    /// Fields, in the order they are written.
    pub fields: &'static [Field],
}

impl Kind {
    /// The index of field `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

/// The version of the schema: raised when a field changes meaning or type
/// or is removed (adding a field does not raise it).
pub const VERSION: u32 = 1;

const fn f(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        nullable: false,
        zeek: None,
        doc,
    }
}

const fn n(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        nullable: true,
        zeek: None,
        doc,
    }
}

const fn z(field: Field, zeek: &'static str) -> Field {
    Field {
        zeek: Some(zeek),
        ..field
    }
}

const FLOW_ID: Field = z(
    f(
        "flow_id",
        Ty::Str,
        "the flow's id (16 hex digits): the same in every record of the flow, in every file",
    ),
    "uid",
);
const SRC_IP: Field = z(
    f(
        "src_ip",
        Ty::Ip,
        "address of the originator (the side that sent first, or the client by port)",
    ),
    "id.orig_h",
);
const SRC_PORT: Field = z(
    f(
        "src_port",
        Ty::U64,
        "port of the originator (0 without ports; ICMP: type)",
    ),
    "id.orig_p",
);
const DST_IP: Field = z(f("dst_ip", Ty::Ip, "address of the responder"), "id.resp_h");
const DST_PORT: Field = z(
    f(
        "dst_port",
        Ty::U64,
        "port of the responder (0 without ports; ICMP: code)",
    ),
    "id.resp_p",
);

/// The fields of a record that belongs to a flow: `before`, then the flow
/// id and the endpoints, then `after`.
macro_rules! with_endpoints {
    ([$($before:expr),* $(,)?], [$($after:expr),* $(,)?]) => {
        &[$($before,)* FLOW_ID, SRC_IP, SRC_PORT, DST_IP, DST_PORT, $($after,)*]
    };
}

/// `flow`: one record per flow, written when it ends (Zeek's conn.log).
pub const FLOW: Kind = Kind {
    name: "flow",
    file: "flows",
    zeek_path: Some("conn"),
    doc: "one record per flow (both directions of a 5-tuple within one tunnel context), written when it ends",
    fields: with_endpoints!(
        [z(
            n(
                "first",
                Ty::Time,
                "time of the first packet (null when no packet of the flow had a time)"
            ),
            "ts"
        )],
        [
            n(
                "last",
                Ty::Time,
                "time of the last packet (null when no packet of the flow had a time)"
            ),
            z(
                f("duration", Ty::Duration, "last - first, seconds"),
                "duration"
            ),
            z(
                f(
                    "proto",
                    Ty::Str,
                    "transport protocol name, lower case (tcp, udp, icmp, icmpv6, sctp, gre, …; the number when it has no name)"
                ),
                "proto"
            ),
            f("proto_num", Ty::U64, "IP protocol number"),
            z(
                n(
                    "service",
                    Ty::Str,
                    "application protocols recognised by content, comma-separated (dns, ssl, http, ssh, quic)"
                ),
                "service"
            ),
            z(
                f(
                    "orig_bytes",
                    Ty::U64,
                    "payload bytes from the originator (TCP: sequence space covered, gaps excluded; others: transport payload)"
                ),
                "orig_bytes"
            ),
            z(
                f("resp_bytes", Ty::U64, "payload bytes from the responder"),
                "resp_bytes"
            ),
            z(
                f(
                    "conn_state",
                    Ty::Str,
                    "Zeek's connection state (S0, S1, SF, REJ, S2, S3, RSTO, RSTR, RSTOS0, RSTRH, SH, SHR, OTH)"
                ),
                "conn_state"
            ),
            z(
                f(
                    "missed_bytes",
                    Ty::U64,
                    "bytes missing in the reassembled TCP streams (gaps)"
                ),
                "missed_bytes"
            ),
            z(
                f(
                    "history",
                    Ty::Str,
                    "Zeek's history letters: originator upper case, responder lower case"
                ),
                "history"
            ),
            z(
                f("orig_pkts", Ty::U64, "packets from the originator"),
                "orig_pkts"
            ),
            z(
                f(
                    "orig_ip_bytes",
                    Ty::U64,
                    "IP bytes from the originator (IP total length)"
                ),
                "orig_ip_bytes"
            ),
            z(
                f("resp_pkts", Ty::U64, "packets from the responder"),
                "resp_pkts"
            ),
            z(
                f("resp_ip_bytes", Ty::U64, "IP bytes from the responder"),
                "resp_ip_bytes"
            ),
            f(
                "orig_wire_bytes",
                Ty::U64,
                "bytes on the wire (captured frame lengths) from the originator"
            ),
            f(
                "resp_wire_bytes",
                Ty::U64,
                "bytes on the wire from the responder"
            ),
            z(
                n(
                    "tunnel_parents",
                    Ty::StrList,
                    "flow ids of the tunnels carrying this flow, outermost first"
                ),
                "tunnel_parents"
            ),
            f(
                "tunnel_depth",
                Ty::U64,
                "tunnel levels around this flow (0: not tunnelled)"
            ),
            n("vlan", Ty::U64, "innermost 802.1Q VLAN id"),
            n(
                "community_id",
                Ty::Str,
                "Community ID v1 of the flow (base64, seed 0)"
            ),
            f(
                "tcp_flags_orig",
                Ty::Str,
                "TCP flags seen from the originator (FSRPAUEC)"
            ),
            f(
                "tcp_flags_resp",
                Ty::Str,
                "TCP flags seen from the responder"
            ),
            f(
                "end_reason",
                Ty::Str,
                "why the flow ended: fin, rst, timeout, eviction, end-of-input (the input ended while it was open: it may go on in a later capture)"
            ),
        ]
    ),
};

/// `connection`: the connection report, one record per unidirectional key.
pub const CONNECTION: Kind = Kind {
    name: "connection",
    file: "connections",
    zeek_path: None,
    doc: "one record per unidirectional (source ip, source port, destination ip, destination port), all protocols and flows together",
    fields: &[
        n(
            "first",
            Ty::Time,
            "time of the first packet (null when no packet had a time)",
        ),
        n(
            "last",
            Ty::Time,
            "time of the last packet (null when no packet had a time)",
        ),
        f(
            "flow_id",
            Ty::Str,
            "the id of the first flow counted in this record (see flows: records with flows > 1 sum several)",
        ),
        f("src_ip", Ty::Ip, "source address"),
        f("src_port", Ty::U64, "source port (0 without ports)"),
        f("dst_ip", Ty::Ip, "destination address"),
        f("dst_port", Ty::U64, "destination port (0 without ports)"),
        f(
            "protocols",
            Ty::StrList,
            "transport protocol names, sorted by number",
        ),
        f("bytes", Ty::U64, "bytes on the wire (frame lengths)"),
        f("packets", Ty::U64, "packets"),
        f("flows", Ty::U64, "flows counted in this record"),
    ],
};

/// `dns`: one record per DNS transaction, a query with its response (Zeek's
/// dns.log).
pub const DNS: Kind = Kind {
    name: "dns",
    file: "dns",
    zeek_path: Some("dns"),
    doc: "one record per DNS transaction: a query and its response (same flow, same transaction id), a query left unanswered, or a response without its query (mDNS announcements, a query outside the capture)",
    fields: with_endpoints!(
        [z(
            n(
                "ts",
                Ty::Time,
                "time of the query (of the response, without a query; of the last segment of a TCP message); null when the packet had no time"
            ),
            "ts"
        )],
        [
            z(f("proto", Ty::Str, "udp or tcp"), "proto"),
            z(f("trans_id", Ty::U64, "transaction id"), "trans_id"),
            z(
                n(
                    "rtt",
                    Ty::Duration,
                    "response time - query time, seconds; null without one of them"
                ),
                "rtt"
            ),
            z(n("query", Ty::Str, "the first question's name"), "query"),
            z(n("qclass", Ty::U64, "the first question's class"), "qclass"),
            z(
                n(
                    "qclass_name",
                    Ty::Str,
                    "its name as Zeek writes it (C_INTERNET, C_CHAOS, C_HESIOD, C_NONE, C_ANY; the number when unassigned)"
                ),
                "qclass_name"
            ),
            z(n("qtype", Ty::U64, "the first question's type"), "qtype"),
            z(
                n(
                    "qtype_name",
                    Ty::Str,
                    "its IANA mnemonic (A, AAAA, NULL, HTTPS, ANY, …; TYPE<n> when unassigned)"
                ),
                "qtype_name"
            ),
            f("opcode", Ty::U64, "opcode"),
            f(
                "opcode_name",
                Ty::Str,
                "opcode name (QUERY, IQUERY, STATUS, NOTIFY, UPDATE, DSO; the number when unassigned)"
            ),
            z(
                n(
                    "rcode",
                    Ty::U64,
                    "response code, null without a response; with EDNS, the 12-bit extended code (the OPT record's upper 8 bits joined to the header's 4)"
                ),
                "rcode"
            ),
            z(
                n(
                    "rcode_name",
                    Ty::Str,
                    "response code name (NOERROR, NXDOMAIN, SERVFAIL, BADVERS, …; the number when unassigned)"
                ),
                "rcode_name"
            ),
            f(
                "flags",
                Ty::StrList,
                "header flags set, of the response (of the query without one): aa, tc, rd, ra, ad, cd"
            ),
            z(
                n(
                    "answers",
                    Ty::StrList,
                    "the answer records' data as text (addresses, names, MX/SRV/SOA fields, quoted TXT strings, hex for other types); null without answers"
                ),
                "answers"
            ),
            n(
                "answer_types",
                Ty::StrList,
                "the answer records' type mnemonics, in the same order"
            ),
            z(
                n(
                    "ttls",
                    Ty::U64List,
                    "the answer records' TTLs, seconds, in the same order"
                ),
                "TTLs"
            ),
            n(
                "authorities",
                Ty::U64,
                "records in the response's authority section"
            ),
            n(
                "additionals",
                Ty::U64,
                "records in the response's additional section (OPT included)"
            ),
            n(
                "edns_udp_size",
                Ty::U64,
                "EDNS: the query's (else the response's) UDP payload size"
            ),
            n("edns_do", Ty::Bool, "EDNS: its DNSSEC OK bit"),
            n(
                "partial",
                Ty::Bool,
                "true when a section after some damage could not be decoded (the sections before it are kept); absent otherwise"
            ),
        ]
    ),
};

/// `tls`: one record per TLS hello (ClientHello, ServerHello,
/// HelloRetryRequest).
pub const TLS: Kind = Kind {
    name: "tls",
    file: "tls",
    zeek_path: None,
    doc: "one record per TLS handshake hello (every ClientHello, ServerHello and HelloRetryRequest of a TCP connection or of the Initial packets of a QUIC connection); client fields are null in server records and the other way round",
    fields: with_endpoints!(
        [z(
            n(
                "ts",
                Ty::Time,
                "time of the packet that completed the hello; null when the packet had no time"
            ),
            "ts"
        )],
        [
            f(
                "hello",
                Ty::Str,
                "client_hello, server_hello or hello_retry_request"
            ),
            f(
                "index",
                Ty::U64,
                "the hello's number among the hellos sent by its side of the connection, from 0 (a second ClientHello after a HelloRetryRequest has 1, and so has the ServerHello after it)"
            ),
            f(
                "record_version",
                Ty::U64,
                "version in the header of the record carrying the hello (0 over QUIC, which has no record layer)"
            ),
            f(
                "legacy_version",
                Ty::U64,
                "the hello's own version field (legacy_version)"
            ),
            f(
                "version",
                Ty::U64,
                "client: the highest version offered (supported_versions without GREASE when present, else legacy_version); server: the version chosen"
            ),
            f(
                "version_name",
                Ty::Str,
                "its name (SSL 3.0, TLS 1.0, TLS 1.1, TLS 1.2, TLS 1.3; 0x… when unknown)"
            ),
            n(
                "supported_versions",
                Ty::U64List,
                "the supported_versions extension: offered, GREASE included, in order (client); chosen (server); null without it"
            ),
            n(
                "sni",
                Ty::Str,
                "the server_name extension's host name (client)"
            ),
            n(
                "alpn",
                Ty::StrList,
                "ALPN protocols offered, in order (client) or chosen (server); null without the extension"
            ),
            n("cipher", Ty::U64, "cipher suite chosen (server)"),
            n(
                "cipher_name",
                Ty::Str,
                "its IANA name (TLS_AES_128_GCM_SHA256, …; 0x… when unassigned)"
            ),
            n(
                "ciphers",
                Ty::U64List,
                "cipher suites offered (client), GREASE included, in order"
            ),
            n(
                "cipher_names",
                Ty::StrList,
                "their IANA names in the same order (GREASE for RFC 8701 values, 0x… when unassigned)"
            ),
            n("compression", Ty::U64, "compression method chosen (server)"),
            f(
                "extensions",
                Ty::U64List,
                "extension types, GREASE included, in order"
            ),
            f(
                "extension_names",
                Ty::StrList,
                "their IANA names in the same order (GREASE, 0x… when unassigned)"
            ),
            n(
                "groups",
                Ty::U64List,
                "the supported_groups extension (client), GREASE included"
            ),
            n(
                "ec_point_formats",
                Ty::U64List,
                "the ec_point_formats extension (client)"
            ),
            n(
                "signature_algorithms",
                Ty::U64List,
                "the signature_algorithms extension (client), in order"
            ),
            n(
                "ja3",
                Ty::Str,
                "JA3 string (client): version,ciphers,extensions,groups,point formats, GREASE removed"
            ),
            n("ja3_hash", Ty::Str, "MD5 of ja3, lowercase hex"),
            n(
                "ja3s",
                Ty::Str,
                "JA3S string (server): version,cipher,extensions"
            ),
            n("ja3s_hash", Ty::Str, "MD5 of ja3s, lowercase hex"),
            n("ja4", Ty::Str, "JA4 (client, FoxIO JA4+)"),
            n(
                "ja4_r",
                Ty::Str,
                "JA4_r (client): the sorted lists before hashing"
            ),
            n("ja4s", Ty::Str, "JA4S (server, FoxIO JA4+)"),
            n(
                "ja4s_r",
                Ty::Str,
                "JA4S_r (server): the extensions in order, unhashed"
            ),
            f(
                "transport",
                Ty::Str,
                "tcp, or quic for a hello carried in QUIC Initial packets (decrypted with the version's Initial keys, RFC 9001 §5.2; JA4/JA4S then start with q)"
            ),
            n(
                "quic_version",
                Ty::U64,
                "QUIC: the version on the wire of the Initial packet that completed the hello (a greased version, RFC 9000 §15, as sent)"
            ),
            n(
                "quic_dcid",
                Ty::Str,
                "QUIC: the Destination Connection ID of the client's first Initial packet (hex), from which the Initial keys come"
            ),
            n(
                "quic_scid",
                Ty::Str,
                "QUIC: the Source Connection ID of the packet that carried the hello (hex)"
            ),
            n(
                "quic_key_version",
                Ty::U64,
                "QUIC: the version whose Initial keys opened the packets (quic_version, or for a greased one the version the AEAD tag showed to be right)"
            ),
        ]
    ),
};

/// `community_id`: the Community ID of each flow.
pub const COMMUNITY_ID: Kind = Kind {
    name: "community_id",
    file: "community-id",
    zeek_path: None,
    doc: "the Community ID v1 of each flow (ICMP flows are keyed by type and counterpart type or code, as the specification hashes them)",
    fields: with_endpoints!(
        [z(
            n(
                "ts",
                Ty::Time,
                "time of the flow's first packet; null when that packet had no time"
            ),
            "ts"
        )],
        [
            z(
                f(
                    "proto",
                    Ty::Str,
                    "transport protocol name, lower case (tcp, udp, icmp, …; the number when it has no name)"
                ),
                "proto"
            ),
            f("proto_num", Ty::U64, "IP protocol number"),
            z(
                f(
                    "community_id",
                    Ty::Str,
                    "Community ID v1: 1:base64(SHA-1), or 1:hex(SHA-1) with [plugin.community-id] base64 = false"
                ),
                "community_id"
            ),
        ]
    ),
};

/// Every record kind, in the order of the documentation.
pub const ALL: &[&Kind] = &[&FLOW, &CONNECTION, &DNS, &TLS, &COMMUNITY_ID];

/// The kind named `name`.
pub fn kind(name: &str) -> Option<&'static Kind> {
    ALL.iter().copied().find(|k| k.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case_and_documented() {
        for k in ALL {
            let mut seen = std::collections::HashSet::new();
            for f in k.fields {
                assert!(seen.insert(f.name), "{}: {} twice", k.name, f.name);
                assert!(
                    k.fields
                        .iter()
                        .filter(|g| g.zeek.unwrap_or(g.name) == f.zeek.unwrap_or(f.name))
                        .count()
                        == 1,
                    "{}: Zeek name of {} twice",
                    k.name,
                    f.name
                );
                assert!(
                    f.name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{}: {}",
                    k.name,
                    f.name
                );
                assert!(!f.doc.is_empty(), "{}: {} has no doc", k.name, f.name);
            }
        }
    }

    /// A packet may have no time (a pseudo packet, a source without
    /// clock), and every plugin then writes a null time: every time field
    /// is nullable, and the writers never reject such a row.
    #[test]
    fn every_time_field_is_nullable() {
        for k in ALL {
            for f in k.fields.iter().filter(|f| f.ty == Ty::Time) {
                assert!(f.nullable, "{}: {}", k.name, f.name);
            }
        }
    }

    #[test]
    fn every_flow_record_kind_has_a_flow_id_and_a_time() {
        for k in ALL {
            assert!(k.index("flow_id").is_some(), "{}", k.name);
            assert!(
                k.index("ts").is_some()
                    || (k.index("first").is_some() && k.index("last").is_some()),
                "{}",
                k.name
            );
        }
    }
}
