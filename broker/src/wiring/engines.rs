//! The engines behind the doors, opened from the store and joined: the MQTT engine, queues (SQS),
//! topics (SNS), rules (EventBridge) and bridges, with each crossing between them checked as its
//! principal (ADR 0015).

use std::net::SocketAddr;
use std::sync::Arc;

use outpost_shutdown::Shutdown;

use super::Failure;
use crate::config::{Config, QueueOverflow};

/// Every engine this build holds (its cargo features), wired to the others.
pub(crate) struct Engines {
    pub broker: Arc<outpost_mqtt::Broker>,
    pub shadows: Arc<outpost_shadows::Shadows>,
    #[cfg(feature = "sqs")]
    pub queues: Arc<outpost_queues::Queues>,
    #[cfg(feature = "sns")]
    pub topics: Arc<outpost_topics::Topics>,
    #[cfg(feature = "events")]
    pub events: Arc<outpost_rules::Events>,
    #[cfg(feature = "bridge")]
    pub bridges: Arc<outpost_bridge::Bridges>,
}

/// The MQTT engine, with the sessions and retained messages the store holds.
pub(crate) fn mqtt(
    config: &Config,
    store: &outpost_store::Store,
) -> Result<Arc<outpost_mqtt::Broker>, Failure> {
    let m = &config.mqtt;
    outpost_mqtt::Broker::with_store(
        outpost_mqtt::BrokerConfig {
            max_packet_size: m.max_packet_size.min(u32::MAX as usize) as u32,
            v311_session_expiry: m.v311_session_expiry.unwrap_or(u32::MAX),
            max_subscriptions_per_session: m.max_subscriptions,
            max_topic_levels: m.max_topic_levels,
            max_inflight: m.max_inflight,
            max_retained_messages: m.max_retained_messages,
            max_retained_bytes: m.max_retained_bytes,
            max_persistent_sessions: m.max_persistent_sessions,
            flow_control_queue: m.flow_control_queue,
            stall_timeout: std::time::Duration::from_secs(m.stall_timeout),
            lifecycle_events: m.lifecycle_events,
            node_id: node_id(store),
            overflow: match m.queue_overflow {
                QueueOverflow::Refuse => outpost_mqtt::OverflowPolicy::Refuse,
                QueueOverflow::Drop => outpost_mqtt::OverflowPolicy::Drop,
            },
            outbox: outpost_mqtt::OutboxLimits {
                max_queued: m.max_queued_messages,
                max_queued_bytes: m.max_queued_bytes,
                ..outpost_mqtt::OutboxLimits::default()
            },
            ..outpost_mqtt::BrokerConfig::default()
        },
        store.clone(),
    )
    .map_err(|e| Failure::runtime(format!("cannot restore the MQTT state from the store: {e}")))
}

/// Opens the queues, topics, rules and bridges beside `broker`, and joins them: SNS and rule
/// targets publish to MQTT, MQTT publishes reach the rules and the bridges, `$queue/` reaches the
/// queues. `http_addr` is where the HTTP port listens (the default public URL of SNS messages).
/// An engine this build leaves out is not opened; configuring what only it would serve (a bridge,
/// say) is refused here.
pub(crate) async fn open(
    config: &Config,
    store: &outpost_store::Store,
    broker: Arc<outpost_mqtt::Broker>,
    security: &Arc<outpost_auth::Security>,
    http_addr: Option<SocketAddr>,
    shutdown: &Shutdown,
) -> Result<Engines, Failure> {
    // Messages that cross doors are checked as their principals (ADR 0015).
    broker.set_authorizer(security.clone());
    // Dynamic security (mosquitto's `$CONTROL/dynamic-security/v1`): its model back from the
    // store before any login is decided, and its command topic.
    outpost_control::saved::open(store, security).map_err(|e| {
        Failure::runtime(format!(
            "cannot restore dynamic security from the store: {e}"
        ))
    })?;
    broker.set_control(outpost_control::DynsecDoor::new(security.clone(), &broker));
    let shadows = outpost_shadows::Shadows::open(
        store.clone(),
        broker.clone(),
        outpost_shadows::ShadowsConfig {
            max_shadows: config.mqtt.max_shadows,
            region: config.http.region.clone(),
            account: config.http.account.clone(),
        },
    )
    .map_err(|e| Failure::runtime(format!("cannot recover the device shadows: {e}")))?;
    #[cfg(feature = "sqs")]
    let queues = {
        let queues = outpost_queues::Queues::open(
            store.clone(),
            outpost_queues::QueuesConfig {
                region: config.http.region.clone(),
                account: config.http.account.clone(),
                max_queues: config.http.max_queues,
                ..outpost_queues::QueuesConfig::default()
            },
        )
        .map_err(|e| Failure::runtime(format!("cannot recover the queues: {e}")))?;
        tokio::spawn(queues.clone().run_maintenance());
        queues
    };
    #[cfg(feature = "sns")]
    let topics = {
        let http_addr = http_addr.unwrap_or(config.http.listen);
        let topics = topics(config, store, &queues, http_addr).await?;
        topics.set_authorizer(security.clone());
        let egress = outpost_http::sns::egress::EgressPolicy {
            allow: config.topics.endpoint_networks().unwrap_or_default(),
            own: vec![http_addr, config.mqtt.listen, config.websocket.listen],
            per_host_per_second: config.topics.endpoint_posts_per_second as f64,
            per_host_burst: if config.topics.endpoint_posts_burst == 0 {
                config.topics.endpoint_posts_per_second as f64
            } else {
                config.topics.endpoint_posts_burst as f64
            },
        };
        let sender = outpost_http::sns::HttpClient::new(egress).map_err(Failure::runtime)?;
        topics.attach(
            Some(Arc::new(sender)),
            Some(Arc::new(super::crossings::MqttDoor(broker.clone()))),
        );
        topics
    };
    #[cfg(feature = "events")]
    let events = {
        let events = outpost_rules::Events::open(
            store.clone(),
            queues.clone(),
            topics.clone(),
            outpost_rules::EventsConfig {
                region: config.http.region.clone(),
                account: config.http.account.clone(),
                max_rules_per_bus: config.http.max_rules_per_bus,
                max_archives_per_bus: config.http.max_archives_per_bus,
            },
        )
        .map_err(|e| Failure::runtime(format!("cannot recover the event rules: {e}")))?;
        events.set_authorizer(security.clone());
        events.attach(Some(Arc::new(super::crossings::MqttDoor(broker.clone()))));
        // Ticks missed while stopped fire now, once (ADR 0011).
        events.start_schedules();
        events
    };
    // What AWS bridges move upstream: the local queues and topics, when this build has them.
    #[cfg(all(feature = "bridge", feature = "sns"))]
    let local = outpost_bridge::Local {
        queues: queues.clone(),
        topics: topics.clone(),
    };
    #[cfg(all(feature = "bridge", not(feature = "sns")))]
    let local = outpost_bridge::Local;
    #[cfg(feature = "bridge")]
    let bridges = outpost_bridge::Bridges::start(
        &config.bridges,
        &broker.config().node_id,
        broker.clone(),
        store.clone(),
        local,
        shadows.clone(),
        shutdown.clone(),
    )
    .map_err(Failure::config)?;
    #[cfg(not(feature = "bridge"))]
    if let Some(b) = config.bridges.first() {
        return Err(Failure::config(format!(
            "bridge {}: this build has no bridges (cargo feature `bridge`)",
            b.name
        )));
    }
    // Every client PUBLISH is offered to the shadow service, the rules, then the bridges.
    let taps: Vec<Arc<dyn outpost_mqtt::PublishTap>> = vec![
        outpost_shadows::ShadowTopics::new(shadows.clone()),
        #[cfg(feature = "events")]
        Arc::new(super::crossings::RulesTap(events.clone())),
        #[cfg(feature = "bridge")]
        bridges.clone(),
    ];
    broker.set_tap(Arc::new(outpost_mqtt::TapChain(taps)));
    #[cfg(feature = "sqs")]
    broker.set_queue_door(outpost_queues::MqttQueues::new(queues.clone(), &broker));
    Ok(Engines {
        broker,
        shadows,
        #[cfg(feature = "sqs")]
        queues,
        #[cfg(feature = "sns")]
        topics,
        #[cfg(feature = "events")]
        events,
        #[cfg(feature = "bridge")]
        bridges,
    })
}

/// The SNS engine. Creating its signing key (first start only) takes a moment of CPU, off the
/// async workers.
#[cfg(feature = "sns")]
async fn topics(
    config: &Config,
    store: &outpost_store::Store,
    queues: &Arc<outpost_queues::Queues>,
    http_addr: SocketAddr,
) -> Result<Arc<outpost_topics::Topics>, Failure> {
    let public_url = if config.topics.public_url.is_empty() {
        let host = match http_addr.ip() {
            ip if ip.is_unspecified() => "localhost".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        format!("http://{host}:{}", http_addr.port())
    } else {
        config.topics.public_url.clone()
    };
    let t = &config.topics;
    let topics_config = outpost_topics::TopicsConfig {
        region: config.http.region.clone(),
        account: config.http.account.clone(),
        public_url,
        signing_dir: config.data_dir.join("sns-signing"),
        signing_key_bits: t.signing_key_bits,
        max_topics: config.http.max_topics,
        max_pending_deliveries: t.max_pending_deliveries,
        max_pending_bytes: t.max_pending_bytes,
        max_pending_deliveries_per_host: t.max_pending_deliveries_per_host,
        max_pending_bytes_per_host: t.max_pending_bytes_per_host,
        max_filter_policy_bytes_per_principal: t.max_filter_policy_bytes_per_principal,
    };
    let (store, queues) = (store.clone(), queues.clone());
    let why =
        |e: &dyn std::fmt::Display| Failure::runtime(format!("cannot recover the topics: {e}"));
    match tokio::task::spawn_blocking(move || {
        outpost_topics::Topics::open(store, queues, topics_config)
    })
    .await
    {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(why(&e)),
        Err(e) => Err(why(&e)),
    }
}

/// This broker's name in bridges' hop markers: made once, kept in the store, so it survives
/// restarts and differs between gateways.
fn node_id(store: &outpost_store::Store) -> String {
    const TABLE: &str = "bridge";
    if let Ok(Some(v)) = store.meta().get(TABLE, b"node") {
        if let Ok(s) = String::from_utf8(v) {
            return s;
        }
    }
    let id = format!("{:016x}", rand::random::<u64>());
    if let Err(e) = store.meta().apply(&[outpost_store::MetaOp::Put {
        table: TABLE,
        key: b"node",
        value: id.as_bytes(),
    }]) {
        tracing::warn!(error = %e, "the node id could not be stored; bridges use a new one after a restart");
    }
    id
}
