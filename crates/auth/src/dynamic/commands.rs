//! The commands of mosquitto's `$CONTROL/dynamic-security/v1` topic, run against the model:
//! the same names, fields, defaults, answers and error strings as the plugin (mosquitto 2.0), so
//! `mosquitto_ctrl dynsec` and scripts written for mosquitto work unchanged. Outpost adds three
//! commands for HTTP callers: `createAccessKey`, `deleteAccessKey` and `listAccessKeys`.

use serde_json::{json, Map, Value};

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

/// A client as `getClient` and a verbose `listClients` show it.
pub fn client_json(username: &str, c: &Client) -> Value {
    let mut m = Map::new();
    m.insert("username".into(), json!(username));
    put_text(&mut m, "clientid", &c.clientid);
    put_text(&mut m, "textname", &c.textname);
    put_text(&mut m, "textdescription", &c.textdescription);
    if c.disabled {
        m.insert("disabled".into(), json!(true));
    }
    m.insert("roles".into(), attached_json(&c.roles, "rolename"));
    m.insert("groups".into(), attached_json(&c.groups, "groupname"));
    Value::Object(m)
}

/// A group as `getGroup` shows it (its clients found through the clients' memberships).
pub fn group_json(model: &Model, name: &str, g: &Group) -> Value {
    let mut m = Map::new();
    m.insert("groupname".into(), json!(name));
    put_text(&mut m, "textname", &g.textname);
    put_text(&mut m, "textdescription", &g.textdescription);
    m.insert("roles".into(), attached_json(&g.roles, "rolename"));
    let clients: Vec<Value> = model
        .clients
        .iter()
        .filter(|(_, c)| c.groups.iter().any(|a| a.name == name))
        .map(|(u, _)| json!({ "username": u }))
        .collect();
    m.insert("clients".into(), Value::Array(clients));
    Value::Object(m)
}

/// A role as `getRole` shows it.
pub fn role_json(name: &str, r: &Role) -> Value {
    let mut m = Map::new();
    m.insert("rolename".into(), json!(name));
    put_text(&mut m, "textname", &r.textname);
    put_text(&mut m, "textdescription", &r.textdescription);
    m.insert(
        "acls".into(),
        Value::Array(
            r.acls
                .iter()
                .map(|e| json!({"acltype": e.acltype, "topic": e.topic, "priority": e.priority, "allow": e.allow}))
                .collect(),
        ),
    );
    Value::Object(m)
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
    let roles: Vec<String> = m.roles.keys().cloned().collect();
    let groups: Vec<String> = m.groups.keys().cloned().collect();
    let role_exists = |n: &str| roles.iter().any(|r| r == n);
    let group_exists = |n: &str| groups.iter().any(|g| g == n);
    let hashed = |p: &str| hash(p).map_err(|_| "Internal error");
    match lower.as_str() {
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
        "createclient" => {
            let username = need(c, "username", "Invalid/missing username")?;
            let password = optional(c, "password", "Invalid/missing password")?;
            let clientid = optional(c, "clientid", "Invalid/missing client id")?;
            let textname = optional(c, "textname", "Invalid/missing textname")?;
            let textdescription =
                optional(c, "textdescription", "Invalid/missing textdescription")?;
            if m.clients.contains_key(username) {
                return Err("Client already exists");
            }
            let roles = attachments(
                c,
                "roles",
                "rolename",
                &role_exists,
                (
                    "Role not found",
                    "'roles' not an array or missing/invalid rolename",
                ),
            )?;
            let groups = attachments(
                c,
                "groups",
                "groupname",
                &group_exists,
                (
                    "Group not found",
                    "'groups' not an array or missing/invalid groupname",
                ),
            )?;
            let client = Client {
                clientid: clientid.filter(|s| !s.is_empty()).map(str::to_string),
                password: password.map(hashed).transpose()?,
                textname: text(textname),
                textdescription: text(textdescription),
                disabled: false,
                roles: roles.unwrap_or_default(),
                groups: groups.unwrap_or_default(),
            };
            m.clients.insert(username.to_string(), client);
            Ok(None)
        }
        "deleteclient" => {
            let username = need(c, "username", "Invalid/missing username")?;
            if m.clients.remove(username).is_none() {
                return Err("Client not found");
            }
            m.access_keys.retain(|_, k| k.username != username);
            kick.push(username.to_string());
            Ok(None)
        }
        "enableclient" | "disableclient" => {
            let username = need(c, "username", "Invalid/missing username")?;
            let client = m.clients.get_mut(username).ok_or("Client not found")?;
            client.disabled = lower == "disableclient";
            if client.disabled {
                kick.push(username.to_string());
            }
            Ok(None)
        }
        "setclientid" => {
            let username = need(c, "username", "Invalid/missing username")?;
            let clientid = optional(c, "clientid", "Invalid/missing client ID")?;
            let client = m.clients.get_mut(username).ok_or("Client not found")?;
            client.clientid = clientid.filter(|s| !s.is_empty()).map(str::to_string);
            kick.push(username.to_string());
            Ok(None)
        }
        "setclientpassword" => {
            let username = need(c, "username", "Invalid/missing username")?;
            let password = match c.get("password") {
                Some(Value::String(s)) => s.as_str(),
                _ => return Err("Invalid/missing password"),
            };
            if password.is_empty() {
                return Err("Empty password is not allowed");
            }
            if !m.clients.contains_key(username) {
                return Err("Client not found");
            }
            let h = hashed(password)?;
            if let Some(client) = m.clients.get_mut(username) {
                client.password = Some(h);
            }
            kick.push(username.to_string());
            Ok(None)
        }
        "modifyclient" => {
            let username = need(c, "username", "Invalid/missing username")?;
            if !m.clients.contains_key(username) {
                return Err("Client not found");
            }
            let clientid = optional(c, "clientid", "Invalid/missing client id")?;
            let password = optional(c, "password", "Invalid/missing password")?;
            let textname = optional(c, "textname", "Invalid/missing textname")?;
            let textdescription =
                optional(c, "textdescription", "Invalid/missing textdescription")?;
            let roles = attachments(
                c,
                "roles",
                "rolename",
                &role_exists,
                (
                    "Role not found",
                    "'roles' not an array or missing/invalid rolename",
                ),
            )?;
            let groups = attachments(
                c,
                "groups",
                "groupname",
                &group_exists,
                (
                    "Group not found",
                    "'groups' not an array or missing/invalid groupname",
                ),
            )?;
            let password = password.map(hashed).transpose()?;
            let client = m.clients.get_mut(username).ok_or("Client not found")?;
            if let Some(id) = clientid {
                client.clientid = (!id.is_empty()).then(|| id.to_string());
            }
            if password.is_some() {
                client.password = password;
            }
            if let Some(t) = textname {
                client.textname = Some(t.to_string());
            }
            if let Some(t) = textdescription {
                client.textdescription = Some(t.to_string());
            }
            if let Some(r) = roles {
                client.roles = r;
            }
            if let Some(g) = groups {
                client.groups = g;
            }
            kick.push(username.to_string());
            Ok(None)
        }
        "getclient" => {
            let username = need(c, "username", "Invalid/missing username")?;
            let client = m.clients.get(username).ok_or("Client not found")?;
            Ok(Some(json!({ "client": client_json(username, client) })))
        }
        "listclients" => Ok(Some(page(
            c,
            m.clients.iter(),
            |(u, cl), verbose| {
                if verbose {
                    client_json(u, cl)
                } else {
                    json!(u)
                }
            },
            "clients",
        ))),
        "addclientrole" | "removeclientrole" => {
            let username = need(c, "username", "Invalid/missing username")?;
            let rolename = need(c, "rolename", "Invalid/missing rolename")?;
            if !m.clients.contains_key(username) {
                return Err("Client not found");
            }
            if !role_exists(rolename) {
                return Err("Role not found");
            }
            let client = m.clients.get_mut(username).ok_or("Client not found")?;
            // Adding a role a client has sets its priority (mosquitto's answer is success too).
            client.roles.retain(|a| a.name != rolename);
            attach(
                &mut client.roles,
                rolename,
                lower == "addclientrole",
                c,
                None,
            )?;
            Ok(None)
        }
        "addgroupclient" | "removegroupclient" => {
            let username = need(c, "username", "Invalid/missing username")?;
            let groupname = need(c, "groupname", "Invalid/missing groupname")?;
            if !m.clients.contains_key(username) {
                return Err("Client not found");
            }
            if !group_exists(groupname) {
                return Err("Group not found");
            }
            let client = m.clients.get_mut(username).ok_or("Client not found")?;
            let add = lower == "addgroupclient";
            attach(
                &mut client.groups,
                groupname,
                add,
                c,
                Some("Client is already in this group"),
            )?;
            Ok(None)
        }
        "creategroup" => {
            let groupname = need(c, "groupname", "Invalid/missing groupname")?;
            let textname = optional(c, "textname", "Invalid/missing textname")?;
            let textdescription =
                optional(c, "textdescription", "Invalid/missing textdescription")?;
            if m.groups.contains_key(groupname) {
                return Err("Group already exists");
            }
            let roles = attachments(
                c,
                "roles",
                "rolename",
                &role_exists,
                (
                    "Role not found",
                    "'roles' not an array or missing/invalid rolename",
                ),
            )?;
            m.groups.insert(
                groupname.to_string(),
                Group {
                    textname: text(textname),
                    textdescription: text(textdescription),
                    roles: roles.unwrap_or_default(),
                },
            );
            Ok(None)
        }
        "deletegroup" => {
            let groupname = need(c, "groupname", "Invalid/missing groupname")?;
            if m.groups.remove(groupname).is_none() {
                return Err("Group not found");
            }
            for (u, client) in m.clients.iter_mut() {
                if client.groups.iter().any(|a| a.name == groupname) {
                    client.groups.retain(|a| a.name != groupname);
                    kick.push(u.clone());
                }
            }
            if m.anonymous_group.as_deref() == Some(groupname) {
                m.anonymous_group = None;
            }
            Ok(None)
        }
        "getgroup" => {
            let groupname = need(c, "groupname", "Invalid/missing groupname")?;
            let g = m.groups.get(groupname).ok_or("Group not found")?;
            Ok(Some(json!({ "group": group_json(m, groupname, g) })))
        }
        "listgroups" => Ok(Some(page(
            c,
            m.groups.iter(),
            |(n, g), verbose| {
                if verbose {
                    group_json(m, n, g)
                } else {
                    json!(n)
                }
            },
            "groups",
        ))),
        "modifygroup" => {
            let groupname = need(c, "groupname", "Invalid/missing groupname")?;
            if !group_exists(groupname) {
                return Err("Group not found");
            }
            let textname = optional(c, "textname", "Invalid/missing textname")?;
            let textdescription =
                optional(c, "textdescription", "Invalid/missing textdescription")?;
            let roles = attachments(
                c,
                "roles",
                "rolename",
                &role_exists,
                (
                    "Role not found",
                    "'roles' not an array or missing/invalid rolename",
                ),
            )?;
            let clients: Option<Vec<(String, i64)>> = match c.get("clients") {
                None => None,
                Some(Value::Array(list)) => {
                    let mut out = Vec::new();
                    for item in list {
                        let Some(u) = item.get("username").and_then(Value::as_str) else {
                            return Err("'clients' not an array or missing/invalid username");
                        };
                        if !m.clients.contains_key(u) {
                            return Err("Client not found");
                        }
                        out.push((
                            u.to_string(),
                            item.get("priority").and_then(Value::as_i64).unwrap_or(-1),
                        ));
                    }
                    Some(out)
                }
                Some(_) => return Err("'clients' not an array or missing/invalid username"),
            };
            let g = m.groups.get_mut(groupname).ok_or("Group not found")?;
            if let Some(t) = textname {
                g.textname = Some(t.to_string());
            }
            if let Some(t) = textdescription {
                g.textdescription = Some(t.to_string());
            }
            if let Some(r) = roles {
                g.roles = r;
            }
            if let Some(list) = clients {
                for (u, client) in m.clients.iter_mut() {
                    let was = client.groups.iter().any(|a| a.name == groupname);
                    client.groups.retain(|a| a.name != groupname);
                    if let Some((_, p)) = list.iter().find(|(n, _)| n == u) {
                        client.groups.push(Attached {
                            name: groupname.to_string(),
                            priority: *p,
                        });
                        sort_attached(&mut client.groups);
                    } else if was {
                        kick.push(u.clone());
                    }
                }
            }
            Ok(None)
        }
        "addgrouprole" | "removegrouprole" => {
            let groupname = need(c, "groupname", "Invalid/missing groupname")?;
            let rolename = need(c, "rolename", "Invalid/missing rolename")?;
            if !group_exists(groupname) {
                return Err("Group not found");
            }
            if !role_exists(rolename) {
                return Err("Role not found");
            }
            let g = m.groups.get_mut(groupname).ok_or("Group not found")?;
            let add = lower == "addgrouprole";
            attach(
                &mut g.roles,
                rolename,
                add,
                c,
                Some("Group is already in this role"),
            )?;
            Ok(None)
        }
        "setanonymousgroup" => {
            let groupname = need(c, "groupname", "Invalid/missing groupname")?;
            if !group_exists(groupname) {
                return Err("Group not found");
            }
            m.anonymous_group = Some(groupname.to_string());
            Ok(None)
        }
        "getanonymousgroup" => Ok(Some(json!({
            "group": { "groupname": m.anonymous_group.clone().unwrap_or_default() }
        }))),
        "createrole" => {
            let rolename = need(c, "rolename", "Invalid/missing rolename")?;
            let textname = optional(c, "textname", "Invalid/missing textname")?;
            let textdescription =
                optional(c, "textdescription", "Invalid/missing textdescription")?;
            if m.roles.contains_key(rolename) {
                return Err("Role already exists");
            }
            let acls = entries(c)?.unwrap_or_default();
            m.roles.insert(
                rolename.to_string(),
                Role {
                    textname: text(textname),
                    textdescription: text(textdescription),
                    acls,
                },
            );
            Ok(None)
        }
        "getrole" => {
            let rolename = need(c, "rolename", "Invalid/missing rolename")?;
            let r = m.roles.get(rolename).ok_or("Role not found")?;
            Ok(Some(json!({ "role": role_json(rolename, r) })))
        }
        "listroles" => Ok(Some(page(
            c,
            m.roles.iter(),
            |(n, r), verbose| if verbose { role_json(n, r) } else { json!(n) },
            "roles",
        ))),
        "modifyrole" => {
            let rolename = need(c, "rolename", "Invalid/missing rolename")?;
            if !role_exists(rolename) {
                return Err("Role not found");
            }
            let textname = optional(c, "textname", "Invalid/missing textname")?;
            let textdescription =
                optional(c, "textdescription", "Invalid/missing textdescription")?;
            let acls = entries(c)?;
            let r = m.roles.get_mut(rolename).ok_or("Role not found")?;
            if let Some(t) = textname {
                r.textname = Some(t.to_string());
            }
            if let Some(t) = textdescription {
                r.textdescription = Some(t.to_string());
            }
            if let Some(a) = acls {
                r.acls = a;
            }
            Ok(None)
        }
        "deleterole" => {
            let rolename = need(c, "rolename", "Invalid/missing rolename")?;
            if m.roles.remove(rolename).is_none() {
                return Err("Role not found");
            }
            for client in m.clients.values_mut() {
                client.roles.retain(|a| a.name != rolename);
            }
            for g in m.groups.values_mut() {
                g.roles.retain(|a| a.name != rolename);
            }
            Ok(None)
        }
        "addroleacl" => {
            let rolename = need(c, "rolename", "Invalid/missing rolename")?;
            if !role_exists(rolename) {
                return Err("Role not found");
            }
            let e = entry(c)?;
            let r = m.roles.get_mut(rolename).ok_or("Role not found")?;
            if r.acls
                .iter()
                .any(|x| x.acltype == e.acltype && x.topic == e.topic)
            {
                return Err("ACL with this topic already exists");
            }
            r.acls.push(e);
            sort_entries(&mut r.acls);
            Ok(None)
        }
        "removeroleacl" => {
            let rolename = need(c, "rolename", "Invalid/missing rolename")?;
            if !role_exists(rolename) {
                return Err("Role not found");
            }
            let t = need(c, "acltype", "Invalid/missing acltype")?;
            let t = acltype(t).ok_or("Unknown acltype")?;
            let topic = need(c, "topic", "Invalid/missing topic")?;
            if !t.contains(':') && !valid_filter(topic) {
                return Err("Invalid ACL topic");
            }
            let r = m.roles.get_mut(rolename).ok_or("Role not found")?;
            let n = r.acls.len();
            r.acls.retain(|x| !(x.acltype == t && x.topic == topic));
            if r.acls.len() == n {
                return Err("ACL not found");
            }
            Ok(None)
        }
        "createaccesskey" => {
            let username = need(c, "username", "Invalid/missing username")?;
            if !m.clients.contains_key(username) {
                return Err("Client not found");
            }
            let (id, secret) = new_key_pair();
            m.access_keys.insert(
                id.clone(),
                super::model::Key {
                    secret: secret.clone(),
                    username: username.to_string(),
                },
            );
            Ok(Some(json!({"accessKey": {
                "accessKeyId": id, "secretAccessKey": secret, "username": username
            }})))
        }
        "deleteaccesskey" => {
            let id = need(c, "accessKeyId", "Invalid/missing accessKeyId")?;
            if m.access_keys.remove(id).is_none() {
                return Err("Access key not found");
            }
            Ok(None)
        }
        "listaccesskeys" => {
            let username = optional(c, "username", "Invalid/missing username")?;
            let keys: Vec<Value> = m
                .access_keys
                .iter()
                .filter(|(_, k)| username.is_none_or(|u| k.username == u))
                .map(|(id, k)| json!({"accessKeyId": id, "username": k.username}))
                .collect();
            Ok(Some(
                json!({ "totalCount": keys.len(), "accessKeys": keys }),
            ))
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

/// One ACL entry from a command's `acltype`, `topic`, `priority` (default 0), `allow` (default
/// false), checked as mosquitto checks them.
fn entry(c: &Map<String, Value>) -> Result<Entry, &'static str> {
    let t = need(c, "acltype", "Invalid/missing acltype")?;
    let t = acltype(t).ok_or("Unknown acltype")?;
    let topic = need(c, "topic", "Invalid/missing topic")?;
    if !t.contains(':') && !valid_filter(topic) {
        return Err("Invalid ACL topic");
    }
    Ok(Entry {
        acltype: t,
        topic: topic.to_string(),
        priority: int(c, "priority", 0),
        allow: boolean(c, "allow", false),
    })
}

/// The `acls` array of `createRole` / `modifyRole`.
fn entries(c: &Map<String, Value>) -> Result<Option<Vec<Entry>>, &'static str> {
    let Some(v) = c.get("acls") else {
        return Ok(None);
    };
    let list = v.as_array().ok_or("Invalid/missing acls")?;
    let mut out: Vec<Entry> = Vec::new();
    for item in list {
        let obj = item.as_object().ok_or("Invalid/missing acls")?;
        let e = entry(obj)?;
        if !out
            .iter()
            .any(|x| x.acltype == e.acltype && x.topic == e.topic)
        {
            out.push(e);
        }
    }
    sort_entries(&mut out);
    Ok(Some(out))
}

/// A new access key: an id in AWS's shape (`AKIA` + 16 upper-case letters and digits) and a
/// 40-character secret, both from the OS's random source.
fn new_key_pair() -> (String, String) {
    use rand::Rng;
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::rng();
    let id: String = (0..16)
        .map(|_| UPPER[rng.random_range(0..UPPER.len())] as char)
        .collect();
    let secret: String = (0..40)
        .map(|_| SECRET[rng.random_range(0..SECRET.len())] as char)
        .collect();
    (format!("AKIA{id}"), secret)
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
