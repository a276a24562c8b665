//! The broker with rumqttc, an independent Rust client, in both protocol versions.

mod support;

use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use support::Outpost;

const WAIT: Duration = Duration::from_secs(10);

mod v311 {
    use super::*;
    use rumqttc::{Client, Event, MqttOptions, Packet, Publish, QoS};

    pub fn client(broker: &Outpost, id: &str) -> (Client, Receiver<Publish>) {
        client_with(broker, id, true)
    }

    pub fn client_with(broker: &Outpost, id: &str, clean: bool) -> (Client, Receiver<Publish>) {
        let mut opts = MqttOptions::new(id, "127.0.0.1", broker.mqtt.port());
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(clean);
        let (client, mut connection) = Client::new(opts, 64);
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(p).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        (client, rx)
    }

    /// `iot-data` Publish (`POST /topics/{topic}`) reaches a rumqttc subscriber, retained too.
    #[test]
    fn http_publish_reaches_a_subscriber() {
        let broker = Outpost::start();
        let (sub, inbox) = client(&broker, "r311-http-sub");
        sub.subscribe("http/#", QoS::AtLeastOnce).unwrap();
        let post = |path: &str, body: &str| {
            let req = format!(
                "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            support::http::http(&broker.http, req.as_bytes())
        };
        // Publish until the subscription is in place (a SUBACK is not exposed by this client).
        let mut first = None;
        for _ in 0..50 {
            let (code, text) = post("/topics/http%2Fready?qos=1", "?");
            assert_eq!(code, 200, "{text}");
            if let Ok(p) = inbox.recv_timeout(Duration::from_millis(100)) {
                first = Some(p);
                break;
            }
        }
        assert_eq!(first.map(|p| p.topic), Some("http/ready".to_string()));
        while inbox.try_recv().is_ok() {}
        let (code, text) = post("/topics/http%2Fa%2Fb?qos=1&retain=true", "hello");
        assert_eq!(code, 200, "{text}");
        let p = inbox.recv_timeout(WAIT).expect("the HTTP publish arrives");
        assert_eq!(
            (p.topic.as_str(), p.qos, &p.payload[..]),
            ("http/a/b", QoS::AtLeastOnce, &b"hello"[..])
        );
        let (late, late_inbox) = client(&broker, "r311-http-late");
        late.subscribe("http/a/b", QoS::AtLeastOnce).unwrap();
        let p = late_inbox
            .recv_timeout(WAIT)
            .expect("the retained copy arrives");
        assert!(p.retain && &p.payload[..] == b"hello");
        let (code, _) = post("/topics/http%2F%23", "wildcards are not topic names");
        assert_eq!(code, 400);
    }

    #[test]
    fn qos_levels_downgrade_and_retained_delivery() {
        let broker = Outpost::start();
        let (sub, inbox) = client(&broker, "r311-sub");
        sub.subscribe("q/ready", QoS::AtMostOnce).unwrap();
        sub.subscribe("q/+", QoS::AtLeastOnce).unwrap();
        let (publisher, _) = client(&broker, "r311-pub");
        // Publish a marker until the subscription is in place.
        let mut ready = false;
        for _ in 0..50 {
            publisher
                .publish("q/ready", QoS::AtMostOnce, false, "?")
                .unwrap();
            if let Ok(p) = inbox.recv_timeout(Duration::from_millis(100)) {
                ready = p.topic == "q/ready";
                break;
            }
        }
        assert!(ready, "subscription never became active");
        while inbox.try_recv().is_ok() {}
        publisher
            .publish("q/zero", QoS::AtMostOnce, false, "0")
            .unwrap();
        publisher
            .publish("q/one", QoS::AtLeastOnce, false, "1")
            .unwrap();
        publisher
            .publish("q/two", QoS::ExactlyOnce, true, "2")
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            let p = inbox.recv_timeout(WAIT).expect("messages arrive");
            if p.topic != "q/ready" {
                got.push((p.topic.clone(), p.qos, p.retain, p.payload.to_vec()));
            }
        }
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [
                ("q/one".to_string(), QoS::AtLeastOnce, false, b"1".to_vec()),
                ("q/two".to_string(), QoS::AtLeastOnce, false, b"2".to_vec()),
                ("q/zero".to_string(), QoS::AtMostOnce, false, b"0".to_vec()),
            ],
            "QoS 2 is downgraded to the subscription's QoS 1; RETAIN is cleared on live delivery"
        );
        // A later subscriber gets the retained message, flagged.
        let (late, late_inbox) = client(&broker, "r311-late");
        late.subscribe("q/two", QoS::ExactlyOnce).unwrap();
        let p = late_inbox.recv_timeout(WAIT).expect("retained message");
        assert_eq!(
            (p.topic.as_str(), p.retain, p.qos),
            ("q/two", true, QoS::ExactlyOnce)
        );
    }
}

mod v311_sessions {
    use super::v311::client_with;
    use super::*;
    use rumqttc::QoS;

    #[test]
    fn persistent_session_queues_qos1_while_offline() {
        use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet};
        let broker = Outpost::start();
        // The first connection is driven here, so the test knows when it has really ended.
        let mut opts = MqttOptions::new("r311-persistent", "127.0.0.1", broker.mqtt.port());
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(false);
        let (sub, mut connection) = Client::new(opts, 16);
        sub.subscribe("offline/#", QoS::AtLeastOnce).unwrap();
        for event in connection.iter() {
            if let Ok(Event::Incoming(Packet::SubAck(_))) = event {
                break;
            }
            assert!(event.is_ok(), "{event:?}");
        }
        sub.disconnect().unwrap();
        for event in connection.iter() {
            match event {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                _ => {}
            }
        }
        drop(connection);
        let (publisher, _) = super::v311::client(&broker, "r311-feeder");
        for i in 0..5 {
            publisher
                .publish(format!("offline/{i}"), QoS::AtLeastOnce, false, "queued")
                .unwrap();
        }
        let (_again, inbox) = client_with(&broker, "r311-persistent", false);
        let mut topics = Vec::new();
        while topics.len() < 5 {
            let p = inbox
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("queued messages after reconnect; got only {topics:?}"));
            if p.topic.starts_with("offline/") {
                topics.push(p.topic.clone());
            }
        }
        assert_eq!(
            topics,
            (0..5).map(|i| format!("offline/{i}")).collect::<Vec<_>>(),
            "in order"
        );
    }
}

mod v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{
        Filter, Packet, Publish, PublishProperties, SubscribeProperties,
    };
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{Client, Event, MqttOptions};

    pub fn client(broker: &Outpost, id: &str) -> (Client, Receiver<Publish>) {
        let mut opts = MqttOptions::new(id, "127.0.0.1", broker.mqtt.port());
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut connection) = Client::new(opts, 64);
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(p).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        (client, rx)
    }

    fn wait_until_subscribed(publisher: &Client, inbox: &Receiver<Publish>, topic: &str) {
        for _ in 0..50 {
            publisher
                .publish(topic, QoS::AtMostOnce, false, "?")
                .unwrap();
            if inbox.recv_timeout(Duration::from_millis(100)).is_ok() {
                while inbox.try_recv().is_ok() {}
                return;
            }
        }
        panic!("subscription to {topic} never became active");
    }

    #[test]
    fn properties_pass_through_with_subscription_identifier() {
        let broker = Outpost::start();
        let (sub, inbox) = client(&broker, "r5-sub");
        sub.subscribe_with_properties(
            "req/#",
            QoS::AtLeastOnce,
            SubscribeProperties {
                id: Some(42),
                user_properties: vec![],
            },
        )
        .unwrap();
        let (publisher, _) = client(&broker, "r5-pub");
        wait_until_subscribed(&publisher, &inbox, "req/ping");
        let props = PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(600),
            response_topic: Some("resp/r5-pub".into()),
            correlation_data: Some(bytes_of("corr-1")),
            user_properties: vec![("unit".into(), "C".into()), ("site".into(), "north".into())],
            content_type: Some("text/plain".into()),
            ..PublishProperties::default()
        };
        publisher
            .publish_with_properties("req/temp", QoS::AtLeastOnce, false, "21.5", props)
            .unwrap();
        let p = inbox.recv_timeout(WAIT).expect("message");
        let got = p.properties.expect("properties");
        assert_eq!(got.response_topic.as_deref(), Some("resp/r5-pub"));
        assert_eq!(got.correlation_data.as_deref(), Some(&b"corr-1"[..]));
        assert_eq!(got.content_type.as_deref(), Some("text/plain"));
        assert_eq!(got.payload_format_indicator, Some(1));
        assert_eq!(
            got.user_properties,
            [
                ("unit".to_string(), "C".to_string()),
                ("site".to_string(), "north".to_string())
            ]
        );
        assert_eq!(got.subscription_identifiers, [42]);
        let expiry = got.message_expiry_interval.expect("expiry forwarded");
        assert!((590..=600).contains(&expiry), "remaining expiry: {expiry}");
    }

    #[test]
    fn no_local_and_shared_subscriptions() {
        let broker = Outpost::start();
        let (me, my_inbox) = client(&broker, "r5-self");
        let mut filter = Filter::new("chat/room", QoS::AtLeastOnce);
        filter.nolocal = true;
        me.subscribe_many(vec![filter, Filter::new("chat/probe", QoS::AtMostOnce)])
            .unwrap();
        wait_until_subscribed(&me, &my_inbox, "chat/probe");
        me.publish("chat/room", QoS::AtLeastOnce, false, "mine")
            .unwrap();
        let (other, _) = client(&broker, "r5-other");
        other
            .publish("chat/room", QoS::AtLeastOnce, false, "theirs")
            .unwrap();
        let p = my_inbox
            .recv_timeout(WAIT)
            .expect("the other client's message");
        assert_eq!(
            &p.payload[..],
            b"theirs",
            "No Local: own message not echoed"
        );

        // A shared group: each message goes to exactly one member.
        let (w1, in1) = client(&broker, "r5-w1");
        let (w2, in2) = client(&broker, "r5-w2");
        for w in [&w1, &w2] {
            w.subscribe("$share/workers/jobs/+", QoS::AtLeastOnce)
                .unwrap();
            w.subscribe("jobs/probe", QoS::AtMostOnce).unwrap();
        }
        wait_until_subscribed(&other, &in1, "jobs/probe");
        wait_until_subscribed(&other, &in2, "jobs/probe");
        while in1.try_recv().is_ok() {}
        while in2.try_recv().is_ok() {}
        for i in 0..10 {
            other
                .publish(format!("jobs/{i}"), QoS::AtLeastOnce, false, "work")
                .unwrap();
        }
        let mut n1 = 0;
        let mut n2 = 0;
        let deadline = std::time::Instant::now() + WAIT;
        while n1 + n2 < 10 && std::time::Instant::now() < deadline {
            if let Ok(p) = in1.recv_timeout(Duration::from_millis(50)) {
                n1 += usize::from(p.topic != "jobs/probe");
            }
            if let Ok(p) = in2.recv_timeout(Duration::from_millis(50)) {
                n2 += usize::from(p.topic != "jobs/probe");
            }
        }
        assert_eq!(n1 + n2, 10, "every job delivered once");
        assert!(n1 > 0 && n2 > 0, "shared between members: {n1} and {n2}");
    }

    #[test]
    fn retain_handling_options() {
        use rumqttc::v5::mqttbytes::v5::RetainForwardRule;
        let broker = Outpost::start();
        let (publisher, _) = client(&broker, "r5-retainer");
        publisher
            .publish("state/door", QoS::AtLeastOnce, true, "open")
            .unwrap();
        let (a, inbox_a) = client(&broker, "r5-rh");
        let mut never = Filter::new("state/#", QoS::AtLeastOnce);
        never.retain_forward_rule = RetainForwardRule::Never;
        a.subscribe_many(vec![never, Filter::new("probe/rh", QoS::AtMostOnce)])
            .unwrap();
        wait_until_subscribed(&publisher, &inbox_a, "probe/rh");
        // Late probes may still arrive; only a state/door message is a failure.
        let quiet_until = std::time::Instant::now() + Duration::from_millis(300);
        while let Some(left) = quiet_until.checked_duration_since(std::time::Instant::now()) {
            if let Ok(p) = inbox_a.recv_timeout(left) {
                assert_ne!(
                    &p.topic[..],
                    b"state/door",
                    "Retain Handling 2: no retained message at subscribe"
                );
            }
        }
        let (b, inbox_b) = client(&broker, "r5-rh-default");
        let mut keep = Filter::new("state/door", QoS::AtLeastOnce);
        keep.preserve_retain = true;
        b.subscribe_many(vec![keep]).unwrap();
        let p = inbox_b
            .recv_timeout(WAIT)
            .expect("retained message at subscribe");
        assert!(p.retain);
        // Retain As Published: a live retained publish keeps its flag for b, not for a.
        publisher
            .publish("state/door", QoS::AtLeastOnce, true, "closed")
            .unwrap();
        let pb = inbox_b.recv_timeout(WAIT).expect("live message");
        assert!(pb.retain, "Retain As Published keeps the flag");
        let pa = loop {
            let p = inbox_a.recv_timeout(WAIT).expect("live message");
            if &p.topic[..] == b"state/door" {
                break p;
            }
        };
        assert!(
            !pa.retain,
            "without Retain As Published the flag is cleared"
        );
    }

    fn bytes_of(s: &str) -> bytes::Bytes {
        bytes::Bytes::copy_from_slice(s.as_bytes())
    }
}

mod lifecycle {
    use super::*;
    use rumqttc::{Client, Event, LastWill, MqttOptions, Packet, QoS};

    /// Drives a connection until CONNACK; returns the client and its event loop.
    fn connected(opts: MqttOptions) -> (Client, rumqttc::Connection) {
        let (client, mut connection) = Client::new(opts, 16);
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("connect failed: {e}"),
            }
        }
        (client, connection)
    }

    #[test]
    fn v311_will_on_a_dropped_connection_only() {
        let broker = Outpost::start();
        let (watcher, inbox) = super::v311::client(&broker, "r311-watcher");
        watcher.subscribe("last/#", QoS::AtLeastOnce).unwrap();
        watcher.subscribe("last-probe", QoS::AtMostOnce).unwrap();
        let (probe, _) = super::v311::client(&broker, "r311-probe");
        let mut ready = false;
        for _ in 0..50 {
            probe
                .publish("last-probe", QoS::AtMostOnce, false, "?")
                .unwrap();
            if inbox.recv_timeout(Duration::from_millis(100)).is_ok() {
                ready = true;
                break;
            }
        }
        assert!(ready);
        while inbox.try_recv().is_ok() {}

        // Clean DISCONNECT: no will.
        let mut opts = MqttOptions::new("r311-polite", "127.0.0.1", broker.mqtt.port());
        opts.set_last_will(LastWill::new(
            "last/polite",
            "should not appear",
            QoS::AtLeastOnce,
            false,
        ));
        let (polite, mut connection) = connected(opts);
        polite.disconnect().unwrap();
        for event in connection.iter() {
            if event.is_err() || matches!(event, Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)))
            {
                break;
            }
        }
        drop(connection);
        // Dropped connection (no DISCONNECT): the will goes out.
        let mut opts = MqttOptions::new("r311-doomed", "127.0.0.1", broker.mqtt.port());
        opts.set_last_will(LastWill::new(
            "last/doomed",
            "gone",
            QoS::AtLeastOnce,
            false,
        ));
        let (_doomed, connection) = connected(opts);
        drop(connection);
        let p = inbox.recv_timeout(WAIT).expect("the will");
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            ("last/doomed", &b"gone"[..])
        );
        assert!(
            inbox.recv_timeout(Duration::from_millis(300)).is_err(),
            "no will for the polite client"
        );
    }

    #[test]
    fn v5_session_expiry_and_message_expiry() {
        use rumqttc::v5::mqttbytes::v5::{ConnectProperties, Packet as P5, PublishProperties};
        use rumqttc::v5::mqttbytes::QoS as Q5;
        use rumqttc::v5::{Client as C5, Event as E5, MqttOptions as O5};
        let broker = Outpost::start();
        let session = |id: &str, expiry: u32| {
            let mut o = O5::new(id, "127.0.0.1", broker.mqtt.port());
            o.set_clean_start(false);
            let mut props = ConnectProperties::new();
            props.session_expiry_interval = Some(expiry);
            o.set_connect_properties(props);
            let (c, mut conn) = C5::new(o, 16);
            let mut present = None;
            for e in conn.iter() {
                match e {
                    Ok(E5::Incoming(P5::ConnAck(ack))) => {
                        present = Some(ack.session_present);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            (c, conn, present.expect("CONNACK"))
        };
        let subscribe_and_leave = |c: C5, mut conn: rumqttc::v5::Connection| {
            c.subscribe("exp/#", Q5::AtLeastOnce).unwrap();
            for e in conn.iter() {
                if let Ok(E5::Incoming(P5::SubAck(_))) = e {
                    break;
                }
            }
            c.disconnect().unwrap();
            for e in conn.iter() {
                if e.is_err() || matches!(e, Ok(E5::Outgoing(rumqttc::Outgoing::Disconnect))) {
                    break;
                }
            }
        };
        // A session that expires one second after its connection ends.
        let (c, conn, present) = session("r5-short", 1);
        assert!(!present);
        subscribe_and_leave(c, conn);
        // A long-lived session that is sent a message expiring in one second.
        let (c, conn, _) = session("r5-long", 3600);
        subscribe_and_leave(c, conn);
        let (publisher, _) = super::v5::client(&broker, "r5-exp-pub");
        publisher
            .publish_with_properties(
                "exp/short-lived",
                Q5::AtLeastOnce,
                false,
                "stale soon",
                PublishProperties {
                    message_expiry_interval: Some(1),
                    ..PublishProperties::default()
                },
            )
            .unwrap();
        publisher
            .publish("exp/durable", Q5::AtLeastOnce, false, "kept")
            .unwrap();
        // Both expiries are timers: let them run out (the broker checks every second).
        std::thread::sleep(Duration::from_millis(2500));
        let (_c, _conn, present) = session("r5-short", 1);
        assert!(!present, "the short session expired");
        let (_c, mut conn, present) = session("r5-long", 3600);
        assert!(present);
        // Queued in order: an undelivered expired message would have come before "kept".
        let mut got = Vec::new();
        for e in conn.iter() {
            match e {
                Ok(E5::Incoming(P5::Publish(p))) => {
                    got.push(String::from_utf8_lossy(&p.payload).to_string());
                    if got.last().is_some_and(|m| m == "kept") {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, ["kept"], "the expired message was not delivered");
    }
}
