//! Capture filters in tcpdump syntax: the compiler seam, a per-link-type
//! filter, and a [`PacketSource`] decorator that filters any source.
//!
//! - [`FilterCompiler`] turns an expression into a [`BpfProgram`] for a
//!   link type. The real one is libpcap's own `pcap_compile`, loaded at run
//!   time by `libpcap-live` (`libpcap_live::libpcap::Libpcap`), so that the
//!   selection is exactly tcpdump's; this crate only runs the programs.
//! - [`PacketFilter`] holds one expression and compiles it lazily for each
//!   link type it meets (a pcapng file may mix link types across its
//!   interfaces). A link type whose compilation fails after the start
//!   (libpcap knows no filtering for it, or the expression makes no sense
//!   for it: `ether host` on raw IP) is warned about once; its packets do
//!   not match and are counted apart.
//! - [`FilteredSource`] wraps a [`PacketSource`] and hands on only the
//!   matching packets. Inline sources (NFQUEUE) get an accept verdict for
//!   every rejected packet: filtered-out traffic goes through unanalysed.
//!
//! Matching is [`BpfProgram::matches`]: the program runs on the captured
//! bytes, and `len`, `greater` and `less` look at the packet's length on the
//! wire (its original length), as in libpcap.

use crate::bpf::{BpfProgram, ProgramError};
use crate::{LinkType, Packet, PacketSource, SharedEvent, SourceEvent, SourceProgress, Verdict};
use polonius_the_crab::{ForLt, Placeholder, PoloniusResult, polonius};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a filter expression could not be turned into a program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// libpcap refused the expression for this link type (a syntax error,
    /// an unknown host or protocol name, a primitive the link type does not
    /// have, such as `ether host` on raw IP).
    #[error("invalid filter expression '{expr}' for link type {linktype}: {message}")]
    Expression {
        /// The expression.
        expr: String,
        /// The link type it was compiled for.
        linktype: LinkType,
        /// libpcap's message (`pcap_geterr`).
        message: String,
    },
    /// libpcap has no filtering for this link type at all (even the empty
    /// expression is refused).
    #[error("link type {linktype} cannot be filtered by libpcap: {message}")]
    UnsupportedLinkType {
        /// The link type.
        linktype: LinkType,
        /// libpcap's message.
        message: String,
    },
    /// The libpcap library could not be loaded, or lacks a function.
    #[error(
        "capture filters need the libpcap library, which could not be loaded ({reason}); \
         install it (Debian/Ubuntu: `apt install libpcap0.8`, Fedora/RHEL: `dnf install \
         libpcap`) or set PAL_LIBPCAP to the path of libpcap.so"
    )]
    LibraryMissing {
        /// What was tried and why it failed.
        reason: String,
    },
    /// The live interface a program was to be compiled for cannot be
    /// used (no such interface, a hardware type live capture does not
    /// support).
    #[error("interface '{interface}': {reason}")]
    Interface {
        /// The interface.
        interface: String,
        /// Why.
        reason: String,
    },
    /// The library failed in a way the other variants do not describe.
    #[error("libpcap: {0}")]
    Library(String),
    /// The compiler produced a program that does not pass validation.
    #[error("libpcap produced an invalid BPF program: {0}")]
    InvalidProgram(#[from] ProgramError),
}

/// A compiler of tcpdump filter expressions (see the [module docs](self)).
///
/// Implementations must be thread-safe: one compiler is shared by the
/// filters of all workers.
pub trait FilterCompiler: Send + Sync + fmt::Debug {
    /// Compiles `expr` for packets of link type `linktype`.
    ///
    /// # Errors
    /// [`FilterError::Expression`] for an expression the compiler refuses,
    /// [`FilterError::UnsupportedLinkType`] for a link type it cannot filter
    /// at all, or the compiler's own failure.
    fn compile(&self, linktype: LinkType, expr: &str) -> Result<BpfProgram, FilterError>;
}

/// What [`PacketFilter::check`] decided for a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterOutcome {
    /// The program accepts the packet.
    Match,
    /// The program rejects it.
    NoMatch,
    /// The expression could not be compiled for the packet's link type:
    /// it does not match.
    UnsupportedLinkType,
}

impl FilterOutcome {
    /// `true` for [`FilterOutcome::Match`].
    pub fn is_match(self) -> bool {
        self == FilterOutcome::Match
    }
}

/// Most link types one filter compiles programs for; packets of further
/// link types (only a hostile or very odd pcapng file has them) are
/// treated as of an unsupported link type, without calling the compiler.
pub const MAX_LINKTYPES: usize = 32;

/// The program of one link type, or why there is none.
#[derive(Debug, Clone)]
struct Entry {
    linktype: LinkType,
    program: Result<Arc<BpfProgram>, FilterError>,
    /// A failure was logged (once per link type and filter).
    warned: bool,
}

/// A filter expression with its programs, one per link type, compiled when
/// the link type is first met (see the [module docs](self)).
///
/// Cloning is cheap (the programs are shared); each worker may own a clone.
#[derive(Debug, Clone)]
pub struct PacketFilter {
    expr: String,
    compiler: Arc<dyn FilterCompiler>,
    /// The programs, or why compilation failed (the packets of that link
    /// type then do not match). At most [`MAX_LINKTYPES`] entries.
    programs: Vec<Entry>,
    /// The last link type looked up and its entry in `programs`.
    last: Option<(LinkType, usize)>,
}

impl PacketFilter {
    /// A filter for `expr`, compiled at once for each of `check_linktypes`,
    /// so that a bad expression is an error before anything starts (pass
    /// the link type of the input, or Ethernet when it is not known yet).
    ///
    /// # Errors
    /// The first compilation that fails.
    pub fn new(
        expr: &str,
        compiler: Arc<dyn FilterCompiler>,
        check_linktypes: &[LinkType],
    ) -> Result<PacketFilter, FilterError> {
        let mut f = PacketFilter {
            expr: expr.to_string(),
            compiler,
            programs: Vec::new(),
            last: None,
        };
        for &lt in check_linktypes {
            if f.programs.iter().any(|e| e.linktype == lt) {
                continue;
            }
            let p = f.compiler.compile(lt, expr)?;
            if f.programs.len() < MAX_LINKTYPES {
                f.programs.push(Entry {
                    linktype: lt,
                    program: Ok(Arc::new(p)),
                    warned: false,
                });
            }
        }
        Ok(f)
    }

    /// The expression.
    pub fn expression(&self) -> &str {
        &self.expr
    }

    /// The program for link type `linktype`, compiled now if it was not
    /// yet (a failure is remembered, and warned about once).
    ///
    /// # Errors
    /// Why the expression cannot be compiled for `linktype`;
    /// [`FilterError::UnsupportedLinkType`] past [`MAX_LINKTYPES`] link
    /// types.
    pub fn program(&mut self, linktype: LinkType) -> Result<&BpfProgram, FilterError> {
        let Some(i) = self.entry(linktype) else {
            return Err(FilterError::UnsupportedLinkType {
                linktype,
                message: format!("more than {MAX_LINKTYPES} link types in one input"),
            });
        };
        match self.programs.get(i).map(|e| &e.program) {
            Some(Ok(p)) => Ok(p),
            Some(Err(e)) => Err(e.clone()),
            None => Err(FilterError::Library("filter cache out of step".into())),
        }
    }

    /// The index in `programs` of `linktype`'s entry, compiling it if
    /// needed; `None` past [`MAX_LINKTYPES`].
    fn entry(&mut self, linktype: LinkType) -> Option<usize> {
        if let Some((lt, i)) = self.last
            && lt == linktype
        {
            return Some(i);
        }
        let i = match self.programs.iter().position(|e| e.linktype == linktype) {
            Some(i) => i,
            None => {
                if self.programs.len() >= MAX_LINKTYPES {
                    log::debug!(
                        "filter '{}': link type {linktype} is one more than the {MAX_LINKTYPES} \
                         link types a filter compiles for; its packets do not match",
                        self.expr
                    );
                    return None;
                }
                let program = self.compiler.compile(linktype, &self.expr).map(Arc::new);
                self.programs.push(Entry {
                    linktype,
                    program,
                    warned: false,
                });
                self.programs.len() - 1
            }
        };
        self.last = Some((linktype, i));
        Some(i)
    }

    /// Decides on one packet (see [`FilterOutcome`]).
    pub fn check(&mut self, packet: &Packet<'_>) -> FilterOutcome {
        let Some(entry) = self
            .entry(packet.linktype)
            .and_then(|i| self.programs.get_mut(i))
        else {
            return FilterOutcome::UnsupportedLinkType;
        };
        match &entry.program {
            Ok(p) if p.matches(packet) => FilterOutcome::Match,
            Ok(_) => FilterOutcome::NoMatch,
            Err(e) => {
                if !entry.warned {
                    entry.warned = true;
                    log::warn!(
                        "filter '{}' cannot apply to packets of link type {}, which do not \
                         match: {e}",
                        self.expr,
                        packet.linktype
                    );
                }
                FilterOutcome::UnsupportedLinkType
            }
        }
    }

    /// `true` when the packet matches.
    pub fn matches(&mut self, packet: &Packet<'_>) -> bool {
        self.check(packet).is_match()
    }
}

/// Counts of a filter's decisions, a plain snapshot of [`FilterCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct FilterCounts {
    /// Packets that matched (handed on).
    pub matched: u64,
    /// Packets the program rejected.
    pub rejected: u64,
    /// Packets of a link type the expression could not be compiled for
    /// (not in `rejected`).
    pub unsupported_linktype: u64,
}

impl FilterCounts {
    /// Every packet decided on.
    pub fn total(&self) -> u64 {
        self.matched
            .saturating_add(self.rejected)
            .saturating_add(self.unsupported_linktype)
    }

    fn add(&mut self, outcome: FilterOutcome) {
        match outcome {
            FilterOutcome::Match => self.matched += 1,
            FilterOutcome::NoMatch => self.rejected += 1,
            FilterOutcome::UnsupportedLinkType => self.unsupported_linktype += 1,
        }
    }
}

/// The filter counters of a run, shared by all its [`FilteredSource`]s
/// (one per worker with several live sources).
///
/// Sources publish their counts in batches (every
/// [`FilteredSource::PUBLISH_EVERY`] packets, at every idle tick, at the
/// end and when dropped), so a snapshot taken during the run may lag by
/// that much per source; after the sources ended or were dropped it is
/// exact.
#[derive(Debug, Default)]
pub struct FilterCounters {
    matched: AtomicU64,
    rejected: AtomicU64,
    unsupported_linktype: AtomicU64,
}

impl FilterCounters {
    /// New counters at zero, ready to be shared.
    pub fn new() -> Arc<FilterCounters> {
        Arc::new(FilterCounters::default())
    }

    /// The counts published so far.
    pub fn snapshot(&self) -> FilterCounts {
        FilterCounts {
            matched: self.matched.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            unsupported_linktype: self.unsupported_linktype.load(Ordering::Relaxed),
        }
    }

    /// Adds `c` to the counters.
    pub fn add(&self, c: FilterCounts) {
        if c.matched > 0 {
            self.matched.fetch_add(c.matched, Ordering::Relaxed);
        }
        if c.rejected > 0 {
            self.rejected.fetch_add(c.rejected, Ordering::Relaxed);
        }
        if c.unsupported_linktype > 0 {
            self.unsupported_linktype
                .fetch_add(c.unsupported_linktype, Ordering::Relaxed);
        }
    }
}

/// A [`PacketSource`] that hands on only the packets matching a
/// [`PacketFilter`] (see the [module docs](self)).
///
/// Every method of the trait is forwarded to the inner source: `name`,
/// `progress` (the inner source's: packets read, not only matched),
/// `warnings`, `is_live`, `can_share`, `is_inline`, `set_verdict`, and
/// `next_shared`, which filters like `next_event`. A rejected packet of an
/// inline source is given [`Verdict::Accept`] before the next one is read.
#[derive(Debug)]
pub struct FilteredSource<S: PacketSource> {
    inner: S,
    filter: PacketFilter,
    tally: Tally,
    inline: bool,
}

/// Most packets counted locally before the counts are published.
const PUBLISH_EVERY: u32 = 4096;

/// The counts of one source, published to the shared counters in batches.
#[derive(Debug)]
struct Tally {
    counters: Arc<FilterCounters>,
    /// Counts not yet published to `counters`.
    local: FilterCounts,
    unpublished: u32,
}

impl Tally {
    /// Adds the local counts to the shared counters.
    fn publish(&mut self) {
        if self.unpublished > 0 {
            self.counters.add(self.local);
            self.local = FilterCounts::default();
            self.unpublished = 0;
        }
    }

    /// Counts one decision, publishing every [`PUBLISH_EVERY`].
    fn count(&mut self, outcome: FilterOutcome) {
        self.local.add(outcome);
        self.unpublished += 1;
        if self.unpublished >= PUBLISH_EVERY {
            self.publish();
        }
    }
}

impl<S: PacketSource> FilteredSource<S> {
    /// Counts are published to the shared counters at least every this
    /// many packets.
    pub const PUBLISH_EVERY: u32 = PUBLISH_EVERY;

    /// Filters `inner` with `filter`, counting into `counters`.
    pub fn new(inner: S, filter: PacketFilter, counters: Arc<FilterCounters>) -> Self {
        let inline = inner.is_inline();
        FilteredSource {
            inner,
            filter,
            tally: Tally {
                counters,
                local: FilterCounts::default(),
                unpublished: 0,
            },
            inline,
        }
    }

    /// The shared counters.
    pub fn counters(&self) -> &Arc<FilterCounters> {
        &self.tally.counters
    }

    /// The filter.
    pub fn filter(&self) -> &PacketFilter {
        &self.filter
    }

    /// The wrapped source.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped source, mutably (reading packets from it directly
    /// bypasses the filter).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Records a rejected packet of index `index`: counted, and accepted
    /// unanalysed if the source is inline.
    fn reject(&mut self, index: u64, outcome: FilterOutcome) -> crate::Result<()> {
        self.tally.count(outcome);
        if self.inline {
            self.inner.set_verdict(index, Verdict::Accept)?;
        }
        Ok(())
    }
}

impl<S: PacketSource> Drop for FilteredSource<S> {
    fn drop(&mut self) {
        self.tally.publish();
    }
}

/// `next_event`'s result, as a lifetime-generic type for
/// [`polonius`]: the loop below returns a packet borrowed from the inner
/// source in one iteration and reads the next packet in another, which the
/// current borrow checker refuses without it.
type EventOf = ForLt!(crate::Result<SourceEvent<'_>>);
/// The same for `next_shared`.
type SharedOf = ForLt!(crate::Result<SharedEvent<'_>>);

impl<S: PacketSource> PacketSource for FilteredSource<S> {
    fn next_event(&mut self) -> crate::Result<SourceEvent<'_>> {
        let mut this = self;
        loop {
            let step = polonius::<_, _, EventOf>(this, |s| {
                let ev = s.inner.next_event();
                let outcome = match &ev {
                    Ok(SourceEvent::Packet(p)) => {
                        let o = s.filter.check(p);
                        if o.is_match() {
                            s.tally.count(o);
                            None
                        } else {
                            Some((p.index, o))
                        }
                    }
                    Ok(SourceEvent::Timeout { .. } | SourceEvent::End) => {
                        s.tally.publish();
                        None
                    }
                    Err(_) => None,
                };
                match outcome {
                    None => PoloniusResult::Borrowing(ev),
                    Some(rejected) => PoloniusResult::Owned {
                        value: rejected,
                        input_borrow: Placeholder,
                    },
                }
            });
            match step {
                PoloniusResult::Borrowing(ev) => return ev,
                PoloniusResult::Owned {
                    value: (index, outcome),
                    input_borrow,
                } => {
                    input_borrow.reject(index, outcome)?;
                    this = input_borrow;
                }
            }
        }
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn progress(&self) -> SourceProgress {
        self.inner.progress()
    }

    fn warnings(&self) -> &[crate::Error] {
        self.inner.warnings()
    }

    fn is_live(&self) -> bool {
        self.inner.is_live()
    }

    fn can_share(&self) -> bool {
        self.inner.can_share()
    }

    fn next_shared(&mut self) -> crate::Result<SharedEvent<'_>> {
        let mut this = self;
        loop {
            let step = polonius::<_, _, SharedOf>(this, |s| {
                let ev = s.inner.next_shared();
                let outcome = match &ev {
                    Ok(SharedEvent::Packet(p)) => {
                        let o = s.filter.check(&p.as_packet());
                        if o.is_match() {
                            s.tally.count(o);
                            None
                        } else {
                            Some((p.index, o))
                        }
                    }
                    Ok(SharedEvent::Timeout { .. } | SharedEvent::End) => {
                        s.tally.publish();
                        None
                    }
                    Err(_) => None,
                };
                match outcome {
                    None => PoloniusResult::Borrowing(ev),
                    Some(rejected) => PoloniusResult::Owned {
                        value: rejected,
                        input_borrow: Placeholder,
                    },
                }
            });
            match step {
                PoloniusResult::Borrowing(ev) => return ev,
                PoloniusResult::Owned {
                    value: (index, outcome),
                    input_borrow,
                } => {
                    input_borrow.reject(index, outcome)?;
                    this = input_borrow;
                }
            }
        }
    }

    fn is_inline(&self) -> bool {
        self.inner.is_inline()
    }

    fn set_verdict(&mut self, index: u64, verdict: Verdict) -> crate::Result<()> {
        self.inner.set_verdict(index, verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::{BpfInsn, op};
    use crate::{OwnedPacket, SharedPacket, Timestamp};
    use std::sync::Mutex;

    /// A compiler that knows two expressions: "udp" (IPv4 protocol 17 on
    /// Ethernet, or at offset 9 on raw IPv4) and "all"; it refuses link
    /// type 239 and any other expression, and counts its calls.
    #[derive(Debug, Default)]
    struct Toy {
        calls: Mutex<Vec<(LinkType, String)>>,
    }

    impl FilterCompiler for Toy {
        fn compile(&self, lt: LinkType, expr: &str) -> Result<BpfProgram, FilterError> {
            self.calls.lock().unwrap().push((lt, expr.to_string()));
            if lt == LinkType::NFLOG {
                return Err(FilterError::UnsupportedLinkType {
                    linktype: lt,
                    message: "not for NFLOG".into(),
                });
            }
            let off = match lt {
                LinkType::ETHERNET => 14 + 9,
                _ => 9,
            };
            let v = match expr {
                "udp" => vec![
                    BpfInsn::stmt(op::LD | op::B | op::ABS, off),
                    BpfInsn::jump(op::JMP | op::JEQ | op::K, 17, 0, 1),
                    BpfInsn::stmt(op::RET | op::K, 262_144),
                    BpfInsn::stmt(op::RET | op::K, 0),
                ],
                "all" => vec![BpfInsn::stmt(op::RET | op::K, 262_144)],
                _ => {
                    return Err(FilterError::Expression {
                        expr: expr.into(),
                        linktype: lt,
                        message: "syntax error".into(),
                    });
                }
            };
            Ok(BpfProgram::new(v)?)
        }
    }

    fn raw(index: u64, proto: u8) -> OwnedPacket {
        let mut d = vec![0x45u8; 20];
        d[9] = proto;
        OwnedPacket {
            index,
            interface: 0,
            linktype: LinkType::IPV4,
            ts: Some(Timestamp(index as i64)),
            origlen: 20,
            data: d,
        }
    }

    /// A source over owned packets, recording verdicts.
    #[derive(Debug)]
    struct Vecs {
        packets: Vec<OwnedPacket>,
        next: usize,
        inline: bool,
        verdicts: Vec<(u64, Verdict)>,
        chunk: Arc<Vec<u8>>,
        timeout_at: Option<usize>,
    }

    impl Vecs {
        fn new(packets: Vec<OwnedPacket>, inline: bool) -> Vecs {
            let chunk = Arc::new(packets.iter().flat_map(|p| p.data.clone()).collect());
            Vecs {
                packets,
                next: 0,
                inline,
                verdicts: Vec::new(),
                chunk,
                timeout_at: None,
            }
        }
    }

    impl PacketSource for Vecs {
        fn next_event(&mut self) -> crate::Result<SourceEvent<'_>> {
            if self.timeout_at == Some(self.next) {
                self.timeout_at = None;
                return Ok(SourceEvent::Timeout { now: Timestamp(0) });
            }
            let i = self.next;
            self.next += 1;
            Ok(match self.packets.get(i) {
                Some(p) => SourceEvent::Packet(p.as_packet()),
                None => SourceEvent::End,
            })
        }
        fn name(&self) -> &str {
            "vecs"
        }
        fn progress(&self) -> SourceProgress {
            SourceProgress {
                packets: self.next as u64,
                ..SourceProgress::default()
            }
        }
        fn warnings(&self) -> &[crate::Error] {
            &[]
        }
        fn is_live(&self) -> bool {
            self.inline
        }
        fn can_share(&self) -> bool {
            true
        }
        fn next_shared(&mut self) -> crate::Result<SharedEvent<'_>> {
            let i = self.next;
            self.next += 1;
            let Some(p) = self.packets.get(i) else {
                return Ok(SharedEvent::End);
            };
            let start: usize = self.packets[..i].iter().map(|p| p.data.len()).sum();
            Ok(SharedEvent::Packet(SharedPacket {
                index: p.index,
                interface: p.interface,
                linktype: p.linktype,
                ts: p.ts,
                origlen: p.origlen,
                chunk: &self.chunk,
                start,
                len: p.data.len(),
            }))
        }
        fn is_inline(&self) -> bool {
            self.inline
        }
        fn set_verdict(&mut self, index: u64, verdict: Verdict) -> crate::Result<()> {
            self.verdicts.push((index, verdict));
            Ok(())
        }
    }

    fn toy() -> Arc<Toy> {
        Arc::new(Toy::default())
    }

    #[test]
    fn a_bad_expression_fails_at_construction() {
        let e = PacketFilter::new("ud p", toy(), &[LinkType::ETHERNET]).unwrap_err();
        assert!(e.to_string().contains("syntax error"), "{e}");
        assert!(e.to_string().contains("'ud p'"), "{e}");
        // no link type to check: nothing compiled yet
        assert!(PacketFilter::new("ud p", toy(), &[]).is_ok());
    }

    #[test]
    fn programs_are_compiled_once_per_link_type_and_unsupported_ones_counted() {
        let c = toy();
        let mut f = PacketFilter::new("udp", c.clone(), &[LinkType::IPV4]).unwrap();
        assert_eq!(f.expression(), "udp");
        let u = raw(0, 17);
        let t = raw(1, 6);
        for _ in 0..3 {
            assert_eq!(f.check(&u.as_packet()), FilterOutcome::Match);
            assert_eq!(f.check(&t.as_packet()), FilterOutcome::NoMatch);
        }
        let mut eth = vec![0u8; 14 + 20];
        eth[23] = 17;
        let e = OwnedPacket {
            linktype: LinkType::ETHERNET,
            data: eth,
            origlen: 34,
            ..u.clone()
        };
        assert!(f.matches(&e.as_packet()));
        let n = OwnedPacket {
            linktype: LinkType::NFLOG,
            ..u.clone()
        };
        assert_eq!(f.check(&n.as_packet()), FilterOutcome::UnsupportedLinkType);
        assert_eq!(f.check(&n.as_packet()), FilterOutcome::UnsupportedLinkType);
        let e = f.program(LinkType::NFLOG).unwrap_err();
        assert!(e.to_string().contains("not for NFLOG"), "{e}");
        assert!(f.program(LinkType::IPV4).is_ok());
        // one compilation per link type, the failed one included
        let calls = c.calls.lock().unwrap().clone();
        assert_eq!(
            calls.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            vec![LinkType::IPV4, LinkType::ETHERNET, LinkType::NFLOG]
        );
        // a clone shares the programs already compiled
        let mut g = f.clone();
        assert!(g.matches(&u.as_packet()));
        assert_eq!(c.calls.lock().unwrap().len(), 3);
    }

    #[test]
    fn the_number_of_link_types_compiled_is_capped() {
        let c = toy();
        let mut f = PacketFilter::new("all", c.clone(), &[]).unwrap();
        for lt in 1000..1000 + MAX_LINKTYPES as u32 + 10 {
            let p = OwnedPacket {
                linktype: LinkType(lt),
                ..raw(0, 1)
            };
            let o = f.check(&p.as_packet());
            if lt < 1000 + MAX_LINKTYPES as u32 {
                assert_eq!(o, FilterOutcome::Match);
            } else {
                assert_eq!(o, FilterOutcome::UnsupportedLinkType);
            }
        }
        assert_eq!(c.calls.lock().unwrap().len(), MAX_LINKTYPES);
    }

    fn mixed() -> Vec<OwnedPacket> {
        (0..10u64)
            .map(|i| raw(i, if i % 3 == 0 { 17 } else { 6 }))
            .collect()
    }

    #[test]
    fn filtered_source_hands_on_only_matching_packets_and_counts() {
        let counters = FilterCounters::new();
        let f = PacketFilter::new("udp", toy(), &[LinkType::IPV4]).unwrap();
        let mut s = FilteredSource::new(Vecs::new(mixed(), false), f, counters.clone());
        let mut got = Vec::new();
        while let SourceEvent::Packet(p) = s.next_event().unwrap() {
            got.push(p.index);
            // not published yet: batched
            assert_eq!(counters.snapshot(), FilterCounts::default());
        }
        assert_eq!(got, vec![0, 3, 6, 9]);
        // published at End
        let c = counters.snapshot();
        assert_eq!((c.matched, c.rejected, c.unsupported_linktype), (4, 6, 0));
        assert_eq!(c.total(), 10);
        assert_eq!(s.name(), "vecs");
        assert_eq!(s.progress().packets, 11, "the inner source's progress");
        assert!(s.can_share());
        assert!(!s.is_inline());
        assert!(
            s.get_ref().verdicts.is_empty(),
            "no verdicts for a non-inline source"
        );
    }

    #[test]
    fn inline_source_gets_accept_for_every_rejected_packet() {
        let counters = FilterCounters::new();
        let f = PacketFilter::new("udp", toy(), &[LinkType::IPV4]).unwrap();
        let mut s = FilteredSource::new(Vecs::new(mixed(), true), f, counters.clone());
        assert!(s.is_inline());
        assert!(s.is_live());
        let mut got = Vec::new();
        while let SourceEvent::Packet(p) = s.next_event().unwrap() {
            let i = p.index;
            got.push(i);
            s.set_verdict(i, Verdict::Drop).unwrap();
        }
        assert_eq!(got, vec![0, 3, 6, 9]);
        let v = &s.get_ref().verdicts;
        let expect: Vec<(u64, Verdict)> = (0..10)
            .map(|i| {
                if i % 3 == 0 {
                    (i, Verdict::Drop)
                } else {
                    (i, Verdict::Accept)
                }
            })
            .collect();
        assert_eq!(v, &expect, "each packet one verdict, in order");
    }

    #[test]
    fn a_boxed_source_forwards_every_method() {
        let counters = FilterCounters::new();
        let f = PacketFilter::new("udp", toy(), &[LinkType::IPV4]).unwrap();
        let inner: Box<dyn PacketSource> = Box::new(Vecs::new(mixed(), true));
        let mut s = FilteredSource::new(inner, f, counters.clone());
        assert!(s.is_inline() && s.is_live() && s.can_share());
        assert_eq!(s.name(), "vecs");
        let mut got = Vec::new();
        while let SharedEvent::Packet(p) = s.next_shared().unwrap() {
            got.push(p.index);
        }
        assert_eq!(got, vec![0, 3, 6, 9]);
        assert_eq!(s.progress().packets, 11);
        assert!(s.warnings().is_empty());
        s.set_verdict(3, Verdict::Drop).unwrap();
    }

    #[test]
    fn shared_packets_are_filtered_too() {
        let counters = FilterCounters::new();
        let f = PacketFilter::new("udp", toy(), &[LinkType::IPV4]).unwrap();
        let mut s = FilteredSource::new(Vecs::new(mixed(), false), f, counters.clone());
        let mut got = Vec::new();
        while let SharedEvent::Packet(p) = s.next_shared().unwrap() {
            assert_eq!(p.data().get(9), Some(&17));
            got.push(p.index);
        }
        assert_eq!(got, vec![0, 3, 6, 9]);
        assert_eq!(counters.snapshot().rejected, 6);
    }

    #[test]
    fn counts_are_published_on_timeouts_every_batch_and_on_drop() {
        let counters = FilterCounters::new();
        let f = PacketFilter::new("udp", toy(), &[LinkType::IPV4]).unwrap();
        let mut inner = Vecs::new(mixed(), false);
        inner.timeout_at = Some(4);
        let mut s = FilteredSource::new(inner, f.clone(), counters.clone());
        loop {
            if let SourceEvent::Timeout { .. } = s.next_event().unwrap() {
                break;
            }
        }
        // packets 0..4 decided: 0 and 3 matched
        assert_eq!(counters.snapshot().matched, 2);
        assert_eq!(counters.snapshot().rejected, 2);
        let _ = s.next_event().unwrap(); // rejects 4, 5, delivers 6
        drop(s);
        assert_eq!(counters.snapshot().total(), 7);

        // a long run publishes every PUBLISH_EVERY packets
        let counters = FilterCounters::new();
        let n = 2 * FilteredSource::<Vecs>::PUBLISH_EVERY as u64 + 5;
        let many: Vec<_> = (0..n).map(|i| raw(i, 17)).collect();
        let mut s = FilteredSource::new(Vecs::new(many, false), f, counters.clone());
        for _ in 0..FilteredSource::<Vecs>::PUBLISH_EVERY {
            assert!(matches!(s.next_event().unwrap(), SourceEvent::Packet(_)));
        }
        assert_eq!(
            counters.snapshot().matched,
            u64::from(FilteredSource::<Vecs>::PUBLISH_EVERY)
        );
        assert_eq!(
            s.get_ref().next,
            FilteredSource::<Vecs>::PUBLISH_EVERY as usize
        );
    }

    #[test]
    fn several_sources_share_one_set_of_counters() {
        let counters = FilterCounters::new();
        let f = PacketFilter::new("udp", toy(), &[LinkType::IPV4]).unwrap();
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let mut s =
                    FilteredSource::new(Vecs::new(mixed(), false), f.clone(), counters.clone());
                std::thread::spawn(move || while s.next_event().unwrap() != SourceEvent::End {})
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let c = counters.snapshot();
        assert_eq!((c.matched, c.rejected), (12, 18));
    }

    #[test]
    fn unsupported_link_types_do_not_match_and_are_counted_apart() {
        let counters = FilterCounters::new();
        let f = PacketFilter::new("udp", toy(), &[LinkType::IPV4]).unwrap();
        let mut v = mixed();
        v[3].linktype = LinkType::NFLOG;
        let mut s = FilteredSource::new(Vecs::new(v, false), f, counters.clone());
        let mut got = Vec::new();
        while let SourceEvent::Packet(p) = s.next_event().unwrap() {
            got.push(p.index);
        }
        assert_eq!(got, vec![0, 6, 9]);
        let c = counters.snapshot();
        assert_eq!((c.matched, c.rejected, c.unsupported_linktype), (3, 6, 1));
    }
}
