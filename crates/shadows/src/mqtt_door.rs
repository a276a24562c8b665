//! The MQTT door of the shadow service: a client's PUBLISH to `…/shadow/get`, `…/update` or
//! `…/delete` (classic or named) is a request, answered on `…/accepted` or `…/rejected` (and
//! `update/delta`, `update/documents`) as AWS's Device Shadow service answers it. The request
//! is also routed as any message (subscribers of `…/update` see it, as in AWS). Its PUBACK waits
//! until the change is durable. The ACL decides twice: `mqtt:publish` on the topic (the broker,
//! as for any topic) and IoT's action on the thing (`iot:UpdateThingShadow` on
//! `arn:aws:iot:…:thing/{thing}`), as the iot-data door does. More than 10 requests in flight
//! from one client are refused with 429, as in AWS.

use std::collections::HashMap;
use std::sync::Arc;

use outpost_access::Identity;
use outpost_mqtt::{Message, PublishTap, TapWait};
use parking_lot::Mutex;

use crate::document::{client_token, parse_request, parse_update};
use crate::names::{self, Op};
use crate::service::Shadows;
use crate::ShadowError;

/// Requests one client may have in flight.
const MAX_IN_FLIGHT: usize = 10;

/// The tap the broker offers every client PUBLISH to.
#[derive(Debug)]
pub struct ShadowTopics {
    shadows: Arc<Shadows>,
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

impl ShadowTopics {
    pub fn new(shadows: Arc<Shadows>) -> Arc<ShadowTopics> {
        Arc::new(ShadowTopics {
            shadows,
            in_flight: Arc::default(),
        })
    }
}

/// Counts a client's request while it is in flight.
struct InFlight {
    map: Arc<Mutex<HashMap<String, usize>>>,
    client: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut m = self.map.lock();
        if let Some(n) = m.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.client);
            }
        }
    }
}

fn action(op: Op) -> &'static str {
    match op {
        Op::Get => "iot:GetThingShadow",
        Op::Update => "iot:UpdateThingShadow",
        Op::Delete => "iot:DeleteThingShadow",
    }
}

impl PublishTap for ShadowTopics {
    fn offer(&self, client_id: &str, message: &Message) -> Option<TapWait> {
        self.offer_as(&Identity::anonymous(""), client_id, message)
    }

    fn offer_as(&self, who: &Identity, client_id: &str, message: &Message) -> Option<TapWait> {
        let topic = names::parse(&message.topic)?;
        if topic.answer || client_id.is_empty() {
            // The broker's own answers (and the broker itself) are no requests.
            return None;
        }
        let (thing, shadow, op) = (
            topic.thing.to_string(),
            topic.shadow.map(str::to_string),
            topic.op,
        );
        let payload = message.payload.clone();
        let shadows = self.shadows.clone();
        let guard = {
            let mut m = self.in_flight.lock();
            let n = m.entry(client_id.to_string()).or_insert(0);
            *n += 1;
            InFlight {
                map: self.in_flight.clone(),
                client: client_id.to_string(),
            }
        };
        let over = self.in_flight.lock().get(client_id).copied().unwrap_or(0) > MAX_IN_FLIGHT;
        let allowed = self.shadows.allows(who, client_id, action(op), &thing);
        Some(Box::pin(async move {
            let _guard = guard;
            let s = shadow.as_deref();
            let token = parse_request(&payload)
                .ok()
                .and_then(|r| client_token(&r).ok().flatten());
            let refuse = |e: ShadowError| {
                shadows.announce(vec![Shadows::rejection(
                    &thing,
                    s,
                    op,
                    &e,
                    token.as_deref(),
                )]);
            };
            if over {
                refuse(ShadowError::TooManyRequests);
                return Ok(());
            }
            if !allowed {
                refuse(ShadowError::Forbidden);
                return Ok(());
            }
            match op {
                Op::Get => {
                    let checked = parse_request(&payload).and_then(|r| client_token(&r));
                    match checked.and_then(|t| shadows.get(&thing, s).map(|d| (d, t))) {
                        Ok((mut doc, t)) => {
                            if let (Some(t), Some(o)) = (t, doc.as_object_mut()) {
                                o.insert("clientToken".into(), serde_json::json!(t));
                            }
                            shadows.announce(vec![(
                                format!("{}/get/accepted", names::prefix(&thing, s)),
                                doc.to_string().into_bytes(),
                            )]);
                        }
                        Err(e) => refuse(e),
                    }
                }
                Op::Update => match parse_update(&payload) {
                    Ok(update) => {
                        if let Err(e) = shadows.update(&thing, s, &update).await {
                            refuse(e);
                        }
                    }
                    Err(e) => refuse(e),
                },
                Op::Delete => {
                    let checked = parse_request(&payload).and_then(|r| client_token(&r));
                    match checked {
                        Ok(t) => match shadows.delete(&thing, s).await {
                            Ok(mut doc) => {
                                if let (Some(t), Some(o)) = (t, doc.as_object_mut()) {
                                    o.insert("clientToken".into(), serde_json::json!(t));
                                }
                                shadows.announce(vec![(
                                    format!("{}/delete/accepted", names::prefix(&thing, s)),
                                    doc.to_string().into_bytes(),
                                )]);
                            }
                            Err(e) => refuse(e),
                        },
                        Err(e) => refuse(e),
                    }
                }
            }
            // The request was answered (accepted or rejected): the PUBACK may go. A store
            // failure was answered with 500 on `/rejected` as AWS does.
            Ok(())
        }))
    }
}
