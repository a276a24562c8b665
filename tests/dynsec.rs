//! Dynamic security, driven by the tool mosquitto's users already have: Debian's
//! `mosquitto_ctrl dynsec`, command by command, against the real broker. Clients are raw MQTT
//! over loopback; what they may do is checked by what the broker answers them (PUBACK/SUBACK
//! reason codes, CONNACK, DISCONNECT). Also: the state survives `kill -9`, the ACL file and the
//! dynamic rules combine (a deny from either wins), only identities the ACL allows may send
//! commands, and access keys made by a command sign real aws CLI requests.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use outpost_codec::{QoS, ReasonCode, Version};
use support::raw::{Got, Raw};
use support::{add_user, root, Outpost};

const WAIT: Duration = Duration::from_secs(10);

/// `mosquitto_ctrl [-u user -P password] dynsec ARGS` against `broker`: (success, stdout, stderr).
fn ctrl_as(broker: &Outpost, login: Option<(&str, &str)>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new("mosquitto_ctrl");
    cmd.args(["-h", "127.0.0.1", "-p", &broker.mqtt.port().to_string()]);
    if let Some((u, p)) = login {
        cmd.args(["-u", u, "-P", p]);
    }
    let out = cmd
        .arg("dynsec")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("mosquitto_ctrl runs (Debian's mosquitto-clients)");
    let stderr = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| {
            !l.contains("without encryption")
                && !l.contains("configuration changes")
                && !l.is_empty()
        })
        .collect::<Vec<_>>()
        .join("\n");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

/// Who `ctrl` logs in as (the first test's administrator, once anonymous callers are governed).
static ADMIN: std::sync::Mutex<Option<(&str, &str)>> = std::sync::Mutex::new(None);

fn admin() -> Option<(&'static str, &'static str)> {
    *ADMIN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A command that must succeed silently or print its answer: its stdout.
fn ctrl(broker: &Outpost, args: &[&str]) -> String {
    let (ok, out, err) = ctrl_as(broker, admin(), args);
    assert!(
        ok && err.is_empty(),
        "mosquitto_ctrl dynsec {args:?}: {err}"
    );
    out
}

/// A command that must fail with `error` (mosquitto's text).
fn ctrl_error(broker: &Outpost, args: &[&str], error: &str) {
    let (_, _, err) = ctrl_as(broker, admin(), args);
    assert!(
        err.contains(&format!("Error: {error}")),
        "mosquitto_ctrl dynsec {args:?}: expected {error:?}, got {err:?}"
    );
}

/// An MQTT 5 login: the CONNACK's reason code and the connection.
fn login(broker: &Outpost, client: &str, user: &str, password: &str) -> (ReasonCode, Raw) {
    let mut c = Raw::login(
        broker.mqtt,
        Version::V5,
        client,
        Some(user),
        Some(password.as_bytes()),
    );
    match c.recv(WAIT) {
        Some(Got::ConnAck(code)) => (code, c),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Publishes at QoS 1 and returns the PUBACK's reason code.
fn publish(c: &mut Raw, topic: &str, pkid: u16) -> ReasonCode {
    c.publish(topic, b"x", QoS::AtLeastOnce, pkid, false);
    loop {
        match c.recv(WAIT) {
            Some(Got::PubAck(id, code)) if id == pkid => return code,
            Some(Got::Publish { .. } | Got::PingResp | Got::Other) => continue,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}

fn subscribe(c: &mut Raw, filter: &str, pkid: u16) -> ReasonCode {
    c.subscribe(pkid, &[filter], QoS::AtLeastOnce);
    loop {
        match c.recv(WAIT) {
            Some(Got::SubAck(codes)) => return codes[0],
            Some(Got::Publish { .. } | Got::PingResp | Got::Other) => continue,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
}

fn allowed(code: ReasonCode) -> bool {
    matches!(
        code,
        ReasonCode::Success | ReasonCode::NoMatchingSubscribers
    )
}

#[test]
fn mosquitto_ctrl_manages_clients_groups_roles_and_acls() {
    let broker = Outpost::start();
    // Clients.
    assert_eq!(
        ctrl(&broker, &["createClient", "alice", "-p", "alice-pw"]),
        ""
    );
    ctrl(
        &broker,
        &["createClient", "bob", "-c", "bob-device", "-p", "bob-pw"],
    );
    ctrl_error(
        &broker,
        &["createClient", "alice", "-p", "x"],
        "Client already exists",
    );
    ctrl_error(&broker, &["getClient", "nobody"], "Client not found");
    let list = ctrl(&broker, &["listClients"]);
    assert_eq!(list.lines().collect::<Vec<_>>(), ["alice", "bob"], "{list}");
    assert_eq!(ctrl(&broker, &["listClients", "1", "1"]).trim(), "bob");

    // alice logs in; with no role, the default access denies her publishes and subscriptions.
    let (code, mut alice) = login(&broker, "alice-1", "alice", "alice-pw");
    assert_eq!(code, ReasonCode::Success);
    assert_eq!(
        publish(&mut alice, "sensors/t", 1),
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        subscribe(&mut alice, "sensors/#", 2),
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        login(&broker, "alice-2", "alice", "wrong").0,
        ReasonCode::BadUserNameOrPassword
    );

    // A role through a group: her next packets are allowed, without reconnecting.
    ctrl(&broker, &["createRole", "sensors"]);
    ctrl(
        &broker,
        &[
            "addRoleACL",
            "sensors",
            "publishClientSend",
            "sensors/#",
            "allow",
            "5",
        ],
    );
    ctrl(
        &broker,
        &[
            "addRoleACL",
            "sensors",
            "subscribePattern",
            "sensors/#",
            "allow",
        ],
    );
    ctrl(
        &broker,
        &[
            "addRoleACL",
            "sensors",
            "publishClientSend",
            "sensors/secret",
            "deny",
            "9",
        ],
    );
    ctrl_error(
        &broker,
        &[
            "addRoleACL",
            "sensors",
            "subscribePattern",
            "sensors/#",
            "allow",
        ],
        "ACL with this topic already exists",
    );
    ctrl(&broker, &["createGroup", "devices"]);
    ctrl(&broker, &["addGroupRole", "devices", "sensors", "2"]);
    ctrl_error(
        &broker,
        &["addGroupRole", "devices", "sensors"],
        "Group is already in this role",
    );
    ctrl(&broker, &["addGroupClient", "devices", "alice"]);
    ctrl_error(
        &broker,
        &["addGroupClient", "devices", "alice"],
        "Client is already in this group",
    );
    assert!(allowed(publish(&mut alice, "sensors/t", 3)));
    assert_eq!(
        publish(&mut alice, "sensors/secret", 4),
        ReasonCode::NotAuthorized,
        "the higher-priority deny wins"
    );
    assert_eq!(
        subscribe(&mut alice, "sensors/#", 5),
        ReasonCode::GrantedQoS1
    );
    assert_eq!(publish(&mut alice, "other/t", 6), ReasonCode::NotAuthorized);
    // Unsubscribing is allowed by default; a role can forbid it (the subscription stays).
    ctrl(
        &broker,
        &[
            "addRoleACL",
            "sensors",
            "unsubscribeLiteral",
            "sensors/#",
            "deny",
        ],
    );
    alice.send(&outpost_codec::Packet::Unsubscribe(
        outpost_codec::Unsubscribe {
            pkid: 9,
            properties: Default::default(),
            filters: outpost_codec::List::new(&["sensors/#", "never/subscribed"]),
        },
    ));
    assert_eq!(
        alice.recv(WAIT),
        Some(Got::UnsubAck(vec![
            ReasonCode::NotAuthorized,
            ReasonCode::NoSubscriptionExisted
        ]))
    );
    ctrl(
        &broker,
        &[
            "removeRoleACL",
            "sensors",
            "unsubscribeLiteral",
            "sensors/#",
        ],
    );

    let client = ctrl(&broker, &["getClient", "alice"]);
    assert!(
        client.contains("Username: alice") && client.contains("Groups:   devices"),
        "{client}"
    );
    let group = ctrl(&broker, &["getGroup", "devices"]);
    assert!(
        group.contains("Groupname: devices")
            && group.contains("sensors (priority: 2)")
            && group.contains("Clients:   alice"),
        "{group}"
    );
    let role = ctrl(&broker, &["getRole", "sensors"]);
    let lines: Vec<&str> = role.lines().collect();
    assert!(
        lines[1].contains("publishClientSend")
            && lines[1].contains("deny")
            && lines[1].contains("sensors/secret"),
        "highest priority first: {role}"
    );
    assert_eq!(ctrl(&broker, &["listRoles"]).trim(), "sensors");
    assert_eq!(ctrl(&broker, &["listGroups"]).trim(), "devices");

    // Default access.
    ctrl(
        &broker,
        &["setDefaultACLAccess", "publishClientSend", "allow"],
    );
    assert!(ctrl(&broker, &["getDefaultACLAccess"]).contains("publishClientSend    : allow"));
    assert!(allowed(publish(&mut alice, "other/t", 7)));
    ctrl(
        &broker,
        &["setDefaultACLAccess", "publishClientSend", "deny"],
    );
    assert_eq!(publish(&mut alice, "other/t", 8), ReasonCode::NotAuthorized);

    // A client id pinned to a username.
    assert_eq!(
        login(&broker, "not-bob", "bob", "bob-pw").0,
        ReasonCode::BadUserNameOrPassword
    );
    assert_eq!(
        login(&broker, "bob-device", "bob", "bob-pw").0,
        ReasonCode::Success
    );
    ctrl(&broker, &["setClientId", "bob"]);
    assert_eq!(
        login(&broker, "not-bob", "bob", "bob-pw").0,
        ReasonCode::Success
    );
    ctrl(&broker, &["setClientPassword", "bob", "new-pw"]);
    assert_eq!(
        login(&broker, "b", "bob", "bob-pw").0,
        ReasonCode::BadUserNameOrPassword
    );
    assert_eq!(login(&broker, "b", "bob", "new-pw").0, ReasonCode::Success);

    // Disabling disconnects at once; enabling lets her back.
    ctrl(&broker, &["disableClient", "alice"]);
    match alice.recv(WAIT) {
        Some(Got::Disconnect(code)) => assert_eq!(code, ReasonCode::AdministrativeAction),
        None => {}
        other => panic!("expected the connection to close, got {other:?}"),
    }
    assert!(alice.closed_within(WAIT));
    assert_eq!(
        login(&broker, "alice-3", "alice", "alice-pw").0,
        ReasonCode::NotAuthorized
    );
    assert!(ctrl(&broker, &["getClient", "alice"]).contains("Disabled: true"));
    ctrl(&broker, &["enableClient", "alice"]);
    let (code, _alice) = login(&broker, "alice-4", "alice", "alice-pw");
    assert_eq!(code, ReasonCode::Success);

    // The anonymous group governs anonymous clients, this test's administrator among them:
    // before setting it, an administrator of dynamic security's own (mosquitto's `admin` role).
    ctrl(&broker, &["createClient", "admin", "-p", "admin-pw"]);
    ctrl(&broker, &["createRole", "admin"]);
    for t in [
        "publishClientSend",
        "publishClientReceive",
        "subscribePattern",
    ] {
        ctrl(
            &broker,
            &[
                "addRoleACL",
                "admin",
                t,
                "$CONTROL/dynamic-security/#",
                "allow",
            ],
        );
    }
    ctrl(&broker, &["addClientRole", "admin", "admin"]);
    *ADMIN.lock().unwrap_or_else(|e| e.into_inner()) = Some(("admin", "admin-pw"));
    ctrl(&broker, &["createGroup", "guests"]);
    ctrl(&broker, &["setAnonymousGroup", "guests"]);
    assert_eq!(ctrl(&broker, &["getAnonymousGroup"]).trim(), "guests");
    let mut anon = Raw::connect(broker.mqtt, Version::V5, "anon-1", true);
    assert_eq!(anon.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    assert_eq!(
        publish(&mut anon, "sensors/t", 1),
        ReasonCode::NotAuthorized
    );

    // Everything survives kill -9.
    let data = broker.kill();
    let broker = Outpost::start_in(data);
    let client = ctrl(&broker, &["getClient", "alice"]);
    assert!(
        client.contains("Groups:   devices") && !client.contains("Disabled: true"),
        "{client}"
    );
    assert!(ctrl(&broker, &["getRole", "sensors"]).contains("sensors/secret"));
    let (code, mut alice) = login(&broker, "alice-5", "alice", "alice-pw");
    assert_eq!(code, ReasonCode::Success);
    assert!(allowed(publish(&mut alice, "sensors/t", 1)));
    assert_eq!(login(&broker, "b", "bob", "new-pw").0, ReasonCode::Success);

    // Taking things away.
    ctrl(
        &broker,
        &["removeRoleACL", "sensors", "publishClientSend", "sensors/#"],
    );
    ctrl_error(
        &broker,
        &["removeRoleACL", "sensors", "publishClientSend", "sensors/#"],
        "ACL not found",
    );
    assert_eq!(
        publish(&mut alice, "sensors/t", 2),
        ReasonCode::NotAuthorized
    );
    ctrl(
        &broker,
        &[
            "addRoleACL",
            "sensors",
            "publishClientSend",
            "sensors/#",
            "allow",
        ],
    );
    ctrl(&broker, &["removeGroupClient", "devices", "alice"]);
    assert_eq!(
        publish(&mut alice, "sensors/t", 3),
        ReasonCode::NotAuthorized
    );
    ctrl(&broker, &["addClientRole", "alice", "sensors"]);
    assert!(allowed(publish(&mut alice, "sensors/t", 4)));
    ctrl(&broker, &["removeClientRole", "alice", "sensors"]);
    assert_eq!(
        publish(&mut alice, "sensors/t", 5),
        ReasonCode::NotAuthorized
    );
    ctrl(&broker, &["removeGroupRole", "devices", "sensors"]);
    ctrl(&broker, &["deleteGroup", "devices"]);
    ctrl(&broker, &["deleteRole", "sensors"]);
    ctrl_error(&broker, &["getRole", "sensors"], "Role not found");
    ctrl_error(&broker, &["getGroup", "devices"], "Group not found");
    ctrl(&broker, &["deleteClient", "alice"]);
    assert!(
        alice.closed_within(WAIT),
        "a deleted client is disconnected"
    );
    assert_eq!(ctrl(&broker, &["listClients"]).trim(), "admin\nbob");
    assert_eq!(
        support::metric(&broker, "outpost_dynsec_entities{kind=\"clients\"}"),
        2
    );
    assert_eq!(
        support::metric(&broker, "outpost_dynsec_entities{kind=\"groups\"}"),
        1,
        "guests"
    );
}

#[test]
fn only_identities_the_acl_allows_send_commands_and_a_file_deny_wins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let passwords = dir.path().join("passwords");
    add_user(&passwords, "admin", "admin-pw");
    add_user(&passwords, "eve", "eve-pw");
    let acl = dir.path().join("acl.toml");
    std::fs::write(
        &acl,
        r#"
[[rules]]
effect = "allow"
identities = ["admin"]
actions = ["mqtt:*"]
resources = ["$CONTROL/dynamic-security/#"]

[[rules]]
effect = "allow"
identities = ["*"]
actions = ["mqtt:*"]
resources = ["devices/#", "secret/#"]

[[rules]]
effect = "deny"
identities = ["*"]
actions = ["mqtt:publish"]
resources = ["secret/#"]
"#,
    )
    .expect("acl written");
    let toml = format!("[auth]\npassword_file = {passwords:?}\nacl_file = {acl:?}\n");
    let broker = Outpost::start_with(tempfile::tempdir().expect("temp dir"), &toml, None);

    let (_, _, err) = ctrl_as(&broker, Some(("eve", "eve-pw")), &["listClients"]);
    assert!(err.contains("Subscribe error: Not authorized"), "{err}");
    let (_, _, err) = ctrl_as(&broker, None, &["listClients"]);
    assert!(
        err.contains("Connection error"),
        "anonymous is refused: {err}"
    );
    let admin = Some(("admin", "admin-pw"));
    for args in [
        &["createClient", "carol", "-p", "carol-pw"][..],
        &["createRole", "everything"],
        &[
            "addRoleACL",
            "everything",
            "publishClientSend",
            "#",
            "allow",
        ],
        &[
            "addRoleACL",
            "everything",
            "publishClientSend",
            "$CONTROL/#",
            "allow",
        ],
        &[
            "addRoleACL",
            "everything",
            "subscribePattern",
            "$CONTROL/#",
            "allow",
        ],
        // As with mosquitto, `$CONTROL` is never reached by the default access: the answers
        // must be granted too.
        &[
            "addRoleACL",
            "everything",
            "publishClientReceive",
            "$CONTROL/#",
            "allow",
        ],
        &["addClientRole", "carol", "everything"],
    ] {
        let (ok, _, err) = ctrl_as(&broker, admin, args);
        assert!(ok && err.is_empty(), "{args:?}: {err}");
    }
    let (code, mut carol) = login(&broker, "carol-1", "carol", "carol-pw");
    assert_eq!(code, ReasonCode::Success);
    assert!(
        allowed(publish(&mut carol, "anything/else", 1)),
        "the role grants what the file is silent on"
    );
    assert_eq!(
        publish(&mut carol, "secret/x", 2),
        ReasonCode::NotAuthorized,
        "the file's deny wins"
    );
    // A role granting $CONTROL makes carol an administrator too.
    let (ok, out, err) = ctrl_as(&broker, Some(("carol", "carol-pw")), &["listClients"]);
    assert!(ok && err.is_empty() && out.contains("carol"), "{err}");
    // A password-file user is not governed by dynamic defaults: the file decides alone.
    let (code, mut eve) = login(&broker, "eve-1", "eve", "eve-pw");
    assert_eq!(code, ReasonCode::Success);
    assert!(allowed(publish(&mut eve, "devices/e", 1)));
    assert_eq!(publish(&mut eve, "other/e", 2), ReasonCode::NotAuthorized);
}

/// The JSON commands themselves (what scripts send without `mosquitto_ctrl`): several in one
/// request with correlation data, Outpost's access keys, and an aws CLI call signed with one.
#[test]
fn raw_commands_and_access_keys_for_http_callers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let acl = dir.path().join("acl.toml");
    std::fs::write(
        &acl,
        "[[rules]]\neffect = \"allow\"\nidentities = [\"anonymous\"]\nactions = [\"mqtt:*\"]\nresources = [\"#\", \"$CONTROL/#\"]\n",
    )
    .expect("acl written");
    let toml = format!("[auth]\nacl_file = {acl:?}\n");
    let broker = Outpost::start_with(tempfile::tempdir().expect("temp dir"), &toml, None);
    let mut admin = Raw::connect(broker.mqtt, Version::V5, "admin", true);
    assert_eq!(admin.recv(WAIT), Some(Got::ConnAck(ReasonCode::Success)));
    assert_eq!(
        subscribe(&mut admin, "$CONTROL/dynamic-security/v1/response", 1),
        ReasonCode::GrantedQoS1
    );
    let mut ask = |body: &str, pkid: u16| -> serde_json::Value {
        admin.publish(
            "$CONTROL/dynamic-security/v1",
            body.as_bytes(),
            QoS::AtLeastOnce,
            pkid,
            false,
        );
        let mut acked = false;
        let mut answer = None;
        while !(acked && answer.is_some()) {
            match admin.recv(WAIT) {
                Some(Got::PubAck(id, code)) if id == pkid => {
                    assert_eq!(code, ReasonCode::Success, "the command's PUBACK");
                    acked = true;
                }
                Some(Got::Publish { topic, payload, .. }) => {
                    assert_eq!(topic, "$CONTROL/dynamic-security/v1/response");
                    answer = Some(serde_json::from_slice(&payload).expect("JSON"));
                }
                Some(_) => continue,
                None => panic!("no answer to {body}"),
            }
        }
        answer.unwrap_or_default()
    };
    let v = ask(
        r#"{"commands":[{"command":"createClient","username":"svc","correlationData":"c1"},{"command":"createRole","rolename":"queues","acls":[{"acltype":"sqs:*","topic":"arn:aws:sqs:*:*:orders","allow":true}]},{"command":"createAccessKey","username":"svc"},{"command":"nope"}]}"#,
        10,
    );
    let r = &v["responses"];
    assert_eq!(
        r[0],
        serde_json::json!({"command":"createClient","correlationData":"c1"})
    );
    assert_eq!(r[1]["command"], "createRole");
    assert!(r[1].get("error").is_none(), "{v}");
    assert_eq!(r[3]["error"], "Unknown command");
    let id = r[2]["data"]["accessKey"]["accessKeyId"]
        .as_str()
        .expect("an id")
        .to_string();
    let secret = r[2]["data"]["accessKey"]["secretAccessKey"]
        .as_str()
        .expect("a secret")
        .to_string();
    assert!(id.starts_with("AKIA") && secret.len() == 40);
    let v = ask(r#"not json"#, 20);
    assert_eq!(v["responses"][0]["error"], "Payload not valid JSON");

    let aws = |args: &[&str]| {
        Command::new(root().join(".venv/bin/aws"))
            .args([
                "--endpoint-url",
                &broker.http,
                "--region",
                "us-east-1",
                "--output",
                "json",
            ])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", &id)
            .env("AWS_SECRET_ACCESS_KEY", &secret)
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .output()
            .expect("aws runs")
    };
    let out = aws(&["sqs", "create-queue", "--queue-name", "orders"]);
    assert!(!out.status.success(), "svc has no role yet");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("AccessDenied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = ask(
        r#"{"commands":[{"command":"addClientRole","username":"svc","rolename":"queues"}]}"#,
        30,
    );
    assert!(v["responses"][0].get("error").is_none(), "{v}");
    let out = aws(&["sqs", "create-queue", "--queue-name", "orders"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = aws(&["sqs", "create-queue", "--queue-name", "other"]);
    assert!(!out.status.success(), "the role names one queue");
    let v = ask(
        &format!(r#"{{"commands":[{{"command":"deleteAccessKey","accessKeyId":"{id}"}}]}}"#),
        40,
    );
    assert!(v["responses"][0].get("error").is_none(), "{v}");
    let out = aws(&["sqs", "list-queues"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("InvalidClientTokenId")
            || !out.status.success()
    );
}
