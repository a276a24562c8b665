use std::path::PathBuf;
use std::time::Duration;

use super::*;

#[test]
fn bridges_are_read_and_their_secrets_not_printed() {
    let c: Config = toml::from_str(
        "[[bridges]]\nname = \"cloud\"\naddress = \"h:8883\"\npassword = \"p4ss\"\n\
         [[bridges.out]]\nfilter = \"a/#\"\n\
         [[bridges]]\nname = \"aws\"\nkind = \"aws\"\nsecret_access_key = \"s3cret\"\n",
    )
    .unwrap();
    assert_eq!(c.bridges.len(), 2);
    assert_eq!(c.bridges[0].out[0].filter, "a/#");
    assert_eq!(c.bridges[0].keep_alive, 30, "defaults fill the rest");
    let printed = c.to_toml();
    assert!(
        !printed.contains("p4ss") && !printed.contains("s3cret"),
        "{printed}"
    );
    assert!(printed.contains("(hidden)"));
    assert!(toml::from_str::<Config>("[[bridges]]\nname = \"x\"\nbogus = 1\n").is_err());
}

#[test]
fn file_overrides_defaults_and_keeps_the_rest() {
    let c: Config =
        toml::from_str("data_dir = \"/var/lib/outpost\"\n[mqtt]\nlisten = \"127.0.0.1:2883\"\n")
            .unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/outpost"));
    assert_eq!(c.mqtt.listen, "127.0.0.1:2883".parse().unwrap());
    assert_eq!(c.mqtt.max_packet_size, 16 * 1024 * 1024);
    assert_eq!(c.websocket.path, "/mqtt");
    assert_eq!(c.http.listen.port(), 9324);
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_key_has_an_environment_variable() {
    let c = Config::load(
        None,
        &env(&[
            ("OUTPOST_MQTT_MAX_INFLIGHT", "32"),
            ("OUTPOST_AUTH_ALLOW_ANONYMOUS", "true"),
            ("OUTPOST_HTTP_REGION", "eu-west-1"),
            ("OUTPOST_DATA_DIR", "/tmp/x"),
            ("OUTPOST_MQTT_V311_SESSION_EXPIRY", "60"),
            ("OUTPOST_UNRELATED", "1"),
        ]),
    )
    .unwrap();
    assert_eq!(c.mqtt.max_inflight, 32);
    assert!(c.auth.allow_anonymous);
    assert_eq!(c.http.region, "eu-west-1");
    assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(c.mqtt.v311_session_expiry, Some(60));
    let e = Config::load(None, &env(&[("OUTPOST_MQTT_MAX_INFLIGHT", "many")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("OUTPOST_MQTT_MAX_INFLIGHT") && e.contains("mqtt.max_inflight"),
        "{e}"
    );
    let e = Config::load(None, &env(&[("OUTPOST_MQTT_MAX_INFLIGHT", "70000")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_inflight"), "{e}");
}

#[test]
fn environment_overrides_the_file() {
    let dir = std::env::temp_dir().join(format!("outpost-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.toml");
    std::fs::write(&file, "[mqtt]\nmax_inflight = 10\nmax_subscriptions = 7\n").unwrap();
    let c = Config::load(Some(&file), &env(&[("OUTPOST_MQTT_MAX_INFLIGHT", "20")])).unwrap();
    assert_eq!((c.mqtt.max_inflight, c.mqtt.max_subscriptions), (20, 7));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unknown_keys_are_errors() {
    assert!(toml::from_str::<Config>("[mqtt]\nlisten_port = 1\n").is_err());
}

#[test]
fn sync_policies() {
    let parse = |s: &str| s.parse::<SyncSetting>().map(SyncSetting::policy);
    use outpost_store::SyncPolicy;
    assert_eq!(parse("always").unwrap(), SyncPolicy::Always);
    assert_eq!(parse("never").unwrap(), SyncPolicy::Never);
    assert_eq!(
        parse("interval:50").unwrap(),
        SyncPolicy::Interval(Duration::from_millis(50))
    );
    assert_eq!(
        parse("interval:50ms").unwrap(),
        SyncPolicy::Interval(Duration::from_millis(50))
    );
    assert!(parse("interval:0").is_err());
    assert!(parse("sometimes").unwrap_err().contains("store.sync"));
}

#[test]
fn enum_settings_are_refused_where_they_are_read() {
    for (toml_text, key) in [
        ("log_format = \"xml\"\n", "log_format"),
        ("[store]\nsync = \"sometimes\"\n", "store.sync"),
        ("[tls]\nmqtt_client_certs = \"maybe\"\n", "maybe"),
        ("[tls]\nidentity_from = \"ou\"\n", "ou"),
    ] {
        let e = toml::from_str::<Config>(toml_text).unwrap_err().to_string();
        assert!(e.contains(key), "{toml_text}: {e}");
    }
    let e = Config::load(None, &env(&[("OUTPOST_LOG_FORMAT", "xml")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("xml"), "{e}");
}

#[test]
fn retired_variable_names_are_refused_with_the_one_to_use() {
    for (old, new) in [
        ("OUTPOST_WS_LISTEN", "OUTPOST_WEBSOCKET_LISTEN"),
        ("OUTPOST_SYS_INTERVAL", "OUTPOST_MQTT_SYS_INTERVAL"),
        ("OUTPOST_PUBLIC_URL", "OUTPOST_TOPICS_PUBLIC_URL"),
    ] {
        let e = Config::load(None, &env(&[(old, "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains(old) && e.contains(new), "{e}");
    }
}

#[test]
fn every_setting_is_in_the_documented_table() {
    let table = include_str!("../../../docs/configuration.md");
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    let mut missing = Vec::new();
    fn walk(t: &toml::Table, prefix: &str, table: &str, missing: &mut Vec<String>) {
        for (k, v) in t {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(sub) => walk(sub, &path, table, missing),
                // Bridges are tables in the file only (docs/bridges.md).
                _ if path == "bridges" => {}
                _ => {
                    let var = format!("OUTPOST_{}", path.replace('.', "_").to_ascii_uppercase());
                    if !table.contains(&format!("`{path}`")) || !table.contains(&format!("`{var}`"))
                    {
                        missing.push(path);
                    }
                }
            }
        }
    }
    walk(&defaults, "", table, &mut missing);
    assert!(
        missing.is_empty(),
        "settings missing from docs/configuration.md: {missing:?}"
    );
}

#[test]
fn the_example_file_is_the_defaults() {
    let example: Config = toml::from_str(include_str!("../../../outpost.example.toml")).unwrap();
    assert_eq!(example, Config::default());
    assert!(example.validate().is_ok());
}

#[test]
fn zero_limits_are_refused_by_name() {
    let c: Config = toml::from_str("[mqtt]\nmax_topic_levels = 0\n").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("mqtt.max_topic_levels"), "{e}");
}

#[test]
fn defaults_round_trip_through_toml() {
    let c = Config::default();
    assert_eq!(toml::from_str::<Config>(&c.to_toml()).unwrap(), c);
}
