//! Acknowledgements from the client.

use outpost_codec::{Ack, Packet, ReasonCode, Version};
use outpost_mqtt::{Broker, ConnectionHandle, Send as Outgoing};
use tokio::io::AsyncWrite;

use super::super::conn::Conn;

/// The acknowledgements that complete an exchange: PUBACK, PUBREC and PUBCOMP of deliveries to
/// the client, PUBREL of the client's QoS 2 publish.
pub(super) fn acknowledgement<W: AsyncWrite + Unpin>(
    packet: Packet<'_>,
    conn: &mut Conn<W>,
    broker: &Broker,
    h: &ConnectionHandle,
) {
    match packet {
        Packet::PubAck(a) => {
            let _ = broker.puback(h, a.pkid);
        }
        Packet::PubRec(a) => {
            if let Ok(Outgoing::PubRel { pkid }) = broker.pubrec(h, a.pkid) {
                conn.push(&Packet::PubRel(Ack::new(pkid)));
            }
        }
        Packet::PubComp(a) => {
            let _ = broker.pubcomp(h, a.pkid);
        }
        Packet::PubRel(a) => {
            let code = broker.pubrel(h, a.pkid);
            let code = if h.version == Version::V5 {
                code
            } else {
                ReasonCode::Success
            };
            conn.push(&Packet::PubComp(Ack {
                pkid: a.pkid,
                code,
                ..Ack::default()
            }));
        }
        _ => {}
    }
}
