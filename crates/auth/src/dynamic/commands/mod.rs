//! The commands of mosquitto's `$CONTROL/dynamic-security/v1` topic, run against the model:
//! the same names, fields, defaults, answers and error strings as the plugin (mosquitto 2.0), so
//! `mosquitto_ctrl dynsec` and scripts written for mosquitto work unchanged. Outpost adds three
//! commands for HTTP callers: `createAccessKey`, `deleteAccessKey` and `listAccessKeys`.

use serde_json::{json, Map, Value};

mod clients;
mod groups;
mod keys;
mod roles;

pub use clients::client_json;
pub use groups::group_json;
pub use roles::role_json;

use super::decide::acltype;
use super::model::{sort_attached, sort_entries, Attached, Client, Entry, Group, Model, Role};

/// What running a batch of commands did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// One response per command, in order.
    pub responses: Vec<Value>,
    /// The model changed: it must be saved before the responses are sent.
    pub changed: bool,
    /// Usernames whose connections must close (disabled, deleted, new password or client id).
    pub kick: Vec<String>,
    /// Groups deleted or changed whose members must close (mosquitto kicks them too).
    pub log: Vec<String>,
}

type Reply = Result<Option<Value>, &'static str>;

/// Bounds on the model (it is rewritten whole at each change, and read at every decision): far
/// above what one gateway's users, groups and roles need.
pub const MAX_CLIENTS: usize = 10_000;
/// Groups at most.
pub const MAX_GROUPS: usize = 1_000;
/// Roles at most.
pub const MAX_ROLES: usize = 1_000;
/// ACL entries of one role at most (`createRole`, `modifyRole`, `addRoleACL`).
pub const MAX_ENTRIES: usize = 1_000;

/// Runs `commands` (the `commands` array of a request) against `model`.
/// `hash` makes a password hash (argon2id; slow by design: run this off the async threads).
pub fn run(
    model: &mut Model,
    commands: &[Value],
    hash: &dyn Fn(&str) -> Result<String, String>,
) -> Outcome {
    let mut out = Outcome::default();
    for c in commands {
        let Some(obj) = c.as_object() else {
            continue;
        };
        let Some(command) = obj.get("command").and_then(Value::as_str) else {
            out.responses.push(reply(
                "Unknown command",
                Err("Missing command"),
                obj.get("correlationData"),
            ));
            continue;
        };
        let correlation = obj.get("correlationData");
        if correlation.is_some_and(|c| !c.is_string()) {
            out.responses.push(reply(
                command,
                Err("Invalid correlationData data type."),
                None,
            ));
            return out;
        }
        let before = model.clone();
        let result = one(model, command, obj, hash, &mut out.kick);
        if result.is_err() {
            // A failed command changes nothing, even halfway.
            *model = before;
        } else if *model != before {
            out.changed = true;
            out.log.push(command.to_string());
        }
        out.responses
            .push(reply(&canonical(command), result, correlation));
    }
    out
}

/// The command's name as mosquitto spells it in answers (it matches names without case).
fn canonical(command: &str) -> String {
    COMMANDS
        .iter()
        .find(|c| c.eq_ignore_ascii_case(command))
        .map_or_else(|| command.to_string(), |c| (*c).to_string())
}

const COMMANDS: [&str; 34] = [
    "setDefaultACLAccess",
    "getDefaultACLAccess",
    "createClient",
    "deleteClient",
    "getClient",
    "listClients",
    "modifyClient",
    "setClientPassword",
    "setClientId",
    "addClientRole",
    "removeClientRole",
    "enableClient",
    "disableClient",
    "addGroupClient",
    "createGroup",
    "deleteGroup",
    "getGroup",
    "listGroups",
    "modifyGroup",
    "removeGroupClient",
    "addGroupRole",
    "removeGroupRole",
    "setAnonymousGroup",
    "getAnonymousGroup",
    "createRole",
    "getRole",
    "listRoles",
    "modifyRole",
    "deleteRole",
    "addRoleACL",
    "removeRoleACL",
    "createAccessKey",
    "deleteAccessKey",
    "listAccessKeys",
];

fn reply(command: &str, result: Reply, correlation: Option<&Value>) -> Value {
    let mut r = Map::new();
    r.insert("command".into(), json!(command));
    match result {
        Ok(Some(data)) => {
            r.insert("data".into(), data);
        }
        Ok(None) => {}
        Err(e) => {
            r.insert("error".into(), json!(e));
        }
    }
    if let Some(c) = correlation.filter(|c| c.is_string()) {
        r.insert("correlationData".into(), c.clone());
    }
    Value::Object(r)
}

/// A required string field: missing or not a string is `missing`.
fn need<'a>(
    c: &'a Map<String, Value>,
    key: &str,
    missing: &'static str,
) -> Result<&'a str, &'static str> {
    match c.get(key) {
        Some(Value::String(s)) if !s.is_empty() || key == "clientid" => Ok(s),
        _ => Err(missing),
    }
}

/// An optional string field: present but not a string is `invalid`.
fn optional<'a>(
    c: &'a Map<String, Value>,
    key: &str,
    invalid: &'static str,
) -> Result<Option<&'a str>, &'static str> {
    match c.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid),
    }
}

fn int(c: &Map<String, Value>, key: &str, default: i64) -> i64 {
    c.get(key).and_then(Value::as_i64).unwrap_or(default)
}

fn boolean(c: &Map<String, Value>, key: &str, default: bool) -> bool {
    c.get(key).and_then(Value::as_bool).unwrap_or(default)
}

fn text(s: Option<&str>) -> Option<String> {
    s.map(str::to_string)
}

/// A list of `{rolename|groupname, priority}` objects (`roles` or `groups` of a command), each
/// of which must exist in `known`.
fn attachments(
    c: &Map<String, Value>,
    key: &str,
    field: &str,
    known: &dyn Fn(&str) -> bool,
    (not_found, invalid): (&'static str, &'static str),
) -> Result<Option<Vec<Attached>>, &'static str> {
    let Some(v) = c.get(key) else {
        return Ok(None);
    };
    let Some(list) = v.as_array() else {
        return Err(invalid);
    };
    let mut out: Vec<Attached> = Vec::new();
    for item in list {
        let Some(name) = item.get(field).and_then(Value::as_str) else {
            return Err(invalid);
        };
        if !known(name) {
            return Err(not_found);
        }
        if !out.iter().any(|a| a.name == name) {
            out.push(Attached {
                name: name.to_string(),
                priority: item.get("priority").and_then(Value::as_i64).unwrap_or(-1),
            });
        }
    }
    sort_attached(&mut out);
    Ok(Some(out))
}

/// A command's `roles` (each must exist), with mosquitto's errors.
fn role_list(c: &Map<String, Value>, m: &Model) -> Result<Option<Vec<Attached>>, &'static str> {
    attachments(
        c,
        "roles",
        "rolename",
        &|n| m.roles.contains_key(n),
        (
            "Role not found",
            "'roles' not an array or missing/invalid rolename",
        ),
    )
}

/// A command's `groups` (each must exist), with mosquitto's errors.
fn group_list(c: &Map<String, Value>, m: &Model) -> Result<Option<Vec<Attached>>, &'static str> {
    attachments(
        c,
        "groups",
        "groupname",
        &|n| m.groups.contains_key(n),
        (
            "Group not found",
            "'groups' not an array or missing/invalid groupname",
        ),
    )
}

/// A command's optional `textname` and `textdescription`.
fn texts(c: &Map<String, Value>) -> Result<(Option<&str>, Option<&str>), &'static str> {
    Ok((
        optional(c, "textname", "Invalid/missing textname")?,
        optional(c, "textdescription", "Invalid/missing textdescription")?,
    ))
}

fn attached_json(list: &[Attached], field: &str) -> Value {
    Value::Array(
        list.iter()
            .map(|a| {
                let mut m = Map::new();
                m.insert(field.into(), json!(a.name));
                if a.priority != -1 {
                    m.insert("priority".into(), json!(a.priority));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

fn put_text(m: &mut Map<String, Value>, key: &str, v: &Option<String>) {
    if let Some(v) = v {
        m.insert(key.into(), json!(v));
    }
}

/// `count` (-1: all) names from `offset`, with the total.
fn page<'a, T: 'a>(
    c: &Map<String, Value>,
    items: impl Iterator<Item = T>,
    show: impl Fn(T, bool) -> Value,
    key: &str,
) -> Value {
    let verbose = boolean(c, "verbose", false);
    let count = int(c, "count", -1);
    let offset = int(c, "offset", 0).max(0) as usize;
    let all: Vec<T> = items.collect();
    let total = all.len();
    let take = if count < 0 {
        usize::MAX
    } else {
        count as usize
    };
    let list: Vec<Value> = all
        .into_iter()
        .skip(offset)
        .take(take)
        .map(|t| show(t, verbose))
        .collect();
    json!({ "totalCount": total, key: list })
}

fn valid_filter(f: &str) -> bool {
    if f.is_empty() || f.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = f.split('/').collect();
    let n = levels.len();
    levels.iter().enumerate().all(|(i, l)| {
        (*l == "#" && i == n - 1) || *l == "+" || (!l.contains('#') && !l.contains('+'))
    })
}

fn one(
    m: &mut Model,
    command: &str,
    c: &Map<String, Value>,
    hash: &dyn Fn(&str) -> Result<String, String>,
    kick: &mut Vec<String>,
) -> Reply {
    let lower = command.to_ascii_lowercase();
    let lower = lower.as_str();
    if let Some(r) = defaults(m, lower, c) {
        return r;
    }
    type Area = fn(
        &mut Model,
        &str,
        &Map<String, Value>,
        &dyn Fn(&str) -> Result<String, String>,
        &mut Vec<String>,
    ) -> Reply;
    let areas: [(&[&str], Area); 4] = [
        (clients::NAMES, clients::run),
        (groups::NAMES, groups::run),
        (roles::NAMES, roles::run),
        (keys::NAMES, keys::run),
    ];
    match areas.iter().find(|(names, _)| names.contains(&lower)) {
        Some((_, run)) => run(m, lower, c, hash, kick),
        None => Err("Unknown command"),
    }
}

/// `setDefaultACLAccess`, `getDefaultACLAccess`.
fn defaults(m: &mut Model, lower: &str, c: &Map<String, Value>) -> Option<Reply> {
    if lower != "setdefaultaclaccess" && lower != "getdefaultaclaccess" {
        return None;
    }
    Some(default_access(m, lower, c))
}

fn default_access(m: &mut Model, lower: &str, c: &Map<String, Value>) -> Reply {
    match lower {
        "setdefaultaclaccess" => {
            let Some(list) = c.get("acls").and_then(Value::as_array) else {
                return Err("Missing/invalid actions array");
            };
            for a in list {
                // `allow` (a boolean) is the plugin's field; mosquitto_ctrl 2.0.11 (Debian 12's)
                // sends `"access": "allow"|"deny"` instead (fixed in 2.0.12): both are taken.
                let allow = a.get("allow").and_then(Value::as_bool).or_else(|| {
                    match a.get("access").and_then(Value::as_str) {
                        Some(v) if v.eq_ignore_ascii_case("allow") => Some(true),
                        Some(v) if v.eq_ignore_ascii_case("deny") => Some(false),
                        _ => None,
                    }
                });
                let (Some(t), Some(allow)) = (a.get("acltype").and_then(Value::as_str), allow)
                else {
                    continue;
                };
                let d = &mut m.default_access;
                match t.to_ascii_lowercase().as_str() {
                    "publishclientsend" => d.publish_client_send = allow,
                    "publishclientreceive" => d.publish_client_receive = allow,
                    "subscribe" => d.subscribe = allow,
                    "unsubscribe" => d.unsubscribe = allow,
                    _ => {}
                }
            }
            Ok(None)
        }
        "getdefaultaclaccess" => {
            let d = m.default_access;
            Ok(Some(json!({"acls": [
                {"acltype": "publishClientSend", "allow": d.publish_client_send},
                {"acltype": "publishClientReceive", "allow": d.publish_client_receive},
                {"acltype": "subscribe", "allow": d.subscribe},
                {"acltype": "unsubscribe", "allow": d.unsubscribe},
            ]})))
        }
        _ => Err("Unknown command"),
    }
}

/// Adds `name` to an attachment list with the command's `priority` (default -1), kept highest
/// first; or removes it. `already`: the error for adding what is there.
fn attach(
    list: &mut Vec<Attached>,
    name: &str,
    add: bool,
    c: &Map<String, Value>,
    already: Option<&'static str>,
) -> Result<(), &'static str> {
    if !add {
        list.retain(|a| a.name != name);
        return Ok(());
    }
    if let Some(e) = already.filter(|_| list.iter().any(|a| a.name == name)) {
        return Err(e);
    }
    list.push(Attached {
        name: name.to_string(),
        priority: int(c, "priority", -1),
    });
    sort_attached(list);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_hash(p: &str) -> Result<String, String> {
        Ok(format!("h:{p}"))
    }

    fn go(m: &mut Model, cmds: Value) -> Outcome {
        run(m, cmds.as_array().unwrap(), &fake_hash)
    }

    #[test]
    fn clients_groups_roles_round_trip() {
        let mut m = Model::default();
        let o = go(
            &mut m,
            json!([
                {"command": "createRole", "rolename": "r1"},
                {"command": "addRoleACL", "rolename": "r1", "acltype": "publishClientSend", "topic": "a/#", "allow": true, "priority": 3},
                {"command": "createGroup", "groupname": "g1", "roles": [{"rolename": "r1"}]},
                {"command": "createClient", "username": "u1", "password": "p", "correlationData": "x"},
                {"command": "addGroupClient", "groupname": "g1", "username": "u1"},
                {"command": "getClient", "username": "u1"},
                {"command": "getGroup", "groupname": "g1"},
                {"command": "createClient", "username": "u1"},
                {"command": "addRoleACL", "rolename": "r1", "acltype": "bogus", "topic": "a"},
                {"command": "addRoleACL", "rolename": "r1", "acltype": "subscribePattern", "topic": "a/#/b"},
                {"command": "nope"},
            ]),
        );
        assert!(o.changed);
        let r = &o.responses;
        assert_eq!(
            r[3],
            json!({"command": "createClient", "correlationData": "x"})
        );
        assert_eq!(r[5]["data"]["client"]["groups"][0]["groupname"], "g1");
        assert_eq!(r[6]["data"]["group"]["clients"][0]["username"], "u1");
        assert_eq!(r[7]["error"], "Client already exists");
        assert_eq!(r[8]["error"], "Unknown acltype");
        assert_eq!(r[9]["error"], "Invalid ACL topic");
        assert_eq!(r[10]["error"], "Unknown command");
        assert_eq!(m.clients["u1"].password.as_deref(), Some("h:p"));
    }

    #[test]
    fn every_collection_is_bounded() {
        let mut m = Model::default();
        for i in 0..MAX_ROLES {
            m.roles.insert(format!("r{i}"), Role::default());
        }
        let o = go(
            &mut m,
            json!([{"command": "createRole", "rolename": "one-more"}]),
        );
        assert_eq!(o.responses[0]["error"], "Too many roles (at most 1000)");
        let acls: Vec<Value> = (0..=MAX_ENTRIES)
            .map(|i| json!({"acltype": "publishClientSend", "topic": format!("t/{i}"), "allow": true}))
            .collect();
        let o = go(
            &mut m,
            json!([{"command": "modifyRole", "rolename": "r1", "acls": acls}]),
        );
        assert_eq!(
            o.responses[0]["error"],
            "Too many ACL entries in this role (at most 1000)"
        );
        for i in 0..MAX_CLIENTS {
            m.clients.insert(format!("c{i}"), Client::default());
        }
        let o = go(
            &mut m,
            json!([{"command": "createClient", "username": "one-more"}]),
        );
        assert_eq!(o.responses[0]["error"], "Too many clients (at most 10000)");
    }

    #[test]
    fn a_failed_command_changes_nothing_and_lists_page() {
        let mut m = Model::default();
        go(
            &mut m,
            json!([{"command": "createClient", "username": "a"}, {"command": "createClient", "username": "b"}, {"command": "createClient", "username": "c"}]),
        );
        let before = m.clone();
        let o = go(
            &mut m,
            json!([{"command": "createClient", "username": "d", "roles": [{"rolename": "missing"}]}]),
        );
        assert_eq!(o.responses[0]["error"], "Role not found");
        assert!(!o.changed);
        assert_eq!(m, before);
        let o = go(
            &mut m,
            json!([{"command": "listClients", "count": 1, "offset": 1}]),
        );
        assert_eq!(
            o.responses[0]["data"],
            json!({"totalCount": 3, "clients": ["b"]})
        );
        let o = go(
            &mut m,
            json!([{"command": "disableClient", "username": "b"}]),
        );
        assert_eq!(o.kick, vec!["b".to_string()]);
    }
}
