//! Calls to SQS and SNS upstreams, signed with SigV4 by `aws-sigv4` (the AWS SDK for Rust's
//! signer): SQS `SendMessageBatch` in AWS JSON 1.0, SNS `PublishBatch` in the query protocol
//! (SNS has no JSON protocol). Only what a bridge needs; answers are read for the per-entry
//! failures both batch calls report with a 200.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use serde_json::{json, Map, Value};

use crate::config::BridgeConfig;

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Credentials to sign with.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The credentials of a bridge: its configuration, then `AWS_ACCESS_KEY_ID` /
/// `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, then the shared credentials file
/// (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`) with the configured profile,
/// `AWS_PROFILE` or `default` — the order the AWS SDKs use.
pub(crate) fn credentials(c: &BridgeConfig) -> Result<Credentials, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if !c.access_key_id.is_empty() {
        return Ok(Credentials {
            access_key_id: c.access_key_id.clone(),
            secret_access_key: c.secret_access_key.clone(),
            session_token: (!c.session_token.is_empty()).then(|| c.session_token.clone()),
        });
    }
    if let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: env("AWS_SESSION_TOKEN"),
        });
    }
    let file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")))
        .ok_or("no credentials: set access_key_id, AWS_ACCESS_KEY_ID or a credentials file")?;
    let profile = if c.profile.is_empty() {
        env("AWS_PROFILE").unwrap_or_else(|| "default".into())
    } else {
        c.profile.clone()
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("no credentials: {}: {e}", file.display()))?;
    profile_credentials(&text, &profile).ok_or_else(|| {
        format!(
            "no credentials for profile {profile:?} in {}",
            file.display()
        )
    })
}

/// Reads one profile of a shared credentials file (INI).
fn profile_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let mut current = String::new();
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_string();
            continue;
        }
        if current != profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(Credentials {
        access_key_id: id?,
        secret_access_key: secret?,
        session_token: token,
    })
}

/// One entry of a batch, ready for either service.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outgoing {
    pub body: String,
    /// Name → (data type, string value or base64 of a binary value, binary?).
    pub attributes: Vec<(String, String, String, bool)>,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
}

/// What a batch call reports per entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored upstream.
    Done,
    /// Refused for what it is (would fail again): dropped.
    Refused(String),
    /// Failed on the service's side: to be sent again.
    Retry(String),
}

/// A signed client of one region.
#[derive(Clone)]
pub(crate) struct Aws {
    http: outpost_net::outbound::OutboundClient<
        hyper_util::client::legacy::connect::dns::GaiResolver,
    >,
    credentials: Credentials,
    region: String,
}

impl std::fmt::Debug for Aws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aws").field("region", &self.region).finish()
    }
}

impl Aws {
    pub fn new(c: &BridgeConfig) -> Result<Aws, String> {
        let ca = c.tls.as_ref().map_or("", |t| t.ca_file.as_str());
        let http = outpost_net::outbound::outbound_client(
            hyper_util::client::legacy::connect::dns::GaiResolver::new(),
            crate::tls::roots(ca)?,
            Duration::from_secs(10),
        )
        .map_err(|e| e.to_string())?;
        Ok(Aws {
            http,
            credentials: credentials(c)?,
            region: c.region.clone(),
        })
    }

    /// One signed POST; the status and the body of the answer.
    async fn call(
        &self,
        service: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), String> {
        let uri: http::Uri = url.parse().map_err(|_| format!("invalid URL {url:?}"))?;
        let host = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| format!("no host in {url:?}"))?;
        let c = &self.credentials;
        let identity: aws_smithy_runtime_api::client::identity::Identity =
            aws_credential_types::Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone(),
                None,
                "outpost-bridge",
            )
            .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let mut all: Vec<(&str, &str)> = vec![("host", &host)];
        all.extend_from_slice(headers);
        let signable =
            SignableRequest::new("POST", url, all.iter().copied(), SignableBody::Bytes(&body))
                .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("signing: {e}"))?
            .into_parts();
        let mut req = http::Request::post(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        instructions.apply_to_request_http1x(&mut req);
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                msg
            })?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer from {host} within {CALL_TIMEOUT:?}"))?
    }

    /// `SendMessageBatch` of up to 10 entries; one outcome per entry, or an error for the whole
    /// call (nothing was stored).
    pub async fn send_batch(
        &self,
        endpoint: &str,
        queue_url: &str,
        entries: &[Outgoing],
    ) -> Result<Vec<Outcome>, String> {
        let list: Vec<Value> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut entry = Map::new();
                entry.insert("Id".into(), json!(i.to_string()));
                entry.insert("MessageBody".into(), json!(e.body));
                if !e.attributes.is_empty() {
                    let attrs: Map<String, Value> = e
                        .attributes
                        .iter()
                        .map(|(name, ty, value, binary)| {
                            let field = if *binary {
                                "BinaryValue"
                            } else {
                                "StringValue"
                            };
                            (name.clone(), json!({ "DataType": ty, field: value }))
                        })
                        .collect();
                    entry.insert("MessageAttributes".into(), Value::Object(attrs));
                }
                if let Some(g) = &e.group_id {
                    entry.insert("MessageGroupId".into(), json!(g));
                }
                if let Some(d) = &e.dedup_id {
                    entry.insert("MessageDeduplicationId".into(), json!(d));
                }
                Value::Object(entry)
            })
            .collect();
        let body = json!({ "QueueUrl": queue_url, "Entries": list });
        let (status, answer) = self
            .call(
                "sqs",
                endpoint,
                &[
                    ("content-type", "application/x-amz-json-1.0"),
                    ("x-amz-target", "AmazonSQS.SendMessageBatch"),
                ],
                body.to_string().into_bytes(),
            )
            .await?;
        let v: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        if status != 200 {
            let kind = v["__type"].as_str().unwrap_or("");
            let msg = v["message"]
                .as_str()
                .or(v["Message"].as_str())
                .unwrap_or("");
            return Err(format!("SendMessageBatch: HTTP {status} {kind} {msg}"));
        }
        let mut out = vec![Outcome::Retry("missing from the answer".into()); entries.len()];
        for s in v["Successful"].as_array().into_iter().flatten() {
            if let Some(i) = s["Id"].as_str().and_then(|i| i.parse::<usize>().ok()) {
                if let Some(slot) = out.get_mut(i) {
                    *slot = Outcome::Done;
                }
            }
        }
        for f in v["Failed"].as_array().into_iter().flatten() {
            if let Some(i) = f["Id"].as_str().and_then(|i| i.parse::<usize>().ok()) {
                let why = format!(
                    "{} {}",
                    f["Code"].as_str().unwrap_or(""),
                    f["Message"].as_str().unwrap_or("")
                );
                if let Some(slot) = out.get_mut(i) {
                    *slot = if f["SenderFault"].as_bool() == Some(true) {
                        Outcome::Refused(why)
                    } else {
                        Outcome::Retry(why)
                    };
                }
            }
        }
        Ok(out)
    }

    /// SNS `PublishBatch` of up to 10 entries.
    pub async fn publish_batch(
        &self,
        endpoint: &str,
        topic_arn: &str,
        entries: &[Outgoing],
    ) -> Result<Vec<Outcome>, String> {
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", "PublishBatch");
            form.append_pair("Version", "2010-03-31");
            form.append_pair("TopicArn", topic_arn);
            for (i, e) in entries.iter().enumerate() {
                let p = format!("PublishBatchRequestEntries.member.{}", i + 1);
                form.append_pair(&format!("{p}.Id"), &i.to_string());
                form.append_pair(&format!("{p}.Message"), &e.body);
                for (j, (name, ty, value, binary)) in e.attributes.iter().enumerate() {
                    let a = format!("{p}.MessageAttributes.entry.{}", j + 1);
                    form.append_pair(&format!("{a}.Name"), name);
                    form.append_pair(&format!("{a}.Value.DataType"), ty);
                    let field = if *binary {
                        "BinaryValue"
                    } else {
                        "StringValue"
                    };
                    form.append_pair(&format!("{a}.Value.{field}"), value);
                }
                if let Some(g) = &e.group_id {
                    form.append_pair(&format!("{p}.MessageGroupId"), g);
                }
                if let Some(d) = &e.dedup_id {
                    form.append_pair(&format!("{p}.MessageDeduplicationId"), d);
                }
            }
            form.finish().into_bytes()
        };
        let (status, answer) = self
            .call(
                "sns",
                endpoint,
                &[(
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                )],
                body,
            )
            .await?;
        let text = String::from_utf8_lossy(&answer);
        if status != 200 {
            let code = xml_values(&text, "Code")
                .into_iter()
                .next()
                .unwrap_or_default();
            let msg = xml_values(&text, "Message")
                .into_iter()
                .next()
                .unwrap_or_default();
            return Err(format!("PublishBatch: HTTP {status} {code} {msg}"));
        }
        let mut out = vec![Outcome::Retry("missing from the answer".into()); entries.len()];
        if let Some(ok) = section(&text, "Successful") {
            for id in xml_values(ok, "Id") {
                if let Some(slot) = id.parse::<usize>().ok().and_then(|i| out.get_mut(i)) {
                    *slot = Outcome::Done;
                }
            }
        }
        if let Some(failed) = section(&text, "Failed") {
            for member in failed.split("<member>").skip(1) {
                let id = xml_values(member, "Id")
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                let code = xml_values(member, "Code")
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                let sender = xml_values(member, "SenderFault")
                    .first()
                    .map(String::as_str)
                    == Some("true");
                if let Some(slot) = id.parse::<usize>().ok().and_then(|i| out.get_mut(i)) {
                    *slot = if sender {
                        Outcome::Refused(code)
                    } else {
                        Outcome::Retry(code)
                    };
                }
            }
        }
        Ok(out)
    }
}

/// The text between `<tag>` and `</tag>` (the first such element).
fn section<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    Some(&xml[start..end])
}

/// Every `<tag>value</tag>` value, XML entities decoded.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let Some(j) = rest.find(&close) else { break };
        out.push(
            rest[..j]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &rest[j + close.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_credentials_profiles() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[other]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=T\n";
        let d = profile_credentials(text, "default").expect("default");
        assert_eq!(
            (d.access_key_id.as_str(), d.secret_access_key.as_str()),
            ("A", "B")
        );
        let o = profile_credentials(text, "other").expect("other");
        assert_eq!(o.session_token.as_deref(), Some("T"));
        assert!(profile_credentials(text, "missing").is_none());
    }

    #[test]
    fn batch_answers_are_read() {
        let xml = "<PublishBatchResponse><PublishBatchResult><Successful><member><Id>0</Id><MessageId>x</MessageId></member></Successful><Failed><member><Id>1</Id><Code>InvalidParameter</Code><SenderFault>true</SenderFault></member></Failed></PublishBatchResult></PublishBatchResponse>";
        assert_eq!(
            xml_values(section(xml, "Successful").expect("ok"), "Id"),
            vec!["0"]
        );
        let failed = section(xml, "Failed").expect("failed");
        assert_eq!(xml_values(failed, "Code"), vec!["InvalidParameter"]);
    }
}
