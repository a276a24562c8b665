//! Helpers shared by the store's process-level tests.
pub mod payload;
