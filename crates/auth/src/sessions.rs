//! Who is logged in to the web console, and the one-time passwords its live view logs in to
//! MQTT with. A console login checks a username and password once (argon2id, throttled per
//! address like any login) and gets a random session token, kept here with the identity and sent
//! back as an HttpOnly, SameSite=Strict cookie; the token, not the password, authenticates
//! what follows. The live message view is a real MQTT client over WebSocket: it logs in with a
//! one-time password made for the session's identity, so its subscriptions are checked by the
//! ACL as that identity's own. Both are bounded (sessions per broker, tokens per session) and
//! expire.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use outpost_access::Identity;
use parking_lot::Mutex;

/// How long a console session lasts without being used.
pub const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// How long a one-time MQTT password stays usable.
pub const TOKEN_LIFE: Duration = Duration::from_secs(60);
/// Console sessions held at once (the oldest goes past it).
pub const MAX_SESSIONS: usize = 256;
/// One-time passwords outstanding at once.
pub const MAX_TOKENS: usize = 256;

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<String, (Identity, Instant)>,
    tokens: HashMap<String, (Identity, Instant)>,
}

/// Console sessions and one-time MQTT passwords.
#[derive(Debug, Default)]
pub struct Sessions(Mutex<Inner>);

/// 32 random bytes, hex: what a session token or one-time password is.
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Adds `who` under a new token to a map of at most `max` entries: expired ones (older than
/// `life`) go first, then the oldest if it is still full. The token.
fn insert_bounded(
    map: &mut HashMap<String, (Identity, Instant)>,
    who: Identity,
    life: Duration,
    max: usize,
) -> String {
    let token = random_token();
    let now = Instant::now();
    map.retain(|_, (_, at)| now.duration_since(*at) < life);
    if map.len() >= max {
        if let Some(oldest) = map
            .iter()
            .min_by_key(|(_, (_, at))| *at)
            .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    map.insert(token.clone(), (who, now));
    token
}

impl Sessions {
    /// Opens a session for `who`; its token.
    pub fn open(&self, who: Identity) -> String {
        insert_bounded(&mut self.0.lock().sessions, who, SESSION_IDLE, MAX_SESSIONS)
    }

    /// The identity of a live session (its idle clock starts over).
    pub fn get(&self, token: &str) -> Option<Identity> {
        let now = Instant::now();
        let mut g = self.0.lock();
        let (who, at) = g.sessions.get_mut(token)?;
        if now.duration_since(*at) >= SESSION_IDLE {
            g.sessions.remove(token);
            return None;
        }
        *at = now;
        Some(who.clone())
    }

    /// Ends a session.
    pub fn close(&self, token: &str) {
        self.0.lock().sessions.remove(token);
    }

    /// Ends every session of a name (a user disabled or deleted).
    pub fn close_all_of(&self, name: &str) {
        let mut g = self.0.lock();
        g.sessions.retain(|_, (who, _)| &*who.name != name);
        g.tokens.retain(|_, (who, _)| &*who.name != name);
    }

    /// A one-time MQTT password for `who` (the console's live view).
    pub fn mqtt_token(&self, who: Identity) -> String {
        insert_bounded(&mut self.0.lock().tokens, who, TOKEN_LIFE, MAX_TOKENS)
    }

    /// Takes a one-time password: the identity it was made for, if it is live and was made for
    /// `username` (empty for anonymous).
    pub fn take_mqtt_token(&self, username: &str, password: &[u8]) -> Option<Identity> {
        let password = std::str::from_utf8(password).ok()?;
        if password.len() != 64 {
            return None;
        }
        let mut g = self.0.lock();
        let (who, at) = g.tokens.remove(password)?;
        (at.elapsed() < TOKEN_LIFE && *who.name == *username).then_some(who)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_and_tokens() {
        let s = Sessions::default();
        let who = Identity::anonymous("1");
        let t = s.open(who.clone());
        assert_eq!(s.get(&t), Some(who.clone()));
        s.close(&t);
        assert_eq!(s.get(&t), None);
        let p = s.mqtt_token(who.clone());
        assert_eq!(
            s.take_mqtt_token("someone", p.as_bytes()),
            None,
            "made for another name; and gone"
        );
        let p = s.mqtt_token(who.clone());
        assert_eq!(s.take_mqtt_token("", p.as_bytes()), Some(who));
        assert_eq!(s.take_mqtt_token("", p.as_bytes()), None, "used once");
        for _ in 0..(MAX_SESSIONS + 10) {
            s.open(Identity::anonymous("1"));
        }
        assert_eq!(s.0.lock().sessions.len(), MAX_SESSIONS);
    }
}
