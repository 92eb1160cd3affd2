//! The one login path of the daemon's listeners (POP3, SMTP AUTH, ODMR AUTH): the
//! policy's guessing limits around the engine's accounts, one log line per outcome,
//! and the failure delay, so that no port is a faster way to guess a password.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Shared;
use crate::engine::accounts::Accounts;
use crate::engine::{AuthError, Authenticated, LoginContext};
use crate::policy::throttle::{self, Outcome};

/// How a login ended.
pub enum LoginResult {
    Accepted(Box<Authenticated>),
    /// Wrong, unknown, or refused unchecked (blocked); the delay has been served.
    Rejected,
    /// Nothing could be decided now.
    Temporary,
}

/// Who is logging in where, for the limits and the log.
pub struct Attempt<'a> {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub service: &'static str,
    pub mechanism: &'static str,
    pub login: &'a [u8],
}

/// Check one login: `verify` runs on a blocking thread (crypt is slow) with the
/// engine's accounts, the login and where the client connected to.
pub async fn check<F>(shared: &Arc<Shared>, a: Attempt<'_>, verify: F) -> LoginResult
where
    F: FnOnce(&Accounts, &[u8], LoginContext) -> Result<Authenticated, AuthError> + Send + 'static,
{
    let policy = &shared.policy;
    let (service, mech, client) = (a.service, a.mechanism, a.peer);
    let login = throttle::shown(a.login);
    let waited = tokio::time::Instant::now();
    let ticket = loop {
        match policy.logins.admit(a.peer.ip(), a.login, service) {
            Ok(t) => break t,
            // Attempts in flight fill the count: they may succeed, so wait for them.
            Err(r) if r.busy && waited.elapsed() < throttle::BUSY_WAIT => {
                tokio::time::sleep(throttle::BUSY_POLL).await;
            }
            Err(r) => {
                shared.metrics.login(service, "blocked");
                tracing::warn!(target: "auth", service, client = %client, login = %login, mech, "login refused unchecked: {}", throttle::refusal_text(&r));
                tokio::time::sleep(policy.failure_delay).await;
                return LoginResult::Rejected;
            }
        }
    };
    let ctx = LoginContext {
        local_ip: Some(a.local.ip()),
    };
    let engine = shared.engine.clone();
    let raw = a.login.to_vec();
    let r =
        tokio::task::spawn_blocking(move || verify(&engine.snapshot().accounts, &raw, ctx)).await;
    match r {
        Ok(Ok(acct)) => {
            policy.logins.finish(ticket, Outcome::Success);
            shared.metrics.login(service, "success");
            let as_stored = String::from_utf8_lossy(&acct.account.login).into_owned();
            tracing::info!(target: "auth", service, client = %client, login = %as_stored, mech, "login");
            LoginResult::Accepted(Box::new(acct))
        }
        Ok(Err(AuthError::Temporary(e))) => {
            policy.logins.finish(ticket, Outcome::Undecided);
            shared.metrics.login(service, "temporary");
            tracing::error!(target: "auth", service, client = %client, login = %login, "login trouble: {e}");
            LoginResult::Temporary
        }
        Ok(Err(e)) => {
            policy.logins.finish(ticket, Outcome::Failure);
            shared.metrics.login(service, "failure");
            tracing::warn!(target: "auth", service, client = %client, login = %login, mech, "login failed: {e}");
            tokio::time::sleep(policy.failure_delay).await;
            LoginResult::Rejected
        }
        Err(e) => {
            policy.logins.finish(ticket, Outcome::Undecided);
            shared.metrics.login(service, "temporary");
            tracing::error!(target: "auth", service, client = %client, "login check died: {e}");
            LoginResult::Temporary
        }
    }
}

/// SMTP and ODMR AUTH: the verdict, and the account's login (as stored in poppasswd)
/// when accepted.
pub async fn check_sasl(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    local: SocketAddr,
    service: &'static str,
    mechanism: crate::auth::Mechanism,
    login: Vec<u8>,
    credential: crate::auth::Credential,
) -> (crate::auth::AuthVerdict, Option<String>) {
    use crate::auth::{AuthVerdict, Credential};
    let attempt = Attempt {
        peer,
        local,
        service,
        mechanism: mechanism.name(),
        login: &login,
    };
    let r = check(
        shared,
        attempt,
        move |accounts, login, ctx| match &credential {
            Credential::Plain(p) => accounts.authenticate(login, p.expose(), ctx),
            Credential::CramMd5 { challenge, digest } => {
                accounts.authenticate_cram_md5(login, challenge.as_bytes(), digest.as_bytes(), ctx)
            }
        },
    )
    .await;
    match r {
        LoginResult::Accepted(a) => (
            AuthVerdict::Accepted,
            Some(String::from_utf8_lossy(&a.account.login).into_owned()),
        ),
        LoginResult::Rejected => (AuthVerdict::Rejected, None),
        LoginResult::Temporary => (AuthVerdict::Temporary, None),
    }
}
