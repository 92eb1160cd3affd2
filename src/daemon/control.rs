//! The daemon's control socket (`ROOT/run/control.sock`, a node's in `ROOT/run/NODE/`;
//! mode 0600): one JSON request
//! per line, one JSON answer per line. `turnmail flush` and `turnmail status` use it
//! when a daemon runs, so an operator's flush takes the same path (and the same
//! one-flush-per-site rule) as every other trigger.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::Shared;
use super::flusher::Flusher;
use crate::cluster::NodeName;
use crate::flush::FlushResult;

/// Longest request line accepted.
const MAX_REQUEST: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Flush { site: String, to: Option<String> },
    FlushAll,
    Status,
    Reload,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteState {
    pub name: String,
    pub queued: usize,
    pub running: bool,
    /// The next scheduled flush (RFC 3339, with the site's jitter).
    pub next_run: Option<String>,
}

/// One listening address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listening {
    pub service: String,
    pub address: String,
}

/// The running daemon, as `turnmail status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonState {
    pub pid: u32,
    pub version: String,
    /// The node answering (`[cluster] node`), None for a single host.
    #[serde(default)]
    pub node: Option<String>,
    /// Unix time the daemon started.
    pub started: u64,
    pub uptime_secs: u64,
    pub listening: Vec<Listening>,
    pub counters: super::metrics::Counters,
    pub sites: Vec<SiteState>,
    /// The daemon's account tables (absent from older daemons).
    #[serde(default)]
    pub accounts: Option<AccountsState>,
}

/// Where the daemon's account tables come from and whether it answers from them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountsState {
    /// `files` or `postgres`.
    pub backend: String,
    /// The database's version installed (postgres).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Why lookups are temporary failures now, if they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Response {
    Flushed {
        site: String,
        result: FlushResult,
    },
    Busy {
        site: String,
    },
    Started {
        sites: usize,
    },
    Status(Box<DaemonState>),
    Reloaded {
        compiled: usize,
        errors: Vec<String>,
    },
    Error {
        message: String,
    },
}

/// The socket of the daemon of `node` (None: the single host's).
pub fn socket_path(root: &Path, node: Option<&NodeName>) -> PathBuf {
    crate::cluster::control_socket(root, node)
}

/// Listen on the control socket until stopped.
pub async fn serve(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let path = socket_path(&shared.root, shared.node.as_ref());
    let _ = std::fs::remove_file(&path);
    if let Some(dir) = path.parent() {
        let _ = crate::owner::create_dirs(dir, 0o700);
    }
    let l = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(target: "control", "{}: {e}; `turnmail flush` will work standalone", path.display());
            return;
        }
    };
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    loop {
        tokio::select! {
            r = l.accept() => if let Ok((s, _)) = r {
                tokio::spawn(client(s, shared.clone()));
            },
            _ = stop.changed() => break,
        }
    }
    let _ = std::fs::remove_file(&path);
}

async fn client(s: UnixStream, shared: Arc<Shared>) {
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r.take(MAX_REQUEST as u64 * 64)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let resp = match serde_json::from_str::<Request>(&line) {
            Ok(req) => answer(req, &shared).await,
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
        };
        let mut out = serde_json::to_vec(&resp).unwrap_or_default();
        out.push(b'\n');
        if w.write_all(&out).await.is_err() {
            return;
        }
    }
}

use tokio::io::AsyncReadExt;

async fn answer(req: Request, shared: &Arc<Shared>) -> Response {
    let f = &shared.flusher;
    match req {
        Request::Flush { site, to } => {
            f.refresh().await;
            let sites = f.sites();
            let Some(s) = sites.get(&site).cloned() else {
                return Response::Error {
                    message: format!("no site named {site:?}"),
                };
            };
            match f.flush_now(&s, to.as_deref(), "operator").await {
                Some(result) => Response::Flushed { site, result },
                None => Response::Busy { site },
            }
        }
        Request::FlushAll => {
            f.refresh().await;
            let sites = f.sites();
            let n = sites
                .sites
                .iter()
                .filter(|s| f.trigger((*s).clone(), None, "operator"))
                .count();
            Response::Started { sites: n }
        }
        Request::Status => {
            let sites = f.sites();
            let next: Vec<Option<String>> = {
                let plan = shared.plan.lock().unwrap_or_else(|p| p.into_inner());
                sites
                    .sites
                    .iter()
                    .map(|s| plan.next_for(&s.name).map(|t| t.to_rfc3339()))
                    .collect()
            };
            let states = sites
                .sites
                .iter()
                .zip(next)
                .map(|(s, next_run)| SiteState {
                    name: s.name.clone(),
                    queued: Flusher::queued(s),
                    running: f.is_running(&s.name),
                    next_run,
                })
                .collect();
            let sh = shared.clone();
            // The gauges read the disk: counts of blocked clients and the like are set
            // on the way.
            let _ = tokio::task::spawn_blocking(move || {
                sh.metrics.render(&super::metrics_http::state(&sh))
            })
            .await;
            Response::Status(Box::new(DaemonState {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                node: shared.node.as_ref().map(|n| n.to_string()),
                started: shared.metrics.started_unix(),
                uptime_secs: shared.metrics.uptime().as_secs(),
                listening: shared
                    .listening
                    .iter()
                    .map(|(s, a)| Listening {
                        service: s.name().to_string(),
                        address: a.to_string(),
                    })
                    .collect(),
                counters: shared.metrics.snapshot(),
                sites: states,
                accounts: Some(AccountsState {
                    backend: if shared.engine.is_memory() {
                        "postgres"
                    } else {
                        "files"
                    }
                    .into(),
                    version: shared.engine.version(),
                    unavailable: shared.engine.available().err(),
                }),
            }))
        }
        Request::Reload => {
            let e = shared.engine.clone();
            match tokio::task::spawn_blocking(move || e.reload()).await {
                Ok(r) => Response::Reloaded {
                    compiled: r.compiled.len(),
                    errors: r.errors,
                },
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
            }
        }
    }
}

/// The client side, for the CLI: one request, one response. None if no daemon answers.
pub fn ask(root: &Path, node: Option<&NodeName>, req: &Request) -> Option<Response> {
    use std::io::{BufRead, Write};
    let path = socket_path(root, node);
    let mut s = std::os::unix::net::UnixStream::connect(&path).ok()?;
    let mut line = serde_json::to_vec(req).ok()?;
    line.push(b'\n');
    s.write_all(&line).ok()?;
    let mut r = std::io::BufReader::new(s);
    let mut answer = String::new();
    r.read_line(&mut answer).ok()?;
    serde_json::from_str(&answer).ok()
}
