//! Early talkers: a client that sends before it has seen the greeting is not waiting
//! for the server, as RFC 5321 §3.1 wants; spam engines that fire the whole dialogue at
//! once do. The session decides what to do about it
//! (`Session::talked_before_greeting`); this file only finds out, before the greeting
//! is written.
//!
//! With `greeting_pause_ms` (postscreen's and sendmail's greet pause) the greeting is
//! held back that long and anything arriving meanwhile is early talk. Without a pause
//! only what is already waiting when the connection is taken up is seen, which costs
//! one non-blocking system call and never delays a client.

use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{MsgFlags, recv};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// How much of the early input is kept for the log.
const SAMPLE: usize = 64;

/// Some of the bytes the client sent before the greeting, if it sent any. Nothing is
/// consumed: the session reads them as usual when it is allowed to go on.
pub async fn early_talk(stream: &TcpStream, pause: Duration) -> Option<Vec<u8>> {
    let mut sample = [0u8; SAMPLE];
    if !pause.is_zero() {
        match tokio::time::timeout(pause, stream.peek(&mut sample)).await {
            Ok(Ok(n)) if n > 0 => return Some(sample[..n].to_vec()),
            // Gone or broken: the session's first read will find out.
            Ok(_) => return None,
            Err(_) => {}
        }
    }
    match recv(
        stream.as_raw_fd(),
        &mut sample,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(n) if n > 0 => Some(sample[..n].to_vec()),
        _ => None,
    }
}

/// After a refusal was written and the write side shut: read and drop what the client
/// sends for a moment. Closing a socket with unread input makes the kernel send a
/// reset, which can make the client lose the refusal it has not read yet.
pub async fn drain(stream: &mut TcpStream) {
    const LIMIT: usize = 64 * 1024;
    let mut buf = [0u8; 4096];
    let mut total = 0;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while total < LIMIT {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn silence_waiting_bytes_and_bytes_during_the_pause() {
        let (mut client, server) = pair().await;
        // A client that waits is never an early talker, with or without a pause.
        assert_eq!(early_talk(&server, Duration::ZERO).await, None);
        let t = tokio::time::Instant::now();
        assert_eq!(early_talk(&server, Duration::from_millis(200)).await, None);
        assert!(t.elapsed() >= Duration::from_millis(200));
        // Bytes already waiting are seen without a pause, and left for the session.
        client.write_all(b"EHLO x\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            early_talk(&server, Duration::ZERO).await.as_deref(),
            Some(&b"EHLO x\r\n"[..])
        );
        let (mut client, server) = pair().await;
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            client.write_all(b"HELO y\r\n").await.unwrap();
            client
        });
        let t = tokio::time::Instant::now();
        assert_eq!(
            early_talk(&server, Duration::from_secs(5)).await.as_deref(),
            Some(&b"HELO y\r\n"[..])
        );
        // Found as soon as the bytes came, not at the end of the pause.
        assert!(t.elapsed() < Duration::from_secs(2));
        let mut client = writer.await.unwrap();
        client.shutdown().await.unwrap();
        let mut server = server;
        let mut left = Vec::new();
        server.read_to_end(&mut left).await.unwrap();
        assert_eq!(left, b"HELO y\r\n");
    }
}
