//! [`Signer`]: the `DKIM-Signature:` field for a message, made with the active key of
//! its From domain, or of the nearest parent domain that has one (a signature by a
//! parent domain still aligns for DMARC's relaxed mode).
//!
//! Held once by the daemon and shared by its connections: `sign` takes `&self`. Each
//! domain's keys are loaded on first use and kept; a `stat` of the domain's
//! `selectors` file per message tells whether they changed (a rotation replaces that
//! file, which is written after the new key). A broken key directory is reported for
//! each message it would sign, without reading it again until the file changes.
//!
//! Stored messages have LF line ends; the signature covers what goes on the wire, the
//! CRLF form made by the same rules as the flush client's (`client::Encoder`): LF
//! becomes CRLF, a CRLF already there stays, a missing last line end is added.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};

use super::keys::{self, Algorithm, PrivateKey};
use super::{DkimError, from, header};
use crate::spool::stamp::Stamp;

/// The fields signed. From is listed twice: a second From added on the way then breaks
/// the signature (oversigning). Fields a message lacks are signed as absent, so they
/// cannot be added later either.
pub const SIGNED_FIELDS: &[&str] = &[
    "From",
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "In-Reply-To",
    "References",
];

/// The signature made for a message and who made it.
#[derive(Debug, Clone)]
pub struct Signed {
    /// `DKIM-Signature: ...` with LF line ends, folded, ending in LF: put it in front
    /// of the message.
    pub header: Vec<u8>,
    pub domain: String,
    pub selector: String,
    pub algorithm: Algorithm,
}

/// What became of one message, for counters and log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Signed,
    /// No key covers the From domain.
    NoKey,
    /// The message cannot be signed as it is (no From, several, unreadable headers).
    Malformed,
    /// A key could not be used, or signing failed.
    Failed,
}

impl Outcome {
    pub fn of<T>(result: &Result<Option<T>, DkimError>) -> Outcome {
        match result {
            Ok(Some(_)) => Outcome::Signed,
            Ok(None) => Outcome::NoKey,
            Err(e) if e.is_malformed() => Outcome::Malformed,
            Err(_) => Outcome::Failed,
        }
    }

    /// A label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Signed => "signed",
            Outcome::NoKey => "no_key",
            Outcome::Malformed => "malformed",
            Outcome::Failed => "failed",
        }
    }
}

enum KeySigner {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

/// A domain's active key, ready to sign.
struct Active {
    domain: String,
    selector: String,
    algorithm: Algorithm,
    signer: KeySigner,
}

/// What was loaded for a domain, the stamp of the `selectors` file it came from
/// (None: there was none) and when that stamp was taken.
struct Loaded {
    stamp: Option<Stamp>,
    checked: Instant,
    active: Result<Option<Arc<Active>>, String>,
}

/// How long a domain's `selectors` file is trusted unchanged without a stat: a key
/// made or rotated is used by the messages of the next second, and a busy relay does
/// not stat a file (mostly one that does not exist) for every message.
const RECHECK: Duration = Duration::from_secs(1);

/// Domains remembered at most (From domains are the senders' choice): beyond this the
/// memory starts afresh.
const MAX_REMEMBERED: usize = 4096;

pub struct Signer {
    root: PathBuf,
    cache: Mutex<HashMap<String, Loaded>>,
    recheck: Duration,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer over the keys of `root` (`ROOT/dkim/`). Nothing is read yet: a root
    /// without keys signs nothing, and keys made later are found within a second.
    pub fn open(root: &Path) -> Signer {
        Signer::with_recheck(root, RECHECK)
    }

    /// A signer that trusts a `selectors` file it looked at for `recheck`.
    pub(crate) fn with_recheck(root: &Path, recheck: Duration) -> Signer {
        Signer {
            root: root.to_path_buf(),
            cache: Mutex::new(HashMap::new()),
            recheck,
        }
    }

    /// The `DKIM-Signature:` field to prepend to `message_lf` (LF line ends, folded);
    /// None when no key covers its From domain.
    pub fn sign(&self, message_lf: &[u8]) -> Result<Option<Vec<u8>>, DkimError> {
        Ok(self.sign_detailed(message_lf)?.map(|s| s.header))
    }

    /// [`Signer::sign`], saying which key signed.
    pub fn sign_detailed(&self, message_lf: &[u8]) -> Result<Option<Signed>, DkimError> {
        let value = header::from_value(message_lf)?;
        let domain = from::domain(value)?;
        let Some(active) = self.key_for(&domain)? else {
            return Ok(None);
        };
        let header = match &active.signer {
            KeySigner::Rsa(s) => sign_with(s, message_lf),
            KeySigner::Ed25519(s) => sign_with(s, message_lf),
        }
        .map_err(|e| DkimError::Crypto {
            domain: active.domain.clone(),
            reason: e.to_string(),
        })?;
        Ok(Some(Signed {
            header,
            domain: active.domain.clone(),
            selector: active.selector.clone(),
            algorithm: active.algorithm,
        }))
    }

    /// The active key of `domain` or of its nearest parent with keys.
    fn key_for(&self, domain: &str) -> Result<Option<Arc<Active>>, DkimError> {
        let mut d = domain;
        loop {
            if let Some(a) = self.active(d)? {
                return Ok(Some(a));
            }
            match d.split_once('.') {
                // A bare top-level domain never signs.
                Some((_, parent)) if parent.contains('.') => d = parent,
                _ => return Ok(None),
            }
        }
    }

    /// `domain`'s own active key, reloaded when its `selectors` file changed.
    fn active(&self, domain: &str) -> Result<Option<Arc<Active>>, DkimError> {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let recent = cache
            .get(domain)
            .is_some_and(|l| now.saturating_duration_since(l.checked) < self.recheck);
        if !recent {
            let stamp = Stamp::of(&keys::state_path(&self.root, domain));
            match cache.get_mut(domain) {
                Some(l) if l.stamp == stamp => l.checked = now,
                _ => {
                    let active = match stamp {
                        Some(_) => load(&self.root, domain).map_err(|e| e.to_string()),
                        None => Ok(None),
                    };
                    if cache.len() >= MAX_REMEMBERED {
                        cache.clear();
                    }
                    cache.insert(
                        domain.to_string(),
                        Loaded {
                            stamp,
                            checked: now,
                            active,
                        },
                    );
                }
            }
        }
        match cache.get(domain).map(|l| &l.active) {
            Some(Ok(a)) => Ok(a.clone()),
            Some(Err(reason)) => Err(DkimError::Key {
                domain: domain.to_string(),
                reason: reason.clone(),
            }),
            None => Ok(None),
        }
    }
}

/// Read `domain`'s state and its active key.
fn load(root: &Path, domain: &str) -> Result<Option<Arc<Active>>, DkimError> {
    let Some(state) = keys::read_state(root, domain)? else {
        return Ok(None);
    };
    let Some(selector) = state.active else {
        return Ok(None);
    };
    let key = keys::read_key(&keys::key_path(root, domain, &selector), domain)?;
    let signer = signer_for(&key, domain, &selector)?;
    Ok(Some(Arc::new(Active {
        domain: domain.to_string(),
        selector,
        algorithm: key.algorithm,
        signer,
    })))
}

fn signer_for(key: &PrivateKey, domain: &str, selector: &str) -> Result<KeySigner, DkimError> {
    let bad = |e: mail_auth::Error| DkimError::Key {
        domain: domain.to_string(),
        reason: format!("selector {selector}: {e}"),
    };
    Ok(match key.algorithm {
        Algorithm::Rsa => {
            use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
            let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.der()));
            KeySigner::Rsa(configure(
                RsaKey::<Sha256>::from_key_der(der).map_err(bad)?,
                domain,
                selector,
            ))
        }
        Algorithm::Ed25519 => KeySigner::Ed25519(configure(
            Ed25519Key::from_pkcs8_maybe_unchecked_der(key.der()).map_err(bad)?,
            domain,
            selector,
        )),
    })
}

fn configure<T: SigningKey>(key: T, domain: &str, selector: &str) -> DkimSigner<T, Done> {
    DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(SIGNED_FIELDS.iter().copied())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

/// Sign the CRLF form of `message_lf`, streamed through a small buffer; the field
/// comes back with LF line ends.
fn sign_with<T: SigningKey>(
    signer: &DkimSigner<T, Done>,
    message_lf: &[u8],
) -> mail_auth::Result<Vec<u8>>
where
    <<T as SigningKey>::Hasher as mail_auth::common::crypto::HashImpl>::Context:
        mail_auth::common::crypto::HashContext,
{
    const CHUNK: usize = 16 * 1024;
    let mut stream = signer.sign_streaming();
    let mut encoder = crate::client::Encoder::bdat();
    let mut buf = Vec::with_capacity(CHUNK + CHUNK / 8 + 8);
    for piece in message_lf.chunks(CHUNK) {
        buf.clear();
        encoder.encode(piece, &mut buf);
        stream.write(&buf);
    }
    buf.clear();
    encoder.finish(&mut buf);
    stream.write(&buf);
    let signature = stream.finish()?;
    let mut out = Vec::with_capacity(600);
    signature.write_header(&mut out);
    Ok(crlf_to_lf(&out))
}

fn crlf_to_lf(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests;
