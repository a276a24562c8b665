//! The MQTT door of the shadow service: a client's PUBLISH to `…/shadow/get`, `…/update` or
//! `…/delete` (classic or named) is a request, answered on `…/accepted` or `…/rejected` (and
//! `update/delta`, `update/documents`) as AWS's Device Shadow service answers it. The request
//! is also routed as any message (subscribers of `…/update` see it, as in AWS). Its PUBACK waits
//! until the change is durable. The ACL decides twice: `mqtt:publish` on the topic (the broker,
//! as for any topic) and IoT's action on the thing (`iot:UpdateThingShadow` on
//! `arn:aws:iot:…:thing/{thing}`), as the iot-data door does. More than 10 requests in flight
//! from one client are refused with 429, as in AWS.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use outpost_access::Identity;
use outpost_mqtt::{Message, PublishTap, TapWait};
use parking_lot::Mutex;

use crate::document::{client_token, parse_request, update_from};
use crate::names::{self, Op};
use crate::service::{with_token, Shadows};
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

/// What an accepted update or delete still waits for.
enum Later {
    Update(Pin<Box<dyn Future<Output = Result<serde_json::Value, ShadowError>> + Send>>),
    Delete(
        Pin<Box<dyn Future<Output = Result<serde_json::Value, ShadowError>> + Send>>,
        Option<String>,
    ),
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
        let (guard, over) = {
            let mut m = self.in_flight.lock();
            let n = m.entry(client_id.to_string()).or_insert(0);
            *n += 1;
            let guard = InFlight {
                map: self.in_flight.clone(),
                client: client_id.to_string(),
            };
            (guard, *n > MAX_IN_FLIGHT)
        };
        let allowed = self.shadows.allows(who, client_id, action(op), &thing);
        let s = shadow.as_deref();
        // Parsed once: the token for every answer, the request for the operation.
        let request = parse_request(&message.payload);
        let token = request
            .as_ref()
            .ok()
            .and_then(|r| client_token(r).ok().flatten());
        let rejected = {
            let (thing, shadow, token) = (thing.clone(), shadow.clone(), token.clone());
            move |e: &ShadowError| {
                Shadows::rejection(&thing, shadow.as_deref(), op, e, token.as_deref())
            }
        };
        let prefix = names::prefix(&thing, s);
        // The request is taken now, in the order requests arrive; what waits for the disk (an
        // update's or a delete's answers) is the returned future.
        let (now, later): (Vec<(String, Vec<u8>)>, Option<Later>) = if over {
            (vec![rejected(&ShadowError::TooManyRequests)], None)
        } else if !allowed {
            (vec![rejected(&ShadowError::Forbidden)], None)
        } else {
            match op {
                Op::Get => {
                    let checked = request.and_then(|r| client_token(&r));
                    match checked.and_then(|t| self.shadows.get(&thing, s).map(|d| (d, t))) {
                        Ok((mut doc, t)) => {
                            with_token(&mut doc, t.as_deref());
                            (
                                vec![(
                                    format!("{prefix}/get/accepted"),
                                    doc.to_string().into_bytes(),
                                )],
                                None,
                            )
                        }
                        Err(e) => (vec![rejected(&e)], None),
                    }
                }
                Op::Update => match request
                    .and_then(update_from)
                    .and_then(|u| self.shadows.update_now(&thing, s, &u))
                {
                    Ok(done) => (vec![], Some(Later::Update(Box::pin(done)))),
                    Err(e) => (vec![rejected(&e)], None),
                },
                Op::Delete => match request
                    .and_then(|r| client_token(&r))
                    .and_then(|t| self.shadows.delete_now(&thing, s).map(|d| (d, t)))
                {
                    Ok((done, t)) => (vec![], Some(Later::Delete(Box::pin(done), t))),
                    Err(e) => (vec![rejected(&e)], None),
                },
            }
        };
        let shadows = self.shadows.clone();
        Some(Box::pin(async move {
            let _guard = guard;
            shadows.announce(now);
            match later {
                None => {}
                Some(Later::Update(done)) => {
                    if let Err(e) = done.await {
                        shadows.announce(vec![rejected(&e)]);
                    }
                }
                Some(Later::Delete(done, t)) => match done.await {
                    Ok(mut doc) => {
                        with_token(&mut doc, t.as_deref());
                        shadows.announce(vec![(
                            format!("{prefix}/delete/accepted"),
                            doc.to_string().into_bytes(),
                        )]);
                    }
                    Err(e) => shadows.announce(vec![rejected(&e)]),
                },
            }
            // The request was answered (accepted or rejected): the PUBACK may go. A store
            // failure was answered with 500 on `/rejected`, as AWS does.
            Ok(())
        }))
    }
}
