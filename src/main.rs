//! The `turnmail` command: parse arguments, call the library, map errors to exit codes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use turnmail::admin::mailuser::MailUser;
use turnmail::admin::{
    self,
    init::{self, InitOptions},
};
use turnmail::cluster::NodeName;
use turnmail::config::{Config, LogFormat};
use turnmail::engine::Engine;

#[derive(Parser)]
#[command(
    name = "turnmail",
    version,
    about = "Mail host for virtual POP domains and intermittently connected sites"
)]
struct Cli {
    /// The mail root (control/, users/, domains/, sites/, ...).
    #[arg(long, global = true, env = "TURNMAIL_ROOT")]
    root: Option<PathBuf>,
    /// The node, when several daemons share the root: `serve` runs as it, `flush` and
    /// `status` ask its daemon (default: [cluster] node in turnmail.toml).
    #[arg(long, global = true, env = "TURNMAIL_NODE", value_name = "NAME")]
    node: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogArg>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogArg {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create a demo mail root: one domain, one POP user (password printed), one site.
    Init {
        /// Directory to create (defaults to --root).
        dir: Option<PathBuf>,
        /// Mail user when run as root (default: turnmail, else mail).
        #[arg(long)]
        user: Option<String>,
        /// Write over files of a mail root already in the directory.
        #[arg(long)]
        force: bool,
    },
    /// Create an empty production mail root: no domains, users or sites; the host's
    /// name in control/me; production listeners (deploy/turnmail.toml.example) or the
    /// ones given here.
    Setup {
        /// Directory to create (defaults to --root).
        dir: Option<PathBuf>,
        /// Mail user that owns the mail (default: turnmail, else mail).
        #[arg(long)]
        user: Option<String>,
        /// The host's name (default: the system's fully qualified name).
        #[arg(long)]
        hostname: Option<String>,
        /// SMTP listen address (repeatable; default 0.0.0.0:25 and [::]:25).
        #[arg(long, value_name = "ADDR:PORT")]
        smtp: Vec<std::net::SocketAddr>,
        /// POP3 listen address (repeatable; default port 110).
        #[arg(long, value_name = "ADDR:PORT")]
        pop3: Vec<std::net::SocketAddr>,
        /// POP3S listen address (repeatable; default port 995, when a certificate is given).
        #[arg(long, value_name = "ADDR:PORT")]
        pop3s: Vec<std::net::SocketAddr>,
        /// ODMR listen address (repeatable; default port 366).
        #[arg(long, value_name = "ADDR:PORT")]
        odmr: Vec<std::net::SocketAddr>,
        /// Submission listen address (repeatable; default port 587, STARTTLS and AUTH).
        #[arg(long, value_name = "ADDR:PORT")]
        submission: Vec<std::net::SocketAddr>,
        /// Submission with implicit TLS listen address (repeatable; default port 465,
        /// when a certificate is given).
        #[arg(long, value_name = "ADDR:PORT")]
        submissions: Vec<std::net::SocketAddr>,
        /// PEM certificate chain (e.g. /etc/letsencrypt/live/HOST/fullchain.pem).
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// PEM private key (e.g. /etc/letsencrypt/live/HOST/privkey.pem).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// Link ROOT/turnmail.toml to this existing settings file instead of writing
        /// one (the Debian package's /etc/turnmail/turnmail.toml); its listeners apply.
        #[arg(long, value_name = "PATH", conflicts_with_all = ["smtp", "pop3", "pop3s", "odmr", "submission", "submissions", "cert", "key"])]
        config: Option<PathBuf>,
        /// Write over files of a mail root already in the directory.
        #[arg(long)]
        force: bool,
    },
    /// TLS certificates: `selfsigned` makes one for testing in ROOT/tls/.
    Tls {
        #[command(subcommand)]
        cmd: TlsCmd,
    },
    /// Run the daemon. With --demo DIR, create a demo root there on first use.
    Serve {
        /// Create (if needed) and use a demo root in DIR.
        #[arg(long, value_name = "DIR")]
        demo: Option<PathBuf>,
        /// SMTP listen address (repeatable); replaces [smtp] listen in turnmail.toml.
        #[arg(long, value_name = "ADDR:PORT")]
        smtp: Vec<std::net::SocketAddr>,
        /// POP3 listen address (repeatable); replaces [pop3] listen.
        #[arg(long, value_name = "ADDR:PORT")]
        pop3: Vec<std::net::SocketAddr>,
        /// POP3 with implicit TLS (repeatable); replaces [pop3] listen_tls.
        #[arg(long, value_name = "ADDR:PORT")]
        pop3s: Vec<std::net::SocketAddr>,
        /// ODMR/ATRN listen address (repeatable); replaces [odmr] listen.
        #[arg(long, value_name = "ADDR:PORT")]
        odmr: Vec<std::net::SocketAddr>,
        /// Message submission (port 587, STARTTLS, AUTH) listen address (repeatable);
        /// replaces [submission] listen.
        #[arg(long, value_name = "ADDR:PORT")]
        submission: Vec<std::net::SocketAddr>,
        /// Submission over implicit TLS (port 465) listen address (repeatable);
        /// replaces [submissions] listen.
        #[arg(long, value_name = "ADDR:PORT")]
        submissions: Vec<std::net::SocketAddr>,
        /// Prometheus metrics listen address; replaces [metrics] listen.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Compile users/assign to users/cdb and users/poppasswd to users/poppasswd.cdb.
    Newu,
    /// Report configuration pitfalls with file and line (exit 0 clean, 1 findings, 2 unusable).
    Check {
        /// Print {"root", "problems": [{"file", "line", "message"}]} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deliver one message from stdin, behind qmail (`|turnmail deliver` in a .qmail
    /// file: recipient from $DEFAULT/$EXT/$HOST/$RECIPIENT, exit 0/100/111) or as
    /// Postfix's pipe(8) transport (`-f SENDER -- RECIPIENT...`, sysexits codes).
    Deliver {
        /// Envelope sender (default: $SENDER, else empty).
        #[arg(short = 'f', value_name = "SENDER")]
        sender: Option<String>,
        /// Recipients; when given, sysexits exit codes are used.
        recipients: Vec<String>,
    },
    /// Flush a site's spool now (exit 0 all delivered, 100 something bounced, 111 something left).
    Flush {
        /// The site (its directory name).
        site: Option<String>,
        /// Connect here instead of the site's RELAYHOST.
        #[arg(long, value_name = "HOST[:PORT]")]
        to: Option<String>,
        /// Flush every site.
        #[arg(long)]
        all: bool,
        /// Also run the outbound queue once (ignoring retry back-off).
        #[arg(long)]
        queue: bool,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// djb's checkpassword for qmail-popup and Dovecot 2.3 (also run as a program named
    /// turnmail-checkpassword): login on fd 3, then PROG runs as the account. See contrib/.
    Checkpassword {
        /// The program to run after a good login, and its arguments.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "PROG"
        )]
        prog: Vec<OsString>,
    },
    // Operator commands (bodies in turnmail::admin).
    /// Virtual domains: add, del, policy (unknown addresses), dkim (signing keys), list.
    Domain {
        #[command(subcommand)]
        cmd: admin::domain::DomainCmd,
    },
    /// POP mailboxes: add, del, passwd, secret (APOP/CRAM-MD5), list.
    User {
        #[command(subcommand)]
        cmd: admin::user::UserCmd,
    },
    /// Forwarding addresses: add, del, list.
    Alias {
        #[command(subcommand)]
        cmd: admin::alias::AliasCmd,
    },
    /// Customer sites (held and flushed mail): add, del, list.
    Site {
        #[command(subcommand)]
        cmd: admin::site::SiteCmd,
    },
    /// Domains, mailboxes, sites and queues at a glance (from disk; no daemon needed).
    Status {
        /// Print everything as one JSON object (field names in README).
        #[arg(long)]
        json: bool,
    },
    /// Messages in the outbound queue or a site's spool: list, show, bounce, delete.
    Queue {
        #[command(subcommand)]
        cmd: admin::queue::QueueCmd,
    },
    /// The accounts database ([accounts] backend = "postgres"): init, migrate, status,
    /// import (a mail root's account files), export (the files from the database).
    Db {
        #[command(subcommand)]
        cmd: turnmail::db::cli::DbCmd,
    },
    /// Move an existing qmail/vpopmail/checkpoppasswd host onto turnmail in place.
    Import {
        #[command(subcommand)]
        cmd: admin::import::ImportCmd,
    },
    /// Show where mail for ADDRESS would go and what SMTP answers for it (exit 0
    /// deliverable, 100 refused, 111 temporary trouble).
    Resolve {
        /// The address, as a client would give it in RCPT TO (`<...>`, a source route
        /// and a bare `postmaster` are read as SMTP reads them).
        address: String,
        /// Resolve as `turnmail deliver` does: no rcpthosts check, no SMTP grammar.
        #[arg(long)]
        local: bool,
        /// Print the explanation as one JSON object (fields in README).
        #[arg(long)]
        json: bool,
    },
    /// Files generated from this program's own definitions, for packages
    /// (deploy/package.sh): man pages, shell completions, turnmail.toml.
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: GenerateCmd,
    },
}

#[derive(Subcommand)]
enum GenerateCmd {
    /// A man page for turnmail and each subcommand (turnmail-domain-add.1, ...) in DIR.
    Man { dir: PathBuf },
    /// The completion script for SHELL in DIR (turnmail.bash, _turnmail, turnmail.fish).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
        dir: PathBuf,
    },
    /// The turnmail.toml a package ships: production settings, POP3S off.
    Config {
        file: PathBuf,
        #[arg(long, default_value = "turnmail")]
        user: String,
    },
}

#[derive(Subcommand)]
enum TlsCmd {
    /// Make a self-signed certificate for testing (ROOT/tls/cert.pem and key.pem, used
    /// when turnmail.toml names no [tls] files). Mail clients will warn about it.
    Selfsigned {
        /// The name in the certificate (default: control/me).
        #[arg(long)]
        hostname: Option<String>,
        /// Replace a certificate already there.
        #[arg(long)]
        force: bool,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TURNMAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(false);
    match format {
        LogFormat::Json => b.json().init(),
        LogFormat::Human => b.init(),
    }
}

fn need_root(root: Option<PathBuf>) -> Result<PathBuf, String> {
    root.ok_or_else(|| "no mail root: pass --root DIR or set TURNMAIL_ROOT".to_string())
}

/// The root, which must be a mail root: every command says the same when it is not,
/// before it looks for a user, a site or an account there.
fn mail_root(root: Option<PathBuf>) -> Result<PathBuf, String> {
    let root = need_root(root)?;
    turnmail::mailroot::require(&root).map_err(|e| e.to_string())?;
    Ok(root)
}

fn pick_mail_user(user: Option<&str>) -> Result<MailUser, String> {
    let owned;
    let candidates: Vec<&str> = match user {
        Some(u) => {
            owned = u.to_string();
            vec![owned.as_str()]
        }
        None => vec!["turnmail", "mail"],
    };
    MailUser::pick(&candidates).map_err(|e| e.to_string())
}

fn cmd_init(dir: &Path, user: Option<&str>, force: bool) -> Result<ExitCode, String> {
    let mut opts = InitOptions::demo(pick_mail_user(user)?);
    opts.force = force;
    let r = init::init(dir, &opts).map_err(|e| e.to_string())?;
    println!("created a mail root in {}", r.root.display());
    println!("  POP login:  {}", r.login);
    println!("  password:   {}", r.password);
    println!(
        "  site:       {} (mail for *@{} waits in sites/{}/Maildir)",
        opts.site, opts.site_domain, opts.site
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_setup(dir: &Path, opts: &admin::setup::SetupOptions) -> Result<ExitCode, String> {
    let r = admin::setup::setup(dir, opts).map_err(|e| e.to_string())?;
    let root = r.root.display();
    println!("created an empty mail root in {root} for {}", opts.hostname);
    println!("  mail user:  {}", opts.mail_user.name);
    if let Some(c) = &opts.config {
        println!("  settings:   {root}/turnmail.toml -> {}", c.display());
    }
    let show = |what: &str, a: &[std::net::SocketAddr]| {
        if !a.is_empty() {
            let l: Vec<String> = a.iter().map(|x| x.to_string()).collect();
            println!("  {what:<11} {}", l.join(" "));
        }
    };
    show("SMTP:", &r.config.smtp.listen);
    show("POP3:", &r.config.pop3.listen);
    show("POP3S:", &r.config.pop3.listen_tls);
    show("ODMR:", &r.config.odmr.listen);
    show("submission:", &r.config.submission.listen);
    show("submissions:", &r.config.submissions.listen);
    // A linked settings file (a package's) ships with POP3S off too.
    if r.pop3s_left_out || (opts.config.is_some() && r.config.pop3.listen_tls.is_empty()) {
        let file = opts
            .config
            .clone()
            .unwrap_or_else(|| r.root.join("turnmail.toml"));
        println!(
            "  POP3S (995) is off until a certificate is set: [tls] in {} \
             (or `turnmail --root {root} tls selfsigned` for testing), then uncomment listen_tls",
            file.display()
        );
    }
    println!("next:");
    println!("  turnmail --root {root} domain add example.net");
    println!("  turnmail --root {root} user add joe@example.net");
    println!("  systemctl enable --now turnmail      # or: turnmail --root {root} serve");
    Ok(ExitCode::SUCCESS)
}

fn cmd_generate(what: GenerateCmd) -> Result<ExitCode, String> {
    use clap::CommandFactory;
    let at = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    match what {
        GenerateCmd::Man { dir } => {
            let pages =
                turnmail::generate::man_pages(Cli::command(), &dir).map_err(|e| at(&dir, e))?;
            println!("{} man pages in {}", pages.len(), dir.display());
        }
        GenerateCmd::Completions { shell, dir } => {
            let f = turnmail::generate::completions(Cli::command(), shell, &dir)
                .map_err(|e| at(&dir, e))?;
            println!("{}", f.display());
        }
        GenerateCmd::Config { file, user } => {
            turnmail::generate::packaged_config(&user, &file).map_err(|e| at(&file, e))?;
            println!("{}", file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_selfsigned(root: &Path, hostname: Option<String>, force: bool) -> Result<ExitCode, String> {
    let (cert, key) = turnmail::tls::default_paths(root);
    if !force && (cert.exists() || key.exists()) {
        return Err(format!(
            "{} or {} exists; --force replaces them",
            cert.display(),
            key.display()
        ));
    }
    let name = match hostname {
        Some(h) => h,
        None => std::fs::read_to_string(root.join("control/me"))
            .map_err(|e| format!("{}/control/me: {e} (or pass --hostname)", root.display()))?
            .lines()
            .next()
            .unwrap_or("localhost")
            .trim()
            .to_string(),
    };
    become_mail_user(root)?;
    let (cert, key) =
        turnmail::tls::generate_self_signed(root, &name).map_err(|e| format!("tls: {e}"))?;
    println!("made a self-signed certificate for {name} (for testing: clients will warn)");
    println!("  certificate: {}", cert.display());
    println!("  key:         {} (mode 0600)", key.display());
    println!("used when turnmail.toml names no [tls] files; `systemctl reload turnmail` has no");
    println!("effect on certificates: restart the daemon to load it.");
    Ok(ExitCode::SUCCESS)
}

/// Commands that write into a mail root run as its mail user, never as root: files
/// they create must stay readable and replaceable by the daemon (which runs as that
/// user), and mail is never delivered as uid 0.
fn become_mail_user(root: &Path) -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(());
    }
    let config = Config::load(root).map_err(|e| e.to_string())?;
    let mu = MailUser::for_root(root, &config.user).map_err(|e| e.to_string())?;
    turnmail::privilege::become_user(mu.uid, mu.gid)
        .map_err(|e| format!("switching to user {}: {e}", mu.name))
}

fn open_engine(root: &Path) -> Result<Engine, String> {
    let config = Config::load(root).map_err(|e| e.to_string())?;
    let (engine, report) = Engine::open_configured(root, config).map_err(|e| e.to_string())?;
    for e in &report.errors {
        eprintln!("turnmail: {e}");
    }
    Ok(engine)
}

fn cmd_newu(root: &Path) -> Result<ExitCode, String> {
    // A broken turnmail.toml is reported here too, as by every other command.
    let config = Config::load(root).map_err(|e| e.to_string())?;
    // Before giving up root: users/ setgid to the reader group, so that what the mail
    // user writes there from now on (here, and the daemon's recompiles) inherits it.
    let readers = turnmail::engine::readers::reader_group(&config).map_err(|e| e.to_string())?;
    let paths = turnmail::engine::Paths::new(root);
    let users = paths.assign.parent().unwrap_or(root);
    turnmail::engine::readers::apply(users, &paths.secrets, readers.as_ref())
        .map_err(|e| e.to_string())?;
    become_mail_user(root)?;
    let mut bar: Option<(PathBuf, turnmail::admin::progress::Progress, usize)> = None;
    let report = Engine::compile_sources(root, &config, &mut |src, done, total| {
        if bar.as_ref().is_none_or(|(p, _, _)| p != src) {
            if let Some((_, b, _)) = bar.take() {
                b.finish();
            }
            let label = format!(
                "newu {}",
                src.file_name().unwrap_or_default().to_string_lossy()
            );
            bar = Some((
                src.to_path_buf(),
                turnmail::admin::progress::Progress::new(&label, total as u64),
                0,
            ));
        }
        if let Some((_, b, shown)) = bar.as_mut() {
            b.inc((done - *shown) as u64);
            *shown = done;
        }
    });
    if let Some((_, b, _)) = bar.take() {
        b.finish();
    }
    for (p, n) in &report.compiled {
        println!("compiled {} ({n} entries)", p.display());
    }
    for e in &report.errors {
        eprintln!("turnmail newu: {e}");
    }
    // qmail-newu's convention: trouble is exit 111 and the old cdb stays.
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(111)
    })
}

fn cmd_check(root: &Path, json: bool) -> Result<ExitCode, String> {
    let findings = turnmail::check::check(root).map_err(|e| e.to_string())?;
    if json {
        admin::table::print_json(&turnmail::check::to_json(root, &findings));
        return Ok(ExitCode::from(u8::from(!findings.is_empty())));
    }
    let config = Config::load(root).map_err(|e| e.to_string())?;
    if config.accounts.backend != turnmail::db::Backend::Files {
        let info = turnmail::engine::backend::BackendInfo::ask(&config);
        println!("accounts: {}", info.line());
    }
    if findings.is_empty() {
        println!("{}: no problems found", root.display());
    } else {
        for f in &findings {
            println!("{f}");
        }
        println!("{} problem(s) found", findings.len());
    }
    Ok(ExitCode::from(u8::from(!findings.is_empty())))
}

fn cmd_resolve(root: &Path, address: &str, local: bool, json: bool) -> Result<ExitCode, String> {
    let engine = open_engine(root)?;
    let hostname = turnmail::daemon::hostname(engine.config(), &engine);
    let domain = turnmail::daemon::postmaster_domain(engine.config(), &hostname);
    let over_quota = Some(engine.config().quota.over_quota);
    let e = admin::resolve::explain(&engine, address, &domain, local, over_quota);
    if json {
        admin::table::print_json(&serde_json::json!(e));
    } else {
        print!("{}", admin::resolve::render(&e));
    }
    Ok(ExitCode::from(e.exit_code()))
}

fn deliver_stdin(
    root: &Path,
    sender: &str,
    recipients: &[String],
) -> turnmail::deliver::inject::InjectResult {
    use std::io::Read;
    use turnmail::deliver::inject::{self, InjectResult};
    // Behind qmail or Postfix a missing root is a temporary failure (the disk may come
    // back), said in the words every other command uses.
    if let Err(e) = turnmail::mailroot::require(root) {
        return InjectResult::Temporary(e.to_string());
    }
    if let Err(e) = become_mail_user(root) {
        return InjectResult::Temporary(e);
    }
    let engine = match open_engine(root) {
        Ok(e) => e,
        Err(e) => return InjectResult::Temporary(e),
    };
    let limit = engine.config().limits.max_message_size;
    let mut data = Vec::new();
    if let Err(e) = std::io::stdin().take(limit + 1).read_to_end(&mut data) {
        return InjectResult::Temporary(format!("reading the message: {e}"));
    }
    let hostname = turnmail::daemon::hostname(engine.config(), &engine);
    let rcpts: Vec<Vec<u8>> = recipients.iter().map(|r| r.clone().into_bytes()).collect();
    inject::inject(
        &engine,
        &hostname,
        sender.as_bytes(),
        &rcpts,
        &data,
        turnmail::datetime::now_unix(),
    )
}

fn cmd_deliver(
    root: &Path,
    sender: Option<String>,
    recipients: Vec<String>,
) -> Result<ExitCode, String> {
    use turnmail::deliver::inject::{self, Convention};
    let (convention, recipients) = if recipients.is_empty() {
        let r = inject::qmail_recipient(|k| std::env::var(k).ok());
        (Convention::Qmail, r.into_iter().collect::<Vec<_>>())
    } else {
        (Convention::Sysexits, recipients)
    };
    let sender = sender
        .or_else(|| std::env::var("SENDER").ok())
        .unwrap_or_default();
    let r = deliver_stdin(root, &sender, &recipients);
    if let Some(m) = r.message() {
        // qmail-local and pipe(8) put this text in their logs and bounces.
        eprintln!("turnmail deliver: {m}");
    }
    Ok(ExitCode::from(r.exit_code(convention)))
}

fn flush_context(root: &Path, engine: &Engine) -> turnmail::flush::FlushContext {
    let config = engine.config();
    turnmail::flush::FlushContext {
        env: turnmail::deliver::DeliverEnv {
            queue: turnmail::outbound::queue::Queue::new(root),
            allow_programs: config.allow_programs,
            program_timeout: std::time::Duration::from_secs(config.limits.program_timeout_secs),
            mbox_lock_timeout: std::time::Duration::from_secs(30),
            quota: config.quota.clone(),
        },
        hostname: turnmail::daemon::hostname(config, engine),
        status_dir: root.join("run/sites"),
        on_line: None,
    }
}

fn print_line(name: &str, l: &turnmail::flush::MessageLine) {
    println!(
        "{name}: {} <{}> {}: {}",
        l.file, l.recipient, l.result, l.reply
    );
}

/// `shown`: the per-message lines were printed as they happened.
fn print_flush(name: &str, r: &turnmail::flush::FlushResult, shown: bool) {
    use turnmail::flush::FlushResult;
    match r {
        FlushResult::Locked => println!("{name}: skipped, another flush holds the lock"),
        FlushResult::NothingQueued { expired_bounced } => {
            println!("{name}: nothing queued ({expired_bounced} expired messages bounced)")
        }
        FlushResult::Failed { error, queued, .. } => {
            println!("{name}: {queued} queued, not flushed: {error}")
        }
        FlushResult::Done(sum) => {
            if !shown {
                for l in &sum.lines {
                    print_line(name, l);
                }
                if sum.lines_omitted > 0 {
                    println!("{name}: ({} more messages, in the log)", sum.lines_omitted);
                }
            }
            println!(
                "{name}: {} delivered, {} bounced, {} kept{}{}",
                sum.delivered,
                sum.bounced,
                sum.kept,
                if sum.tls { " (TLS)" } else { "" },
                sum.error
                    .as_ref()
                    .map(|e| format!("; session ended: {e}"))
                    .unwrap_or_default()
            );
        }
    }
}

fn worse(a: u8, b: u8) -> u8 {
    match (a, b) {
        (111, _) | (_, 111) => 111,
        (100, _) | (_, 100) => 100,
        _ => 0,
    }
}

/// `turnmail flush` through a running daemon; None when no daemon answers.
fn flush_via_daemon(
    root: &Path,
    node: Option<&NodeName>,
    sites: &[String],
    to: Option<&str>,
    json: bool,
) -> Option<u8> {
    use turnmail::daemon::control::{Request, Response, ask};
    ask(root, node, &Request::Status)?;
    let mut worst = 0;
    for name in sites {
        let req = Request::Flush {
            site: name.clone(),
            to: to.map(str::to_string),
        };
        match ask(root, node, &req) {
            Some(Response::Flushed { site, result }) => {
                worst = worse(worst, result.exit_code());
                if json {
                    println!("{}", serde_json::json!({"site": site, "result": result}));
                } else {
                    print_flush(&site, &result, false);
                }
            }
            Some(Response::Busy { site }) => {
                println!("{site}: a flush is already running");
                worst = 111;
            }
            Some(Response::Error { message }) => {
                eprintln!("turnmail flush: {message}");
                worst = 111;
            }
            _ => {
                eprintln!("turnmail flush: the daemon did not answer");
                worst = 111;
            }
        }
    }
    Some(worst)
}

/// A flush lists a spool without its messages of the current second (they may still
/// be changing); mail that arrived a moment ago should go with this flush, so wait
/// (a second at most; two should a clock step put files in the future).
fn wait_until_listed(sites: &[turnmail::spool::site::Site]) {
    let now = std::time::SystemTime::now();
    let until = sites
        .iter()
        .filter_map(|s| s.maildir().settles_at(now).ok().flatten())
        .max();
    if let Some(wait) = until.and_then(|u| u.duration_since(now).ok()) {
        std::thread::sleep(wait.min(std::time::Duration::from_secs(2)));
    }
}

/// The node a command is about: `--node`, else `[cluster] node`.
fn node_of(root: &Path, cli: Option<&str>) -> Result<Option<NodeName>, String> {
    let configured = Config::load(root).map_err(|e| e.to_string())?.cluster.node;
    turnmail::cluster::effective(cli, configured.as_deref()).map_err(|e| e.to_string())
}

fn cmd_flush(
    root: &Path,
    node: Option<&str>,
    site: Option<String>,
    to: Option<String>,
    all: bool,
    queue: bool,
    json: bool,
) -> Result<ExitCode, String> {
    use turnmail::flush;
    let node = node_of(root, node)?;
    become_mail_user(root)?;
    let engine = open_engine(root)?;
    // Every process that sends from a spool agrees on the backend's second lock.
    turnmail::db::advisory::install(engine.config())?;
    let found = turnmail::spool::site_rows::discover_configured(root, engine.config());
    for p in &found.problems {
        eprintln!("turnmail flush: {p}");
    }
    let sites: Vec<_> = match (&site, all) {
        (Some(name), false) => vec![
            found
                .get(name)
                .cloned()
                .ok_or_else(|| format!("no site named {name:?}"))?,
        ],
        (None, true) => found.sites.clone(),
        (None, false) if queue => Vec::new(),
        _ => return Err("name one site, or use --all".into()),
    };
    wait_until_listed(&sites);
    let names: Vec<String> = sites.iter().map(|s| s.name.clone()).collect();
    if !queue && let Some(code) = flush_via_daemon(root, node.as_ref(), &names, to.as_deref(), json)
    {
        return Ok(ExitCode::from(code));
    }
    let ctx = flush_context(root, &engine);
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let mut worst = 0u8;
    for s in &sites {
        let mut ctx = ctx.clone();
        if !json {
            // Printed as they happen: a result keeps only the first lines.
            let name = s.name.clone();
            ctx.on_line = Some(std::sync::Arc::new(move |l| print_line(&name, l)));
        }
        let r = rt.block_on(flush::flush_site(s, &ctx, to.as_deref()));
        worst = worse(worst, r.exit_code());
        if json {
            println!("{}", serde_json::json!({"site": s.name, "result": r}));
        } else {
            print_flush(&s.name, &r, true);
        }
    }
    if queue {
        let engine = std::sync::Arc::new(engine);
        let runner = turnmail::outbound::runner::QueueRunner::new(
            engine.clone(),
            ctx.env.clone(),
            ctx.hostname.clone(),
            engine.config().relay.clone(),
        );
        let r = rt.block_on(runner.run_once(true));
        if json {
            println!(
                "{}",
                serde_json::json!({"queue": {"delivered": r.delivered, "bounced": r.bounced, "deferred": r.deferred, "trouble": r.trouble}})
            );
        } else {
            println!(
                "queue: {} delivered, {} bounced, {} deferred{}",
                r.delivered,
                r.bounced,
                r.deferred,
                if r.trouble.is_empty() {
                    String::new()
                } else {
                    format!("; trouble: {}", r.trouble.join("; "))
                }
            );
        }
        if r.deferred > 0 || !r.trouble.is_empty() {
            worst = 111;
        } else if r.bounced > 0 {
            worst = worse(worst, 100);
        }
    }
    Ok(ExitCode::from(worst))
}

fn cmd_serve(
    root: Option<PathBuf>,
    demo: Option<PathBuf>,
    opts: turnmail::daemon::ServeOptions,
) -> Result<ExitCode, String> {
    let (root, demo) = match demo {
        Some(dir) => {
            if !init::is_mail_root(&dir) {
                cmd_init(&dir, None, false)?;
            }
            (dir, true)
        }
        None => (mail_root(root)?, false),
    };
    match turnmail::check::check(&root) {
        Ok(findings) => {
            for f in &findings {
                eprintln!("turnmail check: {f}");
            }
        }
        Err(e) => return Err(e.to_string()),
    }
    if !demo {
        turnmail::daemon::run(&root, opts)?;
        return Ok(ExitCode::SUCCESS);
    }
    // After binding, with the ports bound: the hints work as printed, or do not appear.
    let shown = root.clone();
    turnmail::daemon::run_with(
        &root,
        opts,
        Box::new(move |listening| print!("{}", admin::demo::hints(&shown, listening))),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Run an operator command from turnmail::admin; its errors carry their exit status.
fn cmd_admin<F>(root: Option<PathBuf>, body: F) -> Result<ExitCode, String>
where
    F: FnOnce(&Path) -> Result<(), admin::AdminError>,
{
    let root = mail_root(root)?;
    admin_result(body(&root))
}

fn admin_result(r: Result<(), admin::AdminError>) -> Result<ExitCode, String> {
    match r {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("turnmail: {e}");
            Ok(ExitCode::from(admin::exit_code(&e)))
        }
    }
}

fn main() -> ExitCode {
    if let Some(code) = turnmail::checkpassword::dispatch_by_name() {
        return code;
    }
    let cli = Cli::parse();
    let format = match cli.log_format {
        Some(LogArg::Json) => LogFormat::Json,
        Some(LogArg::Human) => LogFormat::Human,
        None => cli
            .root
            .as_deref()
            .and_then(|r| Config::load(r).ok())
            .map_or(LogFormat::Human, |c| c.log.format),
    };
    // checkpassword logs on its own terms: its stderr may be a POP client's connection.
    if !matches!(cli.command, Command::Checkpassword { .. }) {
        init_logging(format);
    }
    // What this process delivers or bounces carries its node's name in the unique
    // names, as the daemon's does (`serve` names itself once it knows its node).
    if !matches!(cli.command, Command::Serve { .. })
        && let Some(r) = cli.root.as_deref()
        && let Ok(Some(n)) = node_of(r, cli.node.as_deref())
    {
        turnmail::maildir::set_node_name(&n);
    }
    let result = match cli.command {
        Command::Init { dir, user, force } => dir
            .or(cli.root)
            .ok_or_else(|| "init needs a directory: turnmail init DIR".to_string())
            .and_then(|d| cmd_init(&d, user.as_deref(), force)),
        Command::Setup {
            dir,
            user,
            hostname,
            smtp,
            pop3,
            pop3s,
            odmr,
            submission,
            submissions,
            cert,
            key,
            config,
            force,
        } => dir
            .or(cli.root)
            .ok_or_else(|| "setup needs a directory: turnmail setup DIR".to_string())
            .and_then(|d| {
                let opts = admin::setup::SetupOptions {
                    hostname: hostname.unwrap_or_else(admin::setup::system_hostname),
                    mail_user: pick_mail_user(user.as_deref())?,
                    listeners: admin::setup::Listeners {
                        smtp,
                        pop3,
                        pop3s,
                        odmr,
                        submission,
                        submissions,
                    },
                    tls: cert.zip(key),
                    force,
                    config,
                };
                cmd_setup(&d, &opts)
            }),
        Command::Tls {
            cmd: TlsCmd::Selfsigned { hostname, force },
        } => mail_root(cli.root).and_then(|r| cmd_selfsigned(&r, hostname, force)),
        Command::Serve {
            demo,
            smtp,
            pop3,
            pop3s,
            odmr,
            submission,
            submissions,
            metrics,
        } => cmd_serve(
            cli.root,
            demo,
            turnmail::daemon::ServeOptions {
                smtp,
                pop3,
                pop3s,
                odmr,
                submission,
                submissions,
                metrics,
                node: cli.node,
            },
        ),
        Command::Newu => mail_root(cli.root).and_then(|r| cmd_newu(&r)),
        Command::Check { json } => mail_root(cli.root).and_then(|r| cmd_check(&r, json)),
        Command::Deliver { sender, recipients } => {
            need_root(cli.root).and_then(|r| cmd_deliver(&r, sender, recipients))
        }
        Command::Flush {
            site,
            to,
            all,
            queue,
            json,
        } => mail_root(cli.root)
            .and_then(|r| cmd_flush(&r, cli.node.as_deref(), site, to, all, queue, json)),
        Command::Checkpassword { prog } => Ok(turnmail::checkpassword::main(cli.root, prog)),
        Command::Domain { cmd } => cmd_admin(cli.root, |r| admin::domain::run(r, cmd)),
        Command::User { cmd } => cmd_admin(cli.root, |r| admin::user::run(r, cmd)),
        Command::Alias { cmd } => cmd_admin(cli.root, |r| admin::alias::run(r, cmd)),
        Command::Site { cmd } => cmd_admin(cli.root, |r| admin::site::run(r, cmd)),
        Command::Status { json } => {
            let node = cli.node;
            cmd_admin(cli.root, |r| {
                let node = node_of(r, node.as_deref()).map_err(admin::AdminError::Invalid)?;
                admin::status::run(r, node.as_ref(), json)
            })
        }
        Command::Queue { cmd } => cmd_admin(cli.root, |r| {
            // Spool files and bounces belong to the mail user, never to root.
            become_mail_user(r).map_err(admin::AdminError::Invalid)?;
            // bounce and delete take the senders' lock, with the backend's second lock.
            let config = Config::load(r)?;
            turnmail::db::advisory::install(&config).map_err(admin::AdminError::Invalid)?;
            admin::queue::run(r, cmd)
        }),
        // An import may make the root (or adopt a qmail tree): its own checks apply.
        Command::Import { cmd } => {
            need_root(cli.root).and_then(|r| admin_result(admin::import::run(&r, cmd).map(|_| ())))
        }
        Command::Db { cmd } => Ok(turnmail::db::cli::run(cli.root.as_deref(), cmd)),
        Command::Generate { what } => cmd_generate(what),
        Command::Resolve {
            address,
            local,
            json,
        } => mail_root(cli.root).and_then(|r| cmd_resolve(&r, &address, local, json)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("turnmail: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument and flag of every command says what it is for; hidden ones aside.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if a.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.is_hide_set() {
                    continue;
                }
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "turnmail", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
