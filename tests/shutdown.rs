//! A graceful stop (SIGTERM) under load: one signal reaches every connection. MQTT 5 clients get
//! DISCONNECT 0x8B, a long poll in flight answers at once, the store is flushed, the process exits,
//! and after a restart nothing that was acknowledged is missing.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use outpost_codec::{ReasonCode, Version};
use support::http::sqs_json;
use support::raw::{assert_none_lost, drain_numbers, offline_subscriber, Got, Raw};
use support::Outpost;

#[test]
fn sigterm_under_load_closes_everyone_cleanly_and_loses_nothing() {
    let broker = Outpost::start();
    let wait = Duration::from_secs(10);
    // A persistent subscriber, offline: everything for it is stored.
    offline_subscriber(broker.mqtt, "keeper", "load");
    // A connected MQTT 5 client that only watches.
    let mut watcher = Raw::connect(broker.mqtt, Version::V5, "watcher", true);
    assert_eq!(watcher.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
    // A long poll that would wait 20 s.
    let (status, body) = sqs_json(&broker.http, "CreateQueue", r#"{"QueueName":"polled"}"#);
    assert_eq!(status, 200, "{body}");
    let http = broker.http.clone();
    let poll = std::thread::spawn(move || {
        let started = Instant::now();
        let url = format!("{http}/000000000000/polled");
        let r = sqs_json(
            &http,
            "ReceiveMessage",
            &format!(r#"{{"QueueUrl":"{url}","WaitTimeSeconds":20}}"#),
        );
        (r, started.elapsed())
    });
    // A publisher that keeps publishing until the broker goes away.
    let addr = broker.mqtt;
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = progress.clone();
    let publisher = std::thread::spawn(move || {
        let mut p = Raw::connect(addr, Version::V5, "producer", true);
        assert_eq!(p.recv(wait), Some(Got::ConnAck(ReasonCode::Success)));
        let mut acked = BTreeSet::new();
        for i in 0..100_000u32 {
            p.publish_number("load", i, 4);
            match p.recv(wait) {
                Some(Got::PubAck(_, ReasonCode::Success)) => {
                    acked.insert(i);
                    counted.store(acked.len(), std::sync::atomic::Ordering::Relaxed);
                }
                _ => break,
            }
        }
        acked
    });
    // Let the load run, then stop the broker in the middle of it.
    support::eventually("some load", wait, || {
        progress.load(std::sync::atomic::Ordering::Relaxed) > 200
    });
    let stopped = Instant::now();
    let data = broker.stop();
    assert!(
        stopped.elapsed() < Duration::from_secs(8),
        "stopped in {:?}",
        stopped.elapsed()
    );
    let mut told = false;
    while let Some(got) = watcher.recv(wait) {
        told |= got == Got::Disconnect(ReasonCode::ServerShuttingDown);
    }
    assert!(told, "MQTT 5 clients get DISCONNECT 0x8B");
    let ((status, body), waited) = poll.join().unwrap();
    assert_eq!(status, 200, "the long poll finishes with an answer: {body}");
    assert!(!body.contains("\"Messages\":[{"), "{body}");
    assert!(
        waited < Duration::from_secs(15),
        "answered on shutdown, not after 20 s"
    );
    let acked = publisher.join().unwrap();
    assert!(
        acked.len() > 10,
        "the load ran ({} acknowledged)",
        acked.len()
    );

    let broker = Outpost::start_in(data);
    let got = drain_numbers(broker.mqtt, "keeper", acked.len());
    assert_none_lost(&acked, &got);
}
