//! The process signals the broker answers: SIGINT/SIGTERM stop it (see `shutdown` for the
//! order), SIGHUP reloads the security files and certificates.

/// SIGHUP reads the password, access key and ACL files and the TLS certificates again;
/// connections stay open and the new rules apply to their next packet (new certificates to new
/// handshakes). An invalid file keeps what is in force.
pub(crate) async fn reload_on_hangup(
    security: std::sync::Arc<outpost_auth::Security>,
    tls: Vec<std::sync::Arc<outpost_net::Tls>>,
) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; the security files will not be reloaded");
            return;
        };
        while hup.recv().await.is_some() {
            match security.reload() {
                Ok(()) => tracing::info!("SIGHUP: security files reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: reload refused; the previous rules stay in force")
                }
            }
            for t in &tls {
                match t.reload() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: TLS reload refused; the certificate in force stays")
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    drop((security, tls));
}

/// Resolves at SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}
