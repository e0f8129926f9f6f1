//! The `tls` records against tshark on the TLS-over-TCP captures of the
//! corpus: every hello tshark dissects (ClientHello, ServerHello) is a
//! record of ours with the same hello type, in the same order on its side
//! of the connection, with the same legacy version, SNI, cipher suites,
//! extension types, ALPN, supported versions and JA3/JA3S strings.
//!
//! tshark dissects TLS on the ports it knows and by heuristics; a record
//! of ours on a connection tshark does not dissect as TLS is not compared
//! (counted and printed). Frames holding two hellos are compared by count.

use crate::{analyse_into, corpus, run, stderr};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The captures with TLS over TCP that tshark sees.
const CAPTURES: &[&str] = &[
    "apps/ndpi_gnutella.pcap",
    "apps/ndpi_http_ipv6.pcap",
    "apps/ndpi_tls_ech.pcapng",
    "apps/ndpi_tls_with_huge_ch.pcapng",
    "apps/zeek_tls1.2.pcap",
    "formats/derived_two-sections.pcapng",
    "formats/ndpi_sites.pcapng",
    "formats/pcapparser_err-buffertoosmall.pcapng",
    "formats/suricata_bug-1450-04_tls_DER-incomplete-header.pcap",
    "large/ndpi_1kxun.pcap",
    "large/ndpi_alexa-app.pcapng",
    "large/ndpi_netflix.pcap",
    "large/ndpi_opera-vpn.pcapng",
    "large/suricata_tls-subjectaltname.pcap",
    "linktypes/ndpi_KakaoTalk_chat.pcap",
    "linktypes/suricata_linktype-228_flow-test-01.pcap",
    "linktypes/zeek_openjdk-25.0.2-zeek.org.pcap",
    "linktypes/zeek_pppoe-over-qinq.pcap",
    "tcp/suricata_tcp-empty-sack.pcap",
    "tunnels/zeek_gtp6_gtp_0x32.pcap",
];

const FIELDS: &[&str] = &[
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "ip.dst",
    "ipv6.dst",
    "tcp.dstport",
    "tls.handshake.type",
    "tls.handshake.version",
    "tls.handshake.extensions_server_name",
    "tls.handshake.ciphersuite",
    "tls.handshake.extension.type",
    "tls.handshake.ja3_full",
    "tls.handshake.ja3s_full",
    "tls.handshake.extensions_alpn_str",
    "tls.handshake.extensions.supported_version",
];

/// (client ip, client port, server ip, server port, "client"/"server").
type Key = (String, u64, String, u64, &'static str);

/// Captures where tshark shows hellos the plugin does not write, with the
/// reason.
const NOT_OURS: &[(&str, &str)] = &[(
    "formats/suricata_bug-1450-04_tls_DER-incomplete-header.pcap",
    "the ServerHello's record goes on with a handshake message of type 132 \
         and length 2^24-1 (over MAX_HANDSHAKE_LEN): the stream is not TLS, and \
         the hellos of the damaged group of records are dropped with it (tshark \
         shows the ServerHello and flags the packet malformed)",
)];

/// A hello as tshark or we show it: the compared fields as text.
type Facts = BTreeMap<&'static str, String>;

/// The last of the `;`-separated values (the innermost header of a tunnel).
fn last(v: &str) -> String {
    v.rsplit(';').next().unwrap_or_default().to_string()
}

/// Hex values (`0x0303`) as decimal, `;`-separated.
fn hex_list(v: &str) -> String {
    v.split(';')
        .filter(|x| !x.is_empty())
        .map(|x| {
            u64::from_str_radix(x.trim_start_matches("0x"), 16)
                .unwrap()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// tshark's hellos of `path`, by connection side, in frame order; `None`
/// without tshark.
fn tshark_hellos(path: &Path) -> Option<BTreeMap<Key, Vec<Option<Facts>>>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(path)
        .args([
            "-Y",
            "tcp && (tls.handshake.type == 1 || tls.handshake.type == 2)",
        ])
        .args(["-T", "fields", "-E", "separator=|", "-E", "aggregator=;"]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = match libpcap_live::testing::output_with_deadline(&mut cmd, Duration::from_secs(120))
    {
        // a damaged file (one of the captures ends in a cut record) gives
        // what tshark read before the damage, and a failure status
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIP tls records vs tshark: tshark not usable ({e})");
            return None;
        }
    };
    let mut map: BTreeMap<Key, Vec<Option<Facts>>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let c: Vec<&str> = line.split('|').collect();
        let col = |i: usize| c.get(i).copied().unwrap_or_default();
        let src = if col(1).is_empty() {
            last(col(0))
        } else {
            last(col(1))
        };
        let dst = if col(4).is_empty() {
            last(col(3))
        } else {
            last(col(4))
        };
        let (sport, dport) = (last(col(2)).parse().unwrap(), last(col(5)).parse().unwrap());
        let hellos: Vec<&str> = col(6)
            .split(';')
            .filter(|t| *t == "1" || *t == "2")
            .collect();
        let one = hellos.len() == 1;
        for t in hellos {
            let (key, facts) = if t == "1" {
                let key = (src.clone(), sport, dst.clone(), dport, "client");
                let f: Facts = [
                    ("legacy_version", hex_list(col(7))),
                    ("sni", col(8).to_string()),
                    ("ciphers", hex_list(col(9))),
                    ("extensions", col(10).to_string()),
                    ("ja3", col(11).to_string()),
                    ("alpn", col(13).to_string()),
                    ("supported_versions", hex_list(col(14))),
                ]
                .into_iter()
                .collect();
                (key, f)
            } else {
                let key = (dst.clone(), dport, src.clone(), sport, "server");
                let f: Facts = [
                    ("legacy_version", hex_list(col(7))),
                    ("ciphers", hex_list(col(9))),
                    ("extensions", col(10).to_string()),
                    ("ja3", col(12).to_string()),
                    ("alpn", col(13).to_string()),
                    ("supported_versions", hex_list(col(14))),
                ]
                .into_iter()
                .collect();
                (key, f)
            };
            map.entry(key).or_default().push(one.then_some(facts));
        }
    }
    Some(map)
}

fn join(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| match x {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(";"),
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Our hellos of `path`, by connection side, by index.
fn our_hellos(path: &Path, out: &Path) -> BTreeMap<Key, Vec<Facts>> {
    analyse_into("tls", out, path);
    let text = std::fs::read_to_string(out.join("tls.jsonl")).unwrap_or_default();
    let mut map: BTreeMap<Key, Vec<(u64, Facts)>> = BTreeMap::new();
    for line in text.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let client = r["hello"] == "client_hello";
        let key = (
            r["src_ip"].as_str().unwrap().to_string(),
            r["src_port"].as_u64().unwrap(),
            r["dst_ip"].as_str().unwrap().to_string(),
            r["dst_port"].as_u64().unwrap(),
            if client { "client" } else { "server" },
        );
        let ciphers = if client {
            join(&r["ciphers"])
        } else {
            join(&r["cipher"])
        };
        let mut f: Facts = [
            ("legacy_version", join(&r["legacy_version"])),
            ("ciphers", ciphers),
            ("extensions", join(&r["extensions"])),
            ("ja3", join(if client { &r["ja3"] } else { &r["ja3s"] })),
            ("alpn", join(&r["alpn"])),
            ("supported_versions", join(&r["supported_versions"])),
        ]
        .into_iter()
        .collect();
        if client {
            f.insert("sni", join(&r["sni"]));
        }
        map.entry(key)
            .or_default()
            .push((r["index"].as_u64().unwrap(), f));
    }
    map.into_iter()
        .map(|(k, mut v)| {
            v.sort_by_key(|(i, _)| *i);
            (k, v.into_iter().map(|(_, f)| f).collect())
        })
        .collect()
}

#[test]
fn tls_records_agree_with_tshark_on_the_corpus() {
    let Some(dir) = corpus() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (mut agreed, mut counted, mut not_dissected, mut skipped) = (0, 0, 0, 0);
    let mut diffs = Vec::new();
    for (n, name) in CAPTURES.iter().enumerate() {
        let path = dir.join(name);
        if !path.exists() {
            eprintln!("SKIP {name}: not in the corpus");
            continue;
        }
        let Some(theirs) = tshark_hellos(&path) else {
            return;
        };
        let ours = our_hellos(&path, &tmp.path().join(n.to_string()));
        for (key, hellos) in &theirs {
            let Some(mine) = ours.get(key) else {
                if NOT_OURS.iter().any(|(f, _)| f == name) {
                    skipped += hellos.len();
                } else {
                    diffs.push(format!("{name}: {key:?}: no record of ours"));
                }
                continue;
            };
            if mine.len() != hellos.len() {
                diffs.push(format!(
                    "{name}: {key:?}: {} hellos, tshark {}",
                    mine.len(),
                    hellos.len()
                ));
                continue;
            }
            for (m, t) in mine.iter().zip(hellos) {
                match t {
                    None => counted += 1,
                    Some(t) if t == m => agreed += 1,
                    Some(t) => {
                        diffs.push(format!("{name}: {key:?}:\n ours   {m:?}\n tshark {t:?}"))
                    }
                }
            }
        }
        not_dissected += ours
            .iter()
            .filter(|(k, _)| !theirs.contains_key(*k))
            .map(|(_, v)| v.len())
            .sum::<usize>();
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert!(agreed > 50, "{agreed} hellos compared");
    println!(
        "{agreed} hellos agree with tshark field by field, {counted} by count; \
         {not_dissected} of ours on connections tshark does not dissect as TLS; \
         {skipped} of tshark's not ours for a reason given in NOT_OURS"
    );
}

/// A QUIC ClientHello's (SNI, ALPN list, cipher suites, QUIC version on
/// the wire).
type QuicHello = (String, String, String, u64);

/// The client hellos carried by QUIC in `path` as tshark decrypts them.
fn tshark_quic_hellos(path: &Path) -> Option<std::collections::BTreeSet<QuicHello>> {
    let mut cmd = std::process::Command::new("tshark");
    cmd.arg("-r").arg(path).args([
        "-Y",
        "quic && tls.handshake.type == 1",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "tls.handshake.extensions_server_name",
        "-e",
        "tls.handshake.extensions_alpn_str",
        "-e",
        "tls.handshake.ciphersuite",
        "-e",
        "quic.version",
    ]);
    // no tshark (or a failing one): None, and the caller skips
    let o = libpcap_live::testing::output_with_deadline(&mut cmd, Duration::from_secs(120))
        .ok()
        .filter(|o| o.status.success())?;
    Some(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                let ciphers: Vec<String> = f
                    .get(2)?
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(|c| {
                        u16::from_str_radix(c.trim_start_matches("0x"), 16)
                            .map_or_else(|_| c.to_string(), |v| v.to_string())
                    })
                    .collect();
                // one version per QUIC packet of the datagram: the first
                // is the Initial's (coalesced packets follow it)
                let version = f.get(3)?.split(',').next()?;
                let version = u64::from_str_radix(version.trim_start_matches("0x"), 16).ok()?;
                Some((
                    f[0].to_string(),
                    f.get(1)?.to_string(),
                    ciphers.join(","),
                    version,
                ))
            })
            .collect(),
    )
}

#[test]
fn quic_client_hellos_agree_with_tshark() {
    let Some(dir) = corpus() else { return };
    let files = [
        "apps/zeek_curl-8.1.2-dev-http3-www-google-de.pcap",
        "apps/suricata_quic-retry.pcap",
        "apps/ndpi_doq_adguard.pcapng",
        "apps/ndpi_quic_interop_V.pcapng",
        // gQUIC Q046: no TLS hello on either side
        "apps/ndpi_quic_q46.pcap",
        "linktypes/tcpdump_quic_handshake.pcap",
        "linktypes/zeek_quic-interop-retry.pcap",
    ];
    let tmp = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for name in files {
        let path = dir.join(name);
        if !path.exists() {
            eprintln!("SKIP {name}: not in the corpus");
            continue;
        }
        let Some(theirs) = tshark_quic_hellos(&path) else {
            eprintln!("SKIP quic_client_hellos_agree_with_tshark: tshark not available");
            return;
        };
        let out = tmp.path().join(name.replace('/', "_"));
        analyse_into("tls", &out, &path);
        let text = std::fs::read_to_string(out.join("tls.jsonl")).unwrap();
        let mut ours = std::collections::BTreeSet::new();
        for l in text.lines() {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            if r["transport"] != "quic" || r["hello"] != "client_hello" {
                continue;
            }
            // JA4 of a QUIC hello starts with q (the protocol letter)
            assert!(r["ja4"].as_str().unwrap().starts_with('q'), "{r}");
            assert!(
                r["quic_version"].is_u64()
                    && r["quic_key_version"].is_u64()
                    && r["quic_dcid"].is_string(),
                "{r}"
            );
            let list = |k: &str| -> Vec<String> {
                r[k].as_array()
                    .map(|a| {
                        a.iter()
                            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            ours.insert((
                r["sni"].as_str().unwrap_or("").to_string(),
                list("alpn").join(","),
                list("ciphers").join(","),
                r["quic_version"].as_u64().unwrap_or(0),
            ));
        }
        assert_eq!(
            ours, theirs,
            "{name}: QUIC ClientHellos (SNI, ALPN, ciphers, version)"
        );
        compared += ours.len();
    }
    println!("{compared} distinct QUIC ClientHellos agree with tshark");
}

/// The corpus's damaged QUIC captures: a handshake cut by the snap length
/// is counted by name (`quic_truncated`, in `--stats-json` and the
/// summary), and tcpdump's 32-bit pointer overflow capture (a jumbogram
/// of 84 captured bytes towards port 443) ends cleanly.
#[test]
fn truncated_and_malformed_quic_captures_are_counted_not_fatal() {
    let Some(dir) = corpus() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for (name, truncated) in [
        ("malformed/tcpdump_quic_handshake_truncated.pcap", true),
        ("malformed/tcpdump_quic_32_bit_pointer_overflow.pcap", false),
    ] {
        let path = dir.join(name);
        if !path.exists() {
            eprintln!("SKIP {name}: not in the corpus");
            continue;
        }
        let stats = tmp.path().join("stats.json");
        let o = run([
            "-q".as_ref(),
            "-p".as_ref(),
            "tls".as_ref(),
            "--stats-json".as_ref(),
            stats.as_os_str(),
            path.as_os_str(),
        ]);
        assert!(
            matches!(o.status.code(), Some(0 | 3)),
            "{name}: {}",
            stderr(&o)
        );
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
        let tls = &s["plugins"]["tls"];
        let count = tls["quic_truncated"].as_u64().unwrap();
        if truncated {
            // tshark shows two Initials cut short by the snap length
            assert_eq!(count, 2, "{name}: {tls}");
        }
        assert_eq!(tls["quic_initials"].as_u64(), Some(0), "{name}: {tls}");
    }
}
