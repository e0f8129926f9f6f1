//! The rewriting pipeline: read, convert, filter, write.

use crate::convert::{ConvertConfig, Converter, Skip};
use crate::filter::{Decision, FilterSet, FlowTuple, Matcher, Subject};
use crate::frag::{FragConfig, FragResolver, OrphanPolicy, Pending, Resolution};
use crate::key::PacketKey;
use crate::output::{OutputConfig, OutputFormat, Outputs, SplitBy, SplitConfig};
use crate::{Error, Result};
use libpcap_tools::outfile::{Inputs, OutputPlan};
use libpcap_tools::{
    CaptureFormat, CaptureReader, Endianness, FilterOutcome, InterfaceInfo, InterfaceSpec,
    LinkType, Packet, PacketFilter, ReaderConfig,
};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Everything a rewrite does besides choosing its input and output.
#[derive(Debug, Clone)]
pub struct Options {
    /// Output format; `None` keeps the input's (classic pcap keeps its
    /// timestamp resolution and byte order).
    pub output_format: Option<OutputFormat>,
    /// Link-layer changes and checksum fixing.
    pub convert: ConvertConfig,
    /// Keep/drop rules.
    pub filter: FilterSet,
    /// A capture filter in tcpdump syntax (`--filter`): a packet is written
    /// only if it matches it *and* the keep/drop rules. It is evaluated on
    /// the packet as read, for the input's link type (before any
    /// re-framing), as `tcpdump -r` would.
    pub bpf: Option<PacketFilter>,
    /// Fragment buffering limits.
    pub frag: FragConfig,
    /// Split mode, the most files open at once and the most files created.
    pub split: Option<SplitConfig>,
    /// Reader settings.
    pub reader: ReaderConfig,
    /// Write buffer size per output file.
    pub write_buffer: usize,
    /// Other files the rewrite reads (key files): like the input, no output
    /// may be one of them.
    pub other_inputs: Vec<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            output_format: None,
            convert: ConvertConfig::default(),
            filter: FilterSet::default(),
            bpf: None,
            frag: FragConfig::default(),
            split: None,
            reader: ReaderConfig::default(),
            write_buffer: 1 << 20,
            other_inputs: Vec::new(),
        }
    }
}

/// What a rewrite did (printed on stderr by the binary, and written by
/// `--stats-json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Input path.
    pub input: String,
    /// Output path (a directory in split mode).
    pub output: String,
    /// Packets read from the input.
    pub packets_read: u64,
    /// Packets written.
    pub packets_written: u64,
    /// Packets dropped by the filters (orphan fragments and packets the
    /// `--filter` expression rejected included).
    pub dropped_by_filter: u64,
    /// Packets the `--filter` expression rejected (part of
    /// `dropped_by_filter`).
    pub bpf_rejected: u64,
    /// Packets of a link type the `--filter` expression could not be
    /// compiled for (they do not match; part of `dropped_by_filter`).
    pub bpf_unsupported_linktype: u64,
    /// Packets skipped because their headers could not be decoded for the
    /// requested conversion.
    pub skipped_unreadable: u64,
    /// Packets skipped because the target link type cannot hold them (e.g.
    /// ARP to raw IP).
    pub skipped_unconvertible: u64,
    /// Packets the output format cannot hold (a timestamp outside
    /// 1970-2106 in classic pcap, a packet without timestamp on a pcapng
    /// interface other than the first).
    pub skipped_unwritable: u64,
    /// Packets written to a microsecond pcap whose timestamp had a finer
    /// part, which was truncated (use `pcap-ns` or `pcapng` to keep it).
    pub timestamps_truncated: u64,
    /// Captured bytes read (packet data only).
    pub bytes_read: u64,
    /// Captured bytes written (packet data only).
    pub bytes_written: u64,
    /// Packets decapsulated (`--decap`).
    pub decapsulated: u64,
    /// Packets that `--decap` found not to be tunnels (kept as they are).
    pub not_tunneled: u64,
    /// Packets whose checksums were recomputed.
    pub checksums_fixed: u64,
    /// Most fragments buffered at once while waiting for a first fragment.
    pub fragments_buffered_peak: u64,
    /// Fragments that waited and then got the decision of their datagram.
    pub fragments_resolved_late: u64,
    /// Fragments whose first fragment never came.
    pub orphan_fragments: u64,
    /// Datagrams whose first-fragment ports were forgotten before the
    /// timeout because the most datagrams remembered was reached.
    pub fragment_ports_forgotten: u64,
    /// Most entries held at once in the fragment resolver's expiry queues
    /// (bounded by count even without timestamps, see
    /// [`FragConfig::max_order_entries`]).
    pub fragment_order_entries_peak: u64,
    /// Output files created.
    pub files_written: u64,
    /// Split files closed and reopened because of the open-file cap.
    pub files_reopened: u64,
    /// Packets written to the split overflow file because their flow or key
    /// came after the cap on split files was reached.
    pub split_overflow_packets: u64,
    /// The input error that ended reading early (truncated or corrupt
    /// input); everything before it was processed and written.
    pub input_error: Option<String>,
}

/// An input interface and its output interfaces, per output link type.
struct InIface {
    info: InterfaceInfo,
    outs: Vec<(LinkType, u32)>,
}

struct Run<'f> {
    conv: Converter,
    filter: Matcher<'f>,
    /// The `--filter` expression, and whether it was checked against the
    /// link type of the first packet.
    bpf: Option<PacketFilter>,
    bpf_checked: bool,
    needs_key: bool,
    resolver: Option<FragResolver>,
    out: Outputs,
    in_ifaces: HashMap<(u32, u32), InIface>,
    /// The last (input interface, output link type) and its output
    /// interface: consecutive packets mostly share them, and the map lookups
    /// (two hashes per packet) are skipped then. Entries of `in_ifaces` are
    /// never removed nor their output interfaces changed, so it stays valid.
    last_iface: Option<((u32, u32), LinkType, u32)>,
    stats: Summary,
    released: Vec<(Pending, bool)>,
    /// Scratch for the split label of a packet.
    label: String,
}

/// The files no output of a rewrite may be: `input` and
/// [`Options::other_inputs`].
///
/// # Errors
/// [`Error::Usage`] when one of them cannot be examined.
pub fn protected_inputs(input: &Path, opts: &Options) -> Result<Inputs> {
    let mut inputs = Inputs::new();
    for (what, p) in std::iter::once(("input", input))
        .chain(opts.other_inputs.iter().map(|p| ("key file", p.as_path())))
    {
        inputs.add(what, p).map_err(|e| {
            Error::Usage(format!(
                "cannot examine '{}': {}",
                p.display(),
                libpcap_tools::error_text(&e)
            ))
        })?;
    }
    Ok(inputs)
}

/// Checks `output` against the inputs ([`protected_inputs`]), before
/// anything is written: a single output may not be an input (the same
/// file through a hard link, a symlink or another spelling).
///
/// # Errors
/// [`Error::Usage`] naming both paths.
pub fn check_output(input: &Path, output: &Path, opts: &Options) -> Result<Inputs> {
    let inputs = protected_inputs(input, opts)?;
    if opts.split.is_none() {
        let mut plan = OutputPlan::new(inputs.clone());
        plan.add("output", output)
            .map_err(|e| Error::Usage(e.to_string()))?;
    }
    Ok(inputs)
}

/// Rewrites `input` into `output` (a file, `-` for standard output, or a
/// directory in split mode). Every output file is written as a temporary
/// and renamed into place at the end ([`crate::output`]); none may be an
/// input ([`check_output`]).
///
/// # Errors
/// [`Error::Usage`] when the output is an input (before anything is
/// written); [`Error::Input`] if the input cannot be opened or is not a capture;
/// [`Error::Filter`] if the `--filter` expression cannot be compiled for the
/// input's first link type (before any output is written); output errors.
/// An input that ends early or is damaged after its header is
/// not an error: the summary's `input_error` says so.
pub fn rewrite(input: &Path, output: &Path, opts: &Options) -> Result<Summary> {
    let mut reader = CaptureReader::open(input, &opts.reader).map_err(|source| Error::Input {
        path: input.to_path_buf(),
        source,
    })?;
    rewrite_reader(&mut reader, input, output, opts)
}

/// As [`rewrite`], on an open reader (`input` names it in messages).
///
/// # Errors
/// As [`rewrite`].
pub fn rewrite_reader(
    reader: &mut CaptureReader,
    input: &Path,
    output: &Path,
    opts: &Options,
) -> Result<Summary> {
    let protected = check_output(input, output, opts)?;
    // the --filter expression must compile for the input's link type
    // before any output is created (for a pcapng input
    // whose first interface is not described yet: at its first packet) (a bad expression is a usage error)
    let mut bpf = opts.bpf.clone();
    let mut bpf_checked = false;
    if let Some(f) = &mut bpf {
        let first = reader
            .linktype()
            .or_else(|| reader.interfaces().first().map(|i| i.linktype));
        if let Some(lt) = first {
            f.program(lt)?;
            bpf_checked = true;
        }
    }
    let section = Arc::new(AtomicU32::new(0));
    let sec = section.clone();
    reader.set_block_callback(Box::new(move |b| sec.store(b.section, Ordering::Relaxed)));

    let (format, big_endian) = match (opts.output_format, reader.format()) {
        (Some(f), CaptureFormat::Pcap { endianness, .. }) => (f, endianness == Endianness::Big),
        (Some(f), CaptureFormat::PcapNg) => (f, false),
        (
            None,
            CaptureFormat::Pcap {
                endianness, nanos, ..
            },
        ) => (
            if nanos {
                OutputFormat::PcapNs
            } else {
                OutputFormat::Pcap
            },
            endianness == Endianness::Big,
        ),
        (None, CaptureFormat::PcapNg) => (OutputFormat::PcapNg, false),
    };
    let ocfg = OutputConfig {
        format,
        big_endian,
        snaplen: reader.snaplen().filter(|&s| s != 0).unwrap_or(262_144),
        buffer_size: opts.write_buffer.max(4096),
    };
    let out = match opts.split {
        // many files may be open: smaller buffers each
        Some(split) => Outputs::split(
            output,
            split,
            OutputConfig {
                buffer_size: ocfg.buffer_size.min(64 << 10),
                ..ocfg
            },
        )?,
        None => Outputs::single(output, ocfg),
    };
    let mut out = out;
    out.protect(protected);
    let split_flow = opts.split.is_some_and(|s| s.by == SplitBy::Flow);
    let needs_ports = opts.filter.needs_ports() || split_flow;
    let mut run = Run {
        conv: Converter::new(opts.convert),
        filter: opts.filter.matcher(),
        bpf,
        bpf_checked,
        needs_key: opts.filter.needs_key() || split_flow,
        resolver: needs_ports.then(|| FragResolver::new(opts.frag)),
        out,
        in_ifaces: HashMap::new(),
        last_iface: None,
        stats: Summary {
            input: input.display().to_string(),
            output: output.display().to_string(),
            ..Summary::default()
        },
        released: Vec::new(),
        label: String::new(),
    };

    let mut cur_section = None;
    loop {
        match reader.next_packet() {
            Ok(Some(p)) => {
                if !run.bpf_checked {
                    // a pcapng input whose first interface was not described
                    // yet when the reader opened: the first packet's
                    if let Some(f) = &mut run.bpf {
                        f.program(p.linktype)?;
                    }
                    run.bpf_checked = true;
                }
                let k = (section.load(Ordering::Relaxed), p.interface);
                if run.last_iface.is_some_and(|(lk, ..)| lk == k) || run.in_ifaces.contains_key(&k)
                {
                    run.process(p, k)?;
                } else {
                    let owned = p.to_owned();
                    let infos = reader.interfaces();
                    if cur_section != Some(k.0) {
                        // a new input section: pcapng output mirrors it, and
                        // declares its interfaces in the input's order
                        if cur_section.is_some() {
                            run.out.new_section()?;
                        }
                        cur_section = Some(k.0);
                        let mut gids = Vec::new();
                        for i in &infos {
                            let ik = (k.0, i.id);
                            if !run.in_ifaces.contains_key(&ik) {
                                run.register(ik, &infos, i.linktype);
                            }
                            let lt = run.conv.output_linktype(i.linktype);
                            gids.push(run.out_iface(ik, lt));
                        }
                        run.out.declare_interfaces(&gids)?;
                    }
                    if !run.in_ifaces.contains_key(&k) {
                        run.register(k, &infos, owned.linktype);
                    }
                    run.process(owned.as_packet(), k)?;
                }
            }
            Ok(None) => break,
            Err(e) => {
                run.stats.input_error = Some(e.to_string());
                break;
            }
        }
    }
    // an input without packets: the expression must still be valid
    if !run.bpf_checked
        && let Some(f) = &mut run.bpf
    {
        f.program(LinkType::ETHERNET)?;
    }
    // orphans still waiting at the end
    if let Some(r) = &mut run.resolver {
        r.finish(&mut run.released);
    }
    run.flush_released()?;

    // a capture without packets still gets its interfaces
    if run.in_ifaces.is_empty() {
        let infos = reader.interfaces();
        for i in &infos {
            run.register((i.section, i.id), &infos, i.linktype);
            let lt = run.conv.output_linktype(i.linktype);
            run.out_iface((i.section, i.id), lt);
        }
    }
    let fallback = reader
        .linktype()
        .or_else(|| reader.interfaces().first().map(|i| i.linktype))
        .map_or(LinkType::ETHERNET, |lt| run.conv.output_linktype(lt));
    let Run {
        conv,
        resolver,
        out,
        mut stats,
        ..
    } = run;
    stats.files_reopened = out.files_reopened;
    stats.split_overflow_packets = out.overflow_packets;
    stats.files_written = out.finish(fallback)?;
    stats.decapsulated = conv.decapsulated;
    stats.not_tunneled = conv.not_tunneled;
    stats.checksums_fixed = conv.checksums_fixed;
    if let Some(r) = resolver {
        stats.fragments_buffered_peak = r.peak_buffered as u64;
        stats.fragments_resolved_late = r.resolved_late;
        stats.orphan_fragments = r.orphans;
        stats.fragment_ports_forgotten = r.ports_forgotten;
        stats.fragment_order_entries_peak = r.peak_order_entries as u64;
    }
    Ok(stats)
}

impl Run<'_> {
    fn register(&mut self, k: (u32, u32), infos: &[InterfaceInfo], linktype: LinkType) {
        let info = infos
            .iter()
            .find(|i| i.id == k.1)
            .cloned()
            .unwrap_or(InterfaceInfo {
                section: k.0,
                id: k.1,
                linktype,
                snaplen: 0,
                name: None,
                tsresol: 9,
                tsoffset: 0,
            });
        self.in_ifaces.insert(
            k,
            InIface {
                info,
                outs: Vec::new(),
            },
        );
    }

    /// The global output interface of input interface `k` for link type `lt`.
    fn out_iface(&mut self, k: (u32, u32), lt: LinkType) -> u32 {
        out_iface(&mut self.in_ifaces, &mut self.out, k, lt)
    }

    fn process(&mut self, p: Packet<'_>, k: (u32, u32)) -> Result<()> {
        self.stats.packets_read += 1;
        self.stats.bytes_read += p.data.len() as u64;
        // the capture filter first, on the packet as read
        let bpf_ok = match self.bpf.as_mut().map(|f| f.check(&p)) {
            None | Some(FilterOutcome::Match) => true,
            Some(FilterOutcome::NoMatch) => {
                self.stats.bpf_rejected += 1;
                false
            }
            Some(FilterOutcome::UnsupportedLinkType) => {
                self.stats.bpf_unsupported_linktype += 1;
                false
            }
        };
        // a rejected packet still goes through the fragment resolver (a
        // first fragment teaches the ports of its datagram, and the clock
        // moves on), unless there is none
        if !bpf_ok && self.resolver.is_none() {
            self.stats.dropped_by_filter += 1;
            return Ok(());
        }
        let Run {
            conv,
            filter,
            needs_key,
            resolver,
            out,
            in_ifaces,
            last_iface,
            stats,
            released,
            label,
            ..
        } = self;
        let (cp, l3) = match conv.convert_located(p) {
            Ok(located) => located,
            Err(_) if !bpf_ok => {
                stats.dropped_by_filter += 1;
                return Ok(());
            }
            Err(Skip::Unreadable(why)) => {
                log::debug!("packet {}: skipped, unreadable: {why}", p.index + 1);
                stats.skipped_unreadable += 1;
                return Ok(());
            }
            Err(Skip::Unconvertible(why)) => {
                log::debug!("packet {}: skipped, not convertible: {why}", p.index + 1);
                stats.skipped_unconvertible += 1;
                return Ok(());
            }
        };
        let gid = match *last_iface {
            Some((lk, lt, gid)) if lk == k && lt == cp.linktype => gid,
            _ => {
                let gid = out_iface(in_ifaces, out, k, cp.linktype);
                *last_iface = Some((k, cp.linktype, gid));
                gid
            }
        };
        let mut key = None;
        if *needs_key {
            // the converter may have decoded the link layer already
            key = match l3 {
                Some(l3) => cp
                    .data
                    .get(l3.offset..)
                    .and_then(|d| PacketKey::from_network(l3.ethertype, d)),
                None => PacketKey::from_frame(cp.linktype, cp.data),
            };
            if let (Some(r), Some(mut kk)) = (resolver.as_mut(), key) {
                if !bpf_ok {
                    // never buffered: it will not be written
                    kk.frag = kk.frag.filter(|f| f.first);
                }
                match r.resolve(kk, cp.ts, || (cp.to_owned(), gid), released) {
                    Resolution::Ready(kk) => key = Some(kk),
                    Resolution::Buffered => {
                        // released fragments (orphans made room) go out now
                        let policy = r.orphan_policy();
                        return emit_released(filter, out, stats, label, policy, released);
                    }
                }
            }
        }
        let policy = resolver
            .as_ref()
            .map_or(OrphanPolicy::Evaluate, FragResolver::orphan_policy);
        emit_released(filter, out, stats, label, policy, released)?;
        if !bpf_ok {
            stats.dropped_by_filter += 1;
            return Ok(());
        }
        emit(
            filter,
            out,
            stats,
            label,
            policy,
            &cp,
            key.as_ref(),
            gid,
            false,
        )
    }

    fn flush_released(&mut self) -> Result<()> {
        let policy = self
            .resolver
            .as_ref()
            .map_or(OrphanPolicy::Evaluate, FragResolver::orphan_policy);
        for (pend, orphan) in self.released.drain(..) {
            emit(
                &self.filter,
                &mut self.out,
                &mut self.stats,
                &mut self.label,
                policy,
                &pend.packet.as_packet(),
                Some(&pend.key),
                pend.tag,
                orphan,
            )?;
        }
        Ok(())
    }
}

fn out_iface(
    in_ifaces: &mut HashMap<(u32, u32), InIface>,
    out: &mut Outputs,
    k: (u32, u32),
    lt: LinkType,
) -> u32 {
    let Some(ii) = in_ifaces.get_mut(&k) else {
        return out.add_interface(InterfaceSpec::new(lt));
    };
    if let Some(&(_, id)) = ii.outs.iter().find(|(l, _)| *l == lt) {
        return id;
    }
    let spec = InterfaceSpec {
        linktype: lt,
        snaplen: ii.info.snaplen,
        tsresol: ii.info.tsresol,
        tsoffset: ii.info.tsoffset,
        name: ii.info.name.clone(),
    };
    let id = out.add_interface(spec);
    ii.outs.push((lt, id));
    id
}

/// Decides on one packet and writes it if kept (`name` is scratch for the
/// split label).
/// Emits the fragments the resolver released, in order.
fn emit_released(
    filter: &Matcher<'_>,
    out: &mut Outputs,
    stats: &mut Summary,
    name: &mut String,
    policy: OrphanPolicy,
    released: &mut Vec<(Pending, bool)>,
) -> Result<()> {
    for (pend, orphan) in released.drain(..) {
        emit(
            filter,
            out,
            stats,
            name,
            policy,
            &pend.packet.as_packet(),
            Some(&pend.key),
            pend.tag,
            orphan,
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)] // the pieces of the run, borrowed separately
fn emit(
    filter: &Matcher<'_>,
    out: &mut Outputs,
    stats: &mut Summary,
    name: &mut String,
    policy: OrphanPolicy,
    p: &Packet<'_>,
    key: Option<&PacketKey>,
    gid: u32,
    orphan: bool,
) -> Result<()> {
    let subject = Subject {
        key,
        ts: p.ts,
        index: p.index,
    };
    let decision = match (orphan, policy) {
        // "keep" overrides the rules on addresses and ports, not the time
        // window and index range that every packet must meet
        (true, OrphanPolicy::Keep) if filter.filter().meets_requirements(&subject) => {
            Decision::Keep(None)
        }
        (true, OrphanPolicy::Keep | OrphanPolicy::Drop) => Decision::Drop,
        _ => filter.decide(&subject),
    };
    let label = match decision {
        Decision::Drop => {
            stats.dropped_by_filter += 1;
            return Ok(());
        }
        Decision::Keep(label) => label,
    };
    // the split label, written into the reused buffer (a String is a
    // fmt::Write that cannot fail)
    name.clear();
    let _ = match out.split_by() {
        None => Ok(()),
        Some(SplitBy::Key) => match label {
            Some(l) => write!(name, "{l}"),
            None => write!(name, "unmatched"),
        },
        Some(SplitBy::Flow) => match key {
            Some(k) => match FlowTuple::of(k) {
                Some(t) => write!(name, "{t}"),
                None => {
                    let (a, b) = if k.src <= k.dst {
                        (k.src, k.dst)
                    } else {
                        (k.dst, k.src)
                    };
                    write!(name, "proto{}_{a}_{b}", k.proto)
                }
            },
            None => write!(name, "non-ip"),
        },
        Some(SplitBy::Time(secs)) => match p.ts {
            Some(t) => write_period(name, t.as_nanos().div_euclid(1_000_000_000), secs),
            None => write!(name, "no-time"),
        },
        Some(SplitBy::Size(bytes)) => {
            write!(name, "part-{:06}", stats.bytes_written / bytes.max(1))
        }
    };
    match out.write(p, gid, name) {
        Ok(()) => {}
        Err(Error::Output {
            source: libpcap_tools::Error::Unwritable { index, reason },
            ..
        }) => {
            log::debug!("packet {}: skipped, not writable: {reason}", index + 1);
            stats.skipped_unwritable += 1;
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    stats.packets_written += 1;
    stats.bytes_written += p.data.len() as u64;
    if out.format() == OutputFormat::Pcap && p.ts.is_some_and(|t| t.subsec_nanos() % 1000 != 0) {
        stats.timestamps_truncated += 1;
    }
    Ok(())
}

/// Writes the name of the `secs`-second period holding second `t` (since
/// the epoch): its start as `YYYYMMDDTHHMMSSZ` (UTC).
fn write_period(name: &mut String, t: i64, secs: u64) -> std::fmt::Result {
    let secs = i64::try_from(secs.max(1)).unwrap_or(i64::MAX);
    let start = t.div_euclid(secs).saturating_mul(secs);
    let (days, rem) = (start.div_euclid(86_400), start.rem_euclid(86_400));
    // civil date of a day number (H. Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    write!(
        name,
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod period_tests {
    use super::write_period;

    fn period(t: i64, secs: u64) -> String {
        let mut s = String::new();
        write_period(&mut s, t, secs).unwrap();
        s
    }

    #[test]
    fn period_names_are_utc_starts() {
        // `date -u -d @1700006100` = 2023-11-14 23:55:00
        assert_eq!(period(1_700_006_100, 75), "20231114T235500Z");
        assert_eq!(period(1_700_006_174, 75), "20231114T235500Z");
        assert_eq!(period(1_700_006_175, 75), "20231114T235615Z");
        // crossing midnight, and a leap day
        assert_eq!(period(1_700_006_400, 3600), "20231115T000000Z");
        assert_eq!(period(951_782_400, 86_400), "20000229T000000Z");
        assert_eq!(period(0, 1), "19700101T000000Z");
        assert_eq!(period(-1, 1), "19691231T235959Z");
    }
}
