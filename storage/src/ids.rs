//! Identifier newtypes.
//!
//! Tenant, building and sensor ids are chosen by clients: 1 to 64 characters
//! of `A-Za-z0-9_.:-`. Parsing them once at the edge means everything past it
//! handles only valid ids. A [`SensorKey`] is the compact number the catalog
//! assigns to each sensor at creation; the write-ahead and the memtables
//! store that instead of the id string.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a client-chosen id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    #[error("id must not be empty")]
    Empty,
    #[error("id is {0} characters long; at most 64 are allowed")]
    TooLong(usize),
    #[error("id contains {0:?}; only A-Z, a-z, 0-9 and _ . : - are allowed")]
    BadCharacter(char),
}

fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    let len = s.chars().count();
    if len > 64 {
        return Err(IdError::TooLong(len));
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        Some(c) => Err(IdError::BadCharacter(c)),
        None => Ok(()),
    }
}

macro_rules! client_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates `s` as an id.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check_id(s).map(|()| Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

client_id!(
    /// A tenant's id.
    TenantId
);
client_id!(
    /// A building's id.
    BuildingId
);
client_id!(
    /// A sensor's id, unique across the appliance.
    SensorId
);

/// The id of an API key (not its secret).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The catalog-assigned number of a sensor, stable for the sensor's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SensorKey(pub u32);

/// Position of a batch in the write-ahead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalSequence(pub u64);

impl WalSequence {
    /// The position `n` batches further.
    pub(crate) fn after(self, n: u64) -> WalSequence {
        WalSequence(self.0 + n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        assert!(SensorId::parse("b0-elec:main_1.a").is_ok());
        assert!(SensorId::parse(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn refuses_bad_ids() {
        assert_eq!(SensorId::parse(""), Err(IdError::Empty));
        assert_eq!(SensorId::parse(&"x".repeat(65)), Err(IdError::TooLong(65)));
        assert_eq!(SensorId::parse("a b"), Err(IdError::BadCharacter(' ')));
        assert_eq!(SensorId::parse("a/b"), Err(IdError::BadCharacter('/')));
    }
}
