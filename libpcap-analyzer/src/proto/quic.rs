//! QUIC long-header packets and the protection of Initial packets.
//!
//! An observer can read the TLS handshake that QUIC Initial packets carry:
//! their keys come from the client's first Destination Connection ID and a
//! salt fixed by the version (RFC 9001 §5.2), so no secret is needed. This
//! module parses long headers (RFC 9000 §17.2), derives the Initial keys of
//! QUIC version 1 (RFC 9001), version 2 (RFC 9369) and the drafts that
//! interoperated (draft-23 to draft-34), removes header protection (RFC 9001
//! §5.4, AES-128-ECB), decrypts the payload (§5.3, AEAD_AES_128_GCM), walks
//! the frames (RFC 9000 §19) and puts CRYPTO frames back in order, bounded
//! ([`CryptoStream`]). The crypto is RustCrypto's (`aes`, `aes-gcm`, `hkdf`,
//! `sha2`).
//!
//! Nothing here panics on malformed input: every length is checked against
//! the bytes there, and a packet that does not authenticate is an error (the
//! AEAD tag makes a wrong guess of version or keys certain to fail).

use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes_gcm::Aes128Gcm;
use aes_gcm::aead::{Aead, Payload};
use hkdf::Hkdf;
use sha2::Sha256;
use std::collections::BTreeMap;

/// QUIC version 1 (RFC 9000).
pub const VERSION_1: u32 = 0x0000_0001;
/// QUIC version 2 (RFC 9369).
pub const VERSION_2: u32 = 0x6b33_43cf;
/// draft-ietf-quic-transport-29, the draft most deployed before version 1.
pub const DRAFT_29: u32 = 0xff00_001d;

/// Why a QUIC packet was not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuicError {
    /// Not a long-header packet (the first bit is 0).
    #[error("not a QUIC long header")]
    NotLongHeader,
    /// A field runs past the end of the datagram.
    #[error("QUIC packet truncated")]
    Truncated,
    /// A connection id longer than 20 bytes in a version that limits them.
    #[error("QUIC connection id longer than 20 bytes")]
    ConnectionIdTooLong,
    /// A version whose Initial keys are not known.
    #[error("QUIC version {0:#010x} unknown")]
    UnknownVersion(u32),
    /// The payload did not authenticate with the Initial keys.
    #[error("QUIC Initial packet does not decrypt")]
    Decryption,
    /// A frame that cannot be parsed, or one not allowed in an Initial packet.
    #[error("QUIC frame malformed")]
    BadFrame,
}

/// The type of a long-header packet (RFC 9000 §17.2, RFC 9369 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// Initial: the first flight of each side, with its CRYPTO frames.
    Initial,
    /// 0-RTT.
    ZeroRtt,
    /// Handshake.
    Handshake,
    /// Retry: a server asks the client to start again with a token.
    Retry,
    /// Version Negotiation (version 0): the versions a server supports.
    VersionNegotiation,
}

impl PacketType {
    /// The packet type's name, as records give it.
    pub fn name(self) -> &'static str {
        match self {
            PacketType::Initial => "initial",
            PacketType::ZeroRtt => "0rtt",
            PacketType::Handshake => "handshake",
            PacketType::Retry => "retry",
            PacketType::VersionNegotiation => "version_negotiation",
        }
    }
}

/// A long header, as far as it is readable without keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongHeader<'a> {
    /// The first byte, still under header protection.
    pub first: u8,
    /// The version field (0 for Version Negotiation).
    pub version: u32,
    /// The packet type; `None` for a version this module does not know
    /// (the type bits mean something else there).
    pub packet_type: Option<PacketType>,
    /// Destination Connection ID.
    pub dcid: &'a [u8],
    /// Source Connection ID.
    pub scid: &'a [u8],
    /// The token of an Initial packet (empty otherwise).
    pub token: &'a [u8],
    /// Offset of the (protected) packet number in the packet, for Initial,
    /// 0-RTT and Handshake packets.
    pub pn_offset: usize,
    /// Length of this packet within the datagram (a datagram may hold
    /// several coalesced packets, RFC 9000 §12.2).
    pub len: usize,
    /// The versions a Version Negotiation packet lists (empty otherwise).
    pub versions: Vec<u32>,
}

/// Whether `version` is one whose Initial keys this module derives.
pub fn is_known_version(version: u32) -> bool {
    salt(version).is_some()
}

/// The Initial salt of `version` (RFC 9001 §5.2, RFC 9369 §3.3.1, and the
/// drafts' own values).
fn salt(version: u32) -> Option<&'static [u8; 20]> {
    const V1: [u8; 20] = [
        0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c,
        0xad, 0xcc, 0xbb, 0x7f, 0x0a,
    ];
    const V2: [u8; 20] = [
        0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d,
        0xcb, 0xf9, 0xbd, 0x2e, 0xd9,
    ];
    // draft-29 to draft-32
    const D29: [u8; 20] = [
        0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11,
        0xe0, 0x43, 0x90, 0xa8, 0x99,
    ];
    // draft-23 to draft-28
    const D23: [u8; 20] = [
        0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4, 0x63,
        0x65, 0xbe, 0xf9, 0xf5, 0x02,
    ];
    match version {
        VERSION_1 => Some(&V1),
        VERSION_2 => Some(&V2),
        0xff00_0021 | 0xff00_0022 => Some(&V1), // draft-33, draft-34
        0xff00_001d..=0xff00_0020 => Some(&D29),
        0xff00_0017..=0xff00_001c => Some(&D23),
        _ => None,
    }
}

/// The packet type of `first` in `version`, for versions with known rules.
fn packet_type(version: u32, first: u8) -> Option<PacketType> {
    let bits = (first >> 4) & 0x03;
    if version == VERSION_2 {
        // RFC 9369 §3.2: the type bits are rotated
        Some(match bits {
            0b01 => PacketType::Initial,
            0b10 => PacketType::ZeroRtt,
            0b11 => PacketType::Handshake,
            _ => PacketType::Retry,
        })
    } else if is_known_version(version) {
        Some(match bits {
            0b00 => PacketType::Initial,
            0b01 => PacketType::ZeroRtt,
            0b10 => PacketType::Handshake,
            _ => PacketType::Retry,
        })
    } else {
        None
    }
}

/// A QUIC variable-length integer (RFC 9000 §16) at `*at`, advancing it.
pub fn varint(d: &[u8], at: &mut usize) -> Result<u64, QuicError> {
    let first = *d.get(*at).ok_or(QuicError::Truncated)?;
    let len = 1usize << (first >> 6);
    let bytes = d.get(*at..*at + len).ok_or(QuicError::Truncated)?;
    let mut v = u64::from(first & 0x3f);
    for b in bytes.iter().skip(1) {
        v = (v << 8) | u64::from(*b);
    }
    *at += len;
    Ok(v)
}

/// A connection id (length byte then bytes) at `*at`.
fn cid<'a>(d: &'a [u8], at: &mut usize, limit: bool) -> Result<&'a [u8], QuicError> {
    let len = usize::from(*d.get(*at).ok_or(QuicError::Truncated)?);
    if limit && len > 20 {
        return Err(QuicError::ConnectionIdTooLong);
    }
    let v = d.get(*at + 1..*at + 1 + len).ok_or(QuicError::Truncated)?;
    *at += 1 + len;
    Ok(v)
}

/// Parses the long header of the packet at the start of `d`.
///
/// For Initial, 0-RTT and Handshake packets of a known version, `len` is the
/// packet's length (the Length field), so `d[len..]` is the next coalesced
/// packet; for other packets it is the rest of the datagram.
///
/// # Errors
/// [`QuicError`] when `d` does not start with a well-formed long header.
pub fn parse_long_header(d: &[u8]) -> Result<LongHeader<'_>, QuicError> {
    parse_long_header_as(d, None)
}

/// [`parse_long_header`], reading the packet by the rules of version
/// `rules` whatever its version field says (a greased version, RFC 9000
/// §15, whose packets a client protects as one it knows).
///
/// # Errors
/// As [`parse_long_header`].
pub fn parse_long_header_as(d: &[u8], rules: Option<u32>) -> Result<LongHeader<'_>, QuicError> {
    let first = *d.first().ok_or(QuicError::Truncated)?;
    if first & 0x80 == 0 {
        return Err(QuicError::NotLongHeader);
    }
    let v = d.get(1..5).ok_or(QuicError::Truncated)?;
    let version = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    let rules = rules.unwrap_or(version);
    let mut at = 5;
    // RFC 8999 §5.1: any version may use connection ids up to 255 bytes;
    // version 1 and 2 limit them to 20 (RFC 9000 §17.2)
    let limit = is_known_version(rules);
    let dcid = cid(d, &mut at, limit)?;
    let scid = cid(d, &mut at, limit)?;
    let mut h = LongHeader {
        first,
        version,
        packet_type: None,
        dcid,
        scid,
        token: &[],
        pn_offset: 0,
        len: d.len(),
        versions: Vec::new(),
    };
    if version == 0 {
        h.packet_type = Some(PacketType::VersionNegotiation);
        let rest = d.get(at..).unwrap_or_default();
        h.versions = rest
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        return Ok(h);
    }
    h.packet_type = packet_type(rules, first);
    match h.packet_type {
        Some(PacketType::Initial | PacketType::ZeroRtt | PacketType::Handshake) => {}
        _ => return Ok(h),
    }
    if h.packet_type == Some(PacketType::Initial) {
        let token_len = varint(d, &mut at)?;
        let token_len = usize::try_from(token_len).map_err(|_| QuicError::Truncated)?;
        h.token = d
            .get(at..at.saturating_add(token_len))
            .ok_or(QuicError::Truncated)?;
        at += token_len;
    }
    let length = varint(d, &mut at)?;
    let length = usize::try_from(length).map_err(|_| QuicError::Truncated)?;
    h.pn_offset = at;
    let end = at.checked_add(length).ok_or(QuicError::Truncated)?;
    if end > d.len() {
        return Err(QuicError::Truncated);
    }
    h.len = end;
    Ok(h)
}

/// The Initial keys of one side of a connection (RFC 9001 §5.2).
#[derive(Clone)]
pub struct InitialKeys {
    aead: Aes128Gcm,
    iv: [u8; 12],
    hp: Aes128,
}

impl std::fmt::Debug for InitialKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InitialKeys")
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context into `out`.
fn expand_label(secret: &[u8], label: &str, out: &mut [u8]) -> Option<()> {
    let hk = Hkdf::<Sha256>::from_prk(secret).ok()?;
    let full = format!("tls13 {label}");
    let mut info = Vec::with_capacity(4 + full.len());
    info.extend_from_slice(&u16::try_from(out.len()).ok()?.to_be_bytes());
    info.push(u8::try_from(full.len()).ok()?);
    info.extend_from_slice(full.as_bytes());
    info.push(0);
    hk.expand(&info, out).ok()
}

/// The raw Initial secrets and keys, for tests against the specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    /// client_initial_secret or server_initial_secret.
    pub secret: [u8; 32],
    /// The AEAD key.
    pub key: [u8; 16],
    /// The AEAD IV.
    pub iv: [u8; 12],
    /// The header protection key.
    pub hp: [u8; 16],
}

/// Derives the Initial key material of `version` for the client's (or the
/// server's) packets from the client's first Destination Connection ID.
pub fn key_material(version: u32, client_dcid: &[u8], client: bool) -> Option<KeyMaterial> {
    let salt = salt(version)?;
    let (prk, _) = Hkdf::<Sha256>::extract(Some(salt), client_dcid);
    let mut m = KeyMaterial {
        secret: [0; 32],
        key: [0; 16],
        iv: [0; 12],
        hp: [0; 16],
    };
    let side = if client { "client in" } else { "server in" };
    expand_label(&prk, side, &mut m.secret)?;
    let (k, i, h) = if version == VERSION_2 {
        ("quicv2 key", "quicv2 iv", "quicv2 hp")
    } else {
        ("quic key", "quic iv", "quic hp")
    };
    expand_label(&m.secret, k, &mut m.key)?;
    expand_label(&m.secret, i, &mut m.iv)?;
    expand_label(&m.secret, h, &mut m.hp)?;
    Some(m)
}

impl InitialKeys {
    /// The Initial keys of `version` for the client's (`client`) or the
    /// server's packets, from the client's first Destination Connection ID;
    /// `None` for a version whose salt is unknown.
    pub fn new(version: u32, client_dcid: &[u8], client: bool) -> Option<InitialKeys> {
        let m = key_material(version, client_dcid, client)?;
        Some(InitialKeys {
            aead: Aes128Gcm::new_from_slice(&m.key).ok()?,
            iv: m.iv,
            hp: Aes128::new_from_slice(&m.hp).ok()?,
        })
    }

    /// Removes the protection of the Initial packet `packet` (the bytes of
    /// this packet only: `&datagram[..header.len]`) whose header is
    /// `header`, returning its packet number and its plaintext frames.
    ///
    /// # Errors
    /// [`QuicError::Truncated`] when the packet is too short to sample,
    /// [`QuicError::Decryption`] when it does not authenticate.
    pub fn open(
        &self,
        packet: &[u8],
        header: &LongHeader<'_>,
    ) -> Result<(u64, Vec<u8>), QuicError> {
        let pn_at = header.pn_offset;
        let sample: [u8; 16] = packet
            .get(pn_at + 4..pn_at + 20)
            .and_then(|s| s.try_into().ok())
            .ok_or(QuicError::Truncated)?;
        let mask = self.mask(sample);
        let first = header.first ^ (mask[0] & 0x0f);
        let pn_len = usize::from(first & 0x03) + 1;
        let mut head = packet
            .get(..pn_at + pn_len)
            .ok_or(QuicError::Truncated)?
            .to_vec();
        head[0] = first;
        let mut pn = 0u64;
        for i in 0..pn_len {
            head[pn_at + i] ^= mask[1 + i];
            pn = (pn << 8) | u64::from(head[pn_at + i]);
        }
        // the truncated packet number: an observer of the first packets
        // of a connection has nothing to expand it against, and Initial
        // packet numbers start at 0
        let nonce = self.nonce(pn);
        let body = packet.get(pn_at + pn_len..).ok_or(QuicError::Truncated)?;
        let plain = self
            .aead
            .decrypt(
                &nonce.into(),
                Payload {
                    msg: body,
                    aad: &head,
                },
            )
            .map_err(|_| QuicError::Decryption)?;
        Ok((pn, plain))
    }

    /// RFC 9001 §5.3: the AEAD nonce of packet number `pn`, the IV xored
    /// with it.
    fn nonce(&self, pn: u64) -> [u8; 12] {
        let mut nonce = self.iv;
        for (i, b) in pn.to_be_bytes().iter().enumerate() {
            nonce[4 + i] ^= b;
        }
        nonce
    }

    /// RFC 9001 §5.4.3: the header protection mask of a packet whose
    /// ciphertext sample is `sample`.
    fn mask(&self, sample: [u8; 16]) -> aes::Block {
        let mut mask = aes::Block::from(sample);
        self.hp.encrypt_block(&mut mask);
        mask
    }
}

/// A client Initial packet of `version` to `dcid` from `scid`, packet
/// number `pn` (written in four bytes), carrying the frames `plain`,
/// protected with these keys (RFC 9001 §5: AEAD, then header protection):
/// what [`InitialKeys::open`] reads back. For test traffic and floods.
///
/// `None` when the connection ids are longer than 255 bytes or the
/// payload longer than a two-byte length allows.
pub fn seal_initial(
    keys: &InitialKeys,
    version: u32,
    dcid: &[u8],
    scid: &[u8],
    pn: u32,
    plain: &[u8],
) -> Option<Vec<u8>> {
    // Initial type (0 for v1 and the drafts, 1 for v2), four-byte number
    let ty: u8 = if version == VERSION_2 { 1 } else { 0 };
    let mut p = vec![0xc0 | (ty << 4) | 0x03];
    p.extend_from_slice(&version.to_be_bytes());
    p.push(u8::try_from(dcid.len()).ok()?);
    p.extend_from_slice(dcid);
    p.push(u8::try_from(scid.len()).ok()?);
    p.extend_from_slice(scid);
    p.push(0); // no token
    let len = u16::try_from(4 + plain.len() + 16)
        .ok()
        .filter(|l| *l < 0x4000)?;
    p.extend_from_slice(&(0x4000 | len).to_be_bytes());
    let pn_at = p.len();
    p.extend_from_slice(&pn.to_be_bytes());
    let nonce = keys.nonce(u64::from(pn));
    let sealed = keys
        .aead
        .encrypt(
            &nonce.into(),
            Payload {
                msg: plain,
                aad: &p,
            },
        )
        .ok()?;
    p.extend_from_slice(&sealed);
    let sample: [u8; 16] = p.get(pn_at + 4..pn_at + 20)?.try_into().ok()?;
    let mask = keys.mask(sample);
    p[0] ^= mask[0] & 0x0f;
    for i in 0..4 {
        p[pn_at + i] ^= mask[1 + i];
    }
    Some(p)
}

/// A CRYPTO frame: bytes of the TLS handshake at an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoFrame<'a> {
    /// Offset of the data in the handshake stream.
    pub offset: u64,
    /// The data.
    pub data: &'a [u8],
}

/// The CRYPTO frames of the plaintext of an Initial packet, in packet
/// order. Frames allowed in Initial packets (RFC 9000 §12.4: PADDING, PING,
/// ACK, CRYPTO, CONNECTION_CLOSE) are walked; any other is an error, as is
/// a frame cut short.
///
/// # Errors
/// [`QuicError::BadFrame`] or [`QuicError::Truncated`].
pub fn crypto_frames(plain: &[u8]) -> Result<Vec<CryptoFrame<'_>>, QuicError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < plain.len() {
        let ty = varint(plain, &mut at)?;
        match ty {
            0x00 | 0x01 => {} // PADDING, PING
            0x02 | 0x03 => {
                // ACK (RFC 9000 §19.3): largest, delay, range count, first
                // range, then (gap, length) pairs, then ECN counts for 0x03
                varint(plain, &mut at)?;
                varint(plain, &mut at)?;
                let ranges = varint(plain, &mut at)?;
                varint(plain, &mut at)?;
                for _ in 0..ranges {
                    varint(plain, &mut at)?;
                    varint(plain, &mut at)?;
                }
                if ty == 0x03 {
                    for _ in 0..3 {
                        varint(plain, &mut at)?;
                    }
                }
            }
            0x06 => {
                let offset = varint(plain, &mut at)?;
                let len =
                    usize::try_from(varint(plain, &mut at)?).map_err(|_| QuicError::BadFrame)?;
                let data = plain
                    .get(at..at.saturating_add(len))
                    .ok_or(QuicError::Truncated)?;
                at += len;
                out.push(CryptoFrame { offset, data });
            }
            0x1c | 0x1d => {
                // CONNECTION_CLOSE: error code, (frame type), reason
                varint(plain, &mut at)?;
                if ty == 0x1c {
                    varint(plain, &mut at)?;
                }
                let len =
                    usize::try_from(varint(plain, &mut at)?).map_err(|_| QuicError::BadFrame)?;
                plain
                    .get(at..at.saturating_add(len))
                    .ok_or(QuicError::Truncated)?;
                at += len;
            }
            _ => return Err(QuicError::BadFrame),
        }
    }
    Ok(out)
}

/// One direction's handshake bytes from CRYPTO frames, put back in order
/// whatever order the frames came in (retransmissions and overlaps
/// included), holding at most `limit` bytes.
#[derive(Debug, Clone, Default)]
pub struct CryptoStream {
    /// Pieces not yet contiguous with `data`, by offset.
    pending: BTreeMap<u64, Vec<u8>>,
    /// The contiguous bytes from offset 0.
    data: Vec<u8>,
    /// Bytes in `pending`.
    pending_bytes: usize,
    /// Most bytes held (contiguous and pending together).
    limit: usize,
    /// Bytes refused because the limit was reached.
    pub dropped: u64,
}

impl CryptoStream {
    /// An empty stream holding at most `limit` bytes.
    pub fn new(limit: usize) -> CryptoStream {
        CryptoStream {
            limit,
            ..CryptoStream::default()
        }
    }

    /// The contiguous handshake bytes from offset 0.
    pub fn contiguous(&self) -> &[u8] {
        &self.data
    }

    /// Bytes held: contiguous and pending together (at most the limit).
    pub fn held(&self) -> usize {
        self.data.len().saturating_add(self.pending_bytes)
    }

    /// Adds a frame's bytes.
    pub fn add(&mut self, offset: u64, bytes: &[u8]) {
        let have = self.data.len() as u64;
        let end = offset.saturating_add(bytes.len() as u64);
        if end <= have {
            return; // already there
        }
        if offset > have {
            if self.data.len() + self.pending_bytes + bytes.len() > self.limit {
                self.dropped += bytes.len() as u64;
                return;
            }
            let keep = self.pending.entry(offset).or_default();
            if keep.len() < bytes.len() {
                self.pending_bytes += bytes.len() - keep.len();
                *keep = bytes.to_vec();
            }
            return;
        }
        // overlaps the end of the contiguous bytes: append the new part
        let skip = usize::try_from(have - offset).unwrap_or(usize::MAX);
        let new = bytes.get(skip..).unwrap_or_default();
        if self.data.len() + self.pending_bytes + new.len() > self.limit {
            self.dropped += new.len() as u64;
            return;
        }
        self.data.extend_from_slice(new);
        // pieces that now touch the contiguous bytes
        while let Some((&off, _)) = self.pending.first_key_value() {
            if off > self.data.len() as u64 {
                break;
            }
            let Some((off, piece)) = self.pending.pop_first() else {
                break;
            };
            self.pending_bytes -= piece.len();
            let have = self.data.len() as u64;
            let end = off + piece.len() as u64;
            if end > have {
                let skip = usize::try_from(have - off).unwrap_or(usize::MAX);
                self.data
                    .extend_from_slice(piece.get(skip..).unwrap_or_default());
            }
        }
    }
}

#[cfg(test)]
mod tests;
