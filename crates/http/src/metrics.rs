//! `/metrics` in the Prometheus text format: queue depths and ages, topic and rule deliveries, store figures, and whatever
//! the rest of the broker adds.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::IntoResponse;

use crate::HttpState;

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every figure.
pub async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let mut out = String::new();
    let stats = state.queues.stats();
    let _ = writeln!(out, "# TYPE outpost_queue_messages gauge");
    for q in &stats {
        let name = label(&q.name);
        for (kind, v) in [
            ("visible", q.visible),
            ("inflight", q.inflight),
            ("delayed", q.delayed),
        ] {
            let _ = writeln!(
                out,
                "outpost_queue_messages{{queue=\"{name}\",state=\"{kind}\"}} {v}"
            );
        }
    }
    let _ = writeln!(out, "# TYPE outpost_queue_oldest_message_age_seconds gauge");
    for q in &stats {
        let _ = writeln!(
            out,
            "outpost_queue_oldest_message_age_seconds{{queue=\"{}\"}} {}",
            label(&q.name),
            q.oldest_age_seconds
        );
    }
    let (sent, received, deleted) = state.queues.totals();
    let _ = writeln!(out, "# TYPE outpost_queue_operations_total counter");
    for (op, v) in [("send", sent), ("receive", received), ("delete", deleted)] {
        let _ = writeln!(out, "outpost_queue_operations_total{{op=\"{op}\"}} {v}");
    }
    let t = state.topics.delivery_stats();
    let (topics, subscriptions) = state.topics.counts();
    for (name, kind, v) in [
        ("outpost_topics", "gauge", topics as u64),
        ("outpost_topic_subscriptions", "gauge", subscriptions as u64),
        ("outpost_topic_published_total", "counter", t.published),
        ("outpost_topic_delivered_total", "counter", t.delivered),
        ("outpost_topic_delivery_retries_total", "counter", t.retried),
        ("outpost_topic_delivery_failures_total", "counter", t.failed),
        (
            "outpost_topic_dead_lettered_total",
            "counter",
            t.dead_lettered,
        ),
        ("outpost_topic_deliveries_pending", "gauge", t.pending),
    ] {
        let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {v}");
    }
    let r = state.events.stats();
    let (buses, rules) = state.events.counts();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    for (name, kind, v) in [
        ("outpost_routing_buses", "gauge", buses as u64),
        ("outpost_routing_rules", "gauge", rules as u64),
        ("outpost_routing_events_total", "counter", load(&r.events)),
        ("outpost_routing_matches_total", "counter", load(&r.matched)),
        (
            "outpost_routing_delivered_total",
            "counter",
            load(&r.delivered),
        ),
        ("outpost_routing_retries_total", "counter", load(&r.retried)),
        ("outpost_routing_failures_total", "counter", load(&r.failed)),
        (
            "outpost_routing_dead_lettered_total",
            "counter",
            load(&r.dead_lettered),
        ),
        (
            "outpost_routing_deliveries_pending",
            "gauge",
            load(&r.pending),
        ),
    ] {
        let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {v}");
    }
    let s = state.store.stats();
    for (name, kind, v) in [
        ("outpost_store_segments", "gauge", s.segments as u64),
        ("outpost_store_disk_bytes", "gauge", s.disk_bytes),
        ("outpost_store_live_bytes", "gauge", s.live_bytes),
        ("outpost_store_live_records", "gauge", s.live_records),
        (
            "outpost_store_appended_records_total",
            "counter",
            s.appended_records,
        ),
        ("outpost_store_syncs_total", "counter", s.syncs),
        ("outpost_store_compactions_total", "counter", s.compactions),
    ] {
        let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {v}");
    }
    if let Some(extra) = &state.extra_metrics {
        out.push_str(&extra());
    }
    ([("content-type", "text/plain; version=0.0.4")], out)
}
