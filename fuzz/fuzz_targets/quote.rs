//! qmail quoting and header lines: quote2, rpline, dtline, ufline, ext_n, host_n.
//!
//! Input: with 9 bytes or more, byte 0 picks n (0..=7) and bytes 1..9 are a
//! little-endian unix time; the rest is the address. Shorter input is all address.
//!
//! Invariants:
//! - rpline/dtline end with exactly one LF and hold no other LF, start with their
//!   header name, and equal the header + (quote2 of the) address with LF turned to `_`;
//! - quote2: empty stays empty; the domain (from the last `@`) is copied untouched;
//!   the local part is unchanged when it needs no quoting, else it is a quoted string
//!   that unquotes back to the original bytes;
//! - ufline: `From ` + sender (space/tab/LF as `-`, empty as MAILER-DAEMON) + ` ` +
//!   a valid `Www Mmm DD HH:MM:SS YYYY` date (checked against a naive calendar for
//!   years up to 9999) + one LF;
//! - ext_n/host_n: n = 0 and 1 give the input; each step strips up to the next `-`
//!   (or cuts at the last `.`, keeping the value when no dot is left).
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnmail::qmail::quote;

fn unquote(q: &[u8]) -> Vec<u8> {
    assert!(
        q.len() >= 2 && q[0] == b'"' && q[q.len() - 1] == b'"',
        "{q:?}"
    );
    let inner = &q[1..q.len() - 1];
    let mut out = Vec::new();
    let mut it = inner.iter();
    while let Some(&b) = it.next() {
        if b == b'\\' {
            let &n = it.next().expect("dangling backslash");
            assert!(matches!(n, b'\r' | b'\n' | b'"' | b'\\'), "escaped {n:#x}");
            out.push(n);
        } else {
            assert!(
                !matches!(b, b'\r' | b'\n' | b'"'),
                "unescaped {b:#x} in {q:?}"
            );
            out.push(b);
        }
    }
    out
}

fn lf_to_underscore(b: &[u8]) -> Vec<u8> {
    b.iter()
        .map(|&c| if c == b'\n' { b'_' } else { c })
        .collect()
}

fn one_final_lf(line: &[u8]) {
    assert_eq!(line.last(), Some(&b'\n'));
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "{line:?}");
}

fn is_leap(y: u64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn month_len(y: u64, m: usize) -> u64 {
    [
        31,
        if is_leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][m]
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Naive civil date for days since 1970-01-01 (only used up to year 9999).
fn naive_civil(mut days: u64) -> (u64, usize, u64) {
    let mut y = 1970;
    loop {
        let len = if is_leap(y) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        y += 1;
    }
    let mut m = 0;
    while days >= month_len(y, m) {
        days -= month_len(y, m);
        m += 1;
    }
    (y, m, days + 1)
}

fn check_ufline(sender: &[u8], t: u64) {
    let line = quote::ufline(sender, t);
    one_final_lf(&line);
    let shown: Vec<u8> = if sender.is_empty() {
        b"MAILER-DAEMON".to_vec()
    } else {
        sender
            .iter()
            .map(|&b| {
                if matches!(b, b' ' | b'\t' | b'\n') {
                    b'-'
                } else {
                    b
                }
            })
            .collect()
    };
    let head = [b"From ".as_slice(), &shown, b" "].concat();
    assert!(line.starts_with(&head));
    let date = std::str::from_utf8(&line[head.len()..line.len() - 1]).expect("ASCII date");
    let f: Vec<&str> = date.split(' ').collect();
    assert_eq!(f.len(), 5, "{date:?}");
    let days = t / 86_400;
    assert_eq!(f[0], DAYS[((days + 4) % 7) as usize]);
    let month = MONTHS.iter().position(|m| *m == f[1]).expect("month name");
    let year: u64 = f[4].parse().expect("year");
    assert!(year >= 1970);
    let day: u64 = f[2].parse().expect("day");
    assert_eq!(f[2].len(), 2);
    assert!(day >= 1 && day <= month_len(year, month));
    let secs = t % 86_400;
    assert_eq!(
        f[3],
        format!(
            "{:02}:{:02}:{:02}",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    );
    if days < 2_932_897 {
        // 2_932_897 days is 10000-01-01.
        assert_eq!((year, month, day), naive_civil(days), "t={t}");
    }
}

fuzz_target!(|data: &[u8]| {
    let (n, t, addr) = if data.len() >= 9 {
        let t = u64::from_le_bytes(data[1..9].try_into().unwrap());
        ((data[0] % 8) as usize, t, &data[9..])
    } else {
        (2, 0, data)
    };

    // quote2
    let q = quote::quote2(addr);
    if addr.is_empty() {
        assert!(q.is_empty());
    } else {
        let (local, domain) = match addr.iter().rposition(|&b| b == b'@') {
            Some(at) => (&addr[..at], &addr[at..]),
            None => (addr, &b""[..]),
        };
        assert!(q.ends_with(domain));
        let ql = &q[..q.len() - domain.len()];
        if quote::needs_quoting(local) {
            assert_eq!(unquote(ql), local);
        } else {
            assert_eq!(ql, local);
        }
    }

    // rpline / dtline
    let rp = quote::rpline(addr);
    one_final_lf(&rp);
    let want = [b"Return-Path: <".as_slice(), &lf_to_underscore(&q), b">\n"].concat();
    assert_eq!(rp, want);
    let dt = quote::dtline(addr);
    one_final_lf(&dt);
    let want = [b"Delivered-To: ".as_slice(), &lf_to_underscore(addr), b"\n"].concat();
    assert_eq!(dt, want);

    // ufline
    check_ufline(addr, t);
    check_ufline(addr, t % (1 << 40));

    // ext_n
    assert_eq!(quote::ext_n(addr, 0), addr);
    assert_eq!(quote::ext_n(addr, 1), addr);
    let mut prev = addr.to_vec();
    for k in 2..=n.max(4) + 1 {
        let e = quote::ext_n(addr, k);
        let want = match prev.iter().position(|&b| b == b'-') {
            Some(d) => prev[d + 1..].to_vec(),
            None => Vec::new(),
        };
        assert_eq!(e, want, "ext_n({addr:?}, {k})");
        assert!(addr.ends_with(&e));
        prev = e;
    }

    // host_n
    assert_eq!(quote::host_n(addr, 0), addr);
    assert_eq!(quote::host_n(addr, 1), addr);
    let mut prev = addr.to_vec();
    for k in 2..=n.max(4) + 1 {
        let h = quote::host_n(addr, k);
        let want = match prev.iter().rposition(|&b| b == b'.') {
            Some(d) => prev[..d].to_vec(),
            None => prev.clone(),
        };
        assert_eq!(h, want, "host_n({addr:?}, {k})");
        assert!(addr.starts_with(&h));
        prev = h;
    }
});
