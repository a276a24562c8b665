//! proptest strategies that build every packet type with every field exercised.
//!
//! Generated packets own their data by leaking it (`'static`), which is fine in a test process and
//! keeps the strategies free of self-referencing structs.
#![allow(dead_code)]

use outpost_codec::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

pub fn leak_str(s: String) -> &'static str {
    s.leak()
}

pub fn string() -> impl Strategy<Value = &'static str> {
    "[a-zA-Z0-9 /_é€-]{0,12}".prop_map(leak_str)
}

pub fn topic_name() -> impl Strategy<Value = &'static str> {
    "[a-zA-Z0-9/_é$-]{1,16}".prop_map(leak_str)
}

pub fn topic_filter() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        topic_name(),
        Just("#"),
        Just("a/+/c"),
        Just("+/#"),
        Just("$share/group/a/+"),
        Just("$SYS/#"),
    ]
}

pub fn binary() -> impl Strategy<Value = &'static [u8]> {
    vec(any::<u8>(), 0..24).prop_map(|v| &*v.leak())
}

pub fn users() -> impl Strategy<Value = List<'static, UserProperty<'static>>> {
    vec((string(), string()), 0..3).prop_map(|v| {
        let items: Vec<UserProperty<'static>> = v
            .into_iter()
            .map(|(k, v)| UserProperty::new(k, v))
            .collect();
        List::new(items.leak())
    })
}

pub fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn codes(list: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(list).prop_map(|b| ReasonCode::from_u8(b).expect("listed code exists"))
}

// The reason-code tables of MQTT 5 §3.x.2.1, written out independently of the codec's own tables.
pub const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
pub const CONNACK_V311_CODES: &[u8] = &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87];
pub const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
pub const PUBREL_CODES: &[u8] = &[0x00, 0x92];
pub const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
pub const SUBACK_V311_CODES: &[u8] = &[0x00, 0x01, 0x02, 0x80];
pub const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
pub const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
pub const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];

/// MQTT 3.1.1 has no properties: the strategy for it yields only defaults.
fn props<T: Default + Clone + core::fmt::Debug + 'static>(
    v: Version,
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    match v {
        Version::V5 => s.boxed(),
        Version::V311 => Just(T::default()).boxed(),
    }
}

pub fn connect_props() -> impl Strategy<Value = ConnectProperties<'static>> {
    (
        of(any::<u32>()),
        of(1..=u16::MAX),
        of(1..=u32::MAX),
        of(any::<u16>()),
        of(any::<bool>()),
        of(any::<bool>()),
        of(string()),
        of(binary()),
        users(),
    )
        .prop_map(|(a, b, c, d, e, f, g, h, u)| ConnectProperties {
            session_expiry_interval: a,
            receive_maximum: b,
            maximum_packet_size: c,
            topic_alias_maximum: d,
            request_response_information: e,
            request_problem_information: f,
            authentication_method: g,
            authentication_data: h,
            user_properties: u,
        })
}

pub fn will_props() -> impl Strategy<Value = WillProperties<'static>> {
    (
        of(any::<u32>()),
        of(any::<bool>()),
        of(any::<u32>()),
        of(string()),
        of(topic_name()),
        of(binary()),
        users(),
    )
        .prop_map(|(a, b, c, d, e, f, u)| WillProperties {
            will_delay_interval: a,
            payload_format_indicator: b,
            message_expiry_interval: c,
            content_type: d,
            response_topic: e,
            correlation_data: f,
            user_properties: u,
        })
}

pub fn connack_props() -> impl Strategy<Value = ConnAckProperties<'static>> {
    (
        (
            of(any::<u32>()),
            of(1..=u16::MAX),
            of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
            of(any::<bool>()),
            of(1..=u32::MAX),
            of(string()),
            of(any::<u16>()),
            of(string()),
        ),
        (
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<u16>()),
            of(string()),
            of(string()),
            of(string()),
            of(binary()),
        ),
        users(),
    )
        .prop_map(|((a, b, c, d, e, f, g, h), (i, j, k, l, m, n, o, p), u)| {
            ConnAckProperties {
                session_expiry_interval: a,
                receive_maximum: b,
                maximum_qos: c,
                retain_available: d,
                maximum_packet_size: e,
                assigned_client_identifier: f,
                topic_alias_maximum: g,
                reason_string: h,
                wildcard_subscription_available: i,
                subscription_identifiers_available: j,
                shared_subscription_available: k,
                server_keep_alive: l,
                response_information: m,
                server_reference: n,
                authentication_method: o,
                authentication_data: p,
                user_properties: u,
            }
        })
}

pub fn publish_props() -> impl Strategy<Value = PublishProperties<'static>> {
    (
        of(any::<bool>()),
        of(any::<u32>()),
        of(1..=u16::MAX),
        of(topic_name()),
        of(binary()),
        of(string()),
        users(),
        vec(1..=268_435_455u32, 0..3),
    )
        .prop_map(|(a, b, c, d, e, f, u, ids)| PublishProperties {
            payload_format_indicator: a,
            message_expiry_interval: b,
            topic_alias: c,
            response_topic: d,
            correlation_data: e,
            content_type: f,
            user_properties: u,
            subscription_identifiers: List::new(ids.leak()),
        })
}

pub fn ack_props() -> impl Strategy<Value = AckProperties<'static>> {
    (of(string()), users()).prop_map(|(reason_string, user_properties)| AckProperties {
        reason_string,
        user_properties,
    })
}

pub fn connect(v: Version) -> impl Strategy<Value = Packet<'static>> {
    let will = (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        props(v, will_props()),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        });
    (
        any::<bool>(),
        any::<u16>(),
        props(v, connect_props()),
        "[a-zA-Z0-9-]{0,23}".prop_map(leak_str),
        of(will),
        of(string()),
        of(binary()),
    )
        .prop_map(
            move |(clean_start, keep_alive, properties, client_id, will, username, password)| {
                // MQTT 3.1.1 forbids a password without a user name.
                let username = if v == Version::V311 && password.is_some() {
                    username.or(Some("user"))
                } else {
                    username
                };
                Packet::Connect(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    properties,
                    client_id,
                    will,
                    username,
                    password,
                })
            },
        )
}

pub fn connack(v: Version) -> impl Strategy<Value = Packet<'static>> {
    let set = if v == Version::V5 {
        CONNACK_CODES
    } else {
        CONNACK_V311_CODES
    };
    (any::<bool>(), codes(set), props(v, connack_props())).prop_map(
        |(session_present, code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present,
                code,
                properties,
            })
        },
    )
}

pub fn publish(v: Version) -> impl Strategy<Value = Packet<'static>> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        1..=u16::MAX,
        props(v, publish_props()),
        vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(
            move |(dup, qos, retain, topic, pkid, properties, payload, alias_only)| {
                // MQTT 5: an empty topic stands for the topic alias.
                let topic = if v == Version::V5 && alias_only && properties.topic_alias.is_some() {
                    ""
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    dup: dup && qos != QoS::AtMostOnce,
                    qos,
                    retain,
                    topic,
                    pkid: if qos == QoS::AtMostOnce { 0 } else { pkid },
                    properties,
                    payload: payload.leak(),
                })
            },
        )
}

pub fn ack(v: Version, kind: u8) -> impl Strategy<Value = Packet<'static>> {
    let set = if kind >= 6 {
        PUBREL_CODES
    } else {
        PUBACK_CODES
    };
    let code = if v == Version::V5 {
        codes(set).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    };
    (1..=u16::MAX, code, props(v, ack_props())).prop_map(move |(pkid, code, properties)| {
        let a = Ack {
            pkid,
            code,
            properties,
        };
        match kind {
            4 => Packet::PubAck(a),
            5 => Packet::PubRec(a),
            6 => Packet::PubRel(a),
            _ => Packet::PubComp(a),
        }
    })
}

pub fn subscribe(v: Version) -> impl Strategy<Value = Packet<'static>> {
    let options =
        (qos(), any::<bool>(), any::<bool>(), 0..3u8).prop_map(move |(qos, nl, rap, rh)| {
            if v == Version::V311 {
                return SubscribeOptions::qos(qos);
            }
            SubscribeOptions {
                qos,
                no_local: nl,
                retain_as_published: rap,
                retain_handling: match rh {
                    0 => RetainHandling::SendAtSubscribe,
                    1 => RetainHandling::SendIfNew,
                    _ => RetainHandling::DoNotSend,
                },
            }
        });
    let filter = (topic_filter(), options).prop_map(|(filter, mut options)| {
        if filter.starts_with("$share/") {
            options.no_local = false;
        }
        SubscribeFilter { filter, options }
    });
    let sub_props =
        (of(1..=268_435_455u32), users()).prop_map(|(subscription_identifier, user_properties)| {
            SubscribeProperties {
                subscription_identifier,
                user_properties,
            }
        });
    (1..=u16::MAX, props(v, sub_props), vec(filter, 1..4)).prop_map(
        |(pkid, properties, filters)| {
            Packet::Subscribe(Subscribe {
                pkid,
                properties,
                filters: List::new(filters.leak()),
            })
        },
    )
}

pub fn suback(v: Version) -> impl Strategy<Value = Packet<'static>> {
    let set = if v == Version::V5 {
        SUBACK_CODES
    } else {
        SUBACK_V311_CODES
    };
    (1..=u16::MAX, props(v, ack_props()), vec(codes(set), 1..4)).prop_map(
        |(pkid, properties, codes)| {
            Packet::SubAck(SubAck {
                pkid,
                properties,
                codes: List::new(codes.leak()),
            })
        },
    )
}

pub fn unsubscribe(v: Version) -> impl Strategy<Value = Packet<'static>> {
    let p = users().prop_map(|user_properties| UnsubscribeProperties { user_properties });
    (1..=u16::MAX, props(v, p), vec(topic_filter(), 1..4)).prop_map(
        |(pkid, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                pkid,
                properties,
                filters: List::new(filters.leak()),
            })
        },
    )
}

pub fn unsuback(v: Version) -> impl Strategy<Value = Packet<'static>> {
    let codes = match v {
        Version::V5 => vec(codes(UNSUBACK_CODES), 1..4).boxed(),
        Version::V311 => Just(Vec::new()).boxed(),
    };
    (1..=u16::MAX, props(v, ack_props()), codes).prop_map(|(pkid, properties, codes)| {
        Packet::UnsubAck(UnsubAck {
            pkid,
            properties,
            codes: List::new(codes.leak()),
        })
    })
}

pub fn disconnect(v: Version) -> impl Strategy<Value = Packet<'static>> {
    let code = if v == Version::V5 {
        codes(DISCONNECT_CODES).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    };
    let p = (of(any::<u32>()), of(string()), of(string()), users()).prop_map(|(a, b, c, u)| {
        DisconnectProperties {
            session_expiry_interval: a,
            reason_string: b,
            server_reference: c,
            user_properties: u,
        }
    });
    (code, props(v, p))
        .prop_map(|(code, properties)| Packet::Disconnect(Disconnect { code, properties }))
}

pub fn auth() -> impl Strategy<Value = Packet<'static>> {
    let p = (of(string()), of(binary()), of(string()), users()).prop_map(|(a, b, c, u)| {
        AuthProperties {
            authentication_method: a,
            authentication_data: b,
            reason_string: c,
            user_properties: u,
        }
    });
    (codes(AUTH_CODES), p).prop_map(|(code, properties)| Packet::Auth(Auth { code, properties }))
}

/// Any packet valid in `v`.
pub fn packet(v: Version) -> BoxedStrategy<Packet<'static>> {
    let mut all = vec![
        connect(v).boxed(),
        connack(v).boxed(),
        publish(v).boxed(),
        ack(v, 4).boxed(),
        ack(v, 5).boxed(),
        ack(v, 6).boxed(),
        ack(v, 7).boxed(),
        subscribe(v).boxed(),
        suback(v).boxed(),
        unsubscribe(v).boxed(),
        unsuback(v).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(v).boxed(),
    ];
    if v == Version::V5 {
        all.push(auth().boxed());
    }
    proptest::strategy::Union::new(all).boxed()
}

pub fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V311), Just(Version::V5)]
}

/// Encodes into a fresh vector, checking that `encoded_len` agrees.
pub fn encode(p: &Packet<'_>, v: Version) -> Vec<u8> {
    let len = p.encoded_len(v).expect("encodable");
    let mut buf = vec![0u8; len];
    let n = p.encode(v, &mut buf).expect("encodes");
    assert_eq!(n, len, "encode wrote a different length than encoded_len");
    buf
}
