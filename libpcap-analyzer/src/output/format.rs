//! The file formats: JSON lines, CSV, Zeek TSV logs and Parquet, each
//! writing decoded rows ([`Value`]s in field order) straight into a buffered
//! writer, without intermediate JSON values.

use super::row::Value;
use super::schema::{Kind, Ty};
use super::time::{push_rfc3339, push_seconds};
use std::io::{self, Write};

/// A file format of the records.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line; null fields are left out (as Zeek's JSON
    /// logs do).
    #[default]
    Jsonl,
    /// RFC 4180 CSV with a header row; null fields empty; lists as `a,b`.
    Csv,
    /// Zeek TSV logs (`#separator`, `#fields`, `#types` headers), with
    /// Zeek's field names where Zeek has the field.
    Zeek,
    /// Apache Parquet, zstd-compressed, written in row groups as the run
    /// goes (needs the `parquet` feature, on by default).
    Parquet,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 4] = [Format::Jsonl, Format::Csv, Format::Zeek, Format::Parquet];

    /// The extension of its files.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Zeek => "log",
            Format::Parquet => "parquet",
        }
    }

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Zeek => "zeek",
            Format::Parquet => "parquet",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "jsonl" | "json" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            "zeek" | "tsv" => Ok(Format::Zeek),
            "parquet" => Ok(Format::Parquet),
            other => Err(format!(
                "unknown format '{other}' (jsonl, csv, zeek, parquet)"
            )),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Writes the rows of one record kind in one format.
pub trait RecordWriter: Send {
    /// Writes one row (one value per field of the kind, in order).
    ///
    /// # Errors
    /// The writer's error.
    fn write_row(&mut self, row: &[Value<'_>]) -> io::Result<()>;

    /// Writes one line made by the [`LineFormat`] of this writer's format
    /// and kind (the text formats; the others refuse it).
    ///
    /// # Errors
    /// The writer's error, or a format that is not written by lines.
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let _ = line;
        Err(io::Error::other("this format is not written line by line"))
    }

    /// Writes what ends the file and flushes it.
    ///
    /// # Errors
    /// The writer's error.
    fn finish(self: Box<Self>) -> io::Result<()>;
}

/// A writer of `kind` in `format` into `out` (buffer it: the writers issue
/// many small writes).
///
/// # Errors
/// When the header cannot be written, or Parquet is not built in.
pub fn writer<W: Write + Send + 'static>(
    format: Format,
    kind: &'static Kind,
    out: W,
) -> io::Result<Box<dyn RecordWriter>> {
    Ok(match format {
        Format::Jsonl | Format::Csv | Format::Zeek => match LineFormat::new(format, kind) {
            Some(f) => Box::new(TextWriter::new(f, out)?),
            None => return Err(io::Error::other("not a text format")),
        },
        #[cfg(feature = "parquet")]
        Format::Parquet => Box::new(super::parquet::Parquet::new(kind, out)?),
        #[cfg(not(feature = "parquet"))]
        Format::Parquet => {
            return Err(io::Error::other(
                "this build has no Parquet support (feature 'parquet')",
            ));
        }
    })
}

fn push_u64(out: &mut Vec<u8>, v: u64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
}

fn push_i64(out: &mut Vec<u8>, v: i64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(v).as_bytes());
}

fn push_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let _ = write!(out, "{v}");
    } else {
        out.extend_from_slice(b"0");
    }
}

fn push_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    out.extend_from_slice(super::iptext::IpText::new(&ip).as_bytes());
}

/// Appends `s` as a JSON string.
fn push_json_str(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    while let Some(i) = next_escape(b, start) {
        let Some(&c) = b.get(i) else { break };
        out.extend_from_slice(b.get(start..i).unwrap_or_default());
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => b"",
        };
        if esc.is_empty() {
            let _ = write!(out, "\\u{c:04x}");
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(b.get(start..).unwrap_or_default());
    out.push(b'"');
}

/// Whether a byte needs escaping in a JSON string: `"`, `\` and the
/// control characters.
fn needs_json_escape(c: u8) -> bool {
    c < 0x20 || c == b'"' || c == b'\\'
}

/// The index of the first byte at or after `from` that needs escaping in
/// a JSON string. Eight bytes are tested at a time (most texts have none).
fn next_escape(b: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let rest = b.get(from..)?;
    let mut words = rest.chunks_exact(8);
    let mut at = from;
    for w in words.by_ref() {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(w);
        let x = u64::from_le_bytes(eight);
        // a byte below 0x20, or equal to '"' or '\\' (the classic
        // has-less-than and has-zero-byte word tests; a flagged word is
        // then read byte by byte)
        let low = x.wrapping_sub(LO * 0x20) & !x & HI;
        let q = x ^ (LO * u64::from(b'"'));
        let quote = q.wrapping_sub(LO) & !q & HI;
        let s = x ^ (LO * u64::from(b'\\'));
        let slash = s.wrapping_sub(LO) & !s & HI;
        if low | quote | slash != 0
            && let Some(i) = w.iter().position(|&c| needs_json_escape(c))
        {
            return Some(at + i);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&c| needs_json_escape(c))
        .map(|i| at + i)
}

/// Formats rows as the lines of a text format (JSON lines, CSV, Zeek TSV):
/// what the text writers write, and what a [`super::RecordSpool`] writes
/// into its sorted runs while the analysis goes on, so that the merge at
/// the end only copies lines.
#[derive(Debug, Clone)]
pub struct LineFormat {
    kind: &'static Kind,
    style: Style,
}

#[derive(Debug, Clone)]
enum Style {
    /// `"name":` of each field, ready to copy.
    Jsonl(Vec<Vec<u8>>),
    /// A scratch buffer for list items.
    Csv(Vec<u8>),
    Zeek,
}

impl LineFormat {
    /// The line format of `format` for `kind`; `None` for Parquet, which
    /// is not written line by line.
    pub fn new(format: Format, kind: &'static Kind) -> Option<LineFormat> {
        let style = match format {
            Format::Jsonl => Style::Jsonl(
                kind.fields
                    .iter()
                    .map(|f| {
                        let mut k = Vec::new();
                        push_json_str(&mut k, f.name.as_bytes());
                        k.push(b':');
                        k
                    })
                    .collect(),
            ),
            Format::Csv => Style::Csv(Vec::new()),
            Format::Zeek => Style::Zeek,
            Format::Parquet => return None,
        };
        Some(LineFormat { kind, style })
    }

    /// What starts the file (nothing for JSON lines, the header row of
    /// CSV, the `#` lines of a Zeek log).
    pub fn header(&self) -> Vec<u8> {
        let kind = self.kind;
        let mut h = Vec::new();
        match self.style {
            Style::Jsonl(_) => {}
            Style::Csv(_) => {
                for (i, f) in kind.fields.iter().enumerate() {
                    if i > 0 {
                        h.push(b',');
                    }
                    h.extend_from_slice(f.name.as_bytes());
                }
                h.extend_from_slice(b"\r\n");
            }
            Style::Zeek => {
                h.extend_from_slice(
                    b"#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\t",
                );
                h.extend_from_slice(kind.zeek_path.unwrap_or(kind.file).as_bytes());
                h.extend_from_slice(b"\n#fields");
                for f in kind.fields {
                    h.push(b'\t');
                    h.extend_from_slice(f.zeek.unwrap_or(f.name).as_bytes());
                }
                h.extend_from_slice(b"\n#types");
                for f in kind.fields {
                    h.push(b'\t');
                    // Zeek's id fields are ports
                    let t = if matches!(f.zeek, Some("id.orig_p" | "id.resp_p")) {
                        "port"
                    } else if f.ty == Ty::Str && f.name == "proto" && kind.zeek_path.is_some() {
                        "enum"
                    } else {
                        f.ty.zeek()
                    };
                    h.extend_from_slice(t.as_bytes());
                }
                h.push(b'\n');
            }
        }
        h
    }

    /// Appends the line of `row` (one value per field, in order), its line
    /// end included.
    pub fn push_line(&mut self, row: &[Value<'_>], l: &mut Vec<u8>) {
        match &mut self.style {
            Style::Jsonl(keys) => jsonl_line(keys, row, l),
            Style::Csv(item) => csv_line(item, row, l),
            Style::Zeek => zeek_line(row, l),
        }
    }
}

fn jsonl_line(keys: &[Vec<u8>], row: &[Value<'_>], l: &mut Vec<u8>) {
    l.push(b'{');
    let mut first = true;
    for (v, key) in row.iter().zip(keys) {
        if v.is_null() {
            continue;
        }
        if !first {
            l.push(b',');
        }
        first = false;
        l.extend_from_slice(key);
        match v {
            Value::Null => {}
            Value::Bool(b) => l.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::U64(x) => push_u64(l, *x),
            Value::I64(x) => push_i64(l, *x),
            Value::F64(x) => push_f64(l, *x),
            Value::Str(s) => push_json_str(l, s),
            Value::Ip(ip) => {
                l.push(b'"');
                push_ip(l, *ip);
                l.push(b'"');
            }
            Value::Time(t) => {
                l.push(b'"');
                push_rfc3339(l, *t);
                l.push(b'"');
            }
            Value::Duration(ns) => push_seconds(l, *ns, 9),
            Value::StrList(list) => {
                l.push(b'[');
                for (i, s) in list.strs().enumerate() {
                    if i > 0 {
                        l.push(b',');
                    }
                    push_json_str(l, s);
                }
                l.push(b']');
            }
            Value::U64List(list) => {
                l.push(b'[');
                for (i, x) in list.u64s().enumerate() {
                    if i > 0 {
                        l.push(b',');
                    }
                    push_u64(l, x);
                }
                l.push(b']');
            }
        }
    }
    l.extend_from_slice(b"}\n");
}

/// Appends `s` as a CSV field (quoted when it holds a comma, a quote or a
/// line break).
fn push_csv_str(out: &mut Vec<u8>, s: &[u8]) {
    if s.iter().any(|c| matches!(c, b',' | b'"' | b'\n' | b'\r')) {
        out.push(b'"');
        for &c in s {
            if c == b'"' {
                out.push(b'"');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(s);
    }
}

fn csv_line(item: &mut Vec<u8>, row: &[Value<'_>], l: &mut Vec<u8>) {
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            l.push(b',');
        }
        match v {
            Value::Null => {}
            Value::Bool(b) => l.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::U64(x) => push_u64(l, *x),
            Value::I64(x) => push_i64(l, *x),
            Value::F64(x) => push_f64(l, *x),
            Value::Str(s) => push_csv_str(l, s),
            Value::Ip(ip) => push_ip(l, *ip),
            Value::Time(t) => push_rfc3339(l, *t),
            Value::Duration(ns) => push_seconds(l, *ns, 9),
            Value::StrList(list) => {
                item.clear();
                for (i, s) in list.strs().enumerate() {
                    if i > 0 {
                        item.push(b',');
                    }
                    item.extend_from_slice(s);
                }
                push_csv_str(l, item);
            }
            Value::U64List(list) => {
                let multi = list.len() > 1;
                if multi {
                    l.push(b'"');
                }
                for (i, x) in list.u64s().enumerate() {
                    if i > 0 {
                        l.push(b',');
                    }
                    push_u64(l, x);
                }
                if multi {
                    l.push(b'"');
                }
            }
        }
    }
    l.extend_from_slice(b"\r\n");
}

/// Appends `s` as a Zeek log field: tabs, newlines, backslashes, the set
/// separator (in lists) and non-printable bytes as `\xNN`; an empty string
/// as `(empty)`, a lone `-` escaped so that it is not read as unset.
fn push_zeek_str(out: &mut Vec<u8>, s: &[u8], in_list: bool) {
    if s.is_empty() {
        out.extend_from_slice(b"(empty)");
        return;
    }
    if s == b"-" {
        out.extend_from_slice(b"\\x2d");
        return;
    }
    for &c in s {
        if c == b'\\' || c == b'\t' || c < 0x20 || c == 0x7f || (in_list && c == b',') {
            let _ = write!(out, "\\x{c:02x}");
        } else {
            out.push(c);
        }
    }
}

fn zeek_line(row: &[Value<'_>], l: &mut Vec<u8>) {
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            l.push(b'\t');
        }
        match v {
            Value::Null => l.push(b'-'),
            Value::Bool(b) => l.push(if *b { b'T' } else { b'F' }),
            Value::U64(x) => push_u64(l, *x),
            Value::I64(x) => push_i64(l, *x),
            Value::F64(x) => push_f64(l, *x),
            Value::Str(s) => push_zeek_str(l, s, false),
            Value::Ip(ip) => push_ip(l, *ip),
            Value::Time(t) => push_seconds(l, t.as_nanos(), 6),
            Value::Duration(ns) => push_seconds(l, *ns, 6),
            Value::StrList(list) => {
                if list.is_empty() {
                    l.extend_from_slice(b"(empty)");
                }
                for (i, s) in list.strs().enumerate() {
                    if i > 0 {
                        l.push(b',');
                    }
                    push_zeek_str(l, s, true);
                }
            }
            Value::U64List(list) => {
                if list.is_empty() {
                    l.extend_from_slice(b"(empty)");
                }
                for (i, x) in list.u64s().enumerate() {
                    if i > 0 {
                        l.push(b',');
                    }
                    push_u64(l, x);
                }
            }
        }
    }
    l.push(b'\n');
}

/// A text format's writer: its header first, then one line per row.
struct TextWriter<W: Write> {
    format: LineFormat,
    out: W,
    line: Vec<u8>,
}

impl<W: Write> TextWriter<W> {
    fn new(format: LineFormat, mut out: W) -> io::Result<Self> {
        out.write_all(&format.header())?;
        Ok(TextWriter {
            format,
            out,
            line: Vec::with_capacity(512),
        })
    }
}

impl<W: Write + Send> RecordWriter for TextWriter<W> {
    fn write_row(&mut self, row: &[Value<'_>]) -> io::Result<()> {
        self.line.clear();
        self.format.push_line(row, &mut self.line);
        self.out.write_all(&self.line)
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)
    }

    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::row::{RowBuf, decode};
    use crate::output::schema::COMMUNITY_ID;
    use libpcap_tools::Timestamp;

    /// A shared buffer to read back what a writer wrote.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn row(cid: &str) -> Vec<u8> {
        let mut r = RowBuf::new(&COMMUNITY_ID);
        r.time(Timestamp::from_secs_nanos(1_591_780_794, 740_079_000))
            .str("2d272b48ffac6655")
            .ip("192.168.1.11".parse().unwrap())
            .u64(43966)
            .ip("2001:db8::1".parse().unwrap())
            .u64(53)
            .str("udp")
            .u64(17)
            .str(cid);
        r.finish().unwrap().to_vec()
    }

    fn written(format: Format, cids: &[&str]) -> String {
        let buf = Shared::default();
        let mut w = writer(format, &COMMUNITY_ID, buf.clone()).unwrap();
        for c in cids {
            let r = row(c);
            let mut vals = Vec::new();
            decode(&COMMUNITY_ID, &r, &mut vals).unwrap();
            w.write_row(&vals).unwrap();
        }
        w.finish().unwrap();
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_strings_read_back_as_written_with_the_escapes_at_any_place() {
        // every character that needs escaping, and neighbours that do not
        // (0x1f/0x20, multi-byte UTF-8 whose bytes are >= 0x80), at every
        // offset of texts of 0 to 40 characters: the word-at-a-time scan
        // must find each one wherever it falls in a word
        let specials = [
            '"', '\\', '\n', '\r', '\t', '\u{0}', '\u{1f}', '\u{8}', '\u{c}',
        ];
        let plain = [
            'a', ' ', '~', '\u{7f}', 'é', '\u{2028}', '😀', '!', '#', '[', ']',
        ];
        let mut rng = libpcap_tools::synth::Rng(11);
        for len in 0..40usize {
            for _ in 0..40 {
                let text: String = (0..len)
                    .map(|_| {
                        let r = rng.next_u64();
                        if r.is_multiple_of(5) {
                            specials[(r >> 8) as usize % specials.len()]
                        } else {
                            plain[(r >> 8) as usize % plain.len()]
                        }
                    })
                    .collect();
                let mut out = Vec::new();
                push_json_str(&mut out, text.as_bytes());
                let back: String = serde_json::from_slice(&out).unwrap_or_else(|e| {
                    panic!("{text:?} gave {:?}: {e}", String::from_utf8_lossy(&out))
                });
                assert_eq!(back, text);
                // the escapes are the short ones where JSON has them
                let written = String::from_utf8(out).unwrap();
                assert!(
                    !written.contains('\n') && !written.contains('\t'),
                    "{written:?}"
                );
            }
        }
        let mut out = Vec::new();
        push_json_str(&mut out, b"0123456\"89abcdef\x01x\\");
        assert_eq!(out, b"\"0123456\\\"89abcdef\\u0001x\\\\\"");
    }

    #[test]
    fn jsonl_is_one_object_per_line_with_rfc3339_times() {
        let s = written(Format::Jsonl, &["1:a\"b\\c\u{1}"]);
        assert_eq!(
            s,
            "{\"ts\":\"2020-06-10T09:19:54.740079000Z\",\"flow_id\":\"2d272b48ffac6655\",\
             \"src_ip\":\"192.168.1.11\",\"src_port\":43966,\"dst_ip\":\"2001:db8::1\",\
             \"dst_port\":53,\"proto\":\"udp\",\"proto_num\":17,\"community_id\":\"1:a\\\"b\\\\c\\u0001\"}\n"
        );
        let v: serde_json::Value = serde_json::from_str(s.trim()).unwrap();
        assert_eq!(v["community_id"], "1:a\"b\\c\u{1}");
    }

    #[test]
    fn csv_has_a_header_and_quotes_what_needs_it() {
        let s = written(Format::Csv, &["plain", "with,comma", "with\"quote"]);
        let lines: Vec<&str> = s.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "ts,flow_id,src_ip,src_port,dst_ip,dst_port,proto,proto_num,community_id"
        );
        assert!(lines[1].ends_with(",17,plain"), "{}", lines[1]);
        assert!(lines[2].ends_with(",17,\"with,comma\""), "{}", lines[2]);
        assert!(lines[3].ends_with(",17,\"with\"\"quote\""), "{}", lines[3]);
    }

    #[test]
    fn zeek_logs_have_their_headers_and_escapes() {
        let s = written(Format::Zeek, &["a\tb", "", "-"]);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "#separator \\x09");
        assert_eq!(lines[4], "#path\tcommunity-id");
        assert_eq!(
            lines[5],
            "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tproto_num\tcommunity_id"
        );
        assert_eq!(
            lines[6],
            "#types\ttime\tstring\taddr\tport\taddr\tport\tstring\tcount\tstring"
        );
        assert_eq!(
            lines[7],
            "1591780794.740079\t2d272b48ffac6655\t192.168.1.11\t43966\t2001:db8::1\t53\tudp\t17\ta\\x09b"
        );
        assert!(lines[8].ends_with("\t(empty)"));
        assert!(lines[9].ends_with("\t\\x2d"));
    }
}
