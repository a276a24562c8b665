//! `$CONTROL/dynamic-security/v1`: a client publishes `{"commands": […]}`, the broker runs them
//! and publishes `{"responses": […]}` on `$CONTROL/dynamic-security/v1/response`, as mosquitto's
//! plugin does. Who may send commands is the ACL's decision on the publish (`mqtt:publish` on the
//! topic, or a dynamic role's `publishClientSend`; default access never reaches `$CONTROL`).
//! The PUBACK comes once the change is durable; users disabled or deleted (or given a new
//! password or client id) are disconnected at once.

use std::sync::{Arc, Weak};

use outpost_access::Identity;
use outpost_auth::Security;
use outpost_mqtt::{Broker, Message, PublishTap, TapWait};

/// The command topic.
pub const TOPIC: &str = "$CONTROL/dynamic-security/v1";
/// Where answers go.
pub const RESPONSE_TOPIC: &str = "$CONTROL/dynamic-security/v1/response";

/// The door the broker offers `$CONTROL/…` publishes to.
#[derive(Debug)]
pub struct DynsecDoor {
    security: Arc<Security>,
    broker: Weak<Broker>,
}

impl DynsecDoor {
    /// A door answering through `broker` (held weakly: the broker holds the door).
    pub fn new(security: Arc<Security>, broker: &Arc<Broker>) -> Arc<DynsecDoor> {
        Arc::new(DynsecDoor {
            security,
            broker: Arc::downgrade(broker),
        })
    }
}

/// Runs a request, disconnects whom it says to, and returns the answer (for the admin API, which
/// runs the same commands over HTTP).
pub async fn run(
    security: &Security,
    broker: &Broker,
    actor: &str,
    payload: &[u8],
) -> serde_json::Value {
    let answer = security.dynamic.execute(payload).await;
    for user in &answer.kick {
        security.sessions.close_all_of(user);
        let n = broker.disconnect_identity(user);
        if n > 0 {
            tracing::info!(
                user,
                connections = n,
                by = actor,
                "dynamic security: disconnected"
            );
        }
    }
    answer.response
}

impl PublishTap for DynsecDoor {
    fn offer(&self, client_id: &str, message: &Message) -> Option<TapWait> {
        self.offer_as(&Identity::anonymous(""), client_id, message)
    }

    fn offer_as(&self, who: &Identity, client_id: &str, message: &Message) -> Option<TapWait> {
        if message.topic.as_ref() as &str != TOPIC {
            return None;
        }
        let security = self.security.clone();
        let broker = self.broker.upgrade()?;
        let payload = message.payload.clone();
        let actor = format!("{client_id}/{}", who.name);
        Some(Box::pin(async move {
            let response = run(&security, &broker, &actor, &payload).await;
            let bytes = serde_json::to_vec(&response).map_err(|e| e.to_string())?;
            broker.publish_local(RESPONSE_TOPIC, bytes);
            Ok(())
        }))
    }
}
