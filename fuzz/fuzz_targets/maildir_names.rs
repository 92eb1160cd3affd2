//! Maildir names and sizes: parse_size_tags, unique_name/escape_host, crlf_size.
//!
//! Invariants:
//! - parse_size_tags of any string agrees with a digit-by-digit model (text before
//!   the first `:`, fields after the first `,`, first valid `S=`/`W=` wins, plain
//!   decimal only, None on overflow);
//! - escape_host output is printable ASCII without `/`, `:`, `,` and unescapes back
//!   to the host's bytes; a unique_name with `,S=s,W=w` (and any `:2,flags`) appended
//!   reads back exactly (s, w);
//! - crlf_size(parts) is the length of the explicit conversion of the concatenated
//!   parts (every LF sent as CRLF, a missing final line end completed with CRLF), and
//!   does not depend on how the message is split into parts (input split at NUL).
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnmail::maildir::{crlf_size, escape_host, parse_size_tags, unique_name};

fn decimal(v: &str) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for b in v.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

fn tags_model(name: &str) -> (Option<u64>, Option<u64>) {
    let base = &name[..name.find(':').unwrap_or(name.len())];
    let (mut s, mut w) = (None, None);
    let mut fields = base.split(',');
    fields.next();
    for f in fields {
        if s.is_none() && f.starts_with("S=") {
            s = decimal(&f[2..]);
        } else if w.is_none() && f.starts_with("W=") {
            w = decimal(&f[2..]);
        }
    }
    (s, w)
}

fn unescape(e: &str) -> Vec<u8> {
    let b = e.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let d = &b[i + 1..i + 4];
            assert!(d.iter().all(|c| (b'0'..=b'7').contains(c)), "{e:?}");
            let v = (u32::from(d[0] - b'0') << 6)
                | (u32::from(d[1] - b'0') << 3)
                | u32::from(d[2] - b'0');
            out.push(u8::try_from(v).expect("escape fits a byte"));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn explicit_crlf(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() * 2 + 2);
    for &b in msg {
        if b == b'\n' {
            out.extend_from_slice(b"\r\n");
        } else {
            out.push(b);
        }
    }
    if !msg.is_empty() && !msg.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, x) in b.iter_mut().enumerate() {
        *x = data.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    // parse_size_tags on arbitrary text.
    let text = String::from_utf8_lossy(data);
    assert_eq!(parse_size_tags(&text), tags_model(&text), "{text:?}");

    // Names we write read back.
    let host = String::from_utf8_lossy(data.get(24..).unwrap_or_default());
    let esc = escape_host(&host);
    assert!(
        esc.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !matches!(b, b'/' | b':' | b','))
    );
    assert_eq!(unescape(&esc), host.as_bytes());
    let (secs, usecs, pid, counter) = (
        u64_at(data, 0),
        u64_at(data, 8) as u32,
        (u64_at(data, 8) >> 32) as u32,
        u64_at(data, 16),
    );
    let unique = unique_name(secs, usecs, pid, counter, &host);
    assert_eq!(
        unique,
        format!("{secs}.M{usecs}P{pid}Q{counter}.{esc}"),
        "unique_name layout"
    );
    assert_eq!(parse_size_tags(&unique), (None, None));
    let (s, w) = (counter.rotate_left(17), secs ^ counter);
    let named = format!("{unique},S={s},W={w}");
    assert_eq!(parse_size_tags(&named), (Some(s), Some(w)));
    let flagged = format!("{named}:2,{}", text);
    assert_eq!(parse_size_tags(&flagged), (Some(s), Some(w)));

    // crlf_size.
    let parts: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let whole: Vec<u8> = parts.concat();
    let want = explicit_crlf(&whole).len() as u64;
    assert_eq!(crlf_size(&parts), want, "parts {parts:?}");
    assert_eq!(crlf_size(&[&whole]), want);
    assert_eq!(crlf_size(&[]), 0);
    let mut padded = vec![&b""[..]];
    padded.extend(&parts);
    padded.push(b"");
    assert_eq!(crlf_size(&padded), want);
});
