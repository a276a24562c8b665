//! One client packet: decoded here, handled by its family's file; what is left (PINGREQ,
//! DISCONNECT, packets a client must not send) is answered here.

mod acks;
mod publish;
mod subscribe;

use outpost_codec::{decode, Decoded, Packet, ReasonCode};
use outpost_mqtt::{Broker, ConnectionHandle, Disconnect};
use tokio::io::AsyncWrite;

use super::conn::Conn;
use super::End;

/// Handles one packet; `Some` ends the connection. The subscribers its message went to are
/// collected in `wakes`, woken once for a whole batch of packets.
pub(super) fn handle<W: AsyncWrite + Unpin>(
    frame: &bytes::Bytes,
    conn: &mut Conn<W>,
    broker: &Broker,
    h: &ConnectionHandle,
    wakes: &mut outpost_mqtt::Wakes,
) -> Option<End> {
    let packet = match decode(frame, h.version, usize::MAX) {
        Ok(Decoded::Packet(p, _)) => p,
        Ok(Decoded::Incomplete { .. }) => return None,
        Err(e) => {
            tracing::info!(peer = %conn.kept.peer, client = &*h.client_id, error = %e, "malformed packet; connection closed");
            conn.disconnect(e.reason_code());
            return Some(End::Close(Disconnect::Abrupt, None));
        }
    };
    match packet {
        Packet::Publish(p) => return publish::publish(frame, p, conn, broker, h, wakes),
        ack @ (Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) | Packet::PubRel(_)) => {
            acks::acknowledgement(ack, conn, broker, h)
        }
        Packet::Subscribe(s) => subscribe::subscribe(s, conn, broker, h),
        Packet::Unsubscribe(u) => subscribe::unsubscribe(u, conn, broker, h),
        Packet::PingReq => conn.push(&Packet::PingResp),
        Packet::Disconnect(d) => {
            let how = if d.code == ReasonCode::DisconnectWithWillMessage {
                Disconnect::WithWill
            } else {
                Disconnect::Normal
            };
            return Some(End::Close(how, d.properties.session_expiry_interval));
        }
        Packet::Connect(_) => {
            // §3.1.0: a second CONNECT is a protocol error.
            conn.disconnect(ReasonCode::ProtocolError);
            return Some(End::Close(Disconnect::Abrupt, None));
        }
        Packet::Auth(_) => {
            conn.disconnect(ReasonCode::BadAuthenticationMethod);
            return Some(End::Close(Disconnect::Abrupt, None));
        }
        Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
            // Server-to-client packets from a client: protocol error.
            conn.disconnect(ReasonCode::ProtocolError);
            return Some(End::Close(Disconnect::Abrupt, None));
        }
    }
    None
}
