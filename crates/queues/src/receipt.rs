//! Receipt handles: the proof that a caller received a particular delivery of a message.
//!
//! A handle names the queue, the message and the delivery (a random nonce drawn at each receive),
//! so it stops working once the message is deleted or delivered again, and cannot be guessed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::QueueError;

/// A decoded receipt handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The queue's internal id (not reused after the queue is deleted).
    pub queue: u64,
    /// The message's record sequence number.
    pub seq: u64,
    /// The delivery's nonce.
    pub nonce: u64,
}

impl Receipt {
    /// The opaque string handed to the caller.
    pub fn encode(&self) -> String {
        let mut raw = [0u8; 24];
        raw[..8].copy_from_slice(&self.queue.to_be_bytes());
        raw[8..16].copy_from_slice(&self.seq.to_be_bytes());
        raw[16..].copy_from_slice(&self.nonce.to_be_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Parses a handle from a caller.
    pub fn decode(handle: &str) -> Result<Receipt, QueueError> {
        let invalid = || {
            QueueError::ReceiptHandleIsInvalid(format!(
                "The input receipt handle \"{}\" is not a valid receipt handle.",
                handle.chars().take(100).collect::<String>()
            ))
        };
        let raw = URL_SAFE_NO_PAD
            .decode(handle.trim())
            .map_err(|_| invalid())?;
        if raw.len() != 24 {
            return Err(invalid());
        }
        let word = |i: usize| u64::from_be_bytes(raw[i..i + 8].try_into().unwrap_or([0; 8]));
        Ok(Receipt {
            queue: word(0),
            seq: word(8),
            nonce: word(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let r = Receipt {
            queue: 7,
            seq: 99,
            nonce: 0xdead_beef,
        };
        assert_eq!(Receipt::decode(&r.encode()), Ok(r));
        assert!(Receipt::decode("not a handle").is_err());
        assert!(Receipt::decode("").is_err());
    }
}
