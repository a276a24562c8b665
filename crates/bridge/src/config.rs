//! What an operator writes for one bridge (`[[bridges]]` in the broker's TOML file). One shape
//! serves every upstream: the fields of the other kind are ignored, so a bridge can be switched
//! from a test mosquitto to AWS IoT Core by changing the address and the certificates alone.

use serde::{Deserialize, Serialize};

/// One bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeConfig {
    /// Its name: in `$SYS/broker/bridge/<name>/…`, the metrics and the store stream. Letters,
    /// digits, `-` and `_`.
    pub name: String,
    /// `mqtt` (an upstream MQTT broker) or `aws` (SQS and SNS endpoints).
    pub kind: String,
    /// MQTT: the upstream's `host:port`.
    pub address: String,
    /// MQTT: the client identifier upstream (default `outpost-<name>`).
    pub client_id: String,
    /// MQTT: user name upstream.
    pub username: String,
    /// MQTT: password upstream.
    pub password: String,
    /// MQTT: `5` or `3.1.1`.
    pub version: String,
    /// MQTT: keep-alive in seconds.
    pub keep_alive: u16,
    /// MQTT: start a new upstream session on each connection. With `false` the upstream keeps the
    /// bridge's subscriptions and queues inbound messages while the link is down.
    pub clean_start: bool,
    /// MQTT 5: how long the upstream keeps the session after a disconnect, in seconds (with
    /// `clean_start = false`).
    pub session_expiry: u32,
    /// Most messages in flight upstream at once (capped by the upstream's Receive Maximum).
    pub window: u16,
    /// TLS to the upstream (MQTT) or to HTTPS endpoints (AWS: only `ca_file` applies).
    pub tls: Option<BridgeTls>,
    /// Forwarded out of this broker.
    pub out: Vec<OutRule>,
    /// MQTT: brought in from the upstream.
    #[serde(rename = "in")]
    pub inbound: Vec<InRule>,
    /// MQTT: device shadows kept in sync with the upstream's shadow service.
    pub shadows: Vec<ShadowRule>,
    /// AWS: local queues moved to remote queues.
    pub queues: Vec<QueueRule>,
    /// AWS: local SNS topics forwarded to a remote queue or topic.
    pub topics: Vec<TopicRule>,
    /// AWS: the region requests are signed for.
    pub region: String,
    /// AWS: one endpoint for both services (moto, a second Outpost, LocalStack). Empty: AWS's
    /// own endpoints of the region.
    pub endpoint: String,
    /// AWS: the SQS endpoint (overrides `endpoint`).
    pub sqs_endpoint: String,
    /// AWS: the SNS endpoint (overrides `endpoint`).
    pub sns_endpoint: String,
    /// AWS: access key id. Empty: `AWS_ACCESS_KEY_ID`, then the shared credentials file.
    pub access_key_id: String,
    /// AWS: secret access key.
    pub secret_access_key: String,
    /// AWS: session token of temporary credentials.
    pub session_token: String,
    /// AWS: profile of the shared credentials file (default `AWS_PROFILE`, then `default`).
    pub profile: String,
    /// Most bytes waiting for the upstream; past it the oldest messages are dropped.
    pub max_backlog_bytes: u64,
    /// Longest a message waits for the upstream, in seconds; older ones are dropped. 0: no limit.
    pub max_backlog_age: u64,
    /// While the link is up and more than this many messages wait for the upstream, the PUBACK
    /// of a message for it waits until the link catches up (at most [`crate::LONGEST_PACE`]):
    /// publishers are paced to the upstream, as a slow subscriber holds its publishers back. A
    /// link that is down never paces (the backlog takes what arrives). 0: never pace.
    pub pace_above: u64,
    /// First reconnect delay, in milliseconds (doubles up to `backoff_max_ms`, with jitter).
    pub backoff_min_ms: u64,
    /// Longest reconnect delay, in milliseconds.
    pub backoff_max_ms: u64,
    /// The local identity the bridge acts as (ACL rules name it): what `in` rules bring in is
    /// published as it, the SNS topics it forwards are subscribed as it. Empty: the broker's
    /// own operator, allowed everything (ADR 0015).
    pub identity: String,
}

impl BridgeConfig {
    /// The principal the bridge acts as here.
    pub fn principal(&self) -> outpost_access::Identity {
        if self.identity.is_empty() {
            outpost_access::Identity::operator()
        } else {
            outpost_access::Identity {
                name: self.identity.as_str().into(),
                proof: outpost_access::Proof::Configured,
                account: "".into(),
            }
        }
    }
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            name: String::new(),
            kind: "mqtt".into(),
            address: String::new(),
            client_id: String::new(),
            username: String::new(),
            password: String::new(),
            version: "5".into(),
            keep_alive: 30,
            clean_start: false,
            session_expiry: 7 * 24 * 3600,
            window: 64,
            tls: None,
            out: Vec::new(),
            inbound: Vec::new(),
            shadows: Vec::new(),
            queues: Vec::new(),
            topics: Vec::new(),
            region: "us-east-1".into(),
            endpoint: String::new(),
            sqs_endpoint: String::new(),
            sns_endpoint: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            session_token: String::new(),
            profile: String::new(),
            max_backlog_bytes: 1 << 30,
            max_backlog_age: 7 * 24 * 3600,
            pace_above: 4096,
            backoff_min_ms: 500,
            backoff_max_ms: 60_000,
            identity: String::new(),
        }
    }
}

/// TLS to an upstream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeTls {
    /// PEM CA certificates the upstream's certificate must chain to. Empty: the Mozilla roots
    /// (`webpki-roots`), which cover AWS IoT Core's Amazon Trust Services chain.
    pub ca_file: String,
    /// PEM client certificate chain (mutual TLS, as AWS IoT Core requires).
    pub cert_file: String,
    /// PEM private key of the client certificate.
    pub key_file: String,
    /// The name the upstream's certificate must carry (SNI too). Empty: the host of `address`.
    pub server_name: String,
    /// ALPN protocols offered, e.g. `["x-amzn-mqtt-ca"]` for AWS IoT Core on port 443.
    pub alpn: Vec<String>,
}

/// A rule that forwards local messages upstream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutRule {
    /// Local MQTT topic filter the rule takes messages from.
    pub filter: String,
    /// MQTT: the remote topic, a template: `{topic}` is the local topic (after `strip_prefix`),
    /// `{client_id}` the publisher. Default `{topic}`.
    pub topic: String,
    /// Removed from the start of the local topic before `{topic}` is filled in.
    pub strip_prefix: String,
    /// MQTT: QoS upstream (0 or 1; 0 forwards without store-and-forward).
    pub qos: u8,
    /// AWS: the remote queue URL the messages are sent to.
    pub sqs: String,
    /// AWS: the remote SNS topic ARN the messages are published to.
    pub sns: String,
}

/// A rule that brings upstream messages in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InRule {
    /// Remote topic filter subscribed to upstream.
    pub filter: String,
    /// The local topic, a template: `{topic}` is the remote topic (after `strip_prefix`).
    pub topic: String,
    /// Removed from the start of the remote topic before `{topic}` is filled in.
    pub strip_prefix: String,
    /// QoS of the upstream subscription (0, 1 or 2).
    pub qos: u8,
}

/// Device shadows kept in sync with the upstream's Device Shadow service (AWS IoT Core, or
/// another Outpost): see `shadow_sync`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShadowRule {
    /// Thing names; one ending in `*` is a prefix (`"*"`: every thing).
    pub things: Vec<String>,
    /// Shadow names: `""` the classic shadow (the default), a name (a trailing `*` is a
    /// prefix), or `"*"` the classic shadow and every named one.
    pub shadows: Vec<String>,
    /// `both` (the default), `device-to-cloud` or `cloud-to-device`.
    pub direction: String,
}

/// A local queue whose messages move to a remote queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueRule {
    /// The local queue's name.
    pub local: String,
    /// The remote queue's URL.
    pub remote: String,
}

/// A local SNS topic whose messages go to a remote queue or topic. The bridge subscribes a queue
/// of its own (`bridge-<name>-<topic>`, raw delivery, so message attributes travel as queue
/// message attributes) to the topic and moves that queue: the queue is the backlog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicRule {
    /// The local topic's name (created if it does not exist).
    pub local: String,
    /// The remote queue URL.
    pub sqs: String,
    /// The remote topic ARN.
    pub sns: String,
}

impl TopicRule {
    /// The bridge's own queue for this rule (within SQS's 80 characters).
    pub fn queue(&self, bridge: &str) -> String {
        format!("bridge-{bridge}-{}", self.local)
            .chars()
            .take(80)
            .collect()
    }
}

/// A configuration mistake, found at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bridge {bridge:?}: {reason}")]
pub struct ConfigError {
    /// The bridge.
    pub bridge: String,
    /// What is wrong.
    pub reason: String,
}

impl BridgeConfig {
    /// The client identifier used upstream.
    pub fn client_id(&self) -> String {
        if self.client_id.is_empty() {
            format!("outpost-{}", self.name)
        } else {
            self.client_id.clone()
        }
    }

    /// Checks what can be checked before connecting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |reason: String| {
            Err(ConfigError {
                bridge: self.name.clone(),
                reason,
            })
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return fail("the name must be 1 to 64 letters, digits, '-' or '_'".into());
        }
        for rule in &self.out {
            if !outpost_codec::topic::is_valid_topic_filter(&rule.filter) {
                return fail(format!(
                    "out filter {:?} is not a topic filter",
                    rule.filter
                ));
            }
        }
        for rule in &self.shadows {
            if self.kind != "mqtt" {
                return fail("shadow sync needs an `mqtt` bridge".into());
            }
            if rule.things.is_empty() {
                return fail("a shadows rule needs `things`".into());
            }
            if crate::shadow_sync::Direction::parse(&rule.direction).is_none() {
                return fail(format!(
                    "shadows direction {:?}: use \"both\", \"device-to-cloud\" or \"cloud-to-device\"",
                    rule.direction
                ));
            }
            let bad = |n: &str, max: usize| {
                let n = n.strip_suffix('*').unwrap_or(n);
                n.len() > max
                    || !n
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
            };
            if let Some(t) = rule.things.iter().find(|t| t.is_empty() || bad(t, 128)) {
                return fail(format!(
                    "shadows: {t:?} is not a thing name (a trailing * is a prefix)"
                ));
            }
            if let Some(n) = rule.shadows.iter().find(|n| *n != "*" && bad(n, 64)) {
                return fail(format!("shadows: {n:?} is not a shadow name"));
            }
        }
        match self.kind.as_str() {
            "mqtt" => {
                if self.address.is_empty() {
                    return fail("an MQTT bridge needs `address` (host:port)".into());
                }
                if !matches!(self.version.as_str(), "5" | "5.0" | "3.1.1" | "4") {
                    return fail(format!(
                        "version {:?}: use \"5\" or \"3.1.1\"",
                        self.version
                    ));
                }
                for rule in &self.out {
                    if rule.qos > 1 {
                        return fail("out rules forward with QoS 0 or 1".into());
                    }
                    if !rule.sqs.is_empty() || !rule.sns.is_empty() {
                        return fail("sqs/sns targets belong to an `aws` bridge".into());
                    }
                }
                for rule in &self.inbound {
                    if !outpost_codec::topic::is_valid_topic_filter(&rule.filter) || rule.qos > 2 {
                        return fail(format!("in rule {:?}: invalid filter or QoS", rule.filter));
                    }
                }
                if !self.queues.is_empty() || !self.topics.is_empty() {
                    return fail("queue and topic rules belong to an `aws` bridge".into());
                }
            }
            "aws" => {
                for rule in &self.out {
                    if rule.sqs.is_empty() == rule.sns.is_empty() {
                        return fail(format!(
                            "out rule {:?} needs exactly one of `sqs` (queue URL) or `sns` (topic ARN)",
                            rule.filter
                        ));
                    }
                }
                if !self.inbound.is_empty() {
                    return fail("in rules belong to an `mqtt` bridge".into());
                }
                for q in &self.queues {
                    if q.local.is_empty() || q.remote.is_empty() {
                        return fail("a queue rule needs `local` and `remote`".into());
                    }
                }
                for t in &self.topics {
                    let name_ok = !t.local.is_empty()
                        && t.local.len() <= 40
                        && t.local
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                    if !name_ok || t.sqs.is_empty() == t.sns.is_empty() {
                        return fail(format!(
                            "topic rule {:?} needs a standard topic name of at most 40 characters and exactly one of `sqs` or `sns`",
                            t.local
                        ));
                    }
                }
            }
            other => return fail(format!("kind {other:?}: use \"mqtt\" or \"aws\"")),
        }
        Ok(())
    }
}

/// Fills a rule's topic template.
pub(crate) fn map_topic(template: &str, strip: &str, topic: &str, client_id: &str) -> String {
    let rest = topic.strip_prefix(strip).unwrap_or(topic);
    if template.is_empty() {
        return rest.to_string();
    }
    template
        .replace("{topic}", rest)
        .replace("{client_id}", client_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_in_the_topic() {
        assert_eq!(map_topic("", "", "a/b", "c"), "a/b");
        assert_eq!(map_topic("gw/{topic}", "", "a/b", "c"), "gw/a/b");
        assert_eq!(map_topic("{topic}", "cloud/", "cloud/x", "c"), "x");
        assert_eq!(
            map_topic("d/{client_id}/{topic}", "", "t", "dev"),
            "d/dev/t"
        );
    }

    #[test]
    fn bad_configs_are_refused() {
        let mut c = BridgeConfig {
            name: "up".into(),
            address: "localhost:1883".into(),
            ..BridgeConfig::default()
        };
        assert!(c.validate().is_ok());
        c.name = "a b".into();
        assert!(c.validate().is_err());
        c.name = "up".into();
        c.out.push(OutRule {
            filter: "a/#/b".into(),
            ..OutRule::default()
        });
        assert!(c.validate().is_err());
        c.out[0].filter = "a/#".into();
        c.out[0].qos = 2;
        assert!(c.validate().is_err());
        c.kind = "aws".into();
        c.out[0].qos = 1;
        assert!(c.validate().is_err(), "an aws out rule needs a target");
        c.out[0].sqs = "http://x/1/q".into();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn bad_shadow_rules_are_refused() {
        let mut c = BridgeConfig {
            name: "up".into(),
            address: "localhost:1883".into(),
            shadows: vec![ShadowRule {
                things: vec!["pump-*".into()],
                ..ShadowRule::default()
            }],
            ..BridgeConfig::default()
        };
        assert!(c.validate().is_ok());
        c.shadows[0].direction = "sideways".into();
        assert!(c.validate().is_err());
        c.shadows[0].direction = "cloud-to-device".into();
        assert!(c.validate().is_ok());
        c.shadows[0].things = vec!["pump 1".into()];
        assert!(c.validate().is_err(), "not a thing name");
        c.shadows[0].things.clear();
        assert!(c.validate().is_err(), "no things");
        c.shadows[0].things = vec!["*".into()];
        c.shadows[0].shadows = vec!["cfg/x".into()];
        assert!(c.validate().is_err(), "not a shadow name");
        c.shadows[0].shadows = vec!["*".into(), "".into()];
        assert!(c.validate().is_ok());
        c.kind = "aws".into();
        assert!(c.validate().is_err(), "shadows need an mqtt bridge");
    }
}
