//! Access keys for the HTTP APIs: the pairs a boto3 or aws CLI user configures
//! (`aws_access_key_id` / `aws_secret_access_key`), each mapped to an identity. SigV4 is an HMAC,
//! so the server needs the secret itself: the file is as sensitive as AWS's credentials file and
//! is kept readable by the broker's user only.
//!
//! ```toml
//! [[keys]]
//! access_key_id = "AKIDOPS0001"
//! secret_access_key = "…"
//! identity = "ops"              # the name ACL rules use
//! account = "123456789012"      # optional; the broker's account by default
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::AuthError;

/// One access key pair.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKey {
    /// The public half (`AKID…`).
    pub access_key_id: String,
    /// The secret half.
    pub secret_access_key: String,
    /// The identity requests signed with it have.
    pub identity: String,
    /// The account of that identity (default: the broker's).
    #[serde(default)]
    pub account: Option<String>,
}

impl std::fmt::Debug for AccessKey {
    // The secret never reaches a log line, even through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("identity", &self.identity)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<AccessKey>,
}

/// The access keys by id.
#[derive(Debug, Clone, Default)]
pub struct AccessKeys {
    by_id: HashMap<String, AccessKey>,
}

impl AccessKeys {
    /// Reads a keys file.
    pub fn load(path: &Path) -> Result<AccessKeys, AuthError> {
        crate::load_file(path, AccessKeys::parse)
    }

    /// Parses a keys file's text.
    pub fn parse(text: &str) -> Result<AccessKeys, String> {
        let file: KeysFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let mut by_id = HashMap::new();
        for k in file.keys {
            let id_ok = (4..=128).contains(&k.access_key_id.len())
                && k.access_key_id.chars().all(|c| c.is_ascii_alphanumeric());
            if !id_ok {
                return Err(format!(
                    "access_key_id {:?}: 4 to 128 letters and digits",
                    k.access_key_id
                ));
            }
            if k.secret_access_key.len() < 16 {
                return Err(format!(
                    "the secret of {} is shorter than 16 characters",
                    k.access_key_id
                ));
            }
            if k.identity.is_empty() {
                return Err(format!("the key {} has no identity", k.access_key_id));
            }
            if let Some(a) = &k.account {
                if a.len() != 12 || !a.chars().all(|c| c.is_ascii_digit()) {
                    return Err(format!("account {a:?}: 12 digits"));
                }
            }
            if by_id.insert(k.access_key_id.clone(), k).is_some() {
                return Err("an access_key_id appears twice".into());
            }
        }
        Ok(AccessKeys { by_id })
    }

    /// The key with this id.
    pub fn get(&self, id: &str) -> Option<&AccessKey> {
        self.by_id.get(id)
    }

    /// Adds (or replaces) a key.
    pub fn insert(&mut self, key: AccessKey) {
        self.by_id.insert(key.access_key_id.clone(), key);
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True with no keys.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_hides_the_secret() {
        let k = AccessKeys::parse(
            "[[keys]]\naccess_key_id = \"AKIDOPS000000001\"\nsecret_access_key = \"wJalrXUtnFEMI/K7MDENG\"\nidentity = \"ops\"\n",
        )
        .unwrap();
        let key = k.get("AKIDOPS000000001").unwrap();
        assert_eq!(key.identity, "ops");
        assert!(!format!("{key:?}").contains("wJalr"));
        assert!(AccessKeys::parse(
            "[[keys]]\naccess_key_id = \"s-1\"\nsecret_access_key = \"x\"\nidentity = \"a\"\n"
        )
        .is_err());
    }
}
