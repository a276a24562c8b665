//! The environment layer: every setting has one variable, `OUTPOST_` and its TOML path in capitals
//! with `_` for `.` (`mqtt.max_inflight` is `OUTPOST_MQTT_MAX_INFLIGHT`), derived from the
//! defaults so no setting can lack one or have two.

use super::ConfigError;

/// Sets every key of `defaults` (recursively) that has an environment variable in `env`.
pub(super) fn apply_env(
    target: &mut toml::Table,
    defaults: &toml::Table,
    prefix: &str,
    path: &str,
    env: &[(String, String)],
) -> Result<(), ConfigError> {
    for (key, default) in defaults {
        let name = format!("{prefix}_{}", key.to_ascii_uppercase());
        let dotted = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if let toml::Value::Table(sub) = default {
            let entry = target
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                apply_env(t, sub, &name, &dotted, env)?;
            }
            continue;
        }
        let Some((_, raw)) = env.iter().find(|(k, _)| *k == name) else {
            continue;
        };
        let invalid = |expected: &str| ConfigError::Env {
            var: name.clone(),
            key: dotted.clone(),
            message: format!("{raw:?} is not {expected}"),
        };
        let value = match default {
            toml::Value::String(_) => toml::Value::String(raw.clone()),
            toml::Value::Integer(_) => {
                toml::Value::Integer(raw.trim().parse().map_err(|_| invalid("an integer"))?)
            }
            toml::Value::Float(_) => {
                toml::Value::Float(raw.trim().parse().map_err(|_| invalid("a number"))?)
            }
            toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
                "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
                _ => return Err(invalid("true or false")),
            },
            toml::Value::Array(_) => {
                let t: toml::Table = toml::from_str(&format!("v = {raw}"))
                    .map_err(|_| invalid("a TOML array such as [\"a\", \"b\"]"))?;
                t.get("v").cloned().ok_or_else(|| invalid("an array"))?
            }
            _ => continue,
        };
        target.insert(key.clone(), value);
    }
    Ok(())
}

/// Names the flags' environment variables had before every setting had one name (0.1 betas):
/// refused with the name to use, rather than ignored.
const RETIRED: [(&str, &str, &str); 3] = [
    (
        "OUTPOST_WS_LISTEN",
        "OUTPOST_WEBSOCKET_LISTEN",
        "websocket.listen",
    ),
    (
        "OUTPOST_SYS_INTERVAL",
        "OUTPOST_MQTT_SYS_INTERVAL",
        "mqtt.sys_interval",
    ),
    (
        "OUTPOST_PUBLIC_URL",
        "OUTPOST_TOPICS_PUBLIC_URL",
        "topics.public_url",
    ),
];

/// Refuses a retired variable name.
pub(super) fn check_retired(env: &[(String, String)]) -> Result<(), ConfigError> {
    for (old, new, key) in RETIRED {
        if env.iter().any(|(k, _)| k == old) {
            return Err(ConfigError::Env {
                var: old.to_string(),
                key: key.to_string(),
                message: format!("the variable is now named {new}"),
            });
        }
    }
    Ok(())
}
