//! The run summary: as JSON (`--stats-json`) and as text (standard error).

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
        "duration_s": secs,
        "packets_per_s": if secs > 0.0 { s.packets as f64 / secs } else { 0.0 },
        "warnings": warnings,
    })
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
    if let Some(a) = v
        .get("anomalies")
        .and_then(|a| a.as_object())
        .filter(|a| !a.is_empty())
    {
        let list: Vec<String> = a.iter().map(|(k, n)| format!("{k}={n}")).collect();
        s.push_str(&format!("anomalies: {}\n", list.join(" ")));
    }
    s
}
