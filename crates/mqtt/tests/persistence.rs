//! The MQTT engine with its store (`Broker::with_store`), in-process: what a persistent session,
//! its queued QoS 1 messages and the retained messages become across a restart. Each phase runs on
//! a runtime of its own that is dropped at its end (every engine task stops with it), and the next
//! phase opens the same folder again: a restart without the sockets, which the binary's tests
//! (tests/mqtt.rs, tests/durability.rs) cover with `kill -9`.

use std::path::Path;

use bytes::Bytes;
use outpost_codec::{
    Connect, ConnectProperties, List, Publish, QoS, Subscribe, SubscribeFilter, Version,
};
use outpost_mqtt::{Broker, BrokerConfig, ConnectionHandle, Delivery, Disconnect, Published, Send};
use outpost_store::{Store, StoreConfig};

/// Runs one phase on a fresh runtime with the engine opened from `dir`; the runtime (and every
/// task of the engine) is gone when it returns.
fn phase<T>(dir: &Path, f: impl AsyncFnOnce(&Broker) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = Store::open(dir, StoreConfig::default()).expect("store");
        let broker = Broker::with_store(BrokerConfig::default(), store).expect("engine");
        let out = f(&broker).await;
        // What the engine queued for the store is written before the "process" ends.
        broker.flush_persistence().wait().await.expect("flushed");
        out
    })
}

async fn connect(b: &Broker, id: &str, persistent: bool) -> (ConnectionHandle, bool, Vec<Bytes>) {
    let c = Connect {
        protocol: Version::V5,
        clean_start: !persistent,
        keep_alive: 60,
        client_id: id,
        properties: ConnectProperties {
            session_expiry_interval: Some(if persistent { 3600 } else { 0 }),
            ..ConnectProperties::default()
        },
        ..Connect::default()
    };
    let accepted = b.connect(&c).await.expect("accepted");
    let resent = payloads(b, &accepted.handle, accepted.resend);
    (accepted.handle, accepted.session_present, resent)
}

/// Acknowledges what `sends` delivers; its payloads.
fn payloads(b: &Broker, h: &ConnectionHandle, sends: Vec<Send<Delivery>>) -> Vec<Bytes> {
    let mut out = Vec::new();
    for s in sends {
        if let Send::Publish { pkid, message, .. } = s {
            if pkid != 0 {
                b.puback(h, pkid).expect("acknowledged");
            }
            out.push(message.message.payload.clone());
        }
    }
    out
}

async fn subscribe(b: &Broker, h: &ConnectionHandle, filter: &str) {
    let f = [SubscribeFilter::new(filter, QoS::AtLeastOnce)];
    let (codes, durable) = b.subscribe(
        h,
        &Subscribe {
            pkid: 1,
            filters: List::new(&f),
            ..Subscribe::default()
        },
    );
    assert!(codes.iter().all(|c| (*c as u8) < 0x80), "{codes:?}");
    durable.wait().await.expect("subscription stored");
}

/// Publishes at QoS 1 and waits until the engine says it is durable (the PUBACK's condition).
async fn publish(
    b: &Broker,
    h: &ConnectionHandle,
    topic: &str,
    pkid: u16,
    body: &str,
    retain: bool,
) {
    let p = Publish {
        qos: QoS::AtLeastOnce,
        pkid,
        retain,
        ..Publish::new(topic, body.as_bytes())
    };
    let (outcome, durable) = b
        .publish(
            h,
            &p,
            Bytes::copy_from_slice(body.as_bytes()),
            &mut outpost_mqtt::Wakes::new(),
            &|_| true,
        )
        .expect("published");
    assert!(!matches!(outcome, Published::Refused(_)), "{outcome:?}");
    durable.wait().await.expect("durable");
}

fn texts(p: Vec<Bytes>) -> Vec<String> {
    p.into_iter()
        .map(|b| String::from_utf8(b.to_vec()).expect("utf-8"))
        .collect()
}

#[test]
fn sessions_queued_messages_and_retained_messages_survive_a_restart_once() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");

    // A device subscribes with a persistent session and goes away; five jobs and a retained
    // state are published while it is gone.
    phase(&data, async |b: &Broker| {
        let (device, present, _) = connect(b, "device-7", true).await;
        assert!(!present, "a new session");
        subscribe(b, &device, "jobs/#").await;
        b.disconnect(&device, Disconnect::Normal, None);
        let (service, _, _) = connect(b, "service", false).await;
        for n in 1..=5u16 {
            publish(
                b,
                &service,
                &format!("jobs/{n}"),
                n,
                &format!("job {n}"),
                false,
            )
            .await;
        }
        publish(b, &service, "state/door", 6, "open", true).await;
    });

    // After the restart the session is there with its five jobs, in order; the device takes them.
    let jobs = phase(&data, async |b: &Broker| {
        let (device, present, mut got) = connect(b, "device-7", true).await;
        assert!(present, "the session survived the restart");
        got.extend(payloads(b, &device, b.sendable(&device)));
        let (viewer, _, _) = connect(b, "viewer", false).await;
        subscribe(b, &viewer, "state/#").await;
        let retained = texts(payloads(b, &viewer, b.sendable(&viewer)));
        assert_eq!(retained, vec!["open"], "the retained message survived");
        b.disconnect(&device, Disconnect::Normal, None);
        texts(got)
    });
    assert_eq!(
        jobs,
        (1..=5).map(|n| format!("job {n}")).collect::<Vec<_>>()
    );

    // What the device acknowledged is not delivered again after another restart.
    phase(&data, async |b: &Broker| {
        let (device, present, resent) = connect(b, "device-7", true).await;
        assert!(present);
        let again = texts(
            resent
                .into_iter()
                .chain(payloads(b, &device, b.sendable(&device)))
                .collect(),
        );
        assert!(
            again.is_empty(),
            "acknowledged messages came back: {again:?}"
        );
    });
}
