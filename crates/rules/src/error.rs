//! EventBridge's errors: each variant is one `__type` of the JSON protocol.

use thiserror::Error;

/// Result of an engine call.
pub type Result<T, E = EventsError> = std::result::Result<T, E>;

/// An error as EventBridge reports it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventsError {
    /// A parameter is missing or malformed.
    #[error("{0}")]
    Validation(String),
    /// The bus, rule, archive or replay does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    /// A bus, archive or replay of that name exists.
    #[error("{0}")]
    ResourceAlreadyExists(String),
    /// The event pattern breaks the grammar or a limit.
    #[error("{0}")]
    InvalidEventPattern(String),
    /// A quota (targets per rule, rules, buses) would be exceeded.
    #[error("{0}")]
    LimitExceeded(String),
    /// The operation needs another state (e.g. cancelling a finished replay).
    #[error("{0}")]
    IllegalStatus(String),
    /// The resource is in use (e.g. a rule with targets).
    #[error("{0}")]
    InvalidState(String),
    /// The caller may not make a target write where it points (ADR 0015).
    #[error("{0}")]
    AccessDenied(String),
    /// The store failed; detail for the log only.
    #[error("An internal error occurred.")]
    Internal(String),
}

impl EventsError {
    /// The JSON protocol's `__type`.
    pub fn code(&self) -> &'static str {
        match self {
            EventsError::Validation(_) => "ValidationException",
            EventsError::ResourceNotFound(_) => "ResourceNotFoundException",
            EventsError::ResourceAlreadyExists(_) => "ResourceAlreadyExistsException",
            EventsError::InvalidEventPattern(_) => "InvalidEventPatternException",
            EventsError::LimitExceeded(_) => "LimitExceededException",
            EventsError::IllegalStatus(_) => "IllegalStatusException",
            EventsError::InvalidState(_) => "InvalidStateException",
            EventsError::AccessDenied(_) => "AccessDeniedException",
            EventsError::Internal(_) => "InternalException",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            EventsError::Internal(_) => 500,
            EventsError::AccessDenied(_) => 403,
            _ => 400,
        }
    }

    pub(crate) fn validation(message: impl Into<String>) -> EventsError {
        EventsError::Validation(message.into())
    }

    pub(crate) fn not_found(message: impl Into<String>) -> EventsError {
        EventsError::ResourceNotFound(message.into())
    }
}

impl From<outpost_store::StoreError> for EventsError {
    fn from(e: outpost_store::StoreError) -> Self {
        EventsError::Internal(e.to_string())
    }
}
