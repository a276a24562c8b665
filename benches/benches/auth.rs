//! What security costs per request, measured in the same run as its reference point:
//! verifying a SigV4 signature (outpost-auth) against signing the same request (aws-sigv4, what
//! every SDK call costs its client), an ACL decision with 100 rules against no ACL, a publish's
//! whole decision with the ACL file, dynamic security (mosquitto's model) or both, and one
//! argon2id password check (paid once per MQTT login).

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use outpost_auth::{AccessKeys, Acl, Identity, PasswordFile, Proof, Request, SignedRequest};

const BODY: &[u8] = br#"{"QueueUrl":"http://localhost:9324/000000000000/orders","MessageBody":"{\"order\":42,\"items\":[1,2,3]}"}"#;

fn signed_headers(now: SystemTime) -> Vec<(String, String)> {
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(
            "AKIDBENCH0000001",
            "bench-secret-0123456789",
            None,
            None,
            "bench",
        )
        .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("sqs")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .expect("params")
        .into();
    let headers = [
        ("host", "localhost:9324"),
        ("content-type", "application/x-amz-json-1.0"),
        ("x-amz-target", "AmazonSQS.SendMessage"),
    ];
    let req = SignableRequest::new("POST", "/", headers.into_iter(), SignableBody::Bytes(BODY))
        .expect("signable");
    let (instructions, _) = sign(req, &params).expect("signed").into_parts();
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in instructions.headers() {
        out.push((k.to_string(), v.to_string()));
    }
    out
}

fn bench(c: &mut Criterion) {
    let now = SystemTime::now();
    let keys = AccessKeys::parse(
        "[[keys]]\naccess_key_id = \"AKIDBENCH0000001\"\nsecret_access_key = \"bench-secret-0123456789\"\nidentity = \"bench\"\n",
    )
    .expect("keys");
    let headers = signed_headers(now);
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let req = SignedRequest {
        method: "POST",
        path_and_query: "/",
        headers: &pairs,
        body: BODY,
    };
    assert!(matches!(
        outpost_auth::sigv4::verify(&req, &keys, now, None),
        Ok(Some(_))
    ));

    let mut g = c.benchmark_group("sigv4_sqs_send_message");
    g.throughput(Throughput::Elements(1));
    g.bench_function("aws-sigv4-sign (client)", |b| {
        b.iter(|| signed_headers(now))
    });
    g.bench_function("outpost-verify (server)", |b| {
        b.iter(|| outpost_auth::sigv4::verify(&req, &keys, now, None))
    });
    g.finish();

    let mut rules = String::new();
    for i in 0..100 {
        rules.push_str(&format!(
            "[[rules]]\neffect = \"allow\"\nidentities = [\"user{i}\"]\nactions = [\"mqtt:publish\", \"sqs:SendMessage\"]\nresources = [\"site/{i}/%c/#\", \"arn:aws:sqs:*:*:orders-{i}\"]\n"
        ));
    }
    let acl = Acl::parse(&rules).expect("acl");
    let who = Identity {
        name: "user99".into(),
        proof: Proof::Password,
        account: "000000000000".into(),
    };
    let publish = Request {
        action: "mqtt:publish",
        resource: "site/99/dev-7/telemetry",
        client_id: "dev-7",
    };
    assert!(acl.decide(&who, &publish).is_some());
    let mut g = c.benchmark_group("acl_decision");
    g.throughput(Throughput::Elements(1));
    g.bench_function("no-acl", |b| {
        b.iter(|| Acl::default().decide(&who, &publish))
    });
    g.bench_function("100-rules", |b| b.iter(|| acl.decide(&who, &publish)));
    g.finish();

    // The whole decision a publish takes (`Security::mqtt_allows`): the ACL file's 100 rules,
    // dynamic security's 100 entries (two roles of 50, the match in the last), and both.
    let dir = std::env::temp_dir().join(format!("outpost-bench-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let acl_file = dir.join("acl.toml");
    std::fs::write(&acl_file, &rules).expect("acl written");
    let with_file = |file: bool| {
        outpost_auth::Security::open(outpost_auth::SecurityConfig {
            acl_file: file.then(|| acl_file.clone()),
            account: "000000000000".into(),
            ..Default::default()
        })
        .expect("security")
    };
    let role = |from: usize, n: usize| -> serde_json::Value {
        serde_json::json!({"acls": (from..from + n).map(|i| serde_json::json!({
            "acltype": "publishClientSend", "topic": format!("site/{i}/+/#"), "priority": 0, "allow": true
        })).collect::<Vec<_>>()})
    };
    let model_of = |per_role: usize| {
        let m = serde_json::json!({
            "clients": {"user99": {"roles": [{"name": "a", "priority": 2}, {"name": "b", "priority": 1}]}},
            "roles": {"a": role(100 - 2 * per_role, per_role), "b": role(100 - per_role, per_role)},
        });
        serde_json::to_vec(&m).expect("json")
    };
    let model = model_of(50);
    let small = with_file(false);
    small.dynamic.restore(&model_of(5)).expect("model");
    let file_only = with_file(true);
    let dynamic_only = with_file(false);
    dynamic_only.dynamic.restore(&model).expect("model");
    let both = with_file(true);
    both.dynamic.restore(&model).expect("model");
    for s in [&file_only, &dynamic_only, &both, &small] {
        assert!(s.mqtt_allows(&who, "dev-7", "mqtt:publish", "site/99/dev-7/telemetry"));
    }
    let mut g = c.benchmark_group("publish_decision");
    g.throughput(Throughput::Elements(1));
    for (name, s) in [
        ("acl-file-100-rules", &file_only),
        ("dynamic-100-entries", &dynamic_only),
        ("dynamic-10-entries", &small),
        ("file-and-dynamic", &both),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| s.mqtt_allows(&who, "dev-7", "mqtt:publish", "site/99/dev-7/telemetry"))
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);

    let mut file = PasswordFile::default();
    file.set("alice", "alice-secret").expect("hash");
    let mut g = c.benchmark_group("mqtt_login");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.bench_function("argon2id-verify", |b| {
        b.iter(|| file.verify("alice", b"alice-secret"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
