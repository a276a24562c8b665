//! Topic definitions: CreateTopic, DeleteTopic, ListTopics, Get/SetTopicAttributes, tags and
//! permissions.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::*;
use crate::delivery_policy::TopicDeliveryPolicy;
use crate::topic::{valid_name, validate_attribute};

/// Topics per ListTopics page (SNS: 100).
const PAGE: usize = 100;
/// Tags per resource (SNS: 50).
const MAX_TAGS: usize = 50;

/// One entry of ListTopics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSummary {
    /// The topic's ARN.
    pub arn: String,
}

/// Opaque paging token: the last name of the previous page.
pub(super) fn page_token(last: &str) -> String {
    URL_SAFE_NO_PAD.encode(last.as_bytes())
}

pub(super) fn parse_token(token: Option<&str>) -> Result<Option<String>> {
    match token.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(|| TopicError::invalid("NextToken")),
    }
}

fn validate_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(TopicError::invalid(
                "Tags Reason: A tag key must be 1 to 128 characters",
            ));
        }
        if v.chars().count() > 256 {
            return Err(TopicError::invalid(
                "Tags Reason: A tag value must be at most 256 characters",
            ));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(TopicError::invalid(
                "Tags Reason: Tag keys must not start with aws:",
            ));
        }
    }
    Ok(())
}

impl Topics {
    /// `CreateTopic`: idempotent when the topic exists with the same attributes and tags.
    pub async fn create_topic(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    ) -> Result<String> {
        if !valid_name(name) {
            return Err(TopicError::invalid(
                "Topic Name: Topic names must be made up of only uppercase and lowercase ASCII letters, numbers, underscores, and hyphens, and must be between 1 and 256 characters long.",
            ));
        }
        let fifo_name = name.ends_with(".fifo");
        let fifo_attr = attributes.get("FifoTopic").is_some_and(|v| v == "true");
        if fifo_name != fifo_attr {
            return Err(TopicError::invalid(
                "Topic Name: The topic should either have FifoTopic set to true and end with .fifo, or neither",
            ));
        }
        for (k, v) in &attributes {
            validate_attribute(fifo_name, k, v, true)?;
        }
        validate_tags(&tags)?;
        if tags.len() > MAX_TAGS {
            return Err(TopicError::TagLimitExceeded(
                "Could not complete request: tag quota of per resource exceeded".into(),
            ));
        }
        let _defs = self.defs.lock().await;
        if let Some(existing) = self.topics.read().get(name).cloned() {
            let def = existing.def.lock().clone();
            let same_attrs = attributes.iter().all(|(k, v)| {
                def.attributes
                    .get(k)
                    .map_or(k == "FifoTopic" && v == "true", |x| x == v)
            });
            if !same_attrs {
                return Err(TopicError::invalid(
                    "Attributes Reason: Topic already exists with different attributes",
                ));
            }
            if !tags.is_empty() && tags != def.tags {
                return Err(TopicError::invalid(
                    "Tags Reason: Topic already exists with different tags",
                ));
            }
            return Ok(existing.arn.clone());
        }
        if self.topics.read().len() >= self.config.max_topics {
            return Err(TopicError::TopicLimitExceeded(format!(
                "Too many topics (at most {}).",
                self.config.max_topics
            )));
        }
        self.ensure_signer().await?;
        let mut attributes = attributes;
        attributes.remove("FifoTopic");
        let def = TopicDef {
            name: name.to_string(),
            attributes,
            tags,
            created_ms: now_ms(),
        };
        self.put_meta(TOPICS_TABLE, name, &def).await?;
        let arn = self.topic_arn(name);
        let topic = Arc::new(Topic::new(def, arn.clone(), now_ms() << 16)?);
        self.topics.write().insert(name.to_string(), topic);
        Ok(arn)
    }

    /// `DeleteTopic`: the topic and its subscriptions go; deleting a topic that does not exist
    /// is not an error (as in SNS). Deliveries already pending end without being made.
    pub async fn delete_topic(&self, arn: &str) -> Result<()> {
        let name = self.topic_name(arn, "TopicArn")?.to_string();
        let _defs = self.defs.lock().await;
        let Some(topic) = self.topics.read().get(&name).cloned() else {
            return Ok(());
        };
        let subs: Vec<Arc<Subscription>> = topic.subscriptions.read().clone();
        let mut ops = vec![(TOPICS_TABLE, name.as_bytes().to_vec(), None)];
        for s in &subs {
            ops.push((SUBSCRIPTIONS_TABLE, s.arn.as_bytes().to_vec(), None));
        }
        self.apply_meta(ops).await?;
        topic.deleted.store(true, Ordering::Release);
        {
            let mut all = self.subscriptions.write();
            for s in &subs {
                s.deleted.store(true, Ordering::Release);
                all.remove(&s.arn);
            }
        }
        topic.subscriptions.write().clear();
        self.topics.write().remove(&name);
        Ok(())
    }

    /// `ListTopics`: a page of topics in name order and the token of the next page.
    pub fn list_topics(&self, token: Option<&str>) -> Result<(Vec<TopicSummary>, Option<String>)> {
        let after = parse_token(token)?;
        let topics = self.topics.read();
        let iter: Box<dyn Iterator<Item = (&String, &Arc<Topic>)>> = match &after {
            Some(a) => Box::new(
                topics
                    .range::<String, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            ),
            None => Box::new(topics.iter()),
        };
        let page: Vec<TopicSummary> = iter
            .take(PAGE + 1)
            .map(|(_, t)| TopicSummary { arn: t.arn.clone() })
            .collect();
        if page.len() > PAGE {
            let mut page = page;
            page.truncate(PAGE);
            let last = page
                .last()
                .and_then(|t| t.arn.rsplit(':').next())
                .unwrap_or_default()
                .to_string();
            return Ok((page, Some(page_token(&last))));
        }
        Ok((page, None))
    }

    /// The default `Policy` of a topic, as SNS writes it.
    fn default_policy(&self, arn: &str) -> String {
        json!({
            "Version": "2008-10-17",
            "Id": "__default_policy_ID",
            "Statement": [{
                "Sid": "__default_statement_ID",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": [
                    "SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:AddPermission",
                    "SNS:RemovePermission", "SNS:DeleteTopic", "SNS:Subscribe",
                    "SNS:ListSubscriptionsByTopic", "SNS:Publish"
                ],
                "Resource": arn,
                "Condition": {"StringEquals": {"AWS:SourceOwner": self.config.account}}
            }]
        })
        .to_string()
    }

    /// The topic's own access policy, asked beside the ACL; `None` without one or no such topic.
    pub fn topic_policy(&self, arn: &str) -> Option<String> {
        self.topic_attributes(arn)
            .ok()
            .and_then(|mut a| a.remove("Policy"))
    }

    /// `GetTopicAttributes`: the stored attributes and the computed ones.
    pub fn topic_attributes(&self, arn: &str) -> Result<BTreeMap<String, String>> {
        let topic = self.topic_by_arn(arn)?;
        let def = topic.def.lock().clone();
        let mut out = def.attributes.clone();
        out.insert("TopicArn".into(), topic.arn.clone());
        out.insert("Owner".into(), self.config.account.clone());
        out.entry("Policy".into())
            .or_insert_with(|| self.default_policy(&topic.arn));
        out.entry("DisplayName".into()).or_default();
        let (mut confirmed, mut pending) = (0, 0);
        for s in topic.subscriptions.read().iter() {
            if s.confirmed() {
                confirmed += 1;
            } else {
                pending += 1;
            }
        }
        out.insert("SubscriptionsConfirmed".into(), confirmed.to_string());
        out.insert("SubscriptionsPending".into(), pending.to_string());
        out.insert(
            "SubscriptionsDeleted".into(),
            topic
                .deleted_subscriptions
                .load(Ordering::Relaxed)
                .to_string(),
        );
        out.insert(
            "EffectiveDeliveryPolicy".into(),
            topic.delivery.read().effective_json(),
        );
        if topic.fifo {
            out.insert("FifoTopic".into(), "true".into());
            out.entry("ContentBasedDeduplication".into())
                .or_insert_with(|| "false".into());
        }
        Ok(out)
    }

    /// `SetTopicAttributes`.
    pub async fn set_topic_attribute(&self, arn: &str, name: &str, value: &str) -> Result<()> {
        let topic = self.topic_by_arn(arn)?;
        validate_attribute(topic.fifo, name, value, false)?;
        let _defs = self.defs.lock().await;
        let mut def = topic.def.lock().clone();
        if value.is_empty()
            && matches!(
                name,
                "Policy"
                    | "DeliveryPolicy"
                    | "DataProtectionPolicy"
                    | "ArchivePolicy"
                    | "KmsMasterKeyId"
            )
        {
            def.attributes.remove(name);
        } else {
            def.attributes.insert(name.to_string(), value.to_string());
        }
        self.put_meta(TOPICS_TABLE, &topic.name, &def).await?;
        if name == "DeliveryPolicy" {
            let policy = TopicDeliveryPolicy::parse(value)?;
            *topic.delivery.write() = policy;
            for s in topic.subscriptions.read().iter() {
                let own = s.def.lock().attributes.get("DeliveryPolicy").cloned();
                if let Ok(p) = topic.delivery.read().for_subscription(own.as_deref()) {
                    *s.policy.write() = p;
                }
            }
        }
        *topic.def.lock() = def;
        Ok(())
    }

    /// The topic a tagging call names (`ResourceNotFound` when there is none).
    fn tagged(&self, arn: &str) -> Result<Arc<Topic>> {
        match self.topic_by_arn(arn) {
            Err(TopicError::NotFound(_)) => Err(TopicError::ResourceNotFound(
                "Resource does not exist".into(),
            )),
            Err(TopicError::InvalidParameter(_)) => Err(TopicError::invalid("ResourceArn")),
            other => other,
        }
    }

    /// `TagResource`.
    pub async fn tag(&self, arn: &str, tags: BTreeMap<String, String>) -> Result<()> {
        let topic = self.tagged(arn)?;
        validate_tags(&tags)?;
        let _defs = self.defs.lock().await;
        let mut def = topic.def.lock().clone();
        def.tags.extend(tags);
        if def.tags.len() > MAX_TAGS {
            return Err(TopicError::TagLimitExceeded(
                "Could not complete request: tag quota of per resource exceeded".into(),
            ));
        }
        self.put_meta(TOPICS_TABLE, &topic.name, &def).await?;
        *topic.def.lock() = def;
        Ok(())
    }

    /// `UntagResource`.
    pub async fn untag(&self, arn: &str, keys: &[String]) -> Result<()> {
        let topic = self.tagged(arn)?;
        let _defs = self.defs.lock().await;
        let mut def = topic.def.lock().clone();
        for k in keys {
            def.tags.remove(k);
        }
        self.put_meta(TOPICS_TABLE, &topic.name, &def).await?;
        *topic.def.lock() = def;
        Ok(())
    }

    /// `ListTagsForResource`.
    pub fn tags(&self, arn: &str) -> Result<BTreeMap<String, String>> {
        Ok(self.tagged(arn)?.def.lock().tags.clone())
    }

    /// `AddPermission`: a statement labelled `label` in the topic's policy.
    pub async fn add_permission(
        &self,
        arn: &str,
        label: &str,
        accounts: &[String],
        actions: &[String],
    ) -> Result<()> {
        let topic = self.topic_by_arn(arn)?;
        if label.is_empty()
            || label.len() > 100
            || !label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(TopicError::invalid("Label"));
        }
        if accounts.is_empty() {
            return Err(TopicError::invalid("AWSAccountId"));
        }
        if actions.is_empty() {
            return Err(TopicError::invalid("ActionName"));
        }
        const ACTIONS: &[&str] = &[
            "GetTopicAttributes",
            "SetTopicAttributes",
            "AddPermission",
            "RemovePermission",
            "DeleteTopic",
            "Subscribe",
            "ListSubscriptionsByTopic",
            "Publish",
            "Receive",
            "*",
        ];
        if let Some(bad) = actions.iter().find(|a| !ACTIONS.contains(&a.as_str())) {
            return Err(TopicError::invalid(format!(
                "Policy statement action out of service scope: {}",
                bad.chars().take(64).collect::<String>()
            )));
        }
        let _defs = self.defs.lock().await;
        let mut def = topic.def.lock().clone();
        let mut policy: Value = def
            .attributes
            .get("Policy")
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_else(|| {
                serde_json::from_str(&self.default_policy(&topic.arn)).unwrap_or(Value::Null)
            });
        let Some(statements) = policy.get_mut("Statement").and_then(Value::as_array_mut) else {
            return Err(TopicError::invalid(
                "Policy: the topic's policy has no Statement list",
            ));
        };
        if statements
            .iter()
            .any(|s| s.get("Sid").and_then(Value::as_str) == Some(label))
        {
            return Err(TopicError::invalid("Statement already exists"));
        }
        let principals: Vec<String> = accounts
            .iter()
            .map(|a| format!("arn:aws:iam::{a}:root"))
            .collect();
        let actions: Vec<String> = actions.iter().map(|a| format!("SNS:{a}")).collect();
        statements.push(json!({
            "Sid": label,
            "Effect": "Allow",
            "Principal": {"AWS": principals},
            "Action": actions,
            "Resource": topic.arn,
        }));
        def.attributes.insert("Policy".into(), policy.to_string());
        self.put_meta(TOPICS_TABLE, &topic.name, &def).await?;
        *topic.def.lock() = def;
        Ok(())
    }

    /// `RemovePermission`.
    pub async fn remove_permission(&self, arn: &str, label: &str) -> Result<()> {
        let topic = self.topic_by_arn(arn)?;
        if label.is_empty() {
            return Err(TopicError::invalid("Label"));
        }
        let _defs = self.defs.lock().await;
        let mut def = topic.def.lock().clone();
        let Some(mut policy) = def
            .attributes
            .get("Policy")
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
        else {
            return Ok(());
        };
        if let Some(statements) = policy.get_mut("Statement").and_then(Value::as_array_mut) {
            statements.retain(|s| s.get("Sid").and_then(Value::as_str) != Some(label));
        }
        def.attributes.insert("Policy".into(), policy.to_string());
        self.put_meta(TOPICS_TABLE, &topic.name, &def).await?;
        *topic.def.lock() = def;
        Ok(())
    }
}
