//! Subscriptions: Subscribe, ConfirmSubscription, Unsubscribe, the two listings and
//! Get/SetSubscriptionAttributes.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::admin::{page_token, parse_token};
use super::*;
use crate::delivery_policy::effective_subscription_json;
use crate::subscription::{validate_attribute, Protocol};

/// Subscriptions per listing page (SNS: 100).
const PAGE: usize = 100;
/// Subscriptions per topic.
const MAX_PER_TOPIC: usize = 12_500_000;

/// One entry of ListSubscriptions(ByTopic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSummary {
    /// The subscription's ARN, or `PendingConfirmation`.
    pub arn: String,
    /// The account.
    pub owner: String,
    /// Protocol.
    pub protocol: String,
    /// Endpoint.
    pub endpoint: String,
    /// The topic's ARN.
    pub topic_arn: String,
}

/// What a pending subscription's ARN is shown as.
pub const PENDING_CONFIRMATION: &str = "PendingConfirmation";

fn valid_mqtt_topic(t: &str) -> bool {
    !t.is_empty() && t.len() <= 65_535 && !t.contains(['+', '#', '\0']) && !t.starts_with('$')
}

impl Topics {
    /// Bytes of filter policies `owner`'s subscriptions hold (but `except`'s).
    fn filter_bytes_of(&self, owner: Option<&str>, except: &str) -> usize {
        self.subscriptions
            .read()
            .values()
            .filter(|s| s.arn != except)
            .map(|s| {
                let d = s.def.lock();
                if d.owner.as_deref() == owner {
                    d.attributes.get("FilterPolicy").map_or(0, String::len)
                } else {
                    0
                }
            })
            .sum()
    }

    /// Refuses a filter policy of `len` bytes past the principal's budget (ADR 0015).
    fn check_filter_budget(&self, owner: Option<&str>, except: &str, len: usize) -> Result<()> {
        if len > 0
            && self.filter_bytes_of(owner, except) + len
                > self.config.max_filter_policy_bytes_per_principal
        {
            return Err(TopicError::FilterPolicyLimitExceeded(format!(
                "Filter policy limit exceeded: this principal's subscriptions may hold {} bytes of filter policies",
                self.config.max_filter_policy_bytes_per_principal
            )));
        }
        Ok(())
    }

    /// A dead-letter queue is written as the subscription's owner: it must be allowed to send
    /// there (ADR 0015).
    fn may_dead_letter(&self, owner: &outpost_access::Identity, policy: &str) -> Result<()> {
        let arn = crate::subscription::dead_letter_arn(policy)?;
        self.may_deliver(owner, Protocol::Sqs, &arn)
            .map_err(TopicError::AuthorizationError)
    }

    fn check_endpoint(&self, topic: &Topic, protocol: Protocol, endpoint: &str) -> Result<()> {
        let bad = |why: &str| TopicError::invalid(format!("Endpoint Reason: {why}"));
        match protocol {
            Protocol::Sqs => {
                let name = self
                    .queues
                    .name_from_arn(endpoint)
                    .ok_or_else(|| TopicError::invalid("SQS endpoint ARN"))?;
                let fifo_queue = name.ends_with(".fifo");
                if topic.fifo && !fifo_queue {
                    return Err(bad("Please use FIFO SQS queue"));
                }
                if !topic.fifo && fifo_queue {
                    return Err(bad(
                        "FIFO SQS Queues can not be subscribed to standard SNS topics",
                    ));
                }
            }
            Protocol::Http | Protocol::Https => {
                if topic.fifo {
                    return Err(TopicError::invalid(format!(
                        "Invalid protocol type: {}",
                        protocol.as_str()
                    )));
                }
                let scheme = format!("{}://", protocol.as_str());
                let ok = endpoint.len() > scheme.len()
                    && endpoint[..scheme.len()].eq_ignore_ascii_case(&scheme)
                    && endpoint.len() <= 2048
                    && !endpoint
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control());
                if !ok {
                    return Err(bad(format!(
                        "An {} endpoint must start with {scheme}",
                        protocol.as_str().to_uppercase()
                    )
                    .as_str()));
                }
                if let Some(http) = self.http.read().clone() {
                    http.check_endpoint(endpoint).map_err(|why| bad(&why))?;
                }
            }
            Protocol::Mqtt => {
                if topic.fifo {
                    return Err(TopicError::invalid("Invalid protocol type: mqtt"));
                }
                if !valid_mqtt_topic(endpoint) {
                    return Err(bad(
                        "An mqtt endpoint is an MQTT topic name: no wildcards, not empty, not a $ topic",
                    ));
                }
            }
        }
        Ok(())
    }

    /// `Subscribe`: queues and MQTT topics are confirmed at once; an HTTP/S endpoint gets a
    /// SubscriptionConfirmation POST and stays pending until it confirms. Returns the
    /// subscription's ARN, or `"pending confirmation"` for a pending one unless
    /// `return_arn`.
    pub async fn subscribe(
        self: &Arc<Self>,
        topic_arn: &str,
        protocol: &str,
        endpoint: Option<&str>,
        attributes: BTreeMap<String, String>,
        return_arn: bool,
        owner: &outpost_access::Identity,
    ) -> Result<String> {
        let topic = self.topic_by_arn(topic_arn)?;
        let protocol = Protocol::parse(protocol)?;
        let endpoint = endpoint.ok_or_else(|| TopicError::invalid("Endpoint"))?;
        self.check_endpoint(&topic, protocol, endpoint)?;
        // A subscription writes as the one who made it: it must be allowed to write there now
        // (and is asked again for every message it delivers).
        self.may_deliver(owner, protocol, endpoint)
            .map_err(TopicError::AuthorizationError)?;
        if let Some(policy) = attributes.get("RedrivePolicy") {
            self.may_dead_letter(owner, policy)?;
        }
        for (k, v) in &attributes {
            validate_attribute(protocol, k, v, &attributes)?;
        }
        let _defs = self.defs.lock().await;
        let owner_text = owner.encode();
        self.check_filter_budget(
            Some(&owner_text),
            "",
            attributes.get("FilterPolicy").map_or(0, String::len),
        )?;
        let existing = topic
            .subscriptions
            .read()
            .iter()
            .find(|s| s.protocol == protocol && s.endpoint == endpoint)
            .cloned();
        if let Some(s) = existing {
            let def = s.def.lock().clone();
            let same = attributes
                .iter()
                .all(|(k, v)| def.attributes.get(k) == Some(v));
            if !same {
                return Err(TopicError::invalid(
                    "Attributes Reason: Subscription already exists with different attributes",
                ));
            }
            return Ok(if def.confirmed || return_arn {
                s.arn.clone()
            } else {
                "pending confirmation".into()
            });
        }
        if topic.subscriptions.read().len() >= MAX_PER_TOPIC {
            return Err(TopicError::SubscriptionLimitExceeded(
                "Subscription limit exceeded for this topic".into(),
            ));
        }
        let confirmed = !protocol.is_http();
        let token = (!confirmed).then(|| {
            let bytes: [u8; 32] = rand::random();
            hex::encode(bytes)
        });
        let def = SubscriptionDef {
            arn: format!("{}:{}", topic.arn, uuid()),
            topic_arn: topic.arn.clone(),
            protocol,
            endpoint: endpoint.to_string(),
            attributes,
            confirmed,
            token,
            created_ms: now_ms(),
            owner: Some(owner.encode()),
        };
        self.put_meta(SUBSCRIPTIONS_TABLE, &def.arn, &def).await?;
        let sub = Arc::new(self.live_subscription(&topic, def));
        topic.subscriptions.write().push(sub.clone());
        self.subscriptions
            .write()
            .insert(sub.arn.clone(), sub.clone());
        if confirmed || return_arn {
            if !confirmed {
                self.send_confirmation(&topic, &sub);
            }
            return Ok(sub.arn.clone());
        }
        self.send_confirmation(&topic, &sub);
        Ok("pending confirmation".into())
    }

    /// `ConfirmSubscription` (or a GET of the SubscribeURL).
    pub async fn confirm(&self, topic_arn: &str, token: &str) -> Result<String> {
        let topic = self.topic_by_arn(topic_arn)?;
        if token.is_empty() {
            return Err(TopicError::invalid("Token"));
        }
        let _defs = self.defs.lock().await;
        let sub = topic
            .subscriptions
            .read()
            .iter()
            .find(|s| s.def.lock().token.as_deref() == Some(token))
            .cloned()
            .ok_or_else(|| TopicError::invalid("Invalid token"))?;
        let mut def = sub.def.lock().clone();
        if !def.confirmed {
            def.confirmed = true;
            self.put_meta(SUBSCRIPTIONS_TABLE, &def.arn, &def).await?;
            *sub.def.lock() = def;
        }
        Ok(sub.arn.clone())
    }

    /// `Unsubscribe`.
    pub async fn unsubscribe(&self, arn: &str) -> Result<()> {
        let sub = self.subscription(arn)?;
        let _defs = self.defs.lock().await;
        self.apply_meta(vec![(SUBSCRIPTIONS_TABLE, arn.as_bytes().to_vec(), None)])
            .await?;
        sub.deleted.store(true, Ordering::Release);
        self.subscriptions.write().remove(arn);
        if let Ok(topic) = self.topic_by_arn(&sub.topic_arn) {
            topic.subscriptions.write().retain(|s| s.arn != arn);
            topic.deleted_subscriptions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn summary(&self, s: &Subscription) -> SubscriptionSummary {
        SubscriptionSummary {
            arn: if s.confirmed() {
                s.arn.clone()
            } else {
                PENDING_CONFIRMATION.into()
            },
            owner: self.config.account.clone(),
            protocol: s.protocol.as_str().into(),
            endpoint: s.endpoint.clone(),
            topic_arn: s.topic_arn.clone(),
        }
    }

    fn page(
        &self,
        mut subs: Vec<Arc<Subscription>>,
        token: Option<&str>,
    ) -> Result<(Vec<SubscriptionSummary>, Option<String>)> {
        let after = parse_token(token)?;
        subs.sort_by(|a, b| a.arn.cmp(&b.arn));
        let start = match &after {
            Some(a) => subs.partition_point(|s| s.arn.as_str() <= a.as_str()),
            None => 0,
        };
        let rest = &subs[start..];
        let page: Vec<SubscriptionSummary> =
            rest.iter().take(PAGE).map(|s| self.summary(s)).collect();
        let next = (rest.len() > PAGE).then(|| page_token(&rest[PAGE - 1].arn));
        Ok((page, next))
    }

    /// `ListSubscriptions`.
    pub fn list_subscriptions(
        &self,
        token: Option<&str>,
    ) -> Result<(Vec<SubscriptionSummary>, Option<String>)> {
        let subs: Vec<Arc<Subscription>> = self.subscriptions.read().values().cloned().collect();
        self.page(subs, token)
    }

    /// `ListSubscriptionsByTopic`.
    pub fn list_subscriptions_by_topic(
        &self,
        topic_arn: &str,
        token: Option<&str>,
    ) -> Result<(Vec<SubscriptionSummary>, Option<String>)> {
        let topic = self.topic_by_arn(topic_arn)?;
        let subs = topic.subscriptions.read().clone();
        self.page(subs, token)
    }

    /// `GetSubscriptionAttributes`.
    pub fn subscription_attributes(&self, arn: &str) -> Result<BTreeMap<String, String>> {
        let sub = self.subscription(arn)?;
        let def = sub.def.lock().clone();
        let mut out = def.attributes.clone();
        out.insert("SubscriptionArn".into(), sub.arn.clone());
        out.insert("TopicArn".into(), sub.topic_arn.clone());
        out.insert("Owner".into(), self.config.account.clone());
        out.insert("Protocol".into(), sub.protocol.as_str().into());
        out.insert("Endpoint".into(), sub.endpoint.clone());
        out.insert("PendingConfirmation".into(), (!def.confirmed).to_string());
        out.insert(
            "ConfirmationWasAuthenticated".into(),
            def.confirmed.to_string(),
        );
        out.entry("RawMessageDelivery".into())
            .or_insert_with(|| "false".into());
        out.insert(
            "SubscriptionPrincipal".into(),
            format!("arn:aws:iam::{}:root", self.config.account),
        );
        if sub.protocol.is_http() || sub.protocol == Protocol::Mqtt {
            out.insert(
                "EffectiveDeliveryPolicy".into(),
                effective_subscription_json(&sub.policy.read()),
            );
        }
        if out.contains_key("FilterPolicy") {
            out.entry("FilterPolicyScope".into())
                .or_insert_with(|| "MessageAttributes".into());
        }
        Ok(out)
    }

    /// `SetSubscriptionAttributes`.
    pub async fn set_subscription_attribute(
        &self,
        arn: &str,
        name: &str,
        value: &str,
    ) -> Result<()> {
        let sub = self.subscription(arn)?;
        let _defs = self.defs.lock().await;
        let mut def = sub.def.lock().clone();
        validate_attribute(sub.protocol, name, value, &def.attributes)?;
        if name == "FilterPolicy" {
            self.check_filter_budget(def.owner.as_deref(), arn, value.len())?;
        }
        if name == "RedrivePolicy" && !value.is_empty() {
            self.may_dead_letter(&self.owner(&sub), value)?;
        }
        if value.is_empty() && name != "RawMessageDelivery" {
            def.attributes.remove(name);
        } else {
            def.attributes.insert(name.to_string(), value.to_string());
        }
        let policy = match self.topic_by_arn(&sub.topic_arn) {
            Ok(topic) => topic
                .delivery
                .read()
                .for_subscription(def.attributes.get("DeliveryPolicy").map(String::as_str))?,
            Err(_) => sub.policy.read().clone(),
        };
        let filter = crate::subscription::parse_filter(
            def.attributes
                .get("FilterPolicy")
                .map_or("", String::as_str),
            def.attributes.get("FilterPolicyScope").map(String::as_str),
        )?;
        self.put_meta(SUBSCRIPTIONS_TABLE, arn, &def).await?;
        *sub.filter.write() = filter.map(Arc::new);
        *sub.policy.write() = policy;
        *sub.def.lock() = def;
        Ok(())
    }
}
