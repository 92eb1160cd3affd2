//! Addresses and header lines exactly as qmail writes them.
//!
//! Mailboxes delivered by turnmail must be byte-identical to what qmail-local
//! would have produced, and programs run from `.qmail` files expect qmail's
//! environment. This module rebuilds qmail's `quote2` (the `Return-Path:`
//! quoting from `quote.c`), the `RPLINE`, `DTLINE` and `UFLINE` values of
//! qmail-local, and its `EXTn`/`HOSTn` variables. Everything works on raw
//! bytes, since addresses arriving over SMTP need not be UTF-8.
//!
//! qmail works on C strings, so a NUL byte would end its input early. Here a
//! NUL is just another control byte (it forces quoting); callers should never
//! hand us one, because no qmail address can contain it.

/// Bytes that may appear unquoted in a local part: the RFC 822 "atom"
/// characters plus `.`, exactly qmail's `ok[]` table in `quote.c`.
fn is_atom_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'/'
                | b'='
                | b'?'
                | b'^'
                | b'_'
                | b'`'
                | b'{'
                | b'|'
                | b'}'
                | b'~'
                | b'.'
        )
}

/// qmail's `quote_need`: true when `local` must be written as a quoted string.
///
/// That is the case for an empty local part, any byte outside the atom set
/// (which includes every byte >= 128, controls, space and DEL), a leading or
/// trailing `.`, or `..` anywhere.
pub fn needs_quoting(local: &[u8]) -> bool {
    local.is_empty()
        || !local.iter().all(|&b| is_atom_byte(b))
        || local.first() == Some(&b'.')
        || local.last() == Some(&b'.')
        || local.windows(2).any(|w| w == b"..")
}

/// qmail's `quote`: the local part unchanged, or wrapped in double quotes with
/// a backslash before CR, LF, `"` and `\`.
fn quote_local(local: &[u8]) -> Vec<u8> {
    if !needs_quoting(local) {
        return local.to_vec();
    }
    let mut out = Vec::with_capacity(local.len() * 2 + 2);
    out.push(b'"');
    for &b in local {
        if matches!(b, b'\r' | b'\n' | b'"' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    out
}

/// qmail's `quote2`: quote the part before the last `@` if needed and append
/// the domain (with its `@`) untouched. Without an `@` the whole address is
/// treated as a local part; the empty address stays empty (`<>`).
///
/// Note that, like qmail, a LF inside the local part is kept (behind a
/// backslash) and a LF inside the domain is kept raw; `rpline` is what
/// neutralises them.
pub fn quote2(addr: &[u8]) -> Vec<u8> {
    if addr.is_empty() {
        return Vec::new();
    }
    match addr.iter().rposition(|&b| b == b'@') {
        None => quote_local(addr),
        Some(at) => {
            let mut out = quote_local(&addr[..at]);
            out.extend_from_slice(&addr[at..]);
            out
        }
    }
}

/// Replaces every LF with `_`, as qmail-local does before ending its header
/// lines, so an attacker-chosen address cannot inject a header.
fn neutralise_lf(bytes: &mut [u8]) {
    for b in bytes.iter_mut().filter(|b| **b == b'\n') {
        *b = b'_';
    }
}

/// qmail-local's `RPLINE`: `Return-Path: <` + quote2(sender) + `>` + LF, with
/// any LF produced by the sender replaced by `_`.
pub fn rpline(sender: &[u8]) -> Vec<u8> {
    let mut line = b"Return-Path: <".to_vec();
    line.extend_from_slice(&quote2(sender));
    neutralise_lf(&mut line);
    line.extend_from_slice(b">\n");
    line
}

/// qmail-local's `DTLINE`: `Delivered-To: ` + recipient + LF, any LF inside
/// replaced by `_`.
///
/// `recipient` is `local@domain` as qmail-local builds it from its arguments.
/// qmail-local does not quote it (unlike the Return-Path), and neither do
/// we: loop detection compares this line byte for byte with existing headers.
pub fn dtline(recipient: &[u8]) -> Vec<u8> {
    let mut line = b"Delivered-To: ".to_vec();
    line.extend_from_slice(recipient);
    neutralise_lf(&mut line);
    line.push(b'\n');
    line
}

/// Appends `n` as at least two decimal digits, as qmail's `fmt_uint0(…, 2)`.
fn push_two_digits(out: &mut Vec<u8>, n: u64) {
    if n < 10 {
        out.push(b'0');
    }
    out.extend_from_slice(n.to_string().as_bytes());
}

/// qmail's `myctime`: `Www Mmm DD HH:MM:SS YYYY` + LF in UTC. Unlike C's
/// asctime the day of the month is zero-padded (`Jan 01`), because qmail
/// formats it with `fmt_uint0(…, 2)`.
fn myctime(unix_time: u64) -> Vec<u8> {
    use crate::datetime::{DAY_NAMES, MONTH_NAMES, civil_from_days};
    let civil = civil_from_days(unix_time / 86_400);
    let secs = unix_time % 86_400;
    let mut out = Vec::with_capacity(25);
    out.extend_from_slice(DAY_NAMES[civil.weekday]);
    out.push(b' ');
    out.extend_from_slice(MONTH_NAMES[civil.month]);
    out.push(b' ');
    push_two_digits(&mut out, civil.day);
    out.push(b' ');
    push_two_digits(&mut out, secs / 3600);
    out.push(b':');
    push_two_digits(&mut out, secs % 3600 / 60);
    out.push(b':');
    push_two_digits(&mut out, secs % 60);
    out.push(b' ');
    out.extend_from_slice(civil.year.to_string().as_bytes());
    out.push(b'\n');
    out
}

/// qmail-local's `UFLINE`, the mbox `From ` separator line.
///
/// The sender is written raw except that space, tab and LF become `-` (they
/// would break the line's fields); CR and other bytes pass through, as in
/// qmail. An empty sender (a bounce) is written as `MAILER-DAEMON`.
pub fn ufline(sender: &[u8], unix_time: u64) -> Vec<u8> {
    let mut line = b"From ".to_vec();
    if sender.is_empty() {
        line.extend_from_slice(b"MAILER-DAEMON");
    } else {
        line.extend(sender.iter().map(|&b| match b {
            b' ' | b'\t' | b'\n' => b'-',
            other => other,
        }));
    }
    line.push(b' ');
    line.extend_from_slice(&myctime(unix_time));
    line
}

/// qmail-local's `EXT2`/`EXT3`/`EXT4` for `n` = 2/3/4: what follows the
/// first/second/third `-` of `ext`, or empty when there are not that many.
///
/// `n` of 0 or 1 returns `ext` itself (`EXT`); larger `n` keeps going.
pub fn ext_n(ext: &[u8], n: usize) -> Vec<u8> {
    let mut rest = ext;
    for _ in 1..n {
        rest = match rest.iter().position(|&b| b == b'-') {
            Some(dash) => &rest[dash + 1..],
            None => &[],
        };
    }
    rest.to_vec()
}

/// qmail-local's `HOST2`/`HOST3`/`HOST4` for `n` = 2/3/4: `host` cut before
/// its last/second-last/third-last `.`.
///
/// When the dots run out, qmail keeps the previous value rather than going
/// back to the whole host: for `a.b`, HOST2, HOST3 and HOST4 are all `a`;
/// for a host without dots they are the whole host. `n` of 0 or 1 returns
/// `host` itself.
pub fn host_n(host: &[u8], n: usize) -> Vec<u8> {
    let mut end = host.len();
    for _ in 1..n {
        if let Some(dot) = host[..end].iter().rposition(|&b| b == b'.') {
            end = dot;
        }
    }
    host[..end].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Undoes `quote_local`, to check that quoting loses nothing.
    fn unquote_local(quoted: &[u8]) -> Vec<u8> {
        let Some(inner) = quoted
            .strip_prefix(b"\"")
            .and_then(|rest| rest.strip_suffix(b"\""))
        else {
            return quoted.to_vec();
        };
        let mut out = Vec::new();
        let mut escaped = false;
        for &b in inner {
            if !escaped && b == b'\\' {
                escaped = true;
            } else {
                out.push(b);
                escaped = false;
            }
        }
        out
    }

    #[test]
    fn quote2_matches_qmail_examples() {
        // serialmail's rts.exp style: a space and a double dot both quote.
        assert_eq!(
            quote2(b"needs quoting!@the..host"),
            b"\"needs quoting!\"@the..host".to_vec()
        );
        assert_eq!(quote2(b"joe@example.com"), b"joe@example.com".to_vec());
        assert_eq!(quote2(b""), b"".to_vec());
        // Split at the last '@'; the earlier one is quoted with the local part.
        assert_eq!(quote2(b"a@b@c"), b"\"a@b\"@c".to_vec());
        // No '@': the whole address is a local part.
        assert_eq!(quote2(b"joe"), b"joe".to_vec());
        assert_eq!(quote2(b"jo e"), b"\"jo e\"".to_vec());
        // Empty local part is quoted; empty domain is kept.
        assert_eq!(quote2(b"@host"), b"\"\"@host".to_vec());
        assert_eq!(quote2(b"joe@"), b"joe@".to_vec());
        assert_eq!(quote2(b"#@[]"), b"#@[]".to_vec());
        // Escapes: CR, LF, quote and backslash get a backslash; tab does not.
        assert_eq!(
            quote2(b"a\r\n\"\\\tz@h"),
            b"\"a\\\r\\\n\\\"\\\\\tz\"@h".to_vec()
        );
    }

    #[test]
    fn dots_force_quoting_only_at_the_edges_or_doubled() {
        assert!(!needs_quoting(b"a.b"));
        assert!(needs_quoting(b".ab"));
        assert!(needs_quoting(b"ab."));
        assert!(needs_quoting(b"a..b"));
        assert!(needs_quoting(b"."));
        assert!(needs_quoting(b""));
    }

    #[test]
    fn every_byte_class_is_classified_like_qmail() {
        let atom_specials = b"!#$%&'*+-/=?^_`{|}~.";
        for b in 0u8..=255 {
            // A lone '.' is quoted for its position, so test it in the middle.
            let local = [b'a', b, b'a'];
            let expect_plain = b.is_ascii_alphanumeric() || atom_specials.contains(&b);
            assert_eq!(needs_quoting(&local), !expect_plain, "byte {b:#04x}");
        }
        for &b in b" \"(),:;<>@[\\]\x7f\x00\x1f" {
            assert!(needs_quoting(&[b]), "byte {b:#04x}");
        }
        // 8-bit bytes are quoted but not escaped.
        assert_eq!(quote2(b"caf\xe9@h"), b"\"caf\xe9\"@h".to_vec());
    }

    #[test]
    fn rpline_forms() {
        assert_eq!(rpline(b""), b"Return-Path: <>\n".to_vec());
        assert_eq!(
            rpline(b"joe@example.com"),
            b"Return-Path: <joe@example.com>\n".to_vec()
        );
        assert_eq!(
            rpline(b"needs quoting!@the..host"),
            b"Return-Path: <\"needs quoting!\"@the..host>\n".to_vec()
        );
        // LF in the local part is escaped by quote2, then replaced.
        assert_eq!(
            rpline(b"a\nX-Evil: 1@h"),
            b"Return-Path: <\"a\\_X-Evil: 1\"@h>\n".to_vec()
        );
        // LF in the domain is not quoted, only replaced.
        assert_eq!(
            rpline(b"a@h\nX-Evil: 1"),
            b"Return-Path: <a@h_X-Evil: 1>\n".to_vec()
        );
    }

    #[test]
    fn dtline_is_not_quoted() {
        assert_eq!(
            dtline(b"autoturn-1.2.3.4-joe@virt.dom"),
            b"Delivered-To: autoturn-1.2.3.4-joe@virt.dom\n".to_vec()
        );
        assert_eq!(dtline(b"jo e..x@h"), b"Delivered-To: jo e..x@h\n".to_vec());
        assert_eq!(dtline(b"a\nb@h\n"), b"Delivered-To: a_b@h_\n".to_vec());
        assert_eq!(dtline(b"\xff@h"), b"Delivered-To: \xff@h\n".to_vec());
    }

    #[test]
    fn ufline_known_times() {
        assert_eq!(
            ufline(b"joe@x", 0),
            b"From joe@x Thu Jan 01 00:00:00 1970\n".to_vec()
        );
        assert_eq!(
            ufline(b"", 951_782_400),
            b"From MAILER-DAEMON Tue Feb 29 00:00:00 2000\n".to_vec()
        );
        assert_eq!(
            ufline(b"a b\tc\nd\re", 4_102_444_800),
            b"From a-b-c-d\re Fri Jan 01 00:00:00 2100\n".to_vec()
        );
        // 2100 is not a leap year: 1 March follows 28 February.
        assert_eq!(
            ufline(b"x", 4_107_542_399),
            b"From x Sun Feb 28 23:59:59 2100\n".to_vec()
        );
        assert_eq!(
            ufline(b"x", 4_107_542_400),
            b"From x Mon Mar 01 00:00:00 2100\n".to_vec()
        );
        assert_eq!(
            ufline(b"x", 1_234_567_890),
            b"From x Fri Feb 13 23:31:30 2009\n".to_vec()
        );
        assert_eq!(
            ufline(b"x", 253_402_300_799),
            b"From x Fri Dec 31 23:59:59 9999\n".to_vec()
        );
        assert_eq!(
            ufline(b"x", 253_402_300_800),
            b"From x Sat Jan 01 00:00:00 10000\n".to_vec()
        );
    }

    #[test]
    fn ufline_survives_extreme_times() {
        let line = ufline(b"x", u64::MAX);
        assert!(line.ends_with(b"\n"));
    }

    #[test]
    fn ext_n_table() {
        let cases: &[(&[u8], [&[u8]; 3])] = &[
            (b"", [b"", b"", b""]),
            (b"a", [b"", b"", b""]),
            (b"a-b", [b"b", b"", b""]),
            (b"a-b-c", [b"b-c", b"c", b""]),
            (b"a-b-c-d-e", [b"b-c-d-e", b"c-d-e", b"d-e"]),
            (b"-", [b"", b"", b""]),
            (b"--x", [b"-x", b"x", b""]),
            (b"1.2.3.4-Joe", [b"Joe", b"", b""]),
        ];
        for (ext, expect) in cases {
            for (n, want) in (2..=4).zip(expect) {
                assert_eq!(ext_n(ext, n), want.to_vec(), "ext {ext:?} n {n}");
            }
            assert_eq!(ext_n(ext, 1), ext.to_vec());
        }
    }

    #[test]
    fn host_n_table() {
        let cases: &[(&[u8], [&[u8]; 3])] = &[
            (b"", [b"", b"", b""]),
            (b"localhost", [b"localhost", b"localhost", b"localhost"]),
            (b"a.b", [b"a", b"a", b"a"]),
            (b"mail.example.com", [b"mail.example", b"mail", b"mail"]),
            (b"w.x.y.z", [b"w.x.y", b"w.x", b"w"]),
            (b"a.b.c.d.e", [b"a.b.c.d", b"a.b.c", b"a.b"]),
            (b".x", [b"", b"", b""]),
            (b"x.", [b"x", b"x", b"x"]),
        ];
        for (host, expect) in cases {
            for (n, want) in (2..=4).zip(expect) {
                assert_eq!(host_n(host, n), want.to_vec(), "host {host:?} n {n}");
            }
        }
    }

    proptest! {
        #[test]
        fn rpline_has_exactly_one_lf_at_the_end(addr in proptest::collection::vec(any::<u8>(), 0..64)) {
            let line = rpline(&addr);
            prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert!(line.ends_with(b">\n"));
            let dt = dtline(&addr);
            prop_assert_eq!(dt.iter().filter(|&&b| b == b'\n').count(), 1);
        }

        #[test]
        fn quote2_escapes_every_lf_in_the_local_part(local in proptest::collection::vec(any::<u8>(), 0..64), domain in "[a-z.]{0,10}") {
            let local: Vec<u8> = local.into_iter().filter(|&b| b != b'@').collect();
            let mut addr = local.clone();
            addr.push(b'@');
            addr.extend_from_slice(domain.as_bytes());
            let quoted = quote2(&addr);
            let cut = quoted.len() - domain.len() - 1;
            let (q_local, q_domain) = quoted.split_at(cut);
            prop_assert_eq!(q_domain, &addr[local.len()..]);
            // Every raw LF in the quoted local part sits behind a backslash.
            for (i, &b) in q_local.iter().enumerate() {
                if b == b'\n' {
                    prop_assert!(i > 0 && q_local[i - 1] == b'\\');
                }
            }
            prop_assert_eq!(unquote_local(q_local), local);
        }

        #[test]
        fn plain_addresses_pass_through(local in "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\\.[A-Za-z0-9_-]{1,5}){0,3}", domain in "[a-z0-9.-]{0,20}") {
            prop_assert!(!needs_quoting(local.as_bytes()));
            let addr = format!("{local}@{domain}");
            prop_assert_eq!(quote2(addr.as_bytes()), addr.as_bytes().to_vec());
            prop_assert_eq!(quote2(local.as_bytes()), local.as_bytes().to_vec());
        }

        #[test]
        fn quoting_is_needed_exactly_when_output_differs(addr in proptest::collection::vec(any::<u8>(), 1..40)) {
            let local = match addr.iter().rposition(|&b| b == b'@') {
                Some(at) => &addr[..at],
                None => &addr[..],
            };
            prop_assert_eq!(quote2(&addr) != addr, needs_quoting(local));
        }
    }
}
