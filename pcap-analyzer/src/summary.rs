//! The run summary: as JSON (`--stats-json`) and as text (standard error).
//!
//! Every loss has a name in it: the plugins' counters
//! ([`Plugin::counters`](libpcap_analyzer::plugin::Plugin::counters)) under
//! `plugins`, TCP reassembly under `reassembly`, flows evicted under
//! `flows_ended`, and the non-zero losses of all three together under
//! `losses` (`"dns.malformed": 1000`, `"reassembly.dropped_over_cap": 2`,
//! `"flows.eviction": 10`), which the text summary lists as "not analysed"
//! and the log as warnings.

use libpcap_analyzer::RunOutput;
use libpcap_analyzer::plugins::connections::ConnectionsPlugin;
use libpcap_analyzer::session::SessionOutput;
use std::time::Duration;

/// The connection report of a run, if the plugin ran.
pub fn connection_report(output: &RunOutput) -> Option<String> {
    connections_plugin(output).map(ConnectionsPlugin::render)
}

/// The `connections` plugin of a run, if it ran.
pub(crate) fn connections_plugin(output: &RunOutput) -> Option<&ConnectionsPlugin> {
    output.plugins.iter().find_map(|p| {
        let any: &dyn std::any::Any = p.as_ref();
        any.downcast_ref::<ConnectionsPlugin>()
    })
}

/// The machine-readable summary of a session's run.
pub fn summary_json(
    done: &SessionOutput,
    elapsed: Duration,
    warnings: &[String],
) -> serde_json::Value {
    let output = &done.output;
    let s = &output.stats;
    let secs = elapsed.as_secs_f64();
    let plugins = output.plugin_counters();
    let reassembly = s.reassembly.counters();
    let mut losses = serde_json::Map::new();
    for (name, c) in plugins
        .iter()
        .map(|(n, c)| (n.as_str(), c))
        .chain([("reassembly", &reassembly)])
    {
        for l in c.losses() {
            losses.insert(format!("{name}.{}", l.name), l.value.into());
        }
    }
    if output.flows.ended_eviction > 0 {
        losses.insert("flows.eviction".into(), output.flows.ended_eviction.into());
    }
    serde_json::json!({
        "packets": s.packets,
        "bytes": s.bytes,
        "input_bytes": done.stats.input_bytes,
        "discarded_while_paused": done.stats.discarded_while_paused,
        "reports_written": done.stats.reports_written,
        "flows": output.flows.created,
        "flows_ended": {
            "fin": output.flows.ended_fin, "rst": output.flows.ended_rst,
            "timeout": output.flows.ended_timeout, "eviction": output.flows.ended_eviction,
            "end_of_input": output.flows.ended_end_of_input,
        },
        "anomalies": s.anomalies,
        "plugin_errors": s.plugin_errors,
        "plugins": plugins
            .iter()
            .map(|(n, c)| (n.clone(), c.to_json()))
            .collect::<serde_json::Map<_, _>>(),
        "reassembly": reassembly.to_json(),
        "losses": losses,
        "duration_s": secs,
        "packets_per_s": if secs > 0.0 { s.packets as f64 / secs } else { 0.0 },
        "memory": memory_json(&output.memory),
        "warnings": warnings,
    })
}

/// The run's memory pools (`[memory]`: limit, most held at once by all
/// workers together, requests refused; flows in flows, the others in bytes
/// or rows as their cap is given) and the process's peak resident memory.
fn memory_json(pools: &[(String, u64, u64, u64)]) -> serde_json::Value {
    let pools: serde_json::Map<_, _> = pools
        .iter()
        .map(|(name, limit, peak, refused)| {
            (
                name.clone(),
                serde_json::json!({ "limit": limit, "peak": peak, "refused": refused }),
            )
        })
        .collect();
    serde_json::json!({ "pools": pools, "peak_rss_bytes": peak_rss_bytes() })
}

/// The process's peak resident set size (`VmHWM` of `/proc/self/status`),
/// `None` where there is no such file.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    kb.checked_mul(1024)
}

pub(crate) fn summary_text(v: &serde_json::Value) -> String {
    let g = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let secs = v
        .get("duration_s")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    let mut s = format!(
        "packets: {}  bytes: {}  flows: {}  duration: {:.3} s  rate: {:.0} packets/s\n",
        g("packets"),
        g("bytes"),
        g("flows"),
        secs,
        v.get("packets_per_s")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    );
    if let Some(l) = v.get("live") {
        let n = |k: &str| l.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        s.push_str(&format!(
            "live capture on {} ({} socket(s)): {} packets received by the kernel, {} dropped \
             by the kernel (ring full), {} ring freezes\n",
            l.get("interface")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?"),
            n("sockets"),
            n("kernel_packets"),
            n("kernel_drops"),
            n("kernel_freeze_count"),
        ));
    }
    if let Some(l) = v.get("nfqueue") {
        let n = |k: &str| l.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        s.push_str(&format!(
            "inline on NFQUEUE queue {} ({} queue(s)): {} accepted, {} dropped by verdict; \
             kernel: {} not queued (queue full), {} not delivered (socket full){}\n",
            n("first_queue"),
            n("queues"),
            n("accepted"),
            n("dropped_by_verdict"),
            n("kernel_queue_dropped"),
            n("kernel_user_dropped"),
            if n("malformed") > 0 {
                format!(", {} malformed messages", n("malformed"))
            } else {
                String::new()
            },
        ));
    }
    if let Some(f) = v.get("filter") {
        let n = |k: &str| f.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let expr = f
            .get("expression")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?");
        if f.get("in_kernel").and_then(serde_json::Value::as_bool) == Some(true) {
            s.push_str(&format!(
                "capture filter '{expr}' in the kernel: only matching packets were received\n"
            ));
        } else {
            s.push_str(&format!(
                "capture filter '{expr}': {} packets matched, {} did not{}\n",
                n("matched"),
                n("rejected"),
                match n("unsupported_linktype") {
                    0 => String::new(),
                    u => format!(", {u} of a link type the filter cannot apply to"),
                }
            ));
        }
    }
    if g("discarded_while_paused") > 0 {
        s.push_str(&format!(
            "paused: {} live packets read and discarded unanalysed\n",
            g("discarded_while_paused")
        ));
    }
    if let Some(f) = v.get("flows_ended").and_then(|f| f.as_object()) {
        let n = |k: &str| f.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        s.push_str(&format!(
            "flows ended: fin={} rst={} timeout={} eviction={} end-of-input={}{}\n",
            n("fin"),
            n("rst"),
            n("timeout"),
            n("eviction"),
            n("end_of_input"),
            if n("eviction") > 0 {
                " (evicted before their end: the flow table was full: [flows] max_flows or the [memory] flows share)"
            } else {
                ""
            }
        ));
    }
    let losses = v.get("losses").and_then(|l| l.as_object());
    let is_loss = |key: String| losses.is_some_and(|l| l.contains_key(&key));
    if let Some(r) = v.get("reassembly") {
        let line = counters_line(r, |k| is_loss(format!("reassembly.{k}")));
        if !line.is_empty() {
            s.push_str(&format!("tcp reassembly: {line}\n"));
        }
    }
    if let Some(p) = v.get("plugins").and_then(|p| p.as_object()) {
        for (name, c) in p {
            let line = counters_line(c, |k| is_loss(format!("{name}.{k}")));
            if !line.is_empty() {
                s.push_str(&format!("plugin {name}: {line}\n"));
            }
        }
    }
    if let Some(a) = v
        .get("anomalies")
        .and_then(|a| a.as_object())
        .filter(|a| !a.is_empty())
    {
        let list: Vec<String> = a.iter().map(|(k, n)| format!("{k}={n}")).collect();
        s.push_str(&format!("anomalies: {}\n", list.join(" ")));
    }
    if let Some(e) = v
        .get("plugin_errors")
        .and_then(|e| e.as_object())
        .filter(|e| !e.is_empty())
    {
        let list: Vec<String> = e.iter().map(|(k, n)| format!("{k}={n}")).collect();
        s.push_str(&format!("plugin errors: {}\n", list.join(" ")));
    }
    s
}

/// The non-zero counters of a JSON object as `name=value`, the losses apart
/// after "not analysed:"; empty when every counter is zero.
fn counters_line(c: &serde_json::Value, is_loss: impl Fn(&str) -> bool) -> String {
    let Some(c) = c.as_object() else {
        return String::new();
    };
    let mut counts = Vec::new();
    let mut lost = Vec::new();
    for (k, n) in c {
        match n.as_u64() {
            Some(0) | None => {}
            Some(x) if is_loss(k) => lost.push(format!("{k}={x}")),
            Some(x) => counts.push(format!("{k}={x}")),
        }
    }
    match (counts.is_empty(), lost.is_empty()) {
        (_, true) => counts.join(" "),
        (true, false) => format!("not analysed: {}", lost.join(" ")),
        (false, false) => format!("{}; not analysed: {}", counts.join(" "), lost.join(" ")),
    }
}

/// Logs the summary's counters: a line per plugin (and for reassembly) at
/// info level, and each loss as a warning.
pub(crate) fn log_counters(v: &serde_json::Value) {
    for line in summary_text(v).lines() {
        if line.starts_with("plugin ") || line.starts_with("tcp reassembly: ") {
            log::info!("{line}");
        }
    }
    if let Some(losses) = v.get("losses").and_then(|l| l.as_object()) {
        for (what, n) in losses {
            let n = n.as_u64().unwrap_or(0);
            if what == "flows.eviction" {
                log::warn!(
                    "{n} flows were evicted before their end because the flow table was full \
                     ([flows] max_flows or the [memory] flows share): their later packets started new flows"
                );
            } else {
                log::warn!("{what}: {n} not analysed (see the run summary)");
            }
        }
    }
}

/// The warning of a run where nothing could be analysed because the link
/// type has no decoder (the report is then empty, not a result: exit
/// code 3); a run where only some frames had such a link type gets a log
/// warning here and no run warning.
pub(crate) fn unanalysed_warning(output: &RunOutput) -> Option<String> {
    let s = &output.stats;
    let unsupported: Vec<String> = s
        .anomalies
        .iter()
        .filter_map(|(k, n)| {
            let lt: u32 = k.strip_prefix("unsupported_linktype_")?.parse().ok()?;
            let name = libpcap_tools::LinkType(lt)
                .name()
                .map_or_else(String::new, |n| format!(" ({n})"));
            Some(format!("link type {lt}{name}: {n} frames"))
        })
        .collect();
    if unsupported.is_empty() {
        return None;
    }
    let list = unsupported.join(", ");
    if s.network == 0 {
        Some(format!(
            "no packet could be analysed: PAL has no decoder for {list}; the results are empty"
        ))
    } else {
        log::warn!("frames not analysed, PAL has no decoder for {list}");
        None
    }
}
