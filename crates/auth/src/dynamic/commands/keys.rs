//! Access keys made for clients (Outpost's own commands): HTTP callers sign with them and act
//! as the client.

use serde_json::{json, Map, Value};

use super::*;

/// The commands this file runs (lower case).
pub(super) const NAMES: &[&str] = &["createaccesskey", "deleteaccesskey", "listaccesskeys"];

pub(super) fn run(
    m: &mut Model,
    lower: &str,
    c: &Map<String, Value>,
    _hash: &dyn Fn(&str) -> Result<String, String>,
    _kick: &mut Vec<String>,
) -> Reply {
    match lower {
        "createaccesskey" => {
            let username = need(c, "username", "Invalid/missing username")?;
            if !m.clients.contains_key(username) {
                return Err("Client not found");
            }
            if m.access_keys.len() >= MAX_CLIENTS {
                return Err("Too many access keys (at most 10000)");
            }
            let (id, secret) = new_key_pair();
            m.access_keys.insert(
                id.clone(),
                super::super::model::Key {
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
