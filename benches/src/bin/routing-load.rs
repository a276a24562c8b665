//! Routing load generator: what a rule costs. Drives one Outpost with concurrent MQTT clients
//! (QoS 1, one message in flight each, so latency is the PUBACK's) and HTTP clients, and reports
//! throughput, latency percentiles and what was lost (`benches/routing-load.sh`).
//!
//! Scenarios, each on a fresh queue:
//! - `SendMessage`: the plain durable send over HTTP, the reference a routed message is held to;
//! - MQTT QoS 1 publish that no subscriber or rule wants (the broker's floor);
//! - MQTT QoS 1 publish → 1 rule (wildcard detail-type, numeric condition on the payload) → queue;
//! - the same with 1,000 rules on the bus (999 on other topics): the index should keep this
//!   close to the 1-rule figure.
//!
//! After each routed scenario the queue must hold one copy of every acknowledged message
//! (`lost`).
//!
//! usage: routing-load [--clients N] [--seconds S] [--json FILE] HTTP_URL MQTT_ADDR

use std::sync::{Arc, Mutex};

use outpost_benches::aws::{call, depth};
use outpost_benches::load::{run_phase, Phase};
use outpost_benches::mqtt::Conn;
use serde_json::{json, Value};

/// routing-load: what a rule costs, against one Outpost.
#[derive(Debug, clap::Parser)]
struct Options {
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds each phase runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Where to write the figures as JSON.
    #[arg(long)]
    json: Option<String>,
    /// The broker's HTTP URL.
    #[arg(value_parser = |s: &str| Ok::<_, String>(s.trim_end_matches('/').to_string()))]
    http: String,
    /// The broker's MQTT address (HOST:PORT).
    mqtt: String,
}

async fn queue(http: &reqwest::Client, url: &str, name: &str) -> String {
    call(
        http,
        url,
        "AmazonSQS",
        "CreateQueue",
        &json!({"QueueName": name}),
    )
    .await
    .expect("CreateQueue")["QueueUrl"]
        .as_str()
        .expect("QueueUrl")
        .to_string()
}

struct Outcome {
    label: String,
    phase: Phase,
    lost: Option<u64>,
}

/// Concurrent MQTT publishers to `topic(client, n)`.
async fn mqtt_phase(o: &Options, name: &str) -> Phase {
    let mut conns = Vec::new();
    for i in 0..o.clients {
        conns.push(
            Conn::v311(&o.mqtt, &format!("{name}-{i}-{}", std::process::id()), true)
                .await
                .expect("MQTT connect"),
        );
    }
    let pool = Arc::new(Mutex::new(conns));
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let name = name.to_string();
    run_phase(o.clients, o.seconds, move || {
        let (pool, seq, name) = (pool.clone(), seq.clone(), name.clone());
        async move {
            let mut c = pool
                .lock()
                .expect("pool")
                .pop()
                .expect("a connection per client");
            let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let payload = format!(r#"{{"temp":61,"seq":{n}}}"#);
            let r = c
                .publish_acked(
                    &format!("bench/{name}/d{}/telemetry", n % 16),
                    payload.as_bytes(),
                )
                .await;
            pool.lock().expect("pool").push(c);
            r.map(|()| (1, false))
        }
    })
    .await
}

async fn send_message(o: &Options, http: &reqwest::Client) -> Outcome {
    let qurl = queue(http, &o.http, &format!("bench-send-{}", std::process::id())).await;
    let (http2, url, q) = (http.clone(), o.http.clone(), qurl.clone());
    let phase = run_phase(o.clients, o.seconds, move || {
        let (http, url, q) = (http2.clone(), url.clone(), q.clone());
        async move {
            call(
                &http,
                &url,
                "AmazonSQS",
                "SendMessage",
                &json!({"QueueUrl": q, "MessageBody": r#"{"temp":61,"seq":0}"#}),
            )
            .await?;
            Ok((1, false))
        }
    })
    .await;
    let held = depth(http, &o.http, &qurl).await;
    Outcome {
        label: "SendMessage over HTTP (reference)".into(),
        lost: Some(phase.messages.saturating_sub(held)),
        phase,
    }
}

async fn routed(o: &Options, http: &reqwest::Client, rules: usize) -> Outcome {
    let name = format!("r{rules}");
    let qname = format!("bench-{name}-{}", std::process::id());
    let qurl = queue(http, &o.http, &qname).await;
    let ev = |op: &'static str, body: Value| {
        let (http, url) = (http.clone(), o.http.clone());
        async move { call(&http, &url, "AWSEvents", op, &body).await }
    };
    // The other rules: exact topics, prefixes and wildcards that never match this run's topics.
    for i in 1..rules {
        let detail_type = match i % 3 {
            0 => json!([format!("other/{i}/telemetry")]),
            1 => json!([{"prefix": format!("other/{i}/")}]),
            _ => json!([{"wildcard": format!("other/{i}/*/telemetry")}]),
        };
        let pattern = json!({"source": ["outpost.mqtt"], "detail-type": detail_type,
                             "detail": {"temp": [{"numeric": [">", 50]}]}});
        ev(
            "PutRule",
            json!({"Name": format!("{name}-other-{i}"), "EventPattern": pattern.to_string()}),
        )
        .await
        .expect("PutRule");
    }
    let pattern = json!({"source": ["outpost.mqtt"],
                         "detail-type": [{"wildcard": format!("bench/{name}/*/telemetry")}],
                         "detail": {"temp": [{"numeric": [">", 50]}]}});
    ev(
        "PutRule",
        json!({"Name": format!("{name}-hot"), "EventPattern": pattern.to_string()}),
    )
    .await
    .expect("PutRule");
    ev(
        "PutTargets",
        json!({"Rule": format!("{name}-hot"), "Targets": [{"Id": "q",
               "Arn": format!("arn:aws:sqs:us-east-1:000000000000:{qname}")}]}),
    )
    .await
    .expect("PutTargets");
    let phase = mqtt_phase(o, &name).await;
    let held = depth(http, &o.http, &qurl).await;
    // Clean up so the next scenario runs on its own rule set.
    ev(
        "RemoveTargets",
        json!({"Rule": format!("{name}-hot"), "Ids": ["q"]}),
    )
    .await
    .expect("RemoveTargets");
    ev("DeleteRule", json!({"Name": format!("{name}-hot")}))
        .await
        .expect("DeleteRule");
    for i in 1..rules {
        ev("DeleteRule", json!({"Name": format!("{name}-other-{i}")}))
            .await
            .expect("DeleteRule");
    }
    Outcome {
        label: format!("MQTT QoS 1 → rule → queue, {rules} rule(s) on the bus"),
        lost: Some(phase.messages.saturating_sub(held)),
        phase,
    }
}

#[tokio::main]
async fn main() {
    let o = <Options as clap::Parser>::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(o.clients * 2)
        .build()
        .expect("http client");
    let mut outcomes = vec![send_message(&o, &http).await];
    outcomes.push(Outcome {
        label: "MQTT QoS 1 publish, no subscriber, no rule".into(),
        phase: mqtt_phase(&o, "plain").await,
        lost: None,
    });
    outcomes.push(routed(&o, &http, 1).await);
    outcomes.push(routed(&o, &http, 1000).await);
    println!("| scenario | messages/s | p50 ms | p99 ms | errors | lost |");
    println!("|---|---|---|---|---|---|");
    for out in &outcomes {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} | {} |",
            out.label,
            out.phase.rate(),
            out.phase.pct(0.5),
            out.phase.pct(0.99),
            out.phase.errors,
            out.lost.map_or("–".to_string(), |l| l.to_string())
        );
    }
    let send = &outcomes[0].phase;
    let (one, thousand) = (&outcomes[2].phase, &outcomes[3].phase);
    println!(
        "routing with 1 rule costs {:.2}× a SendMessage (p50 {:.2} vs {:.2} ms; throughput {:.2}×)",
        one.pct(0.5) / send.pct(0.5).max(1e-9),
        one.pct(0.5),
        send.pct(0.5),
        one.rate() / send.rate().max(1e-9)
    );
    println!(
        "1,000 rules cost {:.2}× 1 rule (p50 {:.2} vs {:.2} ms; throughput {:.2}×)",
        thousand.pct(0.5) / one.pct(0.5).max(1e-9),
        thousand.pct(0.5),
        one.pct(0.5),
        thousand.rate() / one.rate().max(1e-9)
    );
    if let Some(path) = &o.json {
        let rows: Vec<Value> = outcomes
            .iter()
            .map(|out| json!({"scenario": out.label, "lost": out.lost, "result": out.phase.to_json()}))
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&rows).expect("json"))
            .expect("write JSON");
    }
    let failed = outcomes
        .iter()
        .any(|out| out.lost.unwrap_or(0) > 0 || out.phase.errors > 0 || out.phase.messages == 0);
    if failed {
        eprintln!("routing-load: lost messages, errors, or scenarios without messages");
        std::process::exit(1);
    }
}
