//! SASL logins on the SMTP and ODMR ports, checked by the engine's accounts (the same
//! ones POP3 and the checkpassword use), with POP3's per-address failure blocking and
//! failure delay, so that no port is a faster way to guess a password.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use crate::engine::{AuthError, LoginContext};
use crate::odmr::{AuthVerdict, Credential, Mechanism};

/// Check one AUTH; the account's login (as stored in poppasswd) when accepted.
/// `service` names the port in the log.
pub async fn check(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    local: SocketAddr,
    service: &'static str,
    mechanism: Mechanism,
    login: Vec<u8>,
    credential: Credential,
) -> (AuthVerdict, Option<String>) {
    let ip = peer.ip();
    let mech = mechanism.name();
    let delay = Duration::from_millis(shared.config.pop3.failure_delay_ms);
    let shown: String = String::from_utf8_lossy(&login)
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    if shared.pop3_failures.is_blocked(ip, Instant::now()) {
        tracing::warn!(target: "auth", service, client = %peer, login = %shown, mech, "blocked address");
        tokio::time::sleep(delay).await;
        return (AuthVerdict::Rejected, None);
    }
    let ctx = LoginContext {
        local_ip: Some(local.ip()),
    };
    let engine = shared.engine.clone();
    let r = tokio::task::spawn_blocking(move || {
        let snap = engine.snapshot();
        match &credential {
            Credential::Plain(p) => snap.accounts.authenticate(&login, p.expose(), ctx),
            Credential::CramMd5 { challenge, digest } => snap.accounts.authenticate_cram_md5(
                &login,
                challenge.as_bytes(),
                digest.as_bytes(),
                ctx,
            ),
        }
    })
    .await;
    match r {
        Ok(Ok(a)) => {
            shared.pop3_failures.record_success(ip);
            let login = String::from_utf8_lossy(&a.account.login).into_owned();
            tracing::info!(target: "auth", service, client = %peer, login = %login, mech, "login");
            (AuthVerdict::Accepted, Some(login))
        }
        Ok(Err(AuthError::Temporary(e))) => {
            tracing::error!(target: "auth", service, client = %peer, "login trouble: {e}");
            (AuthVerdict::Temporary, None)
        }
        Ok(Err(e)) => {
            shared.pop3_failures.record_failure(ip, Instant::now());
            tracing::warn!(target: "auth", service, client = %peer, login = %shown, mech, "login failed: {e}");
            tokio::time::sleep(delay).await;
            (AuthVerdict::Rejected, None)
        }
        Err(_) => (AuthVerdict::Temporary, None),
    }
}
