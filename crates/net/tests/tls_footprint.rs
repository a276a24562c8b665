//! What an idle TLS connection keeps of its TLS (issue 29): rustls's state once the handshake is
//! done and the stream is taken apart at rest ([`TlsBytes::into_parts`]), counted by the
//! allocator. Its buffers are gone; what stays is rustls's (the connection, the protocol state,
//! the two record keys). A change that makes it keep more fails here.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use outpost_net::TlsBytes;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

/// The system allocator, counting the bytes live.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes to the system allocator with the caller's own arguments; only a count
// is kept beside.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` above with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CONNECTIONS: isize = 100;

#[tokio::test]
async fn an_idle_tls_connection_keeps_only_rustls_state() {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let der = CertificateDer::from(cert.der().to_vec());
    let server = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server config"),
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).expect("root");
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let client = tokio_rustls::TlsConnector::from(Arc::new(
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[version])
                .expect("versions")
                .with_root_certificates(roots.clone())
                .with_no_client_auth(),
        ));
        let mut kept = Vec::with_capacity(CONNECTIONS as usize);
        let before = LIVE.load(Ordering::Relaxed);
        for _ in 0..CONNECTIONS {
            let (a, b) = tokio::io::duplex(8 * 1024);
            let name = ServerName::try_from("localhost").expect("name");
            let (server, client) =
                tokio::join!(TlsBytes::accept(a, server.clone()), client.connect(name, b));
            let (server, client) = (server.expect("server"), client.expect("client"));
            assert!(server.at_rest());
            let (socket, tls) = server.into_parts();
            drop((client, socket));
            kept.push(tls);
        }
        let each = (LIVE.load(Ordering::Relaxed) - before) / CONNECTIONS;
        println!("{version:?}: {each} B of TLS state per idle connection");
        assert!(
            each <= 4096,
            "{version:?}: an idle connection keeps {each} B of TLS state"
        );
    }
}
