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
