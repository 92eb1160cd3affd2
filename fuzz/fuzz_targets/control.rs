//! control/ files: read_lines, rcpthosts, locals, virtualdomains, smtproutes, rewrite.
//!
//! Input: FILE NUL ADDRESS (no NUL: the whole input is the file, and each of its
//! meaningful lines is also tried as the address). The same file text is read as
//! every control file.
//!
//! Invariants:
//! - read_lines gives increasing line numbers; each text is that line of the input
//!   with trailing spaces/tabs removed, non-empty and not starting with `#`;
//! - rcpthosts accepts an address's domain exactly when the domain or one of its
//!   `.suffixes` is listed (case-insensitively), accepts every listed domain, and a
//!   missing file accepts nothing;
//! - locals contains every listed line, and `me` when the file is missing;
//! - virtualdomains/smtproutes: `find`/`route` agree with a reference model of qmail's
//!   lookup order with "last duplicate wins";
//! - rewrite: no `@` is remote; a local domain keeps the address; a virtual domain
//!   gives `prepend-address` with the entry `find` chose.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use turnmail::qmail::control::{
    self, ControlLine, Locals, RcptHosts, Rewrite, SmtpRoutes, VirtualDomains,
};

fn lower(b: &[u8]) -> Vec<u8> {
    b.to_ascii_lowercase()
}

/// The keys qmail tries for a domain: itself, then each `.suffix`, longest first.
fn suffixes(d: &[u8]) -> Vec<&[u8]> {
    let mut v = vec![d];
    for (i, &b) in d.iter().enumerate() {
        if b == b'.' {
            v.push(&d[i..]);
        }
    }
    v
}

fn check_read_lines(file: &[u8], lines: &[ControlLine]) {
    let raw: Vec<&[u8]> = file.split(|&b| b == b'\n').collect();
    let mut prev = 0;
    for l in lines {
        assert!(l.line > prev, "line numbers must increase");
        prev = l.line;
        let src = raw[l.line - 1];
        assert!(src.starts_with(&l.text));
        assert!(src[l.text.len()..].iter().all(|&b| b == b' ' || b == b'\t'));
        assert!(!l.text.is_empty());
        assert_ne!(l.text[0], b'#');
        assert!(!matches!(l.text.last(), Some(b' ' | b'\t')));
    }
    // Every line not returned is blank after trimming or a comment.
    let kept: Vec<usize> = lines.iter().map(|l| l.line).collect();
    for (i, src) in raw.iter().enumerate() {
        if kept.binary_search(&(i + 1)).is_err() {
            let t = src.iter().rposition(|&b| b != b' ' && b != b'\t');
            assert!(t.is_none() || src[0] == b'#', "line {} dropped", i + 1);
        }
    }
    assert_eq!(
        control::first_line(file),
        lines.first().map(|l| l.text.clone())
    );
}

/// (key, after first colon, line) for lines with a colon, last duplicate wins.
fn colon_model(lines: &[ControlLine]) -> HashMap<Vec<u8>, (Vec<u8>, Vec<u8>, usize)> {
    let mut m = HashMap::new();
    for l in lines {
        if let Some(c) = l.text.iter().position(|&b| b == b':') {
            let key = l.text[..c].to_vec();
            m.insert(lower(&key), (key, l.text[c + 1..].to_vec(), l.line));
        }
    }
    m
}

fuzz_target!(|data: &[u8]| {
    let (file, addr) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let lines = control::read_lines(file);
    check_read_lines(file, &lines);
    let listed: Vec<Vec<u8>> = lines.iter().map(|l| lower(&l.text)).collect();

    let rcpt = RcptHosts::parse(Some(file));
    let none = RcptHosts::parse(None);
    assert!(rcpt.exists() && !none.exists());
    let mut set: Vec<&[u8]> = listed.iter().map(|v| v.as_slice()).collect();
    set.sort();
    set.dedup();
    assert_eq!(rcpt.len(), set.len());
    let mut got: Vec<&[u8]> = rcpt.listed().collect();
    got.sort();
    assert_eq!(got, set);

    let me = lines.first().map(|l| l.text.as_slice());
    let locals = Locals::parse(Some(file), me);
    let locals_from_me = Locals::parse(None, me);
    assert_eq!(locals.iter().count(), set.len());
    if let Some(me) = me {
        assert!(locals_from_me.contains(me));
        assert!(locals_from_me.contains(&me.to_ascii_uppercase()));
    }

    let vds = VirtualDomains::parse(Some(file));
    let vmodel = colon_model(&lines);
    assert_eq!(vds.len(), vmodel.len());
    for e in vds.entries() {
        let (key, prepend, line) = &vmodel[&lower(&e.key)];
        assert_eq!((&e.key, &e.prepend, &e.line), (key, prepend, line));
    }
    let routes = SmtpRoutes::parse(Some(file));

    let mut addrs: Vec<&[u8]> = Vec::new();
    match addr {
        Some(a) => addrs.push(a),
        None => addrs.extend(lines.iter().take(8).map(|l| l.text.as_slice())),
    }
    for address in addrs {
        let domain = match address.iter().rposition(|&b| b == b'@') {
            Some(at) => &address[at + 1..],
            None => address,
        };
        let ld = lower(domain);

        // rcpthosts
        let want = suffixes(&ld).iter().any(|s| set.binary_search(s).is_ok());
        assert_eq!(rcpt.accepts(domain).unwrap(), want);
        assert!(!none.accepts(domain).unwrap());
        assert_eq!(
            locals.contains(domain),
            set.binary_search(&ld.as_slice()).is_ok()
        );

        // virtualdomains: whole address, then (with an @) domain suffixes, then "".
        let la = lower(address);
        let want_vd = vmodel.get(&la).or_else(|| {
            let at = la.iter().rposition(|&b| b == b'@')?;
            suffixes(&la[at + 1..])
                .into_iter()
                .find_map(|s| vmodel.get(s))
                .or_else(|| vmodel.get(&b""[..]))
        });
        let got_vd = vds.find(address);
        assert_eq!(got_vd.map(|v| v.line), want_vd.map(|w| w.2));

        // smtproutes
        let route = routes.route(domain);
        let want_route = suffixes(&ld)
            .into_iter()
            .chain(std::iter::once(&b""[..]))
            .find_map(|s| vmodel.get(s));
        assert_eq!(route.map(|r| r.line), want_route.map(|w| w.2));
        if let Some(r) = route {
            assert_eq!(r.domain, lower(&r.domain));
            let rest = &want_route.unwrap().1;
            match rest.iter().position(|&b| b == b':') {
                None => assert_eq!((&r.relay[..], r.port), (&rest[..], None)),
                Some(c) => {
                    assert_eq!(r.relay, &rest[..c]);
                    let p = std::str::from_utf8(&rest[c + 1..])
                        .ok()
                        .and_then(|p| p.parse::<u16>().ok());
                    assert_eq!(r.port, p);
                }
            }
        }

        // rewrite
        for loc in [&locals, &locals_from_me] {
            let rw = control::rewrite(address, loc, &vds);
            match address.iter().rposition(|&b| b == b'@') {
                None => assert_eq!(rw, Rewrite::Remote),
                Some(at) if loc.contains(&address[at + 1..]) => assert_eq!(
                    rw,
                    Rewrite::Local {
                        address: address.to_vec(),
                        via: None
                    }
                ),
                Some(_) => match vds.find(address) {
                    Some(v) if !v.prepend.is_empty() => {
                        let mut a = v.prepend.clone();
                        a.push(b'-');
                        a.extend_from_slice(address);
                        assert_eq!(
                            rw,
                            Rewrite::Local {
                                address: a,
                                via: Some(v.clone())
                            }
                        );
                    }
                    _ => assert_eq!(rw, Rewrite::Remote),
                },
            }
        }
    }
});
