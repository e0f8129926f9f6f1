//! `-f/--filter EXPR`: a capture filter in tcpdump's language, compiled by
//! libpcap ([`libpcap_live::libpcap`]) and applied where it costs least:
//!
//! - `-i`: the program tcpdump would attach on that interface is attached
//!   in the kernel to every socket of the capture, before its ring is
//!   bound: frames that do not match are never copied (the kernel's ring
//!   counters count only the others);
//! - files and standard input: each packet goes through the program of its
//!   link type ([`FilteredSource`]), with `tcpdump -r`'s semantics;
//! - `--nfqueue`: the same on the raw IP packets, and those that do not
//!   match are accepted unanalysed.
//!
//! The expression is checked before any input or output is opened: a bad
//! one is a usage error naming libpcap's complaint (exit code 2); a missing
//! libpcap is an error naming the package to install (exit code 1).

use crate::UsageError;
use anyhow::Result;
use libpcap_live::libpcap::Libpcap;
use libpcap_tools::{
    BpfProgram, CaptureReader, FilterCounters, FilterError, FilteredSource, LinkType, PacketFilter,
    PacketSource, ReaderConfig,
};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the packets come from, for the compile.
#[derive(Debug)]
pub(crate) enum Target<'a> {
    /// Capture files (`-` for standard input).
    Files(&'a [PathBuf], &'a ReaderConfig),
    /// A live interface (kernel program).
    Interface(&'a str),
    /// NFQUEUE queues (raw IPv4/IPv6 packets).
    Nfqueue,
}

/// A compiled capture filter.
#[derive(Debug)]
pub(crate) struct CaptureFilter {
    expr: String,
    /// The programs for user-space matching (files, NFQUEUE).
    user: Option<PacketFilter>,
    /// The program for the kernel (`-i`).
    kernel: Option<BpfProgram>,
    counters: Arc<FilterCounters>,
}

/// A filter error as the tool reports it.
fn cli_error(e: FilterError) -> anyhow::Error {
    match e {
        FilterError::Expression { .. } | FilterError::UnsupportedLinkType { .. } => {
            UsageError(format!("--filter: {e}")).into()
        }
        other => anyhow::anyhow!("--filter: {other}"),
    }
}

/// The link types of the first packets of the files (standard input is
/// not read ahead).
fn first_linktypes(files: &[PathBuf], cfg: &ReaderConfig) -> Vec<LinkType> {
    let mut out = Vec::new();
    for p in files.iter().filter(|p| p.as_os_str() != "-") {
        let Ok(mut r) = CaptureReader::open(p, cfg) else {
            continue;
        };
        let lt = match r.linktype() {
            Some(lt) => Some(lt),
            None => r.next_packet().ok().flatten().map(|p| p.linktype),
        };
        if let Some(lt) = lt
            && !out.contains(&lt)
        {
            out.push(lt);
        }
    }
    out
}

impl CaptureFilter {
    /// Compiles `expr` for `target`.
    ///
    /// # Errors
    /// A [`UsageError`] for an expression libpcap refuses; an error when
    /// libpcap cannot be loaded or the interface cannot be read.
    pub(crate) fn new(expr: &str, target: Target<'_>) -> Result<CaptureFilter> {
        let libpcap = Arc::new(Libpcap::load().map_err(cli_error)?);
        let counters = FilterCounters::new();
        let (user, kernel) = match target {
            Target::Interface(iface) => (
                None,
                Some(
                    libpcap
                        .compile_for_interface(iface, expr)
                        .map_err(cli_error)?,
                ),
            ),
            Target::Nfqueue => (
                Some(
                    PacketFilter::new(expr, libpcap, &[LinkType::IPV4, LinkType::IPV6])
                        .map_err(cli_error)?,
                ),
                None,
            ),
            Target::Files(files, cfg) => {
                let mut seen = first_linktypes(files, cfg);
                if seen.is_empty() {
                    // only standard input: the syntax is checked for
                    // Ethernet; another link type is checked at its first
                    // packet
                    seen.push(LinkType::ETHERNET);
                }
                (
                    Some(PacketFilter::new(expr, libpcap, &seen).map_err(cli_error)?),
                    None,
                )
            }
        };
        Ok(CaptureFilter {
            expr: expr.to_string(),
            user,
            kernel,
            counters,
        })
    }

    /// The program to attach in the kernel (`-i`).
    pub(crate) fn kernel_program(&self) -> Option<&BpfProgram> {
        self.kernel.as_ref()
    }

    /// `source` behind the filter (user-space matching), or as it is for a
    /// kernel filter.
    pub(crate) fn wrap(&self, source: Box<dyn PacketSource>) -> Box<dyn PacketSource> {
        match &self.user {
            Some(f) => Box::new(FilteredSource::new(
                source,
                f.clone(),
                self.counters.clone(),
            )),
            None => source,
        }
    }

    /// The `filter` object of the summary.
    pub(crate) fn json(&self) -> serde_json::Value {
        if self.kernel.is_some() {
            return serde_json::json!({
                "expression": self.expr,
                "in_kernel": true,
            });
        }
        let c = self.counters.snapshot();
        serde_json::json!({
            "expression": self.expr,
            "in_kernel": false,
            "matched": c.matched,
            "rejected": c.rejected,
            "unsupported_linktype": c.unsupported_linktype,
        })
    }
}
