//! SQS load generator: drives any SQS endpoint over AWS JSON 1.0 (the protocol of current SDKs)
//! with concurrent clients and reports throughput and latency percentiles, so Outpost and a peer
//! (moto's server mode) are measured by the same client in the same run (`benches/sqs-load.sh`).
//!
//! For each target and each batch size (1 and 10) it runs two phases on a fresh queue:
//! - **send**: `SendMessage` / `SendMessageBatch` for `--seconds`;
//! - **receive+delete**: `ReceiveMessage` then `DeleteMessage` / `DeleteMessageBatch` until the
//!   queue is drained or `--seconds` pass.
//!
//! usage: sqs-load [--clients N] [--seconds S] [--body BYTES] [--json FILE] NAME=URL...
//! The first target is the one the ratios are about; the second is the peer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clap::Parser as _;
use outpost_benches::cli::{HttpLoad, Target};
use outpost_benches::load::{run_phase, Phase};
use serde_json::{json, Value};

/// One SQS JSON call.
async fn call(http: &reqwest::Client, url: &str, op: &str, body: &Value) -> Result<Value, String> {
    outpost_benches::aws::call(http, url, "AmazonSQS", op, body).await
}

async fn scenario(o: &HttpLoad, target: &Target, batch: usize) -> (Phase, Phase) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.clients * 2)
        .build()
        .expect("http client");
    let queue = format!("load-{}-{batch}-{}", target.name, std::process::id());
    let created = call(
        &http,
        &target.url,
        "CreateQueue",
        &json!({"QueueName": queue}),
    )
    .await
    .expect("CreateQueue");
    let qurl = created["QueueUrl"].as_str().expect("QueueUrl").to_string();
    let body = "x".repeat(o.body);
    let send = {
        let (http, url, qurl) = (http.clone(), target.url.clone(), qurl.clone());
        run_phase(o.clients, o.seconds, move || {
            let (http, url, qurl, body) = (http.clone(), url.clone(), qurl.clone(), body.clone());
            async move {
                if batch == 1 {
                    call(
                        &http,
                        &url,
                        "SendMessage",
                        &json!({"QueueUrl": qurl, "MessageBody": body}),
                    )
                    .await?;
                    Ok((1, false))
                } else {
                    let entries: Vec<Value> = (0..batch)
                        .map(|i| json!({"Id": format!("e{i}"), "MessageBody": body}))
                        .collect();
                    let r = call(
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
            }
        })
        .await
    };
    let empty_polls = Arc::new(AtomicU64::new(0));
    let recv = {
        let (http, url, qurl) = (http.clone(), target.url.clone(), qurl.clone());
        run_phase(o.clients, o.seconds, move || {
            let (http, url, qurl, empty_polls) =
                (http.clone(), url.clone(), qurl.clone(), empty_polls.clone());
            async move {
                let r = call(
                    &http,
                    &url,
                    "ReceiveMessage",
                    &json!({"QueueUrl": qurl, "MaxNumberOfMessages": batch, "VisibilityTimeout": 60}),
                )
                .await?;
                let msgs = r["Messages"].as_array().cloned().unwrap_or_default();
                if msgs.is_empty() {
                    return Ok((0, empty_polls.fetch_add(1, Ordering::Relaxed) > 5));
                }
                if batch == 1 {
                    for m in &msgs {
                        call(&http, &url, "DeleteMessage", &json!({"QueueUrl": qurl, "ReceiptHandle": m["ReceiptHandle"]}))
                            .await?;
                    }
                } else {
                    let entries: Vec<Value> = msgs
                        .iter()
                        .enumerate()
                        .map(|(i, m)| json!({"Id": format!("d{i}"), "ReceiptHandle": m["ReceiptHandle"]}))
                        .collect();
                    call(&http, &url, "DeleteMessageBatch", &json!({"QueueUrl": qurl, "Entries": entries}))
                        .await?;
                }
                Ok((msgs.len() as u64, false))
            }
        })
        .await
    };
    let _ = call(
        &http,
        &target.url,
        "DeleteQueue",
        &json!({"QueueUrl": qurl}),
    )
    .await;
    (send, recv)
}

#[tokio::main]
async fn main() {
    let o = HttpLoad::parse();
    let mut results = Vec::new();
    for batch in [1usize, 10] {
        let mut row = Vec::new();
        for t in &o.targets {
            let (send, recv) = scenario(&o, t, batch).await;
            eprintln!(
                "{:<8} batch {batch:>2}: send {:>8.0} msg/s (p50 {:.2} ms, p99 {:.2} ms), receive+delete {:>8.0} msg/s (p50 {:.2} ms, p99 {:.2} ms), errors {}",
                t.name, send.rate(), send.pct(0.5), send.pct(0.99), recv.rate(), recv.pct(0.5), recv.pct(0.99), send.errors + recv.errors
            );
            row.push((t.name.clone(), send, recv));
        }
        results.push((batch, row));
    }
    let peer = o.targets.get(1).map(|t| t.name.clone());
    println!(
        "| operation | batch |{}{}",
        o.targets
            .iter()
            .map(|t| format!(" {} msg/s (p50 / p99 ms) |", t.name))
            .collect::<String>(),
        if peer.is_some() { " ratio |" } else { "" }
    );
    println!(
        "|---|---|{}{}",
        "---|".repeat(o.targets.len()),
        if peer.is_some() { "---|" } else { "" }
    );
    let mut json_out = Vec::new();
    for (batch, row) in &results {
        for (label, pick) in [("SendMessage", 0usize), ("ReceiveMessage+DeleteMessage", 1)] {
            let cell = |p: &Phase| {
                format!(
                    " {:.0} ({:.2} / {:.2}) |",
                    p.rate(),
                    p.pct(0.5),
                    p.pct(0.99)
                )
            };
            let phases: Vec<&Phase> = row
                .iter()
                .map(|(_, s, r)| if pick == 0 { s } else { r })
                .collect();
            let ratio = if phases.len() > 1 && phases[1].rate() > 0.0 {
                format!(" {:.1}× |", phases[0].rate() / phases[1].rate())
            } else {
                String::new()
            };
            println!(
                "| {label} | {batch} |{}{ratio}",
                phases.iter().map(|p| cell(p)).collect::<String>()
            );
            for ((name, _, _), p) in row.iter().zip(&phases) {
                json_out.push(json!({"target": name, "operation": label, "batch": batch, "result": p.to_json()}));
            }
        }
    }
    let failed = results.iter().any(|(_, row)| {
        row.iter()
            .any(|(_, s, r)| s.errors + r.errors > 0 || s.messages == 0 || r.messages == 0)
    });
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(&json_out).expect("json"))
            .expect("write JSON");
    }
    if failed {
        eprintln!("sqs-load: errors or phases without messages");
        std::process::exit(1);
    }
}
