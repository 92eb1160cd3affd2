//! `turnmail resolve ADDRESS`: where mail for an address would go and why, as SMTP
//! would see it. The address goes through what the SMTP listener does before it asks
//! the engine (RCPT's path grammar, source routes dropped, a bare `Postmaster`
//! qualified), so `resolve` and a real `RCPT TO` never disagree; with `--local` it is
//! resolved as `turnmail deliver` does (no rcpthosts check, no SMTP grammar).
//!
//! The JSON form (`--json`) is one object with stable field names, documented in the
//! README: `address`, `recipient`, `outcome`, `reason`, `smtp_reply`, `relay_to`,
//! `local`.

use serde::Serialize;

use crate::engine::{LocalTarget, Resolution, ResolveError};
use crate::qmail::dotqmail::Instruction;
use crate::smtp::address::{PathError, forward_mailbox, qualify_postmaster};
use crate::smtp::{Reply, texts};

/// Where mail for one address goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// As typed.
    pub address: String,
    /// What the engine was asked about (source route dropped, postmaster qualified);
    /// None when the address never reaches it.
    pub recipient: Option<String>,
    /// `local`, `relay`, `trash`, `not_ours`, `unknown`, `over_quota`, `bad_address` or
    /// `temporary`.
    pub outcome: &'static str,
    /// Why, for everything but `local`.
    pub reason: Option<String>,
    /// What `RCPT TO` is answered (None with `--local`).
    pub smtp_reply: Option<String>,
    /// For `relay`: the address the mail is passed on to.
    pub relay_to: Option<String>,
    /// For `local` and `over_quota`: the delivery.
    pub local: Option<Local>,
    /// `over_quota` refuses for good (`[quota] over_quota = "permanent"`).
    #[serde(skip)]
    pub permanent: bool,
}

/// A local delivery, as qmail-local would be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Local {
    /// The Delivered-To address (after virtualdomains).
    pub delivered_to: String,
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub dash: String,
    pub ext: String,
    /// The `.qmail` file chosen; None means the default delivery.
    pub dotqmail: Option<String>,
    /// `$DEFAULT` when a `-default` file was chosen.
    pub default: Option<String>,
    pub instructions: Vec<Step>,
}

/// One instruction of the `.qmail` file (or of the default delivery).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// 1-based line in the `.qmail` file.
    pub line: usize,
    /// `maildir`, `mbox`, `program` or `forward`.
    pub kind: &'static str,
    /// The path (relative ones from the home), the command or the address.
    pub target: String,
}

impl Explanation {
    /// The command's exit status: 0 deliverable, 100 refused, 111 temporary.
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            "local" | "relay" | "trash" => 0,
            "temporary" => 111,
            "over_quota" if !self.permanent => 111,
            _ => 100,
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn reply(r: Reply) -> String {
    text(&r.to_bytes()).trim_end().to_string()
}

/// What answers for the engine (a trait, so the explanation is tested without a root).
pub trait Resolver {
    fn resolve(&self, recipient: &[u8], check_rcpthosts: bool) -> Result<Resolution, ResolveError>;
}

impl Resolver for crate::engine::Engine {
    fn resolve(&self, recipient: &[u8], check_rcpthosts: bool) -> Result<Resolution, ResolveError> {
        crate::engine::Engine::resolve(self, recipient, check_rcpthosts)
    }
}

/// Explain `address`. `postmaster_domain` is whose postmaster a bare `Postmaster` is
/// (`daemon::postmaster_domain`); `local` resolves as `turnmail deliver` does.
/// `over_quota`: what `[quota] over_quota` makes of a full mailbox (None: no look at
/// `maildirsize` at all, for tests of the rest).
pub fn explain(
    engine: &dyn Resolver,
    address: &str,
    postmaster_domain: &str,
    local: bool,
    over_quota: Option<crate::quota::OverQuota>,
) -> Explanation {
    let mut e = Explanation {
        address: address.to_string(),
        recipient: None,
        outcome: "bad_address",
        reason: None,
        smtp_reply: None,
        relay_to: None,
        local: None,
        permanent: false,
    };
    let recipient = if local {
        address.as_bytes().to_vec()
    } else {
        // People paste `<a@b>` as often as `a@b`; SMTP sees the brackets either way.
        let inner = address
            .strip_prefix('<')
            .and_then(|a| a.strip_suffix('>'))
            .unwrap_or(address);
        match forward_mailbox(inner.as_bytes()) {
            Ok(m) => qualify_postmaster(&m, postmaster_domain).unwrap_or(m),
            Err(err) => {
                e.reason = Some(err.describe().to_string());
                e.smtp_reply = Some(reply(match err {
                    PathError::Syntax => texts::syntax("RCPT TO:<address>"),
                    PathError::BadAddress => texts::bad_address(),
                    PathError::NonAscii => texts::non_ascii_address(),
                }));
                return e;
            }
        }
    };
    e.recipient = Some(text(&recipient));
    let shown = text(&recipient);
    let (outcome, smtp) = match engine.resolve(&recipient, !local) {
        Err(err) => {
            e.reason = Some(err.to_string());
            // The details are for the operator; the client gets the general text.
            (
                "temporary",
                texts::temporary("temporary trouble with this mailbox, try again later"),
            )
        }
        Ok(Resolution::NotOurs) => {
            e.reason =
                Some("the domain is not in control/rcpthosts: refused, never relayed".into());
            ("not_ours", texts::relaying_denied(&shown))
        }
        Ok(Resolution::BadAddress(why)) => {
            e.reason = Some(why.to_string());
            ("bad_address", texts::bad_mailbox(&shown, why))
        }
        Ok(Resolution::Unknown { reason }) => {
            e.reason = Some(reason);
            ("unknown", texts::unknown_mailbox(&shown))
        }
        Ok(Resolution::Trash) => {
            e.reason = Some("empty local part: accepted and discarded".into());
            ("trash", texts::recipient_ok())
        }
        Ok(Resolution::Relay { address }) => {
            e.reason = Some("in control/rcpthosts but neither local nor virtual".into());
            e.relay_to = Some(text(&address));
            ("relay", texts::recipient_ok())
        }
        Ok(Resolution::Local(t)) => {
            e.local = Some(local_of(&t));
            // As the SMTP listener looks at RCPT (and delivery would find it).
            let full = over_quota
                .and_then(|o| crate::quota::enforce::over_at_rcpt(&t).map(|(md, u)| (o, md, u)));
            match full {
                Some((o, md, u)) => {
                    e.permanent = o == crate::quota::OverQuota::Permanent;
                    e.reason = Some(format!(
                        "{} is over its quota: {} bytes and {} messages of {}",
                        md.display(),
                        u.bytes,
                        u.messages,
                        u.limits
                    ));
                    ("over_quota", texts::over_quota(&shown, e.permanent))
                }
                None => ("local", texts::recipient_ok()),
            }
        }
    };
    e.outcome = outcome;
    if !local {
        e.smtp_reply = Some(reply(smtp));
    }
    e
}

fn local_of(t: &LocalTarget) -> Local {
    Local {
        delivered_to: text(&t.address),
        user: text(&t.user),
        uid: t.uid,
        gid: t.gid,
        home: t.home.display().to_string(),
        dash: text(&t.dash),
        ext: text(&t.ext),
        dotqmail: t.dotqmail.as_ref().map(|p| p.display().to_string()),
        default: t.default_part.as_deref().map(text),
        instructions: t
            .instructions
            .instructions
            .iter()
            .map(|(line, i)| {
                let (kind, target) = match i {
                    Instruction::Maildir(p) => ("maildir", p),
                    Instruction::Mbox(p) => ("mbox", p),
                    Instruction::Program(c) => ("program", c),
                    Instruction::Forward(a) => ("forward", a),
                };
                Step {
                    line: *line,
                    kind,
                    target: text(target),
                }
            })
            .collect(),
    }
}

/// The explanation for people.
pub fn render(e: &Explanation) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let a = &e.address;
    let headline = match e.outcome {
        "local" => "local delivery",
        "relay" => "accepted, relayed",
        "trash" => "accepted and discarded",
        "not_ours" => "not ours",
        "unknown" => "unknown mailbox",
        "over_quota" => "mailbox over quota",
        "temporary" => "temporary failure",
        _ => "bad address",
    };
    let _ = write!(out, "{a}: {headline}");
    match &e.reason {
        Some(r) if e.outcome != "trash" && e.outcome != "relay" => {
            let _ = writeln!(out, ": {r}");
        }
        _ => out.push('\n'),
    }
    if let Some(r) = &e.recipient
        && r != a
    {
        let _ = writeln!(out, "  resolved as:  {r}");
    }
    if let Some(to) = &e.relay_to {
        let _ = writeln!(out, "  relayed to:   {to}");
    }
    if let Some(l) = &e.local {
        let _ = writeln!(out, "  delivered-to: {}", l.delivered_to);
        let _ = writeln!(
            out,
            "  user:         {} (uid {}, gid {})",
            l.user, l.uid, l.gid
        );
        let _ = writeln!(out, "  home:         {}", l.home);
        if !l.dash.is_empty() || !l.ext.is_empty() {
            let _ = writeln!(out, "  extension:    {}{}", l.dash, l.ext);
        }
        match &l.dotqmail {
            Some(p) => {
                let _ = writeln!(out, "  .qmail file:  {p}");
            }
            None => {
                let _ = writeln!(out, "  .qmail file:  none (default delivery)");
            }
        }
        if let Some(d) = &l.default {
            let _ = writeln!(out, "  DEFAULT:      {d}");
        }
        for s in &l.instructions {
            let what = match s.kind {
                "maildir" => "Maildir",
                "mbox" => "mbox",
                "program" => "program",
                _ => "forward to",
            };
            let _ = writeln!(out, "  line {}: {what} {}", s.line, s.target);
        }
    }
    if let Some(r) = &e.smtp_reply {
        let _ = writeln!(out, "  SMTP answers: {r}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qmail::dotqmail::DotQmail;
    use std::path::PathBuf;

    /// Records what it was asked; answers from a fixed table.
    struct Fake;

    impl Resolver for Fake {
        fn resolve(&self, r: &[u8], rcpthosts: bool) -> Result<Resolution, ResolveError> {
            Ok(match (r, rcpthosts) {
                (b"joe@example.com", _) => Resolution::Local(Box::new(LocalTarget {
                    recipient: r.to_vec(),
                    address: b"example.com-joe@example.com".to_vec(),
                    local: b"example.com-joe".to_vec(),
                    domain: b"example.com".to_vec(),
                    user: b"turnmail".to_vec(),
                    uid: 100,
                    gid: 100,
                    home: PathBuf::from("/r/domains/example.com"),
                    dash: b"-".to_vec(),
                    ext: b"joe".to_vec(),
                    dotqmail: Some(PathBuf::from("/r/domains/example.com/.qmail-joe")),
                    default_part: None,
                    instructions: DotQmail {
                        instructions: vec![
                            (1, Instruction::Maildir(b"./joe/Maildir/".to_vec())),
                            (2, Instruction::Forward(b"ann@example.net".to_vec())),
                        ],
                        ..Default::default()
                    },
                })),
                (b"postmaster@example.com", _) => Resolution::Trash,
                (_, true) => Resolution::NotOurs,
                (_, false) => Resolution::Relay {
                    address: r.to_vec(),
                },
            })
        }
    }

    #[test]
    fn paths_and_addresses_are_text() {
        let e = explain(&Fake, "joe@example.com", "example.com", false, None);
        assert_eq!(e.exit_code(), 0);
        let t = render(&e);
        assert!(t.contains("line 1: Maildir ./joe/Maildir/"), "{t}");
        assert!(t.contains("line 2: forward to ann@example.net"), "{t}");
        assert!(t.contains("SMTP answers: 250 2.1.5 Ok"), "{t}");
        assert!(!t.contains('['), "{t}");
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["outcome"], "local");
        assert_eq!(j["local"]["instructions"][0]["kind"], "maildir");
        assert_eq!(j["local"]["instructions"][0]["target"], "./joe/Maildir/");
    }

    #[test]
    fn smtp_path_handling_comes_first() {
        let e = explain(
            &Fake,
            "@ext.test:joe@example.com",
            "example.com",
            false,
            None,
        );
        assert_eq!(e.outcome, "local");
        assert_eq!(e.recipient.as_deref(), Some("joe@example.com"));
        let e = explain(&Fake, "<joe@example.com>", "example.com", false, None);
        assert_eq!(e.outcome, "local");
        let e = explain(&Fake, "Postmaster", "example.com", false, None);
        assert_eq!(e.recipient.as_deref(), Some("postmaster@example.com"));
        assert_eq!(e.exit_code(), 0);
        let e = explain(&Fake, "joe", "example.com", false, None);
        assert_eq!((e.outcome, e.exit_code()), ("bad_address", 100));
        assert_eq!(
            e.smtp_reply.as_deref(),
            Some("501 5.1.3 Bad address syntax")
        );
        let e = explain(&Fake, "x@elsewhere.example", "example.com", false, None);
        assert_eq!(e.outcome, "not_ours");
        assert!(e.smtp_reply.unwrap().starts_with("553 5.7.1"));
        // --local: as `turnmail deliver`, no rcpthosts, no SMTP reply.
        let e = explain(&Fake, "x@elsewhere.example", "example.com", true, None);
        assert_eq!((e.outcome, e.smtp_reply), ("relay", None));
    }
}
