//! `/metrics`: every engine's figures read at scrape time and written by `prometheus-client`
//! (OpenMetrics text, HELP and TYPE for every family). The engines keep plain atomics and
//! snapshots, knowing nothing of Prometheus; this collector, part of the wiring, is the one
//! place that names the series, so `deploy/grafana-dashboard.json` and the README can rely on
//! them.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Everything `/metrics` reads.
pub struct Sources {
    pub mqtt: Arc<outpost_mqtt::Broker>,
    #[cfg(feature = "sqs")]
    pub queues: Arc<outpost_queues::Queues>,
    #[cfg(feature = "sns")]
    pub topics: Arc<outpost_topics::Topics>,
    #[cfg(feature = "events")]
    pub events: Arc<outpost_rules::Events>,
    pub store: outpost_store::Store,
    pub gates: Vec<outpost_net::Gate>,
    pub security: Arc<outpost_auth::Security>,
    pub mqtt_rates: Arc<outpost_listeners::MqttRates>,
    pub http_rates: Arc<outpost_http::throttle::HttpRates>,
    #[cfg(feature = "bridge")]
    pub bridges: Arc<outpost_bridge::Bridges>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sources")
    }
}

impl Sources {
    /// Per bridge: link state, backlog, and what was forwarded, brought in, retried and dropped.
    #[cfg(feature = "bridge")]
    fn encode_bridges(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.bridges.snapshots();
        if all.is_empty() {
            return Ok(());
        }
        type Field = fn(&outpost_bridge::Snapshot) -> u64;
        let families: [(&str, &str, MetricType, Field); 10] = [
            (
                "outpost_bridge_connected",
                "1 while the bridge's link to its upstream is up",
                MetricType::Gauge,
                |s| u64::from(s.connected),
            ),
            (
                "outpost_bridge_backlog_messages",
                "Messages waiting for the upstream's acknowledgement",
                MetricType::Gauge,
                |s| s.backlog_messages,
            ),
            (
                "outpost_bridge_backlog_bytes",
                "Bytes of the messages waiting for the upstream",
                MetricType::Gauge,
                |s| s.backlog_bytes,
            ),
            (
                "outpost_bridge_oldest_pending_seconds",
                "Age of the oldest message waiting for the upstream",
                MetricType::Gauge,
                |s| s.oldest_age_seconds,
            ),
            (
                "outpost_bridge_forwarded",
                "Messages the upstream acknowledged",
                MetricType::Counter,
                |s| s.forwarded,
            ),
            (
                "outpost_bridge_received",
                "Messages brought in from the upstream",
                MetricType::Counter,
                |s| s.received,
            ),
            (
                "outpost_bridge_retries",
                "Failed connection or delivery attempts",
                MetricType::Counter,
                |s| s.retries,
            ),
            (
                "outpost_bridge_dropped",
                "Messages dropped by the backlog's bounds or refused by the upstream",
                MetricType::Counter,
                |s| s.dropped,
            ),
            (
                "outpost_bridge_connects",
                "Successful connections to the upstream",
                MetricType::Counter,
                |s| s.connects,
            ),
            (
                "outpost_bridge_paced",
                "Acknowledgements to local publishers that waited for the live link to catch up",
                MetricType::Counter,
                |s| s.paced,
            ),
        ];
        for (name, help, kind, field) in families {
            by_label(
                e,
                name,
                help,
                kind,
                "bridge",
                all.iter().map(|s| (s.name.as_str(), field(s))),
            )?;
        }
        Ok(())
    }
}

/// One row of a family: its labels and value.
type Row<'a> = (&'a [(&'a str, &'a str)], u64);

/// One family of plain values: `(labels, value)` each.
fn family<
    V: prometheus_client::encoding::EncodeGaugeValue + prometheus_client::encoding::EncodeCounterValue,
>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: &[(&[(&str, &str)], V)],
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in rows {
        let mut s = m.encode_family(labels)?;
        match kind {
            MetricType::Counter => s.encode_counter::<NoLabelSet, V, u64>(v, None)?,
            _ => s.encode_gauge(v)?,
        }
    }
    Ok(())
}

/// A family with one label: `(label value, value)` each.
fn by_label<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    label: &str,
    rows: impl Iterator<Item = (&'a str, u64)>,
) -> Result<(), std::fmt::Error> {
    let labelled: Vec<([(&str, &str); 1], u64)> = rows.map(|(l, v)| ([(label, l)], v)).collect();
    let rows: Vec<(&[(&str, &str)], u64)> = labelled.iter().map(|(l, v)| (&l[..], *v)).collect();
    family(e, name, help, kind, &rows)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    family(e, name, help, MetricType::Gauge, &[(&[], v)])
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    family(e, name, help, MetricType::Counter, &[(&[], v)])
}

fn histogram(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &outpost_store::latency::LatencySnapshot,
) -> Result<(), std::fmt::Error> {
    // The snapshot is cumulative; the encoder wants each bucket's own count, +Inf last.
    let mut buckets = Vec::with_capacity(h.buckets.len() + 1);
    let mut below = 0;
    for (bound, cumulative) in &h.buckets {
        buckets.push((*bound, cumulative - below));
        below = *cumulative;
    }
    buckets.push((f64::INFINITY, h.count.saturating_sub(below)));
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &buckets, None)
}

impl Collector for Sources {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_mqtt(&mut e)?;
        #[cfg(feature = "sqs")]
        self.encode_queues(&mut e)?;
        #[cfg(feature = "sns")]
        self.encode_topics(&mut e)?;
        #[cfg(feature = "events")]
        self.encode_routing(&mut e)?;
        self.encode_store(&mut e)?;
        self.encode_security(&mut e)?;
        #[cfg(feature = "bridge")]
        self.encode_bridges(&mut e)?;
        Ok(())
    }
}

impl Sources {
    fn encode_mqtt(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.mqtt.status();
        gauge(
            e,
            "outpost_mqtt_clients_connected",
            "MQTT clients connected now",
            s.connected,
        )?;
        gauge(
            e,
            "outpost_mqtt_clients_parked",
            "Connected MQTT clients idle without a task (idle two seconds or more)",
            outpost_listeners::parked_connections() as u64,
        )?;
        gauge(
            e,
            "outpost_mqtt_sessions",
            "MQTT sessions, connected or kept for later",
            s.sessions,
        )?;
        gauge(
            e,
            "outpost_mqtt_subscriptions",
            "MQTT subscriptions",
            s.subscriptions,
        )?;
        gauge(
            e,
            "outpost_mqtt_retained_messages",
            "Retained MQTT messages",
            s.retained,
        )?;
        // One row per protocol this build serves.
        let mut taken_in: Vec<Row> = vec![(&[("protocol", "mqtt")], s.messages_in)];
        let mut handed_out: Vec<Row> = vec![(&[("protocol", "mqtt")], s.messages_out)];
        #[cfg(feature = "sqs")]
        let (sent, received, deleted) = self.queues.totals();
        #[cfg(feature = "sqs")]
        {
            taken_in.push((&[("protocol", "sqs")], sent));
            handed_out.push((&[("protocol", "sqs")], received));
        }
        #[cfg(feature = "sns")]
        {
            let t = self.topics.delivery_stats();
            taken_in.push((&[("protocol", "sns")], t.published));
            handed_out.push((&[("protocol", "sns")], t.delivered));
        }
        #[cfg(feature = "events")]
        {
            let r = self.events.stats();
            taken_in.push((&[("protocol", "events")], r.events.load(Relaxed)));
            handed_out.push((&[("protocol", "events")], r.delivered.load(Relaxed)));
        }
        family(
            e,
            "outpost_messages_received",
            "Messages taken in, by protocol (MQTT PUBLISH, SQS SendMessage, SNS Publish, EventBridge PutEvents entries)",
            MetricType::Counter,
            &taken_in,
        )?;
        family(
            e,
            "outpost_messages_sent",
            "Messages handed out, by protocol (MQTT deliveries, SQS receives, SNS copies delivered, rule targets delivered)",
            MetricType::Counter,
            &handed_out,
        )?;
        #[cfg(feature = "sqs")]
        counter(
            e,
            "outpost_queue_messages_deleted",
            "SQS messages deleted by consumers",
            deleted,
        )?;
        family(
            e,
            "outpost_bytes_received",
            "Payload bytes taken in, by protocol",
            MetricType::Counter,
            &[(&[("protocol", "mqtt")], s.bytes_in)],
        )?;
        by_label(
            e,
            "outpost_mqtt_refused",
            "MQTT messages, subscriptions and sessions refused or dropped by the engine's limits, by reason",
            MetricType::Counter,
            "reason",
            self.mqtt.refusals().iter().copied(),
        )?;
        // Per session, so a session's owner sees its own loss (not only the aggregate above);
        // the sessions with a loss, at most 1,000 (the largest), so the series stay bounded.
        let losses: Vec<(String, u64)> = self
            .mqtt
            .session_losses(1_000)
            .into_iter()
            .map(|(c, n)| {
                let c: String = c
                    .chars()
                    .map(|ch| {
                        if matches!(ch, '"' | '\\' | '\n') {
                            '_'
                        } else {
                            ch
                        }
                    })
                    .collect();
                (c, n)
            })
            .collect();
        by_label(
            e,
            "outpost_mqtt_session_dropped",
            "QoS 1/2 messages a session's full queue did not take, by client id (sessions with a loss, the largest 1,000)",
            MetricType::Counter,
            "client_id",
            losses.iter().map(|(c, n)| (c.as_str(), *n)),
        )?;
        by_label(
            e,
            "outpost_connections_open",
            "Open connections, by listener (mqtt counts TCP, TLS and WebSocket)",
            MetricType::Gauge,
            "listener",
            self.gates.iter().map(|g| (g.name(), g.open() as u64)),
        )?;
        by_label(
            e,
            "outpost_connections_refused",
            "Connections closed at once by a connection cap, by listener",
            MetricType::Counter,
            "listener",
            self.gates.iter().map(|g| (g.name(), g.refused())),
        )
    }

    #[cfg(feature = "sqs")]
    fn encode_queues(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.queues.stats();
        let dead_letter: Vec<bool> = stats
            .iter()
            .map(|q| {
                self.queues
                    .dead_letter_sources(&q.name)
                    .is_ok_and(|s| !s.is_empty())
            })
            .collect();
        let mut m = e.encode_descriptor(
            "outpost_queue_messages",
            "Messages in a queue, by state (visible, inflight, delayed); dead_letter=\"true\" marks a dead-letter queue",
            None,
            MetricType::Gauge,
        )?;
        for (q, dlq) in stats.iter().zip(&dead_letter) {
            let dlq = if *dlq { "true" } else { "false" };
            for (state, v) in [
                ("visible", q.visible),
                ("inflight", q.inflight),
                ("delayed", q.delayed),
            ] {
                let labels = [
                    ("queue", q.name.as_str()),
                    ("state", state),
                    ("dead_letter", dlq),
                ];
                m.encode_family(&labels)?.encode_gauge(&v)?;
            }
        }
        let mut m = e.encode_descriptor(
            "outpost_queue_oldest_message_age_seconds",
            "Age of the oldest message in a queue",
            None,
            MetricType::Gauge,
        )?;
        for q in &stats {
            m.encode_family(&[("queue", q.name.as_str())])?
                .encode_gauge(&q.oldest_age_seconds)?;
        }
        gauge(e, "outpost_queues", "Queues", stats.len() as u64)
    }

    #[cfg(feature = "sns")]
    fn encode_topics(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (topics, subscriptions) = self.topics.counts();
        gauge(e, "outpost_topics", "SNS topics", topics as u64)?;
        gauge(
            e,
            "outpost_topic_subscriptions",
            "SNS subscriptions",
            subscriptions as u64,
        )?;
        let per = self.topics.topic_stats();
        let mut m = e.encode_descriptor(
            "outpost_topic_published",
            "Messages published to a topic",
            None,
            MetricType::Counter,
        )?;
        for (name, published, _) in &per {
            m.encode_family(&[("topic", name.as_str())])?
                .encode_counter::<NoLabelSet, u64, u64>(published, None)?;
        }
        let mut m = e.encode_descriptor(
            "outpost_topic_delivered",
            "Copies of a topic's messages delivered to its subscriptions",
            None,
            MetricType::Counter,
        )?;
        for (name, _, delivered) in &per {
            m.encode_family(&[("topic", name.as_str())])?
                .encode_counter::<NoLabelSet, u64, u64>(delivered, None)?;
        }
        let t = self.topics.delivery_stats();
        counter(
            e,
            "outpost_topic_delivery_retries",
            "SNS delivery attempts retried",
            t.retried,
        )?;
        counter(
            e,
            "outpost_topic_delivery_failures",
            "SNS deliveries failed for good",
            t.failed,
        )?;
        counter(
            e,
            "outpost_topic_dead_lettered",
            "SNS deliveries sent to a dead-letter queue",
            t.dead_lettered,
        )?;
        counter(
            e,
            "outpost_topic_signatures",
            "RSA signatures made for SNS envelopes (one per message, shared by its copies)",
            t.signatures,
        )?;
        gauge(
            e,
            "outpost_topic_deliveries_pending",
            "HTTP/S and MQTT SNS deliveries pending",
            t.pending,
        )
    }

    #[cfg(feature = "events")]
    fn encode_routing(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let r = self.events.stats();
        let (buses, rules) = self.events.counts();
        gauge(e, "outpost_routing_buses", "Event buses", buses as u64)?;
        gauge(e, "outpost_routing_rules", "Event rules", rules as u64)?;
        counter(
            e,
            "outpost_routing_events",
            "Events offered to the rules (PutEvents entries and MQTT publishes)",
            r.events.load(Relaxed),
        )?;
        counter(
            e,
            "outpost_routing_matches",
            "Rule matches",
            r.matched.load(Relaxed),
        )?;
        counter(
            e,
            "outpost_routing_delivered",
            "Rule target deliveries made",
            r.delivered.load(Relaxed),
        )?;
        counter(
            e,
            "outpost_routing_retries",
            "Rule target deliveries retried",
            r.retried.load(Relaxed),
        )?;
        counter(
            e,
            "outpost_routing_failures",
            "Rule target deliveries failed for good",
            r.failed.load(Relaxed),
        )?;
        counter(
            e,
            "outpost_routing_dead_lettered",
            "Rule target deliveries sent to a dead-letter queue",
            r.dead_lettered.load(Relaxed),
        )?;
        gauge(
            e,
            "outpost_routing_deliveries_pending",
            "Rule target deliveries pending",
            r.pending.load(Relaxed),
        )
    }

    fn encode_store(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.store.stats();
        gauge(
            e,
            "outpost_store_segments",
            "Segment files",
            s.segments as u64,
        )?;
        gauge(
            e,
            "outpost_store_disk_bytes",
            "Bytes in segment files on disk",
            s.disk_bytes,
        )?;
        gauge(
            e,
            "outpost_store_live_bytes",
            "Bytes of live records",
            s.live_bytes,
        )?;
        gauge(
            e,
            "outpost_store_live_records",
            "Live records",
            s.live_records,
        )?;
        counter(
            e,
            "outpost_store_appended_records",
            "Records appended",
            s.appended_records,
        )?;
        counter(e, "outpost_store_syncs", "fdatasync calls", s.syncs)?;
        counter(
            e,
            "outpost_store_compactions",
            "Segments compacted",
            s.compactions,
        )?;
        histogram(
            e,
            "outpost_store_append_seconds",
            "Store appends, from request to durable answer",
            &s.append_latency,
        )?;
        histogram(
            e,
            "outpost_store_fsync_seconds",
            "fdatasync duration",
            &s.sync_latency,
        )
    }

    fn encode_security(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.security.stats;
        family(
            e,
            "outpost_auth_failures",
            "Logins and signed requests refused for their credentials, by protocol",
            MetricType::Counter,
            &[
                (
                    &[("protocol", "mqtt"), ("reason", "bad_credentials")],
                    s.mqtt_auth_failures.load(Relaxed),
                ),
                (
                    &[("protocol", "mqtt"), ("reason", "anonymous")],
                    s.mqtt_anonymous_refused.load(Relaxed),
                ),
                (
                    &[("protocol", "http"), ("reason", "signature")],
                    s.http_auth_failures.load(Relaxed),
                ),
            ],
        )?;
        family(
            e,
            "outpost_acl_denied",
            "Actions the ACL (or a resource policy) denied, by protocol",
            MetricType::Counter,
            &[
                (&[("protocol", "mqtt")], s.mqtt_denied.load(Relaxed)),
                (&[("protocol", "http")], s.http_denied.load(Relaxed)),
            ],
        )?;
        let model = self.security.dynamic.snapshot();
        family(
            e,
            "outpost_dynsec_entities",
            "What dynamic security holds (mosquitto's $CONTROL/dynamic-security/v1), by kind",
            MetricType::Gauge,
            &[
                (&[("kind", "clients")], model.clients.len() as u64),
                (&[("kind", "groups")], model.groups.len() as u64),
                (&[("kind", "roles")], model.roles.len() as u64),
                (&[("kind", "access_keys")], model.access_keys.len() as u64),
            ],
        )?;
        family(
            e,
            "outpost_auth_reloads",
            "SIGHUP reloads of the security files, by result",
            MetricType::Counter,
            &[
                (&[("result", "ok")], s.reloads.load(Relaxed)),
                (&[("result", "refused")], s.reload_failures.load(Relaxed)),
            ],
        )?;
        let m = &self.mqtt_rates.refused;
        let h = &self.http_rates;
        family(
            e,
            "outpost_throttled",
            "Requests refused by a rate or concurrency limit, by reason",
            MetricType::Counter,
            &[
                (
                    &[("reason", "login_failures")],
                    s.throttled_logins.load(Relaxed),
                ),
                (
                    &[("reason", "mqtt_message_rate")],
                    m.message_rate.load(Relaxed),
                ),
                (&[("reason", "mqtt_byte_rate")], m.byte_rate.load(Relaxed)),
                (
                    &[("reason", "mqtt_total_message_rate")],
                    m.total_message_rate.load(Relaxed),
                ),
                (
                    &[("reason", "mqtt_connection_rate")],
                    m.connection_rate.load(Relaxed),
                ),
                (
                    &[("reason", "http_request_rate")],
                    h.refused_rate.load(Relaxed),
                ),
                (
                    &[("reason", "http_long_polls")],
                    h.refused_long_polls.load(Relaxed),
                ),
            ],
        )
    }
}

/// A registry holding the collector, and its text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    out
}

/// The registry of `sources`.
pub fn registry(sources: Sources) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(sources));
    r
}
