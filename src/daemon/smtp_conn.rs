//! One SMTP connection: the thin async shell around `smtp::Session`. It reads and
//! writes bytes, asks the engine about recipients, runs deliveries on blocking threads,
//! upgrades to TLS when the session says so, and logs. All protocol decisions are the
//! session's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Shared;
use super::limits::Permit;
use crate::datetime::{now_unix, rfc5322};
use crate::deliver::transaction::{self, Verdict};
use crate::engine::Resolution;
use crate::smtp::{Action, MessageVerdict, RcptVerdict, Reply, Session, received_line};

/// Bound on one write to a client (a client that stops reading is dropped).
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

struct Conn {
    peer: SocketAddr,
    shared: Arc<Shared>,
    /// Recipients accepted in the current transaction, with how they resolved.
    rcpts: Vec<(Vec<u8>, Resolution)>,
}

enum Ended<S> {
    Closed,
    StartTls(S),
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub async fn handle(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, permit: Permit) {
    if let Some(why) = permit.refusal {
        tracing::warn!(target: "smtp", client = %peer, "refused connection: {why}");
        let msg = format!("421 4.7.0 {} {why}\r\n", shared.hostname);
        let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(msg.as_bytes())).await;
        return;
    }
    let mut session = Session::new(shared.smtp.clone(), false);
    let mut conn = Conn {
        peer,
        shared: shared.clone(),
        rcpts: Vec::new(),
    };
    if let Ended::StartTls(plain) = drive(&mut session, stream, &mut conn).await {
        let Some(acceptor) = shared.tls.clone() else {
            return;
        };
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(plain)).await {
            Ok(Ok(tls)) => {
                session.tls_started();
                conn.rcpts.clear();
                let _ = drive(&mut session, tls, &mut conn).await;
            }
            Ok(Err(e)) => {
                tracing::info!(target: "smtp", client = %peer, "TLS handshake failed: {e}")
            }
            Err(_) => tracing::info!(target: "smtp", client = %peer, "TLS handshake timed out"),
        }
    }
    drop(permit);
}

async fn write_out<S: AsyncWrite + Unpin>(stream: &mut S, session: &mut Session) -> bool {
    let out = session.take_output();
    if out.is_empty() {
        return true;
    }
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, async {
            stream.write_all(&out).await?;
            stream.flush().await
        })
        .await,
        Ok(Ok(()))
    )
}

async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session,
    mut stream: S,
    conn: &mut Conn,
) -> Ended<S> {
    let idle = Duration::from_secs(conn.shared.config.limits.idle_timeout_secs);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        while let Some(action) = session.next_action() {
            match action {
                Action::CheckRecipient { address } => {
                    let v = conn.check(address).await;
                    session.answer_recipient(v);
                }
                Action::Deliver {
                    sender,
                    recipients,
                    data,
                    helo,
                    tls,
                    ..
                } => {
                    let v = conn.deliver(sender, recipients, data, &helo, tls).await;
                    session.answer_message(v);
                }
                Action::Etrn { .. } => {
                    session.answer_etrn(Reply::new(
                        458,
                        (4, 3, 0),
                        "ETRN is not available on this listener",
                    ));
                }
                Action::StartTls => {
                    if !write_out(&mut stream, session).await {
                        return Ended::Closed;
                    }
                    return Ended::StartTls(stream);
                }
                Action::Close => {
                    let _ = write_out(&mut stream, session).await;
                    let _ = stream.shutdown().await;
                    return Ended::Closed;
                }
                Action::Refused { command, reply } => {
                    tracing::info!(target: "smtp", client = %conn.peer, code = reply.code, "refused {command:?}: {}", reply.lines.join(" "));
                }
            }
        }
        if !write_out(&mut stream, session).await {
            return Ended::Closed;
        }
        if session.is_closed() {
            let _ = stream.shutdown().await;
            return Ended::Closed;
        }
        let room = session.input_room().clamp(1, buf.len());
        match tokio::time::timeout(idle, stream.read(&mut buf[..room])).await {
            Err(_) => session.timeout(),
            Ok(Ok(0)) | Ok(Err(_)) => return Ended::Closed,
            Ok(Ok(n)) => {
                session.receive(&buf[..n]);
            }
        }
    }
}

impl Conn {
    async fn check(&mut self, address: Vec<u8>) -> RcptVerdict {
        let engine = self.shared.engine.clone();
        let a = address.clone();
        let r = match tokio::task::spawn_blocking(move || engine.resolve(&a, true)).await {
            Ok(r) => r,
            Err(e) => return RcptVerdict::Temporary(format!("internal error: {e}")),
        };
        match r {
            Ok(res @ (Resolution::Local(_) | Resolution::Relay { .. } | Resolution::Trash)) => {
                self.rcpts.retain(|(x, _)| x != &address);
                self.rcpts.push((address, res));
                RcptVerdict::Accept
            }
            Ok(Resolution::NotOurs) => RcptVerdict::NotOurs,
            Ok(Resolution::Unknown { reason }) => {
                tracing::info!(target: "smtp", client = %self.peer, "unknown recipient {}: {reason}", show(&address));
                RcptVerdict::Unknown
            }
            Ok(Resolution::BadAddress(why)) => RcptVerdict::BadAddress(why),
            Err(e) => {
                // The details (paths, modes) are for the operator, not the client.
                tracing::error!(target: "smtp", client = %self.peer, "recipient {}: {e}", show(&address));
                RcptVerdict::Temporary(
                    "temporary trouble with this mailbox, try again later".into(),
                )
            }
        }
    }

    async fn deliver(
        &mut self,
        sender: Vec<u8>,
        recipients: Vec<Vec<u8>>,
        data: Vec<u8>,
        helo: &str,
        tls: bool,
    ) -> MessageVerdict {
        let now = now_unix();
        let qid = transaction::unique_token(now);
        let mut resolved = Vec::with_capacity(recipients.len());
        for r in recipients {
            let res = match self.rcpts.iter().position(|(x, _)| *x == r) {
                Some(i) => self.rcpts.swap_remove(i).1,
                None => match self.shared.engine.resolve(&r, true) {
                    Ok(res) => res,
                    Err(e) => return MessageVerdict::Temporary(e.to_string()),
                },
            };
            resolved.push((r, res));
        }
        self.rcpts.clear();
        let mut msg = received_line(
            helo,
            &self.peer.ip().to_string(),
            None,
            tls,
            &self.shared.hostname,
            &qid,
            &rfc5322(now),
        );
        msg.extend_from_slice(&data);
        drop(data);
        let shared = self.shared.clone();
        let sender2 = sender.clone();
        let size = msg.len();
        let report = match tokio::task::spawn_blocking(move || {
            transaction::deliver_message(
                &shared.deliver,
                &shared.hostname,
                &sender2,
                &resolved,
                &msg,
                now,
            )
        })
        .await
        {
            Ok(r) => r,
            Err(e) => return MessageVerdict::Temporary(format!("internal error: {e}")),
        };
        let rcpts: Vec<String> = report
            .recipients
            .iter()
            .map(|(r, res)| format!("{}={res:?}", show(r)))
            .collect();
        tracing::info!(
            target: "smtp",
            id = %qid,
            client = %self.peer,
            sender = %show(&sender),
            size,
            result = ?report.verdict,
            "message: {}",
            rcpts.join(", ")
        );
        match report.verdict {
            Verdict::Accepted => MessageVerdict::Accepted { queue_id: qid },
            Verdict::Temporary(_) => {
                MessageVerdict::Temporary("temporary delivery trouble, try again later".into())
            }
            Verdict::Permanent(why) => MessageVerdict::Permanent(why),
        }
    }
}
