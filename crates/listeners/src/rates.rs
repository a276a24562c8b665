//! Rate limits of the MQTT listeners, API Gateway-style: token buckets with a burst, per client
//! (messages and bytes per second), for the whole broker (messages per second) and for new
//! connections (globally and per address). What goes over a limit is refused with the
//! protocol's answer — never dropped in silence:
//!
//! - a PUBLISH over a rate: MQTT 5 QoS 1/2 gets PUBACK/PUBREC 0x97 (quota exceeded), which the
//!   client can retry; QoS 0 and MQTT 3.1.1, which cannot be told, are disconnected (MQTT 5
//!   DISCONNECT 0x96, message rate too high);
//! - a CONNECT over the connection rate: CONNACK 0x9F (MQTT 5) or 3, server unavailable (3.1.1).
//!
//! Each refusal is counted by reason, and logged at most once a second.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use outpost_net::{PerAddress, Rate, Shared, TokenBucket};
use parking_lot::Mutex;

/// The configured rates.
#[derive(Debug, Default)]
pub struct MqttRates {
    /// PUBLISH packets per second per client.
    pub client_messages: Rate,
    /// Payload bytes per second per client.
    pub client_bytes: Rate,
    /// PUBLISH packets per second, all clients together.
    pub total_messages: Shared,
    /// New connections per second, all addresses together.
    pub connections: Shared,
    /// New connections per second per address.
    pub connections_per_address: Option<PerAddress>,
    /// What was refused, by reason.
    pub refused: Refusals,
    last_log: Mutex<Option<Instant>>,
}

/// Refusals by reason.
#[derive(Debug, Default)]
pub struct Refusals {
    /// PUBLISH over a client's message rate.
    pub message_rate: AtomicU64,
    /// PUBLISH over a client's byte rate.
    pub byte_rate: AtomicU64,
    /// PUBLISH over the broker's message rate.
    pub total_message_rate: AtomicU64,
    /// CONNECT over the connection rate.
    pub connection_rate: AtomicU64,
}

/// Which limit a refusal hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The client's messages per second.
    MessageRate,
    /// The client's bytes per second.
    ByteRate,
    /// The broker's messages per second.
    TotalMessageRate,
    /// Connections per second.
    ConnectionRate,
}

impl MqttRates {
    /// The rates, with the connection buckets made.
    pub fn new(
        client_messages: Rate,
        client_bytes: Rate,
        total_messages: Rate,
        connections: Rate,
        connections_per_address: Rate,
    ) -> MqttRates {
        MqttRates {
            client_messages,
            client_bytes,
            total_messages: Shared::new(total_messages),
            connections: Shared::new(connections),
            connections_per_address: (!connections_per_address.is_unlimited())
                .then(|| PerAddress::new(connections_per_address)),
            ..MqttRates::default()
        }
    }

    /// Counts a refusal and logs it (at most one line a second).
    pub fn refused(&self, limit: Limit, client: &str) {
        let counter = match limit {
            Limit::MessageRate => &self.refused.message_rate,
            Limit::ByteRate => &self.refused.byte_rate,
            Limit::TotalMessageRate => &self.refused.total_message_rate,
            Limit::ConnectionRate => &self.refused.connection_rate,
        };
        let total = counter.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last_log.lock();
        if last.is_none_or(|t| t.elapsed().as_secs() >= 1) {
            *last = Some(Instant::now());
            drop(last);
            tracing::warn!(
                ?limit,
                client,
                refused_total = total,
                "over a rate limit: refused (logged at most once a second)"
            );
        }
    }

    /// Whether a new connection from `addr` is within the connection rates.
    pub fn admit_connection(&self, addr: IpAddr) -> bool {
        let per_address = self
            .connections_per_address
            .as_ref()
            .is_none_or(|p| p.take(addr));
        per_address && self.connections.take(1.0)
    }

    /// A client's own buckets.
    pub fn client(&self) -> ClientRates {
        if self.client_messages.is_unlimited() && self.client_bytes.is_unlimited() {
            return ClientRates(None);
        }
        let now = Instant::now();
        ClientRates(Some(Box::new(Buckets {
            messages: (!self.client_messages.is_unlimited())
                .then(|| TokenBucket::new(self.client_messages, now)),
            bytes: (!self.client_bytes.is_unlimited())
                .then(|| TokenBucket::new(self.client_bytes, now)),
        })))
    }

    /// Charges one PUBLISH of `bytes` payload bytes; the limit it went over, if any (nothing is
    /// taken from any bucket then).
    pub fn charge(&self, client: &mut ClientRates, bytes: usize) -> Result<(), Limit> {
        let Some(own) = client.0.as_deref_mut() else {
            return match self.total_messages.take(1.0) {
                true => Ok(()),
                false => Err(Limit::TotalMessageRate),
            };
        };
        let now = Instant::now();
        if let Some(m) = &mut own.messages {
            if !m.has_token(now) {
                return Err(Limit::MessageRate);
            }
        }
        if let Some(b) = &mut own.bytes {
            // A message larger than the burst passes once the bucket is full.
            if !b.has_token(now) {
                return Err(Limit::ByteRate);
            }
        }
        if !self.total_messages.take(1.0) {
            return Err(Limit::TotalMessageRate);
        }
        if let Some(m) = &mut own.messages {
            m.take(1.0, now);
        }
        if let Some(b) = &mut own.bytes {
            b.charge(bytes as f64, now);
        }
        Ok(())
    }
}

/// One client's buckets: none at all when its rates are unlimited (the default), so a
/// connection pays 8 bytes for them, not 80.
#[derive(Debug, Default)]
pub struct ClientRates(Option<Box<Buckets>>);

/// The buckets of a client with a rate limit (absent when that one is unlimited).
#[derive(Debug)]
struct Buckets {
    messages: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_rates_refuse_past_the_burst() {
        let r = MqttRates::new(
            Rate {
                per_second: 0.001,
                burst: 3.0,
            },
            Rate {
                per_second: 0.001,
                burst: 100.0,
            },
            Rate::UNLIMITED,
            Rate::UNLIMITED,
            Rate::UNLIMITED,
        );
        let mut c = r.client();
        assert!(r.charge(&mut c, 10).is_ok());
        assert!(
            r.charge(&mut c, 200).is_ok(),
            "one message larger than the byte burst passes"
        );
        assert_eq!(r.charge(&mut c, 10), Err(Limit::ByteRate));
        let mut d = r.client();
        for _ in 0..3 {
            assert!(r.charge(&mut d, 0).is_ok());
        }
        assert_eq!(r.charge(&mut d, 0), Err(Limit::MessageRate));
        assert!(r.admit_connection("127.0.0.1".parse().unwrap()));
    }
}
