//! TLS handshake summary over a reassembled TCP stream prefix (one direction).
//!
//! Records are split here (RFC 8446 §5.1, 5-byte header) and handshake
//! messages are reassembled across records, either at once over a buffer
//! ([`parse_tls_records`]) or incrementally as the stream arrives
//! ([`TlsStreamParser`], which looks at each byte a bounded number of times
//! however the stream is cut into segments and records); the ClientHello and
//! ServerHello bodies are decoded with the `tls-parser` crate. Each hello is
//! summarised with its fingerprints:
//!
//! - **JA3** (<https://github.com/salesforce/ja3>):
//!   `SSLVersion,Ciphers,Extensions,EllipticCurves,EllipticCurvePointFormats`
//!   in decimal, lists joined with `-`, GREASE values (RFC 8701) removed, then
//!   MD5 in lowercase hex.
//! - **JA3S**: `SSLVersion,Cipher,Extensions` of the ServerHello, MD5.
//! - **JA4** (FoxIO, <https://github.com/FoxIO-LLC/ja4>, TCP so prefix `t`):
//!   `t{ver}{d|i}{nciphers:02}{nexts:02}{alpn}_{sha256(sorted ciphers)[..12]}_{sha256(sorted exts without SNI/ALPN "_" sigalgs)[..12]}`.
//! - **JA4S** (FoxIO, `technical_details/JA4S.md`): of the ServerHello,
//!   `t{ver}{nexts:02}{alpn}_{cipher:04x}_{sha256(exts in wire order)[..12]}`,
//!   the version from supported_versions when present.
//!
//! TLS 1.3 (RFC 8446 §5) sends its encrypted handshake as application data
//! records and a ChangeCipherSpec only for middlebox compatibility: once a
//! parser knows the connection is TLS 1.3 (its own ServerHello or
//! HelloRetryRequest chose it, or [`TlsStreamParser::set_tls13`]), a
//! ChangeCipherSpec does not make later handshake records encrypted, so the
//! second ClientHello and the ServerHello after a HelloRetryRequest are
//! decoded.
//!
//! Nothing here panics on malformed input: a bad record ends the parse with a
//! [`TlsEvent::Invalid`] event, and a malformed hello gives a
//! [`TlsEvent::Malformed`] event while parsing continues.

use super::to_hex;
use md5::Md5;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tls_parser::TlsExtension;

/// Largest record fragment accepted (2^14 plus the 2048 bytes of expansion
/// allowed for ciphertext by RFC 5246 §6.2.3).
pub const MAX_RECORD_LEN: usize = (1 << 14) + 2048;
/// Largest handshake message reassembled across records.
pub const MAX_HANDSHAKE_LEN: usize = 1 << 18;

/// Fatal errors: the bytes are not a TLS record stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A record header with an unknown content type or a major version other than 3.
    #[error("tls: not a TLS record at offset {offset}")]
    NotTls {
        /// Offset of the record header in the input.
        offset: usize,
    },
    /// A record longer than [`MAX_RECORD_LEN`].
    #[error("tls: record at offset {offset} is too long ({len} bytes)")]
    RecordTooLong {
        /// Offset of the record header.
        offset: usize,
        /// Declared length.
        len: usize,
    },
    /// A handshake message longer than [`MAX_HANDSHAKE_LEN`].
    #[error("tls: handshake message in record at offset {offset} is too long ({len} bytes)")]
    HandshakeTooLong {
        /// Offset of the record where the message was found.
        offset: usize,
        /// Declared length.
        len: usize,
    },
}

/// Summary of a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsClientHello {
    /// Version in the record header carrying the hello.
    pub record_version: u16,
    /// `legacy_version` field of the hello.
    pub legacy_version: u16,
    /// supported_versions extension values (GREASE included), in wire order.
    pub supported_versions: Vec<u16>,
    /// First host_name of the server_name extension (lossy UTF-8).
    pub sni: Option<String>,
    /// ALPN protocol names offered (lossy UTF-8), in wire order.
    pub alpn: Vec<String>,
    /// Cipher suites offered (GREASE included), in wire order.
    pub cipher_suites: Vec<u16>,
    /// Extension types (GREASE included), in wire order.
    pub extensions: Vec<u16>,
    /// supported_groups extension values (GREASE included).
    pub supported_groups: Vec<u16>,
    /// ec_point_formats extension values.
    pub ec_point_formats: Vec<u8>,
    /// signature_algorithms extension values, in wire order.
    pub signature_algorithms: Vec<u16>,
    /// JA3 string.
    pub ja3: String,
    /// MD5 of [`Self::ja3`], lowercase hex.
    pub ja3_hash: String,
    /// JA4 fingerprint.
    pub ja4: String,
    /// JA4 "raw" form (`ja4_r`): the sorted lists before hashing.
    pub ja4_r: String,
}

/// Summary of a ServerHello (or a TLS 1.3 HelloRetryRequest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsServerHello {
    /// Version in the record header carrying the hello.
    pub record_version: u16,
    /// `legacy_version` field of the hello.
    pub legacy_version: u16,
    /// Version chosen through the supported_versions extension (TLS 1.3), if any.
    pub selected_version: Option<u16>,
    /// Negotiated version: `selected_version`, else `legacy_version`.
    pub version: u16,
    /// Chosen cipher suite.
    pub cipher_suite: u16,
    /// Chosen compression method.
    pub compression: u8,
    /// Extension types, in wire order.
    pub extensions: Vec<u16>,
    /// ALPN protocol chosen (lossy UTF-8).
    pub alpn: Option<String>,
    /// True when the random is the RFC 8446 HelloRetryRequest value.
    pub hello_retry_request: bool,
    /// JA3S string.
    pub ja3s: String,
    /// MD5 of [`Self::ja3s`], lowercase hex.
    pub ja3s_hash: String,
    /// JA4S fingerprint (FoxIO JA4+, TLS over TCP).
    pub ja4s: String,
    /// JA4S "raw" form (`ja4s_r`): the extensions in wire order, unhashed.
    pub ja4s_r: String,
}

/// One thing seen in the record stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TlsEvent {
    /// A ClientHello.
    ClientHello(Box<TlsClientHello>),
    /// A ServerHello.
    ServerHello(Box<TlsServerHello>),
    /// Another plaintext handshake message.
    Handshake {
        /// Handshake message type (RFC 8446 §4).
        msg_type: u8,
        /// Body length.
        len: usize,
    },
    /// A ClientHello or ServerHello whose body could not be decoded.
    Malformed {
        /// Handshake message type.
        msg_type: u8,
        /// Offset of the record that completed the message.
        offset: usize,
    },
    /// A handshake record after ChangeCipherSpec (encrypted).
    EncryptedHandshake {
        /// Fragment length.
        len: usize,
    },
    /// A ChangeCipherSpec record.
    ChangeCipherSpec,
    /// An alert record (`level`/`description` are `None` when encrypted).
    Alert {
        /// Alert level.
        level: Option<u8>,
        /// Alert description.
        description: Option<u8>,
    },
    /// An application data record.
    ApplicationData {
        /// Fragment length.
        len: usize,
    },
    /// A heartbeat record.
    Heartbeat {
        /// Fragment length.
        len: usize,
    },
    /// The stream is not (or no longer) a TLS record stream; parsing stopped.
    Invalid {
        /// Why the stream was rejected.
        error: TlsError,
    },
}

/// True for the RFC 8701 GREASE values (`0x?a?a` with equal bytes).
pub fn is_grease(v: u16) -> bool {
    let [hi, lo] = v.to_be_bytes();
    hi == lo && hi & 0x0f == 0x0a
}

fn md5_hex(s: &str) -> String {
    use md5::Digest as _;
    to_hex(&Md5::digest(s.as_bytes()))
}

fn join_dec<T: std::fmt::Display>(v: impl IntoIterator<Item = T>) -> String {
    v.into_iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("-")
}

/// The JA3 string of a ClientHello's fields (GREASE removed).
pub fn ja3_string(
    version: u16,
    ciphers: &[u16],
    extensions: &[u16],
    groups: &[u16],
    point_formats: &[u8],
) -> String {
    let ng = |v: &[u16]| join_dec(v.iter().copied().filter(|x| !is_grease(*x)));
    format!(
        "{},{},{},{},{}",
        version,
        ng(ciphers),
        ng(extensions),
        ng(groups),
        join_dec(point_formats.iter().copied())
    )
}

/// The JA3S string of a ServerHello's fields.
pub fn ja3s_string(version: u16, cipher: u16, extensions: &[u16]) -> String {
    format!(
        "{},{},{}",
        version,
        cipher,
        join_dec(extensions.iter().copied().filter(|x| !is_grease(*x)))
    )
}

fn ja4_version(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

fn sha256_12(s: &str) -> String {
    let mut h = to_hex(&Sha256::digest(s.as_bytes()));
    h.truncate(12);
    h
}

fn hex4_list(v: impl IntoIterator<Item = u16>) -> Vec<String> {
    v.into_iter().map(|x| format!("{x:04x}")).collect()
}

/// JA4 ALPN part (FoxIO `technical_details/JA4.md`, "ALPN Extension Value"):
/// the first and last characters of the first ALPN value; `00` when there is
/// no ALPN extension, no value, or the first value is empty; a single
/// character is both first and last; when the first or last byte is not ASCII
/// alphanumeric (`0x30-0x39`, `0x41-0x5A`, `0x61-0x7A`), the first and last
/// characters of the value's lowercase hex form instead (`0x30 0xAB` → `3b`).
fn ja4_alpn(first: Option<&[u8]>) -> String {
    let Some(v) = first else {
        return "00".into();
    };
    match (v.first(), v.last()) {
        (Some(&a), Some(&b)) if a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric() => {
            format!("{}{}", char::from(a), char::from(b))
        }
        (Some(_), Some(_)) => {
            let h = to_hex(v);
            let mut it = h.chars();
            let a = it.next().unwrap_or('0');
            let b = h.chars().last().unwrap_or('0');
            format!("{a}{b}")
        }
        _ => "00".into(),
    }
}

/// Computes `(ja4, ja4_r)` for a ClientHello carried over TCP.
///
/// `extensions` must include SNI and ALPN (they are counted, then left out
/// of the hashed list); `first_alpn` is the raw first ALPN value.
///
/// Each rule follows the FoxIO JA4 specification (`technical_details/JA4.md`):
/// GREASE values (RFC 8701) ignored in every list ("Details"); the version
/// is the highest non-GREASE supported_versions value, else the hello's
/// protocol version ("TLS and DTLS Version", unknown → `00`); `d` when the SNI
/// extension is present, else `i` ("SNI"); cipher and extension counts on
/// two digits capped at 99, SNI and ALPN counted ("Number of ..."); the
/// first and last characters of the first ALPN value, their hex form when
/// either end is not ASCII alphanumeric, `00` when absent or empty ("ALPN
/// Extension Value"); the cipher hash over the sorted lowercase hex list
/// and the extension hash over the sorted list without SNI (`0000`) and ALPN
/// (`0010`), then `_` and the signature algorithms in wire order (no `_`
/// when there are none), each sha256 truncated to 12 hex characters, or
/// `000000000000` when the sorted list is empty ("Cipher hash", "Extension
/// hash"). `ja4_r` is the same with the lists in place of the hashes ("Raw
/// Output").
pub fn ja4(
    legacy_version: u16,
    supported_versions: &[u16],
    ciphers: &[u16],
    extensions: &[u16],
    first_alpn: Option<&[u8]>,
    signature_algorithms: &[u16],
) -> (String, String) {
    let version = supported_versions
        .iter()
        .copied()
        .filter(|v| !is_grease(*v))
        .max()
        .unwrap_or(legacy_version);
    let ciphers: Vec<u16> = ciphers.iter().copied().filter(|c| !is_grease(*c)).collect();
    let exts: Vec<u16> = extensions
        .iter()
        .copied()
        .filter(|e| !is_grease(*e))
        .collect();
    let sni = if exts.contains(&0) { 'd' } else { 'i' };
    let a = format!(
        "t{}{}{:02}{:02}{}",
        ja4_version(version),
        sni,
        ciphers.len().min(99),
        exts.len().min(99),
        ja4_alpn(first_alpn)
    );
    let mut c = hex4_list(ciphers.iter().copied());
    c.sort();
    let c_raw = c.join(",");
    let mut e = hex4_list(
        exts.iter()
            .copied()
            .filter(|x| *x != 0x0000 && *x != 0x0010),
    );
    e.sort();
    let mut e_raw = e.join(",");
    // "Ignore GREASE values anywhere it sees them" (JA4.md, Details): RFC
    // 8701 reserves GREASE signature algorithms too; the others keep their
    // wire order.
    let sig = hex4_list(
        signature_algorithms
            .iter()
            .copied()
            .filter(|s| !is_grease(*s)),
    )
    .join(",");
    if !sig.is_empty() {
        e_raw.push('_');
        e_raw.push_str(&sig);
    }
    let b = if c.is_empty() {
        "000000000000".to_string()
    } else {
        sha256_12(&c_raw)
    };
    let ch = if e.is_empty() {
        "000000000000".to_string()
    } else {
        sha256_12(&e_raw)
    };
    (format!("{a}_{b}_{ch}"), format!("{a}_{c_raw}_{e_raw}"))
}

/// Computes `(ja4s, ja4s_r)` for a ServerHello carried over TCP (FoxIO
/// JA4S): `version` is the negotiated one (supported_versions when
/// present), `first_alpn` the raw ALPN value chosen. GREASE values are left
/// out; extensions keep their wire order.
pub fn ja4s(
    version: u16,
    cipher: u16,
    extensions: &[u16],
    first_alpn: Option<&[u8]>,
) -> (String, String) {
    let exts = hex4_list(extensions.iter().copied().filter(|e| !is_grease(*e)));
    let a = format!(
        "t{}{:02}{}",
        ja4_version(version),
        exts.len().min(99),
        ja4_alpn(first_alpn)
    );
    let raw = exts.join(",");
    let hash = if exts.is_empty() {
        "000000000000".to_string()
    } else {
        sha256_12(&raw)
    };
    (
        format!("{a}_{cipher:04x}_{hash}"),
        format!("{a}_{cipher:04x}_{raw}"),
    )
}

/// The name of a protocol version (`TLS 1.2`, …; `0x…` when unknown).
pub fn version_name(v: u16) -> std::borrow::Cow<'static, str> {
    match v {
        0x0002 => "SSL 2.0".into(),
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        0xfeff => "DTLS 1.0".into(),
        0xfefd => "DTLS 1.2".into(),
        0xfefc => "DTLS 1.3".into(),
        _ => format!("0x{v:04x}").into(),
    }
}

/// The IANA name of a cipher suite (from the `tls-parser` crate's copy of
/// the IANA TLS Cipher Suites registry), `GREASE` for the RFC 8701
/// values, `0x…` for an unassigned one.
pub fn cipher_name(id: u16) -> std::borrow::Cow<'static, str> {
    if is_grease(id) {
        return "GREASE".into();
    }
    tls_parser::TlsCipherSuite::from_id(id)
        .map_or_else(|| format!("0x{id:04x}").into(), |c| c.name.into())
}

/// The IANA TLS ExtensionType registry (name per value).
const EXTENSION_NAMES: &[(u16, &str)] = &[
    (0, "server_name"),
    (1, "max_fragment_length"),
    (2, "client_certificate_url"),
    (3, "trusted_ca_keys"),
    (4, "truncated_hmac"),
    (5, "status_request"),
    (6, "user_mapping"),
    (7, "client_authz"),
    (8, "server_authz"),
    (9, "cert_type"),
    (10, "supported_groups"),
    (11, "ec_point_formats"),
    (12, "srp"),
    (13, "signature_algorithms"),
    (14, "use_srtp"),
    (15, "heartbeat"),
    (16, "application_layer_protocol_negotiation"),
    (17, "status_request_v2"),
    (18, "signed_certificate_timestamp"),
    (19, "client_certificate_type"),
    (20, "server_certificate_type"),
    (21, "padding"),
    (22, "encrypt_then_mac"),
    (23, "extended_master_secret"),
    (24, "token_binding"),
    (25, "cached_info"),
    (26, "tls_lts"),
    (27, "compress_certificate"),
    (28, "record_size_limit"),
    (29, "pwd_protect"),
    (30, "pwd_clear"),
    (31, "password_salt"),
    (32, "ticket_pinning"),
    (33, "tls_cert_with_extern_psk"),
    (34, "delegated_credential"),
    (35, "session_ticket"),
    (36, "TLMSP"),
    (37, "TLMSP_proxying"),
    (38, "TLMSP_delegate"),
    (39, "supported_ekt_ciphers"),
    (41, "pre_shared_key"),
    (42, "early_data"),
    (43, "supported_versions"),
    (44, "cookie"),
    (45, "psk_key_exchange_modes"),
    (47, "certificate_authorities"),
    (48, "oid_filters"),
    (49, "post_handshake_auth"),
    (50, "signature_algorithms_cert"),
    (51, "key_share"),
    (52, "transparency_info"),
    (53, "connection_id-deprecated"),
    (54, "connection_id"),
    (55, "external_id_hash"),
    (56, "external_session_id"),
    (57, "quic_transport_parameters"),
    (58, "ticket_request"),
    (59, "dnssec_chain"),
    (60, "sequence_number_encryption_algorithms"),
    (61, "rrc"),
    (62, "tls_flags"),
    (64768, "ech_outer_extensions"),
    (65037, "encrypted_client_hello"),
    (65281, "renegotiation_info"),
];

/// The IANA name of an extension type, `GREASE` for the RFC 8701 values,
/// `0x…` for one the registry does not name.
pub fn extension_name(t: u16) -> std::borrow::Cow<'static, str> {
    if is_grease(t) {
        return "GREASE".into();
    }
    EXTENSION_NAMES
        .binary_search_by_key(&t, |(v, _)| *v)
        .ok()
        .and_then(|i| EXTENSION_NAMES.get(i))
        .map_or_else(|| format!("0x{t:04x}").into(), |(_, n)| (*n).into())
}

/// Splits an extensions block into `(type, raw extension incl. header)`.
/// Stops at the first extension that does not fit.
fn split_extensions(mut ext: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while let [t0, t1, l0, l1, rest @ ..] = ext {
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let Some(raw) = ext.get(..len.saturating_add(4)) else {
            break;
        };
        out.push((u16::from_be_bytes([*t0, *t1]), raw));
        ext = rest.get(len..).unwrap_or_default();
    }
    out
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn client_hello(record_version: u16, body: &[u8]) -> Option<TlsClientHello> {
    let (_, ch) = tls_parser::parse_tls_handshake_client_hello(body).ok()?;
    let mut h = TlsClientHello {
        record_version,
        legacy_version: ch.version.0,
        supported_versions: Vec::new(),
        sni: None,
        alpn: Vec::new(),
        cipher_suites: ch.ciphers.iter().map(|c| c.0).collect(),
        extensions: Vec::new(),
        supported_groups: Vec::new(),
        ec_point_formats: Vec::new(),
        signature_algorithms: Vec::new(),
        ja3: String::new(),
        ja3_hash: String::new(),
        ja4: String::new(),
        ja4_r: String::new(),
    };
    let mut first_alpn: Option<Vec<u8>> = None;
    for (t, raw) in split_extensions(ch.ext.unwrap_or_default()) {
        h.extensions.push(t);
        let Ok((_, ext)) = tls_parser::parse_tls_client_hello_extension(raw) else {
            continue;
        };
        match ext {
            TlsExtension::SNI(names) => {
                h.sni = names.iter().find(|(t, _)| t.0 == 0).map(|(_, n)| lossy(n));
            }
            TlsExtension::ALPN(list) => {
                first_alpn = list.first().map(|v| v.to_vec());
                h.alpn = list.iter().map(|v| lossy(v)).collect();
            }
            TlsExtension::EllipticCurves(g) => h.supported_groups = g.iter().map(|g| g.0).collect(),
            TlsExtension::EcPointFormats(f) => h.ec_point_formats = f.to_vec(),
            TlsExtension::SignatureAlgorithms(s) => h.signature_algorithms = s,
            TlsExtension::SupportedVersions(v) => {
                h.supported_versions = v.iter().map(|v| v.0).collect();
            }
            _ => {}
        }
    }
    h.ja3 = ja3_string(
        h.legacy_version,
        &h.cipher_suites,
        &h.extensions,
        &h.supported_groups,
        &h.ec_point_formats,
    );
    h.ja3_hash = md5_hex(&h.ja3);
    (h.ja4, h.ja4_r) = ja4(
        h.legacy_version,
        &h.supported_versions,
        &h.cipher_suites,
        &h.extensions,
        first_alpn.as_deref(),
        &h.signature_algorithms,
    );
    Some(h)
}

/// SHA-256("HelloRetryRequest"), the ServerHello.random of a HelloRetryRequest.
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

fn server_hello(record_version: u16, body: &[u8]) -> Option<TlsServerHello> {
    let (_, sh) = tls_parser::parse_tls_handshake_server_hello(body).ok()?;
    let mut h = TlsServerHello {
        record_version,
        legacy_version: sh.version.0,
        selected_version: None,
        version: sh.version.0,
        cipher_suite: sh.cipher.0,
        compression: sh.compression.0,
        extensions: Vec::new(),
        alpn: None,
        hello_retry_request: sh.random == HRR_RANDOM,
        ja3s: String::new(),
        ja3s_hash: String::new(),
        ja4s: String::new(),
        ja4s_r: String::new(),
    };
    let mut alpn_raw: Option<Vec<u8>> = None;
    for (t, raw) in split_extensions(sh.ext.unwrap_or_default()) {
        h.extensions.push(t);
        let Ok((_, ext)) = tls_parser::parse_tls_server_hello_extension(raw) else {
            continue;
        };
        match ext {
            TlsExtension::ALPN(list) => {
                alpn_raw = list.first().map(|v| v.to_vec());
                h.alpn = list.first().map(|v| lossy(v));
            }
            TlsExtension::SupportedVersions(v) => h.selected_version = v.first().map(|v| v.0),
            _ => {}
        }
    }
    h.version = h.selected_version.unwrap_or(h.legacy_version);
    h.ja3s = ja3s_string(h.legacy_version, h.cipher_suite, &h.extensions);
    h.ja3s_hash = md5_hex(&h.ja3s);
    (h.ja4s, h.ja4s_r) = ja4s(
        h.version,
        h.cipher_suite,
        &h.extensions,
        alpn_raw.as_deref(),
    );
    Some(h)
}

/// The complete handshake messages at the start of `data`, a handshake
/// byte stream without a record layer (QUIC's CRYPTO frames, RFC 9001
/// §4): their events (hellos with `record_version` 0, and JA4/JA4S with
/// the protocol letter `q` of QUIC, FoxIO JA4 "a" part) and the bytes they
/// take. A message cut at the end is left for more data; one longer than
/// [`MAX_HANDSHAKE_LEN`] is a [`TlsEvent::Invalid`] event and ends the
/// stream.
pub fn quic_handshake_messages(data: &[u8]) -> (Vec<TlsEvent>, usize) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(h) = data.get(at..at + 4) {
        let len = usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3]);
        if len > MAX_HANDSHAKE_LEN {
            out.push(TlsEvent::Invalid {
                error: TlsError::HandshakeTooLong { offset: at, len },
            });
            return (out, data.len());
        }
        let Some(body) = data.get(at + 4..at + 4 + len) else {
            break;
        };
        let mut event = handshake_event(h[0], body, 0, at);
        match &mut event {
            TlsEvent::ClientHello(c) => {
                quic_letter(&mut c.ja4);
                quic_letter(&mut c.ja4_r);
            }
            TlsEvent::ServerHello(s) => {
                quic_letter(&mut s.ja4s);
                quic_letter(&mut s.ja4s_r);
            }
            _ => {}
        }
        out.push(event);
        at += 4 + len;
    }
    (out, at)
}

/// The JA4 protocol letter of QUIC (`q`) in place of TCP's (`t`).
fn quic_letter(fp: &mut String) {
    if fp.starts_with('t') {
        fp.replace_range(..1, "q");
    }
}

/// Decodes one complete handshake message.
fn handshake_event(msg_type: u8, body: &[u8], record_version: u16, offset: usize) -> TlsEvent {
    let malformed = TlsEvent::Malformed { msg_type, offset };
    match msg_type {
        1 => client_hello(record_version, body)
            .map_or(malformed, |h| TlsEvent::ClientHello(Box::new(h))),
        2 => server_hello(record_version, body)
            .map_or(malformed, |h| TlsEvent::ServerHello(Box::new(h))),
        _ => TlsEvent::Handshake {
            msg_type,
            len: body.len(),
        },
    }
}

/// Receives what a [`TlsStreamParser`] finds, in stream order.
///
/// Events come as soon as the record carrying them is complete. Records are
/// grouped: a group ends after a record that leaves no handshake message
/// in progress, and [`TlsSink::boundary`] is called then. A caller that
/// wants only groups known to be complete (as [`parse_tls_records`] gives
/// them) keeps the events of the current group aside until the boundary,
/// and drops them on a [`TlsEvent::Invalid`] event.
pub trait TlsSink {
    /// An event of a complete record. [`TlsEvent::Invalid`] is the last
    /// event of a stream.
    fn event(&mut self, event: TlsEvent);

    /// The end of a group: every event since the previous boundary belongs
    /// to complete records and complete handshake messages.
    fn boundary(&mut self) {}
}

/// Collects every event, ignoring group boundaries.
impl TlsSink for Vec<TlsEvent> {
    fn event(&mut self, event: TlsEvent) {
        self.push(event);
    }
}

/// Record content types (RFC 8446 §5.1, RFC 6520).
const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
const HEARTBEAT: u8 = 24;
/// Length of a record header (type, version, length).
const RECORD_HEADER_LEN: usize = 5;
/// Length of a handshake message header (type, 24-bit length).
const MESSAGE_HEADER_LEN: usize = 4;

/// Content type, version and fragment length of a record header, or why the
/// header is not TLS. `offset` is the header's stream offset.
fn record_header(h: [u8; RECORD_HEADER_LEN], offset: usize) -> Result<(u8, u16, usize), TlsError> {
    let [ctype, major, minor, l0, l1] = h;
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    if !(CHANGE_CIPHER_SPEC..=HEARTBEAT).contains(&ctype) || major != 3 {
        return Err(TlsError::NotTls { offset });
    }
    if len > MAX_RECORD_LEN {
        return Err(TlsError::RecordTooLong { offset, len });
    }
    Ok((ctype, u16::from_be_bytes([major, minor]), len))
}

/// Body length of a handshake message header (after its type byte), or
/// the error for a message longer than [`MAX_HANDSHAKE_LEN`].
fn message_len(a: u8, b: u8, c: u8, record_offset: usize) -> Result<usize, TlsError> {
    let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
    if len > MAX_HANDSHAKE_LEN {
        return Err(TlsError::HandshakeTooLong {
            offset: record_offset,
            len,
        });
    }
    Ok(len)
}

/// Incremental parser of the TLS records of one direction of a TCP stream.
///
/// Feed it the stream in order, in pieces of any size; each byte is looked
/// at a bounded number of times whatever the cut: a record cut by a
/// segment end is kept (at most `5 +` [`MAX_RECORD_LEN`] bytes) until its
/// last byte arrives, and the bytes of a handshake message spread over
/// several records are kept (at most `4 +` [`MAX_HANDSHAKE_LEN`] bytes)
/// until it is complete, then decoded once. Nothing else is kept, and a
/// buffer is given back as soon as it is emptied.
///
/// Handshake records after a ChangeCipherSpec are reported as
/// [`TlsEvent::EncryptedHandshake`], unless the connection is TLS 1.3 (see
/// the module docs). After a [`TlsEvent::Invalid`] event
/// the parser ignores further input.
///
/// Offsets in events are stream offsets: from the first byte ever fed.
#[derive(Debug, Default, Clone)]
pub struct TlsStreamParser {
    /// The bytes of a record whose end has not been fed yet, header included.
    record: Vec<u8>,
    /// The bytes of a handshake message not complete yet, header included.
    message: Vec<u8>,
    /// Bytes fed so far.
    fed: usize,
    /// Stream offset just past the record that ended the last group.
    boundary: usize,
    /// A ChangeCipherSpec was seen (before TLS 1.3 was known).
    encrypted: bool,
    /// The connection is TLS 1.3: a ChangeCipherSpec does not start
    /// encryption.
    tls13: bool,
    /// An [`TlsEvent::Invalid`] event was given.
    failed: bool,
    /// See [`Self::bytes_examined`].
    examined: u64,
}

impl TlsStreamParser {
    /// A parser at the start of a stream.
    pub fn new() -> TlsStreamParser {
        TlsStreamParser::default()
    }

    /// Parses the next bytes of the stream, giving `sink` the events of the
    /// records completed by them.
    pub fn feed<S: TlsSink + ?Sized>(&mut self, data: &[u8], sink: &mut S) {
        if self.failed {
            return;
        }
        self.count(data.len());
        let end = self.fed.saturating_add(data.len());
        if let Err(error) = self.feed_records(data, sink) {
            sink.event(TlsEvent::Invalid { error });
            self.failed = true;
            self.fed = end;
            self.record = Vec::new();
            self.message = Vec::new();
        }
    }

    /// Tells the parser the connection is TLS 1.3 (the other side's
    /// ServerHello or HelloRetryRequest chose it): from now on a
    /// ChangeCipherSpec does not make later handshake records encrypted.
    /// A parser learns it by itself from a ServerHello it decodes.
    pub fn set_tls13(&mut self) {
        self.tls13 = true;
    }

    /// True once the connection is known to be TLS 1.3 (see
    /// [`Self::set_tls13`]).
    pub fn is_tls13(&self) -> bool {
        self.tls13
    }

    /// True once a ChangeCipherSpec made later handshake records
    /// encrypted (not in TLS 1.3).
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// True once the input was found not to be a TLS record stream.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Bytes fed so far.
    pub fn fed(&self) -> usize {
        self.fed
    }

    /// Stream offset just past the last record that ended a group (see
    /// [`TlsSink`]): the bytes before it produced all their events.
    pub fn consumed(&self) -> usize {
        self.boundary
    }

    /// Bytes fed since the end of the last group: the bytes a caller that
    /// re-parsed from the last group end would have to keep.
    pub fn pending_len(&self) -> usize {
        self.fed.saturating_sub(self.boundary)
    }

    /// Bytes of buffer capacity held (a cut record and an incomplete
    /// handshake message): with the standard `Vec` growth, at most twice
    /// [`Self::pending_len`] plus 16.
    pub fn held(&self) -> usize {
        self.record
            .capacity()
            .saturating_add(self.message.capacity())
    }

    /// Work done so far, in bytes: every byte fed, plus every byte copied
    /// into the record or message buffer, plus the body of every hello
    /// decoded. At most four times [`Self::fed`].
    pub fn bytes_examined(&self) -> u64 {
        self.examined
    }

    fn count(&mut self, n: usize) {
        self.examined = self
            .examined
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Moves up to `want` bytes of `data` into the record buffer; returns
    /// the rest of `data`.
    fn take_into_record<'d>(&mut self, data: &'d [u8], want: usize) -> &'d [u8] {
        let (head, rest) = data.split_at(want.min(data.len()));
        self.record.extend_from_slice(head);
        self.fed = self.fed.saturating_add(head.len());
        self.count(head.len());
        rest
    }

    fn feed_records<S: TlsSink + ?Sized>(
        &mut self,
        mut data: &[u8],
        sink: &mut S,
    ) -> Result<(), TlsError> {
        // a record cut at the end of an earlier piece
        if !self.record.is_empty() {
            let start = self.fed.saturating_sub(self.record.len());
            if let Some(missing) = RECORD_HEADER_LEN.checked_sub(self.record.len()) {
                data = self.take_into_record(data, missing);
            }
            let Some(h) = self.record.first_chunk() else {
                return Ok(());
            };
            let (ctype, version, len) = record_header(*h, start)?;
            let total = RECORD_HEADER_LEN.saturating_add(len);
            data = self.take_into_record(data, total.saturating_sub(self.record.len()));
            if self.record.len() < total {
                return Ok(());
            }
            let record = std::mem::take(&mut self.record);
            let fragment = record.get(RECORD_HEADER_LEN..).unwrap_or_default();
            self.record_complete(ctype, version, fragment, start, sink)?;
        }
        // whole records straight from `data`; the last one, if cut, is kept
        while !data.is_empty() {
            let start = self.fed;
            let Some(h) = data.first_chunk::<RECORD_HEADER_LEN>() else {
                self.take_into_record(data, data.len());
                break;
            };
            let (ctype, version, len) = record_header(*h, start)?;
            let Some((record, rest)) = data.split_at_checked(RECORD_HEADER_LEN.saturating_add(len))
            else {
                self.take_into_record(data, data.len());
                break;
            };
            data = rest;
            self.fed = self.fed.saturating_add(record.len());
            let fragment = record.get(RECORD_HEADER_LEN..).unwrap_or_default();
            self.record_complete(ctype, version, fragment, start, sink)?;
        }
        Ok(())
    }

    /// One complete record; `self.fed` is already past it.
    fn record_complete<S: TlsSink + ?Sized>(
        &mut self,
        ctype: u8,
        record_version: u16,
        fragment: &[u8],
        offset: usize,
        sink: &mut S,
    ) -> Result<(), TlsError> {
        let len = fragment.len();
        match ctype {
            HANDSHAKE if !self.encrypted => {
                self.handshake_fragment(fragment, record_version, offset, sink)?;
            }
            HANDSHAKE => sink.event(TlsEvent::EncryptedHandshake { len }),
            CHANGE_CIPHER_SPEC => {
                if !self.tls13 {
                    self.encrypted = true;
                }
                sink.event(TlsEvent::ChangeCipherSpec);
            }
            ALERT => {
                let (level, description) = match fragment {
                    [l, d] if !self.encrypted => (Some(*l), Some(*d)),
                    _ => (None, None),
                };
                sink.event(TlsEvent::Alert { level, description });
            }
            APPLICATION_DATA => sink.event(TlsEvent::ApplicationData { len }),
            _ => sink.event(TlsEvent::Heartbeat { len }),
        }
        if self.message.is_empty() {
            self.boundary = self.fed;
            sink.boundary();
        }
        Ok(())
    }

    /// Appends up to `want` bytes of `data` to the message buffer; returns
    /// the rest of `data`.
    fn take_into_message<'d>(&mut self, data: &'d [u8], want: usize) -> &'d [u8] {
        let (head, rest) = data.split_at(want.min(data.len()));
        self.message.extend_from_slice(head);
        self.count(head.len());
        rest
    }

    /// The fragment of a plaintext handshake record: completes the message
    /// in progress, then takes the messages that lie whole in the
    /// fragment without copying them, and keeps the start of the last one
    /// if it goes on in a later record.
    fn handshake_fragment<S: TlsSink + ?Sized>(
        &mut self,
        mut rest: &[u8],
        record_version: u16,
        record_offset: usize,
        sink: &mut S,
    ) -> Result<(), TlsError> {
        if !self.message.is_empty() {
            if let Some(missing) = MESSAGE_HEADER_LEN.checked_sub(self.message.len()) {
                rest = self.take_into_message(rest, missing);
            }
            let Some(&[msg_type, a, b, c]) = self.message.first_chunk() else {
                return Ok(());
            };
            let total = MESSAGE_HEADER_LEN.saturating_add(message_len(a, b, c, record_offset)?);
            rest = self.take_into_message(rest, total.saturating_sub(self.message.len()));
            if self.message.len() < total {
                return Ok(());
            }
            let message = std::mem::take(&mut self.message);
            let body = message.get(MESSAGE_HEADER_LEN..).unwrap_or_default();
            self.message_complete(msg_type, body, record_version, record_offset, sink);
        }
        while let [msg_type, a, b, c, after @ ..] = rest {
            let len = message_len(*a, *b, *c, record_offset)?;
            let Some((body, after)) = after.split_at_checked(len) else {
                break;
            };
            self.message_complete(*msg_type, body, record_version, record_offset, sink);
            rest = after;
        }
        self.take_into_message(rest, rest.len());
        Ok(())
    }

    fn message_complete<S: TlsSink + ?Sized>(
        &mut self,
        msg_type: u8,
        body: &[u8],
        record_version: u16,
        record_offset: usize,
        sink: &mut S,
    ) {
        if matches!(msg_type, 1 | 2) {
            self.count(body.len());
        }
        let event = handshake_event(msg_type, body, record_version, record_offset);
        if let TlsEvent::ServerHello(h) = &event
            && (h.version == 0x0304 || h.hello_retry_request)
        {
            self.tls13 = true;
        }
        sink.event(event);
    }
}

/// Keeps the events of a group aside until its boundary (see [`TlsSink`]).
#[derive(Debug, Default)]
struct CompleteGroups {
    out: Vec<TlsEvent>,
    group: Vec<TlsEvent>,
}

impl TlsSink for CompleteGroups {
    fn event(&mut self, event: TlsEvent) {
        if matches!(event, TlsEvent::Invalid { .. }) {
            self.group.clear();
            self.out.push(event);
        } else {
            self.group.push(event);
        }
    }

    fn boundary(&mut self) {
        self.out.append(&mut self.group);
    }
}

/// Parses the TLS records at the start of one direction of a TCP stream.
///
/// Returns the events of every complete record and the number of bytes
/// consumed. A record that is not complete yet, or a handshake message whose
/// last bytes are in a record not received yet, is not consumed: call again
/// with the unconsumed bytes plus more data and its events will be produced
/// then (never twice). After a [`TlsEvent::Invalid`] event the whole input is
/// reported consumed and the stream should not be fed again.
///
/// Handshake records after a ChangeCipherSpec in the same call are reported
/// as [`TlsEvent::EncryptedHandshake`]; a caller resuming after a
/// ChangeCipherSpec should stop looking for hellos.
///
/// Calling this again on a growing buffer costs time quadratic in the
/// length of a message spread over many records: a stream that arrives in
/// pieces is better given to a [`TlsStreamParser`].
pub fn parse_tls_records(data: &[u8]) -> (Vec<TlsEvent>, usize) {
    let mut parser = TlsStreamParser::new();
    let mut sink = CompleteGroups::default();
    parser.feed(data, &mut sink);
    let consumed = if parser.is_failed() {
        data.len()
    } else {
        parser.consumed()
    };
    (sink.out, consumed)
}

/// Test support shared by this module's tests and the `tls` plugin's.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// `parse_tls_records` as it was before [`TlsStreamParser`] existed
    /// (commit 24cff81), verbatim: the oracle the incremental parser is
    /// checked against.
    pub(crate) fn old_parse_tls_records(data: &[u8]) -> (Vec<TlsEvent>, usize) {
        let mut out = Vec::new();
        let mut pending: Vec<TlsEvent> = Vec::new();
        let mut hs_buf: Vec<u8> = Vec::new();
        let mut consumed = 0usize;
        let mut pos = 0usize;
        let mut encrypted = false;
        let invalid = |mut out: Vec<TlsEvent>, e: TlsError| {
            out.push(TlsEvent::Invalid { error: e });
            (out, data.len())
        };
        while let Some(&[ctype, major, _minor, l0, l1]) = data.get(pos..pos.saturating_add(5)) {
            let record_version = u16::from_be_bytes([major, _minor]);
            let len = usize::from(u16::from_be_bytes([l0, l1]));
            if !(20..=24).contains(&ctype) || major != 3 {
                return invalid(out, TlsError::NotTls { offset: pos });
            }
            if len > MAX_RECORD_LEN {
                return invalid(out, TlsError::RecordTooLong { offset: pos, len });
            }
            let start = pos.saturating_add(5);
            let Some(frag) = data.get(start..start.saturating_add(len)) else {
                break;
            };
            let record_offset = pos;
            pos = start.saturating_add(len);
            match ctype {
                22 if !encrypted => {
                    hs_buf.extend_from_slice(frag);
                    while let [msg_type, a, b, c, rest @ ..] = hs_buf.as_slice() {
                        let mlen = usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c);
                        if mlen > MAX_HANDSHAKE_LEN {
                            return invalid(
                                out,
                                TlsError::HandshakeTooLong {
                                    offset: record_offset,
                                    len: mlen,
                                },
                            );
                        }
                        let Some(body) = rest.get(..mlen) else {
                            break;
                        };
                        pending.push(handshake_event(
                            *msg_type,
                            body,
                            record_version,
                            record_offset,
                        ));
                        let used = mlen.saturating_add(4);
                        hs_buf.drain(..used.min(hs_buf.len()));
                    }
                }
                22 => pending.push(TlsEvent::EncryptedHandshake { len }),
                20 => {
                    encrypted = true;
                    pending.push(TlsEvent::ChangeCipherSpec);
                }
                21 => {
                    let (level, description) = match frag {
                        [l, d] if !encrypted => (Some(*l), Some(*d)),
                        _ => (None, None),
                    };
                    pending.push(TlsEvent::Alert { level, description });
                }
                23 => pending.push(TlsEvent::ApplicationData { len }),
                _ => pending.push(TlsEvent::Heartbeat { len }),
            }
            if hs_buf.is_empty() {
                out.append(&mut pending);
                consumed = pos;
            }
        }
        (out, consumed)
    }

    /// The old plugin's way of using [`old_parse_tls_records`] on one
    /// direction: keep what was not consumed, append each segment, parse the
    /// whole again.
    #[derive(Debug, Default)]
    pub(crate) struct OldLoop {
        /// Bytes kept between calls (the old per-side buffer).
        pub(crate) buf: Vec<u8>,
        /// Stream offset of `buf[0]`.
        base: usize,
        /// Sum of the buffer lengths parsed: the old cost in bytes examined.
        pub(crate) examined: u64,
    }

    impl OldLoop {
        /// One segment: the events the old code produced, with offsets made
        /// stream offsets; `buf` is left as the old code left it.
        pub(crate) fn call(&mut self, seg: &[u8]) -> Vec<TlsEvent> {
            self.buf.extend_from_slice(seg);
            self.examined += self.buf.len() as u64;
            let (ev, consumed) = old_parse_tls_records(&self.buf);
            let base = self.base;
            self.buf.drain(..consumed.min(self.buf.len()));
            self.base += consumed;
            ev.into_iter().map(|e| shifted(e, base)).collect()
        }
    }

    /// `e` with its offsets moved by `base`.
    pub(crate) fn shifted(e: TlsEvent, base: usize) -> TlsEvent {
        match e {
            TlsEvent::Malformed { msg_type, offset } => TlsEvent::Malformed {
                msg_type,
                offset: offset + base,
            },
            TlsEvent::Invalid { error } => TlsEvent::Invalid {
                error: match error {
                    TlsError::NotTls { offset } => TlsError::NotTls {
                        offset: offset + base,
                    },
                    TlsError::RecordTooLong { offset, len } => TlsError::RecordTooLong {
                        offset: offset + base,
                        len,
                    },
                    TlsError::HandshakeTooLong { offset, len } => TlsError::HandshakeTooLong {
                        offset: offset + base,
                        len,
                    },
                },
            },
            e => e,
        }
    }

    /// A handshake message: type, 24-bit length, body.
    /// A TLS 1.3 ServerHello (a HelloRetryRequest with `hrr`) record
    /// choosing TLS_AES_128_GCM_SHA256 through supported_versions, with a
    /// key_share (x25519) extension.
    pub(crate) fn tls13_server_hello(hrr: bool) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(if hrr { &HRR_RANDOM } else { &[0x33; 32] });
        body.push(0);
        body.extend_from_slice(&[0x13, 0x01, 0]);
        let exts = [0, 43, 0, 2, 3, 4, 0, 51, 0, 2, 0, 0x1d];
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend(exts);
        records(22, &handshake(2, &body), 1 << 14)
    }

    pub(crate) fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
        let n = body.len() as u32;
        let mut v = vec![msg_type, (n >> 16) as u8, (n >> 8) as u8, n as u8];
        v.extend_from_slice(body);
        v
    }

    /// `payload` cut into records of type `ctype` (version 3.1) carrying at
    /// most `chunk` bytes each.
    pub(crate) fn records(ctype: u8, payload: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for c in payload.chunks(chunk) {
            out.extend_from_slice(&[ctype, 3, 1]);
            out.extend_from_slice(&(c.len() as u16).to_be_bytes());
            out.extend_from_slice(c);
        }
        out
    }

    /// The handshake message of [`crate::build::tls_client_hello`] with a
    /// padding extension (RFC 7685, type 21) of `pad` zero bytes at the end.
    pub(crate) fn padded_client_hello(pad: usize) -> Vec<u8> {
        let rec = crate::build::tls_client_hello("www.example.com", &["h2", "http/1.1"]);
        let mut m = rec[5..].to_vec();
        // header 4, legacy_version 2, random 32, session id 1, 3 suites 2+6,
        // compression 2: then the extensions length
        let at = 4 + 2 + 32 + 1 + 8 + 2;
        let ext_len = usize::from(u16::from_be_bytes([m[at], m[at + 1]]));
        m.extend_from_slice(&21u16.to_be_bytes());
        m.extend_from_slice(&(pad as u16).to_be_bytes());
        m.resize(m.len() + pad, 0);
        m[at..at + 2].copy_from_slice(&((ext_len + 4 + pad) as u16).to_be_bytes());
        let body = (m.len() - 4) as u32;
        m[1..4].copy_from_slice(&body.to_be_bytes()[1..]);
        m
    }

    /// A server's first flight as one handshake stream cut into records of
    /// `chunk` bytes: the ServerHello of [`crate::build::tls_server_hello`]
    /// (0xc02f, "h2"), a Certificate message of `cert` bytes, ServerHelloDone.
    pub(crate) fn server_flight(cert: usize, chunk: usize) -> Vec<u8> {
        let sh = crate::build::tls_server_hello(0xc02f, Some("h2"));
        let mut hs = sh[5..].to_vec();
        let chain = cert - 3;
        let mut body = (chain as u32).to_be_bytes()[1..].to_vec();
        body.extend((0..chain).map(|i| (i % 251) as u8));
        hs.extend(handshake(11, &body));
        hs.extend(handshake(14, &[]));
        records(22, &hs, chunk)
    }

    /// A xorshift64 generator for reproducible random cuts and mutations.
    #[derive(Debug)]
    pub(crate) struct XorShift(pub(crate) u64);

    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// `data` cut into pieces of 1 to `max` bytes.
        pub(crate) fn cuts<'d>(&mut self, data: &'d [u8], max: usize) -> Vec<&'d [u8]> {
            let mut out = Vec::new();
            let mut rest = data;
            while !rest.is_empty() {
                let n = (self.next() as usize % max + 1).min(rest.len());
                let (a, b) = rest.split_at(n);
                out.push(a);
                rest = b;
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(t: u16, data: &[u8]) -> Vec<u8> {
        let mut v = t.to_be_bytes().to_vec();
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn u16_list(prefix_len_bytes: usize, v: &[u16]) -> Vec<u8> {
        let n = v.len() * 2;
        let mut out = if prefix_len_bytes == 1 {
            vec![n as u8]
        } else {
            (n as u16).to_be_bytes().to_vec()
        };
        for x in v {
            out.extend_from_slice(&x.to_be_bytes());
        }
        out
    }

    fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
        let n = body.len() as u32;
        let mut v = vec![msg_type, (n >> 16) as u8, (n >> 8) as u8, n as u8];
        v.extend_from_slice(body);
        v
    }

    fn record(ctype: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![ctype, 3, 1];
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    /// A small hand-made TLS 1.2 ClientHello.
    ///
    /// legacy_version 0x0303 (771); ciphers GREASE 0x0a0a, 0xc02f (49199),
    /// 0x009c (156); extensions: GREASE 0x1a1a, server_name (0) "example.com",
    /// supported_groups (10) [GREASE 0x2a2a, x25519 29, secp256r1 23],
    /// ec_point_formats (11) [0], ALPN (16) ["http/1.1"].
    ///
    /// JA3 by hand: "771,49199-156,0-10-11-16,29-23,0".
    fn small_client_hello() -> Vec<u8> {
        let mut body = vec![0x03, 0x03]; // legacy_version
        body.extend_from_slice(&[0x11; 32]); // random
        body.push(0); // session id length
        body.extend(u16_list(2, &[0x0a0a, 0xc02f, 0x009c])); // cipher suites
        body.extend_from_slice(&[1, 0]); // compression: null
        let mut exts = Vec::new();
        exts.extend(ext(0x1a1a, &[]));
        // server_name: list len 14, type 0 host_name, len 11, "example.com"
        let mut sni = vec![0, 14, 0, 0, 11];
        sni.extend_from_slice(b"example.com");
        exts.extend(ext(0, &sni));
        exts.extend(ext(10, &u16_list(2, &[0x2a2a, 29, 23])));
        exts.extend(ext(11, &[1, 0]));
        // ALPN: list len 9, len 8 "http/1.1"
        let mut alpn = vec![0, 9, 8];
        alpn.extend_from_slice(b"http/1.1");
        exts.extend(ext(16, &alpn));
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend(exts);
        record(22, &handshake(1, &body))
    }

    /// A hand-made ServerHello: TLS 1.2, cipher 0xc02f, extensions
    /// renegotiation_info (65281), ALPN (16) "http/1.1", ec_point_formats (11).
    ///
    /// JA3S by hand: "771,49199,65281-16-11".
    fn small_server_hello() -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0x22; 32]);
        body.push(0);
        body.extend_from_slice(&[0xc0, 0x2f, 0]);
        let mut exts = ext(0xff01, &[0]);
        let mut alpn = vec![0, 9, 8];
        alpn.extend_from_slice(b"http/1.1");
        exts.extend(ext(16, &alpn));
        exts.extend(ext(11, &[1, 0]));
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend(exts);
        record(22, &handshake(2, &body))
    }

    #[test]
    fn tls_client_hello_summary_and_ja3() {
        let (ev, consumed) = parse_tls_records(&small_client_hello());
        assert_eq!(consumed, small_client_hello().len());
        let [TlsEvent::ClientHello(h)] = ev.as_slice() else {
            panic!("{ev:?}")
        };
        assert_eq!(h.legacy_version, 0x0303);
        assert_eq!(h.sni.as_deref(), Some("example.com"));
        assert_eq!(h.alpn, vec!["http/1.1".to_string()]);
        assert_eq!(h.cipher_suites, vec![0x0a0a, 0xc02f, 0x009c]);
        assert_eq!(h.extensions, vec![0x1a1a, 0, 10, 11, 16]);
        assert_eq!(h.supported_groups, vec![0x2a2a, 29, 23]);
        assert_eq!(h.ec_point_formats, vec![0]);
        assert_eq!(h.ja3, "771,49199-156,0-10-11-16,29-23,0");
        // md5("771,49199-156,0-10-11-16,29-23,0")
        assert_eq!(h.ja3_hash, md5_hex("771,49199-156,0-10-11-16,29-23,0"));
        assert_eq!(h.ja3_hash.len(), 32);
        // JA4 a-part by hand: TLS 1.2, SNI, 2 ciphers, 4 extensions, "h1".
        assert!(h.ja4.starts_with("t12d0204h1_"), "{}", h.ja4);
        assert_eq!(h.ja4_r, "t12d0204h1_009c,c02f_000a,000b");
    }

    #[test]
    fn tls_server_hello_summary_and_ja3s() {
        let mut stream = small_server_hello();
        stream.extend(record(22, &handshake(14, &[]))); // ServerHelloDone
        stream.extend(record(20, &[1]));
        stream.extend(record(22, &[0xde; 40])); // encrypted Finished
        stream.extend(record(23, &[0xab; 10]));
        stream.extend(record(21, &[0xcd; 26])); // encrypted alert
        let (ev, consumed) = parse_tls_records(&stream);
        assert_eq!(consumed, stream.len());
        let TlsEvent::ServerHello(h) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(h.version, 0x0303);
        assert_eq!(h.cipher_suite, 0xc02f);
        assert_eq!(h.alpn.as_deref(), Some("http/1.1"));
        assert_eq!(h.ja3s, "771,49199,65281-16-11");
        assert_eq!(h.ja3s_hash, md5_hex("771,49199,65281-16-11"));
        assert_eq!(
            &ev[1..],
            &[
                TlsEvent::Handshake {
                    msg_type: 14,
                    len: 0
                },
                TlsEvent::ChangeCipherSpec,
                TlsEvent::EncryptedHandshake { len: 40 },
                TlsEvent::ApplicationData { len: 10 },
                TlsEvent::Alert {
                    level: None,
                    description: None
                },
            ]
        );
    }

    #[test]
    fn tls13_server_hello_selected_version() {
        // legacy_version 0x0303, TLS_AES_128_GCM_SHA256 (0x1301 = 4865),
        // supported_versions (43) selecting 0x0304, key_share (51) x25519 + 32-byte key.
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0x33; 32]);
        body.push(0);
        body.extend_from_slice(&[0x13, 0x01, 0]);
        let mut exts = ext(43, &[0x03, 0x04]);
        let mut ks = vec![0x00, 0x1d, 0x00, 0x20];
        ks.extend_from_slice(&[0x44; 32]);
        exts.extend(ext(51, &ks));
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut stream = record(22, &handshake(2, &body));
        stream.extend(record(20, &[1]));
        stream.extend(record(23, &[0; 50]));
        let (ev, consumed) = parse_tls_records(&stream);
        assert_eq!(consumed, stream.len());
        let TlsEvent::ServerHello(h) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(h.legacy_version, 0x0303);
        assert_eq!(h.selected_version, Some(0x0304));
        assert_eq!(h.version, 0x0304);
        assert_eq!(h.cipher_suite, 0x1301);
        assert!(!h.hello_retry_request);
        assert_eq!(h.ja3s, "771,4865,43-51");
        assert_eq!(ev.len(), 3);
    }

    #[test]
    fn ja4s_is_the_specifications_example() {
        // FoxIO technical_details/JA4S.md: TLS 1.2, cipher c030, extensions
        // 0005,0017,ff01,0000 in that order, no ALPN
        let (ja4s, raw) = ja4s(0x0303, 0xc030, &[0x0005, 0x0017, 0xff01, 0x0000], None);
        assert_eq!(ja4s, "t120400_c030_4e8089b08790");
        assert_eq!(raw, "t120400_c030_0005,0017,ff01,0000");
        // GREASE left out, ALPN by its first and last characters
        let (ja4s, _) = ja4s_of(0x0304, 0x1301, &[0x0a0a, 0x002b, 0x0033], Some(b"h2"));
        assert!(ja4s.starts_with("t1302h2_1301_"), "{ja4s}");
        let (ja4s, raw) = ja4s_of(0x0303, 0x009c, &[], None);
        assert_eq!(
            (ja4s.as_str(), raw.as_str()),
            ("t120000_009c_000000000000", "t120000_009c_")
        );
    }

    fn ja4s_of(v: u16, c: u16, e: &[u16], a: Option<&[u8]>) -> (String, String) {
        ja4s(v, c, e, a)
    }

    #[test]
    fn server_hellos_carry_ja4s() {
        let (ev, _) = parse_tls_records(&small_server_hello());
        let [TlsEvent::ServerHello(h)] = ev.as_slice() else {
            panic!("{ev:?}")
        };
        // extensions ff01,0010,000b in wire order, ALPN http/1.1 -> "h1"
        let hash = sha256_12("ff01,0010,000b");
        assert_eq!(h.ja4s, format!("t1203h1_c02f_{hash}"));
        assert_eq!(h.ja4s_r, "t1203h1_c02f_ff01,0010,000b");
    }

    #[test]
    fn names_of_versions_ciphers_and_extensions() {
        assert_eq!(version_name(0x0304), "TLS 1.3");
        assert_eq!(version_name(0x7f1c), "0x7f1c");
        assert_eq!(cipher_name(0x1301), "TLS_AES_128_GCM_SHA256");
        assert_eq!(cipher_name(0xc02f), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
        assert_eq!(cipher_name(0x00ff), "TLS_EMPTY_RENEGOTIATION_INFO_SCSV");
        assert_eq!(cipher_name(0x0a0a), "GREASE");
        assert_eq!(cipher_name(0xfefe), "0xfefe");
        assert!(
            EXTENSION_NAMES.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted"
        );
        assert_eq!(extension_name(0), "server_name");
        assert_eq!(extension_name(16), "application_layer_protocol_negotiation");
        assert_eq!(extension_name(65281), "renegotiation_info");
        assert_eq!(extension_name(0x1a1a), "GREASE");
        assert_eq!(extension_name(40), "0x0028");
    }

    #[test]
    fn a_tls13_change_cipher_spec_does_not_hide_the_hellos_after_it() {
        // server: HelloRetryRequest, ChangeCipherSpec, ServerHello,
        // encrypted handshake as application data
        let mut server = test_support::tls13_server_hello(true);
        server.extend(record(20, &[1]));
        server.extend(test_support::tls13_server_hello(false));
        server.extend(record(23, &[7; 40]));
        let (ev, consumed) = parse_tls_records(&server);
        assert_eq!(consumed, server.len());
        let hellos: Vec<bool> = ev
            .iter()
            .filter_map(|e| match e {
                TlsEvent::ServerHello(h) => Some(h.hello_retry_request),
                _ => None,
            })
            .collect();
        assert_eq!(hellos, [true, false], "{ev:?}");
        // client: ClientHello, ChangeCipherSpec, second ClientHello, once
        // the parser knows the connection is TLS 1.3
        let ch = small_client_hello();
        let mut client = ch.clone();
        client.extend(record(20, &[1]));
        client.extend_from_slice(&ch);
        let mut p = TlsStreamParser::new();
        let mut events = Vec::new();
        p.feed(&ch, &mut events);
        p.set_tls13();
        p.feed(client.get(ch.len()..).unwrap(), &mut events);
        let n = events
            .iter()
            .filter(|e| matches!(e, TlsEvent::ClientHello(_)))
            .count();
        assert_eq!(n, 2, "{events:?}");
        // without TLS 1.3, the record after a ChangeCipherSpec is encrypted
        let (ev, _) = parse_tls_records(&client);
        let n = ev
            .iter()
            .filter(|e| matches!(e, TlsEvent::ClientHello(_)))
            .count();
        assert_eq!(n, 1, "{ev:?}");
        assert!(matches!(
            ev.last(),
            Some(TlsEvent::EncryptedHandshake { .. })
        ));
    }

    #[test]
    fn tls_md5_known_value() {
        // RFC 1321 test suite: MD5("abc").
        assert_eq!(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn tls_grease_detection() {
        assert!(is_grease(0x0a0a) && is_grease(0xfafa) && is_grease(0x2a2a));
        assert!(!is_grease(0x0a1a) && !is_grease(0xc02f) && !is_grease(0x000a));
    }

    /// Chrome 143 ClientHello rebuilt from the lists of a published fingerprint
    /// report (repository service0427/v2_cp_app, file tls.md, browserleaks
    /// output): ja3_text, ja3_hash, ja4, ja4_r and ja4_ro as printed there.
    /// Extension contents not covered by JA3/JA4 are left empty.
    #[test]
    fn tls_ja3_ja4_published_vector() {
        let ciphers = [
            0x1a1a, 4865, 4866, 4867, 49195, 49199, 49196, 49200, 52393, 52392, 49171, 49172, 156,
            157, 47, 53,
        ];
        let ext_order = [
            0x0a0a, 45, 51, 16, 65037, 23, 17613, 0, 11, 10, 43, 65281, 35, 18, 5, 13, 27, 0x3a3a,
        ];
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0; 32]);
        body.push(0);
        body.extend(u16_list(2, &ciphers));
        body.extend_from_slice(&[1, 0]);
        let mut exts = Vec::new();
        for t in ext_order {
            let data = match t {
                16 => vec![
                    0, 12, 2, b'h', b'2', 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1',
                ],
                0 => {
                    let mut v = vec![0, 23, 0, 0, 20];
                    v.extend_from_slice(b"tls.browserleaks.com");
                    v
                }
                11 => vec![1, 0],
                10 => u16_list(2, &[0x4a4a, 4588, 29, 23, 24]),
                43 => u16_list(1, &[0x5a5a, 0x0304, 0x0303]),
                13 => u16_list(
                    2,
                    &[
                        0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
                    ],
                ),
                _ => vec![],
            };
            exts.extend(ext(t, &data));
        }
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let rec = record(22, &handshake(1, &body));
        let (ev, _) = parse_tls_records(&rec);
        let [TlsEvent::ClientHello(h)] = ev.as_slice() else {
            panic!("{ev:?}")
        };
        assert_eq!(h.supported_versions, vec![0x5a5a, 0x0304, 0x0303]);
        assert_eq!(
            h.ja3,
            "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,45-51-16-65037-23-17613-0-11-10-43-65281-35-18-5-13-27,4588-29-23-24,0"
        );
        assert_eq!(h.ja3_hash, "98487aa16281980e7d1120d399efb6a4");
        assert_eq!(
            h.ja4_r,
            "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0017,001b,0023,002b,002d,0033,44cd,fe0d,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
        );
        assert_eq!(h.ja4, "t13d1516h2_8daaf6152771_d8a2da3f94cd");
    }

    /// The lists of the JA4 specification's example (FoxIO
    /// `technical_details/JA4.md`, "Cipher hash", "Extension hash",
    /// "Example", "Raw Output"): 15 ciphers, 16 extensions with SNI and
    /// ALPN, 8 signature algorithms, TLS 1.3 in supported_versions, "h2".
    /// The spec gives `JA4 = t13d1516h2_8daaf6152771_e5627efa2ab1`, the
    /// extension hash without signature algorithms `6d807ffa2a79`, and the
    /// `JA4_r` string copied below.
    #[test]
    fn ja4_is_the_specifications_example() {
        let ciphers = [
            0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
            0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let exts = [
            0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
            0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
        ];
        let sigs = [
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ];
        let (fp, raw) = ja4(
            0x0303,
            &[0x0304, 0x0303],
            &ciphers,
            &exts,
            Some(b"h2"),
            &sigs,
        );
        assert_eq!(fp, "t13d1516h2_8daaf6152771_e5627efa2ab1");
        assert_eq!(
            raw,
            "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
        );
        // "If there are no signature algorithms in the hello packet, then the
        // string ends without an underscore and is hashed" = 6d807ffa2a79.
        let (fp, raw) = ja4(0x0303, &[0x0304], &ciphers, &exts, Some(b"h2"), &[]);
        assert_eq!(fp, "t13d1516h2_8daaf6152771_6d807ffa2a79");
        assert!(raw.ends_with(",4469,ff01"), "{raw}");
        // GREASE anywhere ("Details"): in ciphers, extensions, supported
        // versions and signature algorithms it changes nothing, counts
        // included.
        let mut gc = vec![0x0a0a];
        gc.extend(ciphers);
        let mut ge = vec![0x1a1a];
        ge.extend(exts);
        ge.push(0xfafa);
        let mut gs = vec![0x2a2a];
        gs.extend(sigs);
        let (fp, _) = ja4(0x0303, &[0x3a3a, 0x0304], &gc, &ge, Some(b"h2"), &gs);
        assert_eq!(fp, "t13d1516h2_8daaf6152771_e5627efa2ab1");
        // Signature algorithms keep their wire order: reversing them changes
        // the hash, reversing ciphers or extensions (sorted) does not.
        let mut rs = sigs;
        rs.reverse();
        let (fp, _) = ja4(0x0303, &[0x0304], &ciphers, &exts, Some(b"h2"), &rs);
        assert!(fp.starts_with("t13d1516h2_8daaf6152771_"), "{fp}");
        assert_ne!(fp, "t13d1516h2_8daaf6152771_e5627efa2ab1");
        let (mut rc, mut re) = (ciphers, exts);
        rc.reverse();
        re.reverse();
        let (fp, _) = ja4(0x0303, &[0x0304], &rc, &re, Some(b"h2"), &sigs);
        assert_eq!(fp, "t13d1516h2_8daaf6152771_e5627efa2ab1");
        // SNI and ALPN are counted in the `a` part but are not in the
        // extension hash ("Extension hash": "Ignore the SNI extension (0000)
        // and the ALPN extension (0010)"): without them the counts drop to
        // 14, the SNI letter becomes `i`, the ALPN `00`, and the hash stays.
        let no_sni_alpn: Vec<u16> = exts
            .iter()
            .copied()
            .filter(|e| *e != 0 && *e != 0x10)
            .collect();
        let (fp, _) = ja4(0x0303, &[0x0304], &ciphers, &no_sni_alpn, None, &sigs);
        assert_eq!(fp, "t13i151400_8daaf6152771_e5627efa2ab1");
    }

    /// Version, counts and empty lists (JA4.md "TLS and DTLS Version",
    /// "Number of Ciphers", "Cipher hash", "Extension hash").
    #[test]
    fn ja4_version_counts_and_empty_lists() {
        // No supported_versions: the hello's protocol version (0x0303 → 12);
        // unknown versions give "00"; DTLS 1.2 is "d2".
        let (fp, _) = ja4(0x0303, &[], &[0x002f], &[0x0017], None, &[]);
        assert!(fp.starts_with("t12i0101"), "{fp}");
        let (fp, _) = ja4(0x1234, &[], &[0x002f], &[0x0017], None, &[]);
        assert!(fp.starts_with("t00i0101"), "{fp}");
        let (fp, _) = ja4(0xfefd, &[], &[0x002f], &[0x0017], None, &[]);
        assert!(fp.starts_with("td2i0101"), "{fp}");
        // supported_versions wins over the protocol version, its highest
        // non-GREASE value whatever the order.
        let (fp, _) = ja4(
            0x0301,
            &[0x0302, 0x0304, 0x0a0a, 0x0303],
            &[],
            &[],
            None,
            &[],
        );
        assert!(fp.starts_with("t13i0000"), "{fp}");
        // No ciphers and no extensions: both hashes are twelve zeros and the
        // raw form has empty lists.
        let (fp, raw) = ja4(0x0303, &[], &[], &[], None, &[]);
        assert_eq!(fp, "t12i000000_000000000000_000000000000");
        assert_eq!(raw, "t12i000000__");
        // Only SNI and ALPN: counted (02) but the sorted list is empty, so
        // the extension part is zeros even with signature algorithms.
        let (fp, _) = ja4(0x0303, &[], &[0x002f], &[0, 0x10], Some(b"h2"), &[0x0403]);
        assert_eq!(fp, format!("t12d0102h2_{}_000000000000", sha256_12("002f")));
        // More than 99 ciphers or extensions print "99".
        let many: Vec<u16> = (0x0100..0x0100 + 120).collect();
        let (fp, _) = ja4(0x0303, &[], &many, &many, None, &[]);
        assert!(fp.starts_with("t12i9999"), "{fp}");
    }

    /// The ALPN cases of JA4.md "ALPN Extension Value", each with the
    /// spec's own example where it gives one.
    #[test]
    fn ja4_alpn_follows_the_specification() {
        let cases: [(Option<&[u8]>, &str); 13] = [
            // "the first ALPN value is h2 ... h2"; "http/1.1 ... h1".
            (Some(b"h2"), "h2"),
            (Some(b"http/1.1"), "h1"),
            // "no ALPN extension, no ALPN values, or the first ALPN value is
            // empty ... 00".
            (None, "00"),
            (Some(b""), "00"),
            // "only a single character ... both the first and last".
            (Some(b"h"), "hh"),
            (Some(b"7"), "77"),
            // Non-alphanumeric first or last byte: first and last characters
            // of the hex form; the spec's five examples.
            (Some(&[0xab]), "ab"),
            (Some(&[0xab, 0xcd]), "ad"),
            (Some(&[0x30, 0xab]), "3b"),
            (Some(&[0x30, 0x31, 0xab, 0xcd]), "3d"),
            (Some(&[0x30, 0xab, 0xcd, 0x31]), "01"),
            // ASCII punctuation is non-alphanumeric too ("/" = 0x2f,
            // "x" = 0x78 → hex "2f78" → "28"); a single non-alphanumeric
            // byte "/" is "2f".
            (Some(b"/x"), "28"),
            (Some(b"/"), "2f"),
        ];
        for (v, want) in cases {
            assert_eq!(ja4_alpn(v), want, "{v:?}");
            let (fp, _) = ja4(0x0303, &[], &[0x002f], &[0x0010], v, &[]);
            assert_eq!(&fp[6..10], format!("01{want}"), "{v:?} {fp}");
        }
        // Non-ASCII UTF-8 ("é" = 0xc3 0xa9) is not alphanumeric: "c9".
        assert_eq!(ja4_alpn(Some("é".as_bytes())), "c9");
    }

    /// A ClientHello with the given ALPN extension body (or none) and no SNI.
    fn hello_with_alpn(alpn: Option<&[u8]>) -> TlsClientHello {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0; 32]);
        body.push(0);
        body.extend(u16_list(2, &[0x1301]));
        body.extend_from_slice(&[1, 0]);
        let mut exts = ext(43, &u16_list(1, &[0x0304]));
        if let Some(a) = alpn {
            exts.extend(ext(16, a));
        }
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let (ev, _) = parse_tls_records(&record(22, &handshake(1, &body)));
        let [TlsEvent::ClientHello(h)] = ev.as_slice() else {
            panic!("{ev:?}")
        };
        *h.clone()
    }

    /// The ALPN rule through the hello parser: the raw bytes of the first
    /// value on the wire decide, not the lossy string of the record.
    #[test]
    fn ja4_alpn_of_built_hellos() {
        // (ALPN extension body, expected `a` part): TLS 1.3 from
        // supported_versions, no SNI → i, 1 cipher, 1 or 2 extensions.
        let cases: [(Option<&[u8]>, &str); 6] = [
            (None, "t13i010100"),
            // Extension present, empty protocol list.
            (Some(&[0, 0]), "t13i010200"),
            // One single-character value "h".
            (Some(&[0, 2, 1, b'h']), "t13i0102hh"),
            // First value 0xab 0xcd (not UTF-8), then "h2": "ad".
            (Some(&[0, 6, 2, 0xab, 0xcd, 2, b'h', b'2']), "t13i0102ad"),
            // First value "h2/" ends with "/" (0x2f): hex "68322f" → "6f".
            (Some(&[0, 4, 3, b'h', b'2', b'/']), "t13i01026f"),
            // Only the first value counts: "h3" then "http/1.1".
            (
                Some(&[
                    0, 12, 2, b'h', b'3', 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1',
                ]),
                "t13i0102h3",
            ),
        ];
        for (alpn, want) in cases {
            let h = hello_with_alpn(alpn);
            assert!(h.ja4.starts_with(&format!("{want}_")), "{alpn:?} {}", h.ja4);
            assert!(
                h.ja4_r.starts_with(&format!("{want}_1301_002b")),
                "{}",
                h.ja4_r
            );
        }
    }

    #[test]
    fn tls_split_across_records_and_segments() {
        // The ClientHello handshake message split over two records.
        let full = small_client_hello();
        let hs = &full[5..];
        let (a, b) = hs.split_at(30);
        let mut stream = record(22, a);
        stream.extend(record(22, b));
        let (ev, consumed) = parse_tls_records(&stream);
        assert_eq!(consumed, stream.len());
        assert!(matches!(ev.as_slice(), [TlsEvent::ClientHello(_)]));
        // Only the first record available: nothing consumed, nothing emitted.
        let first_len = 5 + a.len();
        let (ev, consumed) = parse_tls_records(&stream[..first_len + 3]);
        assert!(ev.is_empty());
        assert_eq!(consumed, 0);
        // Records split across segments: consumption stops at the boundary.
        let mut two = small_client_hello();
        two.extend(record(20, &[1]));
        let (ev, consumed) = parse_tls_records(&two[..full.len() + 2]);
        assert_eq!(ev.len(), 1);
        assert_eq!(consumed, full.len());
        let (ev, consumed) = parse_tls_records(&two[consumed..]);
        assert_eq!(ev, vec![TlsEvent::ChangeCipherSpec]);
        assert_eq!(consumed, 6);
    }

    #[test]
    fn tls_not_tls_is_invalid() {
        let (ev, consumed) = parse_tls_records(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(
            ev,
            vec![TlsEvent::Invalid {
                error: TlsError::NotTls { offset: 0 }
            }]
        );
        assert_eq!(consumed, 18);
        let (ev, _) = parse_tls_records(&[22, 3, 1, 0xff, 0xff]);
        assert!(matches!(
            ev.as_slice(),
            [TlsEvent::Invalid {
                error: TlsError::RecordTooLong { .. }
            }]
        ));
    }

    #[test]
    fn tls_truncated_at_every_offset_never_panics() {
        let mut stream = small_client_hello();
        stream.extend(small_server_hello());
        for n in 0..stream.len() {
            let (ev, consumed) = parse_tls_records(&stream[..n]);
            assert!(consumed <= n);
            assert!(ev.iter().all(|e| !matches!(e, TlsEvent::Invalid { .. })));
        }
        // Truncating the handshake body inside a complete record gives Malformed
        // or a shorter message, never a panic.
        let ch = small_client_hello();
        for n in 4..ch.len() - 5 {
            let body = &ch[9..9 + n.min(ch.len() - 9)];
            let rec = record(22, &handshake(1, body));
            let _ = parse_tls_records(&rec);
        }
    }

    #[test]
    fn tls_fuzz_xorshift_never_panics() {
        let mut base = small_client_hello();
        base.extend(small_server_hello());
        let mut s: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..5_000 {
            let mut b = base.clone();
            for _ in 0..(next() % 6 + 1) {
                let x = next();
                let idx = (x as usize) % b.len();
                b[idx] = (x >> 40) as u8;
            }
            let _ = parse_tls_records(&b);
        }
    }

    #[test]
    fn tls_events_serialize() {
        let (ev, _) = parse_tls_records(&small_client_hello());
        let j = serde_json::to_value(&ev[0]).unwrap();
        assert_eq!(j["event"], "client_hello");
        assert_eq!(j["sni"], "example.com");
    }

    /// Streams that go through every path: a hello alone, a server flight
    /// with encrypted records, two messages cut into 7-byte records, a
    /// ServerHello whose group never ends before non-TLS bytes, a message
    /// too long after a complete hello in the same record, a record too
    /// long, and heartbeat / empty / malformed handshake records.
    fn sample_streams() -> Vec<Vec<u8>> {
        use test_support::records;
        let ch = small_client_hello();
        let sh = small_server_hello();
        let mut flight = sh.clone();
        flight.extend(record(22, &handshake(14, &[])));
        flight.extend(record(20, &[1]));
        flight.extend(record(22, &[0xde; 40]));
        flight.extend(record(23, &[0xab; 10]));
        flight.extend(record(21, &[0xcd; 26]));
        let mut msgs = ch[5..].to_vec();
        msgs.extend_from_slice(&sh[5..]);
        let mut tiny = records(22, &msgs, 7);
        tiny.extend(record(21, &[1, 0]));
        let mut cut = sh[5..].to_vec();
        cut.extend(handshake(11, &[7; 300]));
        let mut dropped = records(22, &cut[..cut.len() - 50], 100);
        dropped.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let mut too_long = ch[5..].to_vec();
        too_long.extend_from_slice(&[11, 0x04, 0, 1, 0]);
        let too_long = records(22, &too_long, 1 << 14);
        let mut record_too_long = ch.clone();
        record_too_long.extend_from_slice(&[23, 3, 3, 0x48, 0x01]);
        let mut odd = record(24, &[1, 2, 3]);
        odd.extend(record(22, &[]));
        odd.extend(record(22, &handshake(1, &[3, 3, 0])));
        odd.extend(small_client_hello());
        vec![ch, flight, tiny, dropped, too_long, record_too_long, odd]
    }

    #[test]
    fn tls_one_shot_parse_matches_the_old_parser() {
        use test_support::{XorShift, old_parse_tls_records};
        for s in sample_streams() {
            for n in 0..=s.len() {
                assert_eq!(parse_tls_records(&s[..n]), old_parse_tls_records(&s[..n]));
            }
        }
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let samples = sample_streams();
        for _ in 0..3_000 {
            let mut b = samples[rng.next() as usize % samples.len()].clone();
            for _ in 0..(rng.next() % 4 + 1) {
                let x = rng.next();
                let i = x as usize % b.len();
                b[i] = (x >> 40) as u8;
            }
            let n = rng.next() as usize % (b.len() + 1);
            assert_eq!(parse_tls_records(&b), old_parse_tls_records(&b));
            assert_eq!(parse_tls_records(&b[..n]), old_parse_tls_records(&b[..n]));
        }
    }

    /// Feeds `segs` to a [`TlsStreamParser`] and to the old per-call loop:
    /// after every segment, the events of complete groups and the bytes
    /// pending are the same, and what the parser holds stays within twice
    /// what is pending. Stops after a ChangeCipherSpec, where the old loop
    /// forgot the stream was encrypted (and the plugin stops anyway), and
    /// after the stream is found not to be TLS.
    fn check_against_old_loop(segs: &[&[u8]]) {
        let mut old = test_support::OldLoop::default();
        let mut parser = TlsStreamParser::new();
        let mut sink = CompleteGroups::default();
        for (k, seg) in segs.iter().enumerate() {
            let expected = old.call(seg);
            parser.feed(seg, &mut sink);
            let got = std::mem::take(&mut sink.out);
            assert_eq!(got, expected, "segment {k} of {}", segs.len());
            if expected
                .iter()
                .any(|e| matches!(e, TlsEvent::Invalid { .. }))
            {
                assert!(parser.is_failed());
                return;
            }
            assert!(!parser.is_failed());
            assert_eq!(parser.pending_len(), old.buf.len(), "segment {k}");
            assert!(
                parser.held() <= 2 * parser.pending_len() + 16,
                "holds {} for {} pending",
                parser.held(),
                parser.pending_len()
            );
            if expected.contains(&TlsEvent::ChangeCipherSpec) {
                return;
            }
        }
    }

    #[test]
    fn tls_stream_parser_gives_the_old_events_whatever_the_cuts() {
        let mut rng = test_support::XorShift(0x2545_f491_4f6c_dd1d);
        for s in sample_streams() {
            check_against_old_loop(&[&s]);
            check_against_old_loop(&s.chunks(1).collect::<Vec<_>>());
            for i in 1..s.len() {
                let (a, b) = s.split_at(i);
                check_against_old_loop(&[a, b]);
            }
            for max in [2, 5, 13, 40, 200] {
                check_against_old_loop(&rng.cuts(&s, max));
            }
        }
        let samples = sample_streams();
        for _ in 0..3_000 {
            let mut b = samples[rng.next() as usize % samples.len()].clone();
            for _ in 0..(rng.next() % 4 + 1) {
                let x = rng.next();
                let i = x as usize % b.len();
                b[i] = (x >> 40) as u8;
            }
            let max = rng.next() as usize % 64 + 1;
            check_against_old_loop(&rng.cuts(&b, max));
        }
    }

    #[test]
    fn tls_hello_in_one_byte_records_is_decoded_once() {
        use test_support::{padded_client_hello, records};
        let m = padded_client_hello(20_000);
        let (reference, _) = parse_tls_records(&records(22, &m, 1 << 14));
        let [TlsEvent::ClientHello(expected)] = reference.as_slice() else {
            panic!("{reference:?}")
        };
        assert_eq!(expected.sni.as_deref(), Some("www.example.com"));
        assert_eq!(expected.extensions, vec![0, 10, 11, 13, 16, 43, 21]);
        let stream = records(22, &m, 1);
        assert_eq!(stream.len(), 6 * m.len());
        for seg in [1, 1460] {
            let mut parser = TlsStreamParser::new();
            let mut events = Vec::new();
            for piece in stream.chunks(seg) {
                parser.feed(piece, &mut events);
            }
            // records carrying part of a message give no event of their own
            assert_eq!(events.len(), 1, "{events:?}");
            let hellos: Vec<_> = events
                .iter()
                .filter_map(|e| match e {
                    TlsEvent::ClientHello(h) => Some(h),
                    _ => None,
                })
                .collect();
            assert_eq!(hellos, vec![expected], "segments of {seg}");
            let examined = parser.bytes_examined();
            assert!(
                examined <= 4 * stream.len() as u64,
                "{examined} bytes examined for {}",
                stream.len()
            );
            assert_eq!(parser.pending_len(), 0);
            assert_eq!(parser.held(), 0);
        }
    }

    #[test]
    fn tls_large_certificate_in_segments_is_parsed_in_linear_work() {
        use test_support::{OldLoop, server_flight};
        let stream = server_flight(200_000, 1 << 14);
        let n = stream.len() as u64;
        let mut parser = TlsStreamParser::new();
        let mut old = OldLoop::default();
        let mut events = Vec::new();
        let mut most_held = 0;
        for seg in stream.chunks(1460) {
            parser.feed(seg, &mut events);
            old.call(seg);
            most_held = most_held.max(parser.held());
            assert!(parser.held() <= 2 * parser.pending_len() + 16);
        }
        let TlsEvent::ServerHello(h) = &events[0] else {
            panic!("{:?}", events.first())
        };
        assert_eq!(h.cipher_suite, 0xc02f);
        assert_eq!(h.alpn.as_deref(), Some("h2"));
        assert_eq!(
            &events[1..],
            &[
                TlsEvent::Handshake {
                    msg_type: 11,
                    len: 200_000
                },
                TlsEvent::Handshake {
                    msg_type: 14,
                    len: 0
                }
            ]
        );
        // fed once, cut records copied once, the Certificate copied once
        let examined = parser.bytes_examined();
        assert!(examined <= 4 * n, "{examined} bytes examined for {n}");
        // the old loop parsed the whole pending stream again per segment
        assert!(old.examined > 40 * n, "old: {} for {n}", old.examined);
        // the Certificate was held, nothing more than twice over
        assert!(
            (200_000..=2 * n as usize).contains(&most_held),
            "{most_held}"
        );
        assert_eq!(parser.held(), 0);
    }
}
