//! The incoming side of one connection: exactly-once bookkeeping for QoS 2, the Receive Maximum the
//! broker announced, and MQTT 5 topic aliases chosen by the client.
//!
//! Each check answers with the MQTT 5 reason code the broker must send (in PUBACK/PUBREC or a
//! DISCONNECT), so the listener never invents one.

use std::collections::{HashMap, HashSet};

use outpost_codec::{Publish, QoS, ReasonCode};

/// What to do with an incoming PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Route it; `topic` is the resolved topic name (after alias lookup).
    Deliver { topic: String },
    /// A QoS 2 retransmission of a message already accepted: answer PUBREC again, do not route it.
    Duplicate,
}

/// Incoming flow state of one connection.
#[derive(Debug)]
pub struct Inbox {
    receive_maximum: u16,
    topic_alias_maximum: u16,
    /// Boxed on first use: the session of an idle or QoS 0 client holds 8 bytes here instead of
    /// three empty maps (144 bytes), in every session (issue 29).
    open: Option<Box<Open>>,
}

/// What a client has in progress.
#[derive(Debug, Default)]
struct Open {
    /// QoS 1 messages routed but not yet acknowledged (the ack waits for durability) and QoS 2
    /// messages awaiting PUBREL: together bounded by `receive_maximum`.
    pending_qos1: HashSet<u16>,
    awaiting_pubrel: HashSet<u16>,
    aliases: HashMap<u16, String>,
}

impl Inbox {
    /// `receive_maximum` and `topic_alias_maximum` are what the broker announced in CONNACK.
    pub fn new(receive_maximum: u16, topic_alias_maximum: u16) -> Self {
        Inbox {
            receive_maximum: receive_maximum.max(1),
            topic_alias_maximum,
            open: None,
        }
    }

    fn open(&mut self) -> &mut Open {
        self.open.get_or_insert_with(Default::default)
    }

    /// Checks an incoming PUBLISH. An error is the reason code of the DISCONNECT to send.
    pub fn publish(&mut self, p: &Publish<'_>) -> Result<Incoming, ReasonCode> {
        let topic = self.resolve_topic(p)?;
        match p.qos {
            QoS::AtMostOnce => Ok(Incoming::Deliver { topic }),
            QoS::AtLeastOnce => {
                self.check_room()?;
                self.open().pending_qos1.insert(p.pkid);
                Ok(Incoming::Deliver { topic })
            }
            QoS::ExactlyOnce => {
                if self
                    .open
                    .as_ref()
                    .is_some_and(|o| o.awaiting_pubrel.contains(&p.pkid))
                {
                    return Ok(Incoming::Duplicate);
                }
                self.check_room()?;
                self.open().awaiting_pubrel.insert(p.pkid);
                Ok(Incoming::Deliver { topic })
            }
        }
    }

    fn check_room(&self) -> Result<(), ReasonCode> {
        // §3.3.4: more unacknowledged QoS 1/2 PUBLISH packets than Receive Maximum is a protocol error.
        let open = self
            .open
            .as_ref()
            .map_or(0, |o| o.pending_qos1.len() + o.awaiting_pubrel.len());
        if open >= usize::from(self.receive_maximum) {
            return Err(ReasonCode::ReceiveMaximumExceeded);
        }
        Ok(())
    }

    fn resolve_topic(&mut self, p: &Publish<'_>) -> Result<String, ReasonCode> {
        let Some(alias) = p.properties.topic_alias else {
            return Ok(p.topic.to_string());
        };
        if alias == 0 || alias > self.topic_alias_maximum {
            return Err(ReasonCode::TopicAliasInvalid);
        }
        if p.topic.is_empty() {
            // §3.3.2.3.4: an empty topic uses the alias set earlier on this connection.
            return self
                .open
                .as_ref()
                .and_then(|o| o.aliases.get(&alias))
                .cloned()
                .ok_or(ReasonCode::ProtocolError);
        }
        self.open().aliases.insert(alias, p.topic.to_string());
        Ok(p.topic.to_string())
    }

    /// The QoS 1 message `pkid` was handled (stored if needed): send PUBACK now.
    pub fn acked_qos1(&mut self, pkid: u16) {
        if let Some(o) = &mut self.open {
            o.pending_qos1.remove(&pkid);
        }
    }

    /// PUBREL for an incoming QoS 2 message: answer PUBCOMP with the returned code (Packet Identifier
    /// not found when it was not pending — still answered, §4.3.3).
    pub fn pubrel(&mut self, pkid: u16) -> ReasonCode {
        if self
            .open
            .as_mut()
            .is_some_and(|o| o.awaiting_pubrel.remove(&pkid))
        {
            ReasonCode::Success
        } else {
            ReasonCode::PacketIdentifierNotFound
        }
    }

    /// Forgets the topic aliases: they live for one network connection only (§3.3.2.3.4). What
    /// no longer holds anything is given back.
    pub fn reset_aliases(&mut self) {
        if let Some(o) = &mut self.open {
            o.aliases.clear();
            if o.pending_qos1.is_empty() && o.awaiting_pubrel.is_empty() {
                self.open = None;
            }
        }
    }

    /// QoS 2 packet identifiers still awaiting PUBREL (kept with a persistent session).
    pub fn awaiting_pubrel(&self) -> impl Iterator<Item = u16> + '_ {
        self.open
            .iter()
            .flat_map(|o| o.awaiting_pubrel.iter().copied())
    }

    /// Restores QoS 2 state of a resumed session (topic aliases never survive a connection).
    pub fn restore_awaiting_pubrel(&mut self, ids: impl IntoIterator<Item = u16>) {
        let mut ids = ids.into_iter().peekable();
        if ids.peek().is_some() {
            self.open().awaiting_pubrel.extend(ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_codec::PublishProperties;

    fn publish(topic: &'static str, qos: QoS, pkid: u16, alias: Option<u16>) -> Publish<'static> {
        Publish {
            qos,
            pkid,
            properties: PublishProperties {
                topic_alias: alias,
                ..PublishProperties::default()
            },
            ..Publish::new(topic, b"x")
        }
    }

    #[test]
    fn qos2_is_delivered_once() {
        let mut inbox = Inbox::new(10, 0);
        let p = publish("a", QoS::ExactlyOnce, 7, None);
        assert_eq!(
            inbox.publish(&p),
            Ok(Incoming::Deliver { topic: "a".into() })
        );
        assert_eq!(
            inbox.publish(&Publish { dup: true, ..p }),
            Ok(Incoming::Duplicate)
        );
        assert_eq!(inbox.pubrel(7), ReasonCode::Success);
        assert_eq!(inbox.pubrel(7), ReasonCode::PacketIdentifierNotFound);
        // After PUBREL the identifier may be reused for a new message.
        assert_eq!(
            inbox.publish(&p),
            Ok(Incoming::Deliver { topic: "a".into() })
        );
    }

    #[test]
    fn receive_maximum_is_enforced() {
        let mut inbox = Inbox::new(2, 0);
        inbox
            .publish(&publish("a", QoS::AtLeastOnce, 1, None))
            .unwrap();
        inbox
            .publish(&publish("a", QoS::ExactlyOnce, 2, None))
            .unwrap();
        assert_eq!(
            inbox.publish(&publish("a", QoS::AtLeastOnce, 3, None)),
            Err(ReasonCode::ReceiveMaximumExceeded)
        );
        assert!(
            inbox
                .publish(&publish("a", QoS::AtMostOnce, 0, None))
                .is_ok(),
            "QoS 0 does not count"
        );
        inbox.acked_qos1(1);
        assert!(inbox
            .publish(&publish("a", QoS::AtLeastOnce, 3, None))
            .is_ok());
    }

    #[test]
    fn topic_aliases() {
        let mut inbox = Inbox::new(10, 2);
        assert_eq!(
            inbox.publish(&publish("", QoS::AtMostOnce, 0, Some(1))),
            Err(ReasonCode::ProtocolError)
        );
        assert!(inbox
            .publish(&publish("long/topic/name", QoS::AtMostOnce, 0, Some(1)))
            .is_ok());
        assert_eq!(
            inbox.publish(&publish("", QoS::AtMostOnce, 0, Some(1))),
            Ok(Incoming::Deliver {
                topic: "long/topic/name".into()
            })
        );
        // Redefining an alias.
        assert!(inbox
            .publish(&publish("other", QoS::AtMostOnce, 0, Some(1)))
            .is_ok());
        assert_eq!(
            inbox.publish(&publish("", QoS::AtMostOnce, 0, Some(1))),
            Ok(Incoming::Deliver {
                topic: "other".into()
            })
        );
        assert_eq!(
            inbox.publish(&publish("x", QoS::AtMostOnce, 0, Some(3))),
            Err(ReasonCode::TopicAliasInvalid)
        );
        let mut no_aliases = Inbox::new(10, 0);
        assert_eq!(
            no_aliases.publish(&publish("x", QoS::AtMostOnce, 0, Some(1))),
            Err(ReasonCode::TopicAliasInvalid)
        );
    }
}
