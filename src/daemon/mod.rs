//! `turnmail serve`: the long-running process. It binds its listeners (as root if it
//! must), becomes the mail user, opens the engine, and then only moves bytes between
//! sockets and the sans-IO protocol sessions. It reloads the engine when source files
//! change or on SIGHUP, and on SIGTERM stops accepting and lets sessions finish within
//! a bound.

mod accounts_db;
pub mod autoturn;
pub mod control;
mod dkim_sign;
pub mod etrn;
pub mod flusher;
pub mod listen;
pub mod login;
pub mod metrics;
pub mod metrics_http;
pub mod odmr_conn;
pub mod pop3_conn;
pub mod pregreet;
pub mod scheduler;
pub mod smtp_conn;
pub mod spoolhint;
pub mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::mailuser::MailUser;
use crate::config::Config;
use crate::deliver::DeliverEnv;
use crate::engine::Engine;
use crate::outbound::queue::Queue;
use crate::smtp::SessionConfig;

/// Pending connections the kernel may hold for each listener.
const LISTEN_BACKLOG: i32 = 4096;

/// How long sessions may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Command-line overrides of turnmail.toml.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Replaces `[smtp] listen` when not empty.
    pub smtp: Vec<SocketAddr>,
    /// Replace `[pop3] listen` / `listen_tls` when not empty.
    pub pop3: Vec<SocketAddr>,
    pub pop3s: Vec<SocketAddr>,
    /// Replaces `[odmr] listen` when not empty.
    pub odmr: Vec<SocketAddr>,
    /// Replace `[submission] listen` / `[submissions] listen` when not empty.
    pub submission: Vec<SocketAddr>,
    pub submissions: Vec<SocketAddr>,
    /// Replaces `[metrics] listen`.
    pub metrics: Option<SocketAddr>,
    /// Replaces `[cluster] node`.
    pub node: Option<String>,
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Smtp,
    /// Port 587: message submission with STARTTLS.
    Submission,
    /// Port 465: message submission over implicit TLS.
    Submissions,
    Pop3,
    Pop3s,
    Odmr,
    Metrics,
}

impl Service {
    /// As people write it.
    pub fn name(self) -> &'static str {
        match self {
            Service::Smtp => "SMTP",
            Service::Submission => "submission",
            Service::Submissions => "submissions",
            Service::Pop3 => "POP3",
            Service::Pop3s => "POP3S",
            Service::Odmr => "ODMR",
            Service::Metrics => "metrics",
        }
    }
}

/// Everything a connection handler needs, shared by all of them.
pub struct Shared {
    pub root: PathBuf,
    /// This daemon's node name when several share the root (`cluster.rs`).
    pub node: Option<crate::cluster::NodeName>,
    pub config: Arc<Config>,
    pub engine: Arc<Engine>,
    pub deliver: DeliverEnv,
    pub hostname: String,
    pub smtp: Arc<SessionConfig>,
    /// The sessions of the submission ports (587, 465).
    pub submission: Arc<SessionConfig>,
    /// Who may relay, sender checks, sending limits.
    pub access: crate::submit::Access,
    /// DKIM keys of the hosted domains: messages of sessions allowed to relay are signed.
    pub dkim: Arc<crate::dkim::Signer>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Connection limits, deadlines, login limits, penalties: every listener asks here.
    pub policy: crate::policy::Policy,
    pub pop3: Option<Arc<crate::pop3::Pop3Config>>,
    pub odmr: Arc<crate::odmr::OdmrConfig>,
    pub flusher: Arc<flusher::Flusher>,
    pub plan: Arc<std::sync::Mutex<scheduler::Plan>>,
    pub queue_runner: Arc<crate::outbound::runner::QueueRunner>,
    /// Wakes the queue runner when delivery queued something.
    pub queue_kick: tokio::sync::Notify,
    /// RELAYHOST addresses for `autoturn = ["relayhost"]`, looked up once a minute at most.
    pub relayhost_addrs: autoturn::RelayhostAddrs,
    /// What the daemon counts (status, the metrics listener).
    pub metrics: Arc<metrics::Metrics>,
    /// The addresses listened on, for `turnmail status`.
    pub listening: Vec<(Service, SocketAddr)>,
}

/// The name we greet with: turnmail.toml, then control/me, then the system's.
pub fn hostname(config: &Config, engine: &Engine) -> String {
    if let Some(h) = &config.hostname {
        return h.clone();
    }
    if let Some(me) = &engine.snapshot().control.me {
        return String::from_utf8_lossy(me).into_owned();
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Whose postmaster a bare `RCPT TO:<Postmaster>` is: `default_domain`, else the
/// name we greet with.
pub fn postmaster_domain(config: &Config, hostname: &str) -> String {
    config
        .default_domain
        .clone()
        .unwrap_or_else(|| hostname.to_string())
}

/// Called once every listener is bound and serving, with the addresses listened on.
pub type OnListening = Box<dyn FnOnce(&[(Service, SocketAddr)]) + Send>;

/// Bind, drop privileges, and run until SIGTERM/SIGINT. Blocking.
pub fn run(root: &Path, opts: ServeOptions) -> Result<(), String> {
    run_with(root, opts, Box::new(|_| {}))
}

/// [`run`], calling `on_listening` once the daemon listens (the demo prints its hints
/// there, with the real ports; nothing is printed when binding or setup fails).
pub fn run_with(root: &Path, opts: ServeOptions, on_listening: OnListening) -> Result<(), String> {
    let mut config = Config::load(root).map_err(|e| e.to_string())?;
    let node = crate::cluster::effective(opts.node.as_deref(), config.cluster.node.as_deref())
        .map_err(|e| e.to_string())?;
    config.cluster.node = node.as_ref().map(|n| n.to_string());
    let pick = |cli: &Vec<SocketAddr>, file: &Vec<SocketAddr>| {
        if cli.is_empty() {
            file.clone()
        } else {
            cli.clone()
        }
    };
    let wanted = [
        (Service::Smtp, pick(&opts.smtp, &config.smtp.listen)),
        (
            Service::Submission,
            pick(&opts.submission, &config.submission.listen),
        ),
        (
            Service::Submissions,
            pick(&opts.submissions, &config.submissions.listen),
        ),
        (Service::Pop3, pick(&opts.pop3, &config.pop3.listen)),
        (Service::Pop3s, pick(&opts.pop3s, &config.pop3.listen_tls)),
        (Service::Odmr, pick(&opts.odmr, &config.odmr.listen)),
        (
            Service::Metrics,
            opts.metrics.or(config.metrics.listen).into_iter().collect(),
        ),
    ];
    // Bind first: ports below 1024 need root, which we give up right after.
    let mut listeners = Vec::new();
    for (service, addrs) in wanted {
        for a in addrs {
            // std listens with a backlog of 128. A burst beyond it loses connections for
            // good when SYN cookies are in use (the handshake's last ACK is dropped and
            // the client, waiting for our greeting, never notices), so ask for more; the
            // kernel caps it at net.core.somaxconn.
            let l = listen::listener(a, LISTEN_BACKLOG)
                .map_err(|e| format!("binding {} on {a}: {e}", service.name()))?;
            listeners.push((l, service));
        }
    }
    if nix::unistd::Uid::effective().is_root() {
        let mu = MailUser::for_root(root, &config.user).map_err(|e| e.to_string())?;
        crate::privilege::become_user(mu.uid, mu.gid)
            .map_err(|e| format!("switching to user {}: {e}", mu.name))?;
        tracing::info!("running as {} (uid {}, gid {})", mu.name, mu.uid, mu.gid);
    }
    // Held until this function returns, i.e. while the daemon serves.
    let _node_lock = match &node {
        Some(n) => {
            let l = crate::cluster::claim(root, n).map_err(|e| e.to_string())?;
            crate::maildir::set_node_name(n);
            tracing::info!("node {n} of the mail root {}", root.display());
            Some(l)
        }
        None => None,
    };
    // Built before the engine: with the accounts in PostgreSQL, the store's pool lives
    // on this runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    let (engine, store) = if config.accounts.backend == crate::db::Backend::Postgres {
        // Before any flush or queue run takes a sender's lock.
        if crate::db::advisory::install(&config)? {
            tracing::info!(target: "flush", "site flushes and the queue also take the database's advisory locks");
        }
        let (engine, store) = accounts_db::open(root, &config, &rt)?;
        (engine, Some(store))
    } else {
        let (engine, report) = Engine::open(root, config.clone()).map_err(|e| e.to_string())?;
        for e in &report.errors {
            tracing::error!(target: "engine", "{e}");
        }
        (engine, None)
    };
    let engine = Arc::new(engine);
    let tls = match crate::tls::configured_paths(root, &config.tls) {
        Some((c, k)) => Some(tokio_rustls::TlsAcceptor::from(
            crate::tls::server_config(&c, &k).map_err(|e| format!("TLS: {e}"))?,
        )),
        None => None,
    };
    let hostname = hostname(&config, &engine);
    let smtp = Arc::new(SessionConfig {
        hostname: hostname.clone(),
        max_message_size: config.limits.max_message_size,
        max_recipients: config.limits.max_recipients,
        max_text_line: config.limits.max_line_length,
        starttls: tls.is_some(),
        etrn: true,
        auth: true,
        plaintext_auth: config.smtp.plaintext_auth,
        rcpt_soft_error_limit: config.smtp.rcpt_soft_error_limit,
        rcpt_hard_error_limit: config.smtp.rcpt_hard_error_limit,
        rcpt_error_delay: Duration::from_millis(config.smtp.rcpt_error_delay_ms),
        early_talkers: config.smtp.early_talkers,
        unoffered_pipelining: config.smtp.unoffered_pipelining,
        check_sender: true,
        ..SessionConfig::default()
    });
    // RFC 6409: the same session, without ETRN, AUTH required before MAIL.
    let submission = Arc::new(SessionConfig {
        etrn: false,
        auth_required: true,
        ..(*smtp).clone()
    });
    if tls.is_none() && listeners.iter().any(|(_, s)| *s == Service::Submissions) {
        return Err(
            "submissions listeners (port 465) need a TLS certificate ([tls] in turnmail.toml or tls/cert.pem)"
                .into(),
        );
    }
    if tls.is_none() && listeners.iter().any(|(_, s)| *s == Service::Pop3s) {
        return Err(
            "POP3S listeners need a TLS certificate ([tls] in turnmail.toml or tls/cert.pem)"
                .into(),
        );
    }
    let p = &config.pop3;
    let pop3 = Arc::new(crate::pop3::Pop3Config {
        hostname: hostname.clone(),
        stls_available: tls.is_some(),
        plaintext_allowed: p.plaintext_without_tls,
        compat_extra_blank_line: p.qmail_extra_blank_line,
        ..crate::pop3::Pop3Config::default()
    });
    let deliver = DeliverEnv {
        queue: Queue::new(root),
        allow_programs: config.allow_programs,
        program_timeout: Duration::from_secs(config.limits.program_timeout_secs),
        mbox_lock_timeout: Duration::from_secs(30),
        quota: config.quota.clone(),
    };
    let flush_ctx = crate::flush::FlushContext {
        env: deliver.clone(),
        hostname: hostname.clone(),
        status_dir: root.join("run/sites"),
        on_line: None,
    };
    let f = &config.flush;
    let metrics = Arc::new(metrics::Metrics::new());
    let listening: Vec<(Service, SocketAddr)> = listeners
        .iter()
        .filter_map(|(l, s)| Some((*s, l.local_addr().ok()?)))
        .collect();
    let flusher = Arc::new(flusher::Flusher::new(
        metrics.clone(),
        flush_ctx,
        root.to_path_buf(),
        if engine.is_memory() {
            flusher::SiteSource::Engine(engine.clone())
        } else {
            flusher::SiteSource::Files(config.sites.roots.clone())
        },
        f.max_parallel,
        Duration::from_millis(f.grace_ms),
    ));
    let odmr = Arc::new(crate::odmr::OdmrConfig {
        hostname: hostname.clone(),
        starttls: tls.is_some(),
        plaintext_auth: config.odmr.plaintext_auth,
        ..crate::odmr::OdmrConfig::default()
    });
    let shared = Arc::new(Shared {
        root: root.to_path_buf(),
        node,
        queue_runner: Arc::new({
            let m = metrics.clone();
            crate::outbound::runner::QueueRunner::new(
                engine.clone(),
                deliver.clone(),
                hostname.clone(),
                config.relay.clone(),
            )
            .with_observer(Box::new(move |r| m.queue_settled(r)))
        }),
        deliver,
        policy: crate::policy::Policy::from_config(root, &config),
        access: crate::submit::Access::from_config(root, &config),
        dkim: Arc::new(crate::dkim::Signer::open(root)),
        submission,
        config: Arc::new(config),
        engine,
        hostname,
        smtp,
        tls,
        pop3: Some(pop3),
        odmr,
        flusher,
        plan: Arc::default(),
        queue_kick: tokio::sync::Notify::new(),
        relayhost_addrs: autoturn::RelayhostAddrs::default(),
        metrics,
        listening,
    });
    rt.block_on(async move {
        let follower = store
            .map(|s| accounts_db::follow(s, shared.config.postgres.clone(), shared.engine.clone()));
        let r = serve(shared, listeners, on_listening).await;
        for task in follower.into_iter().flatten() {
            task.abort();
        }
        r
    })
}

async fn serve(
    shared: Arc<Shared>,
    listeners: Vec<(std::net::TcpListener, Service)>,
    on_listening: OnListening,
) -> Result<(), String> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut accepts = Vec::new();
    for (l, service) in listeners {
        let l = TcpListener::from_std(l).map_err(|e| e.to_string())?;
        let addr = l.local_addr().map_err(|e| e.to_string())?;
        tracing::info!("{} listening on {addr}", service.name());
        if service == Service::Metrics {
            accepts.push(tokio::spawn(metrics_http::serve(
                l,
                shared.clone(),
                stop_rx.clone(),
            )));
            continue;
        }
        accepts.push(tokio::spawn(accept_loop(
            l,
            service,
            shared.clone(),
            stop_rx.clone(),
        )));
    }
    on_listening(&shared.listening);
    tokio::spawn(reload_loop(shared.engine.clone(), stop_rx.clone()));
    tokio::spawn(scheduler::run(
        shared.flusher.clone(),
        shared.plan.clone(),
        shared.config.flush.schedule.clone(),
        shared.config.flush.jitter_secs,
        stop_rx.clone(),
    ));
    tokio::spawn(queue_loop(shared.clone(), stop_rx.clone()));
    tokio::spawn(control::serve(shared.clone(), stop_rx.clone()));
    tokio::spawn(sweep_loop(shared.clone(), stop_rx.clone()));
    wait_for_stop().await;
    tracing::info!(
        "stopping: no new connections, waiting up to {} s for sessions",
        SHUTDOWN_GRACE.as_secs()
    );
    let _ = stop_tx.send(true);
    for a in accepts {
        let _ = a.await;
    }
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while shared.policy.active() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!("stopped ({} sessions still open)", shared.policy.active());
    Ok(())
}

async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; running until killed");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Pick up edits of the source files (once a second) and SIGHUP (at once, forced).
async fn reload_loop(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            _ = stop.changed() => return,
        };
        let e = engine.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if forced {
                e.reload()
            } else {
                e.reload_if_changed()
            }
        })
        .await;
    }
}

/// End login blocks that are over (each logged) and forget idle counts.
async fn sweep_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => shared.policy.sweep(),
            _ = stop.changed() => return,
        }
    }
}

/// How soon a queue run that found the queue's lock held tries again.
const BUSY_QUEUE_RETRY: Duration = Duration::from_secs(1);

/// Run the outbound queue every `interval_secs`, and soon after delivery queued mail.
async fn queue_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(shared.config.relay.interval_secs.max(1));
    loop {
        let r = shared.queue_runner.run_once(false).await;
        shared.metrics.queue_run(&r);
        if r.delivered + r.bounced + r.deferred > 0 || !r.trouble.is_empty() {
            tracing::info!(target: "relay", "queue run: {r:?}");
        }
        // Another node's runner is at work: its run may have begun before our newest
        // files were queued, so look again soon rather than after a whole interval.
        let wait = if r.busy {
            every.min(BUSY_QUEUE_RETRY)
        } else {
            every
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.queue_kick.notified() => {
                // Let a burst of deliveries settle into one run.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ = stop.changed() => return,
        }
    }
}

async fn accept_loop(
    l: TcpListener,
    service: Service,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    // A listener bound to one address is every connection's local address: no
    // getsockname per connection (one bound to all addresses still asks).
    let bound = l.local_addr().ok().filter(|a| !a.ip().is_unspecified());
    loop {
        let (stream, peer) = tokio::select! {
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        use crate::policy::Listener;
        shared.metrics.connection(match service {
            Service::Smtp => "smtp",
            Service::Submission | Service::Submissions => "submission",
            Service::Odmr => "odmr",
            _ => "pop3",
        });
        match service {
            Service::Smtp => {
                let permit = shared.policy.admit(Listener::Smtp, peer.ip());
                tokio::spawn(smtp_conn::handle(
                    stream,
                    (peer, bound),
                    shared,
                    permit,
                    smtp_conn::Role::Mx,
                ));
            }
            Service::Submission | Service::Submissions => {
                let permit = shared.policy.admit(Listener::Submission, peer.ip());
                let role = smtp_conn::Role::Submission {
                    implicit_tls: service == Service::Submissions,
                };
                tokio::spawn(smtp_conn::handle(
                    stream,
                    (peer, bound),
                    shared,
                    permit,
                    role,
                ));
            }
            Service::Odmr => {
                let permit = shared.policy.admit(Listener::Odmr, peer.ip());
                tokio::spawn(odmr_conn::handle(stream, peer, shared, permit));
            }
            Service::Pop3 | Service::Pop3s => {
                let permit = shared.policy.admit(Listener::Pop3, peer.ip());
                tokio::spawn(pop3_conn::handle(
                    stream,
                    peer,
                    shared,
                    permit,
                    service == Service::Pop3s,
                ));
            }
            Service::Metrics => {}
        }
    }
}
