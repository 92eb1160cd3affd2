//! A minimal SMTP sink for `bench/flush.sh`: like Postfix's `smtp-sink`, it takes messages
//! and throws them away, but it can also offer CHUNKING (RFC 3030), which Debian's
//! smtp-sink 3.7 cannot. It answers every command it understands with a success reply,
//! writes its replies only when it has no more input buffered (so a pipelining client
//! gets one segment per batch, as from Postfix), and sets TCP_NODELAY. One thread per
//! connection; nothing is stored.
//!
//! usage: flush_sink ADDR:PORT [--pipelining] [--chunking]
//! On stderr, one line per closed connection: messages, body octets, seconds.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

#[derive(Clone, Copy)]
struct Offer {
    pipelining: bool,
    chunking: bool,
}

fn usage() -> ! {
    eprintln!("usage: flush_sink ADDR:PORT [--pipelining] [--chunking]");
    std::process::exit(2)
}

fn main() {
    let mut addr = None;
    let mut offer = Offer {
        pipelining: false,
        chunking: false,
    };
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--pipelining" => offer.pipelining = true,
            "--chunking" => offer.chunking = true,
            _ if addr.is_none() && !a.starts_with('-') => addr = Some(a),
            _ => usage(),
        }
    }
    let Some(addr) = addr else { usage() };
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("flush_sink: binding {addr}: {e}");
        std::process::exit(1)
    });
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut counts = (0u64, 0u64);
            let r = session(stream, offer, &mut counts);
            eprintln!(
                "flush_sink: connection closed: {} messages, {} body octets, {:.3} s{}",
                counts.0,
                counts.1,
                t0.elapsed().as_secs_f64(),
                r.err().map(|e| format!(" ({e})")).unwrap_or_default()
            );
        });
    }
}

fn session(stream: TcpStream, offer: Offer, counts: &mut (u64, u64)) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut r = BufReader::with_capacity(64 * 1024, stream.try_clone()?);
    let mut w = io::BufWriter::with_capacity(16 * 1024, stream);
    w.write_all(b"220 flush-sink ESMTP\r\n")?;
    w.flush()?;
    let mut line = Vec::with_capacity(1024);
    let mut chunk = Vec::new();
    loop {
        // Replies go out when every command already received has been answered.
        if r.buffer().is_empty() {
            w.flush()?;
        }
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            w.flush()?;
            return Ok(());
        }
        let verb: Vec<u8> = line
            .iter()
            .take_while(|b| !b.is_ascii_whitespace())
            .map(u8::to_ascii_uppercase)
            .collect();
        match verb.as_slice() {
            b"EHLO" => {
                w.write_all(b"250-flush-sink\r\n")?;
                if offer.pipelining {
                    w.write_all(b"250-PIPELINING\r\n")?;
                }
                if offer.chunking {
                    w.write_all(b"250-CHUNKING\r\n")?;
                }
                w.write_all(b"250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n")?;
            }
            b"HELO" => w.write_all(b"250 flush-sink\r\n")?,
            b"MAIL" | b"RCPT" | b"RSET" | b"NOOP" => w.write_all(b"250 2.0.0 Ok\r\n")?,
            b"DATA" => {
                w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                w.flush()?;
                loop {
                    line.clear();
                    if r.read_until(b'\n', &mut line)? == 0 {
                        return Err(io::Error::other("end of input in DATA"));
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    counts.1 += line.len() as u64;
                }
                counts.0 += 1;
                w.write_all(b"250 2.0.0 Ok: queued\r\n")?;
            }
            b"BDAT" if offer.chunking => {
                let text = String::from_utf8_lossy(&line);
                let mut args = text.split_ascii_whitespace().skip(1);
                let size: Option<u64> = args.next().and_then(|s| s.parse().ok());
                let last = args.next().is_some_and(|s| s.eq_ignore_ascii_case("LAST"));
                let Some(size) = size else {
                    w.write_all(b"501 5.5.4 Syntax: BDAT size [LAST]\r\n")?;
                    continue;
                };
                chunk.clear();
                let got = (&mut r).take(size).read_to_end(&mut chunk)?;
                if (got as u64) < size {
                    return Err(io::Error::other("end of input in BDAT"));
                }
                counts.1 += size;
                if last {
                    counts.0 += 1;
                    w.write_all(b"250 2.0.0 Ok: queued\r\n")?;
                } else {
                    w.write_all(b"250 2.0.0 Ok: chunk received\r\n")?;
                }
            }
            b"QUIT" => {
                w.write_all(b"221 2.0.0 Bye\r\n")?;
                w.flush()?;
                return Ok(());
            }
            _ => w.write_all(b"502 5.5.2 Error: command not recognized\r\n")?,
        }
    }
}
