//! Helpers of the cluster tests: nodes on one root, the demo site's spool, SMTP and
//! POP3 conversations.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use super::DemoRoot;
use super::daemon::{Client, Daemon};
use super::sink::{Received, Sink};
use super::write;
use turnmail::maildir::Maildir;

pub fn own(path: &Path) {
    if nix::unistd::Uid::effective().is_root() {
        let mu = super::mail_user();
        std::os::unix::fs::chown(path, Some(mu.uid), Some(mu.gid)).unwrap();
    }
}

/// A POP account (the accounts POP3, ODMR and SMTP AUTH check) added to users/poppasswd
/// by hand with the demo site as its home, compiled by `newu`, and on the postgres test
/// backend loaded into the database.
pub fn add_account(d: &DemoRoot, login: &str, password: &str) {
    let mu = super::mail_user();
    let hash = turnmail::engine::crypt::hash_new(password.as_bytes()).unwrap();
    let pw = d.root.join("users/poppasswd");
    let mut text = std::fs::read_to_string(&pw).unwrap();
    text.push_str(&format!(
        "{login}:{hash}:{}:{}\n",
        mu.name,
        d.root.join("sites/acme").display()
    ));
    write(&pw, &text);
    own(&pw);
    let o = super::turnmail(&d.root, &["newu"]);
    assert!(o.status.success(), "{o:?}");
    super::accounts_changed(d);
}

/// Nodes `n1`..`nN` on the root.
pub fn nodes(d: &DemoRoot, n: usize) -> Vec<Daemon> {
    (1..=n)
        .map(|i| Daemon::start_with(&d.root, &["--node", &format!("n{i}")]))
        .collect()
}

/// The demo site points at `sink`, with `extra` site.toml settings.
pub fn site_setup(d: &DemoRoot, sink: &Sink, extra: &str) {
    write(
        &d.root.join("sites/acme/RELAYHOST"),
        &format!("{}\n", sink.addr),
    );
    let toml = d.root.join("sites/acme/site.toml");
    write(&toml, &format!("domains = [\"acme.example\"]\n{extra}"));
    own(&toml);
}

/// `n` messages in the site's spool, to u0@ .. u{n-1}@acme.example, a few seconds old.
pub fn spool_n(d: &DemoRoot, n: usize) {
    let md = Maildir::new(d.root.join("sites/acme/Maildir"));
    for i in 0..n {
        let head =
            format!("Return-Path: <bob@example.org>\nDelivered-To: site-acme-u{i}@acme.example\n");
        let got = md
            .deliver(&[head.as_bytes(), b"Subject: t\n\nbody\n"])
            .unwrap();
        own(&got.path);
        super::set_mtime(&got.path, SystemTime::now() - Duration::from_secs(5));
    }
}

pub fn spooled(d: &DemoRoot) -> usize {
    Maildir::new(d.root.join("sites/acme/Maildir"))
        .list(SystemTime::now() + Duration::from_secs(2))
        .unwrap()
        .len()
}

pub fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many times each recipient reached the sink.
pub fn by_recipient(got: &[Received]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in got {
        *m.entry(r.to.clone()).or_default() += 1;
    }
    m
}

pub fn ehlo(c: &mut Client) {
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("EHLO client.example").starts_with("250"));
}

/// Send messages `ids` to `rcpt` over one SMTP connection to `addr`, each with its own
/// Message-ID.
pub fn send_all(addr: SocketAddr, from: &str, rcpt: &str, ids: &[String]) {
    let mut c = Client::connect(addr);
    ehlo(&mut c);
    for id in ids {
        let r = c.cmd(&format!("MAIL FROM:<{from}>"));
        assert!(r.starts_with("250"), "MAIL: {r}");
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(r.starts_with("250"), "RCPT: {r}");
        let r = c.cmd("DATA");
        assert!(r.starts_with("354"), "DATA: {r}");
        c.send(
            format!("Message-ID: <{id}>\r\nSubject: cluster {id}\r\n\r\nbody of {id}\r\n.\r\n")
                .as_bytes(),
        );
        let r = c.reply();
        assert!(r.starts_with("250"), "end of data for {id}: {r}");
    }
    assert!(c.cmd("QUIT").starts_with("221"));
}

/// The Message-ID of a stored message.
pub fn message_id(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("Message-ID: <"))
        .map(|v| v.trim_end_matches('>').to_string())
}

pub fn maildir_files(md: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(md.join(sub)).unwrap().flatten() {
            out.push(e.path());
        }
    }
    out
}

/// ETRN on `node` for the demo site; the reply.
pub fn etrn(node: &Daemon) -> String {
    let mut c = node.connect();
    ehlo(&mut c);
    c.cmd("ETRN acme.example")
}

/// A POP3 conversation: the reply to each line.
pub struct Pop {
    r: BufReader<TcpStream>,
}

impl Pop {
    pub fn connect(addr: SocketAddr) -> Pop {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut p = Pop {
            r: BufReader::new(s),
        };
        let g = p.line();
        assert!(g.starts_with("+OK"), "{g}");
        p
    }

    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l.trim_end().to_string()
    }

    pub fn cmd(&mut self, c: &str) -> String {
        self.r
            .get_mut()
            .write_all(format!("{c}\r\n").as_bytes())
            .unwrap();
        self.line()
    }

    pub fn login(&mut self, user: &str, pass: &str) -> String {
        let r = self.cmd(&format!("USER {user}"));
        assert!(r.starts_with("+OK"), "{r}");
        self.cmd(&format!("PASS {pass}"))
    }
}

/// Run with `input` on standard input.
pub trait WithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output;
}

impl WithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output {
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}

/// `per_node` clients per node at once, each over one SMTP connection, sending
/// messages `0..total` between them to `rcpt` (message `i` has the Message-ID
/// `id(i)`); returns once every client got its 250s.
pub fn send_spread(
    ns: &[Daemon],
    per_node: usize,
    total: usize,
    from: &str,
    rcpt: &str,
    id: impl Fn(usize) -> String,
) {
    let clients = ns.len() * per_node;
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let addr = ns[c % ns.len()].addr;
            let ids: Vec<String> = (c..total).step_by(clients).map(&id).collect();
            let (from, rcpt) = (from.to_string(), rcpt.to_string());
            std::thread::spawn(move || send_all(addr, &from, &rcpt, &ids))
        })
        .collect();
    for t in threads {
        t.join().expect("a client failed");
    }
}

/// Message-IDs of the files in a Maildir, each with how often it is there.
pub fn ids_in(md: &Path) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for f in maildir_files(md) {
        let text = std::fs::read_to_string(&f).unwrap();
        let id = message_id(&text).unwrap_or_else(|| panic!("no Message-ID in {f:?}"));
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

/// The sink got `n` messages, to `n` recipients, each once.
pub fn each_once(sink: &Sink, n: usize) {
    let got = sink.messages();
    let counts = by_recipient(&got);
    assert_eq!(counts.len(), n, "every message arrived: {counts:?}");
    assert!(
        counts.values().all(|&c| c == 1),
        "a message twice: {counts:?}"
    );
    assert_eq!(got.len(), n);
}

/// The demo site's schedule fires on every node (`* * * * *` in the nodes'
/// turnmail.toml, the nodes up before the mail is): `n` spooled messages reach `sink`
/// once each, and at least two nodes' logs show the schedule firing (a node that came
/// after the spool was emptied found nothing to start).
pub fn scheduled_flush_sends_once(d: &DemoRoot, ns: &[Daemon], sink: &Sink, n: usize) {
    spool_n(d, n);
    wait_for("the scheduled flush", Duration::from_secs(90), || {
        sink.messages().len() >= n && spooled(d) == 0
    });
    std::thread::sleep(Duration::from_secs(2));
    each_once(sink, n);
    let fired = ns
        .iter()
        .filter(|node| {
            let log = node.log_text();
            log.contains("reason=\"schedule\"") || log.contains("another flush holds the lock")
        })
        .count();
    assert!(fired >= 2, "the schedule fired on {fired} node(s)");
}

/// Node 1 is killed (SIGKILL) while it flushes `n` messages of the demo site to `sink`
/// (whose replies are slow enough for that); `while_flushing` runs just before the
/// kill and `after_kill` just after (checks of what the node holds); the next flush, by ETRN on node 2, sends the rest: nothing
/// lost, at most one message twice (the one in flight).
pub fn killed_flush_is_finished_by_another_node(
    d: &DemoRoot,
    ns: &mut [Daemon],
    sink: &Sink,
    n: usize,
    while_flushing: impl FnOnce(),
    after_kill: impl FnOnce(),
) {
    spool_n(d, n);
    let r = etrn(&ns[0]);
    assert!(r.starts_with("253"), "{r}");
    wait_for("a few messages", Duration::from_secs(30), || {
        sink.messages().len() >= 3
    });
    while_flushing();
    ns[0].kill9();
    let before = sink.messages().len();
    assert!(before < n, "the flush ended before the kill ({before})");
    assert!(spooled(d) > 0);
    after_kill();
    let r = etrn(&ns[1]);
    assert!(r.starts_with("253"), "{r}");
    wait_for("the rest", Duration::from_secs(60), || spooled(d) == 0);
    std::thread::sleep(Duration::from_millis(500));
    let counts = by_recipient(&sink.messages());
    for i in 0..n {
        assert!(
            counts.contains_key(&format!("u{i}@acme.example")),
            "u{i} lost"
        );
    }
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    assert!(duplicates <= 1, "{duplicates} duplicates: {counts:?}");
}

/// The client (127.0.0.1) may relay; remote.example is routed to `sink`.
pub fn relay_setup(d: &DemoRoot, sink: &Sink) {
    use std::os::unix::fs::PermissionsExt;
    let rules = d.root.join("control/tcp.smtp");
    write(&rules, "127.0.0.1:allow,RELAYCLIENT=\"\"\n");
    std::fs::set_permissions(&rules, PermissionsExt::from_mode(0o644)).unwrap();
    let routes = d.root.join("control/smtproutes");
    write(
        &routes,
        &format!("remote.example:127.0.0.1:{}\n", sink.addr.port()),
    );
    own(&rules);
    own(&routes);
}

/// Messages in the outbound queue.
pub fn queued(d: &DemoRoot) -> usize {
    std::fs::read_dir(d.root.join("queue/new")).map_or(0, |r| r.count())
}

/// RCPT's reply alone (no message is sent).
pub fn rcpt(node: &Daemon, to: &str) -> String {
    let mut c = node.connect();
    assert!(c.reply().starts_with("220"));
    c.cmd("HELO test.example");
    c.cmd("MAIL FROM:<a@example.org>");
    let r = c.cmd(&format!("RCPT TO:<{to}>"));
    c.cmd("QUIT");
    r
}
