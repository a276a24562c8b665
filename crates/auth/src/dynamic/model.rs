//! What dynamic security knows: clients (MQTT users and the access keys made for them), groups,
//! roles with their ACL entries, the default access and the anonymous group — the model of
//! mosquitto's dynamic-security plugin, which `mosquitto_ctrl dynsec` edits. Kept as one
//! document: it is small (an edge broker has tens of users, not millions), it is written whole
//! to the store at each change, and a reader takes a snapshot (`Arc<Model>`) without a lock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A role or group attached with a priority (higher first; -1 when not given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    /// The role's or group's name.
    pub name: String,
    /// Higher is checked first.
    pub priority: i64,
}

/// A broker client: a username that may log in (with a password hash), or only hold roles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// When set, the only client id this username may connect with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clientid: Option<String>,
    /// argon2id PHC string; none: the client cannot log in with a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textname: Option<String>,
    /// A description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textdescription: Option<String>,
    /// Refused at login (and disconnected when set).
    #[serde(default)]
    pub disabled: bool,
    /// Its own roles.
    #[serde(default)]
    pub roles: Vec<Attached>,
    /// The groups it belongs to (with this client's priority for each).
    #[serde(default)]
    pub groups: Vec<Attached>,
}

/// A group of clients sharing roles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textname: Option<String>,
    /// A description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textdescription: Option<String>,
    /// The group's roles.
    #[serde(default)]
    pub roles: Vec<Attached>,
}

/// One ACL entry of a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `publishClientSend`, `publishClientReceive`, `subscribeLiteral`, `subscribePattern`,
    /// `unsubscribeLiteral`, `unsubscribePattern`; or (Outpost's extension for HTTP callers) an
    /// IAM action such as `sqs:SendMessage` or `outpost:*`, whose `topic` is an ARN pattern.
    pub acltype: String,
    /// A topic filter (MQTT types) or an ARN pattern (actions).
    pub topic: String,
    /// Higher is checked first.
    pub priority: i64,
    /// Allow or deny.
    pub allow: bool,
}

/// A role: ACL entries with a name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textname: Option<String>,
    /// A description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textdescription: Option<String>,
    /// Its entries, highest priority first.
    #[serde(default)]
    pub acls: Vec<Entry>,
}

/// What applies when no entry matches (mosquitto's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultAccess {
    /// A client's publish.
    pub publish_client_send: bool,
    /// A delivery to a client.
    pub publish_client_receive: bool,
    /// A subscription.
    pub subscribe: bool,
    /// An unsubscription.
    pub unsubscribe: bool,
}

impl Default for DefaultAccess {
    fn default() -> Self {
        DefaultAccess {
            publish_client_send: false,
            publish_client_receive: true,
            subscribe: false,
            unsubscribe: true,
        }
    }
}

/// An access key pair made for a client (HTTP callers sign with it; the client's roles apply).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// The secret half (SigV4 is an HMAC: the server keeps the secret itself).
    pub secret: String,
    /// The client whose roles apply.
    pub username: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The whole model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Model {
    /// Default access per ACL type.
    #[serde(default, rename = "defaultACLAccess")]
    pub default_access: DefaultAccess,
    /// Clients by username.
    #[serde(default)]
    pub clients: BTreeMap<String, Client>,
    /// Groups by name.
    #[serde(default)]
    pub groups: BTreeMap<String, Group>,
    /// Roles by name.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// The group anonymous callers belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_group: Option<String>,
    /// Access keys by id.
    #[serde(default)]
    pub access_keys: BTreeMap<String, Key>,
}

impl Model {
    /// True when the model speaks about anyone: no clients and no anonymous group means every
    /// decision is left to the files, as before dynamic security was used.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty() && self.anonymous_group.is_none()
    }
}

/// Sorts attachments highest priority first (then by name, so ties are stable).
pub fn sort_attached(list: &mut [Attached]) {
    list.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
}

/// Sorts entries highest priority first (ties keep their order).
pub fn sort_entries(list: &mut [Entry]) {
    list.sort_by_key(|e| std::cmp::Reverse(e.priority));
}
