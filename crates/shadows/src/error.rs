//! The Device Shadow service's refusals, with AWS's codes and messages ("Device Shadow error
//! messages"): the same words reach an MQTT client on `/rejected` and an HTTP caller in the body.

/// Why a shadow request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShadowError {
    #[error("Invalid JSON")]
    InvalidJson,
    #[error("Missing required node: state")]
    MissingState,
    #[error("State node must be an object")]
    StateNotObject,
    #[error("Desired node must be an object")]
    DesiredNotObject,
    #[error("Reported node must be an object")]
    ReportedNotObject,
    #[error("Invalid version")]
    InvalidVersion,
    #[error("Invalid clientToken")]
    InvalidClientToken,
    #[error("JSON contains too many levels of nesting; maximum is 6")]
    TooDeep,
    #[error("State contains an invalid node")]
    InvalidStateNode,
    #[error("Forbidden")]
    Forbidden,
    #[error("No shadow exists with name: {0}")]
    NoShadow(String),
    #[error("Version conflict")]
    VersionConflict,
    #[error("The payload exceeds the maximum size allowed")]
    TooLarge,
    #[error("Unsupported documented encoding; supported encoding is UTF-8")]
    Encoding,
    #[error("The Device Shadow service will generate this error message when there are more than 10 in-flight requests on a single connection")]
    TooManyRequests,
    #[error("The shadow limit of this broker is reached (shadows.max_shadows)")]
    Quota,
    #[error("Internal service failure")]
    Internal,
}

impl ShadowError {
    /// The HTTP status AWS gives it (also the `code` of an MQTT error document).
    pub fn code(&self) -> u16 {
        match self {
            ShadowError::Forbidden => 403,
            ShadowError::NoShadow(_) => 404,
            ShadowError::VersionConflict => 409,
            ShadowError::TooLarge => 413,
            ShadowError::Encoding => 415,
            ShadowError::TooManyRequests | ShadowError::Quota => 429,
            ShadowError::Internal => 500,
            _ => 400,
        }
    }

    /// The error type of the iot-data API (botocore's `iot-data` model).
    pub fn api_type(&self) -> &'static str {
        match self.code() {
            403 => "ForbiddenException",
            404 => "ResourceNotFoundException",
            409 => "ConflictException",
            413 => "RequestEntityTooLargeException",
            415 => "UnsupportedDocumentEncodingException",
            429 => "ThrottlingException",
            500 => "InternalFailureException",
            _ => "InvalidRequestException",
        }
    }
}
