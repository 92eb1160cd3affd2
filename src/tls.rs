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
        std::fs::create_dir_all(dir)?;
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
