//! Opening the listening sockets. std's `TcpListener::bind` cannot set options before
//! `bind`, and two of them matter for a mail host: IPv6 sockets are made IPv6-only, so
//! that `0.0.0.0:25` and `[::]:25` can both be listened on (with the Linux default of
//! dual-stack sockets the second bind fails with "address in use"); and the backlog is
//! raised above std's 128.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockProtocol, SockType, SockaddrStorage, bind, listen,
    setsockopt, socket, sockopt,
};

/// A non-blocking listener on `addr` with a backlog of `backlog` (capped by the kernel
/// at net.core.somaxconn).
pub fn listener(addr: SocketAddr, backlog: i32) -> Result<TcpListener, String> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        SockProtocol::Tcp,
    )
    .map_err(|e| format!("socket for {addr}: {e}"))?;
    // As std does: a restarted daemon must not wait for old connections' TIME_WAIT.
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| format!("SO_REUSEADDR: {e}"))?;
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)
            .map_err(|e| format!("IPV6_V6ONLY on {addr}: {e}"))?;
    }
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )
    .map_err(|e| format!("{e}"))?;
    let backlog = Backlog::new(backlog).map_err(|e| e.to_string())?;
    listen(&fd, backlog).map_err(|e| format!("listen on {addr}: {e}"))?;
    Ok(TcpListener::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_and_ipv6_wildcards_listen_side_by_side() {
        let v4 = listener("0.0.0.0:0".parse().unwrap(), 16).unwrap();
        let port = v4.local_addr().unwrap().port();
        // Without IPV6_V6ONLY this bind would fail with EADDRINUSE. Hosts without IPv6
        // (no `::` to bind) cannot run the check.
        match listener(SocketAddr::from(([0u16; 8], port)), 16) {
            Ok(v6) => assert_eq!(v6.local_addr().unwrap().port(), port),
            Err(e) => assert!(
                e.contains("Address family")
                    || e.contains("EAFNOSUPPORT")
                    || e.contains("EADDRNOTAVAIL"),
                "{e}"
            ),
        }
        // And the listener accepts.
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let _c = std::net::TcpStream::connect(addr).unwrap();
        v4.set_nonblocking(false).unwrap();
        v4.accept().unwrap();
    }

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let a = listener("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let taken = a.local_addr().unwrap();
        let e = listener(taken, 16).unwrap_err();
        assert!(e.contains("EADDRINUSE"), "{e}");
    }
}
