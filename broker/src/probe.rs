//! `outpost probe URL`: a health check for containers and supervisors, without an HTTP client in
//! a slim image.

use std::process::ExitCode;

/// `outpost probe URL`: one plain HTTP GET, 200 or not (no HTTP client in a slim image).
pub(crate) fn probe(url: &str) -> ExitCode {
    use std::io::{Read as _, Write as _};
    let Some(rest) = url.strip_prefix("http://") else {
        eprintln!("outpost probe: only http:// URLs");
        return ExitCode::from(2);
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let timeout = std::time::Duration::from_secs(3);
    let answer = (|| -> std::io::Result<String> {
        use std::net::ToSocketAddrs as _;
        let addr = host
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
        let mut head = [0u8; 64];
        let n = s.read(&mut head)?;
        Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    })();
    match answer {
        Ok(a) if a.starts_with("HTTP/1.1 200") || a.starts_with("HTTP/1.0 200") => {
            ExitCode::SUCCESS
        }
        Ok(a) => {
            eprintln!("outpost probe: {}", a.lines().next().unwrap_or(""));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("outpost probe: {e}");
            ExitCode::FAILURE
        }
    }
}
