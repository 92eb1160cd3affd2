//! A site's `RELAYHOST` file: where its mail goes, `host[:port]` (serialmail's format,
//! with IPv6 in brackets or bare).

/// Where a site's mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayhost {
    pub host: String,
    pub port: Option<u16>,
}

impl Relayhost {
    /// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
    pub fn parse(text: &str) -> Option<Relayhost> {
        let t = text.trim();
        if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        if let Some(rest) = t.strip_prefix('[') {
            let (host, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?.parse().ok()?),
            };
            return Some(Relayhost {
                host: host.to_string(),
                port,
            });
        }
        if t.matches(':').count() > 1 {
            return Some(Relayhost {
                host: t.to_string(),
                port: None,
            });
        }
        match t.split_once(':') {
            Some((h, p)) if !h.is_empty() => Some(Relayhost {
                host: h.to_string(),
                port: Some(p.parse().ok()?),
            }),
            Some(_) => None,
            None => Some(Relayhost {
                host: t.to_string(),
                port: None,
            }),
        }
    }

    pub fn address(&self, default_port: u16) -> String {
        let port = self.port.unwrap_or(default_port);
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayhost_forms() {
        let p = |s| Relayhost::parse(s);
        assert_eq!(
            p("mx.site.example"),
            Some(Relayhost {
                host: "mx.site.example".into(),
                port: None
            })
        );
        assert_eq!(
            p("10.0.0.1:2525\n"),
            Some(Relayhost {
                host: "10.0.0.1".into(),
                port: Some(2525)
            })
        );
        assert_eq!(
            p("[2001:db8::1]:26"),
            Some(Relayhost {
                host: "2001:db8::1".into(),
                port: Some(26)
            })
        );
        assert_eq!(
            p("2001:db8::1"),
            Some(Relayhost {
                host: "2001:db8::1".into(),
                port: None
            })
        );
        assert_eq!(p("host:notaport"), None);
        assert_eq!(p(""), None);
        assert_eq!(p("a b"), None);
        assert_eq!(p(":25"), None);
        assert_eq!(
            p("[2001:db8::1]:26").unwrap().address(25),
            "[2001:db8::1]:26"
        );
        assert_eq!(p("h").unwrap().address(25), "h:25");
    }
}
