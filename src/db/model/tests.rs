use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::qmail::control::{RcptHosts, VirtualDomains};

fn texts(
    assign: &str,
    poppasswd: &str,
    secrets: &str,
    rcpthosts: &str,
    virtualdomains: &str,
    quota: &str,
) -> AccountTexts {
    AccountTexts {
        assign: assign.into(),
        poppasswd: poppasswd.into(),
        secrets: secrets.into(),
        rcpthosts: rcpthosts.into(),
        virtualdomains: virtualdomains.into(),
        quota: quota.into(),
        aliases: Vec::new(),
        sites: Vec::new(),
    }
}

#[test]
fn a_demo_root_reads_into_records_and_back() {
    let t = texts(
        "+example.com-:turnmail:110:110:/var/mail/example.com:-::\n=joe:turnmail:110:110:/h/joe:::\n.\n",
        "# accounts\njoe@example.com:$6$salt$hash:turnmail:/var/mail/example.com/joe\nJOE@example.com:other:turnmail:/x\n",
        "joe@example.com:apopsecret\n",
        "Example.COM\n# comment\nexample.net   \n",
        "example.com:example.com\nexample.net:example.com\nEXAMPLE.net:example.org\n",
        "@example.com:1000S\njoe@example.com:NOQUOTA\n",
    );
    let r = Records::from_texts(&t).unwrap();
    assert_eq!(r.routes.len(), 2);
    assert!(r.routes[0].wildcard && !r.routes[1].wildcard);
    assert_eq!(r.mailboxes.len(), 1, "the first line of a login wins");
    assert_eq!(r.mailboxes["joe@example.com"].hash, "$6$salt$hash");
    assert_eq!(r.secrets["joe@example.com"], "apopsecret");
    assert_eq!(
        r.rcpthosts.iter().collect::<Vec<_>>(),
        ["example.com", "example.net"]
    );
    assert_eq!(
        r.domains["example.net"], "example.org",
        "the last line wins"
    );
    assert_eq!(r.domain_quotas["example.com"].bytes, Some(1000));
    assert!(r.mailbox_quotas["joe@example.com"].is_none());
    let back = r.to_texts();
    assert_eq!(Records::from_texts(&back).unwrap(), r);
    assert_eq!(back.rcpthosts, b"example.com\nexample.net\n");
}

#[test]
fn empty_texts_are_no_records_and_write_a_valid_assign() {
    let r = Records::from_texts(&AccountTexts::default()).unwrap();
    assert!(r.is_empty());
    let t = r.to_texts();
    assert_eq!(t.assign, b".\n");
    assert!(t.poppasswd.is_empty() && t.quota.is_empty());
}

#[test]
fn what_the_database_cannot_hold_is_refused_with_its_line() {
    let mut t = AccountTexts {
        poppasswd: b"a@x:h:u:/h\nb@x:h\xff:u:/h\n".to_vec(),
        ..AccountTexts::default()
    };
    let e = Records::from_texts(&t).unwrap_err().to_string();
    assert!(
        e.contains("users/poppasswd line 2") && e.contains("UTF-8"),
        "{e}"
    );
    t.poppasswd = b"a@x:h:u:relative\n".to_vec();
    let e = Records::from_texts(&t).unwrap_err().to_string();
    assert!(
        e.contains("users/poppasswd") && e.contains("absolute"),
        "{e}"
    );
    t.poppasswd.clear();
    t.secrets = b"a@x:{CRAM-MD5}12\n".to_vec();
    assert!(Records::from_texts(&t).is_err());
    t.secrets.clear();
    t.quota = b"@x:9223372036854775808S\n".to_vec();
    let e = Records::from_texts(&t).unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
    t.quota.clear();
    t.assign = b"=a:u:1:1:/h:::\n".to_vec();
    assert!(
        Records::from_texts(&t)
            .unwrap_err()
            .to_string()
            .contains("users/assign")
    );
}

#[test]
fn rows_that_would_not_read_back_are_refused() {
    let ok = Mailbox {
        login: "a@x".into(),
        hash: "h".into(),
        owner: "u".into(),
        home: "/h".into(),
    };
    let mut r = Records::default();
    r.mailboxes.insert("a@x".into(), ok.clone());
    r.check().unwrap();
    let bad = [
        Mailbox {
            login: "#a@x".into(),
            ..ok.clone()
        },
        Mailbox {
            home: "/h:x".into(),
            ..ok.clone()
        },
        Mailbox {
            home: "/h ".into(),
            ..ok.clone()
        },
        Mailbox {
            owner: "".into(),
            ..ok.clone()
        },
    ];
    for m in bad {
        let mut r = Records::default();
        r.mailboxes.insert(lower(&m.login), m.clone());
        assert!(r.check().is_err(), "{m:?}");
    }
    let mut r = Records::default();
    r.mailboxes.insert("b@x".into(), ok);
    assert!(r.check().unwrap_err().to_string().contains("another login"));
    let mut r = Records::default();
    r.rcpthosts.insert("Example.com".into());
    assert!(r.check().is_err());
    let mut r = Records::default();
    r.mailbox_quotas.insert(
        "a@x".into(),
        Limits {
            bytes: Some(0),
            messages: None,
        },
    );
    assert!(r.check().is_err());
}

// ---- property tests -------------------------------------------------------------

const FIELD: &str = "[^:\\n\\x00]{0,8}";

fn route() -> impl Strategy<Value = Route> {
    (
        any::<bool>(),
        FIELD,
        "[a-z]{1,8}",
        "[0-9]{1,5}",
        "[0-9]{1,5}",
        "/[a-zA-Z0-9/._-]{0,12}",
        "-?",
        FIELD,
    )
        .prop_map(|(wildcard, local, user, uid, gid, home, dash, ext)| Route {
            wildcard,
            local,
            user,
            uid,
            gid,
            home,
            dash,
            ext,
        })
}

fn mailbox() -> impl Strategy<Value = Mailbox> {
    (
        "[a-zA-Z0-9._-][^:\\n\\x00]{0,8}",
        "[^:\\n\\x00]{0,16}",
        "[a-z][a-z0-9]{0,7}",
        "/[a-zA-Z0-9/._-]{0,12}[a-z]",
    )
        .prop_map(|(login, hash, owner, home)| Mailbox {
            login,
            hash,
            owner,
            home,
        })
}

fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 :!]{0,10}[a-zA-Z0-9!]",
        "[0-9a-f]{64}".prop_map(|h| format!("{{CRAM-MD5}}{h}")),
    ]
}

fn limit() -> impl Strategy<Value = Limits> {
    let v = proptest::option::of(1..=i64::MAX as u64);
    (v.clone(), v).prop_map(|(bytes, messages)| Limits { bytes, messages })
}

fn site_row() -> impl Strategy<Value = crate::spool::sitetable::SiteRow> {
    (
        proptest::option::of("[a-z0-9.-]{1,10}[a-z](:[1-9][0-9]{0,3})?"),
        proptest::option::of("/[a-zA-Z0-9/._-]{0,12}"),
        proptest::option::of("[a-z.]{1,8}"),
    )
        .prop_map(
            |(relayhost, dir, domain)| crate::spool::sitetable::SiteRow {
                relayhost,
                dir,
                settings: match domain {
                    Some(d) => serde_json::json!({ "domains": [d], "always_on": true }).to_string(),
                    None => "{}".into(),
                },
            },
        )
}

fn records() -> impl Strategy<Value = Records> {
    (
        proptest::collection::vec(route(), 0..6),
        proptest::collection::vec(mailbox(), 0..6),
        proptest::collection::btree_map("[a-z0-9@._-]{1,10}", secret(), 0..4),
        proptest::collection::btree_set("\\.?[a-z0-9-]{1,8}(\\.[a-z]{2,3})?", 0..4),
        proptest::collection::btree_map("[a-z0-9.@-]{0,10}", "[a-zA-Z0-9.-]{0,10}", 0..4),
        proptest::collection::btree_map("[a-z0-9._-]{1,6}@[a-z0-9.-]{1,6}", limit(), 0..4),
        proptest::collection::btree_map("[a-z0-9.-]{1,8}", limit(), 0..4),
        proptest::collection::btree_map(
            "[a-z0-9._-]{1,6}@[a-z0-9.-]{1,6}",
            proptest::collection::vec(
                prop_oneof!["&[a-z0-9.]{1,6}@[a-z.]{1,6}", "\\./[a-z]{1,6}/Maildir/"],
                1..3,
            ),
            0..4,
        ),
        proptest::collection::btree_map("[a-z0-9][a-z0-9_-]{0,8}", site_row(), 0..4),
    )
        .prop_map(
            |(
                routes,
                mailboxes,
                secrets,
                rcpthosts,
                domains,
                mailbox_quotas,
                domain_quotas,
                aliases,
                sites,
            )| {
                Records {
                    routes,
                    mailboxes: mailboxes
                        .into_iter()
                        .map(|m| (lower(&m.login), m))
                        .collect(),
                    secrets,
                    rcpthosts,
                    domains,
                    mailbox_quotas,
                    domain_quotas,
                    aliases,
                    sites,
                }
            },
        )
}

/// One line of a text with the noise the files carry: comments, blank lines,
/// trailing blanks, extra fields, other case.
fn noisy(lines: Vec<String>, noise: Vec<u8>) -> String {
    let mut out = String::new();
    for (i, l) in lines.into_iter().enumerate() {
        match noise.get(i).copied().unwrap_or(0) % 5 {
            1 => out.push_str("# a comment: here\n"),
            2 => out.push('\n'),
            _ => {}
        }
        out.push_str(&l);
        if noise.get(i).copied().unwrap_or(0) % 7 == 3 {
            out.push_str(" \t");
        }
        out.push('\n');
    }
    out
}

fn case(s: &str, flip: bool) -> String {
    if flip {
        s.to_ascii_uppercase()
    } else {
        s.to_string()
    }
}

/// A poppasswd line's login, hash, owner and home.
type AccountFields = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

/// What each text means to its readers, as comparable values.
#[derive(Debug, PartialEq)]
struct Meaning {
    assign: Vec<(bool, Vec<Vec<u8>>)>,
    poppasswd: BTreeMap<Vec<u8>, AccountFields>,
    secrets: BTreeMap<Vec<u8>, Vec<u8>>,
    rcpthosts: Vec<Vec<u8>>,
    virtualdomains: BTreeMap<Vec<u8>, Vec<u8>>,
    quota: qtable::Table,
}

fn meaning(t: &AccountTexts) -> Meaning {
    let assign = if t.assign.is_empty() {
        Vec::new()
    } else {
        assign::parse(&t.assign).unwrap()
    };
    let mut poppasswd = BTreeMap::new();
    for l in accounts::parse_poppasswd(&t.poppasswd).unwrap() {
        poppasswd
            .entry(l.login.to_ascii_lowercase())
            .or_insert((l.login, l.hash, l.owner, l.home));
    }
    let mut rcpthosts: Vec<Vec<u8>> = RcptHosts::parse(Some(&t.rcpthosts))
        .listed()
        .map(|h| h.to_vec())
        .collect();
    rcpthosts.sort();
    Meaning {
        assign: assign
            .into_iter()
            .map(|e| {
                (
                    e.kind == AssignKind::Wildcard,
                    vec![e.local, e.user, e.uid, e.gid, e.home, e.dash, e.ext],
                )
            })
            .collect(),
        poppasswd,
        secrets: accounts::parse_secrets(&t.secrets)
            .into_iter()
            .map(|(k, v)| (k, v.dovecot_credential()))
            .collect(),
        rcpthosts,
        virtualdomains: VirtualDomains::parse(Some(&t.virtualdomains))
            .entries()
            .map(|v| (v.key.to_ascii_lowercase(), v.prepend.clone()))
            .collect(),
        quota: qtable::parse(&t.quota).unwrap(),
    }
}

fn source_texts() -> impl Strategy<Value = AccountTexts> {
    let assign = proptest::collection::vec(
        (
            prop_oneof![Just('='), Just('+'), Just('x')],
            "[a-zA-Z0-9.-]{1,6}",
            "[a-z]{1,5}",
            "[0-9]{1,4}",
            "/[a-z/]{0,8}",
            "[a-z-]{0,3}",
            prop_oneof![Just(""), Just("junk"), Just("\r")],
        )
            .prop_map(|(t, local, user, id, home, ext, tail)| {
                format!("{t}{local}:{user}:{id}:{id}:{home}:-:{ext}:{tail}")
            }),
        0..6,
    );
    let poppasswd = proptest::collection::vec(
        (
            "[a-z0-9]{1,4}@[a-z]{1,3}\\.com",
            any::<bool>(),
            "[a-zA-Z0-9$./]{0,12}",
            "/[a-z/]{0,8}[a-z]",
            prop_oneof![Just(""), Just(":extra:fields")],
        )
            .prop_map(|(login, flip, hash, home, extra)| {
                format!("{}:{hash}:turnmail:{home}{extra}", case(&login, flip))
            }),
        0..8,
    );
    let secrets = proptest::collection::vec(
        ("[a-z0-9]{1,4}@[a-z]{1,3}\\.com", any::<bool>(), secret())
            .prop_map(|(login, flip, s)| format!("{}:{s}", case(&login, flip))),
        0..5,
    );
    let rcpthosts = proptest::collection::vec(
        ("\\.?[a-z0-9-]{1,6}\\.[a-z]{2,3}", any::<bool>()).prop_map(|(h, f)| case(&h, f)),
        0..5,
    );
    let virtualdomains = proptest::collection::vec(
        (
            "[a-z0-9.@-]{0,8}",
            any::<bool>(),
            "[a-zA-Z0-9.-]{0,8}",
            any::<bool>(),
        )
            .prop_map(|(k, f, p, colon)| {
                if colon {
                    format!("{}:{p}", case(&k, f))
                } else {
                    format!("nocolon{p}")
                }
            }),
        0..6,
    );
    let quota = proptest::collection::vec(
        (
            prop_oneof![
                "[a-z0-9]{1,4}@[a-z]{1,3}\\.com",
                "@[a-z]{1,3}\\.com".prop_map(|s| s.to_string())
            ],
            any::<bool>(),
            prop_oneof![
                Just("NOQUOTA".to_string()),
                (1..100000u64).prop_map(|n| format!("{n}S")),
                (1..100000u64, 1..1000u64).prop_map(|(a, b)| format!("{a}S,{b}C")),
            ],
        )
            .prop_map(|(k, f, v)| format!("{}:{v}", case(&k, f))),
        0..5,
    );
    let noise = proptest::collection::vec(any::<u8>(), 0..8);
    (
        assign,
        poppasswd,
        secrets,
        rcpthosts,
        virtualdomains,
        quota,
        noise,
    )
        .prop_map(|(a, p, s, r, v, q, n)| AccountTexts {
            assign: format!(
                "{}.\n",
                a.iter().map(|l| format!("{l}\n")).collect::<String>()
            )
            .into_bytes(),
            poppasswd: noisy(p, n.clone()).into_bytes(),
            secrets: noisy(s, n.clone()).into_bytes(),
            rcpthosts: noisy(r, n.clone()).into_bytes(),
            virtualdomains: noisy(v, n.clone()).into_bytes(),
            quota: noisy(q, n).into_bytes(),
            aliases: Vec::new(),
            sites: Vec::new(),
        })
}

proptest! {
    #[test]
    fn records_to_texts_to_records_is_the_identity(r in records()) {
        prop_assert!(r.check().is_ok(), "{:?}", r.check());
        let t = r.to_texts();
        prop_assert_eq!(Records::from_texts(&t).unwrap(), r);
    }

    #[test]
    fn texts_to_records_to_texts_means_the_same(t in source_texts()) {
        let r = Records::from_texts(&t).unwrap();
        let back = r.to_texts();
        prop_assert_eq!(meaning(&back), meaning(&t));
        // The canonical form is a fixed point.
        prop_assert_eq!(Records::from_texts(&back).unwrap().to_texts(), back);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_what_is_accepted_reads_back(
        a in proptest::collection::vec(any::<u8>(), 0..200),
        b in proptest::collection::vec(any::<u8>(), 0..200),
        which in 0usize..8,
    ) {
        let mut t = AccountTexts::default();
        let slot = match which {
            0 => &mut t.assign,
            1 => &mut t.poppasswd,
            2 => &mut t.secrets,
            3 => &mut t.rcpthosts,
            4 => &mut t.virtualdomains,
            5 => &mut t.aliases,
            6 => &mut t.sites,
            _ => &mut t.quota,
        };
        *slot = [a, b"\n".to_vec(), b].concat();
        if let Ok(r) = Records::from_texts(&t) {
            prop_assert_eq!(Records::from_texts(&r.to_texts()).unwrap(), r);
        }
    }
}
