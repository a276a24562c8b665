//! The engine's messages on their way to the client: the read ACL, topic aliases, and the
//! client's maximum packet size (a message over it is dropped as if delivered, §3.1.2.11.4).

use std::time::Instant;

use outpost_codec::{Ack, Packet, Publish};
use outpost_mqtt::{Broker, ConnectionHandle, Delivery, Send as Outgoing};
use tokio::io::AsyncWrite;

use super::conn::Conn;

impl<W: AsyncWrite + Unpin> Conn<W> {
    /// Queues the deliveries and acknowledgements the engine has for this connection.
    pub(super) fn push_sends(
        &mut self,
        broker: &Broker,
        h: &ConnectionHandle,
        sends: Vec<Outgoing<Delivery>>,
    ) {
        let now = Instant::now();
        let checked = !self.kept.security.mqtt_open();
        for s in sends {
            match s {
                Outgoing::PubRel { pkid } => self.push(&Packet::PubRel(Ack::new(pkid))),
                Outgoing::Publish {
                    pkid,
                    dup,
                    message: d,
                } => {
                    if checked && !self.may_read(h, &d.message.topic) {
                        // Not this client's to read: as if delivered (mosquitto's `read` ACL).
                        if pkid != 0 {
                            broker.discard(h, pkid);
                        }
                        continue;
                    }
                    let users = d.message.user_properties();
                    let mut properties =
                        d.message
                            .publish_properties(now, &d.subscription_ids, &users);
                    let mut topic: &str = &d.message.topic;
                    let mut new_alias = false;
                    let given = self.kept.aliases.as_ref().map_or(0, |a| a.len());
                    match self
                        .kept
                        .aliases
                        .as_ref()
                        .and_then(|a| a.get(&d.message.topic))
                    {
                        Some(&alias) => {
                            properties.topic_alias = Some(alias);
                            topic = "";
                        }
                        None if (given as u16) < self.kept.alias_max => {
                            let alias = given as u16 + 1;
                            self.kept
                                .aliases
                                .get_or_insert_with(Default::default)
                                .insert(d.message.topic.clone(), alias);
                            properties.topic_alias = Some(alias);
                            new_alias = true;
                        }
                        None => {}
                    }
                    let publish = Publish {
                        dup,
                        qos: d.qos,
                        retain: d.retain,
                        topic,
                        pkid,
                        properties,
                        payload: &d.message.payload,
                    };
                    let packet = Packet::Publish(publish);
                    // A message MQTT cannot carry (a property over 65,535 bytes that slipped
                    // past the door it came in by) is dropped like an oversized one: one
                    // message never blocks the session behind it.
                    let too_big = match (
                        self.kept.client_max.map(std::num::NonZeroU32::get),
                        packet.encoded_len(self.kept.version),
                    ) {
                        (Some(max), Ok(len)) => len > max as usize,
                        (_, Err(e)) => {
                            tracing::warn!(peer = %self.kept.peer, client = &*h.client_id, error = %e, "a message cannot be encoded for this client; discarded");
                            true
                        }
                        (None, Ok(_)) => false,
                    };
                    if too_big {
                        if new_alias {
                            // The client never learns this alias.
                            if let Some(a) = &mut self.kept.aliases {
                                a.remove(&d.message.topic);
                            }
                        }
                        // §3.1.2.11.4: a packet over the client's maximum is not sent, as if delivered.
                        tracing::debug!(peer = %self.kept.peer, "message larger than the client accepts, discarded");
                        if pkid != 0 {
                            broker.discard(h, pkid);
                        }
                        continue;
                    }
                    self.push(&packet);
                }
            }
        }
    }
}
