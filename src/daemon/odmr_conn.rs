//! One ODMR connection (RFC 2645, port 366): the thin async shell around
//! `odmr::Session`. It checks logins with the engine, decides ATRN from site.toml
//! entitlements and the spools, and on "turn" hands the same connection to the flush
//! client, so the customer's MTA receives the mail of all the sites it asked for over
//! the link it opened, in one session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Shared;
use super::flusher::Flusher;
use crate::odmr::{Action, AtrnVerdict, AuthVerdict, Connection, Credential, Mechanism, Session};
use crate::policy::Listener;
use crate::policy::conn::Permit;
use crate::spool::site::{Site, TlsPolicy};

struct Conn {
    peer: SocketAddr,
    local: SocketAddr,
    shared: Arc<Shared>,
    /// The authenticated login (as stored in poppasswd).
    login: Option<String>,
    /// The sites chosen by ATRN, flushed one after another once the connection turns
    /// around.
    turn_to: Vec<Site>,
}

enum Ended<S> {
    Closed,
    StartTls(S),
    Reversed(S),
}

pub async fn handle(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, permit: Permit) {
    let local = stream.local_addr().unwrap_or(peer);
    if let Some(why) = permit.refusal {
        shared.metrics.refused("odmr", "limit");
        tracing::warn!(target: "odmr", client = %peer, "refused connection: {why}");
        let mut stream = stream;
        let msg = format!("421 4.7.0 {} {why}\r\n", shared.hostname);
        super::wire::write_all(&mut stream, msg.as_bytes()).await;
        return;
    }
    let cfg = shared.odmr.clone();
    let mut session = Session::new(
        cfg,
        Connection {
            tls_active: false,
            challenge: super::wire::challenge(&shared.hostname),
        },
    );
    let mut conn = Conn {
        peer,
        local,
        shared: shared.clone(),
        login: None,
        turn_to: Vec::new(),
    };
    // One reader for the connection, across a TLS upgrade: the session's deadline
    // counts from the connection, not from the handshake.
    let mut reader = super::wire::ClientReader::new(8192, shared.policy.deadlines(Listener::Odmr));
    match drive(&mut session, stream, &mut conn, &mut reader).await {
        Ended::Closed => {}
        Ended::Reversed(s) => conn.reverse(s, false).await,
        Ended::StartTls(plain) => {
            let Some(acceptor) = shared.tls.clone() else {
                return;
            };
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(30), acceptor.accept(plain)).await
            else {
                tracing::info!(target: "odmr", client = %peer, "TLS handshake failed");
                return;
            };
            session.tls_started();
            if let Ended::Reversed(s) = drive(&mut session, tls, &mut conn, &mut reader).await {
                conn.reverse(s, true).await;
            }
        }
    }
    drop(permit);
}

async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session,
    mut stream: S,
    conn: &mut Conn,
    reader: &mut super::wire::ClientReader,
) -> Ended<S> {
    loop {
        while let Some(action) = session.next_action() {
            match action {
                Action::Authenticate {
                    mechanism,
                    login,
                    credential,
                } => {
                    let v = conn.authenticate(mechanism, login, credential).await;
                    session.answer_auth(v);
                }
                Action::Atrn { domains } => {
                    let v = conn.atrn(&domains);
                    session.answer_atrn(v);
                }
                Action::StartTls => {
                    if !super::wire::write_all(&mut stream, &session.take_output()).await {
                        return Ended::Closed;
                    }
                    return Ended::StartTls(stream);
                }
                Action::Reverse => {
                    if !super::wire::write_all(&mut stream, &session.take_output()).await {
                        return Ended::Closed;
                    }
                    return Ended::Reversed(stream);
                }
                Action::Close => {
                    let _ = super::wire::write_all(&mut stream, &session.take_output()).await;
                    let _ = stream.shutdown().await;
                    return Ended::Closed;
                }
                Action::Refused { command, reply } => {
                    tracing::info!(target: "odmr", client = %conn.peer, "refused {command:?}: {}", reply.lines.join(" "));
                }
            }
        }
        if !super::wire::write_all(&mut stream, &session.take_output()).await {
            return Ended::Closed;
        }
        if session.is_closed() {
            let _ = stream.shutdown().await;
            return Ended::Closed;
        }
        match reader
            .read(&mut stream, session.input_room(), session.phase())
            .await
        {
            super::wire::Input::Data(bytes) => {
                session.receive(bytes);
            }
            super::wire::Input::Closed => return Ended::Closed,
            super::wire::Input::Expired(why) => {
                tracing::info!(target: "odmr", client = %conn.peer, "closing: {}", why.describe());
                session.timeout();
            }
        }
    }
}

impl Conn {
    async fn authenticate(
        &mut self,
        mechanism: Mechanism,
        login: Vec<u8>,
        credential: Credential,
    ) -> AuthVerdict {
        let (verdict, login) = super::login::check_sasl(
            &self.shared,
            self.peer,
            self.local,
            "odmr",
            mechanism,
            login,
            credential,
        )
        .await;
        if login.is_some() {
            self.login = login;
        }
        verdict
    }

    /// RFC 2645: all or nothing. Every named domain must belong to a site that lists
    /// this account; none named means all of the account's sites.
    fn atrn(&mut self, domains: &[String]) -> AtrnVerdict {
        self.shared.metrics.request("atrn");
        let Some(login) = self.login.clone() else {
            return AtrnVerdict::NotEntitled;
        };
        let policy = &self.shared.policy;
        if !policy
            .requests
            .allow(policy.client(self.peer.ip()), Instant::now())
        {
            return AtrnVerdict::RateLimited;
        }
        let sites = self.shared.flusher.sites();
        let entitled: Vec<&Site> = sites.sites.iter().filter(|s| s.entitles(&login)).collect();
        let chosen: Vec<&Site> = if domains.is_empty() {
            entitled.clone()
        } else {
            let mut chosen = Vec::new();
            for d in domains {
                let receiving = sites.receiving(&d.to_ascii_lowercase());
                let Some(s) = entitled
                    .iter()
                    .find(|s| receiving.iter().any(|r| r.name == s.name))
                else {
                    tracing::info!(target: "odmr", client = %self.peer, login = %login, "ATRN {d}: not entitled");
                    return AtrnVerdict::NotEntitled;
                };
                if !chosen.iter().any(|c: &&Site| c.name == s.name) {
                    chosen.push(s);
                }
            }
            chosen
        };
        if chosen.is_empty() {
            return AtrnVerdict::NotEntitled;
        }
        let with_mail: Vec<&Site> = chosen
            .into_iter()
            .filter(|s| Flusher::queued(s) > 0)
            .collect();
        if with_mail.is_empty() {
            return AtrnVerdict::NoMail;
        }
        // Sites another flush holds are left for it; the rest turn together.
        let free: Vec<Site> = with_mail
            .iter()
            .filter(|s| !self.shared.flusher.running_anywhere(s))
            .map(|s| (*s).clone())
            .collect();
        if free.is_empty() {
            return AtrnVerdict::RateLimited;
        }
        let names: Vec<&str> = free.iter().map(|s| s.name.as_str()).collect();
        tracing::info!(target: "odmr", client = %self.peer, login = %login, "ATRN turns for {} of {} sites with mail: {}", free.len(), with_mail.len(), names.join(","));
        self.turn_to = free;
        AtrnVerdict::Turn
    }

    async fn reverse<S>(&mut self, stream: S, tls: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut sites = std::mem::take(&mut self.turn_to);
        if sites.is_empty() {
            return;
        }
        if tls {
            // Already encrypted: no STARTTLS inside the reversed session.
            for site in &mut sites {
                site.settings.tls = TlsPolicy::Off;
            }
        }
        match self.shared.flusher.flush_over(&sites, stream).await {
            Some(results) => {
                for (site, r) in results {
                    match r {
                        Some(r) => {
                            tracing::info!(target: "odmr", client = %self.peer, site = %site.name, "flushed over ODMR: {}", r.exit_code())
                        }
                        None => {
                            tracing::info!(target: "odmr", client = %self.peer, site = %site.name, "a flush of this site was already running")
                        }
                    }
                }
            }
            None => {
                let names: Vec<&str> = sites.iter().map(|s| s.name.as_str()).collect();
                tracing::info!(target: "odmr", client = %self.peer, sites = %names.join(","), "flushes of these sites were already running")
            }
        }
    }
}
