//! Job kinds are open (PROTOCOL.md section 4): a kind is a checked name,
//! and what a deployment serves is described by [`KindSpec`]s that runners
//! announce and `GET /v1/kinds` lists.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The built-in kind that upserts rows into an allow-listed table.
pub const BATCH_UPSERT: &str = "batch_upsert";
/// The built-in kind that holds a connection in `pg_sleep`.
pub const SLEEP: &str = "sleep";

/// Longest kind name: `[a-z][a-z0-9_]{0,63}`.
pub const MAX_KIND_BYTES: usize = 64;

/// A job kind's name, checked against `[a-z][a-z0-9_]{0,63}`, so it is safe
/// as a metric label, an AMQP routing key part and a log field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KindName(String);

/// Why a string is not a kind name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a kind name is a lowercase letter then up to 63 of a-z, 0-9 and _")]
pub struct KindNameError;

impl KindName {
    /// Checks `name`.
    pub fn parse(name: &str) -> Result<Self, KindNameError> {
        let mut bytes = name.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
        let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if first_ok && rest_ok && name.len() <= MAX_KIND_BYTES {
            Ok(KindName(name.to_owned()))
        } else {
            Err(KindNameError)
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KindName {
    type Error = KindNameError;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        KindName::parse(&name)
    }
}

impl From<KindName> for String {
    fn from(name: KindName) -> String {
        name.0
    }
}

impl Borrow<str> for KindName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KindName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One kind a deployment serves, as runners announce it and
/// `GET /v1/kinds` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindSpec {
    /// The kind's name.
    pub name: KindName,
    /// What the kind does, for people choosing one.
    pub description: String,
    /// A JSON Schema (draft 2020-12) of the kind's `args`; submissions are
    /// validated against it.
    pub args_schema: serde_json::Value,
    /// The time limit of one attempt, in milliseconds.
    pub timeout_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        for good in ["sleep", "a", "batch_upsert", "k2", &"x".repeat(64)] {
            assert!(KindName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Sleep",
            "2k",
            "_k",
            "a-b",
            "a b",
            "é",
            &"x".repeat(65),
            "sleep\n",
        ] {
            assert_eq!(KindName::parse(bad), Err(KindNameError), "{bad:?}");
        }
    }

    #[test]
    fn names_refuse_bad_text_when_decoded() {
        assert!(serde_json::from_str::<KindName>(r#""sleep""#).is_ok());
        assert!(serde_json::from_str::<KindName>(r#""DROP TABLE""#).is_err());
    }
}
