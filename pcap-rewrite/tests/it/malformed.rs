//! Malformed and unusual inputs give a clean error or counted skips, never a
//! panic, whatever the options.

use crate::common::corpus_dir;
use pcap_rewrite::convert::{ConvertConfig, TargetLink};
use pcap_rewrite::filter::{FilterSet, Rule};
use pcap_rewrite::output::{OutputFormat, SplitBy, SplitConfig};
use pcap_rewrite::{Error, Options, rewrite};

fn option_sets() -> Vec<Options> {
    let conv = |to, strip_vlan, decap, fix| ConvertConfig {
        to,
        strip_vlan,
        decap,
        fix_checksums: fix,
    };
    let filt = |r: &str| FilterSet {
        keep: vec![Rule::parse(r).unwrap()],
        ..FilterSet::default()
    };
    vec![
        Options::default(),
        Options {
            output_format: Some(OutputFormat::PcapNg),
            convert: conv(Some(TargetLink::Raw), false, false, true),
            ..Options::default()
        },
        Options {
            output_format: Some(OutputFormat::PcapNg),
            convert: conv(Some(TargetLink::Ethernet), true, true, true),
            filter: filt("port=53"),
            ..Options::default()
        },
        Options {
            output_format: Some(OutputFormat::PcapNg),
            filter: filt("net=0.0.0.0/0&proto=udp"),
            split: Some(SplitConfig {
                by: SplitBy::Flow,
                max_open: 4,
                max_files: 16,
            }),
            ..Options::default()
        },
    ]
}

#[test]
fn malformed_inputs_never_panic_and_every_packet_is_counted() {
    let Some(corpus) = corpus_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    for cat in ["malformed", "formats", "fragments", "tunnels", "linktypes"] {
        for e in std::fs::read_dir(corpus.join(cat)).unwrap() {
            inputs.push(e.unwrap().path());
        }
    }
    inputs.sort();
    let mut input_errors = 0;
    let mut open_errors = 0;
    for (n, opts) in option_sets().iter().enumerate() {
        for f in &inputs {
            let out = dir.path().join(format!("o{n}"));
            match rewrite(f, &out, opts) {
                Ok(s) => {
                    let accounted = s.packets_written
                        + s.dropped_by_filter
                        + s.skipped_unreadable
                        + s.skipped_unconvertible
                        + s.skipped_unwritable;
                    assert_eq!(
                        s.packets_read,
                        accounted,
                        "{} options {n}: {s:?}",
                        f.display()
                    );
                    input_errors += usize::from(s.input_error.is_some());
                }
                Err(Error::Input { path, .. }) => {
                    assert_eq!(&path, f);
                    open_errors += 1;
                }
                Err(e) => panic!("{} options {n}: {e}", f.display()),
            }
            if out.is_dir() {
                std::fs::remove_dir_all(&out).unwrap();
            }
        }
    }
    assert!(
        input_errors > 0 && open_errors > 0,
        "{input_errors} {open_errors}"
    );
}

#[test]
fn decap_of_corpus_tunnels_finds_inner_packets() {
    let Some(corpus) = corpus_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        convert: ConvertConfig {
            decap: true,
            ..ConvertConfig::default()
        },
        ..Options::default()
    };
    let mut total = 0;
    for name in ["vxlan", "gre", "geneve", "ip"] {
        for e in std::fs::read_dir(corpus.join("tunnels")).unwrap() {
            let p = e.unwrap().path();
            if !p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_lowercase()
                .contains(name)
            {
                continue;
            }
            let out = dir.path().join("d.pcap");
            if let Ok(s) = rewrite(&p, &out, &opts) {
                total += s.decapsulated;
                // every decapsulated packet decodes to an IP header
                for q in crate::common::read_all(&out).0 {
                    let _ = pcap_rewrite::key::PacketKey::from_frame(q.linktype, &q.data);
                }
            }
        }
    }
    assert!(
        total > 50,
        "only {total} packets decapsulated in the tunnel corpus"
    );
}
