//! Protocol versions. The version is fixed by CONNECT and changes how every later packet is laid out
//! (MQTT 5 adds properties and reason codes), so every decode and encode call names it.

/// The MQTT protocol version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Version {
    /// MQTT 3.1.1, protocol level 4.
    V311,
    /// MQTT 5.0, protocol level 5.
    #[default]
    V5,
}

impl Version {
    /// True for MQTT 5. Always false without the `v5` feature: every MQTT 5 branch of the codec
    /// asks this, so firmware built for 3.1.1 alone links none of them.
    #[inline(always)]
    pub const fn is_v5(self) -> bool {
        cfg!(feature = "v5") && matches!(self, Version::V5)
    }

    /// The version as the codec treats it: MQTT 3.1.1 for everything without the `v5` feature.
    #[inline(always)]
    pub const fn effective(self) -> Version {
        if self.is_v5() {
            Version::V5
        } else {
            Version::V311
        }
    }

    /// The protocol level byte of CONNECT.
    pub const fn level(self) -> u8 {
        match self {
            Version::V311 => 4,
            Version::V5 => 5,
        }
    }

    /// The version for a protocol level byte.
    pub const fn from_level(level: u8) -> Option<Version> {
        match level {
            4 => Some(Version::V311),
            5 => Some(Version::V5),
            _ => None,
        }
    }
}
