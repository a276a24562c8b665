//! SNS load generator: drives any SNS + SQS endpoint (Outpost, moto's server mode) with concurrent
//! clients over the query protocol boto3 uses for SNS, and reports throughput, latency
//! percentiles and what was lost, with the same client for every target in the same run
//! (`benches/sns-load.sh`).
//!
//! Scenarios, each on fresh topics and queues:
//! - `Publish` to a topic with 1 SQS subscription, in SNS's signed envelope and raw, and signed
//!   with `SignatureVersion` 2 (SHA256withRSA);
//! - `Publish` to a topic with 10 SQS subscriptions (10 copies per request), both ways;
//! - `SendMessageBatch` of 10 to one queue (the same 10 copies per request, no topic), the
//!   reference the 10-queue fan-out is compared with.
//!
//! After each scenario every queue is counted: it must hold one copy of every acknowledged
//! message (`lost` is acknowledged copies missing from the queues).
//!
//! usage: sns-load [--clients N] [--seconds S] [--body BYTES] [--json FILE] NAME=URL...

use clap::Parser as _;
use outpost_benches::aws::depth;
use outpost_benches::cli::{HttpLoad, Target};
use outpost_benches::load::{run_phase, Phase};
use serde_json::{json, Value};

fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].replace("&amp;", "&"))
}

/// One SNS query-protocol call; the XML answer.
async fn sns(http: &reqwest::Client, url: &str, params: &[(&str, &str)]) -> Result<String, String> {
    let form = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Version", "2010-03-31");
        for (k, v) in params {
            form.append_pair(k, v);
        }
        form.finish()
    };
    let resp = http
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
        .header("Authorization", "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sns/aws4_request, SignedHeaders=host, Signature=0")
        .body(form)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status} {text}"));
    }
    Ok(text)
}

/// One SQS AWS JSON 1.0 call.
async fn sqs(http: &reqwest::Client, url: &str, op: &str, body: &Value) -> Result<Value, String> {
    outpost_benches::aws::call(http, url, "AmazonSQS", op, body).await
}

/// A fresh queue: its URL and ARN.
async fn queue(http: &reqwest::Client, url: &str, name: &str) -> (String, String) {
    let created = sqs(http, url, "CreateQueue", &json!({"QueueName": name}))
        .await
        .expect("CreateQueue");
    let qurl = created["QueueUrl"].as_str().expect("QueueUrl").to_string();
    let attrs = sqs(
        http,
        url,
        "GetQueueAttributes",
        &json!({"QueueUrl": qurl, "AttributeNames": ["QueueArn"]}),
    )
    .await
    .expect("GetQueueAttributes");
    let arn = attrs["Attributes"]["QueueArn"]
        .as_str()
        .expect("QueueArn")
        .to_string();
    (qurl, arn)
}

struct Outcome {
    phase: Phase,
    copies: u64,
    lost: u64,
}

async fn fan_out(
    o: &HttpLoad,
    t: &Target,
    subscriptions: usize,
    raw: bool,
    sha256: bool,
) -> Outcome {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.clients * 2)
        .build()
        .expect("http client");
    let id = format!(
        "{}-{subscriptions}-{raw}-{sha256}-{}",
        t.name,
        std::process::id()
    );
    let topic = xml_value(
        &sns(
            &http,
            &t.url,
            &[("Action", "CreateTopic"), ("Name", &format!("load-{id}"))],
        )
        .await
        .expect("CreateTopic"),
        "TopicArn",
    )
    .expect("TopicArn");
    if sha256 {
        // SHA256withRSA (`SignatureVersion` 2) instead of SNS's default SHA1withRSA.
        sns(
            &http,
            &t.url,
            &[
                ("Action", "SetTopicAttributes"),
                ("TopicArn", &topic),
                ("AttributeName", "SignatureVersion"),
                ("AttributeValue", "2"),
            ],
        )
        .await
        .expect("SetTopicAttributes SignatureVersion");
    }
    let mut queues = Vec::new();
    for i in 0..subscriptions {
        let (qurl, arn) = queue(&http, &t.url, &format!("load-{id}-{i}")).await;
        sns(
            &http,
            &t.url,
            &[
                ("Action", "Subscribe"),
                ("TopicArn", &topic),
                ("Protocol", "sqs"),
                ("Endpoint", &arn),
                ("Attributes.entry.1.key", "RawMessageDelivery"),
                (
                    "Attributes.entry.1.value",
                    if raw { "true" } else { "false" },
                ),
            ],
        )
        .await
        .expect("Subscribe");
        queues.push(qurl);
    }
    let body = "x".repeat(o.body);
    let phase = {
        let (http, url, topic) = (http.clone(), t.url.clone(), topic.clone());
        run_phase(o.clients, o.seconds, move || {
            let (http, url, topic, body) = (http.clone(), url.clone(), topic.clone(), body.clone());
            async move {
                sns(
                    &http,
                    &url,
                    &[
                        ("Action", "Publish"),
                        ("TopicArn", &topic),
                        ("Message", &body),
                    ],
                )
                .await?;
                Ok((1, false))
            }
        })
        .await
    };
    let mut lost = 0;
    let mut copies = 0;
    for q in &queues {
        let n = depth(&http, &t.url, q).await;
        copies += n;
        lost += phase.messages.saturating_sub(n);
    }
    for q in &queues {
        let _ = sqs(&http, &t.url, "DeleteQueue", &json!({"QueueUrl": q})).await;
    }
    let _ = sns(
        &http,
        &t.url,
        &[("Action", "DeleteTopic"), ("TopicArn", &topic)],
    )
    .await;
    Outcome {
        phase,
        copies,
        lost,
    }
}

async fn send_batch(o: &HttpLoad, t: &Target) -> Outcome {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.clients * 2)
        .build()
        .expect("http client");
    let (qurl, _) = queue(
        &http,
        &t.url,
        &format!("load-batch-{}-{}", t.name, std::process::id()),
    )
    .await;
    let body = "x".repeat(o.body);
    let phase = {
        let (http, url, qurl) = (http.clone(), t.url.clone(), qurl.clone());
        run_phase(o.clients, o.seconds, move || {
            let (http, url, qurl, body) = (http.clone(), url.clone(), qurl.clone(), body.clone());
            async move {
                let entries: Vec<Value> = (0..10)
                    .map(|i| json!({"Id": format!("e{i}"), "MessageBody": body}))
                    .collect();
                let r = sqs(
                    &http,
                    &url,
                    "SendMessageBatch",
                    &json!({"QueueUrl": qurl, "Entries": entries}),
                )
                .await?;
                Ok((
                    r["Successful"].as_array().map_or(0, |a| a.len() as u64),
                    false,
                ))
            }
        })
        .await
    };
    let n = depth(&http, &t.url, &qurl).await;
    let _ = sqs(&http, &t.url, "DeleteQueue", &json!({"QueueUrl": qurl})).await;
    Outcome {
        lost: phase.messages.saturating_sub(n),
        copies: n,
        phase,
    }
}

#[tokio::main]
async fn main() {
    let o = HttpLoad::parse();
    let scenarios = [
        "Publish, 1 SQS subscription, signed envelope",
        "Publish, 1 SQS subscription, raw",
        "Publish, 10 SQS subscriptions, signed envelope",
        "Publish, 10 SQS subscriptions, raw",
        "SendMessageBatch of 10",
        "Publish, 1 SQS subscription, signed envelope, SignatureVersion 2",
    ];
    let mut rows: Vec<Vec<(String, Outcome)>> = Vec::new();
    for (s, label) in scenarios.iter().enumerate() {
        let mut row = Vec::new();
        for t in &o.targets {
            let out = match s {
                0 => fan_out(&o, t, 1, false, false).await,
                1 => fan_out(&o, t, 1, true, false).await,
                2 => fan_out(&o, t, 10, false, false).await,
                3 => fan_out(&o, t, 10, true, false).await,
                4 => send_batch(&o, t).await,
                _ => fan_out(&o, t, 1, false, true).await,
            };
            eprintln!(
                "{:<8} {label}: {:.0} requests/s, {:.0} copies/s (p50 {:.2} ms, p99 {:.2} ms), errors {}, lost {}",
                t.name,
                out.phase.requests as f64 / out.phase.seconds,
                out.copies as f64 / out.phase.seconds,
                out.phase.pct(0.5),
                out.phase.pct(0.99),
                out.phase.errors,
                out.lost
            );
            row.push((t.name.clone(), out));
        }
        rows.push(row);
    }
    let peer = o.targets.len() > 1;
    println!(
        "| scenario |{} {}",
        o.targets
            .iter()
            .map(|t| format!(" {} requests/s (p50 / p99 ms), lost |", t.name))
            .collect::<String>(),
        if peer { "ratio |" } else { "" }
    );
    println!(
        "|---|{}{}",
        "---|".repeat(o.targets.len()),
        if peer { "---|" } else { "" }
    );
    let mut json_out = Vec::new();
    for (label, row) in scenarios.iter().zip(&rows) {
        let rate = |p: &Phase| p.requests as f64 / p.seconds.max(1e-9);
        let cells: String = row
            .iter()
            .map(|(_, out)| {
                format!(
                    " {:.0} ({:.2} / {:.2}), {} |",
                    rate(&out.phase),
                    out.phase.pct(0.5),
                    out.phase.pct(0.99),
                    out.lost
                )
            })
            .collect();
        let ratio = match row.as_slice() {
            [(_, a), (_, b), ..] if rate(&b.phase) > 0.0 => {
                format!(" {:.0}× |", rate(&a.phase) / rate(&b.phase))
            }
            _ if peer => " – |".into(),
            _ => String::new(),
        };
        println!("| {label} |{cells}{ratio}");
        for (name, out) in row {
            json_out.push(json!({"target": name, "scenario": label, "copies": out.copies, "lost": out.lost, "result": out.phase.to_json()}));
        }
    }
    // The first target's 10-queue fan-outs against its own SendMessageBatch of 10.
    let batch = &rows[4][0].1.phase;
    for (label, row) in [(scenarios[2], &rows[2]), (scenarios[3], &rows[3])] {
        let ten = &row[0].1.phase;
        println!(
            "{}: {label} takes {:.2}× the time of SendMessageBatch of 10 (p50 {:.2} vs {:.2} ms)",
            o.targets[0].name,
            ten.pct(0.5) / batch.pct(0.5).max(1e-9),
            ten.pct(0.5),
            batch.pct(0.5)
        );
    }
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(&json_out).expect("json"))
            .expect("write JSON");
    }
    let failed = rows.iter().flatten().any(|(name, out)| {
        out.lost > 0
            || out.phase.messages == 0
            || (name == &o.targets[0].name && out.phase.errors > 0)
    });
    if failed {
        eprintln!("sns-load: lost copies, errors, or scenarios without messages");
        std::process::exit(1);
    }
}
