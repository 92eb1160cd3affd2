//! What `turnmail serve --demo` suggests trying, written once the listeners are bound,
//! with the addresses actually listened on (the defaults, `--smtp`/`--pop3` given, or
//! port 0 resolved), so every command printed works as printed.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::daemon::Service;

/// Where a client on this machine connects for a listener on `a` (a wildcard address
/// is reached through loopback).
fn reachable(a: SocketAddr) -> SocketAddr {
    let ip = match a.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, a.port())
}

/// The demo's "try, in another terminal" lines for the demo root at `root`.
pub fn hints(root: &Path, listening: &[(Service, SocketAddr)]) -> String {
    let first = |s: Service| {
        listening
            .iter()
            .find(|(x, _)| *x == s)
            .map(|(_, a)| reachable(*a))
    };
    let r = root.display();
    let mut out = String::new();
    let _ = writeln!(out, "mail root: {r}");
    let _ = writeln!(out, "try, in another terminal:");
    if let Some(smtp) = first(Service::Smtp) {
        let _ = writeln!(
            out,
            "  swaks --server {smtp} --to joe@example.com      # deliver to a POP user"
        );
        let _ = writeln!(
            out,
            "  swaks --server {smtp} --to anyone@acme.example  # held for the acme site"
        );
    }
    if let Some(sub) = first(Service::Submission) {
        let _ = writeln!(
            out,
            "  swaks --server {sub} --tls --auth-user joe@example.com --to friend@elsewhere.example  # send out as joe (swaks asks for the password)"
        );
    }
    if let Some(pop3) = first(Service::Pop3) {
        let _ = writeln!(
            out,
            "  fetchmail -p POP3 -P {} -u joe@example.com --bsmtp - {}  # POP3 pickup",
            pop3.port(),
            pop3.ip()
        );
    }
    let _ = writeln!(out, "  ls {r}/domains/example.com/joe/Maildir/new");
    let _ = writeln!(out, "  turnmail --root {r} resolve joe@example.com");
    let _ = writeln!(out, "stop with Ctrl-C.");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ports_listened_on() {
        let l = [
            (Service::Smtp, "0.0.0.0:3525".parse().unwrap()),
            (Service::Smtp, "[::]:3525".parse().unwrap()),
            (Service::Pop3, "[::1]:3110".parse().unwrap()),
        ];
        let h = hints(Path::new("/r"), &l);
        assert!(
            h.contains("swaks --server 127.0.0.1:3525 --to joe@example.com"),
            "{h}"
        );
        assert!(
            h.contains("-P 3110 -u joe@example.com --bsmtp - ::1"),
            "{h}"
        );
        assert!(!h.contains("2525") && !h.contains("1110"), "{h}");
        // No SMTP listener, no swaks line.
        let h = hints(Path::new("/r"), &l[2..]);
        assert!(!h.contains("swaks"), "{h}");
    }
}
