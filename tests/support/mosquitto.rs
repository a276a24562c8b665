//! A real mosquitto (Debian's package) as an upstream or a peer: its own folder and port,
//! persistence on, started and stopped at will.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn wait_listening(port: u16, what: &str) {
    eventually(what, Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// A mosquitto upstream with persistence in its own folder, stopped and started at will.
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Configured (not started): a plain listener on a free port, sessions and queued messages
    /// kept across restarts and unbounded (the sink may be offline for all 10,000), plus `extra`.
    pub fn new(extra: &str) -> Mosquitto {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let conf = format!(
            "user root\nper_listener_settings false\nallow_anonymous true\npersistence true\n\
             persistence_location {}/\nmax_queued_messages 0\nlog_dest stderr\n\
             listener {port} 127.0.0.1\n{extra}\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("mosquitto.conf"), conf).expect("conf written");
        Mosquitto {
            child: None,
            port,
            dir,
        }
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.log"))
            .expect("log");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto runs (scripts/test.sh installs it)");
        self.child = Some(child);
        wait_listening(self.port, "mosquitto to listen");
    }

    /// SIGTERM: mosquitto saves its sessions and queued messages, then exits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// Sends a signal to the running mosquitto (`STOP` freezes it with its connections open,
    /// `CONT` lets it go on).
    pub fn signal(&self, signal: &str) {
        let c = self.child.as_ref().expect("mosquitto runs");
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &c.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(ok.success(), "kill -{signal} mosquitto");
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
