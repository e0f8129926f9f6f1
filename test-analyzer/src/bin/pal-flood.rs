//! `pal-flood KIND PACKETS [FILE]`: writes a deterministic flood
//! ([`libpcap_analyzer::flood`]) as a classic pcap to FILE, or to standard
//! output without one (or with `-`). KIND: syn, fragments, far-ahead,
//! malformed-dns, dns-flows, quic-initials. Used by `scripts/flood-rss.sh`.

use libpcap_analyzer::flood::{FloodKind, write_pcap};
use std::io::{BufWriter, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kinds = FloodKind::ALL.map(FloodKind::name).join(", ");
    let usage = || {
        eprintln!("usage: pal-flood KIND PACKETS [FILE]  (KIND: {kinds})");
        ExitCode::from(2)
    };
    let (Some(kind), Some(count)) = (args.first(), args.get(1)) else {
        return usage();
    };
    let Some(kind) = FloodKind::from_name(kind) else {
        eprintln!("pal-flood: unknown kind '{kind}'");
        return usage();
    };
    let Ok(count) = count.parse::<u64>() else {
        eprintln!("pal-flood: PACKETS must be a whole number, not '{count}'");
        return usage();
    };
    let out: Box<dyn Write> = match args.get(2).map(String::as_str) {
        None | Some("-") => Box::new(std::io::stdout().lock()),
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("pal-flood: cannot create {path}: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let written = write_pcap(kind, count, BufWriter::with_capacity(1 << 20, out))
        .map_err(|e| e.to_string())
        .and_then(|mut w| w.flush().map_err(|e| e.to_string()));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pal-flood: write error: {e}");
            ExitCode::from(1)
        }
    }
}
