//! Errors of the client. None of them panics; each says what the caller should do next.

use outpost_codec::{DecodeError, EncodeError, ReasonCode};

/// A failed client operation. `E` is the transport's error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    /// The transport failed; the link is down. Reconnect with a new transport.
    Transport(E),
    /// The peer closed the connection; reconnect.
    Closed,
    /// The broker sent bytes that are not valid MQTT; the link was dropped. Reconnect.
    Protocol(DecodeError),
    /// The broker broke the protocol (an unexpected packet, too many unreleased QoS 2 messages);
    /// the link was dropped. Reconnect.
    Unexpected,
    /// The broker refused the connection (CONNACK reason).
    Refused(ReasonCode),
    /// No CONNACK or PINGRESP in time; the link is considered dead. Reconnect.
    Timeout,
    /// The outgoing buffer has no room even after dropping queued messages: wait for
    /// acknowledgements (keep polling) and try again.
    QueueFull,
    /// The packet does not fit in the buffers at all.
    TooLarge,
    /// The operation needs a connection.
    NotConnected,
    /// The packet could not be encoded (e.g. an empty topic).
    Encode(EncodeError),
}

impl<E: core::fmt::Debug> core::fmt::Display for Error<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Transport(e) => write!(f, "transport error: {e:?}"),
            Error::Closed => f.write_str("connection closed by the broker"),
            Error::Protocol(e) => write!(f, "protocol error: {e:?}"),
            Error::Unexpected => f.write_str("unexpected packet from the broker"),
            Error::Refused(code) => write!(f, "connection refused: {code:?}"),
            Error::Timeout => f.write_str("timed out"),
            Error::QueueFull => f.write_str("outgoing buffer full"),
            Error::TooLarge => f.write_str("packet larger than the buffers"),
            Error::NotConnected => f.write_str("not connected"),
            Error::Encode(e) => write!(f, "cannot encode: {e:?}"),
        }
    }
}

impl<E: core::fmt::Debug> core::error::Error for Error<E> {}

impl Error<()> {
    /// The same error with a transport error type (these errors never carry one).
    pub fn with_transport<E>(self) -> Error<E> {
        match self {
            Error::Transport(()) | Error::Closed => Error::Closed,
            Error::Protocol(e) => Error::Protocol(e),
            Error::Unexpected => Error::Unexpected,
            Error::Refused(c) => Error::Refused(c),
            Error::Timeout => Error::Timeout,
            Error::QueueFull => Error::QueueFull,
            Error::TooLarge => Error::TooLarge,
            Error::NotConnected => Error::NotConnected,
            Error::Encode(e) => Error::Encode(e),
        }
    }
}

impl<E> From<EncodeError> for Error<E> {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::BufferTooSmall { .. } => Error::TooLarge,
            e => Error::Encode(e),
        }
    }
}
