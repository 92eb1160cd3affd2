//! Debian's dnsmasq as a real DNS server on loopback for tests: MX and address records
//! of the test zone `example`, and the reverse names of loopback addresses.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::daemon::free_port;

/// dnsmasq on 127.0.0.1:port serving the test zone `example` (and `127.in-addr.arpa`) only: names it does
/// not know are NXDOMAIN, types it has no record of are empty (never REFUSED).
pub struct Dnsmasq {
    child: Child,
    pub port: u16,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dnsmasq_path() -> Option<&'static str> {
    ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

impl Dnsmasq {
    /// Started with dnsmasq's record options (`--host-record=...`, `--mx-host=...`).
    pub fn start(records: &[String]) -> Option<Dnsmasq> {
        let Some(bin) = dnsmasq_path() else {
            super::skip("dnsmasq is not installed (tests/install-peers installs dnsmasq-base)");
            return None;
        };
        for _ in 0..5 {
            let port = free_port();
            let mut c = Command::new(bin);
            c.args([
                "--no-daemon",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--pid-file=",
                "--local=/example/",
                // Reverse names of loopback addresses it has no record of: NXDOMAIN.
                "--local=/127.in-addr.arpa/",
                "--local-ttl=0",
            ]);
            if super::is_root() {
                // It would switch to a user named dnsmasq, which dnsmasq-base lacks.
                c.arg("--user=root");
            }
            c.args(records).stdout(Stdio::null()).stderr(Stdio::null());
            let mut child = c.spawn().expect("starting dnsmasq");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if child.try_wait().ok().flatten().is_some() {
                    break; // the port was taken: try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Dnsmasq { child, port });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("dnsmasq did not start");
    }
}
