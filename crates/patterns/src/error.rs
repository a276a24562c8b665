//! Why a pattern was refused, worded for each API's error.

use crate::Dialect;

/// A pattern that does not parse or breaks a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct PatternError {
    /// What is wrong, without any prefix.
    pub reason: String,
}

impl PatternError {
    pub(crate) fn new(reason: impl Into<String>) -> Self {
        PatternError {
            reason: reason.into(),
        }
    }

    /// The message AWS's API puts in its error: SNS's `InvalidParameter` ("Invalid parameter:
    /// FilterPolicy: ...") or EventBridge's `InvalidEventPatternException` ("Event pattern is not
    /// valid. Reason: ...").
    pub fn aws_message(&self, dialect: Dialect) -> String {
        match dialect {
            Dialect::SnsAttributes | Dialect::SnsBody => {
                format!("Invalid parameter: FilterPolicy: {}", self.reason)
            }
            Dialect::EventPattern => format!("Event pattern is not valid. Reason: {}", self.reason),
        }
    }
}
