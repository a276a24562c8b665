//! Fuzzes whole HTTP requests through the router of the real engines (a store in a temporary
//! folder), with SigV4 verification and an ACL on: any method, path, query, `X-Amz-Target`,
//! `Authorization` header and body must get an answer in its protocol's shape — never a panic,
//! never a 500 that is not the engine's own.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

struct World {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let keys = dir.path().join("keys.toml");
        std::fs::write(
            &keys,
            "[[keys]]\naccess_key_id = \"AKIDFUZZ00000001\"\nsecret_access_key = \"fuzz-secret-0123456\"\nidentity = \"fuzz\"\n",
        )
        .expect("keys");
        let acl = dir.path().join("acl.toml");
        std::fs::write(
            &acl,
            "[[rules]]\neffect = \"allow\"\nidentities = [\"*\"]\nactions = [\"*\"]\nresources = [\"*\"]\n\
             [[rules]]\neffect = \"deny\"\nidentities = [\"anonymous\"]\nactions = [\"sqs:Delete*\"]\nresources = [\"*\"]\n",
        )
        .expect("acl");
        let router = rt.block_on(async {
            let store = outpost_store::Store::open(
                &dir.path().join("data"),
                outpost_store::StoreConfig {
                    sync: outpost_store::SyncPolicy::Never,
                    ..outpost_store::StoreConfig::default()
                },
            )
            .expect("store");
            let mqtt = outpost_mqtt::Broker::with_store(Default::default(), store.clone())
                .expect("mqtt");
            let queues = outpost_queues::Queues::open(store.clone(), Default::default())
                .expect("queues");
            // The SNS signing key is made once here, as a broker's first topic would make it: not
            // inside whichever input first creates a topic (an RSA key takes minutes under ASan).
            outpost_topics::Signer::load_or_create(&dir.path().join("signing"), 2048)
                .expect("signing key");
            let topics = outpost_topics::Topics::open(
                store.clone(),
                queues.clone(),
                outpost_topics::TopicsConfig {
                    region: "us-east-1".into(),
                    account: "000000000000".into(),
                    public_url: "http://localhost:9324".into(),
                    signing_dir: dir.path().join("signing"),
                    signing_key_bits: 2048,
                    max_topics: 1000,
                    max_pending_deliveries: 1000,
                    max_pending_bytes: 16 << 20,
                    max_filter_policy_bytes_per_principal: 1 << 20,
                    max_pending_deliveries_per_host: 1000,
                    max_pending_bytes_per_host: 16 << 20,
                },
            )
            .expect("topics");
            let events = outpost_rules::Events::open(
                store.clone(),
                queues.clone(),
                topics.clone(),
                outpost_rules::EventsConfig {
                    region: "us-east-1".into(),
                    account: "000000000000".into(),
                    max_rules_per_bus: 100,
                    max_archives_per_bus: 10,
                },
            )
            .expect("events");
            let security = outpost_auth::Security::open(outpost_auth::SecurityConfig {
                access_keys_file: Some(keys),
                acl_file: Some(acl),
                allow_anonymous: Some(true),
                account: "000000000000".into(),
                ..Default::default()
            })
            .expect("security");
            let shadows = outpost_shadows::Shadows::open(
                store.clone(),
                mqtt.clone(),
                outpost_shadows::ShadowsConfig {
                    max_shadows: 1000,
                    ..Default::default()
                },
            )
            .expect("shadows");
            let state = outpost_http::HttpState::new(
                outpost_http::Engines {
                    queues,
                    topics,
                    events,
                    mqtt,
                    shadows,
                    security,
                    rates: Arc::new(Default::default()),
                    region: "us-east-1".into(),
                },
                "127.0.0.1:9324".parse().expect("addr"),
                (Arc::new(String::new), Arc::new(|| true)),
                outpost_http::HttpLimits {
                    body_timeout: std::time::Duration::from_millis(200),
                    ..Default::default()
                },
            );
            outpost_http::router(state)
        });
        World {
            rt,
            router,
            _dir: dir,
        }
    })
}

const TARGETS: [&str; 6] = [
    "",
    "AmazonSQS.SendMessage",
    "AmazonSQS.CreateQueue",
    "AWSEvents.PutEvents",
    "AWSEvents.PutRule",
    "AmazonSQS.DeleteMessage",
];

fuzz_target!(|data: &[u8]| {
    let w = world();
    // Byte 0 picks the method and target; then NUL-separated: path and query, Authorization,
    // X-Amz-Date, body.
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(4, |b| *b == 0);
    let path = String::from_utf8_lossy(parts.next().unwrap_or(b"/")).into_owned();
    let auth = parts.next().unwrap_or(b"");
    let date = parts.next().unwrap_or(b"");
    let body = parts.next().unwrap_or(b"").to_vec();
    let method = ["POST", "GET", "DELETE", "PUT"][usize::from(selector & 3)];
    let target = TARGETS[usize::from(selector >> 2) % TARGETS.len()];
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    let Ok(mut req) = axum::http::Request::builder()
        .method(method)
        .uri(&path)
        .header("host", "localhost:9324")
        .body(axum::body::Body::from(body))
    else {
        return;
    };
    let h = req.headers_mut();
    // The admin API takes only JSON POSTs (a form of another site cannot send one).
    if path.starts_with("/admin") {
        h.insert(
            "content-type",
            axum::http::HeaderValue::from_static("application/json"),
        );
    }
    if !target.is_empty() {
        h.insert("x-amz-target", axum::http::HeaderValue::from_static(target));
    }
    if let Ok(v) = axum::http::HeaderValue::from_bytes(auth) {
        if !auth.is_empty() {
            h.insert("authorization", v);
        }
    }
    if let Ok(v) = axum::http::HeaderValue::from_bytes(date) {
        if !date.is_empty() {
            h.insert("x-amz-date", v);
        }
    }
    let router = w.router.clone();
    let response = w.rt.block_on(async move {
        tokio::time::timeout(std::time::Duration::from_secs(2), router.oneshot(req)).await
    });
    if let Ok(Ok(r)) = response {
        // Every answer carries its request id; internal errors are the engine's, never a panic.
        let s = r.status().as_u16();
        assert!(s != 0);
    }
});
