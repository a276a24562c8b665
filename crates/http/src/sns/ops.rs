//! One handler per SNS operation: read the parameters from the request tree, call the engine,
//! build the result tree that `xml::render` writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use outpost_topics::message::{Attribute, Attributes};
use outpost_topics::{
    PublishEntry, PublishRequest, PublishResult, SubscriptionSummary, TopicError, Topics,
};
use serde_json::{json, Map, Value};

type Result<T> = std::result::Result<T, TopicError>;

fn string(p: &Value, key: &str) -> Result<Option<String>> {
    match p.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TopicError::invalid(key)),
    }
}

fn required(p: &Value, key: &str) -> Result<String> {
    string(p, key)?.ok_or_else(|| {
        TopicError::invalid(format!("{key} Reason: no value for required parameter"))
    })
}

fn string_map(p: &Value, key: &str) -> Result<BTreeMap<String, String>> {
    match p.get(key) {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(TopicError::invalid(key)),
            })
            .collect(),
        Some(_) => Err(TopicError::invalid(key)),
    }
}

fn string_list(p: &Value, key: &str) -> Result<Vec<String>> {
    match p.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(TopicError::invalid(key)),
            })
            .collect(),
        Some(_) => Err(TopicError::invalid(key)),
    }
}

/// `Tags.member.N.Key/Value`.
fn tags(p: &Value) -> Result<BTreeMap<String, String>> {
    match p.get("Tags") {
        None => Ok(BTreeMap::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| {
                let k = required(t, "Key")?;
                let v = string(t, "Value")?.unwrap_or_default();
                Ok((k, v))
            })
            .collect(),
        Some(_) => Err(TopicError::invalid("Tags")),
    }
}

/// `MessageAttributes.entry.N.Name/Value.{DataType,StringValue,BinaryValue}`.
fn message_attributes(p: &Value) -> Result<Attributes> {
    let Some(v) = p.get("MessageAttributes") else {
        return Ok(Attributes::new());
    };
    let Value::Object(map) = v else {
        return Err(TopicError::invalid("MessageAttributes"));
    };
    let mut out = Attributes::new();
    for (name, value) in map {
        let data_type = string(value, "DataType")?.ok_or_else(|| {
            TopicError::InvalidParameterValue(format!(
                "Invalid parameter: MessageAttributes Reason: The message attribute '{name}' must contain a message attribute type."
            ))
        })?;
        let value = match (string(value, "StringValue")?, string(value, "BinaryValue")?) {
            (Some(s), None) => s,
            (None, Some(b)) => b,
            (None, None) => String::new(),
            (Some(_), Some(_)) => {
                return Err(TopicError::InvalidParameterValue(format!(
                    "Invalid parameter: MessageAttributes Reason: The message attribute '{name}' can only have one of StringValue or BinaryValue."
                )))
            }
        };
        out.insert(name.clone(), Attribute { data_type, value });
    }
    Ok(out)
}

fn entry(p: &Value, id: String) -> Result<PublishEntry> {
    Ok(PublishEntry {
        id,
        message: string(p, "Message")?,
        subject: string(p, "Subject")?,
        structure: string(p, "MessageStructure")?,
        attributes: message_attributes(p)?,
        dedup_id: string(p, "MessageDeduplicationId")?,
        group_id: string(p, "MessageGroupId")?,
    })
}

fn published(r: &PublishResult, with_id: bool) -> Value {
    let mut out = Map::new();
    if with_id {
        out.insert("Id".into(), Value::String(r.id.clone()));
    }
    out.insert("MessageId".into(), Value::String(r.message_id.clone()));
    if let Some(s) = &r.sequence_number {
        out.insert("SequenceNumber".into(), Value::String(s.clone()));
    }
    Value::Object(out)
}

fn subscriptions(list: Vec<SubscriptionSummary>, next: Option<String>) -> Value {
    let mut out = Map::new();
    out.insert(
        "Subscriptions".into(),
        list.into_iter()
            .map(|s| {
                json!({
                    "SubscriptionArn": s.arn,
                    "Owner": s.owner,
                    "Protocol": s.protocol,
                    "Endpoint": s.endpoint,
                    "TopicArn": s.topic_arn,
                })
            })
            .collect(),
    );
    if let Some(t) = next {
        out.insert("NextToken".into(), Value::String(t));
    }
    Value::Object(out)
}

fn attributes(map: BTreeMap<String, String>) -> Value {
    json!({ "Attributes": map })
}

/// Runs operation `op`. Unknown operations are `None`.
/// `who` is the caller: what it creates (a subscription) acts as it (ADR 0015).
pub async fn call(
    topics: &Arc<Topics>,
    who: &outpost_auth::Identity,
    op: &str,
    p: &Value,
) -> Option<Result<Value>> {
    Some(match op {
        "CreateTopic" => create_topic(topics, p).await,
        "DeleteTopic" => async {
            topics.delete_topic(&required(p, "TopicArn")?).await?;
            Ok(Value::Null)
        }
        .await,
        "ListTopics" => (|| {
            let (list, next) = topics.list_topics(string(p, "NextToken")?.as_deref())?;
            let mut out = Map::new();
            out.insert(
                "Topics".into(),
                list.into_iter().map(|t| json!({"TopicArn": t.arn})).collect(),
            );
            if let Some(t) = next {
                out.insert("NextToken".into(), Value::String(t));
            }
            Ok(Value::Object(out))
        })(),
        "GetTopicAttributes" => {
            required(p, "TopicArn").and_then(|arn| topics.topic_attributes(&arn).map(attributes))
        }
        "SetTopicAttributes" => async {
            let arn = required(p, "TopicArn")?;
            let name = required(p, "AttributeName")?;
            let value = string(p, "AttributeValue")?.unwrap_or_default();
            topics.set_topic_attribute(&arn, &name, &value).await?;
            Ok(Value::Null)
        }
        .await,
        "Subscribe" => async {
            let arn = required(p, "TopicArn")?;
            let protocol = required(p, "Protocol")?;
            let endpoint = string(p, "Endpoint")?;
            let return_arn = string(p, "ReturnSubscriptionArn")?.is_some_and(|v| v == "true");
            let sub = topics
                .subscribe(&arn, &protocol, endpoint.as_deref(), string_map(p, "Attributes")?, return_arn, who)
                .await?;
            Ok(json!({ "SubscriptionArn": sub }))
        }
        .await,
        "ConfirmSubscription" => async {
            let arn = required(p, "TopicArn")?;
            let token = required(p, "Token")?;
            let sub = topics.confirm(&arn, &token).await?;
            Ok(json!({ "SubscriptionArn": sub }))
        }
        .await,
        "Unsubscribe" => async {
            topics.unsubscribe(&required(p, "SubscriptionArn")?).await?;
            Ok(Value::Null)
        }
        .await,
        "ListSubscriptions" => topics
            .list_subscriptions(string(p, "NextToken").ok().flatten().as_deref())
            .map(|(l, n)| subscriptions(l, n)),
        "ListSubscriptionsByTopic" => (|| {
            let arn = required(p, "TopicArn")?;
            let (l, n) =
                topics.list_subscriptions_by_topic(&arn, string(p, "NextToken")?.as_deref())?;
            Ok(subscriptions(l, n))
        })(),
        "GetSubscriptionAttributes" => required(p, "SubscriptionArn")
            .and_then(|arn| topics.subscription_attributes(&arn).map(attributes)),
        "SetSubscriptionAttributes" => async {
            let arn = required(p, "SubscriptionArn")?;
            let name = required(p, "AttributeName")?;
            let value = string(p, "AttributeValue")?.unwrap_or_default();
            topics.set_subscription_attribute(&arn, &name, &value).await?;
            Ok(Value::Null)
        }
        .await,
        "Publish" => async {
            let req = PublishRequest {
                topic_arn: string(p, "TopicArn")?,
                target_arn: string(p, "TargetArn")?,
                phone_number: string(p, "PhoneNumber")?,
                entry: entry(p, String::new())?,
            };
            let r = topics.publish(req).await?;
            Ok(published(&r, false))
        }
        .await,
        "PublishBatch" => publish_batch(topics, p).await,
        "TagResource" => async {
            topics.tag(&required(p, "ResourceArn")?, tags(p)?).await?;
            Ok(json!({}))
        }
        .await,
        "UntagResource" => async {
            let keys = string_list(p, "TagKeys")?;
            topics.untag(&required(p, "ResourceArn")?, &keys).await?;
            Ok(json!({}))
        }
        .await,
        "ListTagsForResource" => required(p, "ResourceArn").and_then(|arn| {
            let tags = topics.tags(&arn)?;
            Ok(json!({
                "Tags": tags.into_iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>()
            }))
        }),
        "AddPermission" => async {
            let arn = required(p, "TopicArn")?;
            let label = required(p, "Label")?;
            let accounts = string_list(p, "AWSAccountId")?;
            let actions = string_list(p, "ActionName")?;
            topics.add_permission(&arn, &label, &accounts, &actions).await?;
            Ok(Value::Null)
        }
        .await,
        "RemovePermission" => async {
            let arn = required(p, "TopicArn")?;
            let label = required(p, "Label")?;
            topics.remove_permission(&arn, &label).await?;
            Ok(Value::Null)
        }
        .await,
        _ => return None,
    })
}

async fn create_topic(topics: &Arc<Topics>, p: &Value) -> Result<Value> {
    let name = required(p, "Name")?;
    let arn = topics
        .create_topic(&name, string_map(p, "Attributes")?, tags(p)?)
        .await?;
    Ok(json!({ "TopicArn": arn }))
}

async fn publish_batch(topics: &Arc<Topics>, p: &Value) -> Result<Value> {
    let arn = required(p, "TopicArn")?;
    let entries = match p.get("PublishBatchRequestEntries") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|e| entry(e, string(e, "Id")?.unwrap_or_default()))
            .collect::<Result<Vec<_>>>()?,
        Some(_) => return Err(TopicError::invalid("PublishBatchRequestEntries")),
    };
    let (ok, failed) = topics.publish_batch(&arn, entries).await?;
    Ok(json!({
        "Successful": ok.iter().map(|r| published(r, true)).collect::<Vec<_>>(),
        "Failed": failed.iter().map(|f| json!({
            "Id": f.id,
            "Code": f.code,
            "Message": f.message,
            "SenderFault": f.sender_fault,
        })).collect::<Vec<_>>(),
    }))
}
