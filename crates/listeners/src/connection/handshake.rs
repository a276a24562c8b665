//! CONNECT to CONNACK: the connect timeout, keep-alive limits, the connection rate, login, and
//! the engine's decision on the session.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use outpost_auth::LoginError;
use outpost_codec::{
    decode, ConnAck, ConnAckProperties, DecodeError, Decoded, List, Packet, ReasonCode,
    UserProperty, Version,
};
use outpost_mqtt::{Broker, ConnectionHandle};
use tokio::io::{AsyncRead, AsyncWrite};

use super::buffers::read_frame;
use super::conn::{Conn, Kept};
use super::ListenerConfig;

/// CONNECT within the connect timeout, the engine's decision, CONNACK. Its own future, so what
/// it needs (the decoded CONNECT, the first frame) takes no room in the connection's state
/// while the connection lives.
pub(super) async fn handshake<R, W>(
    rd: &mut R,
    buf: &mut BytesMut,
    wr: W,
    (peer, certificate): (SocketAddr, Option<Arc<str>>),
    broker: &Arc<Broker>,
    config: Arc<ListenerConfig>,
) -> Option<(Conn<W>, ConnectionHandle, u16)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let max = config.max_packet_size;
    // CONNECT, within the connect timeout.
    let first = match tokio::time::timeout(config.connect_timeout, read_frame(rd, buf, max)).await {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "bad first packet; connection closed");
            return None;
        }
        Err(_) => {
            tracing::info!(%peer, "no CONNECT within the connect timeout; connection closed");
            return None;
        }
    };
    let mut conn = Kept {
        version: Version::V311,
        client_max: None,
        peer,
        alias_max: 0,
        aliases: None,
        security: config.security.clone(),
        denials: 0,
        rates: config.rates.clone(),
        client_rates: config.rates.client(),
        closing: None,
        pressure: false,
    }
    .resume(wr);
    let connect = match decode(&first, Version::V5, max) {
        Ok(Decoded::Packet(Packet::Connect(c), _)) => c,
        Ok(_) => {
            tracing::info!(%peer, "first packet is not CONNECT; connection closed");
            return None;
        }
        Err(e) => {
            tracing::info!(%peer, error = %e, "malformed CONNECT; connection closed");
            if matches!(
                e,
                DecodeError::UnsupportedProtocolLevel(_) | DecodeError::InvalidProtocolName
            ) {
                // Answered in 3.1.1 form, which every version understands (§3.1.2.2).
                conn.push(&Packet::ConnAck(ConnAck {
                    code: ReasonCode::UnsupportedProtocolVersion,
                    ..ConnAck::default()
                }));
                let _ = conn.flush().await;
            }
            return None;
        }
    };
    conn.kept.version = connect.protocol;
    conn.kept.client_max = connect
        .properties
        .maximum_packet_size
        .and_then(std::num::NonZeroU32::new);
    if connect.protocol == Version::V5 {
        conn.kept.alias_max = connect.properties.topic_alias_maximum.unwrap_or(0);
    }
    let mut keep_alive = connect.keep_alive;
    let mut server_keep_alive = None;
    let max_keep_alive = config.max_keep_alive;
    if max_keep_alive < u16::MAX && (keep_alive == 0 || keep_alive > max_keep_alive) {
        if connect.protocol == Version::V311 {
            tracing::info!(%peer, client = connect.client_id, keep_alive, "keep-alive above max_keep_alive; connection refused");
            conn.push(&Packet::ConnAck(ConnAck {
                code: ReasonCode::ClientIdentifierNotValid,
                ..ConnAck::default()
            }));
            let _ = conn.flush().await;
            return None;
        }
        keep_alive = max_keep_alive;
        server_keep_alive = Some(max_keep_alive);
    }
    if connect.properties.authentication_method.is_some() {
        // Enhanced authentication (§4.12) is not offered.
        tracing::info!(%peer, client = connect.client_id, "CONNECT with an authentication method; refused (not supported)");
        conn.push(&Packet::ConnAck(ConnAck {
            code: ReasonCode::BadAuthenticationMethod,
            ..ConnAck::default()
        }));
        let _ = conn.flush().await;
        return None;
    }
    if !config.rates.admit_connection(peer.ip()) {
        config
            .rates
            .refused(crate::rates::Limit::ConnectionRate, connect.client_id);
        let code = match connect.protocol {
            Version::V5 => ReasonCode::ConnectionRateExceeded,
            Version::V311 => ReasonCode::ServerUnavailable,
        };
        conn.push(&Packet::ConnAck(ConnAck {
            code,
            ..ConnAck::default()
        }));
        let _ = conn.flush().await;
        return None;
    }
    let login = config
        .security
        .login_mqtt(
            peer.ip(),
            Some(connect.client_id),
            connect.username,
            connect.password,
            certificate.as_deref(),
        )
        .await;
    let identity = match login {
        Ok(identity) => identity,
        Err(e) => {
            let code = match (e, connect.protocol) {
                (LoginError::BadCredentials, _) => ReasonCode::BadUserNameOrPassword,
                (LoginError::NotAuthorized, _) => ReasonCode::NotAuthorized,
                (LoginError::Throttled, Version::V5) => ReasonCode::ConnectionRateExceeded,
                (LoginError::Throttled, Version::V311) => ReasonCode::ServerUnavailable,
            };
            // The username is logged, never the password.
            tracing::warn!(%peer, client = connect.client_id, user = connect.username.unwrap_or(""), ?code, "login refused");
            if matches!(e, LoginError::BadCredentials | LoginError::NotAuthorized) {
                let principal = connect.username.or(certificate.as_deref()).unwrap_or("");
                broker.announce_connect_failed(connect.client_id, principal, peer.ip());
            }
            conn.push(&Packet::ConnAck(ConnAck {
                code,
                ..ConnAck::default()
            }));
            let _ = conn.flush().await;
            return None;
        }
    };
    // The engine checks the will as this identity's publish (ADR 0015).
    let accepted = match broker.connect_as(&connect, identity.clone()).await {
        Ok(a) => a,
        Err(code) => {
            tracing::info!(%peer, client = connect.client_id, ?code, "connection refused");
            if code == ReasonCode::NotAuthorized {
                // Its will may not be published (AWS's other connect_failed case).
                broker.announce_connect_failed(connect.client_id, &identity.name, peer.ip());
            }
            let refusal = Packet::ConnAck(ConnAck {
                code,
                ..ConnAck::default()
            });
            // MQTT 3.1.1 has return codes for a few refusals only; for the others (a will topic
            // with too many levels, say) the connection is closed without CONNACK (§3.2.2.3).
            if refusal.encoded_len(conn.kept.version).is_ok() {
                conn.push(&refusal);
                let _ = conn.flush().await;
            }
            return None;
        }
    };
    let h = accepted.handle.clone();
    let bc = broker.config();
    let node = [UserProperty::new("outpost-node", &bc.node_id)];
    conn.push(&Packet::ConnAck(ConnAck {
        session_present: accepted.session_present,
        code: ReasonCode::Success,
        properties: ConnAckProperties {
            receive_maximum: Some(bc.receive_maximum),
            topic_alias_maximum: Some(bc.topic_alias_maximum),
            maximum_packet_size: Some(max.min(u32::MAX as usize) as u32),
            assigned_client_identifier: accepted.assigned_client_id.as_deref(),
            retain_available: Some(true),
            wildcard_subscription_available: Some(true),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(true),
            server_keep_alive,
            user_properties: List::new(if bc.node_id.is_empty() { &[] } else { &node }),
            ..ConnAckProperties::default()
        },
    }));
    conn.push_sends(broker, &h, accepted.resend);
    broker.announce_connected(&h, peer.ip());
    tracing::debug!(%peer, client = &*h.client_id, version = ?h.version, "connected");
    Some((conn, h, keep_alive))
}
