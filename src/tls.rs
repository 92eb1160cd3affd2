//! TLS for the listeners (STARTTLS, implicit TLS) and the self-signed certificate that
//! `turnmail init` makes for a demo root. rustls with the ring provider only, so that
//! exactly one crypto provider is ever installed.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where a root keeps its certificate unless turnmail.toml names other files.
pub fn default_paths(root: &Path) -> (PathBuf, PathBuf) {
    (root.join("tls/cert.pem"), root.join("tls/key.pem"))
}

/// The certificate and key files for a root: the configured ones (relative to the
/// root), else the default ones if they exist.
pub fn configured_paths(root: &Path, tls: &crate::config::TlsConfig) -> Option<(PathBuf, PathBuf)> {
    match (&tls.cert, &tls.key) {
        (Some(c), Some(k)) => Some((root.join(c), root.join(k))),
        _ => {
            let (c, k) = default_paths(root);
            (c.is_file() && k.is_file()).then_some((c, k))
        }
    }
}

fn invalid(path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {e}", path.display()),
    )
}

/// A server configuration from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> io::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(cert, e))?;
    if certs.is_empty() {
        return Err(invalid(cert, "no certificate in file"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(io::Error::other)?;
    Ok(Arc::new(cfg))
}

/// Write a self-signed certificate for `hostname` to the root's default paths (key
/// mode 0600).
pub fn generate_self_signed(root: &Path, hostname: &str) -> io::Result<(PathBuf, PathBuf)> {
    let ck =
        rcgen::generate_simple_self_signed(vec![hostname.to_string(), "localhost".to_string()])
            .map_err(io::Error::other)?;
    let (cert, key) = default_paths(root);
    if let Some(dir) = cert.parent() {
        crate::owner::create_dirs(dir, 0o755)?;
    }
    crate::fsutil::write_atomic(&cert, ck.cert.pem().as_bytes(), 0o644)?;
    crate::fsutil::write_atomic(&key, ck.signing_key.serialize_pem().as_bytes(), 0o600)?;
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_load() {
        let d = tempfile::tempdir().unwrap();
        let (c, k) = generate_self_signed(d.path(), "mail.example.com").unwrap();
        assert!(server_config(&c, &k).is_ok());
        assert!(server_config(&k, &c).is_err());
        let cfg = crate::config::TlsConfig::default();
        assert_eq!(configured_paths(d.path(), &cfg), Some((c, k)));
    }
}

/// Certificate verification for flushes to customer sites: encryption without
/// authentication (the sites' certificates are typically self-signed, and the
/// alternative is plaintext), as Postfix's `may` level does.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connector for STARTTLS to sites (see [`AcceptAnyCertificate`]).
pub fn site_connector() -> io::Result<tokio_rustls::TlsConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

/// A TLS connector that verifies the server's certificate and name against the
/// public roots (webpki-roots) and, when given, the PEM certificates of `extra`: for a
/// server that is sent a password.
pub fn verified_connector(extra: Option<&Path>) -> io::Result<tokio_rustls::TlsConnector> {
    verified_client_config(extra).map(tokio_rustls::TlsConnector::from)
}

/// The client configuration of [`verified_connector`], for clients that build their
/// own connector (the accounts database's).
pub fn verified_client_config(extra: Option<&Path>) -> io::Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra {
        let mut n = 0;
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?
        {
            let cert = cert.map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?;
            n += 1;
        }
        if n == 0 {
            return Err(io::Error::other(format!(
                "{}: no certificate in it",
                path.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}
