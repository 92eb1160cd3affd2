//! The optional metrics listener (`[metrics] listen`, off by default): `GET /metrics`
//! in Prometheus's text format, nothing else. HTTP/1.1 with one request per connection;
//! a request must arrive whole within a few seconds and a few KiB. It has no
//! authentication: keep it on loopback or behind a firewall.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::Shared;
use super::metrics::{SiteGauge, State, age_secs};

const MAX_REQUEST: usize = 8192;
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Scrapes answered at once; more wait for the listener's next accept.
const MAX_SCRAPES: usize = 4;

pub async fn serve(l: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    loop {
        let (s, _) = tokio::select! {
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(target: "metrics", "accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_DEADLINE * 4, one(s, shared)).await;
            drop(permit);
        });
    }
}

/// What the request line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    Metrics,
    NotFound,
    NotAllowed,
    Bad,
}

/// Read the request head (up to the blank line) and judge its first line.
fn judge(head: &[u8]) -> Ask {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Ask::Bad;
    };
    if !version.starts_with(b"HTTP/1.") {
        return Ask::Bad;
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET" | b"HEAD", b"/metrics") => Ask::Metrics,
        (b"GET" | b"HEAD", _) => Ask::NotFound,
        _ => Ask::NotAllowed,
    }
}

async fn one(mut s: TcpStream, shared: Arc<Shared>) {
    let mut head = Vec::with_capacity(1024);
    let read = tokio::time::timeout(REQUEST_DEADLINE, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 || head.len() + n > MAX_REQUEST {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(())
    })
    .await;
    let ask = match read {
        Ok(Some(())) => judge(&head),
        _ => Ask::Bad,
    };
    let head_only = head.starts_with(b"HEAD ");
    let (status, body) = match ask {
        Ask::Metrics => {
            let sh = shared.clone();
            let state = tokio::task::spawn_blocking(move || state(&sh))
                .await
                .unwrap_or_default();
            ("200 OK", shared.metrics.render(&state))
        }
        Ask::NotFound => ("404 Not Found", "only /metrics is here\n".to_string()),
        Ask::NotAllowed => ("405 Method Not Allowed", "GET only\n".to_string()),
        Ask::Bad => ("400 Bad Request", "bad request\n".to_string()),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    let _ = tokio::time::timeout(REQUEST_DEADLINE, async {
        s.write_all(&out).await?;
        s.shutdown().await
    })
    .await;
}

/// The gauges' values now: the spools and the queue on disk, the flusher's state.
pub fn state(shared: &Shared) -> State {
    let now = std::time::SystemTime::now() + Duration::from_secs(2);
    let sites = shared.flusher.sites();
    let status_dir = shared.root.join("run/sites");
    let unix_now = crate::datetime::now_unix();
    let gauges = sites
        .sites
        .iter()
        .map(|s| {
            let listing = s.maildir().list(now).ok();
            let (queued, bytes, oldest) = listing.map_or((0, 0, None), |l| {
                let bytes = l.entries().map(|e| e.size).sum();
                (l.len(), bytes, l.mtime(0))
            });
            let since_success = crate::flush::status::read(&status_dir, &s.name)
                .and_then(|st| st.last_success)
                .map(|t| unix_now.saturating_sub(t));
            SiteGauge {
                name: s.name.clone(),
                queued,
                bytes,
                oldest_age_secs: oldest.map(age_secs),
                since_success_secs: since_success,
                running: shared.flusher.is_running(&s.name),
            }
        })
        .collect();
    let queue_depth = crate::maildir::Maildir::new(shared.root.join("queue"))
        .list(now)
        .map_or(0, |l| l.len());
    State {
        blocked_clients: shared.policy.logins.store.blocked(),
        queue_depth,
        sites: gauges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(
            judge(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ask::Metrics
        );
        assert_eq!(judge(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Ask::Metrics);
        assert_eq!(judge(b"HEAD /metrics HTTP/1.1\r\n\r\n"), Ask::Metrics);
        assert_eq!(judge(b"GET / HTTP/1.1\r\n\r\n"), Ask::NotFound);
        assert_eq!(judge(b"POST /metrics HTTP/1.1\r\n\r\n"), Ask::NotAllowed);
        assert_eq!(judge(b"GET /metrics\r\n\r\n"), Ask::Bad);
        assert_eq!(judge(b"GET /metrics SMTP/1.0\r\n\r\n"), Ask::Bad);
        assert_eq!(judge(b"\xff\xfe"), Ask::Bad);
    }
}
