//! The errors of the topic engine, each one an SNS error code (botocore's `sns` model is the
//! reference for codes, HTTP statuses and fault sides).

/// An SNS error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// `InvalidParameter` (400). The message is AWS's, usually "Invalid parameter: ...".
    #[error("{0}")]
    InvalidParameter(String),
    /// `ParameterValueInvalid` (400): a bad message attribute.
    #[error("{0}")]
    InvalidParameterValue(String),
    /// `NotFound` (404).
    #[error("{0}")]
    NotFound(String),
    /// `ResourceNotFound` (404): tagging an unknown resource.
    #[error("{0}")]
    ResourceNotFound(String),
    /// `TagLimitExceeded` (400).
    #[error("{0}")]
    TagLimitExceeded(String),
    /// `FilterPolicyLimitExceeded` (403).
    #[error("{0}")]
    FilterPolicyLimitExceeded(String),
    /// `SubscriptionLimitExceeded` (403).
    #[error("{0}")]
    SubscriptionLimitExceeded(String),
    /// `TopicLimitExceeded` (403).
    #[error("{0}")]
    TopicLimitExceeded(String),
    /// `EmptyBatchRequest` (400).
    #[error("The batch request doesn't contain any entries.")]
    EmptyBatchRequest,
    /// `TooManyEntriesInBatchRequest` (400).
    #[error("The batch request contains more entries than permissible.")]
    TooManyEntriesInBatchRequest,
    /// `BatchEntryIdsNotDistinct` (400).
    #[error("Two or more batch entries in the request have the same Id.")]
    BatchEntryIdsNotDistinct,
    /// `InvalidBatchEntryId` (400).
    #[error("The Id of a batch entry in a batch request doesn't abide by the specification.")]
    InvalidBatchEntryId,
    /// `BatchRequestTooLong` (400).
    #[error("The length of all the messages put together is more than the limit.")]
    BatchRequestTooLong,
    /// `AuthorizationError` (403): the caller may not make a subscription write where it
    /// points (ADR 0015).
    #[error("{0}")]
    AuthorizationError(String),
    /// `InternalError` (500); the detail is logged, never returned.
    #[error("Internal error")]
    Internal(String),
}

/// A result of the topic engine.
pub type Result<T> = std::result::Result<T, TopicError>;

impl TopicError {
    /// `InvalidParameter` with SNS's "Invalid parameter: " prefix.
    pub fn invalid(what: impl std::fmt::Display) -> TopicError {
        TopicError::InvalidParameter(format!("Invalid parameter: {what}"))
    }

    /// The topic named does not exist.
    pub fn no_topic() -> TopicError {
        TopicError::NotFound("Topic does not exist".into())
    }

    /// The subscription named does not exist.
    pub fn no_subscription() -> TopicError {
        TopicError::NotFound("Subscription does not exist".into())
    }

    /// The error code on the wire.
    pub fn code(&self) -> &'static str {
        match self {
            TopicError::InvalidParameter(_) => "InvalidParameter",
            TopicError::InvalidParameterValue(_) => "ParameterValueInvalid",
            TopicError::NotFound(_) => "NotFound",
            TopicError::ResourceNotFound(_) => "ResourceNotFound",
            TopicError::TagLimitExceeded(_) => "TagLimitExceeded",
            TopicError::FilterPolicyLimitExceeded(_) => "FilterPolicyLimitExceeded",
            TopicError::SubscriptionLimitExceeded(_) => "SubscriptionLimitExceeded",
            TopicError::TopicLimitExceeded(_) => "TopicLimitExceeded",
            TopicError::EmptyBatchRequest => "EmptyBatchRequest",
            TopicError::TooManyEntriesInBatchRequest => "TooManyEntriesInBatchRequest",
            TopicError::BatchEntryIdsNotDistinct => "BatchEntryIdsNotDistinct",
            TopicError::InvalidBatchEntryId => "InvalidBatchEntryId",
            TopicError::BatchRequestTooLong => "BatchRequestTooLong",
            TopicError::AuthorizationError(_) => "AuthorizationError",
            TopicError::Internal(_) => "InternalError",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            TopicError::NotFound(_) | TopicError::ResourceNotFound(_) => 404,
            TopicError::FilterPolicyLimitExceeded(_)
            | TopicError::SubscriptionLimitExceeded(_)
            | TopicError::TopicLimitExceeded(_)
            | TopicError::AuthorizationError(_) => 403,
            TopicError::Internal(_) => 500,
            _ => 400,
        }
    }

    /// True when the caller is at fault.
    pub fn sender_fault(&self) -> bool {
        !matches!(self, TopicError::Internal(_))
    }
}

impl From<outpost_store::StoreError> for TopicError {
    fn from(e: outpost_store::StoreError) -> Self {
        TopicError::Internal(format!("store: {e}"))
    }
}
