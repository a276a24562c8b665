//! The errors a queue operation can end in. Each one is an error the SQS API documents, so the HTTP
//! front end can answer with AWS's code, status and fault without knowing the engine.

/// A failed queue operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// No queue of that name (or URL).
    #[error("The specified queue does not exist.")]
    QueueDoesNotExist,
    /// `CreateQueue` of an existing name with different attributes.
    #[error("{0}")]
    QueueNameExists(String),
    /// A parameter is out of range or malformed.
    #[error("{0}")]
    InvalidParameterValue(String),
    /// A required parameter is absent.
    #[error("The request must contain the parameter {0}.")]
    MissingParameter(String),
    /// An attribute name the API does not know (or that does not apply to this kind of queue).
    #[error("{0}")]
    InvalidAttributeName(String),
    /// An attribute value out of range or malformed.
    #[error("{0}")]
    InvalidAttributeValue(String),
    /// The receipt handle is malformed, expired, or belongs to a message that was deleted or
    /// received again.
    #[error("{0}")]
    ReceiptHandleIsInvalid(String),
    /// `ChangeMessageVisibility` on a message that is not in flight.
    #[error("The message referred to isn't in flight.")]
    MessageNotInflight,
    /// More than ten entries in a batch.
    #[error("Maximum number of entries per request are 10. You have sent {0}.")]
    TooManyEntriesInBatchRequest(usize),
    /// A batch without entries.
    #[error("There should be at least one entry in the request.")]
    EmptyBatchRequest,
    /// Two entries of one batch share an id.
    #[error("Two or more batch entries in the request have the same Id.")]
    BatchEntryIdsNotDistinct,
    /// A batch entry id with characters other than alphanumerics, `-` and `_`, or too long.
    #[error("A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.")]
    InvalidBatchEntryId,
    /// The batch's messages together exceed the queue's maximum message size.
    #[error("Batch requests cannot be longer than {0} bytes.")]
    BatchRequestTooLong(usize),
    /// A message body with characters SQS does not allow.
    #[error("{0}")]
    InvalidMessageContents(String),
    /// `PurgeQueue` again within 60 seconds.
    #[error("Only one PurgeQueue operation on {0} is allowed every 60 seconds.")]
    PurgeQueueInProgress(String),
    /// Too many messages in flight.
    #[error("{0}")]
    OverLimit(String),
    /// A move task or permission label that does not exist.
    #[error("{0}")]
    ResourceNotFound(String),
    /// The operation is valid but not allowed in this state.
    #[error("{0}")]
    UnsupportedOperation(String),
    /// The service cannot take the request now (out of file descriptors); retrying later works.
    #[error("{0}")]
    ServiceUnavailable(String),
    /// The store failed (disk full, I/O error). The detail goes to the log, not to the caller.
    #[error("The request could not be completed because of an internal error.")]
    Internal(String),
}

impl QueueError {
    /// The error's name in AWS JSON 1.0 (`__type`) and in the SDKs' exception classes.
    pub fn code(&self) -> &'static str {
        match self {
            QueueError::QueueDoesNotExist => "QueueDoesNotExist",
            QueueError::QueueNameExists(_) => "QueueNameExists",
            QueueError::InvalidParameterValue(_) => "InvalidParameterValue",
            QueueError::MissingParameter(_) => "MissingParameter",
            QueueError::InvalidAttributeName(_) => "InvalidAttributeName",
            QueueError::InvalidAttributeValue(_) => "InvalidAttributeValue",
            QueueError::ReceiptHandleIsInvalid(_) => "ReceiptHandleIsInvalid",
            QueueError::MessageNotInflight => "MessageNotInflight",
            QueueError::TooManyEntriesInBatchRequest(_) => "TooManyEntriesInBatchRequest",
            QueueError::EmptyBatchRequest => "EmptyBatchRequest",
            QueueError::BatchEntryIdsNotDistinct => "BatchEntryIdsNotDistinct",
            QueueError::InvalidBatchEntryId => "InvalidBatchEntryId",
            QueueError::BatchRequestTooLong(_) => "BatchRequestTooLong",
            QueueError::InvalidMessageContents(_) => "InvalidMessageContents",
            QueueError::PurgeQueueInProgress(_) => "PurgeQueueInProgress",
            QueueError::OverLimit(_) => "OverLimit",
            QueueError::ResourceNotFound(_) => "ResourceNotFoundException",
            QueueError::UnsupportedOperation(_) => "UnsupportedOperation",
            QueueError::ServiceUnavailable(_) => "ServiceUnavailable",
            QueueError::Internal(_) => "InternalFailure",
        }
    }

    /// The code of the query (XML) protocol, which the SDKs also read from JSON responses
    /// (`x-amzn-query-error`) for compatibility.
    pub fn query_code(&self) -> &'static str {
        match self {
            QueueError::QueueDoesNotExist => "AWS.SimpleQueueService.NonExistentQueue",
            QueueError::QueueNameExists(_) => "QueueAlreadyExists",
            QueueError::MessageNotInflight => "AWS.SimpleQueueService.MessageNotInflight",
            QueueError::TooManyEntriesInBatchRequest(_) => {
                "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
            }
            QueueError::EmptyBatchRequest => "AWS.SimpleQueueService.EmptyBatchRequest",
            QueueError::BatchEntryIdsNotDistinct => {
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
            }
            QueueError::InvalidBatchEntryId => "AWS.SimpleQueueService.InvalidBatchEntryId",
            QueueError::BatchRequestTooLong(_) => "AWS.SimpleQueueService.BatchRequestTooLong",
            QueueError::PurgeQueueInProgress(_) => "AWS.SimpleQueueService.PurgeQueueInProgress",
            QueueError::UnsupportedOperation(_) => "AWS.SimpleQueueService.UnsupportedOperation",
            other => other.code(),
        }
    }

    /// The HTTP status AWS answers with.
    pub fn status(&self) -> u16 {
        match self {
            QueueError::PurgeQueueInProgress(_) | QueueError::OverLimit(_) => 403,
            QueueError::ResourceNotFound(_) => 404,
            QueueError::Internal(_) => 500,
            QueueError::ServiceUnavailable(_) => 503,
            _ => 400,
        }
    }

    /// Whether the caller is at fault (`Sender`) or the service (`Receiver`).
    pub fn sender_fault(&self) -> bool {
        !matches!(
            self,
            QueueError::Internal(_) | QueueError::ServiceUnavailable(_)
        )
    }
}

impl From<outpost_store::StoreError> for QueueError {
    fn from(e: outpost_store::StoreError) -> Self {
        match e {
            outpost_store::StoreError::TooManyOpenFiles => QueueError::ServiceUnavailable(
                "The service is out of resources (too many open files); retry later.".into(),
            ),
            e => QueueError::Internal(e.to_string()),
        }
    }
}

/// Shorthand for queue results.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;
