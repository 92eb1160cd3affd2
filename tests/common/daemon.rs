//! The real `turnmail serve` on a free loopback port, killed when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub pop3: SocketAddr,
    pub odmr: SocketAddr,
    /// Ports 587 (STARTTLS, AUTH) and 465 (implicit TLS) of the demo, on free ports.
    pub submission: SocketAddr,
    pub submissions: SocketAddr,
    pub root: PathBuf,
    pub log: PathBuf,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Daemon {
    /// Start on `root`; waits until the listener accepts connections.
    pub fn start(root: &Path) -> Daemon {
        Self::start_retrying(root, || SocketAddr::from(([127, 0, 0, 1], free_port())))
    }

    pub fn start_at(root: &Path, addr: SocketAddr) -> Daemon {
        Self::start_retrying(root, || addr)
    }

    /// Start with more arguments to `serve` (`--metrics ADDR`, say).
    pub fn start_with(root: &Path, extra: &[&str]) -> Daemon {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::retrying(
            root,
            || SocketAddr::from(([127, 0, 0, 1], free_port())),
            &extra,
        )
    }

    /// A port found free may be taken by another test before the daemon binds it: try
    /// again on fresh ports when the daemon exits saying so.
    fn start_retrying(root: &Path, smtp: impl Fn() -> SocketAddr) -> Daemon {
        Self::retrying(root, smtp, &[])
    }

    fn retrying(root: &Path, smtp: impl Fn() -> SocketAddr, extra: &[String]) -> Daemon {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(root, smtp(), extra) {
                Ok(d) => return d,
                Err(log) if attempt < 5 && log.contains("Address already in use") => {}
                Err(log) => panic!("daemon did not start: {log}"),
            }
        }
    }

    fn try_start(root: &Path, addr: SocketAddr, extra: &[String]) -> Result<Daemon, String> {
        let log = root.with_extension(format!("log-{}", addr.port()));
        let logf = std::fs::File::create(&log).unwrap();
        let pop3 = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let odmr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let submission = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let submissions = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(env!("CARGO_BIN_EXE_turnmail"))
            .arg("--root")
            .arg(root)
            .args([
                "serve",
                "--smtp",
                &addr.to_string(),
                "--pop3",
                &pop3.to_string(),
                "--odmr",
                &odmr.to_string(),
                "--submission",
                &submission.to_string(),
            ])
            // Port 465 needs a certificate: the demo's, not a hand-made root's.
            .args(
                root.join("tls/cert.pem")
                    .exists()
                    .then(|| ["--submissions".to_string(), submissions.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .args(extra)
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child,
            addr,
            pop3,
            odmr,
            submission,
            submissions,
            root: root.to_path_buf(),
            log,
        };
        let start = Instant::now();
        while TcpStream::connect(addr).is_err() || TcpStream::connect(pop3).is_err() {
            if d.child.try_wait().ok().flatten().is_some() {
                return Err(d.log_text());
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!("not listening after 60 s: {}", d.log_text()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // That probe held a connection slot: let it go before the test counts slots.
        std::thread::sleep(Duration::from_millis(100));
        // A run on the postgres backend really is on it (not the files by mistake).
        // (A daemon started while its database is down says so instead.)
        if super::on_postgres() {
            let log = d.log_text();
            assert!(
                log.contains("accounts loaded from the database")
                    || log.contains("account tables unavailable"),
                "TURNMAIL_TEST_ACCOUNTS=postgres, but the daemon's accounts are not the database's: {log}"
            );
        }
        Ok(d)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the process to exit; returns how long it took.
    pub fn terminate(&mut self) -> Duration {
        let t = Instant::now();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        t.elapsed()
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A raw SMTP client for exact conversations.
pub struct Client {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

/// A TCP connection to `dst` from the local address `src` (port chosen by the kernel).
pub fn connect_from(src: std::net::IpAddr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, connect, socket,
    };
    use std::os::fd::AsRawFd;
    let family = if dst.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    match (SocketAddr::new(src, 0), dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            bind(fd.as_raw_fd(), &SockaddrIn::from(s))?;
            connect(fd.as_raw_fd(), &SockaddrIn::from(d))?;
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            bind(fd.as_raw_fd(), &SockaddrIn6::from(s))?;
            connect(fd.as_raw_fd(), &SockaddrIn6::from(d))?;
        }
        _ => {
            return Err(std::io::Error::other(
                "source and destination families differ",
            ));
        }
    }
    Ok(TcpStream::from(fd))
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Self::from_stream(TcpStream::connect(addr).unwrap())
    }

    /// Connect from the local address `src`.
    pub fn connect_from(src: std::net::IpAddr, addr: SocketAddr) -> Client {
        Self::from_stream(connect_from(src, addr).unwrap())
    }

    pub fn from_stream(s: TcpStream) -> Client {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let w = s.try_clone().unwrap();
        Client {
            r: BufReader::new(s),
            w,
        }
    }

    /// Read one (possibly multi-line) reply; returns its lines joined by '\n'.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self.r.read_line(&mut line).unwrap();
            assert!(n > 0, "connection closed; got so far: {all:?}");
            let done = line.as_bytes().get(3) != Some(&b'-');
            all.push_str(line.trim_end());
            if done {
                return all;
            }
            all.push('\n');
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    /// Send a command line and read its reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Whether the server closed the connection (EOF) within the read timeout.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
    }
}

/// Run a command-line tool and return (exit status, stdout+stderr).
pub fn tool(cmd: &str, args: &[&str]) -> (i32, String) {
    let o = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} is required for this test (tests/install-peers installs it): {e}")
    });
    let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    (o.status.code().unwrap_or(-1), s)
}
