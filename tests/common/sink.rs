//! A fake customer site: a scriptable SMTP server (like Postfix's smtp-sink) that offers
//! or hides PIPELINING and CHUNKING, answers chosen recipients with chosen replies,
//! counts connections and keeps every message it accepted.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub from: String,
    pub to: String,
    /// The message as the client sent it (CRLF), dot-unstuffed for DATA.
    pub data: Vec<u8>,
    /// Every recipient the transaction accepted, in order (`to` is the last RCPT).
    pub rcpts: Vec<String>,
    /// The `SIZE=` of its MAIL command, if any.
    pub size: Option<u64>,
    /// Which connection carried it (1 for the first the sink accepted).
    pub connection: usize,
}

#[derive(Clone, Default)]
pub struct Script {
    pub pipelining: bool,
    pub chunking: bool,
    /// Recipient → reply line given to its RCPT.
    pub rcpt_reply: HashMap<String, String>,
    /// Recipient → reply line given at the end of its data.
    pub data_reply: HashMap<String, String>,
    /// Sleep before each reply (to let a test kill the client mid-flush).
    pub delay: Duration,
    /// Connections beyond this many at once get `421` at once (a site that allows
    /// fewer connections than a flush opens).
    pub max_connections: Option<usize>,
}

pub struct Sink {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub connections: Arc<AtomicUsize>,
}

impl Sink {
    pub fn start(script: Script) -> Sink {
        Self::start_on("127.0.0.1", script)
    }

    /// Listen on another loopback address (AUTOTURN connects back to the client's).
    pub fn start_on(ip: &str, script: Script) -> Sink {
        Self::listen(TcpListener::bind((ip, 0)).unwrap(), script)
    }

    /// Listen on a given address and port (MX hosts on loopback share one port).
    pub fn start_at(addr: SocketAddr, script: Script) -> Sink {
        Self::listen(TcpListener::bind(addr).unwrap(), script)
    }

    fn listen(l: TcpListener, script: Script) -> Sink {
        let addr = l.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (r, c) = (received.clone(), connections.clone());
        let busy = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                let id = c.fetch_add(1, Ordering::SeqCst) + 1;
                if script
                    .max_connections
                    .is_some_and(|m| busy.load(Ordering::SeqCst) >= m)
                {
                    let _ = s.write_all(b"421 4.7.0 too many connections\r\n");
                    continue;
                }
                busy.fetch_add(1, Ordering::SeqCst);
                let (r, script, busy) = (r.clone(), script.clone(), busy.clone());
                std::thread::spawn(move || {
                    let _ = session(s, &script, &r, &AtomicUsize::new(0), id);
                    busy.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Sink {
            addr,
            received,
            connections,
        }
    }

    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// What [`serve`] saw on its one connection.
pub struct Served {
    pub messages: Vec<Received>,
    /// EHLO commands: one per SMTP session.
    pub ehlos: usize,
    /// Whether the client ended with QUIT (rather than dropping the connection).
    pub quit: bool,
}

impl Served {
    /// The envelope recipient of each message, in the order served.
    pub fn recipients(&self) -> Vec<String> {
        self.messages.iter().map(|m| m.to.clone()).collect()
    }
}

/// Be the customer's MTA on an existing connection (ODMR's turned one): greet, take
/// the mail, return at QUIT or end of input.
pub fn serve(s: TcpStream, script: &Script) -> Served {
    let out = Mutex::new(Vec::new());
    let ehlos = AtomicUsize::new(0);
    let quit = session(s, script, &out, &ehlos, 1).unwrap_or(false);
    Served {
        messages: out.into_inner().unwrap(),
        ehlos: ehlos.into_inner(),
        quit,
    }
}

/// One SMTP session; true if it ended with QUIT.
fn session(
    s: TcpStream,
    script: &Script,
    out: &Mutex<Vec<Received>>,
    ehlos: &AtomicUsize,
    connection: usize,
) -> std::io::Result<bool> {
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let reply = |w: &mut TcpStream, line: &str| -> std::io::Result<()> {
        if !script.delay.is_zero() {
            std::thread::sleep(script.delay);
        }
        w.write_all(format!("{line}\r\n").as_bytes())
    };
    reply(&mut w, "220 sink.example ESMTP")?;
    let (mut from, mut to, mut rcpt_ok) = (String::new(), String::new(), false);
    let mut rcpts: Vec<String> = Vec::new();
    let mut size = None;
    let mut chunks = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(false);
        }
        let l = line.trim_end().to_string();
        let upper = l.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            ehlos.fetch_add(1, Ordering::SeqCst);
            let mut caps = vec!["250-sink.example".to_string(), "250-8BITMIME".into()];
            if script.pipelining {
                caps.push("250-PIPELINING".into());
            }
            if script.chunking {
                caps.push("250-CHUNKING".into());
            }
            caps.push("250 SIZE 100000000".into());
            reply(&mut w, &caps.join("\r\n"))?;
        } else if upper.starts_with("HELO") || upper == "RSET" || upper == "NOOP" {
            if upper == "RSET" {
                chunks.clear();
            }
            reply(&mut w, "250 ok")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = between(&l);
            rcpts.clear();
            rcpt_ok = false;
            size = l
                .split_whitespace()
                .find_map(|p| p.to_ascii_uppercase().strip_prefix("SIZE=")?.parse().ok());
            reply(&mut w, "250 2.1.0 ok")?;
        } else if upper.starts_with("RCPT TO:") {
            to = between(&l);
            match script.rcpt_reply.get(&to) {
                Some(rep) => reply(&mut w, rep)?,
                None => {
                    // A transaction goes on when any of its recipients was accepted.
                    rcpt_ok = true;
                    rcpts.push(to.clone());
                    reply(&mut w, "250 2.1.5 ok")?
                }
            }
        } else if upper == "DATA" {
            if !rcpt_ok {
                reply(&mut w, "554 5.5.1 no valid recipients")?;
                continue;
            }
            reply(&mut w, "354 go ahead")?;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l)? == 0 {
                    return Ok(false);
                }
                if l == b".\r\n" {
                    break;
                }
                if l.starts_with(b".") {
                    l.remove(0);
                }
                data.extend_from_slice(&l);
            }
            finish(
                &mut w,
                script,
                out,
                (&from, &to, &rcpts, size, connection),
                data,
                &reply,
            )?;
        } else if upper.starts_with("BDAT ") {
            let mut parts = l.split_whitespace().skip(1);
            let n: usize = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let last = parts.next().is_some_and(|p| p.eq_ignore_ascii_case("LAST"));
            let mut buf = vec![0u8; n];
            r.read_exact(&mut buf)?;
            chunks.extend_from_slice(&buf);
            if !rcpt_ok {
                reply(&mut w, "554 5.5.1 no valid recipients")?;
                chunks.clear();
            } else if last {
                let data = std::mem::take(&mut chunks);
                finish(
                    &mut w,
                    script,
                    out,
                    (&from, &to, &rcpts, size, connection),
                    data,
                    &reply,
                )?;
            } else {
                reply(&mut w, &format!("250 2.0.0 {n} octets"))?;
            }
        } else if upper == "QUIT" {
            reply(&mut w, "221 bye")?;
            return Ok(true);
        } else {
            reply(&mut w, "500 what")?;
        }
    }
}

fn finish(
    w: &mut TcpStream,
    script: &Script,
    out: &Mutex<Vec<Received>>,
    (from, to, rcpts, size, connection): (&str, &str, &[String], Option<u64>, usize),
    data: Vec<u8>,
    reply: &dyn Fn(&mut TcpStream, &str) -> std::io::Result<()>,
) -> std::io::Result<()> {
    match script.data_reply.get(to) {
        Some(rep) => reply(w, rep),
        None => {
            out.lock().unwrap().push(Received {
                from: from.into(),
                to: to.into(),
                rcpts: rcpts.to_vec(),
                data,
                size,
                connection,
            });
            reply(w, "250 2.0.0 queued")
        }
    }
}

fn between(l: &str) -> String {
    let a = l.find('<').map_or(0, |i| i + 1);
    let b = l.rfind('>').unwrap_or(l.len());
    l.get(a..b).unwrap_or("").to_string()
}
