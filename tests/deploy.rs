//! What `deploy/` ships, checked against the real binary: the systemd unit passes
//! `systemd-analyze verify` and keeps its hardening, the container file runs the broker as an
//! unprivileged user with a data volume and a health check the binary answers, and every series
//! the Grafana dashboard queries is one `/metrics` exports (with HELP and TYPE).

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use support::http::{http, sqs_json};
use support::{root, Outpost};

fn deploy(file: &str) -> String {
    std::fs::read_to_string(root().join("deploy").join(file)).expect("deploy file")
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = deploy("outpost.service");
    for option in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/outpost",
        "StateDirectory=outpost",
        "NoNewPrivileges=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Environment=OUTPOST_DATA_DIR=/var/lib/outpost",
    ] {
        assert!(unit.lines().any(|l| l.trim() == option), "missing {option}");
    }
    // `systemd-analyze verify` checks every directive; it needs the binary where ExecStart
    // says, so the unit is checked with the path of the one just built.
    let Ok(which) = Command::new("systemd-analyze").arg("--version").output() else {
        support::skip("no systemd-analyze");
        return;
    };
    assert!(which.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outpost.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/outpost", env!("CARGO_BIN_EXE_outpost")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Lines about the host's own units (no systemd running in a container) are not ours.
    let ours: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("outpost.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{said}");
}

#[test]
fn the_container_file_runs_unprivileged_with_a_volume_and_a_health_check() {
    let file = deploy("Containerfile");
    let instructions: Vec<String> = file
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .filter(|l| !l.starts_with(' '))
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    let known = [
        "FROM",
        "WORKDIR",
        "COPY",
        "RUN",
        "USER",
        "ENV",
        "VOLUME",
        "EXPOSE",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "ENTRYPOINT",
    ];
    for i in &instructions {
        assert!(known.contains(&i.as_str()), "unknown instruction {i}");
    }
    assert_eq!(instructions.first().map(String::as_str), Some("FROM"));
    assert!(file.contains("USER outpost"), "runs unprivileged");
    assert!(file.contains("VOLUME [\"/var/lib/outpost\"]"));
    for port in ["1883", "8083", "9324"] {
        assert!(file.contains(port), "exposes {port}");
    }
    // The files it copies exist.
    assert!(root().join("outpost.example.toml").exists());
    // Its health check is a command of the binary, and it answers.
    assert!(file.contains("\"probe\", \"http://127.0.0.1:9324/ready\""));
    let broker = Outpost::start();
    let ready = format!("{}/ready", broker.http);
    let st = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["probe", &ready])
        .status()
        .unwrap();
    assert!(st.success(), "probe of /ready");
    let st = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["probe", &format!("{}/nothing-here", broker.http)])
        .status()
        .unwrap();
    assert!(!st.success(), "probe of a 404");
    // Every HTTP answer carries a request id, the router's own errors included.
    for request in [
        &b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"[..],
        b"GET /?Action=Nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        use std::io::{Read as _, Write as _};
        let mut s =
            std::net::TcpStream::connect(broker.http.trim_start_matches("http://")).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(
            out.to_ascii_lowercase().contains("\r\nx-amzn-requestid: "),
            "{out}"
        );
    }
}

#[test]
fn metrics_have_help_and_type_and_the_dashboard_queries_only_them() {
    let broker = Outpost::start();
    // Something in every engine.
    sqs_json(&broker.http, "CreateQueue", "{\"QueueName\":\"dash\"}");
    let (status, text) = http(
        &broker.http,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let mut helped = BTreeSet::new();
    let mut typed = BTreeSet::new();
    let mut kinds = std::collections::BTreeMap::new();
    let mut sampled = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap_or("").to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap_or("").to_string();
            kinds.insert(name.clone(), parts.next().unwrap_or("").to_string());
            typed.insert(name);
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            sampled.insert(name.to_string());
        }
    }
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text");
    assert_eq!(helped, typed, "every family has HELP and TYPE");
    let family_of = |sample: &str| -> String {
        for suffix in ["_total", "_bucket", "_sum", "_count", "_created"] {
            if let Some(f) = sample.strip_suffix(suffix) {
                if typed.contains(f) {
                    return f.to_string();
                }
            }
        }
        sample.to_string()
    };
    for s in &sampled {
        assert!(typed.contains(&family_of(s)), "{s} has no TYPE");
    }
    for must in [
        "outpost_store_append_seconds",
        "outpost_store_fsync_seconds",
        "outpost_queue_messages",
        "outpost_throttled",
        "outpost_auth_failures",
    ] {
        assert!(typed.contains(must), "{must} exported");
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy("grafana-dashboard.json")).expect("the dashboard is JSON");
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(i) = rest.find("outpost_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                queried.insert(name);
            }
        }
    }
    assert!(queried.len() >= 20, "{queried:?}");
    for q in &queried {
        let f = family_of(q);
        let suffix = &q[f.len()..];
        let fits = match kinds.get(&f).map(String::as_str) {
            Some("counter") => suffix == "_total",
            Some("histogram") => ["_bucket", "_sum", "_count"].contains(&suffix),
            Some("gauge") => suffix.is_empty(),
            _ => false,
        };
        assert!(
            fits,
            "the dashboard queries {q}, which /metrics does not export"
        );
    }
}
