//! The differences between SNS filter policies and EventBridge event patterns.

/// Which grammar a pattern is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// An SNS filter policy on message attributes (`FilterPolicyScope=MessageAttributes`, the
    /// default): top-level keys only, no nesting.
    SnsAttributes,
    /// An SNS filter policy on the JSON message body (`FilterPolicyScope=MessageBody`): nested keys.
    SnsBody,
    /// An EventBridge event pattern.
    EventPattern,
}

impl Dialect {
    pub(crate) fn is_sns(self) -> bool {
        matches!(self, Dialect::SnsAttributes | Dialect::SnsBody)
    }

    /// `wildcard`, and the `equals-ignore-case` forms of `prefix`, `suffix` and `anything-but`,
    /// exist in event patterns only.
    pub(crate) fn has_wildcard(self) -> bool {
        self == Dialect::EventPattern
    }

    /// The largest magnitude of a number in a `numeric` condition: SNS accepts -10⁹..10⁹,
    /// EventBridge -5·10⁹..5·10⁹.
    pub(crate) fn numeric_limit(self) -> f64 {
        if self.is_sns() {
            1e9
        } else {
            5e9
        }
    }
}
