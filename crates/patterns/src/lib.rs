//! Content filters in AWS's JSON grammar: SNS subscription filter policies and EventBridge event
//! patterns. The two grammars are one family (AWS's "event ruler"): a pattern is a JSON object whose
//! keys name fields of the message, whose arrays list the accepted values (any of them), and whose
//! nested objects follow nested fields; all keys must match. They differ in details, kept explicit in
//! [`Dialect`]: which operators exist, what `exists` means, numeric ranges, and the limits.
//!
//! A pattern is parsed and validated once ([`Pattern::parse`]) into a small tree and then matched
//! against any number of messages ([`Pattern::matches`]) without allocating. Parsing and matching
//! follow the pattern's nesting, which is bounded ([`MAX_DEPTH`]); the message's own depth is never
//! walked beyond the pattern's.
//!
//! Written here rather than taken from a crate: no maintained Rust crate implements AWS's grammar
//! (the reference is the Java `event-ruler`).

mod attributes;
mod dialect;
mod error;
mod matcher;
mod pattern;

pub use attributes::attributes_to_json;
pub use dialect::Dialect;
pub use error::PatternError;
pub use pattern::{IndexKey, Pattern, MAX_DEPTH};
