//! Load: 1,000 concurrent SMTP connections and 1,000 concurrent POP3 sessions from one
//! client process against one daemon. Every message is accounted for, the daemon's
//! memory stays bounded, and no file descriptor leaks.

mod common;

use std::time::Duration;

use common::daemon::Daemon;
use common::{demo_root, write};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const N: usize = 1000;

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> std::io::Result<String> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line);
        }
    }
}

async fn smtp_one(addr: std::net::SocketAddr, i: usize) -> std::io::Result<bool> {
    let s = TcpStream::connect(addr).await?;
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    reply(&mut r).await?;
    w.write_all(b"EHLO load.example\r\n").await?;
    reply(&mut r).await?;
    w.write_all(
        b"MAIL FROM:<load@example.org>
RCPT TO:<joe@example.com>
DATA
",
    )
    .await?;
    for _ in 0..3 {
        reply(&mut r).await?;
    }
    w.write_all(
        format!(
            "X-Load: {i}\r\nSubject: load\r\n\r\n{}\r\n.\r\nQUIT\r\n",
            "x".repeat(4000)
        )
        .as_bytes(),
    )
    .await?;
    let done = reply(&mut r).await?;
    Ok(done.starts_with("250"))
}

#[test]
fn a_thousand_concurrent_smtp_connections() {
    let d = demo_root();
    common::config(
        &d,
        "[limits]\nmax_connections = 2000\nmax_connections_per_ip = 2000\n",
    );
    let s = Daemon::start(&d.root);
    let pid = s.child.id();
    let before = fds(pid);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ok = rt.block_on(async {
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                tokio::spawn(tokio::time::timeout(
                    Duration::from_secs(120),
                    smtp_one(s.addr, i),
                ))
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            if matches!(t.await, Ok(Ok(Ok(true)))) {
                ok += 1;
            }
        }
        ok
    });
    assert_eq!(
        ok,
        N,
        "every message acknowledged: {}",
        s.log_text()
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let new = d.root.join("domains/example.com/joe/Maildir/new");
    assert_eq!(
        std::fs::read_dir(&new).unwrap().count(),
        N,
        "every acknowledged message is in the Maildir"
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = fds(pid);
    assert!(
        after <= before + 2,
        "file descriptors leaked: {before} before, {after} after"
    );
    let rss = rss_kib(pid);
    assert!(rss < 256 * 1024, "peak RSS {rss} KiB");
    eprintln!("1000 SMTP connections: fds {before} -> {after}, peak RSS {rss} KiB");
}

async fn pop3_one(addr: std::net::SocketAddr, login: String, pw: String) -> std::io::Result<bool> {
    let s = TcpStream::connect(addr).await?;
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await?;
    w.write_all(format!("USER {login}\r\nPASS {pw}\r\nSTAT\r\nQUIT\r\n").as_bytes())
        .await?;
    let mut answers = Vec::new();
    for _ in 0..4 {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            break;
        }
        answers.push(line.clone());
    }
    if answers.len() == 4
        && answers.iter().all(|a| a.starts_with("+OK"))
        && answers[2].starts_with("+OK 1 ")
    {
        Ok(true)
    } else {
        Err(std::io::Error::other(format!(
            "unexpected answers: {answers:?}"
        )))
    }
}

#[test]
fn a_thousand_concurrent_pop3_sessions() {
    let d = demo_root();
    common::config(
        &d,
        "[pop3]\nmax_sessions = 2000\nmax_sessions_per_ip = 2000\n",
    );
    // A cheap hash keeps 1,000 logins within the test's time; the hash cost is not
    // what this test measures.
    let hash = turnmail::engine::crypt::hash_with_prefix(b"loadpw", "$1$").unwrap();
    let pw = d.root.join("users/poppasswd");
    let text = std::fs::read_to_string(&pw).unwrap();
    let line = text.lines().next().unwrap();
    let mut f: Vec<&str> = line.split(':').collect();
    f[1] = &hash;
    write(&pw, &format!("{}\n", f.join(":")));
    common::touch_later(&pw, 2);
    let md = turnmail::maildir::Maildir::new(d.root.join("domains/example.com/joe/Maildir"));
    let got = md.deliver(&[b"Subject: one\n\nx\n"]).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(10);
    common::set_mtime(&got.path, old);
    if nix::unistd::Uid::effective().is_root() {
        let mu = common::mail_user();
        std::os::unix::fs::chown(&got.path, Some(mu.uid), Some(mu.gid)).unwrap();
        std::os::unix::fs::chown(&pw, Some(mu.uid), Some(mu.gid)).unwrap();
    }
    let s = Daemon::start(&d.root);
    let pid = s.child.id();
    let before = fds(pid);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ok = rt.block_on(async {
        let tasks: Vec<_> = (0..N)
            .map(|_| {
                tokio::spawn(tokio::time::timeout(
                    Duration::from_secs(120),
                    pop3_one(s.pop3, "joe@example.com".into(), "loadpw".into()),
                ))
            })
            .collect();
        let mut ok = 0;
        let mut errors = Vec::new();
        for t in tasks {
            match t.await {
                Ok(Ok(Ok(true))) => ok += 1,
                other if errors.len() < 5 => errors.push(format!("{other:?}")),
                _ => {}
            }
        }
        (ok, errors)
    });
    let (ok, errors) = ok;
    assert_eq!(ok, N, "first failures: {errors:?}");
    assert_eq!(
        ok,
        N,
        "{}",
        s.log_text()
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    std::thread::sleep(Duration::from_millis(500));
    let after = fds(pid);
    assert!(
        after <= before + 2,
        "file descriptors leaked: {before} before, {after} after"
    );
    let rss = rss_kib(pid);
    assert!(rss < 256 * 1024, "peak RSS {rss} KiB");
    eprintln!("1000 POP3 sessions: fds {before} -> {after}, peak RSS {rss} KiB");
}
