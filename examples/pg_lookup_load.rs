//! The load generator of `bench/pg_lookup.sh`: RCPT lookups/s over SMTP and POP3
//! logins/s against one daemon, for random accounts out of a list of N. Written in Rust
//! so that the client's CPU stays small beside the daemon's on a small machine.
//!
//!   pg_lookup_load rcpt ADDR --accounts FILE --sessions S --count N [--unknown-pct P]
//!       [--batch B] [--per-session K] [--pid P]
//!       S sessions, each EHLO, MAIL, then RCPT TO random accounts of FILE (one address
//!       a line), B commands in one write (PIPELINING) and then their B replies, until N
//!       replies are counted over all sessions. P per cent of the recipients are made
//!       unknown (`no` before an existing local part, in an existing domain). A known
//!       recipient must get 250 and an unknown one 550; anything else is a failure.
//!       A transaction is reset (RSET, MAIL, in the same write) before it could pass
//!       100 recipients, the daemon's default limit, and a session ends (QUIT, a new
//!       connection) after K RCPTs (`--per-session K`, default 1000), as a sender's
//!       would: the daemon keeps every recipient's resolution for the whole session, so
//!       one endless session measures that list's growth, not the lookups.
//!   pg_lookup_load rcpt-all ADDR --accounts FILE --sessions S
//!       Every account of FILE once (no unknown ones), as above: the warm-up pass, and
//!       the proof that the daemon accepts every account (failures are counted).
//!   pg_lookup_load ready ADDR --accounts FILE [--timeout SECS]
//!       One session asking RCPT for the last account of FILE until it gets 250 (the
//!       daemon has its accounts), at most SECS (default 120) seconds.
//!   pg_lookup_load logins ADDR --accounts FILE --clients C --count N --password PW
//!       [--pid P]
//!       C threads each loop: connect, greeting, USER, PASS, QUIT (one TCP connection
//!       per login) for a random account, until N logins are done in all. Any reply
//!       other than +OK is a failure.
//!
//! Every mode prints one line of key=value pairs: seconds, value (per second), count,
//! failures, and the meter's (client, machine and with `--pid` the daemon's CPU and
//! VmHWM). The rcpt modes add accepted= and refused= (250 and 550 replies).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;

#[path = "support/meter.rs"]
mod meter;
use meter::Meter;

/// The daemon's default `[limits] max_recipients`.
const MAX_RECIPIENTS: usize = 100;

fn usage() -> ! {
    eprintln!(
        "usage: pg_lookup_load rcpt ADDR --accounts FILE --sessions S --count N [--unknown-pct P] [--batch B] [--per-session K] [--pid P]\n\
         \x20      pg_lookup_load rcpt-all ADDR --accounts FILE --sessions S\n\
         \x20      pg_lookup_load ready ADDR --accounts FILE [--timeout SECS]\n\
         \x20      pg_lookup_load logins ADDR --accounts FILE --clients C --count N --password PW [--pid P]"
    );
    std::process::exit(2)
}

struct Args {
    mode: String,
    addr: SocketAddr,
    accounts: Vec<String>,
    sessions: usize,
    count: usize,
    unknown_pct: u32,
    batch: usize,
    per_session: usize,
    password: String,
    pid: Option<u32>,
    timeout: u64,
}

fn parse() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_else(|| usage());
    let mut addr = None;
    let mut file = None;
    let mut a = Args {
        mode,
        addr: SocketAddr::from(([127, 0, 0, 1], 25)),
        accounts: Vec::new(),
        sessions: 1,
        count: 1000,
        unknown_pct: 0,
        batch: 50,
        per_session: 1000,
        password: String::new(),
        pid: None,
        timeout: 120,
    };
    while let Some(x) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        let int = |s: String| s.parse::<usize>().unwrap_or_else(|_| usage());
        match x.as_str() {
            "--accounts" => file = Some(val()),
            "--sessions" | "--clients" => a.sessions = int(val()).max(1),
            "--count" => a.count = int(val()),
            "--unknown-pct" => a.unknown_pct = int(val()).min(100) as u32,
            "--batch" => a.batch = int(val()).clamp(1, MAX_RECIPIENTS),
            "--per-session" => a.per_session = int(val()).max(1),
            "--password" => a.password = val(),
            "--pid" => a.pid = Some(int(val()) as u32),
            "--timeout" => a.timeout = int(val()) as u64,
            _ if x.starts_with("--") => usage(),
            _ if addr.is_none() => addr = Some(x.parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    a.addr = addr.unwrap_or_else(|| usage());
    let file = file.unwrap_or_else(|| usage());
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        eprintln!("pg_lookup_load: reading {file}: {e}");
        std::process::exit(2)
    });
    a.accounts = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if a.accounts.is_empty() {
        eprintln!("pg_lookup_load: no accounts in {file}");
        std::process::exit(2)
    }
    a
}

fn other(msg: String) -> std::io::Error {
    std::io::Error::other(msg)
}

/// One line-oriented connection (SMTP or POP3).
struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
    line: Vec<u8>,
}

impl Conn {
    fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let w = s.try_clone()?;
        Ok(Conn {
            r: BufReader::with_capacity(64 << 10, s),
            w,
            line: Vec::with_capacity(256),
        })
    }

    fn read_line(&mut self) -> std::io::Result<&[u8]> {
        self.line.clear();
        if self.r.read_until(b'\n', &mut self.line)? == 0 {
            return Err(other("connection closed".into()));
        }
        Ok(&self.line)
    }

    /// One SMTP reply (continuation lines skipped); its code.
    fn smtp_reply(&mut self) -> std::io::Result<u16> {
        loop {
            let l = self.read_line()?;
            let code = l
                .get(..3)
                .and_then(|c| std::str::from_utf8(c).ok())
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| other(format!("bad reply {:?}", String::from_utf8_lossy(l))))?;
            if l.get(3) != Some(&b'-') {
                return Ok(code);
            }
        }
    }

    fn smtp_expect(&mut self, want: u16, what: &str) -> std::io::Result<()> {
        let code = self.smtp_reply()?;
        if code != want {
            let text = String::from_utf8_lossy(&self.line).trim_end().to_string();
            return Err(other(format!("{what}: {text}")));
        }
        Ok(())
    }

    fn pop_ok(&mut self) -> std::io::Result<()> {
        let l = self.read_line()?;
        if !l.starts_with(b"+OK") {
            return Err(other(format!(
                "server said {:?}",
                String::from_utf8_lossy(l).trim_end()
            )));
        }
        Ok(())
    }
}

/// What one SMTP session counted.
#[derive(Default)]
struct Tally {
    replies: usize,
    accepted: usize,
    refused: usize,
    failures: usize,
}

/// An SMTP session up to an open transaction.
fn smtp_open(addr: SocketAddr) -> std::io::Result<Conn> {
    let mut c = Conn::connect(addr)?;
    c.smtp_expect(220, "greeting")?;
    // EHLO alone: pipelining starts once PIPELINING has been offered.
    c.w.write_all(b"EHLO bench.example\r\n")?;
    c.smtp_expect(250, "EHLO")?;
    c.w.write_all(b"MAIL FROM:<bench@bench.example>\r\n")?;
    c.smtp_expect(250, "MAIL")?;
    Ok(c)
}

/// Sessions one after the other, each of at most `per_session` RCPTs (address, known)
/// that `next` hands out in batches until it has none left; counts the replies.
fn rcpt_sessions(
    addr: SocketAddr,
    batch: usize,
    per_session: usize,
    mut next: impl FnMut(&mut Vec<(String, bool)>, usize) -> bool,
) -> std::io::Result<Tally> {
    let mut t = Tally::default();
    while rcpt_session(addr, batch, per_session, &mut next, &mut t)? {}
    Ok(t)
}

/// One session; true when it ended at `per_session` RCPTs rather than for want of work.
fn rcpt_session(
    addr: SocketAddr,
    batch: usize,
    per_session: usize,
    next: &mut impl FnMut(&mut Vec<(String, bool)>, usize) -> bool,
    t: &mut Tally,
) -> std::io::Result<bool> {
    let mut c = smtp_open(addr)?;
    let mut sent = 0usize;
    let mut more = false;
    let mut in_tx = 0usize;
    let mut rcpts = Vec::with_capacity(batch);
    let mut out = Vec::with_capacity(batch * 40);
    loop {
        if sent >= per_session {
            more = true;
            break;
        }
        rcpts.clear();
        if !next(&mut rcpts, batch.min(per_session - sent)) {
            break;
        }
        sent += rcpts.len();
        out.clear();
        let reset = in_tx + rcpts.len() > MAX_RECIPIENTS;
        if reset {
            out.extend_from_slice(b"RSET\r\nMAIL FROM:<bench@bench.example>\r\n");
            in_tx = 0;
        }
        for (a, _) in &rcpts {
            out.extend_from_slice(b"RCPT TO:<");
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b">\r\n");
        }
        c.w.write_all(&out)?;
        if reset {
            c.smtp_expect(250, "RSET")?;
            c.smtp_expect(250, "MAIL")?;
        }
        for (_, known) in &rcpts {
            let code = c.smtp_reply()?;
            t.replies += 1;
            match (code, known) {
                (250, true) => {
                    t.accepted += 1;
                    in_tx += 1;
                }
                (550, false) => t.refused += 1,
                (250, false) => {
                    t.failures += 1;
                    in_tx += 1;
                }
                _ => t.failures += 1,
            }
        }
    }
    c.w.write_all(b"QUIT\r\n")?;
    let _ = c.smtp_reply();
    Ok(more)
}

fn unknown(address: &str) -> String {
    format!("no{address}")
}

/// Runs `sessions` threads of `session`, summing their tallies; the first error stops
/// the run with a message.
fn rcpt_run(
    a: &Args,
    session: impl Fn(usize) -> std::io::Result<Tally> + Sync,
) -> (Tally, f64, String) {
    let meter = Meter::start(a.pid);
    let t0 = Instant::now();
    let total = Mutex::new(Tally::default());
    std::thread::scope(|s| {
        for i in 0..a.sessions {
            let (session, total) = (&session, &total);
            s.spawn(move || match session(i) {
                Ok(t) => {
                    let mut sum = total.lock().unwrap_or_else(|e| e.into_inner());
                    sum.replies += t.replies;
                    sum.accepted += t.accepted;
                    sum.refused += t.refused;
                    sum.failures += t.failures;
                }
                Err(e) => {
                    eprintln!("pg_lookup_load: session {i}: {e}");
                    std::process::exit(1)
                }
            });
        }
    });
    let secs = t0.elapsed().as_secs_f64();
    let m = meter.finish();
    (
        total.into_inner().unwrap_or_else(|e| e.into_inner()),
        secs,
        m,
    )
}

fn rcpt(a: &Args) -> String {
    let left = AtomicUsize::new(a.count);
    let accounts = &a.accounts;
    let (t, secs, m) = rcpt_run(a, |_| {
        let mut rng = rand::rng();
        rcpt_sessions(a.addr, a.batch, a.per_session, |rcpts, batch| {
            let want = batch.min(left.load(Ordering::Relaxed));
            let got = left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                    Some(l.saturating_sub(want))
                })
                .unwrap_or(0)
                .min(want);
            for _ in 0..got {
                let acct = &accounts[rng.random_range(0..accounts.len())];
                if rng.random_range(0..100) < a.unknown_pct {
                    rcpts.push((unknown(acct), false));
                } else {
                    rcpts.push((acct.clone(), true));
                }
            }
            got > 0
        })
    });
    format!(
        "seconds={secs:.3} value={:.0} count={} failures={} accepted={} refused={} {m}",
        t.replies as f64 / secs,
        t.replies,
        t.failures,
        t.accepted,
        t.refused
    )
}

fn rcpt_all(a: &Args) -> String {
    let next = AtomicUsize::new(0);
    let accounts = &a.accounts;
    let (t, secs, m) = rcpt_run(a, |_| {
        rcpt_sessions(a.addr, a.batch, a.per_session, |rcpts, batch| {
            let from = next.fetch_add(batch, Ordering::Relaxed);
            for acct in accounts.iter().skip(from).take(batch) {
                rcpts.push((acct.clone(), true));
            }
            !rcpts.is_empty()
        })
    });
    format!(
        "seconds={secs:.3} value={:.0} count={} failures={} accepted={} refused={} {m}",
        t.replies as f64 / secs,
        t.replies,
        t.failures,
        t.accepted,
        t.refused
    )
}

fn ready(a: &Args) -> String {
    let last = a.accounts.last().map_or("", String::as_str);
    let t0 = Instant::now();
    let mut said = String::new();
    while t0.elapsed() < Duration::from_secs(a.timeout) {
        let attempt = (|| -> std::io::Result<u16> {
            let mut c = smtp_open(a.addr)?;
            c.w.write_all(format!("RCPT TO:<{last}>\r\nQUIT\r\n").as_bytes())?;
            let code = c.smtp_reply()?;
            said = String::from_utf8_lossy(&c.line).trim_end().to_string();
            Ok(code)
        })();
        match attempt {
            Ok(250) => return format!("seconds={:.3}", t0.elapsed().as_secs_f64()),
            Ok(_) => {}
            Err(e) => said = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "pg_lookup_load: {last} not accepted after {} s (last: {said})",
        a.timeout
    );
    std::process::exit(1)
}

fn login(addr: SocketAddr, user: &str, password: &str) -> std::io::Result<()> {
    let mut c = Conn::connect(addr)?;
    c.pop_ok()?;
    c.w.write_all(format!("USER {user}\r\n").as_bytes())?;
    c.pop_ok()?;
    c.w.write_all(format!("PASS {password}\r\n").as_bytes())?;
    c.pop_ok()?;
    c.w.write_all(b"QUIT\r\n")?;
    c.pop_ok()
}

fn logins(a: &Args) -> String {
    let left = AtomicUsize::new(a.count);
    let failures = AtomicUsize::new(0);
    let first_error = Mutex::new(None::<String>);
    let meter = Meter::start(a.pid);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..a.sessions {
            s.spawn(|| {
                let mut rng = rand::rng();
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1))
                    .is_ok()
                {
                    let user = &a.accounts[rng.random_range(0..a.accounts.len())];
                    if let Err(e) = login(a.addr, user, &a.password) {
                        failures.fetch_add(1, Ordering::Relaxed);
                        let mut first = first_error.lock().unwrap_or_else(|e| e.into_inner());
                        first.get_or_insert_with(|| format!("{user}: {e}"));
                    }
                }
            });
        }
    });
    let secs = t0.elapsed().as_secs_f64();
    let m = meter.finish();
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        eprintln!("pg_lookup_load: first failed login: {e}");
    }
    format!(
        "seconds={secs:.3} value={:.0} count={} failures={} {m}",
        a.count as f64 / secs,
        a.count,
        failures.into_inner()
    )
}

fn main() {
    let a = parse();
    let out = match a.mode.as_str() {
        "rcpt" => rcpt(&a),
        "rcpt-all" => rcpt_all(&a),
        "ready" => ready(&a),
        "logins" => logins(&a),
        _ => usage(),
    };
    println!("{out}");
}
