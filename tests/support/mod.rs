//! Starting the real `outpost` binary for a test and talking to it.
#![allow(dead_code)]

pub mod endpoint;
pub mod http;
pub mod mosquitto;
pub mod raw;
pub mod tmpfs;
pub mod websocket;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A test that cannot run on this machine. Under `OUTPOST_REQUIRE_INTEROP` (the suite is meant to
/// run everything, as in CI) that is a failure; otherwise the test says SKIPPED where the test
/// output shows it (straight to stderr: libtest captures only `print!` and `eprint!`).
pub fn skip(why: &str) {
    assert!(
        std::env::var_os("OUTPOST_REQUIRE_INTEROP").is_none(),
        "cannot run: {why}"
    );
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// A Python of one of the test venvs that scripts/test.sh creates (`.venv`, `.venv-sqs-query`);
/// `None` (the interop test skips) only when `OUTPOST_REQUIRE_INTEROP` is unset.
pub fn python(venv: &str) -> Option<std::path::PathBuf> {
    let p = root().join(venv).join("bin/python");
    if p.exists() {
        return Some(p);
    }
    skip(&format!("no {venv} (./scripts/test.sh creates it)"));
    None
}

/// Runs one pytest file of tests/interop with `python` and the environment `vars`; the test fails
/// when the suite fails or runs nothing.
pub fn pytest(python: &std::path::Path, file: &str, vars: &[(&str, String)]) {
    let out = Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"])
        .arg(root().join("tests/interop").join(file))
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("pytest runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{file} failed");
    assert!(stdout.contains(" passed"), "pytest ran no tests");
}

/// The aws CLI of the test venv against `broker` (JSON output, test credentials); its output.
/// Panics when the command fails, with what it printed.
pub fn aws_cli(broker: &Outpost, args: &[&str]) -> String {
    let out = Command::new(root().join(".venv/bin/aws"))
        .args(["--endpoint-url", &broker.http, "--region", "us-east-1"])
        .args(["--output", "json"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .output()
        .expect("aws runs");
    assert!(
        out.status.success(),
        "aws {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of the first `/metrics` sample whose line starts with `line_start` (a name with its
/// labels), 0 when absent.
pub fn metric(broker: &Outpost, line_start: &str) -> u64 {
    let (_, text) = http::http(
        &broker.http,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A running broker on free ports with its own data folder; killed when dropped.
pub struct Outpost {
    child: Child,
    /// The broker's own process when `child` is a tracer running it (see [`Outpost::slow_disk`]).
    traced: Option<u32>,
    pub mqtt: SocketAddr,
    /// `host:port/path` of MQTT over WebSocket.
    pub ws: String,
    /// `http://host:port` of the HTTP port (SQS API, health, metrics).
    pub http: String,
    pub data: tempfile::TempDir,
}

impl Outpost {
    pub fn start() -> Outpost {
        Self::start_in(tempfile::tempdir().expect("temp dir"))
    }

    /// Starts on an existing data folder (for restart tests).
    pub fn start_in(data: tempfile::TempDir) -> Outpost {
        Self::launch(&[], data, None, None, &[], "127.0.0.1:0")
    }

    /// [`Outpost::start_with`] with MQTT on a chosen address (for brokers that must know each
    /// other's address before both run).
    pub fn start_with_mqtt(data: tempfile::TempDir, toml: &str, mqtt_listen: &str) -> Outpost {
        let config = data.path().with_extension("toml");
        std::fs::write(&config, toml).expect("config written");
        Self::launch(&[], data, Some(config), None, &[], mqtt_listen)
    }

    /// Starts with a configuration file holding `toml` (the listen addresses and data folder still
    /// come from flags), its log (at `warn`) going to `log` when given.
    pub fn start_with(
        data: tempfile::TempDir,
        toml: &str,
        log: Option<&std::path::Path>,
    ) -> Outpost {
        Self::start_with_env(data, toml, log, &[])
    }

    /// [`Outpost::start_with`] with extra environment variables.
    pub fn start_with_env(
        data: tempfile::TempDir,
        toml: &str,
        log: Option<&std::path::Path>,
        vars: &[(&str, &str)],
    ) -> Outpost {
        let config = data.path().with_extension("toml");
        std::fs::write(&config, toml).expect("config written");
        Self::launch(&[], data, Some(config), log, vars, "127.0.0.1:0")
    }

    /// [`Outpost::start_with_env`] on a disk whose every `fsync`/`fdatasync` takes `delay`: the
    /// broker runs under `strace`, which holds each of those calls (and no other) for `delay`
    /// before it returns. What a test waits on is then certain to still be in flight for that long,
    /// instead of for however long this machine's disk happens to take.
    pub fn slow_disk(data: tempfile::TempDir, vars: &[(&str, &str)], delay: Duration) -> Outpost {
        let config = data.path().with_extension("toml");
        std::fs::write(&config, "").expect("config written");
        let micros = delay.as_micros().to_string();
        let wrapper = [
            "strace".to_string(),
            "-f".into(),
            "-qq".into(),
            "--seccomp-bpf".into(),
            "-o".into(),
            "/dev/null".into(),
            "-e".into(),
            "trace=fsync,fdatasync".into(),
            "-e".into(),
            format!("inject=fsync,fdatasync:delay_exit={micros}"),
        ];
        if Command::new("strace").arg("-V").output().is_err() {
            // Not a skip: scripts/test.sh installs strace.
            panic!("cannot run: no strace (./scripts/test.sh installs it)");
        }
        Self::launch(&wrapper, data, Some(config), None, vars, "127.0.0.1:0")
    }

    /// Starts the broker, as the last argument of `wrapper` when that is not empty.
    fn launch(
        wrapper: &[String],
        data: tempfile::TempDir,
        config: Option<std::path::PathBuf>,
        log: Option<&std::path::Path>,
        vars: &[(&str, &str)],
        mqtt_listen: &str,
    ) -> Outpost {
        let mut cmd = match wrapper.split_first() {
            None => Command::new(env!("CARGO_BIN_EXE_outpost")),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_outpost"));
                c
            }
        };
        // The tests' HTTP receivers listen on loopback, which SNS refuses by default (ADR
        // 0015); a test of that refusal sets this variable itself.
        cmd.env(
            "OUTPOST_TOPICS_ALLOW_ENDPOINT_NETWORKS",
            "[\"127.0.0.0/8\"]",
        );
        cmd.envs(vars.iter().copied());
        cmd.args([
            "--mqtt-listen",
            mqtt_listen,
            "--ws-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--log",
        ])
        .arg(std::env::var("OUTPOST_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("OUTPOST_CONFIG")
        .stdout(Stdio::piped());
        if let Some(config) = config {
            cmd.arg("--config").arg(config);
        }
        // The log goes to stdout (twelve-factor); with `log` it is copied to that file.
        let mut log_file = log.map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("log file")
        });
        match &log_file {
            Some(file) => cmd.stderr(Stdio::from(file.try_clone().expect("log file"))),
            None => cmd.stderr(Stdio::inherit()),
        };
        let mut child = cmd.spawn().expect("outpost starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(f) = log_file.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
                if std::env::var_os("OUTPOST_TEST_LOG").is_some() {
                    eprintln!("{line}");
                }
                if line.contains(" listening: ") {
                    let field = |name: &str| {
                        line.split(&format!("{name}="))
                            .nth(1)
                            .and_then(|r| r.split_whitespace().next())
                            .unwrap_or("")
                            .to_string()
                    };
                    let _ = tx.send((field("mqtt"), field("ws"), field("http")));
                }
            }
        });
        let (addr, ws, http) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("outpost reports its addresses");
        // Under a wrapper the broker is the wrapper's child; it is the one to signal.
        let traced = (!wrapper.is_empty()).then(|| {
            let children = format!("/proc/{0}/task/{0}/children", child.id());
            std::fs::read_to_string(children)
                .ok()
                .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()))
                .expect("the traced broker's process")
        });
        Outpost {
            child,
            traced,
            mqtt: addr.parse().expect("an address"),
            ws,
            http: format!("http://{http}"),
            data,
        }
    }

    pub fn port(&self) -> String {
        self.mqtt.port().to_string()
    }

    /// SIGKILL, keeping the data folder.
    pub fn kill(mut self) -> tempfile::TempDir {
        self.kill_traced();
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.data, tempfile::tempdir().expect("temp dir"))
    }

    /// SIGTERM (a graceful stop), waiting for the process to end; keeps the data folder.
    pub fn stop(mut self) -> tempfile::TempDir {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(self.child.try_wait(), Ok(None)) {
            assert!(Instant::now() < deadline, "outpost did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.traced = None;
        std::mem::replace(&mut self.data, tempfile::tempdir().expect("temp dir"))
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The broker's process.
    pub fn pid(&self) -> u32 {
        self.traced.unwrap_or_else(|| self.child.id())
    }

    /// SIGKILL to a traced broker (its tracer's end would leave it running).
    fn kill_traced(&mut self) {
        if let Some(pid) = self.traced.take() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }

    /// Resident memory of the process, in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        proc_field(&format!("/proc/{}/status", self.pid()), "VmRSS:")
    }

    /// Bytes the process has caused to be written to storage so far (Linux).
    pub fn written_bytes(&self) -> u64 {
        proc_field(&format!("/proc/{}/io", self.pid()), "write_bytes:")
    }
}

impl Drop for Outpost {
    fn drop(&mut self) {
        self.kill_traced();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_field(path: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits for a condition with a deadline.
pub fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Adds a user to a password file with the broker's own tool (`outpost passwd add FILE USER
/// --password P`), as an operator would.
pub fn add_user(file: &std::path::Path, user: &str, password: &str) {
    let st = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["passwd", "add"])
        .arg(file)
        .args([user, "--password", password])
        .status()
        .expect("outpost passwd runs");
    assert!(st.success(), "outpost passwd add {user}");
}

/// A broker with a password file holding `users` (name, password) and the ACL file `acl`; the
/// folder with both files is returned with it and must outlive it (a reload reads them again).
pub fn with_users_and_acl(users: &[(&str, &str)], acl: &str) -> (Outpost, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let passwords = dir.path().join("passwords");
    for (user, password) in users {
        add_user(&passwords, user, password);
    }
    let acl_file = dir.path().join("acl.toml");
    std::fs::write(&acl_file, acl).expect("acl written");
    let toml = format!("[auth]\npassword_file = {passwords:?}\nacl_file = {acl_file:?}\n");
    let broker = Outpost::start_with(tempfile::tempdir().expect("temp dir"), &toml, None);
    (broker, dir)
}
