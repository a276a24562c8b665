//! The password file: one `username:hash` line per user, the hash an argon2id PHC string, as
//! `mosquitto_passwd` keeps one user per line (mosquitto's hashes are PBKDF2; argon2id is the
//! current recommendation for stored passwords, and its PHC string carries its own parameters,
//! so stronger settings later do not invalidate older lines). `outpost passwd` manages it.

use std::collections::BTreeMap;
use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::AuthError;

/// Users and their password hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    users: BTreeMap<String, String>,
}

/// A username that fits the file: not empty, no `:` (the separator), no control characters.
pub fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name.contains(':')
        && !name.chars().any(char::is_control)
}

impl PasswordFile {
    /// Reads a file; a missing file is an error (a configured file must exist).
    pub fn load(path: &Path) -> Result<PasswordFile, AuthError> {
        crate::load_file(path, PasswordFile::parse)
    }

    /// Parses the file's text; the error names the line.
    pub fn parse(text: &str) -> Result<PasswordFile, String> {
        let mut users = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(format!("line {}: expected username:hash", n + 1));
            };
            if !valid_username(user) {
                return Err(format!("line {}: invalid username", n + 1));
            }
            if PasswordHash::new(hash).is_err() {
                return Err(format!(
                    "line {}: the hash of {user} is not a PHC string",
                    n + 1
                ));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(PasswordFile { users })
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (user, hash) in &self.users {
            out.push_str(user);
            out.push(':');
            out.push_str(hash);
            out.push('\n');
        }
        out
    }

    /// Writes the file atomically (a temporary file renamed over it), readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), AuthError> {
        let err = |e: std::io::Error| AuthError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write as _;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            let mut f = options.open(&tmp).map_err(err)?;
            f.write_all(self.render().as_bytes()).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, path).map_err(err)
    }

    /// Adds or replaces a user with a fresh salt.
    pub fn set(&mut self, user: &str, password: &str) -> Result<(), String> {
        if !valid_username(user) {
            return Err(
                "usernames are 1 to 256 characters, without ':' or control characters".into(),
            );
        }
        self.users.insert(user.to_string(), hash(password)?);
        Ok(())
    }

    /// Removes a user; false when there was none.
    pub fn remove(&mut self, user: &str) -> bool {
        self.users.remove(user).is_some()
    }

    /// The usernames, sorted.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// True when the user exists and the password is theirs. Takes tens of milliseconds by
    /// design (argon2id): call it off the async threads.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(h) => match PasswordHash::new(h) {
                Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
                Err(_) => false,
            },
            None => {
                // As long for an unknown user as for a wrong password: the time does not tell
                // which usernames exist.
                if let Some(d) = dummy() {
                    let _ = Argon2::default().verify_password(password, &d);
                }
                false
            }
        }
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True with no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// An argon2id PHC string of `password` with a random salt and the crate's default parameters
/// (OWASP's: 19 MiB, 2 passes, 1 lane).
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// A hash of nothing in particular, verified against for unknown users.
fn dummy() -> Option<PasswordHash<'static>> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PasswordHash::new(DUMMY.get_or_init(|| hash("outpost-dummy").unwrap_or_default())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_verify_render_parse() {
        let mut f = PasswordFile::default();
        f.set("alice", "secret").unwrap();
        f.set("bob", "hunter2").unwrap();
        assert!(f.verify("alice", b"secret"));
        assert!(!f.verify("alice", b"Secret"));
        assert!(!f.verify("carol", b"secret"));
        let text = f.render();
        assert!(text.contains("alice:$argon2id$"), "{text}");
        assert!(!text.contains("secret"));
        let back = PasswordFile::parse(&text).unwrap();
        assert_eq!(back, f);
        assert!(back.verify("bob", b"hunter2"));
        assert!(f.clone().remove("bob"));
    }

    #[test]
    fn bad_lines_are_named() {
        let e = PasswordFile::parse("# users\nalice\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = PasswordFile::parse("alice:plaintext\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        assert!(PasswordFile::default().set("a:b", "x").is_err());
    }
}
