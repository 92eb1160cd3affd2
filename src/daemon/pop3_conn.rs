//! One POP3 connection: the thin async shell around `pop3::Session`. It checks logins
//! with the engine (on a blocking thread: crypt is slow), applies the failure delay and
//! the per-address block, serves the account's Maildir with exact sizes, streams
//! messages through the session's encoder, and applies deletions only at QUIT.
//!
//! The built-in server runs as the single mail user; accounts owned by another uid
//! need the checkpassword program instead, and are refused with a log line saying so.

use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Shared;
use crate::engine::Authenticated;
use crate::maildir::{Entry, Maildir};
use crate::policy::Listener;
use crate::policy::conn::Permit;
use crate::pop3::{
    Action, AuthVerdict, Connection, Credential, MaildropError, MessageInfo, RetrieveError,
    Session, UpdateReport,
};

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

struct Conn {
    peer: SocketAddr,
    local: SocketAddr,
    shared: Arc<Shared>,
    account: Option<Authenticated>,
    entries: Vec<Entry>,
    /// Held for the session when `session_lock` is on.
    _lock: Option<File>,
}

enum Ended<S> {
    Closed,
    StartTls(S),
}

pub async fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    permit: Permit,
    implicit_tls: bool,
) {
    let local = stream.local_addr().unwrap_or(peer);
    if let Some(why) = permit.refusal {
        shared.metrics.refused("pop3", "limit");
        tracing::warn!(target: "pop3", client = %peer, "refused connection: {why}");
        let mut stream = stream;
        let msg = format!("-ERR [SYS/TEMP] {why}\r\n");
        super::wire::write_all(&mut stream, msg.as_bytes()).await;
        return;
    }
    let mut conn = Conn {
        peer,
        local,
        shared: shared.clone(),
        account: None,
        entries: Vec::new(),
        _lock: None,
    };
    // One reader for the connection, across a TLS upgrade: the session's deadline
    // counts from the connection, not from the handshake.
    let mut reader =
        super::wire::ClientReader::new(32 << 10, shared.policy.deadlines(Listener::Pop3));
    let connection = |tls| Connection {
        tls_active: tls,
        loopback: peer.ip().is_loopback(),
        apop_timestamp: Some(super::wire::challenge(&shared.hostname)),
    };
    let Some(pop3) = shared.pop3.clone() else {
        return;
    };
    if implicit_tls {
        let Some(acceptor) = shared.tls.clone() else {
            return;
        };
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => {
                let mut session = Session::new(pop3, connection(true));
                let _ = drive(&mut session, tls, &mut conn, &mut reader).await;
            }
            _ => tracing::info!(target: "pop3", client = %peer, "TLS handshake failed"),
        }
        return;
    }
    let mut session = Session::new(pop3, connection(false));
    if let Ended::StartTls(plain) = drive(&mut session, stream, &mut conn, &mut reader).await {
        let Some(acceptor) = shared.tls.clone() else {
            return;
        };
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(plain)).await {
            Ok(Ok(tls)) => {
                session.tls_started();
                let _ = drive(&mut session, tls, &mut conn, &mut reader).await;
            }
            _ => tracing::info!(target: "pop3", client = %peer, "TLS handshake failed"),
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
    // Replies and message bodies gather here and go out in large writes: pipelined
    // RETRs of small messages then cost one write for many, not three for each.
    let mut out = Vec::with_capacity(OUT_CHUNK + (64 << 10));
    loop {
        while let Some(action) = session.next_action() {
            match action {
                Action::Authenticate { login, credential } => {
                    let v = conn.authenticate(login, credential).await;
                    session.answer_auth(v);
                }
                Action::OpenMaildrop => {
                    let r = conn.open_maildrop().await;
                    session.answer_maildrop(r);
                }
                Action::Retrieve { index, .. } => {
                    let Some(entry) = conn.entries.get(index).cloned() else {
                        session.retrieve_failed(RetrieveError::Gone);
                        continue;
                    };
                    let file = match crate::maildir::open_message_sized(&entry.path) {
                        Ok(f) => f,
                        Err(e) if e.is_not_found() => {
                            session.retrieve_failed(RetrieveError::Gone);
                            continue;
                        }
                        Err(e) => {
                            tracing::error!(target: "pop3", client = %conn.peer, file = %entry.rel, "cannot retrieve: {e}");
                            session.retrieve_failed(RetrieveError::Unreadable);
                            continue;
                        }
                    };
                    let Some(enc) = session.retrieve_opened() else {
                        continue;
                    };
                    out.extend_from_slice(&session.take_output());
                    let pace = Pace::new(reader.limits());
                    if !stream_message(&mut stream, file, enc, &mut out, pace).await {
                        tracing::info!(target: "pop3", client = %conn.peer, "closing: the client is gone or took the message too slowly");
                        // A response cut short cannot be repaired: close, change nothing.
                        return Ended::Closed;
                    }
                    session.retrieve_done();
                }
                Action::Update { delete, seen } => {
                    // What was retrieved goes out before the slower deletions start.
                    if !flush_out(&mut stream, session, &mut out).await {
                        return Ended::Closed;
                    }
                    let r = conn.update(delete, seen).await;
                    session.answer_update(r);
                }
                Action::StartTls => {
                    if !flush_out(&mut stream, session, &mut out).await {
                        return Ended::Closed;
                    }
                    return Ended::StartTls(stream);
                }
                Action::Flush => {
                    if !flush_out(&mut stream, session, &mut out).await {
                        return Ended::Closed;
                    }
                }
                Action::Close => {
                    let _ = flush_out(&mut stream, session, &mut out).await;
                    let _ = stream.shutdown().await;
                    return Ended::Closed;
                }
                Action::Refused { command, reply } => {
                    tracing::info!(target: "pop3", client = %conn.peer, "refused {command:?}: {reply:?}");
                }
            }
        }
        if !flush_out(&mut stream, session, &mut out).await {
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
                tracing::info!(target: "pop3", client = %conn.peer, "closing: {}", why.describe());
                session.timeout();
            }
        }
    }
}

/// Pending output is written once it reaches this size (and whenever the client's
/// pipelined commands are used up).
const OUT_CHUNK: usize = 64 << 10;

/// Write what is pending plus the session's replies; false if the client is gone.
async fn flush_out<S: AsyncWrite + Unpin>(
    stream: &mut S,
    session: &mut Session,
    out: &mut Vec<u8>,
) -> bool {
    out.extend_from_slice(&session.take_output());
    let ok = super::wire::write_all(stream, out).await;
    out.clear();
    ok
}

/// The minimum rate a response must be taken at (`policy/deadline.rs`): a reader
/// slower than that after the grace period is dropped.
struct Pace {
    limits: crate::policy::deadline::Limits,
    since: tokio::time::Instant,
    sent: u64,
}

impl Pace {
    fn new(limits: &crate::policy::deadline::Limits) -> Pace {
        Pace {
            limits: *limits,
            since: tokio::time::Instant::now(),
            sent: 0,
        }
    }

    /// Write `out` within the pace (and never slower than one write's own bound).
    async fn write<S: AsyncWrite + Unpin>(&mut self, stream: &mut S, out: &[u8]) -> bool {
        self.sent += out.len() as u64;
        let bound = tokio::time::Instant::now() + super::wire::WRITE_TIMEOUT;
        let due = crate::policy::deadline::send_due(&self.limits, Duration::ZERO, self.sent)
            .and_then(|d| self.since.checked_add(d))
            .map_or(bound, |d| d.min(bound));
        super::wire::write_all_by(stream, out, due).await
    }
}

/// Read the file in pieces through the encoder into `out`, writing whenever a chunk's
/// worth is pending; the tail stays in `out` for the next replies to join.
async fn stream_message<S: AsyncWrite + Unpin>(
    stream: &mut S,
    (mut file, len): (File, u64),
    mut enc: crate::pop3::RetrEncoder,
    out: &mut Vec<u8>,
    mut pace: Pace,
) -> bool {
    let mut chunk = [0u8; 32 << 10];
    // Up to the length the open found: no last read only to learn of the end (a
    // Maildir message does not grow; one that shrank ends at its real end).
    let mut left = len;
    while !enc.is_done() && left > 0 {
        let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        // Local file reads are fast; doing them inline avoids a thread hop per chunk.
        let n = match file.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => return false,
        };
        left -= n as u64;
        enc.feed(&chunk[..n], out);
        if out.len() >= OUT_CHUNK {
            if !pace.write(stream, out).await {
                return false;
            }
            out.clear();
        }
    }
    enc.finish(out);
    true
}

/// The exact octet count RETR sends (CRLF line ends), from `,W=` or by reading once.
fn crlf_size(e: &Entry) -> Result<u64, crate::maildir::OpenError> {
    if let Some(w) = e.crlf_size_hint() {
        return Ok(w);
    }
    let data = crate::maildir::read_message(&e.path, u64::MAX - 1)?;
    Ok(crate::maildir::crlf_size(&[&data]))
}

/// A scanned maildrop: its files, what the session is told, and the session lock.
struct Opened {
    entries: Vec<Entry>,
    infos: Vec<MessageInfo>,
    lock: Option<File>,
}

impl Conn {
    async fn authenticate(&mut self, login: Vec<u8>, credential: Credential) -> AuthVerdict {
        let shared = self.shared.clone();
        let attempt = super::login::Attempt {
            peer: self.peer,
            local: self.local,
            service: "pop3",
            mechanism: credential.mechanism(),
            login: &login,
        };
        let r = super::login::check(
            &shared,
            attempt,
            move |accounts, login, ctx| match &credential {
                Credential::Pass(p) | Credential::Plain(p) => {
                    accounts.authenticate(login, p.expose(), ctx)
                }
                Credential::Apop { timestamp, digest } => {
                    accounts.authenticate_apop(login, timestamp.as_bytes(), digest.as_bytes(), ctx)
                }
            },
        )
        .await;
        let a = match r {
            super::login::LoginResult::Accepted(a) => a,
            super::login::LoginResult::Rejected => return AuthVerdict::Rejected,
            super::login::LoginResult::Temporary => {
                return AuthVerdict::Temporary("temporary trouble, try again later".into());
            }
        };
        let me = nix::unistd::Uid::effective().as_raw();
        if a.owner.uid != me {
            tracing::warn!(
                target: "pop3",
                client = %self.peer,
                login = %String::from_utf8_lossy(&a.account.login),
                "login refused: the account is owned by uid {} but this server runs as uid {me}; serve such accounts through `turnmail checkpassword` (see contrib/)",
                a.owner.uid
            );
            tokio::time::sleep(shared.policy.failure_delay).await;
            return AuthVerdict::Rejected;
        }
        let (ip, login) = (self.peer.ip(), a.account.login.clone());
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || s.access.record_pop_login(ip, &login)).await;
        self.account = Some(*a);
        AuthVerdict::Accepted
    }

    async fn open_maildrop(&mut self) -> Result<Vec<MessageInfo>, MaildropError> {
        let Some(a) = &self.account else {
            return Err(MaildropError::Temporary("not logged in".into()));
        };
        let path: PathBuf = a.account.maildir();
        let lock = self.shared.config.pop3.session_lock;
        let r = tokio::task::spawn_blocking(move || -> Result<Opened, MaildropError> {
            let md = Maildir::new(&path);
            if !path.join("new").is_dir() {
                return Err(MaildropError::Permanent(
                    "this account has no Maildir".into(),
                ));
            }
            let held = if lock {
                // Never through a symlink planted under the lock's name.
                let f = File::options()
                    .create(true)
                    .append(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(path.join(".turnmail-pop3.lock"))
                    .map_err(|e| MaildropError::Temporary(e.to_string()))?;
                match f.try_lock() {
                    Ok(()) => Some(f),
                    Err(std::fs::TryLockError::WouldBlock) => return Err(MaildropError::InUse),
                    Err(std::fs::TryLockError::Error(e)) => {
                        return Err(MaildropError::Temporary(e.to_string()));
                    }
                }
            } else {
                None
            };
            let _ = md.clean_tmp(SystemTime::now());
            let entries = md
                .scan(SystemTime::now())
                .map_err(|e| MaildropError::Temporary(format!("scanning the Maildir: {e}")))?;
            let mut kept = Vec::with_capacity(entries.len());
            let mut infos = Vec::with_capacity(entries.len());
            for e in entries {
                let size = match crlf_size(&e) {
                    Ok(s) => s,
                    // Removed since the scan (another session): simply not listed.
                    Err(err) if err.is_not_found() => continue,
                    Err(err) => {
                        tracing::error!(target: "pop3", file = %e.rel, "cannot read message, not listed: {err}");
                        continue;
                    }
                };
                infos.push(MessageInfo {
                    uidl: e.unique.clone(),
                    size,
                    in_new: e.in_new,
                });
                kept.push(e);
            }
            Ok(Opened {
                entries: kept,
                infos,
                lock: held,
            })
        })
        .await
        .map_err(|e| MaildropError::Temporary(format!("internal error: {e}")))??;
        self.entries = r.entries;
        self._lock = r.lock;
        Ok(r.infos)
    }

    async fn update(&mut self, delete: Vec<usize>, seen: Vec<usize>) -> UpdateReport {
        let entries = self.entries.clone();
        let Some(a) = &self.account else {
            return UpdateReport::default();
        };
        let md = Maildir::new(a.account.maildir());
        let peer = self.peer;
        let warn_percent = self.shared.config.quota.warn_percent;
        tokio::task::spawn_blocking(move || {
            let mut report = UpdateReport::default();
            // What went, for the Maildir's quota file (one line for all of them).
            let (mut bytes, mut messages) = (0u64, 0u64);
            for i in &delete {
                let Some(e) = entries.get(*i) else { continue };
                match std::fs::remove_file(&e.path) {
                    Ok(()) => {
                        bytes += crate::quota::enforce::counted_size(&e.unique, e.size);
                        messages += 1;
                    }
                    // Gone already: whoever removed it accounted for it.
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => {
                        tracing::error!(target: "pop3", client = %peer, "cannot delete {}: {err}", e.rel);
                        report.not_removed += 1;
                    }
                }
            }
            crate::quota::enforce::after_removal(md.path(), bytes, messages, warn_percent);
            for i in &seen {
                if let Some(e) = entries.get(*i) {
                    let _ = md.move_to_cur(e, "S");
                }
            }
            report
        })
        .await
        // The blocking task died: say that not everything was removed.
        .unwrap_or(UpdateReport { not_removed: 1 })
    }
}
