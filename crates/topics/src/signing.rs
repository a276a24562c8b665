//! The key that signs every message, as SNS signs its own: a receiver downloads the certificate
//! at `SigningCertURL` and verifies `Signature` over the canonical string of the message, with
//! SHA1withRSA (`SignatureVersion` 1) or SHA256withRSA (2).
//!
//! SHA256withRSA is computed by `ring` (0.9 ms per signature on the reference VM); `ring` does not
//! sign with SHA-1, so SHA1withRSA is computed by the pure-Rust `rsa` crate (3.3 ms). One signature
//! is made per message (not per subscription), off the async workers (`spawn_blocking`).
//!
//! The broker creates an RSA key and a self-signed certificate for it when the first topic is
//! created (files `key.pem` and `cert.pem` in the data folder's `sns-signing/`); later starts load
//! them, so a receiver that cached the certificate keeps verifying across restarts. RSA because that is
//! what SNS uses and what every SNS verifier (the AWS SDKs' message validators) expects.

use std::io::Write as _;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer as _};
use rsa::RsaPrivateKey;
use sha2::Digest as _;

use crate::error::{Result, TopicError};

/// SNS's two signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureVersion {
    /// SHA1withRSA (SNS's default).
    V1,
    /// SHA256withRSA.
    V2,
}

impl SignatureVersion {
    /// The attribute value (`"1"` or `"2"`).
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureVersion::V1 => "1",
            SignatureVersion::V2 => "2",
        }
    }

    /// Parses a topic's `SignatureVersion` attribute.
    pub fn parse(s: &str) -> Option<SignatureVersion> {
        match s {
            "1" => Some(SignatureVersion::V1),
            "2" => Some(SignatureVersion::V2),
            _ => None,
        }
    }
}

/// The broker's signing key and its certificate.
pub struct Signer {
    v1: SigningKey<sha1::Sha1>,
    v2: ring::signature::RsaKeyPair,
    rng: ring::rand::SystemRandom,
    cert_pem: String,
    cert_file: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("cert_file", &self.cert_file)
            .finish()
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> TopicError {
    TopicError::Internal(format!("signing key: {what}: {e}"))
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the whole new one.
fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = options.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Signer {
    /// True when `dir` holds a key and its certificate (made by an earlier start).
    pub fn exists(dir: &Path) -> bool {
        dir.join("key.pem").is_file() && dir.join("cert.pem").is_file()
    }

    /// Loads the key and certificate from `dir`, creating both (an RSA key of `bits`) when the
    /// folder has none.
    pub fn load_or_create(dir: &Path, bits: usize) -> Result<Signer> {
        let key_path = dir.join("key.pem");
        let cert_path = dir.join("cert.pem");
        let (key, cert_pem) = match (
            std::fs::read_to_string(&key_path),
            std::fs::read_to_string(&cert_path),
        ) {
            (Ok(k), Ok(c)) => (
                RsaPrivateKey::from_pkcs8_pem(&k).map_err(|e| internal("unreadable key", e))?,
                c,
            ),
            _ => {
                std::fs::create_dir_all(dir).map_err(|e| internal("cannot create folder", e))?;
                let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
                    .map_err(|e| internal("generation failed", e))?;
                let pem = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| internal("encoding failed", e))?;
                let cert = self_signed(pem.as_str())?;
                // The certificate first: a key without its certificate is regenerated next time,
                // never paired with another key's certificate.
                write_atomically(&cert_path, cert.as_bytes(), false)
                    .map_err(|e| internal("cannot write certificate", e))?;
                write_atomically(&key_path, pem.as_bytes(), true)
                    .map_err(|e| internal("cannot write key", e))?;
                tracing::info!(folder = %dir.display(), bits, "created the SNS message signing key");
                (key, cert)
            }
        };
        let der = key
            .to_pkcs8_der()
            .map_err(|e| internal("encoding failed", e))?;
        let v2 = ring::signature::RsaKeyPair::from_pkcs8(der.as_bytes())
            .map_err(|e| internal("unusable key", e))?;
        let digest = sha2::Sha256::digest(cert_pem.as_bytes());
        let hex = hex::encode(&digest[..16]);
        Ok(Signer {
            v1: SigningKey::<sha1::Sha1>::new(key),
            v2,
            rng: ring::rand::SystemRandom::new(),
            cert_pem,
            cert_file: format!("SimpleNotificationService-{hex}.pem"),
        })
    }

    /// The base64 signature of `text`.
    pub fn sign(&self, version: SignatureVersion, text: &[u8]) -> String {
        let bytes = match version {
            SignatureVersion::V1 => self.v1.sign(text).to_vec(),
            SignatureVersion::V2 => {
                let mut out = vec![0; self.v2.public().modulus_len()];
                match self.v2.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &self.rng,
                    text,
                    &mut out,
                ) {
                    Ok(()) => out,
                    // Only a failing system RNG (used for blinding) gets here; SHA-1 then.
                    Err(_) => self.v1.sign(text).to_vec(),
                }
            }
        };
        STANDARD.encode(bytes)
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate's file name under the HTTP root (changes with the certificate, so a
    /// receiver's cache never serves a stale one).
    pub fn cert_file(&self) -> &str {
        &self.cert_file
    }
}

fn self_signed(key_pem: &str) -> Result<String> {
    let key = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(key_pem, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| internal("certificate key", e))?;
    let mut params = rcgen::CertificateParams::new(vec!["sns.outpost.local".to_string()])
        .map_err(|e| internal("certificate parameters", e))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sns.outpost.local");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Outpost");
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let cert = params
        .self_signed(&key)
        .map_err(|e| internal("certificate", e))?;
    Ok(cert.pem())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::VerifyingKey;
    use rsa::signature::Verifier as _;

    #[test]
    fn a_key_is_created_once_and_signatures_verify() {
        let dir = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let a = Signer::load_or_create(dir.path(), 2048).unwrap();
        eprintln!("created in {:?}", started.elapsed());
        let b = Signer::load_or_create(dir.path(), 2048).unwrap();
        assert_eq!(a.cert_pem(), b.cert_pem());
        assert_eq!(a.cert_file(), b.cert_file());
        assert!(a.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let sig = STANDARD
            .decode(a.sign(SignatureVersion::V2, b"hello"))
            .unwrap();
        let key = RsaPrivateKey::from_pkcs8_pem(
            &std::fs::read_to_string(dir.path().join("key.pem")).unwrap(),
        )
        .unwrap();
        let verify = VerifyingKey::<sha2::Sha256>::new(key.to_public_key());
        let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).unwrap();
        assert!(verify.verify(b"hello", &sig).is_ok());
        assert!(verify.verify(b"hellO", &sig).is_err());
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    #[test]
    #[ignore = "a measurement, run by hand with --release"]
    fn signing_cost() {
        let dir = tempfile::tempdir().unwrap();
        let s = Signer::load_or_create(dir.path(), 2048).unwrap();
        let text = "Message\nhello\nMessageId\nx\nTimestamp\nt\nTopicArn\na\nType\nNotification\n";
        for v in [SignatureVersion::V1, SignatureVersion::V2] {
            let t = std::time::Instant::now();
            for _ in 0..200 {
                std::hint::black_box(s.sign(v, text.as_bytes()));
            }
            eprintln!("{v:?}: {:?} per signature", t.elapsed() / 200);
        }
    }
}
