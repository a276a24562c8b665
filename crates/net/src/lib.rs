//! What every listener does before a byte of protocol: accept, refuse what is over the caps, and
//! survive running out of file descriptors.
//!
//! A gateway box has a fixed descriptor budget shared by the store, the MQTT listeners and the HTTP
//! port. Without caps, a thousand idle sockets from one host exhaust it and the failure shows up
//! elsewhere (a SendMessage that cannot open a segment). So every listener accepts through a
//! [`Gate`]: a global cap and a per-address cap, each connection holding a [`Permit`] until it
//! closes. Refused connections are closed at once and counted; the log says so once per second,
//! not once per connection. TLS ([`Tls`]) and rate limits ([`TokenBucket`], [`PerAddress`]) are the
//! same for every listener too.

mod gate;
mod limits;
pub mod outbound;
mod throttle;
pub mod tls;
mod tls_bytes;

pub use gate::{accept_loop, accept_loop_owning, Gate, GateLimits, Permit};
pub use limits::{is_descriptor_exhaustion, raise_descriptor_limit};
pub use throttle::{PerAddress, Rate, Shared, TokenBucket};
pub use tls::{ClientCerts, IdentityFrom, Tls, TlsError, TlsFiles};
pub use tls_bytes::{TlsBytes, TlsSession, MAX_INCOMING};
