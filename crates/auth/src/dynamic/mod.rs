//! Dynamic security: users, groups, roles and ACLs changed while the broker runs, through
//! mosquitto's `$CONTROL/dynamic-security/v1` commands (so `mosquitto_ctrl dynsec` works
//! unchanged) or the admin API, and kept in the store. It lives beside the files
//! (`password_file`, `acl_file`, `access_keys_file`); how the two combine is said once, in
//! [`crate::Security`]'s decisions and in docs/management.md: a deny from either wins, an allow
//! from either grants, and when neither says anything a client that dynamic security knows gets
//! its default access while everyone else is decided as before.

pub mod commands;
pub mod decide;
pub mod model;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use serde_json::{json, Value};

use crate::keys::{AccessKey, AccessKeys};
pub use model::Model;

/// Writes the model durably (the store's `dynsec` stream); resolves once it is on disk.
pub type Saver =
    Arc<dyn Fn(Vec<u8>) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Commands one request may carry: a bound on the work (and the password hashing) one
/// publish can cause.
pub const MAX_COMMANDS: usize = 100;

/// What one request did.
#[derive(Debug)]
pub struct Answer {
    /// The `{"responses": […]}` document to publish on the response topic.
    pub response: Value,
    /// Usernames whose connections must close now.
    pub kick: Vec<String>,
}

/// Why a login that dynamic security decides is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong password, no password set, or a client id other than the one set.
    BadCredentials,
    /// The client is disabled.
    Disabled,
}

/// The model in force, how it is saved, and the access keys it made.
pub struct Dynamic {
    model: RwLock<Arc<Model>>,
    /// Mirrors `!model.is_empty()`: the hot path (every publish) reads it without a lock.
    in_use: std::sync::atomic::AtomicBool,
    keys: RwLock<Arc<AccessKeys>>,
    /// One batch of commands at a time: each sees the last one's result.
    writer: tokio::sync::Mutex<()>,
    saver: OnceLock<Saver>,
}

impl std::fmt::Debug for Dynamic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.snapshot();
        f.debug_struct("Dynamic")
            .field("clients", &m.clients.len())
            .field("groups", &m.groups.len())
            .field("roles", &m.roles.len())
            .finish()
    }
}

impl Default for Dynamic {
    fn default() -> Self {
        Dynamic {
            model: RwLock::new(Arc::new(Model::default())),
            in_use: std::sync::atomic::AtomicBool::new(false),
            keys: RwLock::new(Arc::new(AccessKeys::default())),
            writer: tokio::sync::Mutex::new(()),
            saver: OnceLock::new(),
        }
    }
}

impl Dynamic {
    /// The model now.
    pub fn snapshot(&self) -> Arc<Model> {
        self.model.read().clone()
    }

    /// The access keys made through dynamic security.
    pub fn keys(&self) -> Arc<AccessKeys> {
        self.keys.read().clone()
    }

    /// Where changes are saved; without one they live in memory only (tests).
    pub fn set_saver(&self, saver: Saver) -> bool {
        self.saver.set(saver).is_ok()
    }

    /// Puts back a model saved by a previous run.
    pub fn restore(&self, bytes: &[u8]) -> Result<(), String> {
        let model: Model = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        self.install(model);
        Ok(())
    }

    fn install(&self, model: Model) {
        let mut keys = AccessKeys::default();
        for (id, k) in &model.access_keys {
            keys.insert(AccessKey {
                access_key_id: id.clone(),
                secret_access_key: k.secret.clone(),
                identity: k.username.clone(),
                account: None,
            });
        }
        *self.keys.write() = Arc::new(keys);
        let in_use = !model.is_empty();
        *self.model.write() = Arc::new(model);
        self.in_use
            .store(in_use, std::sync::atomic::Ordering::Release);
    }

    /// True when dynamic security governs anyone (a client exists, or an anonymous group is
    /// set): decisions must then ask it.
    pub fn in_use(&self) -> bool {
        self.in_use.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Runs a request (the payload of a `$CONTROL/dynamic-security/v1` publish, or an admin API
    /// body): parses it, runs its commands in order, saves the model durably when it changed,
    /// and only then puts it in force and answers.
    pub async fn execute(&self, payload: &[u8]) -> Answer {
        let refuse = |error: &str| Answer {
            response: json!({"responses": [{"command": "Unknown command", "error": error}]}),
            kick: Vec::new(),
        };
        let Ok(mut tree) = serde_json::from_slice::<Value>(payload) else {
            return refuse("Payload not valid JSON");
        };
        let Some(Value::Array(commands)) = tree.get_mut("commands").map(Value::take) else {
            return refuse("Invalid/missing commands");
        };
        if commands.len() > MAX_COMMANDS {
            return refuse("Too many commands (at most 100 per request)");
        }
        let _turn = self.writer.lock().await;
        let mut model = (*self.snapshot()).clone();
        let ran = tokio::task::spawn_blocking(move || {
            let outcome = commands::run(&mut model, &commands, &|p| crate::passwords::hash(p));
            (model, outcome)
        })
        .await;
        let Ok((model, mut outcome)) = ran else {
            return refuse("Internal error");
        };
        if outcome.changed {
            let saved = match (self.saver.get(), serde_json::to_vec(&model)) {
                (Some(save), Ok(bytes)) => save(bytes).await,
                (None, Ok(_)) => Ok(()),
                (_, Err(e)) => Err(e.to_string()),
            };
            if let Err(e) = saved {
                tracing::error!(error = %e, "dynamic security: the change could not be saved; nothing changed");
                for r in &mut outcome.responses {
                    if let Some(obj) = r.as_object_mut() {
                        obj.remove("data");
                        obj.insert("error".into(), json!("Internal error"));
                    }
                }
                return Answer {
                    response: json!({ "responses": outcome.responses }),
                    kick: Vec::new(),
                };
            }
            self.install(model);
            tracing::info!(commands = ?outcome.log, "dynamic security changed");
        }
        Answer {
            response: json!({ "responses": outcome.responses }),
            kick: outcome.kick,
        }
    }

    /// True when the username is a client here that may not log in now (disabled).
    pub fn disabled(&self, username: &str) -> bool {
        self.snapshot()
            .clients
            .get(username)
            .is_some_and(|c| c.disabled)
    }
}

/// Whether dynamic security decides this username's login: `None` when it does not know it (the
/// password file decides). Takes tens of milliseconds (argon2id): call it off the async threads.
pub fn verify(
    model: &Model,
    username: &str,
    password: &[u8],
    client_id: Option<&str>,
) -> Option<Result<(), Refusal>> {
    let client = model.clients.get(username)?;
    if client.disabled {
        return Some(Err(Refusal::Disabled));
    }
    // A pinned client id binds MQTT connections (a console login has none).
    if client_id.is_some_and(|c| client.clientid.as_deref().is_some_and(|id| id != c)) {
        return Some(Err(Refusal::BadCredentials));
    }
    let ok = client.password.as_deref().is_some_and(|h| {
        use argon2::{PasswordHash, PasswordVerifier};
        PasswordHash::new(h).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(password, &parsed)
                .is_ok()
        })
    });
    Some(if ok {
        Ok(())
    } else {
        Err(Refusal::BadCredentials)
    })
}
