//! The POP3 load generator for `bench/pop3.sh`: logins per second and RETR throughput
//! against any POP3 server (turnmail, Dovecot), plus the two ceilings the report puts
//! beside them. Written in Rust so that the client is not what limits a figure: a Python
//! client reading the pipelined replies line by line spends about as much CPU per
//! message as the servers do, while this one reads over 1,000 MB/s from the trivial server.
//!
//!   pop3_load logins ADDR --clients C --count N --users u0@d,u1@d,... --password PW
//!       C threads each loop connect, read the greeting, USER, PASS, QUIT (one TCP
//!       connection per login, TCP_NODELAY) until N logins are done in all; thread i
//!       logs in as users[i % len]. Any reply other than +OK is a failure.
//!   pop3_load retr ADDR --user U --password PW --sessions K [--pipelined]
//!       K sessions one after the other: USER, PASS, STAT, then every message by RETR,
//!       lockstep (next RETR after the previous message's final ".") or pipelined (all
//!       RETR commands in one write, then all replies read), then QUIT. Only the RETR
//!       phase is timed (first RETR written to last "." read); bytes are everything the
//!       server sent in it (status lines, CRLF message lines, terminators).
//!   pop3_load retr-ceiling --messages M --size S --sessions K [--pipelined]
//!       The same client against a trivial in-process server on 127.0.0.1 that answers
//!       each RETR with a canned reply from memory (no files, no parsing beyond the
//!       line): what this client and the loopback can carry (lockstep: the round trip).
//!   pop3_load fill MAILDIR --messages M --size S
//!       Write M messages of S bytes (LF line ends) into MAILDIR/new, named as turnmail
//!       names its deliveries (`TIME.MiP1.bench,S=size,W=crlf-size`), mode 0600: the
//!       mailbox the RETR runs read, with the same text the trivial server sends.
//!   pop3_load crypt-ceiling --threads T --count N --hash HASH --password PW
//!       N crypt(3) verifications of PW against HASH on T threads through turnmail's
//!       library: the most logins/s any server can do with that hash here.
//!
//! Every mode prints one line of key=value pairs: seconds, value (logins_per_s or
//! mb_per_s, MB = 10^6 bytes), count, failures, the client's own CPU seconds
//! (client_cpu_s), and over the timed interval the machine's busy CPU seconds
//! (machine_cpu_s, niced work excluded), cpu_busy_pct and nice_pct; with `--pid P` also
//! that process's CPU seconds (server_cpu_s) and VmHWM (peak_rss_kb).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!(
        "usage: pop3_load logins ADDR --clients C --count N --users U1,U2,... --password PW [--pid P]\n\
         \x20      pop3_load retr ADDR --user U --password PW --sessions K [--pipelined] [--pid P]\n\
         \x20      pop3_load retr-ceiling --messages M --size S --sessions K [--pipelined]\n\
         \x20      pop3_load crypt-ceiling --threads T --count N --hash HASH --password PW"
    );
    std::process::exit(2)
}

#[derive(Default)]
struct Args {
    mode: String,
    addr: Option<SocketAddr>,
    clients: usize,
    count: usize,
    users: Vec<String>,
    password: String,
    sessions: usize,
    pipelined: bool,
    pid: Option<u32>,
    messages: usize,
    size: usize,
    threads: usize,
    hash: String,
    dir: Option<std::path::PathBuf>,
}

fn parse() -> Args {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        mode: it.next().unwrap_or_else(|| usage()),
        clients: 1,
        count: 100,
        sessions: 1,
        messages: 1000,
        size: 4096,
        threads: 1,
        ..Args::default()
    };
    while let Some(x) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match x.as_str() {
            "--clients" => a.clients = val().parse().unwrap_or_else(|_| usage()),
            "--count" => a.count = val().parse().unwrap_or_else(|_| usage()),
            "--users" => a.users = val().split(',').map(str::to_string).collect(),
            "--user" => a.users = vec![val()],
            "--password" => a.password = val(),
            "--sessions" => a.sessions = val().parse().unwrap_or_else(|_| usage()),
            "--pipelined" => a.pipelined = true,
            "--pid" => a.pid = Some(val().parse().unwrap_or_else(|_| usage())),
            "--messages" => a.messages = val().parse().unwrap_or_else(|_| usage()),
            "--size" => a.size = val().parse().unwrap_or_else(|_| usage()),
            "--threads" => a.threads = val().parse().unwrap_or_else(|_| usage()),
            "--hash" => a.hash = val(),
            _ if x.starts_with("--") => usage(),
            _ if a.mode == "fill" && a.dir.is_none() => a.dir = Some(x.into()),
            _ if a.addr.is_none() => a.addr = Some(x.parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    a
}

// --- measuring (shared with pg_lookup_load) ----------------------------------------

#[path = "support/meter.rs"]
mod meter;
use meter::Meter;

// --- the POP3 client -------------------------------------------------------------------

struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
    line: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let w = s.try_clone()?;
        let mut c = Client {
            r: BufReader::with_capacity(256 << 10, s),
            w,
            line: Vec::with_capacity(256),
        };
        c.expect_ok()?;
        Ok(c)
    }

    /// Read one status line; Err unless it starts with +OK.
    fn expect_ok(&mut self) -> std::io::Result<()> {
        self.line.clear();
        let n = self.r.read_until(b'\n', &mut self.line)?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        if !self.line.starts_with(b"+OK") {
            return Err(std::io::Error::other(format!(
                "server said {:?}",
                String::from_utf8_lossy(&self.line).trim_end()
            )));
        }
        Ok(())
    }

    fn command(&mut self, cmd: &str) -> std::io::Result<()> {
        self.w.write_all(cmd.as_bytes())?;
        self.expect_ok()
    }

    fn login(&mut self, user: &str, password: &str) -> std::io::Result<()> {
        self.command(&format!("USER {user}\r\n"))?;
        self.command(&format!("PASS {password}\r\n"))
    }

    fn stat(&mut self) -> std::io::Result<usize> {
        self.command("STAT\r\n")?;
        let text = String::from_utf8_lossy(&self.line);
        text.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad STAT reply {text:?}")))
    }

    /// One multi-line reply after its +OK line: the bytes up to and including ".\r\n".
    fn read_multiline(&mut self) -> std::io::Result<u64> {
        let mut bytes = self.line.len() as u64;
        loop {
            self.line.clear();
            let n = self.r.read_until(b'\n', &mut self.line)?;
            if n == 0 {
                return Err(std::io::Error::other("connection closed inside a reply"));
            }
            bytes += n as u64;
            if self.line == b".\r\n" {
                return Ok(bytes);
            }
        }
    }
}

fn logins(a: &Args) -> String {
    let addr = a.addr.unwrap_or_else(|| usage());
    if a.users.is_empty() {
        usage()
    }
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let meter = Meter::start(a.pid);
    let t = Instant::now();
    let handles: Vec<_> = (0..a.clients.max(1))
        .map(|i| {
            let (next, failures, first_error) =
                (next.clone(), failures.clone(), first_error.clone());
            let user = a.users[i % a.users.len()].clone();
            let (password, count) = (a.password.clone(), a.count);
            std::thread::spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let r = Client::connect(addr).and_then(|mut c| {
                        c.login(&user, &password)?;
                        c.command("QUIT\r\n")
                    });
                    if let Err(e) = r {
                        failures.fetch_add(1, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e.to_string());
                    }
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let secs = t.elapsed().as_secs_f64();
    let failed = failures.load(Ordering::Relaxed);
    if let Some(e) = first_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        eprintln!("pop3_load: {failed} failed logins; first: {e}");
    }
    format!(
        "seconds={secs:.3} value={:.1} logins_per_s={:.1} count={} failures={failed} {}",
        (a.count - failed) as f64 / secs,
        (a.count - failed) as f64 / secs,
        a.count,
        meter.finish()
    )
}

/// One RETR session; returns (messages, bytes, seconds of the RETR phase).
fn retr_session(
    addr: SocketAddr,
    user: &str,
    password: &str,
    pipelined: bool,
) -> std::io::Result<(usize, u64, f64)> {
    let mut c = Client::connect(addr)?;
    c.login(user, password)?;
    let n = c.stat()?;
    let mut bytes = 0u64;
    let t = Instant::now();
    if pipelined {
        let mut cmds = String::with_capacity(n * 12);
        for i in 1..=n {
            cmds.push_str(&format!("RETR {i}\r\n"));
        }
        // Written from another thread so that a server which answers before it has read
        // everything can never deadlock the two of us.
        let mut w = c.w.try_clone()?;
        let writer = std::thread::spawn(move || w.write_all(cmds.as_bytes()));
        for _ in 0..n {
            c.expect_ok()?;
            bytes += c.read_multiline()?;
        }
        writer
            .join()
            .map_err(|_| std::io::Error::other("writer thread panicked"))??;
    } else {
        for i in 1..=n {
            c.w.write_all(format!("RETR {i}\r\n").as_bytes())?;
            c.expect_ok()?;
            bytes += c.read_multiline()?;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    c.command("QUIT\r\n")?;
    Ok((n, bytes, secs))
}

fn retr(a: &Args, addr: SocketAddr) -> String {
    let user = a.users.first().cloned().unwrap_or_else(|| usage());
    let meter = Meter::start(a.pid);
    let (mut msgs, mut bytes, mut secs) = (0usize, 0u64, 0f64);
    let mut per = Vec::new();
    for _ in 0..a.sessions.max(1) {
        match retr_session(addr, &user, &a.password, a.pipelined) {
            Ok((n, b, s)) => {
                msgs += n;
                bytes += b;
                secs += s;
                per.push(b as f64 / s / 1e6);
            }
            Err(e) => {
                eprintln!("pop3_load: RETR session failed: {e}");
                std::process::exit(1);
            }
        }
    }
    let spread = per
        .iter()
        .map(|x| format!("{x:.1}"))
        .collect::<Vec<_>>()
        .join("/");
    format!(
        "seconds={secs:.4} value={:.1} mb_per_s={:.1} count={msgs} bytes={bytes} sessions={} \
         per_session_mb_per_s={spread} failures=0 {}",
        bytes as f64 / secs / 1e6,
        bytes as f64 / secs / 1e6,
        a.sessions.max(1),
        meter.finish()
    )
}

/// A message of `size` bytes in LF form, as the benchmark's Maildirs hold.
fn message(size: usize, i: usize) -> Vec<u8> {
    let mut m = format!(
        "From: bench@bench.example\nTo: retr@example.com\nSubject: message {i}\n\
         Message-ID: <{i}@bench.example>\n\n"
    )
    .into_bytes();
    while m.len() < size {
        let room = size - m.len();
        let line = 72.min(room.saturating_sub(1));
        m.extend(std::iter::repeat_n(b'x', line));
        m.push(b'\n');
    }
    m
}

/// The trivial server: +OK to everything, a canned RETR reply from memory.
fn ceiling_server(messages: usize, size: usize) -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let body = message(size, 0);
    let mut reply = Vec::new();
    let mut crlf = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        crlf.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
        crlf.extend_from_slice(b"\r\n");
    }
    reply.extend_from_slice(format!("+OK {} octets\r\n", crlf.len()).as_bytes());
    reply.extend_from_slice(&crlf);
    reply.extend_from_slice(b".\r\n");
    let reply = Arc::new(reply);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let reply = reply.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                s.set_nodelay(true)?;
                let mut w = s.try_clone()?;
                let mut r = BufReader::new(s);
                w.write_all(b"+OK ceiling\r\n")?;
                let mut line = Vec::new();
                loop {
                    line.clear();
                    if r.read_until(b'\n', &mut line)? == 0 {
                        return Ok(());
                    }
                    if line.starts_with(b"RETR") {
                        w.write_all(&reply)?;
                    } else if line.starts_with(b"STAT") {
                        w.write_all(format!("+OK {messages} {}\r\n", messages * size).as_bytes())?;
                    } else if line.starts_with(b"QUIT") {
                        w.write_all(b"+OK bye\r\n")?;
                        return Ok(());
                    } else {
                        w.write_all(b"+OK\r\n")?;
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn crlf_len(m: &[u8]) -> usize {
    m.len() + m.iter().filter(|&&b| b == b'\n').count()
}

fn fill(a: &Args) -> String {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = a.dir.clone().unwrap_or_else(|| usage());
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut bytes = 0;
    for i in 0..a.messages {
        let m = message(a.size, i);
        let name = format!(
            "{}.M{i}P1.bench,S={},W={}",
            1_700_000_000 + i,
            m.len(),
            crlf_len(&m)
        );
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.join("new").join(name))
            .unwrap_or_else(|e| panic!("{e}"));
        f.write_all(&m).unwrap_or_else(|e| panic!("{e}"));
        bytes += m.len();
    }
    format!("count={} bytes={bytes}", a.messages)
}

fn crypt_ceiling(a: &Args) -> String {
    if a.hash.is_empty() {
        usage()
    }
    assert!(
        turnmail::engine::crypt::verify(a.password.as_bytes(), a.hash.as_bytes()),
        "the password does not match the hash"
    );
    let next = Arc::new(AtomicUsize::new(0));
    let meter = Meter::start(None);
    let t = Instant::now();
    let handles: Vec<_> = (0..a.threads.max(1))
        .map(|_| {
            let next = next.clone();
            let (pw, hash, count) = (a.password.clone(), a.hash.clone(), a.count);
            std::thread::spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    assert!(turnmail::engine::crypt::verify(
                        pw.as_bytes(),
                        hash.as_bytes()
                    ));
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    let secs = t.elapsed().as_secs_f64();
    format!(
        "seconds={secs:.3} value={:.1} verifications_per_s={:.1} count={} failures=0 {}",
        a.count as f64 / secs,
        a.count as f64 / secs,
        a.count,
        meter.finish()
    )
}

fn main() {
    let mut a = parse();
    let out = match a.mode.as_str() {
        "logins" => logins(&a),
        "retr" => retr(&a, a.addr.unwrap_or_else(|| usage())),
        "retr-ceiling" => {
            let addr = ceiling_server(a.messages, a.size).unwrap_or_else(|e| {
                eprintln!("pop3_load: trivial server: {e}");
                std::process::exit(1)
            });
            a.users = vec!["ceiling".into()];
            a.pid = None;
            // Answered by the trivial server: exactly `messages` per session.
            retr(&a, addr)
        }
        "crypt-ceiling" => crypt_ceiling(&a),
        "fill" => fill(&a),
        _ => usage(),
    };
    println!("{out}");
}
