//! The SQS API end to end: the real `outpost` binary driven by boto3 (both wire protocols), the
//! aws CLI, and a `kill -9` in the middle of a queue's life.

mod support;

use std::process::{Command, Stdio};

use support::{aws_cli, python, root, Outpost};

fn pytest(venv: &str) {
    let Some(python) = python(venv) else { return };
    let broker = Outpost::start();
    support::pytest(
        &python,
        "sqs_test.py",
        &[("OUTPOST_SQS_ENDPOINT", broker.http.clone())],
    );
}

#[test]
fn boto3_over_aws_json() {
    pytest(".venv");
}

#[test]
fn boto3_over_the_query_protocol() {
    pytest(".venv-sqs-query");
}

#[test]
fn aws_cli_smoke() {
    let Some(_) = python(".venv") else { return };
    let broker = Outpost::start();
    let aws = |args: &[&str]| {
        let mut full = vec!["sqs"];
        full.extend_from_slice(args);
        aws_cli(&broker, &full)
    };
    let created = aws(&["create-queue", "--queue-name", "cli"]);
    assert!(created.contains("/000000000000/cli"), "{created}");
    let url = format!("{}/000000000000/cli", broker.http);
    aws(&[
        "send-message",
        "--queue-url",
        &url,
        "--message-body",
        "from the cli",
    ]);
    let got = aws(&[
        "receive-message",
        "--queue-url",
        &url,
        "--wait-time-seconds",
        "2",
    ]);
    assert!(got.contains("from the cli"), "{got}");
    let listed = aws(&["list-queues"]);
    assert!(listed.contains(&url), "{listed}");
}

#[test]
fn acknowledged_sends_and_deletes_survive_kill_9() {
    let Some(python) = python(".venv") else {
        return;
    };
    let script = root().join("tests/interop/sqs_durability.py");
    let broker = Outpost::start();
    let fill = Command::new(&python)
        .arg(&script)
        .arg("fill")
        .env("OUTPOST_SQS_ENDPOINT", &broker.http)
        .output()
        .expect("fill runs");
    assert!(
        fill.status.success(),
        "fill: {}",
        String::from_utf8_lossy(&fill.stderr)
    );
    let data = broker.kill();
    let broker = Outpost::start_in(data);
    let mut check = Command::new(&python)
        .arg(&script)
        .arg("check")
        .env("OUTPOST_SQS_ENDPOINT", &broker.http)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("check runs");
    {
        use std::io::Write;
        let mut stdin = check.stdin.take().expect("stdin");
        stdin.write_all(&fill.stdout).expect("state to check");
    }
    let out = check.wait_with_output().expect("check ends");
    assert!(
        out.status.success(),
        "check after kill -9: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok 45"));
}
