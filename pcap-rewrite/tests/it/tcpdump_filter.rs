//! The differential test of capture filters: over corpus captures of every
//! link type PAL decodes (picked by MANIFEST.tsv's `linktypes` column), the
//! packets a filter keeps are exactly those of
//! `tcpdump -r FILE --time-stamp-precision=nano -w - EXPR`, compared by
//! timestamp, original length and bytes, packet by packet. An expression
//! tcpdump refuses for a file's link type must be refused by PAL too.
//!
//! PAL's side is `PacketFilter` over `CaptureReader` for every expression,
//! and the `pcap-rewrite --filter` binary for a few expressions per file.
//! Files tcpdump cannot read (several link types in one pcapng, a cut
//! header) are skipped with a note. Without tcpdump, libpcap or the corpus
//! the test prints a SKIP line and passes.

use crate::common::{bin, corpus_dir, have};
use libpcap_live::libpcap::Libpcap;
use libpcap_tools::{
    CaptureReader, FilterCompiler, LinkType, OwnedPacket, PacketFilter, ReaderConfig, Timestamp,
};
use pcap_rewrite::key::PacketKey;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Link types PAL decodes (`libpcap_tools::LinkType` and the analyzer's
/// link decoder), NFLOG included: libpcap refuses most expressions there,
/// and PAL must refuse the same ones.
const LINKTYPES: [u32; 12] = [0, 1, 9, 50, 101, 104, 108, 113, 228, 229, 239, 276];

/// Largest file taken (a debug build must stay within about a minute).
const MAX_BYTES: u64 = 250_000;

/// The expressions tried on every file (plus the per-file ones of
/// [`file_expressions`]).
const EXPRESSIONS: &[&str] = &[
    "ip",
    "ip6",
    "arp",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "sctp",
    "igmp",
    "port 53",
    "src port 53",
    "dst port 53",
    "tcp port 80 or tcp port 443",
    "udp portrange 1024-65535",
    "tcp dst portrange 1-1023",
    "net 10.0.0.0/8",
    "src net 192.168.0.0/16 or dst net 172.16.0.0/12",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)",
    "tcp[tcpflags] & tcp-rst != 0",
    "len > 100",
    "len <= 64",
    "greater 500",
    "less 80",
    "vlan",
    "vlan 0",
    "vlan and udp",
    "vlan and vlan and ip",
    "not vlan",
    "mpls",
    "pppoes",
    "ip[6:2] & 0x1fff != 0",
    "ip[6:2] & 0x3fff != 0",
    "ip[8] < 64",
    "ip and ip[0] & 0xf != 5",
    "ip6 proto 17",
    "ip6 proto 58",
    "ip proto 47",
    "udp[8:2] = 0x0100",
    "udp[10] & 0x80 != 0",
    "icmp[icmptype] == icmp-echo",
    "icmp6 and ip6[40] == 128",
    "ether host ff:ff:ff:ff:ff:ff",
    "ether broadcast",
    "ether multicast",
    "ip broadcast",
    "ip multicast",
    "ip6 multicast",
    "not ip and not ip6",
    "(tcp or udp) and not port 53",
    "icmp or icmp6 or (udp and not (port 53 or port 123))",
    "tcp and (port 80 or port 8080) and not src net 10.0.0.0/8",
    "inbound",
    "ip6 and tcp",
    "ip6[6] == 0",
];

/// One capture of the corpus with its MANIFEST row.
#[derive(Debug, Clone)]
struct Capture {
    path: PathBuf,
    rel: String,
    gzip: bool,
}

/// The captures to test: per link type of [`LINKTYPES`] (single link
/// type files), the smallest few; for Ethernet also VLAN/QinQ ones,
/// pcapng files of several interfaces and gzip-compressed files.
fn select(corpus: &Path) -> Vec<Capture> {
    let text = std::fs::read_to_string(corpus.join("MANIFEST.tsv")).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    let (c_path, c_format, c_lt, c_bytes, c_what) = (
        col("path"),
        col("format"),
        col("linktypes"),
        col("bytes"),
        col("what_it_exercises"),
    );
    let mut by_lt: BTreeMap<u32, Vec<(u64, Capture, String, String)>> = BTreeMap::new();
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        // "1(EN10MB)" or "1(EN10MB) (32-bit field ...)"; several: "0(NULL),1(EN10MB)"
        let lts = get(c_lt);
        if lts.contains("),") {
            continue;
        }
        let Some(lt) = lts.split('(').next().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if !LINKTYPES.contains(&lt) {
            continue;
        }
        let bytes: u64 = get(c_bytes).parse().unwrap_or(u64::MAX);
        if bytes > MAX_BYTES {
            continue;
        }
        let format = get(c_format).to_string();
        let cap = Capture {
            path: corpus.join(get(c_path)),
            rel: get(c_path).to_string(),
            gzip: format.contains("gzip"),
        };
        by_lt
            .entry(lt)
            .or_default()
            .push((bytes, cap, format, get(c_what).to_lowercase()));
    }
    let mut out = Vec::new();
    for (lt, mut v) in by_lt {
        v.sort_by(|a, b| (a.0, &a.1.rel).cmp(&(b.0, &b.1.rel)));
        let small = if lt == 1 { 6 } else { 5 };
        for (i, (_, cap, format, what)) in v.into_iter().enumerate() {
            let special = lt == 1
                && (what.contains("vlan")
                    || what.contains("qinq")
                    || what.contains("802.1q")
                    || format.contains("gzip")
                    || (format.starts_with("pcapng") && !format.contains(" 1-IDB")));
            if i < small || special {
                out.push(cap);
            }
        }
    }
    out
}

/// Runs `cmd` with `stdin` until it exits or `limit` passes (then kills
/// it): (exit code, stdout, stderr); `None` as the code on timeout.
fn run_limited(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    limit: Duration,
) -> (Option<i32>, Vec<u8>, String) {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = stdin.map(<[u8]>::to_vec);
    let mut w = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let (Some(w), Some(d)) = (w.as_mut(), input) {
            let _ = w.write_all(&d);
        }
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let ereader = std::thread::spawn(move || {
        let mut v = String::new();
        let _ = err.read_to_string(&mut v);
        v
    });
    let t = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let _ = writer.join();
    (code, reader.join().unwrap(), ereader.join().unwrap())
}

/// A packet as compared: timestamp, original length, bytes.
type Key = (Option<Timestamp>, u32, Vec<u8>);

fn key(p: &OwnedPacket) -> Key {
    (p.ts, p.origlen, p.data.clone())
}

/// The packets of a capture in memory (tcpdump's output).
fn read_bytes(b: Vec<u8>) -> Result<Vec<OwnedPacket>, String> {
    let mut r =
        CaptureReader::from_reader(std::io::Cursor::new(b), "tcpdump", &ReaderConfig::default())
            .map_err(|e| e.to_string())?;
    let mut v = Vec::new();
    loop {
        match r.next_packet() {
            Ok(Some(p)) => v.push(p.to_owned()),
            Ok(None) => return Ok(v),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Our reader's packets of a file, and the error that ended it, if any.
fn read_file(path: &Path) -> (Vec<OwnedPacket>, Option<String>) {
    let mut r = match CaptureReader::open(path, &ReaderConfig::default()) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e.to_string())),
    };
    let mut v = Vec::new();
    loop {
        match r.next_packet() {
            Ok(Some(p)) => v.push(p.to_owned()),
            Ok(None) => return (v, None),
            Err(e) => return (v, Some(e.to_string())),
        }
    }
}

/// Expressions made from the file's own traffic: its first IPv4 and IPv6
/// addresses and ports.
fn file_expressions(packets: &[OwnedPacket]) -> Vec<String> {
    let mut v4 = None;
    let mut v6 = None;
    let mut ports = None;
    for p in packets {
        let Some(k) = PacketKey::from_frame(p.linktype, &p.data) else {
            continue;
        };
        match k.src {
            IpAddr::V4(_) if v4.is_none() => v4 = Some((k.src, k.dst)),
            IpAddr::V6(_) if v6.is_none() => v6 = Some(k.src),
            _ => {}
        }
        if ports.is_none() {
            ports = k.ports;
        }
    }
    let mut e = Vec::new();
    if let Some((s, d)) = v4 {
        e.push(format!("host {s}"));
        e.push(format!("src host {s} and dst host {d}"));
        e.push(format!("dst host {s}"));
        e.push(format!("net {s}/24"));
        e.push(format!("not host {d}"));
    }
    if let Some(s) = v6 {
        e.push(format!("host {s}"));
        e.push(format!("ip6 net {s}/64"));
    }
    if let Some((sp, dp)) = ports {
        e.push(format!("port {sp}"));
        e.push(format!("src port {sp}"));
        e.push(format!("dst port {dp}"));
        e.push(format!("tcp port {dp} or udp port {sp}"));
        e.push(format!(
            "portrange {}-{}",
            dp.saturating_sub(10),
            dp.saturating_add(10)
        ));
    }
    e
}

/// What one file gave.
#[derive(Debug, Default)]
struct Tally {
    files: Vec<String>,
    notes: Vec<String>,
    failures: Vec<String>,
    pairs: usize,
    refused: usize,
    kept: usize,
    cli_runs: usize,
    linktypes: BTreeMap<u32, usize>,
}

/// Checks one file: every expression through `PacketFilter`, two through
/// the binary.
fn check_file(cap: &Capture, compiler: &Arc<dyn FilterCompiler>, dir: &Path, tally: &Mutex<Tally>) {
    let note = |m: String| tally.lock().unwrap().notes.push(m);
    let limit = Duration::from_secs(20);
    // tcpdump reads plain files only: a compressed one goes through stdin
    let plain: Option<Vec<u8>> = cap.gzip.then(|| {
        let mut c = Command::new("gzip");
        c.arg("-dc").arg(&cap.path);
        run_limited(c, None, limit).1
    });
    let tcpdump = |expr: Option<&str>| {
        let mut c = Command::new("tcpdump");
        c.arg("-r");
        if plain.is_some() {
            c.arg("-");
        } else {
            c.arg(&cap.path);
        }
        c.args(["--time-stamp-precision=nano", "-w", "-"]);
        if let Some(e) = expr {
            c.arg(e);
        }
        run_limited(c, plain.as_deref(), limit)
    };
    // tcpdump and our reader must read the same packets before filters are compared
    let (code, out, err) = tcpdump(None);
    let theirs = match (code, read_bytes(out)) {
        (Some(0), Ok(v)) => v,
        (_, r) => {
            note(format!(
                "{}: skipped, tcpdump cannot read it ({}; {})",
                cap.rel,
                err.lines().last().unwrap_or("").trim(),
                r.err().unwrap_or_default()
            ));
            return;
        }
    };
    let (ours, our_err) = read_file(&cap.path);
    if theirs.iter().map(key).collect::<Vec<_>>() != ours.iter().map(key).collect::<Vec<_>>() {
        let diff = theirs
            .iter()
            .zip(&ours)
            .position(|(a, b)| key(a) != key(b))
            .map(|i| {
                let (a, b) = (&theirs[i], &ours[i]);
                format!(
                    "packet {i}: tcpdump {:?} {}/{} bytes, PAL {:?} {}/{} bytes",
                    a.ts,
                    a.data.len(),
                    a.origlen,
                    b.ts,
                    b.data.len(),
                    b.origlen
                )
            })
            .unwrap_or_default();
        note(format!(
            "{}: skipped, tcpdump reads {} packets, PAL {} ({}{diff}): the readers differ, not \
             the filters",
            cap.rel,
            theirs.len(),
            ours.len(),
            our_err.map(|e| e + "; ").unwrap_or_default()
        ));
        return;
    }
    let Some(first) = ours.first().map(|p| p.linktype) else {
        note(format!("{}: skipped, no packets", cap.rel));
        return;
    };
    let mut exprs: Vec<String> = EXPRESSIONS.iter().map(|s| s.to_string()).collect();
    exprs.extend(file_expressions(&ours));
    let mut failures = Vec::new();
    let (mut pairs, mut refused, mut kept) = (0, 0, 0);
    let mut accepted_exprs = Vec::new();
    for expr in &exprs {
        pairs += 1;
        let (code, out, err) = tcpdump(Some(expr));
        let pal = PacketFilter::new(expr, compiler.clone(), &[first]);
        match (code, pal) {
            (Some(0), Ok(mut f)) => {
                let want: Vec<Key> = match read_bytes(out) {
                    Ok(v) => v.iter().map(key).collect(),
                    Err(e) => {
                        failures.push(format!(
                            "{} '{expr}': tcpdump output unreadable: {e}",
                            cap.rel
                        ));
                        continue;
                    }
                };
                let got: Vec<Key> = ours
                    .iter()
                    .filter(|p| f.matches(&p.as_packet()))
                    .map(key)
                    .collect();
                kept += want.len();
                if got != want {
                    let at = got.iter().zip(&want).position(|(a, b)| a != b);
                    failures.push(format!(
                        "{} '{expr}': tcpdump keeps {} packets, PAL {} (first difference at {at:?})",
                        cap.rel,
                        want.len(),
                        got.len()
                    ));
                }
                accepted_exprs.push(expr.clone());
            }
            (Some(c), Err(e)) if c != 0 => {
                refused += 1;
                let theirs = err.lines().last().unwrap_or("").trim().to_string();
                // the same reason: libpcap's message is in both
                let msg = theirs.trim_start_matches("tcpdump: ");
                if !e.to_string().contains(msg) {
                    failures.push(format!(
                        "{} '{expr}': both refuse, but tcpdump says '{theirs}' and PAL '{e}'",
                        cap.rel
                    ));
                }
            }
            (code, Ok(_)) => failures.push(format!(
                "{} '{expr}': tcpdump refuses it ({code:?}: {}), PAL accepts it",
                cap.rel,
                err.trim()
            )),
            (code, Err(e)) => failures.push(format!(
                "{} '{expr}': tcpdump accepts it ({code:?}), PAL refuses it: {e}",
                cap.rel
            )),
        }
    }
    // the binary, on a few expressions accepted above
    let mut cli_runs = 0;
    let pick: Vec<&String> = accepted_exprs
        .iter()
        .filter(|e| {
            [
                "udp",
                "tcp[tcpflags] & tcp-syn != 0",
                "vlan and udp",
                "len > 100",
            ]
            .contains(&e.as_str())
                || e.starts_with("host ")
        })
        .take(3)
        .collect();
    for expr in pick {
        cli_runs += 1;
        let out = dir.join(format!("{}.pcapng", cap.rel.replace(['/', '.'], "_")));
        let mut c = bin();
        c.arg(&cap.path)
            .arg(&out)
            .args(["-o", "pcapng", "-q", "-f", expr]);
        let (code, _, err) = run_limited(c, None, limit);
        let (_, tcp_out, _) = tcpdump(Some(expr));
        let want: Vec<Key> = read_bytes(tcp_out)
            .unwrap_or_default()
            .iter()
            .map(key)
            .collect();
        let got: Vec<Key> = read_file(&out).0.iter().map(key).collect();
        if code != Some(0) || got != want {
            failures.push(format!(
                "{} '{expr}': pcap-rewrite --filter (exit {code:?}, {err}) wrote {} packets, tcpdump {}",
                cap.rel,
                got.len(),
                want.len()
            ));
        }
    }
    let mut t = tally.lock().unwrap();
    t.files.push(cap.rel.clone());
    t.failures.extend(failures);
    t.pairs += pairs;
    t.refused += refused;
    t.kept += kept;
    t.cli_runs += cli_runs;
    *t.linktypes.entry(first.0).or_default() += 1;
}

#[test]
fn filters_keep_exactly_what_tcpdump_keeps_on_the_corpus() {
    let test = "filters_keep_exactly_what_tcpdump_keeps_on_the_corpus";
    let Some(corpus) = corpus_dir() else {
        eprintln!("SKIP {test}: corpus not found (PAL_CORPUS)");
        return;
    };
    if !have("tcpdump") {
        eprintln!("SKIP {test}: tcpdump is not installed");
        return;
    }
    let compiler: Arc<dyn FilterCompiler> = match Libpcap::load() {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("SKIP {test}: {e}");
            return;
        }
    };
    let start = Instant::now();
    let captures = select(&corpus);
    let dir = tempfile::tempdir().unwrap();
    let tally = Mutex::new(Tally::default());
    let next = Mutex::new(captures.iter());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let Some(cap) = next.lock().unwrap().next() else {
                        break;
                    };
                    check_file(cap, &compiler, dir.path(), &tally);
                }
            });
        }
    });
    let t = tally.into_inner().unwrap();
    for n in &t.notes {
        eprintln!("note: {n}");
    }
    eprintln!(
        "{} files compared ({} selected), link types {:?}; {} (file, expression) pairs, {} refused \
         by both, {} packets kept by tcpdump and PAL alike; {} pcap-rewrite runs; {:.1} s",
        t.files.len(),
        captures.len(),
        t.linktypes,
        t.pairs,
        t.refused,
        t.kept,
        t.cli_runs,
        start.elapsed().as_secs_f64()
    );
    assert!(
        t.failures.is_empty(),
        "{} differences:\n{}",
        t.failures.len(),
        t.failures.join("\n")
    );
    // the test compared something on every link type it meant to
    for lt in [0, 1, 9, 101, 113, 228, 229, 276] {
        assert!(
            t.linktypes.get(&lt).copied().unwrap_or(0) >= 1,
            "no file of link type {lt} compared: {:?}",
            t.linktypes
        );
    }
    assert!(t.kept > 1000, "only {} packets kept in all", t.kept);
    assert!(EXPRESSIONS.len() >= 40);
    let _ = LinkType::ETHERNET;
}
