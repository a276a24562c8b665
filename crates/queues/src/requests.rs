//! What callers hand the engine and what they get back, free of any wire format.

use crate::message::{Attributes, StoredMessage};

/// One message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendRequest {
    /// The body (1 byte to the queue's maximum, SQS's character set).
    pub body: String,
    /// Per-message delay (standard queues only); `None` takes the queue's.
    pub delay_seconds: Option<u32>,
    /// Message attributes.
    pub attributes: Attributes,
    /// The `AWSTraceHeader` system attribute.
    pub trace_header: Option<String>,
    /// FIFO message group (also accepted, and reported back, on standard queues).
    pub group_id: Option<String>,
    /// FIFO deduplication id.
    pub dedup_id: Option<String>,
}

/// What a successful send reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// The message id (the first one's, for a deduplicated resend).
    pub message_id: String,
    /// MD5 of the body.
    pub md5_body: String,
    /// MD5 of the attributes, when there are any.
    pub md5_attributes: Option<String>,
    /// MD5 of the system attributes, when there are any.
    pub md5_system_attributes: Option<String>,
    /// FIFO sequence number.
    pub sequence_number: Option<String>,
}

/// A receive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiveRequest {
    /// 1 to 10 (default 1).
    pub max_messages: Option<i64>,
    /// Overrides the queue's visibility timeout.
    pub visibility_timeout: Option<i64>,
    /// Long-poll wait, 0 to 20 s; `None` takes the queue's `ReceiveMessageWaitTimeSeconds`.
    pub wait_seconds: Option<i64>,
    /// FIFO retry token: a retried receive within 5 minutes returns the same messages and
    /// receipts while they are still in flight.
    pub attempt_id: Option<String>,
}

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The stored message (body and attributes share the store's memory).
    pub message: StoredMessage,
    /// The receipt handle of this delivery.
    pub receipt: String,
    /// Times received, this one included.
    pub receive_count: u32,
    /// First receive (ms since the epoch).
    pub first_receive_ms: u64,
}

/// A queue's dead-letter move task, as `ListMessageMoveTasks` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveTaskInfo {
    /// Handle to cancel it with (only while running).
    pub handle: Option<String>,
    /// RUNNING, COMPLETED, CANCELLING, CANCELLED or FAILED.
    pub status: &'static str,
    /// The dead-letter queue moved from.
    pub source_arn: String,
    /// Where messages go (absent: each back to its original queue).
    pub destination_arn: Option<String>,
    /// Rate limit.
    pub max_per_second: Option<u32>,
    /// Moved so far.
    pub moved: u64,
    /// Messages to move, counted at start.
    pub to_move: u64,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// Start, ms since the epoch.
    pub started_ms: u64,
}
