//! The `dns` plugin against tshark on the DNS captures of the corpus.
//!
//! The expected values are in `testdata/dns/<capture>.tsv`, made by
//! `testdata/dns/make-expected.sh` (tshark 4.0, PDML turned into one row per
//! DNS message; see `testdata/dns/README.md`). The test needs the corpus
//! (`PAL_CORPUS`, else `../shared/corpus` next to the workspace) but not
//! tshark.
//!
//! Each capture is run through the engine with only the `dns` plugin and one
//! worker. A `dns` record is a transaction (schema `schema/dns.schema.json`):
//! it is split back into its query (at `ts`) and its response (at `ts +
//! rtt`, or `ts` for a response alone), and these messages, in time order,
//! are paired with tshark's rows, per transport (a TCP message is emitted
//! when the reassembled stream reaches the plugin, which need not be in
//! frame order relative to the UDP messages); for UDP the timestamp must
//! also be the frame's. For each pair we compare what the record holds:
//! transaction id, QR, opcode, the first question's name and type, and for
//! responses the rcode (header and EDNS extended bits), the answer,
//! authority and additional counts, and every answer's type, TTL and (A,
//! AAAA, CNAME) data.
//!
//! Where tshark and PAL legitimately differ, the rule is written next to the
//! comparison that applies it (see `KNOWN DIFFERENCE` below); nothing else is
//! tolerated.

// test code: a failed unwrap or index is a test failure with a message
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use libpcap_analyzer::Engine;
use libpcap_analyzer::plugins::builtin_registry;
use libpcap_analyzer::proto::dns::rr_type_name;
use libpcap_tools::{CaptureReader, Config, ReaderConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The corpus directory, or `None` after printing a SKIPPED line.
fn corpus_dir() -> Option<PathBuf> {
    libpcap_tools::synth::corpus_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
}

fn testdata_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/dns")
}

/// One question or record as tshark shows it.
#[derive(Debug, Clone, PartialEq)]
struct Rr {
    name: String,
    rtype: u16,
    /// `None` for OPT (tshark shows no TTL), and always for questions.
    ttl: Option<u32>,
    /// A / AAAA / CNAME data.
    data: Option<String>,
}

/// One row of an expected TSV file.
#[derive(Debug, Clone)]
struct Expected {
    frame: u64,
    ts_ns: u128,
    protocols: String,
    malformed: bool,
    /// A name of the message uses an extended label type.
    ext_label: bool,
    id: Option<u16>,
    qr: bool,
    opcode: Option<u8>,
    rcode: Option<u16>,
    ext_rcode: Option<u16>,
    /// Header counts; `None` when tshark could not read them.
    counts: [Option<u16>; 4],
    sections: [Vec<Rr>; 4],
}

impl Expected {
    fn transport(&self) -> &'static str {
        if self.protocols.split(':').any(|p| p == "tcp") {
            "tcp"
        } else {
            "udp"
        }
    }
}

/// `seconds.nanoseconds` to nanoseconds.
fn epoch_ns(s: &str) -> u128 {
    let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<9}");
    sec.parse::<u128>().unwrap() * 1_000_000_000 + frac[..9].parse::<u128>().unwrap()
}

fn parse_rrs(cell: &str, question: bool) -> Vec<Rr> {
    let v: Value = serde_json::from_str(cell).unwrap_or_else(|e| panic!("{cell}: {e}"));
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let e = e.as_array().unwrap();
            Rr {
                name: e[0].as_str().unwrap().to_string(),
                rtype: e[1].as_u64().unwrap() as u16,
                ttl: if question {
                    None
                } else {
                    e[2].as_u64().map(|t| t as u32)
                },
                data: if question {
                    None
                } else {
                    e[3].as_str().map(str::to_string)
                },
            }
        })
        .collect()
}

fn read_expected(path: &Path) -> Vec<Expected> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let opt = |s: &str| (!s.is_empty()).then(|| s.parse::<u16>().unwrap());
    lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), header.len(), "{}: {l}", path.display());
            let g = |name: &str| f[col(name)];
            Expected {
                frame: g("frame").parse().unwrap(),
                ts_ns: epoch_ns(g("ts")),
                protocols: g("protocols").to_string(),
                malformed: g("malformed") == "1",
                ext_label: g("ext_label") == "1",
                id: opt(g("id")),
                qr: g("qr") == "1",
                opcode: opt(g("opcode")).map(|o| o as u8),
                rcode: opt(g("rcode")),
                ext_rcode: opt(g("ext_rcode")),
                counts: ["qd", "an", "ns", "ar"].map(|c| opt(g(c))),
                sections: [
                    parse_rrs(g("questions"), true),
                    parse_rrs(g("answers"), false),
                    parse_rrs(g("authorities"), false),
                    parse_rrs(g("additionals"), false),
                ],
            }
        })
        .collect()
}

/// Runs the engine with only `dns` (one worker) and returns the lines of
/// dns.jsonl and the plugin's counters.
fn run_dns(capture: &Path) -> (Vec<Value>, Value) {
    let out = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml("").unwrap();
    config.set("output", "dir", out.path().display().to_string());
    let registry = builtin_registry();
    let names = vec!["dns".to_string()];
    let factory = || registry.build(&names, &config);
    let engine = Engine::new(&config, 1).unwrap();
    let mut reader = CaptureReader::open(capture, &ReaderConfig::default()).unwrap();
    let mut output = engine.run(&factory, &mut reader).unwrap();
    let counters = output.plugin("dns").unwrap().results().unwrap();
    output.save_results(out.path()).unwrap();
    let text = std::fs::read_to_string(out.path().join("dns.jsonl")).unwrap_or_default();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // each transaction as its query and its response, in time order
    let mut msgs: Vec<(u128, usize, Value)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let ts = ts_ns(r["ts"].as_str().unwrap());
        let has_response = r.get("rcode").is_some();
        let has_query = !has_response || r.get("rtt").is_some();
        if has_query {
            let mut q = r.clone();
            q["qr"] = false.into();
            msgs.push((ts, i, q));
        }
        if has_response {
            let at = r
                .get("rtt")
                .map_or(ts, |rtt| ts + (rtt.as_f64().unwrap() * 1e9).round() as u128);
            let mut m = r.clone();
            m["qr"] = true.into();
            m["ts_ns"] = (at as u64).into();
            msgs.push((at, i, m));
        }
    }
    msgs.sort_by_key(|(t, i, m)| (*t, *i, m["qr"] == true));
    let lines = msgs
        .into_iter()
        .map(|(t, _, mut m)| {
            m["ts_ns"] = (t as u64).into();
            m
        })
        .collect();
    (lines, counters)
}

/// Nanoseconds since the epoch of an RFC 3339 UTC time with nine fraction
/// digits (the form PAL writes).
fn ts_ns(t: &str) -> u128 {
    let (date, time) = t.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap();
    let h: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    // days from civil (H. Hinnant), independent of the writer's code
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h[0] * 3600 + h[1] * 60 + h[2];
    secs as u128 * 1_000_000_000 + frac.parse::<u128>().unwrap()
}

/// Our name in tshark's display form.
///
/// KNOWN DIFFERENCE (label bytes): PAL writes names with RFC 4343 escapes
/// (`\.`, `\\`, `\DDD` for bytes outside 0x21..=0x7E); tshark 4.0 shows the
/// label bytes as UTF-8 text with ill-formed sequences replaced by U+FFFD
/// (seen in `ndpi_dns-tunnel-iodine`, whose labels carry binary data:
/// `J\228germeister` is shown `J\u{fffd}germeister`, and `\201\190` is shown
/// `ɾ`). So the escapes are undone and the bytes decoded the way tshark does
/// ([`tshark_utf8`]). A label holding a `.` then looks like two labels, as it
/// does in tshark.
fn tshark_form(name: &str) -> String {
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            if b[i + 1].is_ascii_digit() && i + 3 < b.len() {
                let d = std::str::from_utf8(&b[i + 1..i + 4]).unwrap();
                out.push(d.parse::<u8>().unwrap());
                i += 4;
            } else {
                out.push(b[i + 1]);
                i += 2;
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    tshark_utf8(&out)
}

/// Decodes bytes as tshark 4.0 shows them (worked out from its output on all
/// 434 binary names of `ndpi_dns-tunnel-iodine`; Rust's `from_utf8_lossy`
/// differs on 6 of them). It follows the old RFC 2279 shape: a lead byte
/// `0xC0..=0xFD` announces 1 to 5 continuation bytes (`0x80..=0xBF`); the
/// continuation bytes present are consumed, and the whole sequence gives one
/// U+FFFD when it is cut short, or when it is complete but not a Unicode
/// scalar value in shortest form. Any other byte `>= 0x80` gives one U+FFFD.
/// ASCII control characters are shown as C escapes (`\r`), or as `\ooo` in
/// octal (`\022` for 0x12), as in `ndpi_fuzz-2006-06-26-2594`.
fn tshark_utf8(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let n = match c {
            0x00..=0x7f => {
                match c {
                    0x07 => out.push_str("\\a"),
                    0x08 => out.push_str("\\b"),
                    0x09 => out.push_str("\\t"),
                    0x0a => out.push_str("\\n"),
                    0x0b => out.push_str("\\v"),
                    0x0c => out.push_str("\\f"),
                    0x0d => out.push_str("\\r"),
                    0x00..=0x1f | 0x7f => out.push_str(&format!("\\{c:03o}")),
                    _ => out.push(char::from(c)),
                }
                i += 1;
                continue;
            }
            0xc0..=0xdf => 1,
            0xe0..=0xef => 2,
            0xf0..=0xf7 => 3,
            0xf8..=0xfb => 4,
            0xfc..=0xfd => 5,
            _ => {
                out.push('\u{fffd}');
                i += 1;
                continue;
            }
        };
        let mut j = i + 1;
        while j < b.len() && j - i <= n && (0x80..=0xbf).contains(&b[j]) {
            j += 1;
        }
        let ch = if j - i == n + 1 && n <= 3 {
            let mut cp = u32::from(c) & (0x7f >> (n + 1));
            for x in &b[i + 1..j] {
                cp = (cp << 6) | u32::from(x & 0x3f);
            }
            let min = [0, 0x80, 0x800, 0x1_0000][n];
            char::from_u32(cp).filter(|_| cp >= min)
        } else {
            None
        };
        out.push(ch.unwrap_or('\u{fffd}'));
        i = j;
    }
    out
}

/// The A / AAAA / CNAME data of an answer of type `rtype`.
fn our_data(rtype: &str, data: &str) -> Option<String> {
    match rtype {
        "A" | "AAAA" => Some(data.to_string()),
        "CNAME" => Some(tshark_form(data)),
        _ => None,
    }
}

/// Compares one message (the header and the first `sections` sections);
/// returns the differences found.
fn compare(ours: &Value, exp: &Expected, sections: usize) -> Vec<String> {
    let response = ours["qr"] == true;
    let mut diffs = Vec::new();
    let mut check = |what: &str, a: String, b: String| {
        if a != b {
            diffs.push(format!("{what}: ours {a} tshark {b}"));
        }
    };
    check(
        "id",
        format!("{:?}", ours["trans_id"].as_u64().map(|v| v as u16)),
        format!("{:?}", exp.id),
    );
    check("qr", ours["qr"].to_string(), exp.qr.to_string());
    check(
        "opcode",
        format!("{:?}", ours["opcode"].as_u64().map(|v| v as u8)),
        format!("{:?}", exp.opcode),
    );
    let rcode = ours["rcode"].as_u64().unwrap_or(0) as u16;
    // tshark shows the header RCODE only for responses; the extended bits
    // come from the OPT record.
    if let Some(rc) = exp.rcode {
        check("rcode (header)", (rcode & 0xf).to_string(), rc.to_string());
    }
    if response {
        check(
            "rcode (extended bits)",
            (rcode >> 4).to_string(),
            exp.ext_rcode.unwrap_or(0).to_string(),
        );
    }
    let keys = ["questions", "answers", "authorities", "additionals"];
    // a record keeps the counts of its response only
    for (s, key) in keys.iter().enumerate().take(sections).skip(1) {
        if !response {
            break;
        }
        let count = if s == 1 {
            ours["answers"].as_array().map_or(0, Vec::len) as u64
        } else {
            ours[*key].as_u64().unwrap()
        };
        check(
            &format!("{key} count"),
            format!("{:?}", Some(count as usize)),
            format!("{:?}", exp.counts[s]),
        );
        check(
            &format!("{key} decoded"),
            count.to_string(),
            exp.sections[s].len().to_string(),
        );
    }
    if let Some(q) = exp.sections[0].first() {
        check(
            "query",
            tshark_form(ours["query"].as_str().unwrap()),
            q.name.clone(),
        );
        check(
            "qtype name",
            ours["qtype_name"].as_str().unwrap().to_string(),
            rr_type_name(q.rtype),
        );
        check("qtype", ours["qtype"].to_string(), q.rtype.to_string());
    } else {
        check(
            "no question",
            ours.get("query").is_none().to_string(),
            "true".into(),
        );
    }
    if sections > 1 && response {
        let empty = Vec::new();
        let list = |k: &str| {
            ours.get(k)
                .and_then(Value::as_array)
                .unwrap_or(&empty)
                .clone()
        };
        let (data, types, ttls) = (list("answers"), list("answer_types"), list("ttls"));
        for (i, e) in exp.sections[1].iter().enumerate() {
            let w = format!("answers[{i}]");
            let t = types.get(i).and_then(Value::as_str).unwrap_or("-");
            check(&format!("{w} type"), t.to_string(), rr_type_name(e.rtype));
            if let Some(ttl) = e.ttl {
                check(
                    &format!("{w} ttl"),
                    ttls.get(i).map(Value::to_string).unwrap_or_default(),
                    ttl.to_string(),
                );
            }
            let d = data.get(i).and_then(Value::as_str).unwrap_or("");
            check(
                &format!("{w} data"),
                format!("{:?}", our_data(t, d)),
                format!("{:?}", e.data),
            );
        }
    }
    diffs
}

/// Messages tshark flags malformed that PAL decodes, with the reason: the
/// part tshark could not decode is RDATA that PAL keeps as opaque bytes.
/// Only the header, question and answer sections are compared for them.
const TSHARK_ONLY_MALFORMED: &[(&str, u64, &str)] = &[(
    "malformed/ndpi_fuzz-2006-06-26-2594.pcap",
    684,
    "KNOWN DIFFERENCE: an authority record of type 38 (A6, RFC 2874, \
     historic) with 6 bytes of RDATA: tshark decodes A6 and runs out of \
     data; PAL keeps unknown types as raw RDATA (`036e7331c010`)",
)];

/// Whether PAL is expected to reject the message of this row (no line in
/// dns.jsonl, one more in the plugin's `malformed` count).
fn rejected_by_pal(file: &str, e: &Expected) -> bool {
    // KNOWN DIFFERENCE (malformed messages): when a message ends before a
    // field, or a record's RDATA does not fit its length, tshark shows the
    // fields it could read and flags "[Malformed Packet: DNS]"; PAL rejects
    // the message when the damage is in its header or question, and keeps
    // the sections before the damage otherwise (a `partial` record, paired
    // by the caller).
    if e.malformed {
        return !TSHARK_ONLY_MALFORMED
            .iter()
            .any(|(f, n, _)| *f == file && *n == e.frame);
    }
    // KNOWN DIFFERENCE (extended label types): a label length byte in
    // 0x40..=0xBF (the RFC 6891 §5 extended label types, all unassigned or
    // deprecated) does not say how long the label is. tshark shows the name
    // as `<Unknown extended label>` and goes on from a guessed offset, so
    // what follows is garbage (in `ndpi_fuzz-2006-06-26-2594` it reports
    // types like 25707 with class 0x0000 and "Extraneous Data"); PAL rejects
    // the message (`DnsError::LabelTooLong`).
    e.ext_label
}

/// Pairs our messages with tshark's rows of one transport, reporting the
/// unpaired ones in `failures`.
///
/// UDP messages are emitted at the packet that completes them (the last
/// fragment), which is the frame tshark reports, so they pair by timestamp
/// in capture order. TCP messages are emitted when reassembled data reaches
/// the plugin, at a later packet than the one tshark names: they pair in
/// order.
fn pair<'a>(
    transport: &str,
    ours: &[&'a Value],
    exp: &[&'a Expected],
    file: &str,
    failures: &mut Vec<String>,
) -> Vec<(&'a Value, &'a Expected)> {
    if transport == "tcp" {
        if ours.len() != exp.len() {
            failures.push(format!(
                "{file}: {} TCP messages, tshark {}",
                ours.len(),
                exp.len()
            ));
        }
        return ours.iter().copied().zip(exp.iter().copied()).collect();
    }
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < exp.len() || j < ours.len() {
        let ts = ours
            .get(j)
            .map(|o| u128::from(o["ts_ns"].as_u64().unwrap()));
        match (exp.get(i), ts) {
            (Some(e), Some(t)) if t == e.ts_ns => {
                out.push((ours[j], exp[i]));
                i += 1;
                j += 1;
            }
            (Some(e), t) if t.is_none_or(|t| t > e.ts_ns) => {
                failures.push(format!("{file} frame {}: no message from PAL", e.frame));
                i += 1;
            }
            _ => {
                failures.push(format!(
                    "{file}: PAL message at ts_ns {} not in tshark: {}",
                    ts.unwrap_or(0),
                    ours[j]
                ));
                j += 1;
            }
        }
    }
    out
}

/// The captures compared, with what each one exercises.
const CAPTURES: &[&str] = &[
    "apps/ndpi_bad-dns-traffic.pcap", // 382 messages, odd names, MX/TXT
    "apps/ndpi_dns-tunnel-iodine.pcap", // NULL records, binary labels
    "apps/ndpi_dns_exfiltration.pcap", // 300 long random names
    "apps/suricata_datasets-06-state-long.pcap", // 1200 messages, VLAN
    "apps/suricata_dns-bug-1158.pcap", // 161 messages
    "malformed/ndpi_fuzz-2006-06-26-2594.pcap", // fuzzed DNS/SIP: malformed messages
    "apps/zeek_dns-edns-ecs.pcap",    // EDNS, DNSSEC, TCP, IPv6
    "fragments/ndpi_dns_fragmented.pcap", // IPv4/IPv6 fragmented responses, TCP
    "fragments/zeek_ipv6-fragmented-dns.pcap", // IPv6 fragments
    "linktypes/tcpdump_dns-badcookie.pcap", // BSD loopback, EDNS cookies, BADCOOKIE
    "ipv6ext/zeek_mdns.pcap",         // mDNS (port 5353), IPv4 and IPv6 with a hop-by-hop header
];

#[test]
fn dns_plugin_agrees_with_tshark_on_corpus() {
    let Some(corpus) = corpus_dir() else { return };
    let mut failures = Vec::new();
    let mut compared = 0usize;
    let mut rejected_total = 0u64;
    for file in CAPTURES {
        let stem = Path::new(file).file_stem().unwrap().to_str().unwrap();
        let expected = read_expected(&testdata_dir().join(format!("{stem}.tsv")));
        let (lines, counters) = run_dns(&corpus.join(file));
        let mut rejected = 0u64;
        // a message tshark flags malformed that PAL decoded in part (its
        // damage is past the question section): PAL's record says
        // `partial`, and its header and question are compared
        let partial: std::collections::HashSet<u128> = lines
            .iter()
            .filter(|l| l["partial"] == true && l["proto"] == "udp")
            .map(|l| u128::from(l["ts_ns"].as_u64().unwrap()))
            .collect();
        for transport in ["udp", "tcp"] {
            let exp: Vec<&Expected> = expected
                .iter()
                .filter(|e| e.transport() == transport)
                .filter(|e| {
                    let r = rejected_by_pal(file, e)
                        && !(transport == "udp" && partial.contains(&e.ts_ns));
                    rejected += u64::from(r);
                    !r
                })
                .collect();
            let ours: Vec<&Value> = lines.iter().filter(|l| l["proto"] == transport).collect();
            for (o, e) in pair(transport, &ours, &exp, file, &mut failures) {
                // KNOWN DIFFERENCE (partial messages): tshark shows every
                // record it could frame, even one whose RDATA it cannot
                // decode (a name with an extended label type shows as
                // `<Unknown extended label>`), and counts as the header
                // says; PAL keeps the records before the first one that
                // does not decode and marks the record `partial`. Their
                // header and question are compared.
                let sections = match (e.malformed || e.ext_label, o["partial"] == true) {
                    (true, true) => 1,
                    (true, false) => 2,
                    _ => 4,
                };
                for x in compare(o, e, sections) {
                    failures.push(format!("{file} frame {}: {x}", e.frame));
                }
                compared += 1;
            }
        }
        let malformed = counters["malformed"].as_u64().unwrap();
        if malformed != rejected {
            failures.push(format!(
                "{file}: {malformed} messages rejected, tshark flags {rejected}"
            ));
        }
        rejected_total += rejected;
    }
    eprintln!(
        "compared {compared} DNS messages in {} captures; {rejected_total} malformed in both",
        CAPTURES.len()
    );
    if !failures.is_empty() {
        let n = failures.len();
        failures.truncate(400);
        panic!("{n} differences with tshark:\n{}", failures.join("\n"));
    }
}
