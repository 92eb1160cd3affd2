//! Unique names of Maildir files: `SECS.M<usec>P<pid>Q<n>.HOST,S=<size>,W=<crlf size>`
//! (the revised maildir(5) form, with the host part escaped and, for a named node,
//! `NODE.HOST`), and reading the size tags back.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Per-process sequence number: makes names unique between threads and within one
/// microsecond, which time and pid alone do not.
static COUNTER: AtomicU64 = AtomicU64::new(0);
/// The escaped host name; it does not change while we run, so ask the kernel once.
static HOST: OnceLock<String> = OnceLock::new();
/// The node name of a daemon sharing its root with others (`cluster.rs`), set once
/// before the first delivery.
static NODE: OnceLock<String> = OnceLock::new();

/// A unique name `SECS.M<usecs>P<pid>Q<counter>.HOST` in the revised maildir form,
/// with `host` escaped by [`escape_host`]. `Q` is the per-process counter.
pub fn unique_name(secs: u64, usecs: u32, pid: u32, counter: u64, host: &str) -> String {
    format_unique(secs, usecs, pid, counter, &escape_host(host))
}

pub(super) fn format_unique(
    secs: u64,
    usecs: u32,
    pid: u32,
    counter: u64,
    escaped_host: &str,
) -> String {
    format!("{secs}.M{usecs}P{pid}Q{counter}.{escaped_host}")
}

/// Escape a host name for use in a maildir name: `/` becomes `\057` and `:` becomes
/// `\072` as the revised maildir spec says. For the same reasons we also write as
/// `\ooo` (three octal digits per byte): `\` (so the escape cannot be ambiguous),
/// `,` (it starts the `,S=` and `,W=` tags) and every byte outside printable ASCII
/// 0x21..=0x7E (spaces, controls, NUL, non-ASCII), which keeps the UIDL within the
/// characters RFC 1939 allows.
pub fn escape_host(host: &str) -> String {
    let mut out = String::with_capacity(host.len());
    for &b in host.as_bytes() {
        if (0x21..=0x7e).contains(&b) && !matches!(b, b'/' | b':' | b'\\' | b',') {
            out.push(char::from(b));
        } else {
            out.push('\\');
            for shift in [6, 3, 0] {
                out.push(char::from(b'0' + ((b >> shift) & 7)));
            }
        }
    }
    out
}

/// The `,S=<size>` and `,W=<crlf_size>` tags of a name (anything after a `:` is
/// ignored). A tag missing, not plain decimal or too large gives `None`; the first of
/// repeated tags counts.
pub fn parse_size_tags(unique: &str) -> (Option<u64>, Option<u64>) {
    let unique = unique.split_once(':').map_or(unique, |(u, _)| u);
    let (mut s, mut w) = (None, None);
    for field in unique.split(',').skip(1) {
        if let Some(v) = field.strip_prefix("S=") {
            s = s.or_else(|| parse_decimal(v));
        } else if let Some(v) = field.strip_prefix("W=") {
            w = w.or_else(|| parse_decimal(v));
        }
    }
    (s, w)
}

fn parse_decimal(v: &str) -> Option<u64> {
    // u64::from_str would also accept a leading '+'.
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// The RFC 1939 size our POP3 server reports for a message made of `parts`: the
/// octets sent when every LF is sent as CRLF, i.e. the byte count plus the number of
/// LF bytes, plus 2 if the data is non-empty and does not end in LF (the server
/// completes a partial last line with CRLF). A bare CR, or the CR of an existing
/// CRLF, counts as 1 like any other byte. Dot-stuffing is not counted (RFC 1939
/// sizes exclude it), nor is the extra blank line qmail-pop3d sends after a message.
pub fn crlf_size(parts: &[&[u8]]) -> u64 {
    let mut total = 0u64;
    let mut last = None;
    for part in parts {
        let lfs = memchr::memchr_iter(b'\n', part).count();
        total += part.len() as u64 + lfs as u64;
        if let Some(&b) = part.last() {
            last = Some(b);
        }
    }
    match last {
        Some(b) if b != b'\n' => total + 2,
        _ => total,
    }
}

/// A fresh name for a message of the given sizes, used in both `tmp/` and `new/`.
pub(super) fn next_name(size: u64, crlf: u64) -> String {
    let (secs, usecs) = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs(), d.subsec_micros()),
        Err(_) => (0, 0),
    };
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    let unique = format_unique(secs, usecs, crate::pid::pid(), counter, local_host());
    format!("{unique},S={size},W={crlf}")
}

/// Make this process's unique names carry `node` (see [`host_part`]). Call before the
/// first delivery; false (and no change) when names were already made.
pub fn set_node_name(node: &crate::cluster::NodeName) -> bool {
    HOST.get().is_none() && NODE.set(node.to_string()).is_ok() && HOST.get().is_none()
}

fn local_host() -> &'static str {
    HOST.get_or_init(|| {
        let raw = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        host_part(&raw, NODE.get().map(String::as_str))
    })
}

/// The host part of our unique names: the host name (`localhost` when none is set),
/// escaped, after the node's name when several daemons share the root. Time, pid and
/// counter keep the names of one machine's processes apart, but not those of machines
/// that share a host name (cloned images) and pids (containers, or simply chance), nor
/// of containers on one kernel with their own pid spaces; the node name does, as each
/// node's name is claimed by one process at a time (`cluster::claim`).
pub fn host_part(hostname: &str, node: Option<&str>) -> String {
    let host = if hostname.is_empty() {
        "localhost".to_owned()
    } else {
        escape_host(hostname)
    };
    match node {
        Some(n) => format!("{}.{host}", escape_host(n)),
        None => host,
    }
}
