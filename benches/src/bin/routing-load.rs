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
use std::time::Duration;

use bytes::BytesMut;
use outpost_benches::aws::{call, depth};
use outpost_benches::load::{run_phase, Phase};
use outpost_codec::{split_frame, Connect, Packet, Publish, QoS, Version};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Options {
    clients: usize,
    seconds: u64,
    json: Option<String>,
    http: String,
    mqtt: String,
}

fn options() -> Options {
    let mut o = Options {
        clients: 8,
        seconds: 5,
        json: None,
        http: String::new(),
        mqtt: String::new(),
    };
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match a.as_str() {
            "--clients" => o.clients = value().parse().expect("a number"),
            "--seconds" => o.seconds = value().parse().expect("a number"),
            "--json" => o.json = Some(value()),
            _ => positional.push(a),
        }
    }
    let [http, mqtt] = positional.as_slice() else {
        panic!("usage: routing-load [flags] HTTP_URL MQTT_ADDR");
    };
    o.http = http.trim_end_matches('/').to_string();
    o.mqtt = mqtt.clone();
    o
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

/// An MQTT 3.1.1 connection publishing at QoS 1, one message in flight.
struct Conn {
    s: TcpStream,
    buf: BytesMut,
    pkid: u16,
}

impl Conn {
    async fn open(addr: &str, id: &str) -> Conn {
        let mut s = TcpStream::connect(addr).await.expect("MQTT connect");
        s.set_nodelay(true).ok();
        let mut out = BytesMut::new();
        Packet::Connect(Connect {
            protocol: Version::V311,
            clean_start: true,
            keep_alive: 600,
            client_id: id,
            ..Connect::default()
        })
        .encode_to(Version::V311, &mut out)
        .expect("encodable");
        s.write_all(&out).await.expect("CONNECT sent");
        let mut c = Conn {
            s,
            buf: BytesMut::with_capacity(4096),
            pkid: 0,
        };
        let f = c.frame().await.expect("CONNACK");
        assert!(f[0] == 0x20 && f.get(3) == Some(&0), "connection refused");
        c
    }

    async fn frame(&mut self) -> Result<bytes::Bytes, String> {
        loop {
            if let Some(f) = split_frame(&mut self.buf, usize::MAX).map_err(|e| format!("{e:?}"))? {
                return Ok(f);
            }
            match tokio::time::timeout(Duration::from_secs(30), self.s.read_buf(&mut self.buf))
                .await
            {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Err("connection closed or silent".into()),
            }
        }
    }

    /// Publishes and waits for the PUBACK.
    async fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<(), String> {
        self.pkid = self.pkid % 60_000 + 1;
        let mut out = BytesMut::new();
        Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            pkid: self.pkid,
            ..Publish::new(topic, payload)
        })
        .encode_to(Version::V311, &mut out)
        .map_err(|e| format!("{e:?}"))?;
        self.s.write_all(&out).await.map_err(|e| e.to_string())?;
        loop {
            let f = self.frame().await?;
            // PUBACK: 0x40, length 2, the packet identifier.
            if f[0] == 0x40 && f.len() >= 4 && u16::from_be_bytes([f[2], f[3]]) == self.pkid {
                return Ok(());
            }
        }
    }
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
        conns.push(Conn::open(&o.mqtt, &format!("{name}-{i}-{}", std::process::id())).await);
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
                .publish(
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
    let o = options();
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
