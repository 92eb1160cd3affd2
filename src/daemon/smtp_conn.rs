//! One SMTP connection (port 25, or a submission port): the thin async shell around
//! `smtp::Session`. It reads and writes bytes, finds at connect whether the client may
//! relay by its address (`submit::Access`), asks the engine about recipients (foreign
//! ones resolve as relays only with a grant), checks senders and limits of granted
//! sessions, runs deliveries on blocking threads, upgrades to TLS when the session says
//! so, and logs. All protocol decisions are the session's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Shared;
use crate::datetime::{now_unix, rfc5322};
use crate::deliver::transaction::{self, Verdict};
use crate::engine::Resolution;
use crate::policy::Listener;
use crate::policy::conn::Permit;
use crate::smtp::{
    Action, MessageVerdict, RcptVerdict, Reply, SenderVerdict, Session, Trace, Violation,
    received_line,
};
use crate::submit::{AtConnect, Grant};

/// Which kind of listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Port 25: mail for our domains; relaying only with a grant.
    Mx,
    /// Port 587 (RFC 6409), or 465 with `implicit_tls` (RFC 8314).
    Submission { implicit_tls: bool },
}

impl Role {
    /// For the log and the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Role::Mx => "smtp",
            Role::Submission { .. } => "submission",
        }
    }
}

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

struct Conn {
    peer: SocketAddr,
    local: SocketAddr,
    shared: Arc<Shared>,
    /// The account of an accepted AUTH (as stored in poppasswd), for ETRN.
    login: Option<String>,
    role: Role,
    /// A relay right found at connect (tcp.smtp, a site's networks, POP-before-SMTP).
    address_grant: Option<Grant>,
    /// A relay right from AUTH (submission ports; port 25 with `auth_relay`).
    auth_grant: Option<Grant>,
    /// Whose counts the limits charge for the current transaction.
    sender_key: Option<String>,
    /// Recipients accepted in the current transaction, with how they resolved.
    rcpts: Vec<(Vec<u8>, Resolution)>,
}

enum Ended<S> {
    Closed,
    StartTls(S),
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `addrs`: the client's address, and the local one when the listener's address
/// already says it.
pub async fn handle(
    mut stream: TcpStream,
    addrs: (SocketAddr, Option<SocketAddr>),
    shared: Arc<Shared>,
    permit: Permit,
    role: Role,
) {
    let (peer, bound) = addrs;
    let label = role.name();
    if let Some(why) = permit.refusal {
        shared.metrics.refused(label, "limit");
        tracing::warn!(target: "smtp", client = %peer, "refused connection: {why}");
        let msg = format!("421 4.7.0 {} {why}\r\n", shared.hostname);
        super::wire::write_all(&mut stream, msg.as_bytes()).await;
        return;
    }
    let policy = &shared.policy;
    if policy
        .penalties
        .is_penalized(policy.client(peer.ip()), std::time::Instant::now())
    {
        shared.metrics.refused(label, "penalty");
        tracing::info!(target: "smtp", client = %peer, "refused connection: penalized for refused recipients");
        let reply = crate::smtp::texts::penalized(&shared.hostname);
        super::wire::write_all(&mut stream, &reply.to_bytes()).await;
        let _ = stream.shutdown().await;
        return;
    }
    let rules = shared.access.tcp_rules();
    let name = shared.access.client_name(&rules, peer.ip()).await;
    let address_grant = match shared.access.at_connect(
        &rules,
        peer.ip(),
        name.as_deref(),
        &shared.flusher.sites().sites,
    ) {
        AtConnect::Deny { line } => {
            shared.metrics.refused(label, "tcp_rules");
            tracing::info!(target: "smtp", client = %peer, name = name.as_deref().unwrap_or(""), "refused connection: tcp.smtp line {line} denies it");
            let reply = crate::smtp::texts::access_denied(&shared.hostname);
            super::wire::write_all(&mut stream, &reply.to_bytes()).await;
            let _ = stream.shutdown().await;
            return;
        }
        AtConnect::Go(grant) => grant,
    };
    if let Some(g) = &address_grant {
        tracing::info!(target: "smtp", client = %peer, listener = label, "may relay: {}", g.describe());
    }
    let local = match bound {
        Some(a) => a,
        None => stream.local_addr().unwrap_or(peer),
    };
    let cfg = match role {
        Role::Mx => shared.smtp.clone(),
        Role::Submission { .. } => shared.submission.clone(),
    };
    let mut conn = Conn {
        peer,
        local,
        shared: shared.clone(),
        login: None,
        role,
        address_grant,
        auth_grant: None,
        sender_key: None,
        rcpts: Vec::new(),
    };
    // One reader for the connection, across a TLS upgrade: the session's deadline
    // counts from the connection, not from the handshake.
    let listener = match role {
        Role::Mx => Listener::Smtp,
        Role::Submission { .. } => Listener::Submission,
    };
    let mut reader = super::wire::ClientReader::new(64 << 10, shared.policy.deadlines(listener));
    if let Role::Submission { implicit_tls: true } = role {
        // RFC 8314: the handshake comes first, then the same session under TLS.
        let Some(acceptor) = shared.tls.clone() else {
            return;
        };
        let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::info!(target: "smtp", client = %peer, "TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::info!(target: "smtp", client = %peer, "TLS handshake timed out");
                return;
            }
        };
        let mut session = Session::new(cfg, true)
            .with_challenge(super::wire::challenge(&shared.hostname))
            .with_relay_client(conn.address_grant.is_some());
        let _ = drive(&mut session, tls, &mut conn, &mut reader).await;
        drop(permit);
        return;
    }
    let mut session = Session::new(cfg, false)
        .with_challenge(super::wire::challenge(&shared.hostname))
        .with_relay_client(conn.address_grant.is_some());
    let pause = Duration::from_millis(shared.config.smtp.greeting_pause_ms);
    if let Some(sample) = super::pregreet::early_talk(&stream, pause).await {
        session.talked_before_greeting(&sample);
        if session.is_closed() {
            while let Some(action) = session.next_action() {
                if let Action::ProtocolViolation {
                    violation,
                    command,
                    refused,
                } = action
                {
                    if refused {
                        shared.metrics.refused(label, "protocol");
                    }
                    log_violation(peer, violation, &command, refused);
                }
            }
            if write_out(&mut stream, &mut session).await {
                let _ = stream.shutdown().await;
                super::pregreet::drain(&mut stream).await;
            }
            return;
        }
    }
    if let Ended::StartTls(plain) = drive(&mut session, stream, &mut conn, &mut reader).await {
        let Some(acceptor) = shared.tls.clone() else {
            return;
        };
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(plain)).await {
            Ok(Ok(tls)) => {
                session.tls_started();
                conn.rcpts.clear();
                conn.login = None;
                conn.auth_grant = None;
                let _ = drive(&mut session, tls, &mut conn, &mut reader).await;
            }
            Ok(Err(e)) => {
                tracing::info!(target: "smtp", client = %peer, "TLS handshake failed: {e}")
            }
            Err(_) => tracing::info!(target: "smtp", client = %peer, "TLS handshake timed out"),
        }
    }
    drop(permit);
    if role == Role::Mx {
        super::autoturn::after_session(&shared, peer).await;
    }
}

fn log_violation(peer: SocketAddr, violation: Violation, command: &str, refused: bool) {
    let outcome = if refused { "refused" } else { "logged only" };
    tracing::warn!(target: "smtp", client = %peer, "protocol violation ({outcome}): {violation}: {command:?}");
}

async fn write_out<S: AsyncWrite + Unpin>(stream: &mut S, session: &mut Session) -> bool {
    super::wire::write_all(stream, &session.take_output()).await
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
                Action::CheckSender { address } => {
                    let v = conn.check_sender(&address);
                    session.answer_sender(v);
                }
                Action::CheckRecipient { address } => {
                    // The first recipient of a transaction: what an earlier one (ended
                    // by RSET or a refused DATA) resolved is no longer wanted.
                    if session.accepted_recipients() == 0 {
                        conn.rcpts.clear();
                    }
                    let v = conn.check(address).await;
                    session.answer_recipient(v);
                }
                Action::Deliver {
                    sender,
                    recipients,
                    data,
                    helo,
                    tls,
                    ..
                } => {
                    let v = conn.deliver(sender, recipients, data, &helo, tls).await;
                    session.answer_message(v);
                }
                Action::Etrn { argument } => {
                    let r = conn.etrn(&argument).await;
                    session.answer_etrn(r);
                }
                Action::Authenticate {
                    mechanism,
                    login,
                    credential,
                } => {
                    let (v, login) = super::login::check_sasl(
                        &conn.shared,
                        conn.peer,
                        conn.local,
                        "smtp",
                        mechanism,
                        login,
                        credential,
                    )
                    .await;
                    if let Some(l) = &login {
                        conn.auth_grant = conn.auth_relay(l);
                    }
                    if login.is_some() {
                        conn.login = login;
                    }
                    session.answer_auth(v);
                }
                Action::StartTls => {
                    if !write_out(&mut stream, session).await {
                        return Ended::Closed;
                    }
                    return Ended::StartTls(stream);
                }
                Action::Pause(delay) => {
                    // The replies before the refusal go out now; it waits.
                    if !write_out(&mut stream, session).await {
                        return Ended::Closed;
                    }
                    tokio::time::sleep(delay).await;
                    session.resume();
                }
                Action::Penalize => {
                    let secs = conn.shared.config.smtp.penalty_secs;
                    tracing::warn!(target: "smtp", client = %conn.peer, "too many refused recipients: closing, new connections from the address refused for {secs} s");
                    let policy = &conn.shared.policy;
                    policy
                        .penalties
                        .punish(policy.client(conn.peer.ip()), std::time::Instant::now());
                }
                Action::ProtocolViolation {
                    violation,
                    command,
                    refused,
                } => {
                    if refused {
                        conn.shared.metrics.refused(conn.role.name(), "protocol");
                    }
                    log_violation(conn.peer, violation, &command, refused)
                }
                Action::Close => {
                    let _ = write_out(&mut stream, session).await;
                    let _ = stream.shutdown().await;
                    return Ended::Closed;
                }
                Action::Refused { command, reply } => {
                    tracing::info!(target: "smtp", client = %conn.peer, listener = conn.role.name(), code = reply.code, "refused {command:?}: {}", reply.lines.join(" "));
                }
            }
        }
        if !write_out(&mut stream, session).await {
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
                tracing::info!(target: "smtp", client = %conn.peer, "closing: {}", why.describe());
                session.timeout();
            }
        }
    }
}

/// The engine as the sender check sees it.
struct EngineLookup<'a> {
    shared: &'a Shared,
    snapshot: Arc<crate::engine::Snapshot>,
}

impl crate::submit::sender::Lookup for EngineLookup<'_> {
    fn is_ours(&self, domain: &[u8]) -> bool {
        self.snapshot
            .control
            .rcpthosts
            .accepts(domain)
            .unwrap_or(false)
    }
    fn resolve(&self, address: &[u8]) -> Option<Resolution> {
        crate::engine::resolve::resolve(&self.snapshot, address, true).ok()
    }
    fn any_sender(&self, domain: &[u8]) -> bool {
        self.shared.access.any_sender(domain)
    }
    fn default_delivery(&self) -> &[u8] {
        self.shared.config.default_delivery.as_bytes()
    }
}

impl Conn {
    /// The session's relay right: AUTH's first (it names an account), else the
    /// client address's.
    fn grant(&self) -> Option<&Grant> {
        self.auth_grant.as_ref().or(self.address_grant.as_ref())
    }

    /// The relay right an AUTH as `login` gives here: always on the submission
    /// ports, on port 25 only with `[smtp] auth_relay`.
    fn auth_relay(&self, login: &str) -> Option<Grant> {
        if self.role == Role::Mx && !self.shared.access.auth_relay_on_25 {
            return None;
        }
        let home = self.account_home(login)?;
        Some(Grant::Auth {
            login: login.to_string(),
            home,
        })
    }

    fn account_home(&self, login: &str) -> Option<std::path::PathBuf> {
        let ctx = crate::engine::LoginContext {
            local_ip: Some(self.local.ip()),
        };
        match self
            .shared
            .engine
            .snapshot()
            .accounts
            .find(login.as_bytes(), ctx)
        {
            Ok(Some(a)) => Some(a.home),
            _ => None,
        }
    }

    /// MAIL FROM of a session: a granted one's sender must be one it may use, and its
    /// limits not reached; any other's is accepted as always.
    fn check_sender(&mut self, sender: &[u8]) -> SenderVerdict {
        self.sender_key = None;
        let Some(grant) = self.grant() else {
            return SenderVerdict::Accept;
        };
        // The sender is judged against the accounts: tables that may be stale judge
        // nothing (a refusal here would be permanent).
        if let Err(e) = self.shared.engine.available() {
            tracing::error!(target: "smtp", client = %self.peer, "sender {}: {e}", show(sender));
            return SenderVerdict::Temporary(
                "temporary trouble with the accounts, try again later".into(),
            );
        }
        let key = grant.limit_key(self.peer.ip());
        let access = &self.shared.access;
        if let Err(e) = access
            .limits
            .check_message(&key, crate::policy::runfile::now_ms())
        {
            tracing::warn!(target: "smtp", client = %self.peer, "limit: {e}: {key} may not send now");
            self.shared.metrics.submission("limit");
            return SenderVerdict::Limited(format!("Sending limit reached: {e}; try again later"));
        }
        let identity = grant.identity(access.sender_check, |l| self.account_home(l));
        let lookup = EngineLookup {
            shared: &self.shared,
            snapshot: self.shared.engine.snapshot(),
        };
        match crate::submit::sender::check(sender, &identity, &lookup) {
            Ok(()) => {
                self.sender_key = Some(key);
                SenderVerdict::Accept
            }
            Err(why) => {
                tracing::info!(target: "smtp", client = %self.peer, "sender {} refused ({}): {why}", show(sender), grant.describe());
                self.shared.metrics.submission("sender");
                SenderVerdict::Refused(why)
            }
        }
    }
    /// Sites marked always-on are flushed shortly after new mail for them arrives; the
    /// delay lets a burst of messages go out in one session.
    fn kick_always_on(&self, homes: &[std::path::PathBuf]) {
        let sites = self.shared.flusher.sites();
        for s in sites.sites.iter().filter(|s| s.settings.always_on) {
            let dir = s.dir.canonicalize().unwrap_or_else(|_| s.dir.clone());
            if !homes.iter().any(|h| *h == dir || *h == s.dir) {
                continue;
            }
            let (flusher, site) = (self.shared.flusher.clone(), s.clone());
            let delay = Duration::from_secs(self.shared.config.flush.always_on_delay_secs);
            if flusher.is_running(&site.name) {
                continue;
            }
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                flusher.trigger(site, None, "new mail");
            });
        }
    }

    async fn etrn(&mut self, argument: &[u8]) -> Reply {
        use super::etrn;
        self.shared.metrics.request("etrn");
        let Some(target) = etrn::Target::parse(argument) else {
            return etrn::syntax_error();
        };
        let policy = &self.shared.policy;
        if !policy
            .requests
            .allow(policy.client(self.peer.ip()), std::time::Instant::now())
        {
            tracing::warn!(target: "etrn", client = %self.peer, "rate limited: {}", target.text());
            return etrn::rate_limited(&target);
        }
        let f = &self.shared.flusher;
        let sites = f.sites();
        let named = etrn::sites(&sites, &target);
        if named.is_empty() {
            return etrn::unknown(&target);
        }
        let (ip, login) = (self.peer.ip(), self.login.as_deref());
        if let Some(why) = named.iter().find_map(|s| etrn::refusal(s, ip, login)) {
            tracing::info!(target: "etrn", client = %self.peer, login, "refused {}: {why}", target.text());
            return etrn::not_allowed(&target, why);
        }
        let mut queued = 0;
        let mut running = false;
        let mut to_client = None;
        for s in named {
            // Another node's flush counts as much as this one's.
            if f.running_anywhere(s) {
                running = true;
                continue;
            }
            let n = super::flusher::Flusher::queued(s);
            queued += n;
            let to = etrn::destination(s, ip, login);
            if n > 0 && !f.trigger(s.clone(), to.clone(), "etrn") {
                running = true;
            }
            to_client = to_client.or(to);
        }
        tracing::info!(target: "etrn", client = %self.peer, login, queued, running, to = to_client.as_deref().unwrap_or("RELAYHOST"), "ETRN {}", target.text());
        etrn::started(&target, queued, running, to_client.as_deref())
    }

    async fn check(&mut self, address: Vec<u8>) -> RcptVerdict {
        let v = self.resolve_recipient(address);
        let reason = match &v {
            RcptVerdict::Accept => None,
            RcptVerdict::NotOurs => Some("relaying_denied"),
            RcptVerdict::Unknown => Some("unknown"),
            RcptVerdict::BadAddress(_) => Some("bad_address"),
            RcptVerdict::Temporary(_) => Some("temporary"),
            RcptVerdict::Limited(_) => Some("limit"),
            RcptVerdict::OverQuota { .. } => Some("over_quota"),
        };
        if let Some(r) = reason {
            self.shared.metrics.recipient_refused(r);
        }
        v
    }

    fn resolve_recipient(&mut self, address: Vec<u8>) -> RcptVerdict {
        if self.grant().is_some()
            && let Err(e) = self.shared.access.limits.check_recipient(self.rcpts.len())
        {
            tracing::warn!(target: "smtp", client = %self.peer, "limit: {e}: recipient {} refused for now", show(&address));
            self.shared.metrics.submission("limit");
            return RcptVerdict::Limited(format!("Sending limit reached: {e}"));
        }
        let engine = &self.shared.engine;
        // A relay right skips rcpthosts as qmail-smtpd's RELAYCLIENT does: domains that
        // are not ours resolve as relays, ours as always.
        let check_rcpthosts = self.grant().is_none();
        // RFC 5321 §4.5.1: `<Postmaster>` without a domain must always be accepted.
        let domain = super::postmaster_domain(&self.shared.config, &self.shared.hostname);
        let a = crate::smtp::address::qualify_postmaster(&address, &domain)
            .unwrap_or_else(|| address.clone());
        // Inline, not on a blocking thread: a lookup is a few microseconds of cdb
        // probes and stats of the home and its .qmail files, less than the handoff.
        match engine.resolve(&a, check_rcpthosts) {
            Ok(Resolution::Local(t))
                if let Some((md, u)) = crate::quota::enforce::over_at_rcpt(&t) =>
            {
                tracing::info!(target: "smtp", client = %self.peer, maildir = %md.display(), bytes = u.bytes, messages = u.messages, limits = %u.limits, "recipient {} over quota", show(&address));
                RcptVerdict::OverQuota {
                    permanent: self.shared.config.quota.over_quota
                        == crate::quota::OverQuota::Permanent,
                }
            }
            Ok(res @ (Resolution::Local(_) | Resolution::Relay { .. } | Resolution::Trash)) => {
                self.rcpts.retain(|(x, _)| x != &address);
                self.rcpts.push((address, res));
                RcptVerdict::Accept
            }
            Ok(Resolution::NotOurs) => RcptVerdict::NotOurs,
            Ok(Resolution::Unknown { reason }) => {
                tracing::info!(target: "smtp", client = %self.peer, "unknown recipient {}: {reason}", show(&address));
                RcptVerdict::Unknown
            }
            Ok(Resolution::BadAddress(why)) => RcptVerdict::BadAddress(why),
            Err(e) => {
                // The details (paths, modes) are for the operator, not the client.
                tracing::error!(target: "smtp", client = %self.peer, "recipient {}: {e}", show(&address));
                RcptVerdict::Temporary(
                    "temporary trouble with this mailbox, try again later".into(),
                )
            }
        }
    }

    async fn deliver(
        &mut self,
        sender: Vec<u8>,
        recipients: Vec<Vec<u8>>,
        data: Vec<u8>,
        helo: &str,
        tls: bool,
    ) -> MessageVerdict {
        let t = std::time::Instant::now();
        let v = self
            .deliver_message(sender, recipients, data, helo, tls)
            .await;
        let result = match &v {
            MessageVerdict::Accepted { .. } => "accepted",
            MessageVerdict::Temporary(_) | MessageVerdict::Limited(_) => "temporary",
            MessageVerdict::Permanent(_) => "rejected",
        };
        self.shared.metrics.message(result, t.elapsed());
        if self.grant().is_some() {
            self.shared.metrics.submission(match &v {
                MessageVerdict::Accepted { .. } => "accepted",
                MessageVerdict::Limited(_) => "limit",
                _ => "failed",
            });
        }
        v
    }

    async fn deliver_message(
        &mut self,
        sender: Vec<u8>,
        recipients: Vec<Vec<u8>>,
        data: Vec<u8>,
        helo: &str,
        tls: bool,
    ) -> MessageVerdict {
        let now = now_unix();
        let qid = transaction::unique_token(now);
        let charged = self.sender_key.take();
        if let Some(key) = &charged
            && let Err(e) = self.shared.access.limits.check_size(
                key,
                data.len() as u64,
                crate::policy::runfile::now_ms(),
            )
        {
            tracing::warn!(target: "smtp", client = %self.peer, "limit: {e}: message of {} bytes from {key} refused for now", data.len());
            self.rcpts.clear();
            return MessageVerdict::Limited(format!("Sending limit reached: {e}"));
        }
        let mut resolved = Vec::with_capacity(recipients.len());
        for r in recipients {
            let res = match self.rcpts.iter().position(|(x, _)| *x == r) {
                Some(i) => self.rcpts.swap_remove(i).1,
                None => match self.shared.engine.resolve(&r, true) {
                    Ok(res) => res,
                    Err(e) => return MessageVerdict::Temporary(e.to_string()),
                },
            };
            resolved.push((r, res));
        }
        self.rcpts.clear();
        let homes: Vec<std::path::PathBuf> = resolved
            .iter()
            .filter_map(|(_, r)| match r {
                Resolution::Local(t) => Some(t.home.clone()),
                _ => None,
            })
            .collect();
        let peer_ip = self.peer.ip().to_string();
        let trace = Trace {
            helo,
            peer_ip: &peer_ip,
            peer_name: None,
            tls,
            auth: self.login.as_deref(),
        };
        let received = received_line(&trace, &self.shared.hostname, &qid, &rfc5322(now));
        let shared = self.shared.clone();
        let sender2 = sender.clone();
        let size = received.len() + data.len();
        let sign = self.grant().is_some();
        let (peer, id) = (self.peer, qid.clone());
        let (mut report, msg) = match tokio::task::spawn_blocking(move || {
            // RSA signing takes most of a millisecond: off the session's thread.
            let signature = if sign {
                super::dkim_sign::signature(&shared, peer, &id, &data)
            } else {
                None
            };
            let mut msg = Vec::with_capacity(
                signature.as_ref().map_or(0, Vec::len) + received.len() + data.len(),
            );
            msg.extend(signature.unwrap_or_default());
            msg.extend_from_slice(&received);
            msg.extend_from_slice(&data);
            drop(data);
            let report = transaction::deliver_message(
                &shared.deliver,
                &shared.hostname,
                &sender2,
                &resolved,
                &msg,
                now,
            );
            (report, msg)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => return MessageVerdict::Temporary(format!("internal error: {e}")),
        };
        if let Some(key) = &charged
            && matches!(report.verdict, Verdict::Accepted)
        {
            let now = crate::policy::runfile::now_ms();
            self.shared.access.limits.charge(key, size as u64, now);
        }
        let relayed = self.grant().map(Grant::describe);
        let rcpts: Vec<String> = report
            .recipients
            .iter()
            .map(|(r, res)| format!("{}={res:?}", show(r)))
            .collect();
        tracing::info!(
            target: "smtp",
            id = %qid,
            client = %self.peer,
            sender = %show(&sender),
            size,
            relay = relayed.as_deref().unwrap_or("-"),
            result = ?report.verdict,
            "message: {}",
            rcpts.join(", ")
        );
        // The relayed recipients' files go out now; anything else queued (or one
        // that cannot go now) waits for a pass.
        let relayed = std::mem::take(&mut report.relayed);
        let handed = relayed.len();
        let handed = if handed > 0 && self.shared.queue_runner.offer(relayed, msg) {
            handed
        } else {
            0
        };
        let queued = report
            .recipients
            .iter()
            .filter(|(_, r)| matches!(r, transaction::RecipientResult::Queued(_)))
            .count();
        // A `.qmail` forward is queued mail too: it should not wait for the interval.
        if queued > handed
            || report.forwarded > 0
            || report
                .recipients
                .iter()
                .any(|(_, r)| matches!(r, transaction::RecipientResult::Failed(_)))
        {
            self.shared.queue_kick.notify_one();
        }
        if matches!(report.verdict, Verdict::Accepted) {
            self.kick_always_on(&homes);
        }
        match report.verdict {
            Verdict::Accepted => MessageVerdict::Accepted { queue_id: qid },
            Verdict::Temporary(_) => {
                MessageVerdict::Temporary("temporary delivery trouble, try again later".into())
            }
            Verdict::Permanent(why) => MessageVerdict::Permanent(why),
        }
    }
}
