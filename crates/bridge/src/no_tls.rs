//! A build without TLS (cargo feature `tls` off): a bridge configured with TLS is refused when
//! the broker starts, with the reason.

use crate::config::BridgeTls;

/// No TLS client can exist in this build.
#[derive(Debug, Clone)]
pub(crate) enum Client {}

impl Client {
    pub(crate) async fn connect(
        &self,
        _tcp: tokio::net::TcpStream,
    ) -> std::io::Result<tokio::net::TcpStream> {
        match *self {}
    }
}

/// Refuses: this build has no TLS.
pub(crate) fn client(_tls: &BridgeTls, _host: &str) -> Result<Client, String> {
    Err("this build has no TLS (cargo feature `tls`)".into())
}
