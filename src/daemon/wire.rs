//! Small pieces every connection shell needs: reading within the policy's deadlines
//! (`policy/deadline.rs`), writing with a deadline (a client that stops reading must
//! not pin a task forever), and the `<pid.time.counter@host>` challenge used by POP3's
//! APOP greeting and ODMR's CRAM-MD5.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use crate::policy::deadline::{self, Expiry, Phase, Timer};

/// Bound on one write to a client.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// Write and flush `out`; false if the client is gone or too slow.
pub async fn write_all<S: AsyncWrite + Unpin>(stream: &mut S, out: &[u8]) -> bool {
    write_all_by(stream, out, Instant::now() + WRITE_TIMEOUT).await
}

/// Write and flush `out` by `deadline`; false if the client is gone or too slow.
pub async fn write_all_by<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &[u8],
    deadline: Instant,
) -> bool {
    if out.is_empty() {
        return true;
    }
    matches!(
        tokio::time::timeout_at(deadline, async {
            stream.write_all(out).await?;
            stream.flush().await
        })
        .await,
        Ok(Ok(()))
    )
}

/// What one read from a client brought.
pub enum Input<'a> {
    Data(&'a [u8]),
    /// End of stream or a read error: the client is gone.
    Closed,
    /// A limit ran out before the next byte came.
    Expired(Expiry),
}

/// Reads from a client, at most as much as the session has room for, within the
/// connection's deadlines (`policy/deadline.rs`).
///
/// The idle limit counts from when the server starts waiting for the client: time spent
/// on the client's behalf between reads (a delivery) is not the client's silence.
///
/// One timer serves the whole connection: a read only works out when its deadline is,
/// and the timer is moved when it fires early (the client was not quiet for the whole
/// limit) or when the deadline is earlier than the timer. A timeout around every read
/// would add and remove a timer entry per command.
pub struct ClientReader {
    /// Filled from its spare capacity: nothing is zeroed per connection or per read.
    buf: Vec<u8>,
    deadlines: Timer,
    /// The session's start: the deadlines' times are offsets from it.
    start: Instant,
    /// Bytes read so far.
    total: u64,
    armed: Instant,
    timer: Pin<Box<Sleep>>,
}

impl ClientReader {
    pub fn new(capacity: usize, limits: deadline::Limits) -> Self {
        let now = Instant::now();
        ClientReader {
            buf: Vec::with_capacity(capacity.max(1)),
            deadlines: Timer::new(limits),
            start: now,
            total: 0,
            armed: now + limits.idle,
            timer: Box::pin(tokio::time::sleep_until(now + limits.idle)),
        }
    }

    /// The deadlines' limits.
    pub fn limits(&self) -> &deadline::Limits {
        self.deadlines.limits()
    }

    /// When this connection began.
    pub fn started(&self) -> Instant {
        self.start
    }

    /// Read up to `room` bytes (at least 1, at most the capacity), the session being in
    /// `phase`.
    pub async fn read<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        room: usize,
        phase: Phase,
    ) -> Input<'_> {
        self.buf.clear();
        let now = Instant::now();
        let (offset, why) = self
            .deadlines
            .due(phase, now.duration_since(self.start), self.total);
        let due = self
            .start
            .checked_add(offset)
            .unwrap_or(self.armed.max(now));
        if due < self.armed {
            self.armed = due;
            self.timer.as_mut().reset(due);
        }
        let room = room.clamp(1, self.buf.capacity()) as u64;
        let read = loop {
            let mut limited = (&mut *stream).take(room);
            tokio::select! {
                biased;
                // Cancel-safe: a read_buf dropped before it completes has read nothing.
                r = limited.read_buf(&mut self.buf) => break r,
                () = self.timer.as_mut() => {
                    if Instant::now() >= due {
                        return Input::Expired(why);
                    }
                    self.armed = due;
                    self.timer.as_mut().reset(due);
                }
            }
        };
        match read {
            Ok(0) | Err(_) => Input::Closed,
            Ok(n) => {
                self.total += n as u64;
                Input::Data(&self.buf[..n])
            }
        }
    }
}

/// A challenge unique to this connection: `<pid.time.counter@host>`.
pub fn challenge(host: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "<{}.{}.{}@{host}>",
        crate::pid::pid(),
        crate::datetime::now_unix(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::{ClientReader, Input};
    use crate::policy::deadline::{Expiry, Limits, Phase};
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    fn idle_only(idle: Duration) -> Limits {
        Limits {
            idle,
            line: Duration::ZERO,
            session: Duration::ZERO,
            min_rate: 0,
            grace: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn reads_within_room_and_times_out_only_after_a_quiet_limit() {
        let limit = Duration::from_millis(1000);
        let (mut client, mut server) = tokio::io::duplex(1024);
        let mut r = ClientReader::new(16, idle_only(limit));
        client.write_all(b"HELO a.example\r\n").await.unwrap();
        assert!(matches!(
            r.read(&mut server, 4, Phase::Idle).await,
            Input::Data(b"HELO")
        ));
        assert!(matches!(
            r.read(&mut server, 100, Phase::Idle).await,
            Input::Data(b" a.example\r\n")
        ));
        // Busy for twice the limit, but never quiet for all of it.
        let busy = tokio::time::Instant::now();
        while busy.elapsed() < 2 * limit {
            tokio::time::sleep(limit / 4).await;
            client.write_all(b"NOOP\r\n").await.unwrap();
            assert!(matches!(
                r.read(&mut server, 100, Phase::Idle).await,
                Input::Data(b"NOOP\r\n")
            ));
        }
        // The server busy for longer than the limit (a delivery) between two reads: the
        // client, waiting for its reply, has not been idle.
        tokio::time::sleep(limit * 3 / 2).await;
        let writer = tokio::spawn(async move {
            tokio::time::sleep(limit / 2).await;
            client.write_all(b"QUIT\r\n").await.unwrap();
            client
        });
        assert!(matches!(
            r.read(&mut server, 100, Phase::Idle).await,
            Input::Data(b"QUIT\r\n")
        ));
        let client = writer.await.unwrap();
        let t = tokio::time::Instant::now();
        assert!(matches!(
            r.read(&mut server, 100, Phase::Idle).await,
            Input::Expired(Expiry::Idle)
        ));
        assert!(t.elapsed() >= limit, "timed out after {:?}", t.elapsed());
        // After a timeout the next read gets a whole limit again.
        let t = tokio::time::Instant::now();
        assert!(matches!(
            r.read(&mut server, 100, Phase::Idle).await,
            Input::Expired(Expiry::Idle)
        ));
        assert!(t.elapsed() >= limit, "timed out after {:?}", t.elapsed());
        drop(client);
        assert!(matches!(
            r.read(&mut server, 100, Phase::Idle).await,
            Input::Closed
        ));
    }

    #[tokio::test]
    async fn a_line_sent_a_byte_at_a_time_expires_at_its_deadline() {
        let limits = Limits {
            line: Duration::from_millis(600),
            ..idle_only(Duration::from_millis(400))
        };
        let (mut client, mut server) = tokio::io::duplex(1024);
        let mut r = ClientReader::new(64, limits);
        let dripper = tokio::spawn(async move {
            for _ in 0..100 {
                if client.write_all(b"x").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let t = tokio::time::Instant::now();
        let mut phase = Phase::Idle;
        let why = loop {
            match r.read(&mut server, 64, phase).await {
                Input::Data(_) => phase = Phase::Line,
                Input::Expired(why) => break why,
                Input::Closed => panic!("closed"),
            }
        };
        // Each byte came well within the idle limit; the line's deadline ended it.
        assert_eq!(why, Expiry::Line);
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(550) && took < Duration::from_millis(900),
            "{took:?}"
        );
        dripper.abort();
    }

    #[test]
    fn challenges_are_unique() {
        let a = super::challenge("h.example");
        let b = super::challenge("h.example");
        assert_ne!(a, b);
        assert!(a.starts_with('<') && a.ends_with("@h.example>"));
    }
}
