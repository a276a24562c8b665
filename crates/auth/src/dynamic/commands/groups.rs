//! Groups: clients sharing roles, and the anonymous group.

use serde_json::{json, Map, Value};

use super::*;

/// The commands this file runs (lower case).
pub(super) const NAMES: &[&str] = &[
    "addgroupclient",
    "removegroupclient",
    "creategroup",
    "deletegroup",
    "getgroup",
    "listgroups",
    "modifygroup",
    "addgrouprole",
    "removegrouprole",
    "setanonymousgroup",
    "getanonymousgroup",
];

pub(super) fn run(
    m: &mut Model,
    lower: &str,
    c: &Map<String, Value>,
    _hash: &dyn Fn(&str) -> Result<String, String>,
    kick: &mut Vec<String>,
) -> Reply {
    match lower {
        "addgroupclient" | "removegroupclient" => {
            let username = need(c, "username", "Invalid/missing username")?;
            let groupname = need(c, "groupname", "Invalid/missing groupname")?;
            if !m.clients.contains_key(username) {
                return Err("Client not found");
            }
            if !m.groups.contains_key(groupname) {
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
            let (textname, textdescription) = texts(c)?;
            if m.groups.contains_key(groupname) {
                return Err("Group already exists");
            }
            if m.groups.len() >= MAX_GROUPS {
                return Err("Too many groups (at most 1000)");
            }
            let roles = role_list(c, m)?;
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
            if !m.groups.contains_key(groupname) {
                return Err("Group not found");
            }
            let (textname, textdescription) = texts(c)?;
            let roles = role_list(c, m)?;
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
            if !m.groups.contains_key(groupname) {
                return Err("Group not found");
            }
            if !m.roles.contains_key(rolename) {
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
            if !m.groups.contains_key(groupname) {
                return Err("Group not found");
            }
            m.anonymous_group = Some(groupname.to_string());
            Ok(None)
        }
        "getanonymousgroup" => Ok(Some(json!({
            "group": { "groupname": m.anonymous_group.clone().unwrap_or_default() }
        }))),
        _ => Err("Unknown command"),
    }
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
