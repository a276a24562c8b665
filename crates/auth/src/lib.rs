//! Outpost's security: who a caller is, and what it may do.
//!
//! One [`Security`] serves every door. MQTT clients prove themselves with a username and password
//! (the password file, argon2id) or a client certificate; HTTP callers with an AWS Signature
//! Version 4 made with a configured access key. Both end in an [`Identity`], and one ACL file
//! (with the resource policies queues carry) decides what each identity may do. The files are
//! read at start and again on SIGHUP ([`Security::reload`]); a reload that fails keeps the rules
//! in force and says why, so a typo never opens or closes the broker by accident.

pub mod acl;

pub mod dynamic;
pub mod keys;
pub mod passwords;
pub mod policy;
pub mod sessions;
pub mod sigv4;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

pub use acl::{Acl, Effect, Request};
pub use keys::{AccessKey, AccessKeys};
pub use outpost_access::{Identity, Proof};
pub use outpost_net::{PerAddress, Rate};
pub use passwords::PasswordFile;
pub use sigv4::{SigError, SignedRequest};

/// Why the security files cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// A file could not be read (or written).
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A file's content is not valid.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, and where.
        message: String,
    },
}

/// Where the security files are, and the settings around them.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// The password file (`outpost passwd`); none: no password logins.
    pub password_file: Option<PathBuf>,
    /// The ACL file; none: every identity may do everything.
    pub acl_file: Option<PathBuf>,
    /// The access keys file; none: HTTP signatures are not verified.
    pub access_keys_file: Option<PathBuf>,
    /// Whether callers without credentials are let in. `None`: only when no authentication is
    /// configured (and then the broker listens on loopback only).
    pub allow_anonymous: Option<bool>,
    /// The broker's account (identities without an account of their own).
    pub account: String,
    /// The broker's region (the ARNs of IoT topics: `arn:aws:iot:<region>:…`).
    pub region: String,
    /// Failed logins allowed per address: a burst, then this rate.
    pub login_failures: Rate,
}

/// What the files say now.
#[derive(Debug, Default)]
struct Policy {
    passwords: Option<PasswordFile>,
    acl: Option<Acl>,
    keys: Option<AccessKeys>,
}

/// Counters of the security decisions (for `/metrics`).
#[derive(Debug, Default)]
pub struct SecurityStats {
    /// MQTT logins refused for bad credentials.
    pub mqtt_auth_failures: AtomicU64,
    /// MQTT logins refused because anonymous access is off.
    pub mqtt_anonymous_refused: AtomicU64,
    /// HTTP requests refused for their signature (missing, unknown key, mismatch, expired).
    pub http_auth_failures: AtomicU64,
    /// Logins and signed requests refused because their address failed too often.
    pub throttled_logins: AtomicU64,
    /// MQTT publishes, subscriptions and deliveries the ACL denied.
    pub mqtt_denied: AtomicU64,
    /// HTTP calls the ACL (or a resource policy) denied.
    pub http_denied: AtomicU64,
    /// Reloads that succeeded / failed.
    pub reloads: AtomicU64,
    /// Reloads refused for an invalid file.
    pub reload_failures: AtomicU64,
}

/// Why an MQTT login is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong username or password (CONNACK 0x86 / 0x04).
    BadCredentials,
    /// No credentials and anonymous access is off (CONNACK 0x87 / 0x05).
    NotAuthorized,
    /// Too many failures from this address lately.
    Throttled,
}

/// Why an HTTP request's caller is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAuthError {
    /// The signature is missing, unknown, wrong or stale.
    Signature(SigError),
    /// Too many failures from this address lately.
    Throttled,
}

/// Identities, ACLs and throttles, shared by every listener.
#[derive(Debug)]
pub struct Security {
    config: SecurityConfig,
    policy: RwLock<Arc<Policy>>,
    failures: PerAddress,
    /// Users, groups, roles and access keys changed at run time (mosquitto's dynamic security).
    pub dynamic: dynamic::Dynamic,
    /// Web console sessions and the one-time MQTT passwords of its live view.
    pub sessions: sessions::Sessions,
    /// Counters.
    pub stats: SecurityStats,
    /// The anonymous identity, made once: every identity shares its account string (an
    /// allocation less per connection).
    anonymous: Identity,
}

impl Security {
    /// Reads the configured files; an unreadable or invalid file is an error naming it.
    pub fn open(config: SecurityConfig) -> Result<Arc<Security>, AuthError> {
        let policy = load(&config)?;
        Ok(Arc::new(Security {
            failures: PerAddress::new(config.login_failures),
            anonymous: Identity::anonymous(&config.account),
            config,
            policy: RwLock::new(Arc::new(policy)),
            dynamic: dynamic::Dynamic::default(),
            sessions: sessions::Sessions::default(),
            stats: SecurityStats::default(),
        }))
    }

    /// Everything allowed, nothing checked (tests and embedded uses).
    pub fn open_to_all(account: &str) -> Arc<Security> {
        Arc::new(Security {
            failures: PerAddress::new(Rate::UNLIMITED),
            anonymous: Identity::anonymous(account),
            config: SecurityConfig {
                allow_anonymous: Some(true),
                account: account.into(),
                ..SecurityConfig::default()
            },
            policy: RwLock::new(Arc::new(Policy::default())),
            dynamic: dynamic::Dynamic::default(),
            sessions: sessions::Sessions::default(),
            stats: SecurityStats::default(),
        })
    }

    /// Reads the files again (SIGHUP). On error the rules in force stay.
    pub fn reload(&self) -> Result<(), AuthError> {
        match load(&self.config) {
            Ok(p) => {
                *self.policy.write() = Arc::new(p);
                self.stats.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.stats.reload_failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn now(&self) -> Arc<Policy> {
        self.policy.read().clone()
    }

    /// True when a password file or access keys are configured.
    pub fn has_credentials(&self) -> bool {
        let p = self.now();
        p.passwords.is_some() || p.keys.is_some()
    }

    /// True when decisions must be made: an ACL file is in force, or dynamic security governs
    /// some identity (a client, or the anonymous group).
    pub fn has_acl(&self) -> bool {
        self.dynamic.in_use() || self.now().acl.is_some()
    }

    /// Whether a caller without credentials is let in.
    pub fn anonymous_allowed(&self) -> bool {
        self.config
            .allow_anonymous
            .unwrap_or_else(|| !self.has_credentials())
    }

    /// The anonymous identity of the broker's account.
    pub fn anonymous(&self) -> Identity {
        self.anonymous.clone()
    }

    /// The broker's account.
    pub fn account(&self) -> &str {
        &self.config.account
    }

    /// Decides an MQTT CONNECT (`client_id`: the CONNECT's; `None` for a web console login): a
    /// verified client certificate name wins; otherwise the username
    /// and password are checked by dynamic security when it knows the username, else against
    /// the password file. Password checks run on a blocking thread (argon2id takes tens of
    /// milliseconds by design).
    pub async fn login_mqtt(
        &self,
        peer: IpAddr,
        client_id: Option<&str>,
        username: Option<&str>,
        password: Option<&[u8]>,
        certificate: Option<&str>,
    ) -> Result<Identity, LoginError> {
        // The web console's live view: a one-time password made for a console session.
        if let (Some(id), Some(p)) = (client_id, password) {
            if id.starts_with("outpost-console-") {
                if let Some(who) = self.sessions.take_mqtt_token(username.unwrap_or(""), p) {
                    return Ok(who);
                }
            }
        }
        if let Some(name) = certificate {
            if self.dynamic.disabled(name) {
                return Err(LoginError::NotAuthorized);
            }
            return Ok(Identity {
                name: name.into(),
                proof: Proof::Certificate,
                account: self.anonymous.account.clone(),
            });
        }
        let policy = self.now();
        let model = self.dynamic.snapshot();
        let dynamic_knows = username.is_some_and(|u| model.clients.contains_key(u));
        match (&policy.passwords, username) {
            (_, Some(user)) if dynamic_knows || policy.passwords.is_some() => {
                if !self.failures.has_token(peer) {
                    self.stats.throttled_logins.fetch_add(1, Ordering::Relaxed);
                    return Err(LoginError::Throttled);
                }
                let (user, password) = (user.to_string(), password.unwrap_or_default().to_vec());
                let client_id = client_id.map(str::to_string);
                let p = policy.clone();
                let verdict = if dynamic_knows {
                    tokio::task::spawn_blocking(move || {
                        dynamic::verify(&model, &user, &password, client_id.as_deref())
                            .unwrap_or(Err(dynamic::Refusal::BadCredentials))
                    })
                    .await
                    .unwrap_or(Err(dynamic::Refusal::BadCredentials))
                } else {
                    let ok = tokio::task::spawn_blocking(move || {
                        p.passwords
                            .as_ref()
                            .is_some_and(|f| f.verify(&user, &password))
                    })
                    .await
                    .unwrap_or(false);
                    if ok {
                        Ok(())
                    } else {
                        Err(dynamic::Refusal::BadCredentials)
                    }
                };
                match verdict {
                    Ok(()) => Ok(Identity {
                        name: username.unwrap_or_default().into(),
                        proof: Proof::Password,
                        account: self.anonymous.account.clone(),
                    }),
                    Err(refusal) => {
                        self.stats
                            .mqtt_auth_failures
                            .fetch_add(1, Ordering::Relaxed);
                        self.failures.take(peer);
                        Err(match refusal {
                            dynamic::Refusal::Disabled => LoginError::NotAuthorized,
                            dynamic::Refusal::BadCredentials => LoginError::BadCredentials,
                        })
                    }
                }
            }
            _ if self.anonymous_allowed() => Ok(self.anonymous.clone()),
            _ => {
                self.stats
                    .mqtt_anonymous_refused
                    .fetch_add(1, Ordering::Relaxed);
                self.failures.take(peer);
                Err(LoginError::NotAuthorized)
            }
        }
    }

    /// Decides who signed an HTTP request. With access keys configured the signature is
    /// verified (an unsigned request is anonymous if anonymous access is on); without them every
    /// caller is anonymous and signatures are not checked (any key pair works, as with the
    /// emulators the SDKs are often pointed at).
    /// `service`: the signing name of the API the request is for (`sqs`, `sns`, `events`,
    /// `iotdata`): a signature scoped to another service or region is refused.
    pub fn authenticate_http(
        &self,
        peer: IpAddr,
        req: &SignedRequest<'_>,
        service: &str,
    ) -> Result<Identity, HttpAuthError> {
        let policy = self.now();
        let made = self.dynamic.keys();
        // The key set that holds the claimed key (the file's first, then dynamic security's).
        let keys = match (&policy.keys, made.is_empty()) {
            (None, true) => return Ok(self.anonymous.clone()),
            (Some(file), _) => match sigv4::claimed_key(req) {
                Some(id) if file.get(&id).is_none() && made.get(&id).is_some() => &*made,
                _ => file,
            },
            (None, false) => &*made,
        };
        if !self.failures.has_token(peer) {
            self.stats.throttled_logins.fetch_add(1, Ordering::Relaxed);
            return Err(HttpAuthError::Throttled);
        }
        let scope = (!self.config.region.is_empty()).then_some(sigv4::Scope {
            region: &self.config.region,
            service,
        });
        let verdict = sigv4::verify(req, keys, std::time::SystemTime::now(), scope);
        match verdict {
            Ok(Some(id)) => match keys.get(&id) {
                Some(k) => Ok(Identity {
                    name: k.identity.as_str().into(),
                    proof: Proof::AccessKey,
                    account: k.account.as_deref().unwrap_or(&self.config.account).into(),
                }),
                None => Err(HttpAuthError::Signature(SigError::UnknownKey)),
            },
            Ok(None) if self.anonymous_allowed() => Ok(self.anonymous.clone()),
            Ok(None) => {
                self.http_failure(peer);
                Err(HttpAuthError::Signature(SigError::Missing))
            }
            Err(e) => {
                self.http_failure(peer);
                Err(HttpAuthError::Signature(e))
            }
        }
    }

    fn http_failure(&self, peer: IpAddr) {
        self.stats
            .http_auth_failures
            .fetch_add(1, Ordering::Relaxed);
        self.failures.take(peer);
    }

    /// Whether `who` may do an MQTT action (`mqtt:publish`, `mqtt:subscribe`, `mqtt:receive`,
    /// `mqtt:unsubscribe`) on a topic or filter. Without an ACL file or dynamic rules everything
    /// is allowed.
    pub fn mqtt_allows(&self, who: &Identity, client_id: &str, action: &str, topic: &str) -> bool {
        let ok = self.decide(who, client_id, action, topic, None);
        if !ok {
            self.stats.mqtt_denied.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// True when MQTT checks can be skipped entirely (no ACL file, no dynamic rules).
    pub fn mqtt_open(&self) -> bool {
        !self.has_acl()
    }

    /// Whether `who` may do an HTTP action (`sqs:SendMessage`, …) on `resource` (an ARN),
    /// considering the resource's own policy document if it has one: a deny in either refuses,
    /// an allow in either grants, silence refuses. Without an ACL file everything is allowed.
    pub fn http_allows(
        &self,
        who: &Identity,
        action: &str,
        resource: &str,
        resource_policy: Option<&str>,
    ) -> bool {
        self.arn_allows(who, "", action, resource, resource_policy)
    }

    /// [`Security::http_allows`] for an MQTT client (`%c` in an ARN names its client id).
    pub fn arn_allows(
        &self,
        who: &Identity,
        client_id: &str,
        action: &str,
        resource: &str,
        resource_policy: Option<&str>,
    ) -> bool {
        let ok = self.decide(who, client_id, action, resource, resource_policy);
        if !ok {
            self.stats.http_denied.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// The verdicts of the ACL file, dynamic security and (for an ARN) the resource's own
    /// policy, combined: a deny from any refuses, an allow from any grants. Also whether dynamic
    /// security governs `who` (it knows the username, or `who` is anonymous and an anonymous
    /// group is set).
    fn verdict(
        &self,
        policy: &Policy,
        model: &dynamic::Model,
        who: &Identity,
        req: &Request<'_>,
        resource_policy: Option<&str>,
    ) -> (Option<Effect>, bool) {
        let from_acl = policy.acl.as_ref().and_then(|acl| acl.decide(who, req));
        let roles = dynamic::decide::roles_of(model, who);
        let from_dynamic =
            roles
                .as_deref()
                .and_then(|roles| match dynamic::decide::Kind::of_action(req.action) {
                    Some(kind) => dynamic::decide::mqtt(roles, kind, req.resource),
                    None => dynamic::decide::action(roles, req.action, req.resource),
                });
        let from_resource = resource_policy
            .and_then(|doc| crate::policy::decide(doc, who, req.action, req.resource));
        let all = [from_acl, from_dynamic, from_resource];
        let verdict = if all.contains(&Some(Effect::Deny)) {
            Some(Effect::Deny)
        } else if all.contains(&Some(Effect::Allow)) {
            Some(Effect::Allow)
        } else {
            None
        };
        (verdict, roles.is_some())
    }

    /// What silence means: for an identity dynamic security governs, its default access (MQTT
    /// actions only; never `$CONTROL/…`); for anyone else, allowed only without an ACL file.
    /// Unsubscribing is dynamic security's question only (the ACL file has no word for it):
    /// anyone else may always unsubscribe.
    fn silence(policy: &Policy, model: &dynamic::Model, governed: bool, req: &Request<'_>) -> bool {
        let kind = dynamic::decide::Kind::of_action(req.action);
        if governed {
            kind.is_some_and(|kind| dynamic::decide::default_allows(model, kind, req.resource))
        } else {
            kind == Some(dynamic::decide::Kind::Unsubscribe) || policy.acl.is_none()
        }
    }

    /// The rules in force, or `None` when nothing is checked (no ACL file, dynamic security
    /// unused): every decision starts here.
    fn in_force(&self) -> Option<(Arc<Policy>, Arc<dynamic::Model>)> {
        let policy = self.now();
        if policy.acl.is_none() && !self.dynamic.in_use() {
            return None;
        }
        Some((policy, self.dynamic.snapshot()))
    }

    /// The one decision every check makes (see [`Security::verdict`]).
    fn decide(
        &self,
        who: &Identity,
        client_id: &str,
        action: &str,
        resource: &str,
        resource_policy: Option<&str>,
    ) -> bool {
        let Some((policy, model)) = self.in_force() else {
            return true;
        };
        let req = Request {
            action,
            resource,
            client_id,
        };
        match self.verdict(&policy, &model, who, &req, resource_policy) {
            (Some(effect), _) => effect == Effect::Allow,
            (None, governed) => Self::silence(&policy, &model, governed, &req),
        }
    }
}

impl Security {
    /// See [`outpost_access::Authorizer::topic`].
    pub fn topic_allows(
        &self,
        who: &Identity,
        verb: outpost_access::TopicVerb,
        topic: &str,
    ) -> bool {
        use outpost_access::TopicVerb;
        let Some((policy, model)) = self.in_force() else {
            return true;
        };
        let arn = |kind: &str| {
            format!(
                "arn:aws:iot:{}:{}:{kind}/{topic}",
                self.config.region, self.config.account
            )
        };
        let mut governed = false;
        let mut ask = |action: &str, resource: &str| {
            let req = Request {
                action,
                resource,
                client_id: "",
            };
            let (v, g) = self.verdict(&policy, &model, who, &req, None);
            governed |= g;
            v
        };
        let (grants, denies): (Vec<_>, Vec<_>) = match verb {
            TopicVerb::Publish => (
                vec![
                    ask("mqtt:publish", topic),
                    ask("iot:Publish", &arn("topic")),
                ],
                vec![],
            ),
            TopicVerb::Read => (
                vec![
                    ask("mqtt:receive", topic),
                    ask("iot:Receive", &arn("topic")),
                ],
                vec![
                    ask("mqtt:subscribe", topic),
                    ask("iot:Subscribe", &arn("topicfilter")),
                ],
            ),
        };
        let denied = grants
            .iter()
            .chain(&denies)
            .any(|d| *d == Some(Effect::Deny));
        let granted = grants.contains(&Some(Effect::Allow)) || {
            let action = match verb {
                TopicVerb::Publish => "mqtt:publish",
                TopicVerb::Read => "mqtt:receive",
            };
            let req = Request {
                action,
                resource: topic,
                client_id: "",
            };
            Self::silence(&policy, &model, governed, &req)
        };
        let ok = !denied && granted;
        if !ok {
            self.stats.mqtt_denied.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// True when a rule explicitly denies `who` the MQTT action on `topic` (what no wider
    /// allow overrides: a deny of `mqtt:subscribe` on `secret/#` asked about the topic `secret/x`
    /// withholds it from a wider subscription, ADR 0015).
    pub fn mqtt_denies(&self, who: &Identity, client_id: &str, action: &str, topic: &str) -> bool {
        let Some((policy, model)) = self.in_force() else {
            return false;
        };
        let req = Request {
            action,
            resource: topic,
            client_id,
        };
        self.verdict(&policy, &model, who, &req, None).0 == Some(Effect::Deny)
    }
}

/// The engines ask the ACL through this (they do not depend on how it is made).
/// The operator (what the configuration file sets up) is allowed everything; everyone else is
/// asked about.
impl outpost_access::Authorizer for Security {
    fn mqtt(&self, who: &Identity, client_id: &str, action: &str, topic: &str) -> bool {
        who.proof == Proof::Operator || self.mqtt_allows(who, client_id, action, topic)
    }
    fn mqtt_denied(&self, who: &Identity, client_id: &str, action: &str, topic: &str) -> bool {
        who.proof != Proof::Operator && self.mqtt_denies(who, client_id, action, topic)
    }
    fn http(&self, who: &Identity, action: &str, resource: &str, policy: Option<&str>) -> bool {
        who.proof == Proof::Operator || self.http_allows(who, action, resource, policy)
    }
    fn topic(&self, who: &Identity, verb: outpost_access::TopicVerb, topic: &str) -> bool {
        who.proof == Proof::Operator || self.topic_allows(who, verb, topic)
    }
    fn client_arn(&self, who: &Identity, client_id: &str, action: &str, resource: &str) -> bool {
        who.proof == Proof::Operator || self.arn_allows(who, client_id, action, resource, None)
    }
    fn is_open(&self) -> bool {
        !self.has_acl()
    }
}

/// Reads a file and parses its text; errors name the file.
fn load_file<T>(
    path: &std::path::Path,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|e| AuthError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse(&text).map_err(|message| AuthError::Invalid {
        path: path.display().to_string(),
        message,
    })
}

fn load(config: &SecurityConfig) -> Result<Policy, AuthError> {
    Ok(Policy {
        passwords: config
            .password_file
            .as_deref()
            .map(PasswordFile::load)
            .transpose()?,
        acl: config.acl_file.as_deref().map(Acl::load).transpose()?,
        keys: config
            .access_keys_file
            .as_deref()
            .map(AccessKeys::load)
            .transpose()?,
    })
}
