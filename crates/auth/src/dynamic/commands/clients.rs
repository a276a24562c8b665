//! Clients: the users dynamic security knows (username, password hash, pinned client id,
//! roles, groups, disabled), as mosquitto's `createClient` … `removeClientRole` edit them.

use serde_json::{json, Map, Value};

use super::*;

/// The commands this file runs (lower case).
pub(super) const NAMES: &[&str] = &[
    "createclient",
    "deleteclient",
    "enableclient",
    "disableclient",
    "setclientid",
    "setclientpassword",
    "modifyclient",
    "getclient",
    "listclients",
    "addclientrole",
    "removeclientrole",
];

pub(super) fn run(
    m: &mut Model,
    lower: &str,
    c: &Map<String, Value>,
    hash: &dyn Fn(&str) -> Result<String, String>,
    kick: &mut Vec<String>,
) -> Reply {
    let hashed = |p: &str| hash(p).map_err(|_| "Internal error");
    match lower {
        "createclient" => {
            let username = need(c, "username", "Invalid/missing username")?;
            let password = optional(c, "password", "Invalid/missing password")?;
            let clientid = optional(c, "clientid", "Invalid/missing client id")?;
            let (textname, textdescription) = texts(c)?;
            if m.clients.contains_key(username) {
                return Err("Client already exists");
            }
            if m.clients.len() >= MAX_CLIENTS {
                return Err("Too many clients (at most 10000)");
            }
            let roles = role_list(c, m)?;
            let groups = group_list(c, m)?;
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
            let (textname, textdescription) = texts(c)?;
            let roles = role_list(c, m)?;
            let groups = group_list(c, m)?;
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
            if !m.roles.contains_key(rolename) {
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
        _ => Err("Unknown command"),
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
