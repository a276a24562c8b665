//! MQTT 3.1.1 and MQTT 5.0 control packets: decoding, encoding, framing and topic rules.
//!
//! One codec is shared by the broker (`outpost`) and the microcontroller client (`firmware-client`) so
//! that both sides agree on every byte and every rule of the specifications:
//! [MQTT 3.1.1](https://docs.oasis-open.org/mqtt/mqtt/v3.1.1/os/mqtt-v3.1.1-os.html) and
//! [MQTT 5.0](https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html).
//!
//! Design choices, and why:
//! - `#![no_std]` without `alloc`: a Cortex-M with 64 KiB of RAM must be able to use it. Decoded packets
//!   borrow from the input buffer (`&'a str`, `&'a [u8]`), so decoding a PUBLISH copies nothing and
//!   allocates nothing. Variable-length parts (user properties, subscription lists, reason-code lists)
//!   are [`List`]s that iterate over the validated wire bytes instead of being collected.
//! - Validation happens once, at decode time: a packet that decodes is well-formed by the spec's
//!   "malformed packet" and "protocol error" rules that can be judged from the packet alone. Rules that
//!   need session state (topic aliases, packet-id reuse, receive maximum) belong to the engines.
//! - Framing is incremental: [`decode`] on a partial buffer answers how many more bytes it needs, and
//!   rejects oversized packets from the fixed header alone, before their body is buffered.
//! - Encoding writes into a caller's `&mut [u8]` and, with the `bytes` feature, into any
//!   `bytes::BufMut`. The `bytes` feature also gives the broker `PublishBytes`, an owned PUBLISH whose
//!   topic and payload are reference-counted slices of the received frame (no copy).
#![no_std]
#![deny(missing_docs)]

#[cfg(feature = "bytes")]
extern crate alloc;

mod error;
mod frame;
mod list;
#[cfg(feature = "bytes")]
mod owned;
mod packet;
mod properties;
mod qos;
mod reason;
pub mod topic;
mod version;
mod wire;

pub use error::{DecodeError, EncodeError};
pub use frame::{
    check, decode, decode_from_server, Decoded, FixedHeader, Frame, PacketType,
    MAX_REMAINING_LENGTH,
};
pub use list::{List, ListIter, WireItem};
#[cfg(feature = "bytes")]
pub use owned::{split_frame, PublishBytes};
pub use packet::{
    Ack, Auth, ConnAck, Connect, Disconnect, Packet, Publish, RetainHandling, SubAck, Subscribe,
    SubscribeFilter, SubscribeOptions, UnsubAck, Unsubscribe, Will,
};
pub use properties::{
    property_id, AckProperties, AuthProperties, ConnAckProperties, ConnectProperties,
    DisconnectProperties, PublishProperties, SubscribeProperties, UnsubscribeProperties,
    UserProperty, WillProperties,
};
pub use qos::QoS;
pub use reason::ReasonCode;
pub use version::Version;
