//! Whole-process timing of the reader.
//!
//! `read_bench PATH pal` iterates every packet with `CaptureReader`, summing
//! `origlen`; `read_bench PATH bare` does the same with a bare pcap-parser
//! `LegacyPcapReader` loop (1 MiB buffer, classic pcap only).

use libpcap_tools::{CaptureReader, ReaderConfig};
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError};
use std::path::Path;
use std::process::ExitCode;

type BoxError = Box<dyn std::error::Error>;

fn pal(path: &Path) -> Result<(u64, u64), BoxError> {
    let mut r = CaptureReader::open(path, &ReaderConfig::default())?;
    let (mut n, mut sum) = (0u64, 0u64);
    while let Some(p) = r.next_packet()? {
        n += 1;
        sum += u64::from(p.origlen);
    }
    Ok((n, sum))
}

fn bare(path: &Path) -> Result<(u64, u64), BoxError> {
    let f = std::fs::File::open(path)?;
    let mut r = LegacyPcapReader::new(1 << 20, f).map_err(|e| format!("{e:?}"))?;
    let (mut n, mut sum) = (0u64, 0u64);
    loop {
        match r.next() {
            Ok((off, block)) => {
                if let PcapBlockOwned::Legacy(b) = block {
                    n += 1;
                    sum += u64::from(b.origlen);
                }
                r.consume(off);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => r.refill().map_err(|e| format!("{e:?}"))?,
            Err(e) => return Err(format!("{e:?}").into()),
        }
    }
    Ok((n, sum))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(mode)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: read_bench PATH pal|bare");
        return ExitCode::from(2);
    };
    let path = Path::new(path);
    let r = match mode.as_str() {
        "pal" => pal(path),
        "bare" => bare(path),
        _ => {
            eprintln!("mode must be pal or bare");
            return ExitCode::from(2);
        }
    };
    match r {
        Ok((n, sum)) => {
            println!("{mode}: {n} packets, {sum} bytes on the wire");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
