//! One handler per SQS operation: read parameters from the JSON request shape, call the engine,
//! build the JSON result shape (which the query protocol renders as XML).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use outpost_queues::message::{self, decode_attributes, AttributeValue, Attributes};
use outpost_queues::{QueueError, Queues, ReceiveRequest, ReceivedMessage, SendRequest};
use serde_json::{json, Map, Value};

use super::params::{self, check_batch_ids, required};

/// What a handler needs besides its parameters.
pub struct Ctx {
    /// The engine.
    pub queues: Arc<Queues>,
    /// `http://host:port` as the caller addressed us, for queue URLs.
    pub base_url: String,
}

impl Ctx {
    fn url(&self, name: &str) -> String {
        format!(
            "{}/{}/{}",
            self.base_url,
            self.queues.config().account,
            name
        )
    }
}

/// The queue name in a queue URL (its last path segment).
pub fn queue_name(url: &str) -> Result<String, QueueError> {
    let path = match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            rest.find('/').map_or("", |j| &rest[j..])
        }
        None => url,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.rsplit('/')
        .find(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or(QueueError::QueueDoesNotExist)
}

fn queue_param(p: &Value) -> Result<String, QueueError> {
    queue_name(required(p, "QueueUrl")?)
}

/// Runs operation `op`. Unknown operations are `None`.
pub async fn call(ctx: &Ctx, op: &str, p: &Value) -> Option<Result<Value, QueueError>> {
    let q = &ctx.queues;
    Some(match op {
        "CreateQueue" => create_queue(ctx, p).await,
        "GetQueueUrl" => (|| {
            let name = required(p, "QueueName")?;
            q.queue(name)?;
            Ok(json!({"QueueUrl": ctx.url(name)}))
        })(),
        "DeleteQueue" => match queue_param(p) {
            Ok(name) => q.delete_queue(&name).await.map(|()| json!({})),
            Err(e) => Err(e),
        },
        "ListQueues" => (|| {
            let prefix = params::string(p, "QueueNamePrefix")?.unwrap_or_default();
            let token = params::string(p, "NextToken")?;
            let (names, next) =
                q.list_queues(&prefix, params::int(p, "MaxResults")?, token.as_deref())?;
            let mut out = Map::new();
            if !names.is_empty() {
                out.insert(
                    "QueueUrls".into(),
                    names.iter().map(|n| Value::String(ctx.url(n))).collect(),
                );
            }
            if let Some(t) = next {
                out.insert("NextToken".into(), Value::String(t));
            }
            Ok(Value::Object(out))
        })(),
        "GetQueueAttributes" => (|| {
            let name = queue_param(p)?;
            let mut names = params::list(p, "AttributeNames")?;
            if names.is_empty() {
                names.push("All".into());
            }
            let attrs = q.get_attributes(&name, &names)?;
            if attrs.is_empty() {
                return Ok(json!({}));
            }
            Ok(json!({"Attributes": attrs}))
        })(),
        "SetQueueAttributes" => match (queue_param(p), params::map(p, "Attributes")) {
            (Ok(name), Ok(attrs)) => q.set_attributes(&name, &attrs).await.map(|()| json!({})),
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
        "PurgeQueue" => match queue_param(p) {
            Ok(name) => q.purge(&name).await.map(|()| json!({})),
            Err(e) => Err(e),
        },
        "TagQueue" => match (queue_param(p), params::map(p, "Tags")) {
            (Ok(name), Ok(tags)) => q.tag(&name, &tags, &[]).await.map(|()| json!({})),
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
        "UntagQueue" => match (queue_param(p), params::list(p, "TagKeys")) {
            (Ok(name), Ok(keys)) => q
                .tag(&name, &BTreeMap::new(), &keys)
                .await
                .map(|()| json!({})),
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
        "ListQueueTags" => (|| {
            let tags = q.tags(&queue_param(p)?)?;
            Ok(if tags.is_empty() {
                json!({})
            } else {
                json!({"Tags": tags})
            })
        })(),
        "AddPermission" => add_permission(ctx, p).await,
        "RemovePermission" => match (queue_param(p), required(p, "Label")) {
            (Ok(name), Ok(label)) => q.remove_permission(&name, label).await.map(|()| json!({})),
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
        "SendMessage" => send_message(ctx, p).await,
        "SendMessageBatch" => send_message_batch(ctx, p).await,
        "ReceiveMessage" => receive_message(ctx, p).await,
        "DeleteMessage" => match (queue_param(p), required(p, "ReceiptHandle")) {
            (Ok(name), Ok(handle)) => q.delete_message(&name, handle).await.map(|()| json!({})),
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
        "DeleteMessageBatch" => delete_message_batch(ctx, p).await,
        "ChangeMessageVisibility" => change_visibility(ctx, p).await,
        "ChangeMessageVisibilityBatch" => change_visibility_batch(ctx, p).await,
        "ListDeadLetterSourceQueues" => (|| {
            let name = queue_param(p)?;
            let mut names = q.dead_letter_sources(&name)?;
            names.sort();
            let (names, next) = paginate(names, p)?;
            let mut out = Map::new();
            out.insert(
                "queueUrls".into(),
                names.iter().map(|n| Value::String(ctx.url(n))).collect(),
            );
            if let Some(t) = next {
                out.insert("NextToken".into(), Value::String(t));
            }
            Ok(Value::Object(out))
        })(),
        "StartMessageMoveTask" => (|| {
            let source = required(p, "SourceArn")?;
            let dest = params::string(p, "DestinationArn")?;
            let rate = params::int(p, "MaxNumberOfMessagesPerSecond")?;
            let handle = q.start_move_task(source, dest.as_deref(), rate)?;
            Ok(json!({"TaskHandle": handle}))
        })(),
        "CancelMessageMoveTask" => (|| {
            let moved = q.cancel_move_task(required(p, "TaskHandle")?)?;
            Ok(json!({"ApproximateNumberOfMessagesMoved": moved}))
        })(),
        "ListMessageMoveTasks" => (|| {
            let tasks =
                q.list_move_tasks(required(p, "SourceArn")?, params::int(p, "MaxResults")?)?;
            let results: Vec<Value> = tasks
                .into_iter()
                .map(|t| {
                    let mut o = Map::new();
                    if let Some(h) = t.handle {
                        o.insert("TaskHandle".into(), h.into());
                    }
                    o.insert("Status".into(), t.status.into());
                    o.insert("SourceArn".into(), t.source_arn.into());
                    if let Some(d) = t.destination_arn {
                        o.insert("DestinationArn".into(), d.into());
                    }
                    if let Some(r) = t.max_per_second {
                        o.insert("MaxNumberOfMessagesPerSecond".into(), r.into());
                    }
                    o.insert("ApproximateNumberOfMessagesMoved".into(), t.moved.into());
                    o.insert("ApproximateNumberOfMessagesToMove".into(), t.to_move.into());
                    if let Some(f) = t.failure_reason {
                        o.insert("FailureReason".into(), f.into());
                    }
                    o.insert("StartedTimestamp".into(), t.started_ms.into());
                    Value::Object(o)
                })
                .collect();
            Ok(json!({"Results": results}))
        })(),
        _ => return None,
    })
}

fn paginate(names: Vec<String>, p: &Value) -> Result<(Vec<String>, Option<String>), QueueError> {
    let max = params::int(p, "MaxResults")?;
    let start = match params::string(p, "NextToken")? {
        Some(t) if !t.is_empty() => t
            .parse::<usize>()
            .map_err(|_| QueueError::InvalidParameterValue("Invalid NextToken value.".into()))?,
        _ => 0,
    };
    let Some(max) = max else {
        return Ok((names.into_iter().skip(start).take(1000).collect(), None));
    };
    if !(1..=1000).contains(&max) {
        return Err(QueueError::InvalidParameterValue(format!(
            "Value {max} for parameter MaxResults is invalid. Reason: must be between 1 and 1000."
        )));
    }
    let end = start + max as usize;
    let next = (names.len() > end).then(|| end.to_string());
    Ok((
        names.into_iter().skip(start).take(max as usize).collect(),
        next,
    ))
}

async fn create_queue(ctx: &Ctx, p: &Value) -> Result<Value, QueueError> {
    let name = required(p, "QueueName")?;
    let attrs = params::map(p, "Attributes")?;
    // JSON carries `tags`; the query protocol `Tag.N.Key`, which arrives as `Tags`.
    let mut tags = params::map(p, "tags")?;
    tags.extend(params::map(p, "Tags")?);
    ctx.queues.create_queue(name, &attrs, &tags).await?;
    Ok(json!({"QueueUrl": ctx.url(name)}))
}

async fn add_permission(ctx: &Ctx, p: &Value) -> Result<Value, QueueError> {
    let name = queue_param(p)?;
    let label = required(p, "Label")?;
    let accounts = params::list(p, "AWSAccountIds")?;
    let actions = params::list(p, "Actions")?;
    ctx.queues
        .add_permission(&name, label, &accounts, &actions)
        .await?;
    Ok(json!({}))
}

fn send_request(p: &Value) -> Result<SendRequest, QueueError> {
    let body = match p.get("MessageBody") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err(QueueError::MissingParameter("MessageBody".into())),
        Some(_) => {
            return Err(QueueError::InvalidParameterValue(
                "Value for parameter MessageBody is invalid.".into(),
            ))
        }
    };
    let delay = params::int(p, "DelaySeconds")?;
    if let Some(d) = delay.filter(|d| !(0..=900).contains(d)) {
        return Err(QueueError::InvalidParameterValue(format!(
            "Value {d} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900."
        )));
    }
    let system = params::message_attributes(p, "MessageSystemAttributes")?;
    let mut trace_header = None;
    for (name, attr) in &system {
        match (name.as_str(), &attr.value) {
            ("AWSTraceHeader", AttributeValue::String(s)) if attr.data_type == "String" => {
                trace_header = Some(s.clone());
            }
            _ => {
                return Err(QueueError::InvalidParameterValue(format!(
                    "Message system attribute name '{name}' is invalid."
                )))
            }
        }
    }
    Ok(SendRequest {
        body,
        delay_seconds: delay.map(|d| d as u32),
        attributes: params::message_attributes(p, "MessageAttributes")?,
        trace_header,
        group_id: params::string(p, "MessageGroupId")?,
        dedup_id: params::string(p, "MessageDeduplicationId")?,
    })
}

fn send_result(r: outpost_queues::SendResult, id: Option<&str>) -> Value {
    let mut o = Map::new();
    if let Some(id) = id {
        o.insert("Id".into(), id.into());
    }
    o.insert("MessageId".into(), r.message_id.into());
    o.insert("MD5OfMessageBody".into(), r.md5_body.into());
    if let Some(m) = r.md5_attributes {
        o.insert("MD5OfMessageAttributes".into(), m.into());
    }
    if let Some(m) = r.md5_system_attributes {
        o.insert("MD5OfMessageSystemAttributes".into(), m.into());
    }
    if let Some(s) = r.sequence_number {
        o.insert("SequenceNumber".into(), s.into());
    }
    Value::Object(o)
}

fn failure(id: &str, e: &QueueError) -> Value {
    json!({
        "Id": id,
        "SenderFault": e.sender_fault(),
        "Code": e.code(),
        "Message": e.to_string(),
    })
}

async fn send_message(ctx: &Ctx, p: &Value) -> Result<Value, QueueError> {
    let name = queue_param(p)?;
    let req = send_request(p)?;
    let r = ctx.queues.send(&name, req).await?;
    Ok(send_result(r, None))
}

async fn send_message_batch(ctx: &Ctx, p: &Value) -> Result<Value, QueueError> {
    let name = queue_param(p)?;
    let (reqs, order, mut failed) = read_batch(params::entries(p, "Entries")?, send_request)?;
    let total: usize = reqs
        .iter()
        .map(|r| message::message_size(&r.body, &r.attributes))
        .sum();
    if total > outpost_queues::MAX_MESSAGE_SIZE as usize {
        return Err(QueueError::BatchRequestTooLong(
            outpost_queues::MAX_MESSAGE_SIZE as usize,
        ));
    }
    let results = if reqs.is_empty() {
        Vec::new()
    } else {
        ctx.queues.send_batch(&name, reqs).await?
    };
    let mut ok = Vec::new();
    for (id, r) in order.iter().zip(results) {
        match r {
            Ok(r) => ok.push(send_result(r, Some(id))),
            Err(e) => failed.push(failure(id, &e)),
        }
    }
    Ok(json!({"Successful": ok, "Failed": failed}))
}

const SYSTEM_ATTRIBUTES: &[&str] = &[
    "All",
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageDeduplicationId",
    "MessageGroupId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
];

async fn receive_message(ctx: &Ctx, p: &Value) -> Result<Value, QueueError> {
    let name = queue_param(p)?;
    let mut wanted = params::list(p, "AttributeNames")?;
    wanted.extend(params::list(p, "MessageSystemAttributeNames")?);
    if let Some(bad) = wanted
        .iter()
        .find(|n| !SYSTEM_ATTRIBUTES.contains(&n.as_str()))
    {
        return Err(QueueError::InvalidAttributeName(format!(
            "Unknown Attribute {bad}."
        )));
    }
    let attr_names = params::list(p, "MessageAttributeNames")?;
    let req = ReceiveRequest {
        max_messages: params::int(p, "MaxNumberOfMessages")?,
        visibility_timeout: params::int(p, "VisibilityTimeout")?,
        wait_seconds: params::int(p, "WaitTimeSeconds")?,
        attempt_id: params::string(p, "ReceiveRequestAttemptId")?,
    };
    let got = ctx.queues.receive(&name, req).await?;
    if got.is_empty() {
        return Ok(json!({}));
    }
    let account = ctx.queues.config().account.clone();
    let messages: Vec<Value> = got
        .into_iter()
        .map(|m| render_message(m, &wanted, &attr_names, &account))
        .collect();
    Ok(json!({"Messages": messages}))
}

fn attribute_selected(name: &str, selectors: &[String]) -> bool {
    selectors.iter().any(|s| {
        s == "All"
            || s == ".*"
            || s == name
            || s.strip_suffix(".*").is_some_and(|prefix| {
                name.starts_with(prefix) && name[prefix.len()..].starts_with('.')
            })
    })
}

fn render_message(
    m: ReceivedMessage,
    wanted: &[String],
    attr_names: &[String],
    account: &str,
) -> Value {
    let msg = &m.message;
    let body = String::from_utf8_lossy(&msg.body).into_owned();
    let mut o = Map::new();
    o.insert("MessageId".into(), msg.message_id().into());
    o.insert("ReceiptHandle".into(), m.receipt.clone().into());
    o.insert("MD5OfBody".into(), message::md5_hex(&msg.body).into());
    o.insert("Body".into(), body.into());
    let all = wanted.iter().any(|w| w == "All");
    let want = |n: &str| all || wanted.iter().any(|w| w == n);
    let mut sys = Map::new();
    let mut put = |n: &str, v: String| {
        if want(n) {
            sys.insert(n.into(), v.into());
        }
    };
    put("SenderId", account.to_string());
    put("SentTimestamp", msg.sent_ms.to_string());
    put("ApproximateReceiveCount", m.receive_count.to_string());
    put(
        "ApproximateFirstReceiveTimestamp",
        m.first_receive_ms.to_string(),
    );
    if msg.sequence != 0 {
        put("SequenceNumber", format!("{:020}", msg.sequence));
    }
    if let Some(d) = &msg.dedup {
        put("MessageDeduplicationId", d.clone());
    }
    if let Some(g) = &msg.group {
        put("MessageGroupId", g.clone());
    }
    if let Some(t) = &msg.trace_header {
        put("AWSTraceHeader", t.clone());
    }
    if let Some(s) = &msg.dead_letter_source {
        put("DeadLetterQueueSourceArn", s.clone());
    }
    if !sys.is_empty() {
        o.insert("Attributes".into(), Value::Object(sys));
    }
    let attrs = decode_attributes(&msg.attributes).unwrap_or_default();
    let selected: Attributes = attrs
        .into_iter()
        .filter(|(k, _)| attribute_selected(k, attr_names))
        .collect();
    if !selected.is_empty() {
        o.insert(
            "MD5OfMessageAttributes".into(),
            message::md5_hex(&message::encode_attributes(&selected)).into(),
        );
        let mut out = Map::new();
        for (k, a) in selected {
            let mut v = Map::new();
            match a.value {
                AttributeValue::String(s) => {
                    v.insert("StringValue".into(), s.into());
                }
                AttributeValue::Binary(b) => {
                    v.insert("BinaryValue".into(), STANDARD.encode(&b).into());
                }
            }
            v.insert("DataType".into(), a.data_type.into());
            out.insert(k, Value::Object(v));
        }
        o.insert("MessageAttributes".into(), Value::Object(out));
    }
    Value::Object(o)
}

/// A batch's entries as read: the parsed ones with their ids, in order, and the failures of those
/// that could not be read.
type ReadBatch<T> = (Vec<T>, Vec<String>, Vec<Value>);

/// Reads a batch's entries with `parse`.
fn read_batch<T>(
    items: &[Value],
    parse: impl Fn(&Value) -> Result<T, QueueError>,
) -> Result<ReadBatch<T>, QueueError> {
    let ids = check_batch_ids(items)?;
    let (mut parsed, mut order, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for (id, item) in ids.into_iter().zip(items) {
        match parse(item) {
            Ok(t) => {
                parsed.push(t);
                order.push(id);
            }
            Err(e) => failed.push(failure(&id, &e)),
        }
    }
    Ok((parsed, order, failed))
}

/// The `Successful` / `Failed` answer of a batch: the engine's results for the entries in `ids`,
/// plus the entries that already failed while being read.
fn batch_answer(
    ids: &[String],
    results: Vec<Result<(), QueueError>>,
    mut failed: Vec<Value>,
) -> Value {
    let mut ok = Vec::new();
    for (id, r) in ids.iter().zip(results) {
        match r {
            Ok(()) => ok.push(json!({"Id": id})),
            Err(e) => failed.push(failure(id, &e)),
        }
    }
    json!({"Successful": ok, "Failed": failed})
}

async fn delete_message_batch(ctx: &Ctx, p: &Value) -> Result<Value, QueueError> {
    let name = queue_param(p)?;
    let (handles, order, failed) = read_batch(params::entries(p, "Entries")?, |item| {
        required(item, "ReceiptHandle").map(str::to_string)
    })?;
    let results = ctx.queues.delete_batch(&name, &handles).await?;
    Ok(batch_answer(&order, results, failed))
}

fn visibility_timeout(p: &Value) -> Result<i64, QueueError> {
    params::int(p, "VisibilityTimeout")?
        .ok_or_else(|| QueueError::MissingParameter("VisibilityTimeout".into()))
}

async fn change_visibility(ctx: &Ctx, p: &Value) -> Result<Value, QueueError> {
    let name = queue_param(p)?;
    let handle = required(p, "ReceiptHandle")?;
    ctx.queues
        .change_visibility(&name, handle, visibility_timeout(p)?)
        .await?;
    Ok(json!({}))
}

async fn change_visibility_batch(ctx: &Ctx, p: &Value) -> Result<Value, QueueError> {
    let name = queue_param(p)?;
    let (entries, order, failed) = read_batch(params::entries(p, "Entries")?, |item| {
        Ok((
            required(item, "ReceiptHandle")?.to_string(),
            visibility_timeout(item)?,
        ))
    })?;
    let results = ctx.queues.change_visibility_batch(&name, &entries).await?;
    Ok(batch_answer(&order, results, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_come_from_urls() {
        assert_eq!(
            queue_name("http://localhost:9324/000000000000/jobs").unwrap(),
            "jobs"
        );
        assert_eq!(queue_name("http://h/1/jobs.fifo/").unwrap(), "jobs.fifo");
        assert_eq!(queue_name("jobs").unwrap(), "jobs");
        assert!(queue_name("http://h").is_err());
    }

    #[test]
    fn attribute_selectors() {
        let s = vec!["color".to_string(), "size.*".to_string()];
        assert!(attribute_selected("color", &s));
        assert!(attribute_selected("size.x", &s));
        assert!(!attribute_selected("sizes", &s));
        assert!(attribute_selected("any", &["All".to_string()]));
    }
}
