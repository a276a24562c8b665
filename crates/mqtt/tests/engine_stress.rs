//! The engine under contention: many threads connecting, taking sessions over, subscribing,
//! publishing, acknowledging, disconnecting and ticking at once, with a watchdog. A lock-order
//! mistake deadlocks here (the watchdog fails the test) instead of in a gateway; a race that
//! loses a delivery shows in the one stable publisher/subscriber pair, which must see every
//! QoS 1 message, in order, while everything around it churns.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_codec::{
    Connect, ConnectProperties, List, Publish, QoS, Subscribe, SubscribeFilter, Unsubscribe,
    Version,
};
use outpost_mqtt::{Accepted, Broker, BrokerConfig, ConnectionHandle, Disconnect, Send};

/// The output of a future that is ready at once (an engine without a store never waits).
fn now<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the engine waited without a store"),
    }
}

fn connect(b: &Broker, id: &str, clean: bool) -> ConnectionHandle {
    let c = Connect {
        protocol: Version::V5,
        clean_start: clean,
        keep_alive: 60,
        client_id: id,
        properties: ConnectProperties {
            session_expiry_interval: Some(if clean { 0 } else { 3600 }),
            ..ConnectProperties::default()
        },
        ..Connect::default()
    };
    let a: Accepted = now(b.connect(&c)).expect("accepted");
    a.handle
}

fn subscribe(b: &Broker, h: &ConnectionHandle, filter: &str) {
    let f = [SubscribeFilter::new(filter, QoS::AtLeastOnce)];
    b.subscribe(
        h,
        &Subscribe {
            pkid: 1,
            filters: List::new(&f),
            ..Subscribe::default()
        },
    );
}

fn publish(b: &Broker, h: &ConnectionHandle, topic: &str, pkid: u16, payload: &[u8], retain: bool) {
    let p = Publish {
        qos: QoS::AtLeastOnce,
        pkid,
        retain,
        ..Publish::new(topic, payload)
    };
    let _ = b.publish(
        h,
        &p,
        Bytes::copy_from_slice(payload),
        &mut outpost_mqtt::Wakes::new(),
        &|_| true,
    );
}

/// Takes what may be sent and acknowledges it; returns the payloads.
fn drain(b: &Broker, h: &ConnectionHandle) -> Vec<Bytes> {
    let mut out = Vec::new();
    for s in b.sendable(h) {
        if let Send::Publish { pkid, message, .. } = s {
            if pkid != 0 {
                let _ = b.puback(h, pkid);
            }
            out.push(message.message.payload.clone());
        }
    }
    out
}

#[test]
fn no_deadlock_and_no_loss_under_contention() {
    let broker = Arc::new(Broker::new(BrokerConfig {
        flow_control_queue: 100_000,
        ..BrokerConfig::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let run_for = Duration::from_secs(3);
    let (done_tx, done_rx) = mpsc::channel::<&'static str>();
    let mut threads = Vec::new();

    // The stable pair: every message, in order.
    const STABLE: u64 = 20_000;
    let received = Arc::new(AtomicU64::new(0));
    let sub = connect(&broker, "stable-sub", true);
    subscribe(&broker, &sub, "stable/#");
    {
        let (b, tx, received) = (broker.clone(), done_tx.clone(), received.clone());
        threads.push(std::thread::spawn(move || {
            let mut expected = 0u64;
            let deadline = Instant::now() + Duration::from_secs(60);
            while expected < STABLE && Instant::now() < deadline {
                for p in drain(&b, &sub) {
                    let n: u64 = std::str::from_utf8(&p).unwrap().parse().unwrap();
                    assert_eq!(n, expected, "stable subscriber: out of order or lost");
                    expected += 1;
                }
                received.store(expected, Ordering::Relaxed);
                std::thread::yield_now();
            }
            assert_eq!(expected, STABLE, "stable subscriber: messages lost");
            tx.send("stable subscriber").unwrap();
        }));
    }
    {
        let (b, tx, received) = (broker.clone(), done_tx.clone(), received.clone());
        threads.push(std::thread::spawn(move || {
            let h = connect(&b, "stable-pub", true);
            for n in 0..STABLE {
                // Its own flow control: stay within the subscriber's queue.
                while n >= received.load(Ordering::Relaxed) + 500 {
                    std::thread::yield_now();
                }
                publish(
                    &b,
                    &h,
                    "stable/x",
                    (n % 60_000 + 1) as u16,
                    n.to_string().as_bytes(),
                    false,
                );
            }
            tx.send("stable publisher").unwrap();
        }));
    }

    // Churn: sessions that come and go, are taken over, subscribe and unsubscribe.
    for t in 0..4u64 {
        let (b, tx, stop) = (broker.clone(), done_tx.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let id = format!("churn-{}", (t * 7 + i) % 6);
                let h = connect(&b, &id, i.is_multiple_of(3));
                subscribe(&b, &h, "stable/#");
                subscribe(&b, &h, &format!("$share/g/churn/{}", i % 4));
                subscribe(&b, &h, "churn/#");
                let topic = format!("churn/{}", i % 4);
                publish(
                    &b,
                    &h,
                    &topic,
                    (i % 1000 + 1) as u16,
                    b"x",
                    i.is_multiple_of(5),
                );
                drain(&b, &h);
                if i.is_multiple_of(4) {
                    let f = ["churn/#"];
                    b.unsubscribe(
                        &h,
                        &Unsubscribe {
                            pkid: 2,
                            filters: List::new(&f),
                            ..Unsubscribe::default()
                        },
                    );
                }
                let how = if i.is_multiple_of(2) {
                    Disconnect::Abrupt
                } else {
                    Disconnect::Normal
                };
                b.disconnect(&h, how, None);
            }
            tx.send("churn").unwrap();
        }));
    }
    {
        let (b, tx, stop) = (broker.clone(), done_tx.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut later = 0;
            while !stop.load(Ordering::Relaxed) {
                later = (later + 1) % 10_000;
                b.tick(Instant::now() + Duration::from_secs(later));
                let _ = b.status();
                std::thread::sleep(Duration::from_millis(1));
            }
            tx.send("tick").unwrap();
        }));
    }
    drop(done_tx);

    std::thread::sleep(run_for);
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut finished = Vec::new();
    while finished.len() < threads.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(name) => finished.push(name),
            Err(_) => panic!(
                "deadlock or lost progress: only {finished:?} finished within 60 s (a panic in a thread shows above)"
            ),
        }
    }
    for t in threads {
        t.join().expect("a thread panicked");
    }
    assert_eq!(received.load(Ordering::Relaxed), STABLE);
}
