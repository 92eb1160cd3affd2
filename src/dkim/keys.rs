//! The key store: `ROOT/dkim/DOMAIN/` (0700, the mail user's) holding `selectors`
//! (`state.rs`) and one private key per selector, `SELECTOR.pem` (0600, PKCS#8 PEM).
//!
//! Keys are made here: Ed25519 (RFC 8463) by ring, RSA-2048 by the `rsa` crate (ring
//! signs RSA but cannot generate it); both written as PKCS#8 and signed with by ring
//! through mail-auth. What is published in DNS is derived from the private key, so a
//! key file is the only copy of anything.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::DkimError;
use super::state::{self, State};

/// The key store under a mail root.
pub const DIR: &str = "dkim";
/// The state file of a domain's directory.
pub const STATE_FILE: &str = "selectors";
/// Mode of a domain's directory and of the store.
pub const DIR_MODE: u32 = 0o700;
/// Mode of a private key file.
pub const KEY_MODE: u32 = 0o600;
/// Bits of a new RSA key (RFC 8301 asks for at least 1024, recommends 2048; ring signs
/// with 2048 to 8192).
pub const RSA_BITS: usize = 2048;
/// Largest key file read.
const MAX_KEY: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// ed25519-sha256 (RFC 8463): short keys, not yet verified by every receiver.
    Ed25519,
    /// rsa-sha256 with a 2048-bit key: verified everywhere.
    Rsa,
}

impl Algorithm {
    /// The `k=` tag of the DNS record.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Rsa => "rsa",
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A private key read from its file.
pub struct PrivateKey {
    pub algorithm: Algorithm,
    /// PKCS#8 DER.
    der: Vec<u8>,
    /// The `p=` value's bytes: the raw 32-byte key for Ed25519 (RFC 8463 §4.2), the
    /// SubjectPublicKeyInfo DER for RSA (RFC 6376 §3.6.1).
    pub public: Vec<u8>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The `p=` tag's value.
    pub fn public_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.public)
    }
}

pub fn store_dir(root: &Path) -> PathBuf {
    root.join(DIR)
}

pub fn domain_dir(root: &Path, domain: &str) -> PathBuf {
    store_dir(root).join(domain)
}

pub fn state_path(root: &Path, domain: &str) -> PathBuf {
    domain_dir(root, domain).join(STATE_FILE)
}

/// The key file of `selector` (already checked by [`state::selector`]).
pub fn key_path(root: &Path, domain: &str, selector: &str) -> PathBuf {
    domain_dir(root, domain).join(format!("{selector}.pem"))
}

fn key_err(domain: &str, reason: impl Into<String>) -> DkimError {
    DkimError::Key {
        domain: domain.to_string(),
        reason: reason.into(),
    }
}

/// A new private key, as the PEM text of its PKCS#8 form.
pub fn generate(algorithm: Algorithm) -> Result<String, String> {
    let der = match algorithm {
        Algorithm::Ed25519 => {
            let rng = ring::rand::SystemRandom::new();
            ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|e| format!("generating an Ed25519 key: {e}"))?
                .as_ref()
                .to_vec()
        }
        Algorithm::Rsa => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
                .map_err(|e| format!("generating an RSA key: {e}"))?;
            key.to_pkcs8_der()
                .map_err(|e| format!("encoding the RSA key: {e}"))?
                .as_bytes()
                .to_vec()
        }
    };
    Ok(pem("PRIVATE KEY", &der))
}

/// RFC 7468 text: base64 in lines of 64 between the labels.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Read a PKCS#8 PEM private key (Ed25519, or RSA of 2048 to 8192 bits).
pub fn parse_pem(text: &[u8]) -> Result<PrivateKey, String> {
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use rustls_pki_types::pem::PemObject;
    let der = PrivatePkcs8KeyDer::from_pem_slice(text)
        .map_err(|e| format!("not a PKCS#8 PEM private key (BEGIN PRIVATE KEY): {e}"))?
        .secret_pkcs8_der()
        .to_vec();
    if let Ok(pair) = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
        use ring::signature::KeyPair;
        let public = pair.public_key().as_ref().to_vec();
        return Ok(PrivateKey {
            algorithm: Algorithm::Ed25519,
            der,
            public,
        });
    }
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der)
        .map_err(|e| format!("neither an Ed25519 nor a usable RSA key (2048 to 8192 bits): {e}"))?;
    let public = rsa_spki(&pair)?;
    Ok(PrivateKey {
        algorithm: Algorithm::Rsa,
        der,
        public,
    })
}

/// The SubjectPublicKeyInfo of an RSA key pair (ring gives the PKCS#1 RSAPublicKey).
fn rsa_spki(pair: &ring::signature::RsaKeyPair) -> Result<Vec<u8>, String> {
    use ring::signature::KeyPair;
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::EncodePublicKey;
    let pkcs1 = pair.public_key().as_ref();
    let public = rsa::RsaPublicKey::from_pkcs1_der(pkcs1)
        .map_err(|e| format!("reading the RSA public key: {e}"))?;
    Ok(public
        .to_public_key_der()
        .map_err(|e| format!("encoding the RSA public key: {e}"))?
        .as_bytes()
        .to_vec())
}

/// Read and parse `path`: a regular file, never through a symlink, bounded.
pub fn read_key(path: &Path, domain: &str) -> Result<PrivateKey, DkimError> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| key_err(domain, format!("{}: {e}", path.display())))?;
    let meta = f.metadata().map_err(|e| DkimError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    if !meta.is_file() {
        return Err(key_err(
            domain,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let mut text = Vec::new();
    (&mut f)
        .take(MAX_KEY + 1)
        .read_to_end(&mut text)
        .map_err(|e| DkimError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
    if text.len() as u64 > MAX_KEY {
        return Err(key_err(
            domain,
            format!("{} is larger than {MAX_KEY} bytes", path.display()),
        ));
    }
    parse_pem(&text).map_err(|e| key_err(domain, format!("{}: {e}", path.display())))
}

/// The state of `domain`; None when it has no key directory or no state file.
pub fn read_state(root: &Path, domain: &str) -> Result<Option<State>, DkimError> {
    let path = state_path(root, domain);
    let text = match crate::fsutil::read_limited(&path, state::MAX_STATE as u64) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DkimError::Io { path, source: e }),
    };
    state::parse(&text)
        .map(Some)
        .map_err(|e| key_err(domain, format!("{}: {e}", path.display())))
}

/// The domains with a key directory, sorted (names that are not domains skipped).
pub fn domains(root: &Path) -> std::io::Result<Vec<String>> {
    let dir = store_dir(root);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        if let Some(name) = e.file_name().to_str()
            && super::from::is_dns_name(name)
            && name == name.to_ascii_lowercase()
        {
            out.push(name.to_string());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_keys_round_trip_through_pem() {
        let text = generate(Algorithm::Ed25519).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let k = parse_pem(text.as_bytes()).unwrap();
        assert_eq!(k.algorithm, Algorithm::Ed25519);
        assert_eq!(k.public.len(), 32);
        assert_eq!(k.public_base64().len(), 44);
    }

    #[test]
    fn rsa_keys_round_trip_through_pem() {
        let text = generate(Algorithm::Rsa).unwrap();
        let k = parse_pem(text.as_bytes()).unwrap();
        assert_eq!(k.algorithm, Algorithm::Rsa);
        // SubjectPublicKeyInfo of a 2048-bit key.
        assert_eq!(k.public.len(), 294);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse_pem(b"").is_err());
        assert!(
            parse_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err()
        );
        assert!(parse_pem(b"\xff\xfe").is_err());
    }

    #[test]
    fn read_key_refuses_symlinks_and_directories() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real.pem");
        std::fs::write(&real, generate(Algorithm::Ed25519).unwrap()).unwrap();
        assert!(read_key(&real, "example.net").is_ok());
        let link = d.path().join("link.pem");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(read_key(&link, "example.net").is_err());
        assert!(read_key(d.path(), "example.net").is_err());
    }
}
