//! qmail's `control/` files: `me`, `rcpthosts` (+ `morercpthosts.cdb`), `locals`,
//! `virtualdomains` and `smtproutes`, read with qmail's own rules.
//!
//! The parsing is pure (bytes in, tables out) so that it can be property-tested and
//! fuzzed; [`ControlFiles::load`] is the only function here that reads the disk.
//! Two deliberate departures from qmail, both toward safety: a missing `rcpthosts`
//! means "accept for nobody" instead of "accept for everybody" (no open relay), and
//! the tables keep line numbers so that `turnmail check` can point at a line.

use std::collections::HashMap;
use std::io;
use std::path::Path;

/// One meaningful line of a control file and its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlLine {
    pub line: usize,
    pub text: Vec<u8>,
}

/// Upper bound on one control file; a file above it is refused as unusable input.
pub const MAX_CONTROL_FILE: u64 = 64 << 20;

/// qmail's `control_readfile`: trailing spaces and tabs removed, empty lines and lines
/// starting with `#` skipped. Leading whitespace is kept, as qmail keeps it.
pub fn read_lines(input: &[u8]) -> Vec<ControlLine> {
    let mut out = Vec::new();
    for (i, raw) in input.split(|&b| b == b'\n').enumerate() {
        let mut end = raw.len();
        while end > 0 && (raw[end - 1] == b' ' || raw[end - 1] == b'\t') {
            end -= 1;
        }
        let text = &raw[..end];
        if text.is_empty() || text[0] == b'#' {
            continue;
        }
        out.push(ControlLine {
            line: i + 1,
            text: text.to_vec(),
        });
    }
    out
}

/// The first meaningful line of a file (qmail's `control_rldef` for `me` and friends).
pub fn first_line(input: &[u8]) -> Option<Vec<u8>> {
    read_lines(input).into_iter().next().map(|l| l.text)
}

/// Yields `d` and then each suffix of `d` that starts at a `.`, longest first:
/// `a.b.c`, `.b.c`, `.c`. This is the walk qmail uses for rcpthosts and
/// virtualdomains wildcards.
pub fn domain_suffixes(domain: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::once(domain).chain(
        domain
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'.')
            .map(move |(i, _)| &domain[i..]),
    )
}

/// `control/rcpthosts` and `control/morercpthosts.cdb`: the domains we accept mail for.
#[derive(Default)]
pub struct RcptHosts {
    /// None when `control/rcpthosts` does not exist: then nothing is accepted.
    hosts: Option<HashMap<Vec<u8>, usize>>,
    more: Option<cdb2::CDB>,
}

impl std::fmt::Debug for RcptHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RcptHosts")
            .field("hosts", &self.hosts.as_ref().map(|h| h.len()))
            .field("more", &self.more.is_some())
            .finish()
    }
}

impl RcptHosts {
    /// Parse the text of `rcpthosts`; `None` means the file does not exist.
    pub fn parse(text: Option<&[u8]>) -> RcptHosts {
        let hosts = text.map(|t| {
            let mut m = HashMap::new();
            for l in read_lines(t) {
                m.entry(l.text.to_ascii_lowercase()).or_insert(l.line);
            }
            m
        });
        RcptHosts { hosts, more: None }
    }

    /// Attach an opened `morercpthosts.cdb` (consulted only when rcpthosts exists).
    pub fn with_more(mut self, more: Option<cdb2::CDB>) -> RcptHosts {
        self.more = more;
        self
    }

    pub fn exists(&self) -> bool {
        self.hosts.is_some()
    }

    pub fn len(&self) -> usize {
        self.hosts.as_ref().map_or(0, |h| h.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.more.is_none()
    }

    /// Whether mail for `domain` is accepted: the domain or any `.suffix` is listed.
    /// Errors only come from reading `morercpthosts.cdb` and are temporary.
    pub fn accepts(&self, domain: &[u8]) -> io::Result<bool> {
        let Some(hosts) = &self.hosts else {
            return Ok(false);
        };
        let domain = domain.to_ascii_lowercase();
        for s in domain_suffixes(&domain) {
            if hosts.contains_key(s) {
                return Ok(true);
            }
        }
        if let Some(more) = &self.more {
            for s in domain_suffixes(&domain) {
                if let Some(r) = more.get(s) {
                    r?;
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The domains listed in rcpthosts itself (not the cdb), lowercased.
    pub fn listed(&self) -> impl Iterator<Item = &[u8]> {
        self.hosts
            .iter()
            .flat_map(|h| h.keys().map(|k| k.as_slice()))
    }
}

/// `control/locals`: domains delivered locally without virtualdomains rewriting.
#[derive(Debug, Default, Clone)]
pub struct Locals {
    set: HashMap<Vec<u8>, usize>,
}

impl Locals {
    /// Parse `locals`; qmail uses `me` when the file is missing.
    pub fn parse(text: Option<&[u8]>, me: Option<&[u8]>) -> Locals {
        let mut set = HashMap::new();
        match text {
            Some(t) => {
                for l in read_lines(t) {
                    set.entry(l.text.to_ascii_lowercase()).or_insert(l.line);
                }
            }
            None => {
                if let Some(me) = me {
                    set.insert(me.to_ascii_lowercase(), 0);
                }
            }
        }
        Locals { set }
    }

    pub fn contains(&self, domain: &[u8]) -> bool {
        self.set.contains_key(&domain.to_ascii_lowercase())
    }

    /// Listed domains with their line numbers (0 when taken from `me`).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], usize)> {
        self.set.iter().map(|(k, &v)| (k.as_slice(), v))
    }
}

/// One `virtualdomains` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualDomain {
    pub line: usize,
    /// Key as written (user@domain, domain, .suffix or empty).
    pub key: Vec<u8>,
    /// Text after the first colon; empty means "exception: not virtual".
    pub prepend: Vec<u8>,
}

/// `control/virtualdomains`, with qmail's precedence: the last duplicate key wins.
#[derive(Debug, Default, Clone)]
pub struct VirtualDomains {
    map: HashMap<Vec<u8>, VirtualDomain>,
}

/// The outcome of qmail-send's recipient rewriting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Delivered locally to this address (unchanged for locals, prefixed for virtual).
    Local {
        address: Vec<u8>,
        /// The virtualdomains entry used, if any.
        via: Option<VirtualDomain>,
    },
    /// Not a local or virtual domain: mail would be relayed.
    Remote,
}

impl VirtualDomains {
    pub fn parse(text: Option<&[u8]>) -> VirtualDomains {
        let mut map = HashMap::new();
        for l in read_lines(text.unwrap_or_default()) {
            // Lines without a colon are ignored, as qmail's constmap does.
            let Some(colon) = l.text.iter().position(|&b| b == b':') else {
                continue;
            };
            let key = l.text[..colon].to_vec();
            let entry = VirtualDomain {
                line: l.line,
                key: key.clone(),
                prepend: l.text[colon + 1..].to_vec(),
            };
            map.insert(key.to_ascii_lowercase(), entry);
        }
        VirtualDomains { map }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &VirtualDomain> {
        self.map.values()
    }

    /// The entry that applies to `address` (already `user@domain`), in qmail's order:
    /// the whole address, the domain, each `.suffix` longest first, the empty key.
    pub fn find(&self, address: &[u8]) -> Option<&VirtualDomain> {
        let lower = address.to_ascii_lowercase();
        if let Some(v) = self.map.get(&lower) {
            return Some(v);
        }
        let at = lower.iter().rposition(|&b| b == b'@')?;
        let domain = &lower[at + 1..];
        for s in domain_suffixes(domain) {
            if let Some(v) = self.map.get(s) {
                return Some(v);
            }
        }
        self.map.get(&b""[..])
    }
}

/// qmail-send's rewrite of one recipient that already contains `@`.
pub fn rewrite(address: &[u8], locals: &Locals, vds: &VirtualDomains) -> Rewrite {
    let Some(at) = address.iter().rposition(|&b| b == b'@') else {
        return Rewrite::Remote;
    };
    if locals.contains(&address[at + 1..]) {
        return Rewrite::Local {
            address: address.to_vec(),
            via: None,
        };
    }
    match vds.find(address) {
        Some(v) if !v.prepend.is_empty() => {
            let mut a = v.prepend.clone();
            a.push(b'-');
            a.extend_from_slice(address);
            Rewrite::Local {
                address: a,
                via: Some(v.clone()),
            }
        }
        _ => Rewrite::Remote,
    }
}

/// One `smtproutes` line: `domain:relay[:port]`; an empty relay means "use MX".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpRoute {
    pub line: usize,
    pub domain: Vec<u8>,
    pub relay: Vec<u8>,
    pub port: Option<u16>,
}

/// `control/smtproutes`; as with virtualdomains, the last line for a key wins (qmail's
/// constmap finds the most recently inserted duplicate first).
#[derive(Debug, Default, Clone)]
pub struct SmtpRoutes {
    map: HashMap<Vec<u8>, SmtpRoute>,
}

impl SmtpRoutes {
    pub fn parse(text: Option<&[u8]>) -> SmtpRoutes {
        let mut map = HashMap::new();
        for l in read_lines(text.unwrap_or_default()) {
            let Some(colon) = l.text.iter().position(|&b| b == b':') else {
                continue;
            };
            let domain = l.text[..colon].to_ascii_lowercase();
            let rest = &l.text[colon + 1..];
            let (relay, port) = match rest.iter().position(|&b| b == b':') {
                Some(c) => (
                    rest[..c].to_vec(),
                    std::str::from_utf8(&rest[c + 1..])
                        .ok()
                        .and_then(|p| p.parse().ok()),
                ),
                None => (rest.to_vec(), None),
            };
            map.insert(
                domain.clone(),
                SmtpRoute {
                    line: l.line,
                    domain,
                    relay,
                    port,
                },
            );
        }
        SmtpRoutes { map }
    }

    /// The route for `domain`: the domain, each `.suffix`, then the empty key.
    pub fn route(&self, domain: &[u8]) -> Option<&SmtpRoute> {
        let lower = domain.to_ascii_lowercase();
        domain_suffixes(&lower)
            .find_map(|s| self.map.get(s))
            .or_else(|| self.map.get(&b""[..]))
    }
}

/// All control files the engine needs, loaded once per (re)load.
#[derive(Debug, Default)]
pub struct ControlFiles {
    pub me: Option<Vec<u8>>,
    pub rcpthosts: RcptHosts,
    pub locals: Locals,
    pub virtualdomains: VirtualDomains,
    pub smtproutes: SmtpRoutes,
}

fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match crate::fsutil::read_limited(path, MAX_CONTROL_FILE) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

impl ControlFiles {
    /// Read `dir` (the `control/` directory). Missing files are normal; unreadable
    /// ones are errors.
    pub fn load(dir: &Path) -> io::Result<ControlFiles> {
        let rcpt_text = read_optional(&dir.join("rcpthosts"))?;
        let more_path = dir.join("morercpthosts.cdb");
        let more = match cdb2::CDB::open(&more_path) {
            Ok(c) => Some(c),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", more_path.display()),
                ));
            }
        };
        let rcpthosts = RcptHosts::parse(rcpt_text.as_deref()).with_more(more);
        let virtualdomains =
            VirtualDomains::parse(read_optional(&dir.join("virtualdomains"))?.as_deref());
        Self::load_rest(dir, rcpthosts, virtualdomains)
    }

    /// Read `me`, `locals` and `smtproutes` from `dir` but take rcpthosts and
    /// virtualdomains from texts (accounts kept in a database, which holds those two;
    /// no morercpthosts.cdb then). An empty rcpthosts text accepts nothing, as a
    /// missing file does.
    pub fn load_with(
        dir: &Path,
        rcpthosts: &[u8],
        virtualdomains: &[u8],
    ) -> io::Result<ControlFiles> {
        Self::load_rest(
            dir,
            RcptHosts::parse(Some(rcpthosts)),
            VirtualDomains::parse(Some(virtualdomains)),
        )
    }

    fn load_rest(
        dir: &Path,
        rcpthosts: RcptHosts,
        virtualdomains: VirtualDomains,
    ) -> io::Result<ControlFiles> {
        let me = read_optional(&dir.join("me"))?.and_then(|t| first_line(&t));
        let locals = Locals::parse(
            read_optional(&dir.join("locals"))?.as_deref(),
            me.as_deref(),
        );
        let smtproutes = SmtpRoutes::parse(read_optional(&dir.join("smtproutes"))?.as_deref());
        Ok(ControlFiles {
            me,
            rcpthosts,
            locals,
            virtualdomains,
            smtproutes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn read_lines_follows_control_readfile() {
        let t = b"# comment\nexample.com  \t\n\n  lead\nlast";
        let l = read_lines(t);
        assert_eq!(
            l,
            vec![
                ControlLine {
                    line: 2,
                    text: b"example.com".to_vec()
                },
                ControlLine {
                    line: 4,
                    text: b"  lead".to_vec()
                },
                ControlLine {
                    line: 5,
                    text: b"last".to_vec()
                },
            ]
        );
    }

    #[test]
    fn rcpthosts_suffix_walk_and_case() {
        let r = RcptHosts::parse(Some(b"Example.COM\n.heaven.af.mil\n"));
        assert!(r.accepts(b"example.com").unwrap());
        assert!(r.accepts(b"EXAMPLE.com").unwrap());
        assert!(!r.accepts(b"sub.example.com").unwrap());
        assert!(r.accepts(b"a.b.heaven.af.mil").unwrap());
        assert!(!r.accepts(b"heaven.af.mil").unwrap());
        assert!(!r.accepts(b"example.org").unwrap());
    }

    #[test]
    fn missing_rcpthosts_accepts_nothing() {
        let r = RcptHosts::parse(None);
        assert!(!r.exists());
        assert!(!r.accepts(b"anything.example").unwrap());
        assert!(!r.accepts(b"").unwrap());
    }

    #[test]
    fn morercpthosts_cdb_is_consulted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("more.cdb");
        {
            let f = std::fs::File::create(&p).unwrap();
            let mut m = cdb2::CDBMake::new(f).unwrap();
            m.add(b"more.example", b"").unwrap();
            m.finish().unwrap();
        }
        let cdb = cdb2::CDB::open(&p).unwrap();
        let r = RcptHosts::parse(Some(b"a.example\n")).with_more(Some(cdb));
        assert!(r.accepts(b"MORE.example").unwrap());
        assert!(!r.accepts(b"other.example").unwrap());
    }

    #[test]
    fn virtualdomains_order_and_last_duplicate_wins() {
        let v = VirtualDomains::parse(Some(
            b"nowhere.mil:joe-foo\n.b.c:sub\n.c:top\n:catch\nvip@nowhere.mil:vip\nx.org:first\nX.org:second\nbad line\n",
        ));
        assert_eq!(v.find(b"info@nowhere.mil").unwrap().prepend, b"joe-foo");
        assert_eq!(v.find(b"vip@NOWHERE.mil").unwrap().prepend, b"vip");
        assert_eq!(v.find(b"u@a.b.c").unwrap().prepend, b"sub");
        assert_eq!(v.find(b"u@b.c").unwrap().prepend, b"top");
        assert_eq!(v.find(b"u@z.c").unwrap().prepend, b"top");
        assert_eq!(v.find(b"u@elsewhere").unwrap().prepend, b"catch");
        assert_eq!(v.find(b"u@x.org").unwrap().prepend, b"second");
    }

    #[test]
    fn rewrite_matches_qmail() {
        let locals = Locals::parse(Some(b"host.example\n"), None);
        let v = VirtualDomains::parse(Some(
            b"nowhere.mil:joe-foo\nhost.example:never\nexcept.example:\n",
        ));
        assert_eq!(
            rewrite(b"info@nowhere.mil", &locals, &v),
            Rewrite::Local {
                address: b"joe-foo-info@nowhere.mil".to_vec(),
                via: v.find(b"info@nowhere.mil").cloned()
            }
        );
        // locals win over virtualdomains
        assert_eq!(
            rewrite(b"joe@HOST.example", &locals, &v),
            Rewrite::Local {
                address: b"joe@HOST.example".to_vec(),
                via: None
            }
        );
        assert_eq!(rewrite(b"a@except.example", &locals, &v), Rewrite::Remote);
        assert_eq!(rewrite(b"a@other.example", &locals, &v), Rewrite::Remote);
        assert_eq!(rewrite(b"no-at-sign", &locals, &v), Rewrite::Remote);
    }

    #[test]
    fn locals_default_to_me() {
        let l = Locals::parse(None, Some(b"Mail.Example"));
        assert!(l.contains(b"mail.example"));
        let l = Locals::parse(Some(b""), Some(b"mail.example"));
        assert!(!l.contains(b"mail.example"));
    }

    #[test]
    fn smtproutes_walk() {
        let r = SmtpRoutes::parse(Some(
            b"site.example:10.0.0.1:2525\n.example:relay.example\n:smarthost.example\nmx.example:\n",
        ));
        let s = r.route(b"site.example").unwrap();
        assert_eq!((s.relay.as_slice(), s.port), (&b"10.0.0.1"[..], Some(2525)));
        assert_eq!(r.route(b"a.example").unwrap().relay, b"relay.example");
        assert_eq!(r.route(b"other.org").unwrap().relay, b"smarthost.example");
        assert_eq!(r.route(b"mx.example").unwrap().relay, b"");
    }

    #[test]
    fn load_reads_a_directory() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("me"), b"mail.example\n").unwrap();
        std::fs::write(d.path().join("rcpthosts"), b"example.com\n").unwrap();
        let c = ControlFiles::load(d.path()).unwrap();
        assert_eq!(c.me.as_deref(), Some(&b"mail.example"[..]));
        assert!(c.locals.contains(b"mail.example"));
        assert!(c.rcpthosts.accepts(b"example.com").unwrap());
        assert!(c.virtualdomains.is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = read_lines(&data);
            let r = RcptHosts::parse(Some(&data));
            let _ = r.accepts(&data);
            let v = VirtualDomains::parse(Some(&data));
            let l = Locals::parse(Some(&data), None);
            let _ = rewrite(&data, &l, &v);
            let _ = SmtpRoutes::parse(Some(&data)).route(&data);
        }

        #[test]
        fn listed_domains_are_accepted(domains in proptest::collection::vec("[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,3}", 1..20)) {
            let text = domains.join("\n");
            let r = RcptHosts::parse(Some(text.as_bytes()));
            for d in &domains {
                prop_assert!(r.accepts(d.to_uppercase().as_bytes()).unwrap());
            }
        }
    }
}
