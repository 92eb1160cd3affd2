//! Small pieces every connection shell needs: writing with a deadline (a client that
//! stops reading must not pin a task forever), and the `<pid.time.counter@host>`
//! challenge used by POP3's APOP greeting and ODMR's CRAM-MD5.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Bound on one write to a client.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// Write and flush `out`; false if the client is gone or too slow.
pub async fn write_all<S: AsyncWrite + Unpin>(stream: &mut S, out: &[u8]) -> bool {
    if out.is_empty() {
        return true;
    }
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, async {
            stream.write_all(out).await?;
            stream.flush().await
        })
        .await,
        Ok(Ok(()))
    )
}

/// A challenge unique to this connection: `<pid.time.counter@host>`.
pub fn challenge(host: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "<{}.{}.{}@{host}>",
        std::process::id(),
        crate::datetime::now_unix(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn challenges_are_unique() {
        let a = super::challenge("h.example");
        let b = super::challenge("h.example");
        assert_ne!(a, b);
        assert!(a.starts_with('<') && a.ends_with("@h.example>"));
    }
}
