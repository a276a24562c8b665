//! The WebSocket opening handshake (RFC 6455 §4.2) on the MQTT path: an HTTP/1.1 `GET` asking for
//! an upgrade, answered `101 Switching Protocols` with the `mqtt` subprotocol echoed when offered
//! (MQTT §6; clients such as MQTT.js require it), or refused with an HTTP status.
//!
//! Why here and not tokio-tungstenite's `accept_hdr_async`: after its handshake the socket is
//! inside tungstenite's stream for good, and a connection must be able to hand its bare socket to
//! the parking lot when it is idle (issue 29; `websocket_bytes` does the framing). The request is
//! parsed by `httparse` and checked and answered by tungstenite's own `create_response` and
//! `write_response`; only the reading is ours.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tungstenite::handshake::server::{create_response, write_response};
use tungstenite::http::{HeaderValue, Request, StatusCode, Version};

/// The largest request accepted (its line and headers; the request has no body).
const MAX_REQUEST: usize = 8 * 1024;
/// The most headers a request may carry.
const MAX_HEADERS: usize = 32;

/// Reads the upgrade request from `stream` and answers it. `Ok` holds what the client sent after
/// the request (the start of its first frames, if it did not wait for the answer); an `Err` was
/// answered with an HTTP error status where there was a request to answer, and says why for the
/// log.
pub(crate) async fn upgrade<S>(stream: &mut S, path: &str) -> io::Result<BytesMut>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the WebSocket handshake",
            ));
        }
        match answer(&buf, path) {
            Answer::Partial if buf.len() < MAX_REQUEST => {
                buf.reserve(1024.min(MAX_REQUEST - buf.len()));
            }
            Answer::Partial => {
                refuse(stream, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).await;
                return Err(invalid("an upgrade request larger than 8 KiB"));
            }
            Answer::Refused(status, why) => {
                refuse(stream, status).await;
                return Err(invalid(why));
            }
            Answer::Upgraded(length, response) => {
                stream.write_all(&response).await?;
                stream.flush().await?;
                return Ok(buf.split_off(length));
            }
        }
    }
}

enum Answer {
    /// The request is not complete yet.
    Partial,
    /// Refused with this status, for this reason.
    Refused(StatusCode, String),
    /// The request's length, and the 101 response to send.
    Upgraded(usize, Vec<u8>),
}

/// What to answer to the bytes read so far.
fn answer(bytes: &[u8], path: &str) -> Answer {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut raw = httparse::Request::new(&mut headers);
    let length = match raw.parse(bytes) {
        Ok(httparse::Status::Partial) => return Answer::Partial,
        Ok(httparse::Status::Complete(n)) => n,
        Err(e) => {
            return Answer::Refused(
                StatusCode::BAD_REQUEST,
                format!("a malformed upgrade request: {e}"),
            )
        }
    };
    let target = raw.path.unwrap_or_default();
    // The path without a query string (`/mqtt?x=1` is the MQTT endpoint too).
    if target.split('?').next() != Some(path) {
        return Answer::Refused(
            StatusCode::NOT_FOUND,
            format!("no MQTT endpoint at {target}"),
        );
    }
    let mut request = Request::builder()
        .method(raw.method.unwrap_or_default())
        .uri(target)
        .version(match raw.version {
            Some(1) => Version::HTTP_11,
            _ => Version::HTTP_10,
        });
    for h in raw.headers.iter() {
        request = request.header(h.name, h.value);
    }
    let request = match request.body(()) {
        Ok(r) => r,
        Err(e) => {
            return Answer::Refused(
                StatusCode::BAD_REQUEST,
                format!("a malformed upgrade request: {e}"),
            )
        }
    };
    let mut response = match create_response(&request) {
        Ok(r) => r,
        Err(e) => {
            return Answer::Refused(
                StatusCode::BAD_REQUEST,
                format!("not a WebSocket upgrade: {e}"),
            )
        }
    };
    let offered = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == "mqtt");
    if offered {
        response
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
    }
    let mut out = Vec::with_capacity(256);
    match write_response(&mut out, &response) {
        Ok(()) => Answer::Upgraded(length, out),
        Err(e) => Answer::Refused(
            StatusCode::BAD_REQUEST,
            format!("no answer to this upgrade request: {e}"),
        ),
    }
}

/// Answers a refused request with its status and closes our side (best effort: the client may be
/// gone already), then reads what the client still sends a moment: closing a socket with unread
/// bytes resets it, and the reset can reach the client before the answer.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, status: StatusCode) {
    let response = format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    crate::connection::linger(stream, &mut BytesMut::new()).await;
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

#[cfg(test)]
mod tests {
    use super::{answer, Answer};

    const UPGRADE: &str = "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";

    #[test]
    fn an_upgrade_is_answered_with_the_accept_key_and_the_subprotocol() {
        let mut bytes = UPGRADE.as_bytes().to_vec();
        bytes.extend_from_slice(&[0x82, 0x80]);
        let Answer::Upgraded(length, response) = answer(&bytes, "/mqtt") else {
            panic!("not upgraded");
        };
        assert_eq!(
            length,
            UPGRADE.len(),
            "what follows the request is left for the frames"
        );
        let response = String::from_utf8(response).expect("text");
        assert!(response.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        // RFC 6455 §1.3's example key and its answer.
        assert!(response.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(response.contains("sec-websocket-protocol: mqtt\r\n"));
        assert!(response.ends_with("\r\n\r\n"));
    }

    #[test]
    fn partial_wrong_path_and_non_upgrades_are_told_apart() {
        assert!(matches!(
            answer(&UPGRADE.as_bytes()[..40], "/mqtt"),
            Answer::Partial
        ));
        assert!(matches!(
            answer(UPGRADE.as_bytes(), "/other"),
            Answer::Refused(s, _) if s.as_u16() == 404
        ));
        let plain = "GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(matches!(
            answer(plain.as_bytes(), "/mqtt"),
            Answer::Refused(s, _) if s.as_u16() == 400
        ));
        assert!(matches!(
            answer(b"\x16\x03\x01 not http\r\n\r\n", "/mqtt"),
            Answer::Refused(s, _) if s.as_u16() == 400
        ));
        let old = UPGRADE.replace("Version: 13", "Version: 8");
        assert!(matches!(
            answer(old.as_bytes(), "/mqtt"),
            Answer::Refused(s, _) if s.as_u16() == 400
        ));
    }
}
