//! Roles and their ACL entries.

use serde_json::{json, Map, Value};

use super::*;

/// The commands this file runs (lower case).
pub(super) const NAMES: &[&str] = &[
    "createrole",
    "getrole",
    "listroles",
    "modifyrole",
    "deleterole",
    "addroleacl",
    "removeroleacl",
];

pub(super) fn run(
    m: &mut Model,
    lower: &str,
    c: &Map<String, Value>,
    _hash: &dyn Fn(&str) -> Result<String, String>,
    _kick: &mut Vec<String>,
) -> Reply {
    match lower {
        "createrole" => {
            let rolename = need(c, "rolename", "Invalid/missing rolename")?;
            let (textname, textdescription) = texts(c)?;
            if m.roles.contains_key(rolename) {
                return Err("Role already exists");
            }
            if m.roles.len() >= MAX_ROLES {
                return Err("Too many roles (at most 1000)");
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
            if !m.roles.contains_key(rolename) {
                return Err("Role not found");
            }
            let (textname, textdescription) = texts(c)?;
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
            if !m.roles.contains_key(rolename) {
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
            if r.acls.len() >= MAX_ENTRIES {
                return Err("Too many ACL entries in this role (at most 1000)");
            }
            r.acls.push(e);
            sort_entries(&mut r.acls);
            Ok(None)
        }
        "removeroleacl" => {
            let rolename = need(c, "rolename", "Invalid/missing rolename")?;
            if !m.roles.contains_key(rolename) {
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
        _ => Err("Unknown command"),
    }
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

/// One ACL entry from a command's `acltype`, `topic`, `priority` (default 0), `allow` (default
/// false), checked as mosquitto checks them.
pub(super) fn entry(c: &Map<String, Value>) -> Result<Entry, &'static str> {
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
    if list.len() > MAX_ENTRIES {
        return Err("Too many ACL entries in this role (at most 1000)");
    }
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
