//! Plaintext exchanges that come before TLS on one direction of a TCP
//! stream, skipped so that TLS is found by content at the first byte of the
//! application data that follows.
//!
//! A [`PreambleSkipper`] is fed one direction's bytes in order. It decides
//! the exchange from the first byte, then reads it message by message:
//!
//! - **SOCKS4/4a** (first byte `0x04` from the client, `0x00` from the
//!   server): the request (version, command, port, IPv4 address, user id
//!   ending in NUL, and for 4a a domain ending in NUL when the address is
//!   `0.0.0.x` with `x` not 0); the 8-byte reply, which must grant (`0x5a`).
//! - **SOCKS5** (RFC 1928, first byte `0x05`): the client's greeting
//!   (methods), the username/password subnegotiation of RFC 1929 when sent,
//!   the request (command, address type IPv4, domain or IPv6, port); the
//!   server's method selection (no authentication or username/password), the
//!   subnegotiation status (success), and the reply (succeeded).
//! - **Text lines** (a first byte that is printable ASCII): HTTP `CONNECT`
//!   and its `2xx` response ending with an empty line, STARTTLS on SMTP
//!   (`EHLO` ... `STARTTLS` / `220`), IMAP (`a STARTTLS` / `a OK`), POP3
//!   (`STLS` / `+OK`), FTP (`AUTH TLS` / `234`), and other line-based
//!   upgrades (Gnutella's `Upgrade: TLS/1.0`): lines of text ending with LF
//!   are skipped while they last.
//!
//! TLS starts where a TLS handshake record header comes at a message
//! boundary: content type 22, version `0x03 0x00..=0x04`, a length of at
//! least 4 and at most 2^14 + 2048, then a ClientHello (type 1) from the
//! client or a ServerHello (type 2) from the server. After a SOCKS exchange
//! that header must come at once; between text lines it is looked for at
//! every line start. Anything else (a control byte in a text line, a SOCKS
//! message out of place, a refused request) means the direction is not TLS.
//!
//! Bounded: the bytes before the TLS start may be at most the limit given
//! to [`PreambleSkipper::new`] (the `tls` plugin's `max_preamble`, default
//! [`DEFAULT_MAX_PREAMBLE`]); beyond, [`Step::OverLimit`]. What is held is
//! at most the limit plus a record header, and each byte is examined a
//! bounded number of times (a text line is searched for its end once).

/// Default limit of bytes skipped before TLS on one direction.
pub const DEFAULT_MAX_PREAMBLE: usize = 16 * 1024;

/// Bytes of a TLS record header plus the handshake type.
const TLS_HEADER: usize = 6;

/// Largest record fragment (RFC 8446 §5.2: 2^14 plus 2048 of expansion).
const MAX_RECORD: usize = (1 << 14) + 2048;

/// Longest SOCKS4 user id or domain, NUL included.
const MAX_SOCKS4_STRING: usize = 256;

/// What [`PreambleSkipper::feed`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The exchange goes on: feed the next bytes.
    More,
    /// TLS starts: the bytes of the direction from the TLS record header on
    /// (held ones and the rest of the bytes just fed).
    Tls(Vec<u8>),
    /// The direction is not TLS after a known exchange.
    NotTls,
    /// No TLS start within the limit: given up.
    OverLimit,
}

/// Where the next message of the direction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing seen yet.
    Start,
    /// Text lines, or TLS at a line start.
    Lines,
    /// TLS must start here.
    Tls,
    /// SOCKS4 request (client).
    Socks4Request,
    /// SOCKS4 reply (server).
    Socks4Reply,
    /// SOCKS5 greeting (client).
    Socks5Greeting,
    /// SOCKS5 username/password subnegotiation or request (client).
    Socks5AuthOrRequest,
    /// SOCKS5 request (client), after the subnegotiation.
    Socks5Request,
    /// SOCKS5 method selection (server).
    Socks5Method,
    /// SOCKS5 subnegotiation status (server).
    Socks5AuthStatus,
    /// SOCKS5 reply (server).
    Socks5Reply,
}

/// One message read at the start of the held bytes.
enum Parse {
    /// More bytes are needed to decide.
    Need,
    /// Not what this exchange sends.
    Bad,
    /// A message of this many bytes, then the next state.
    Done(usize, State),
}

/// Skips the plaintext exchange before TLS on one direction of a TCP stream
/// (see the module documentation).
#[derive(Debug, Clone)]
pub struct PreambleSkipper {
    client: bool,
    limit: usize,
    state: State,
    /// Bytes of the direction not yet decided.
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for the end of a text line.
    scanned: usize,
    /// Bytes of the exchange already skipped.
    skipped: usize,
    /// A final step was returned.
    ended: bool,
}

impl PreambleSkipper {
    /// A skipper for the client's (`client`) or the server's direction,
    /// giving up when TLS does not start within `limit` bytes.
    pub fn new(client: bool, limit: usize) -> PreambleSkipper {
        PreambleSkipper {
            client,
            limit,
            state: State::Start,
            buf: Vec::new(),
            scanned: 0,
            skipped: 0,
            ended: false,
        }
    }

    /// Bytes held (undecided).
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// Bytes of the exchange skipped so far.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Reads the next bytes of the direction. After a step other than
    /// [`Step::More`], further calls return [`Step::NotTls`].
    pub fn feed(&mut self, data: &[u8]) -> Step {
        if self.ended {
            return Step::NotTls;
        }
        // never hold more than the limit plus a record header
        let room = self
            .limit
            .saturating_add(TLS_HEADER)
            .saturating_sub(self.skipped.saturating_add(self.buf.len()));
        let taken = data.len().min(room);
        self.buf
            .extend_from_slice(data.get(..taken).unwrap_or_default());
        let mut pos = 0;
        let step = loop {
            if self.skipped.saturating_add(pos) > self.limit {
                break Step::OverLimit;
            }
            let b = self.buf.get(pos..).unwrap_or_default();
            if b.is_empty() {
                break Step::More;
            }
            let at_tls = match self.state {
                State::Tls => true,
                State::Lines => b.first() == Some(&0x16),
                _ => false,
            };
            if at_tls {
                match tls_header(b, self.client) {
                    Some(true) => {
                        let mut v = b.to_vec();
                        v.extend_from_slice(data.get(taken..).unwrap_or_default());
                        break Step::Tls(v);
                    }
                    Some(false) => break Step::NotTls,
                    None => break Step::More,
                }
            }
            let parsed = match self.state {
                State::Start => Parse::Done(0, self.first_state(b)),
                State::Lines => {
                    let (p, scanned) = line(b, self.scanned);
                    self.scanned = scanned;
                    p
                }
                s => socks(s, b),
            };
            match parsed {
                Parse::Need => break Step::More,
                Parse::Bad => break Step::NotTls,
                Parse::Done(n, next) => {
                    if next == State::Start {
                        // the first byte starts no known exchange
                        break Step::NotTls;
                    }
                    pos += n;
                    self.state = next;
                    self.scanned = 0;
                }
            }
        };
        let step = match step {
            // the bytes cut off by the limit were needed
            Step::More if taken < data.len() => Step::OverLimit,
            s => s,
        };
        if step == Step::More {
            self.buf.drain(..pos.min(self.buf.len()));
            // `scanned` counts from the start of the message in progress,
            // now the start of `buf`
            self.skipped = self.skipped.saturating_add(pos);
        } else {
            self.ended = true;
            self.buf = Vec::new();
        }
        step
    }

    /// The exchange the direction's first byte starts (`Start` when none).
    fn first_state(&self, b: &[u8]) -> State {
        match (self.client, b.first()) {
            (true, Some(0x04)) => State::Socks4Request,
            (true, Some(0x05)) => State::Socks5Greeting,
            (false, Some(0x00)) => State::Socks4Reply,
            (false, Some(0x05)) => State::Socks5Method,
            (_, Some(c)) if (0x20..0x7f).contains(c) => State::Lines,
            _ => State::Start,
        }
    }
}

/// Whether `b` starts with a TLS handshake record header carrying the
/// hello of its side: `Some(true)` yes, `Some(false)` no, `None` when the
/// bytes so far agree but are too few.
fn tls_header(b: &[u8], client: bool) -> Option<bool> {
    let hello = if client { 1 } else { 2 };
    for (i, &c) in b.iter().take(TLS_HEADER).enumerate() {
        let ok = match i {
            0 => c == 0x16,
            1 => c == 0x03,
            2 => c <= 0x04,
            3 => true,
            4 => {
                let len = usize::from(u16::from_be_bytes([b.get(3).copied().unwrap_or(0), c]));
                (4..=MAX_RECORD).contains(&len)
            }
            _ => c == hello,
        };
        if !ok {
            return Some(false);
        }
    }
    (b.len() >= TLS_HEADER).then_some(true)
}

/// A text line at the start of `b` (its first `scanned` bytes already
/// searched): the line with its LF, or more needed; bytes that are neither
/// printable ASCII, tab, CR, nor non-ASCII (UTF-8) make it not text.
fn line(b: &[u8], scanned: usize) -> (Parse, usize) {
    let from = scanned.min(b.len());
    for (i, &c) in b.iter().enumerate().skip(from) {
        match c {
            b'\n' => return (Parse::Done(i + 1, State::Lines), 0),
            b'\t' | b'\r' | 0x20..=0x7e | 0x80..=0xff => {}
            _ => return (Parse::Bad, 0),
        }
    }
    (Parse::Need, b.len())
}

/// Reads fixed fields of a message.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// The next `n` bytes, `None` when too few are held.
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).and_then(|s| s.first().copied())
    }

    /// A NUL-terminated string of at most `max` bytes with its NUL:
    /// `Some(false)` when longer than that.
    fn cstring(&mut self, max: usize) -> Option<bool> {
        let rest = self.b.get(self.pos..).unwrap_or_default();
        match rest.iter().take(max).position(|&c| c == 0) {
            Some(i) => {
                self.pos += i + 1;
                Some(true)
            }
            None if rest.len() >= max => Some(false),
            None => None,
        }
    }

    /// A SOCKS5 address (RFC 1928 §4-§5: type, address) and port.
    fn socks5_address(&mut self) -> Option<bool> {
        let len = match self.byte()? {
            1 => 4,
            3 => usize::from(self.byte()?),
            4 => 16,
            _ => return Some(false),
        };
        self.take(len)?;
        self.take(2)?;
        Some(true)
    }
}

/// One SOCKS message of state `s` at the start of `b`.
fn socks(s: State, b: &[u8]) -> Parse {
    let mut r = Reader { b, pos: 0 };
    let next = match socks_message(s, &mut r) {
        None => return Parse::Need,
        Some(None) => return Parse::Bad,
        Some(Some(next)) => next,
    };
    Parse::Done(r.pos, next)
}

/// The state after the SOCKS message of state `s`: `None` when more bytes
/// are needed, `Some(None)` when the message is not what comes there.
fn socks_message(s: State, r: &mut Reader<'_>) -> Option<Option<State>> {
    let ok = |c: bool, next: State| Some(c.then_some(next));
    match s {
        State::Socks4Request => {
            let head = r.take(8)?;
            let (version, command) = (head.first()?, head.get(1)?);
            if *version != 4 || !matches!(command, 1 | 2) {
                return Some(None);
            }
            if !r.cstring(MAX_SOCKS4_STRING)? {
                return Some(None);
            }
            // SOCKS4a: address 0.0.0.x (x not 0), then the domain
            let ip = head.get(4..8)?;
            if ip.get(..3) == Some(&[0, 0, 0][..]) && ip.get(3) != Some(&0) {
                return ok(r.cstring(MAX_SOCKS4_STRING)?, State::Tls);
            }
            ok(true, State::Tls)
        }
        State::Socks4Reply => {
            let head = r.take(8)?;
            ok(
                head.first() == Some(&0) && head.get(1) == Some(&0x5a),
                State::Tls,
            )
        }
        State::Socks5Greeting => {
            let head = r.take(2)?;
            let n = usize::from(*head.get(1)?);
            if head.first() != Some(&5) || n == 0 {
                return Some(None);
            }
            r.take(n)?;
            ok(true, State::Socks5AuthOrRequest)
        }
        State::Socks5AuthOrRequest if r.b.first() == Some(&1) => {
            // RFC 1929: version 1, user name, password
            r.byte()?;
            let ulen = usize::from(r.byte()?);
            r.take(ulen)?;
            let plen = usize::from(r.byte()?);
            r.take(plen)?;
            ok(true, State::Socks5Request)
        }
        State::Socks5AuthOrRequest | State::Socks5Request => {
            let head = r.take(3)?;
            if head.first() != Some(&5)
                || !matches!(head.get(1), Some(1..=3))
                || head.get(2) != Some(&0)
            {
                return Some(None);
            }
            ok(r.socks5_address()?, State::Tls)
        }
        State::Socks5Method => {
            let head = r.take(2)?;
            match (head.first(), head.get(1)) {
                (Some(5), Some(0)) => ok(true, State::Socks5Reply),
                (Some(5), Some(2)) => ok(true, State::Socks5AuthStatus),
                _ => Some(None),
            }
        }
        State::Socks5AuthStatus => {
            let head = r.take(2)?;
            ok(head == [1, 0], State::Socks5Reply)
        }
        State::Socks5Reply => {
            let head = r.take(3)?;
            if head != [5, 0, 0] {
                return Some(None);
            }
            ok(r.socks5_address()?, State::Tls)
        }
        State::Start | State::Lines | State::Tls => Some(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record header and handshake type, then a body byte.
    const CH: &[u8] = &[0x16, 0x03, 0x01, 0x00, 0x30, 0x01, 0xaa];
    /// The same for a ServerHello.
    const SH: &[u8] = &[0x16, 0x03, 0x03, 0x00, 0x30, 0x02, 0xbb];

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// Feeds `stream` in pieces of `chunk` bytes: the final step, and the
    /// bytes skipped before TLS.
    fn run(client: bool, stream: &[u8], chunk: usize) -> (Step, usize) {
        let mut p = PreambleSkipper::new(client, DEFAULT_MAX_PREAMBLE);
        let mut last = Step::More;
        let mut tls = Vec::new();
        for c in stream.chunks(chunk) {
            match &last {
                Step::Tls(_) => tls.extend_from_slice(c),
                _ => last = p.feed(c),
            }
        }
        let skipped = p.skipped();
        match last {
            Step::Tls(mut v) => {
                v.extend(tls);
                (Step::Tls(v), skipped)
            }
            s => (s, skipped),
        }
    }

    /// Every exchange, cut at every chunk size, gives the bytes from the
    /// TLS header on.
    fn check(client: bool, preamble: &[u8], hello: &[u8]) {
        let stream = cat(&[preamble, hello]);
        for chunk in 1..=stream.len() {
            let (step, _) = run(client, &stream, chunk);
            assert_eq!(
                step,
                Step::Tls(hello.to_vec()),
                "{:?} chunk {chunk}",
                String::from_utf8_lossy(preamble)
            );
        }
    }

    #[test]
    fn socks4_and_4a() {
        // VN 4, CD 1 (connect), port 443, 93.184.216.34, user id "u" NUL
        check(true, &[4, 1, 1, 0xbb, 93, 184, 216, 34, b'u', 0], CH);
        // 4a: address 0.0.0.1, empty user id, "example.com" NUL
        let mut req = vec![4, 1, 1, 0xbb, 0, 0, 0, 1, 0];
        req.extend_from_slice(b"example.com\0");
        check(true, &req, CH);
        // reply: VN 0, CD 90 (granted), port, address
        check(false, &[0, 0x5a, 0, 0, 0, 0, 0, 0], SH);
        // rejected (91): no TLS
        let (s, _) = run(false, &cat(&[&[0, 0x5b, 0, 0, 0, 0, 0, 0], SH]), 100);
        assert_eq!(s, Step::NotTls);
    }

    #[test]
    fn socks5_with_and_without_authentication() {
        // greeting: 2 methods (no auth, user/pass); request CONNECT to the
        // domain "example.com" port 443
        let mut req = vec![5, 1, 0, 3, 11];
        req.extend_from_slice(b"example.com");
        req.extend_from_slice(&[1, 0xbb]);
        check(true, &cat(&[&[5, 2, 0, 2], &req]), CH);
        // with RFC 1929 user "al" password "pw"
        check(
            true,
            &cat(&[&[5, 1, 2], &[1, 2, b'a', b'l', 2, b'p', b'w'], &req]),
            CH,
        );
        // IPv6 request
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&[0x20; 16]);
        v6.extend_from_slice(&[1, 0xbb]);
        check(true, &cat(&[&[5, 1, 0], &v6]), CH);
        // server: method 0, reply succeeded bound to 10.0.0.1:1080
        let reply = [5, 0, 0, 1, 10, 0, 0, 1, 4, 0x38];
        check(false, &cat(&[&[5, 0], &reply]), SH);
        // server: method 2, status success, reply
        check(false, &cat(&[&[5, 2], &[1, 0], &reply]), SH);
        // a failed reply (5 = connection refused): no TLS
        let (s, _) = run(false, &[5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0], 100);
        assert_eq!(s, Step::NotTls);
        // no acceptable method
        let (s, _) = run(false, &[5, 0xff], 100);
        assert_eq!(s, Step::NotTls);
    }

    #[test]
    fn http_connect_and_starttls() {
        check(
            true,
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            CH,
        );
        check(
            false,
            b"HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n\r\n",
            SH,
        );
        // SMTP
        check(true, b"EHLO client.example\r\nSTARTTLS\r\n", CH);
        check(
            false,
            b"220 mx.example ESMTP\r\n250-mx.example\r\n250-STARTTLS\r\n250 OK\r\n220 2.0.0 Ready to start TLS\r\n",
            SH,
        );
        // IMAP, POP3, FTP
        check(true, b"a001 CAPABILITY\r\na002 STARTTLS\r\n", CH);
        check(
            false,
            b"* OK IMAP4rev1 ready\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\na001 OK done\r\na002 OK Begin TLS\r\n",
            SH,
        );
        check(true, b"CAPA\r\nSTLS\r\n", CH);
        check(
            false,
            b"+OK POP3 ready\r\n+OK\r\nSTLS\r\n.\r\n+OK Begin TLS\r\n",
            SH,
        );
        check(true, b"AUTH TLS\r\n", CH);
        check(false, b"220 FTP ready\r\n234 AUTH TLS OK.\r\n", SH);
    }

    #[test]
    fn not_tls_and_limits() {
        // plain HTTP: the lines go on, no TLS, nothing decided
        let (s, _) = run(true, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 7);
        assert_eq!(s, Step::More);
        // a control byte in a line, a binary first byte, a record header of
        // the wrong hello (a ServerHello from the client)
        assert_eq!(run(true, b"EHLO x\r\n\x01\x02", 100).0, Step::NotTls);
        assert_eq!(run(true, &[0x99, 1, 2], 100).0, Step::NotTls);
        assert_eq!(run(true, &cat(&[b"AUTH TLS\r\n", SH]), 100).0, Step::NotTls);
        // after SOCKS, TLS must come at once
        let req = [4, 1, 1, 0xbb, 1, 2, 3, 4, 0];
        assert_eq!(run(true, &cat(&[&req, b"GET /"]), 100).0, Step::NotTls);
        // a SOCKS4 user id that never ends
        let mut long = vec![4, 1, 1, 0xbb, 1, 2, 3, 4];
        long.extend_from_slice(&[b'a'; 300]);
        assert_eq!(run(true, &long, 100).0, Step::NotTls);
        // text over the limit: given up, whether in one piece or many, and
        // never more than the limit plus a header held
        let mut text = Vec::new();
        while text.len() <= DEFAULT_MAX_PREAMBLE {
            text.extend_from_slice(b"X-Filler: 0123456789\r\n");
        }
        text.extend_from_slice(CH);
        for chunk in [1, 100, text.len()] {
            let mut p = PreambleSkipper::new(true, DEFAULT_MAX_PREAMBLE);
            let mut last = Step::More;
            for c in text.chunks(chunk) {
                last = p.feed(c);
                assert!(p.held() <= DEFAULT_MAX_PREAMBLE + TLS_HEADER);
                if last != Step::More {
                    break;
                }
            }
            assert_eq!(last, Step::OverLimit, "chunk {chunk}");
        }
        // exactly at the limit it still counts
        let mut p = PreambleSkipper::new(true, 10);
        assert_eq!(p.feed(b"AUTH TLS\r\n"), Step::More);
        assert_eq!(p.feed(CH), Step::Tls(CH.to_vec()));
        let mut p = PreambleSkipper::new(true, 9);
        assert_eq!(p.feed(b"AUTH TLS\r\n"), Step::OverLimit);
    }
}
