//! The AUTHORIZATION state: every way in, every way of being refused, and CAPA.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{Driver, GOOD_DIGEST, TIMESTAMP, config, connection, crlf_size, mailbox};
use crate::pop3::{Action, Connection, Credential, MaildropError, Pop3Config, Secret, Session};

fn plain(raw: &[u8]) -> String {
    STANDARD.encode(raw)
}

fn logged_in_line() -> String {
    let octets: u64 = mailbox().iter().map(|m| crlf_size(&m.data)).sum();
    format!("+OK Logged in, 3 messages ({octets} octets)\r\n")
}

const CAPA_FULL: &str = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\n\
RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nEXPIRE NEVER\r\nIMPLEMENTATION turnmail\r\n.\r\n";

#[test]
fn greeting_carries_the_apop_timestamp() {
    let d = Driver::new(config());
    assert_eq!(
        d.transcript,
        format!("+OK pop.test POP3 ready {TIMESTAMP}\r\n").as_bytes()
    );
    let no_apop = Connection {
        apop_timestamp: None,
        ..connection()
    };
    let d = Driver::with(config(), no_apop);
    assert_eq!(d.transcript, b"+OK pop.test POP3 ready\r\n");
}

#[test]
fn user_pass_login() {
    let mut d = Driver::new(config());
    assert_eq!(d.send(b"USER alice\r\n"), "+OK Send PASS\r\n");
    assert_eq!(d.send(b"PASS secret\r\n"), logged_in_line());
    assert_eq!(
        logged_in_line(),
        "+OK Logged in, 3 messages (101 octets)\r\n"
    );
    assert_eq!(d.auths.len(), 1);
    assert_eq!(d.auths[0].0, b"alice");
    assert_eq!(
        d.auths[0].1,
        Credential::Pass(Secret::new(b"secret".to_vec()))
    );
    assert!(d.session.is_authenticated());
}

#[test]
fn pass_failures_and_retry() {
    let mut d = Driver::new(config());
    assert_eq!(d.send(b"PASS secret\r\n"), "-ERR USER first\r\n");
    d.send(b"USER alice\r\n");
    assert_eq!(
        d.send(b"PASS wrong\r\n"),
        "-ERR [AUTH] Authentication failed.\r\n"
    );
    // The name is kept for another PASS.
    assert_eq!(d.send(b"PASS secret\r\n"), logged_in_line());
}

#[test]
fn three_failures_close_the_connection() {
    let mut d = Driver::new(config());
    d.send(b"USER bob\r\nPASS a\r\nPASS b\r\n");
    assert!(!d.closed);
    assert_eq!(
        d.send(b"PASS c\r\nUSER alice\r\n"),
        "-ERR [AUTH] Authentication failed.\r\n"
    );
    assert!(d.closed && d.session.is_closed());
    assert_eq!(d.auths.len(), 3);
}

#[test]
fn temporary_engine_trouble_is_not_a_failure() {
    let mut d = Driver::new(config());
    for _ in 0..5 {
        assert_eq!(
            d.send(b"USER temp\r\nPASS x\r\n"),
            "+OK Send PASS\r\n-ERR [SYS/TEMP] engine busy\r\n"
        );
    }
    assert!(!d.closed);
}

#[test]
fn apop_login() {
    let mut d = Driver::new(config());
    let line = format!("APOP mrose {GOOD_DIGEST}\r\n");
    assert_eq!(d.send(line.as_bytes()), logged_in_line());
    assert_eq!(
        d.auths[0].1,
        Credential::Apop {
            timestamp: TIMESTAMP.into(),
            digest: GOOD_DIGEST.into()
        }
    );
}

#[test]
fn apop_refusals() {
    let mut d = Driver::new(config());
    let bad = "APOP mrose 00000000000000000000000000000000\r\n";
    assert_eq!(
        d.send(bad.as_bytes()),
        "-ERR [AUTH] Authentication failed.\r\n"
    );
    assert_eq!(
        d.send(b"APOP mrose\r\n"),
        "-ERR Syntax: APOP name digest\r\n"
    );
    let no_apop = Connection {
        apop_timestamp: None,
        ..connection()
    };
    let mut d = Driver::with(config(), no_apop);
    let line = format!("APOP mrose {GOOD_DIGEST}\r\n");
    assert_eq!(d.send(line.as_bytes()), "-ERR APOP not available\r\n");
    assert!(d.auths.is_empty());
}

#[test]
fn auth_plain_with_initial_response() {
    let mut d = Driver::new(config());
    let line = format!("AUTH PLAIN {}\r\n", plain(b"\0alice\0secret"));
    assert_eq!(d.send(line.as_bytes()), logged_in_line());
    assert_eq!(d.auths[0].0, b"alice");
    assert_eq!(
        d.auths[0].1,
        Credential::Plain(Secret::new(b"secret".to_vec()))
    );
}

#[test]
fn auth_plain_with_continuation() {
    let mut d = Driver::new(config());
    assert_eq!(d.send(b"auth plain\r\n"), "+ \r\n");
    let line = format!("{}\r\n", plain(b"alice\0alice\0secret"));
    assert_eq!(d.send(line.as_bytes()), logged_in_line());
}

#[test]
fn auth_plain_cancel_and_errors() {
    let mut d = Driver::new(config());
    d.send(b"AUTH PLAIN\r\n");
    assert_eq!(d.send(b"*\r\n"), "-ERR Authentication cancelled\r\n");
    assert_eq!(d.send(b"NOOP\r\n"), "+OK\r\n");
    d.send(b"AUTH PLAIN\r\n");
    assert_eq!(d.send(b"%%%\r\n"), "-ERR [AUTH] Invalid base64 data\r\n");
    let line = format!("AUTH PLAIN {}\r\n", plain(b"root\0alice\0secret"));
    assert_eq!(
        d.send(line.as_bytes()),
        "-ERR [AUTH] Authorization identity must be empty or equal the login\r\n"
    );
    assert!(d.auths.is_empty());
    // Malformed responses count as failed logins: this is the third.
    assert_eq!(
        d.send(b"AUTH PLAIN =\r\n"),
        "-ERR [AUTH] Malformed PLAIN response\r\n"
    );
    assert!(d.closed);
    assert!(d.refused.iter().all(|(c, _)| !c.contains("cm9vd")));
}

#[test]
fn auth_mechanism_list_and_unknown_mechanisms() {
    let mut d = Driver::new(config());
    assert_eq!(d.send(b"AUTH\r\n"), "+OK\r\nPLAIN\r\n.\r\n");
    assert_eq!(
        d.send(b"AUTH CRAM-MD5\r\n"),
        "-ERR Unsupported authentication mechanism\r\n"
    );
    let mut d = Driver::new(Pop3Config {
        plaintext_allowed: false,
        ..config()
    });
    assert_eq!(d.send(b"AUTH\r\n"), "+OK\r\n.\r\n");
}

#[test]
fn capa_before_login() {
    let mut d = Driver::new(config());
    assert_eq!(d.send(b"CAPA\r\n"), CAPA_FULL);
    // Implicit TLS: no STLS.
    let tls = Connection {
        tls_active: true,
        ..connection()
    };
    let mut d = Driver::with(config(), tls);
    assert_eq!(d.send(b"CAPA\r\n"), CAPA_FULL.replace("STLS\r\n", ""));
    // No certificate: no STLS either.
    let mut d = Driver::new(Pop3Config {
        stls_available: false,
        ..config()
    });
    assert_eq!(d.send(b"CAPA\r\n"), CAPA_FULL.replace("STLS\r\n", ""));
}

#[test]
fn capa_after_login_has_no_login_capabilities() {
    let mut d = Driver::logged_in();
    assert_eq!(
        d.send(b"CAPA\r\n"),
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n\
         PIPELINING\r\nEXPIRE NEVER\r\nIMPLEMENTATION turnmail\r\n.\r\n"
    );
}

#[test]
fn plaintext_refused_without_tls_until_stls() {
    let mut d = Driver::new(Pop3Config {
        plaintext_allowed: false,
        ..config()
    });
    let refusal =
        "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n";
    assert_eq!(
        d.send(b"CAPA\r\n"),
        CAPA_FULL.replace("USER\r\nSASL PLAIN\r\n", "")
    );
    assert_eq!(d.send(b"USER alice\r\n"), refusal);
    assert_eq!(d.send(b"PASS secret\r\n"), refusal);
    let line = format!("AUTH PLAIN {}\r\n", plain(b"\0alice\0secret"));
    assert_eq!(d.send(line.as_bytes()), refusal);
    assert_eq!(d.refused[1].0, "PASS ***");
    assert_eq!(d.refused[2].0, "AUTH PLAIN ***");
    assert!(d.auths.is_empty());
    assert_eq!(d.send(b"STLS\r\n"), "+OK Begin TLS negotiation\r\n");
    assert_eq!(d.starttls, 1);
    assert!(d.session.is_tls());
    assert_eq!(d.send(b"CAPA\r\n"), CAPA_FULL.replace("STLS\r\n", ""));
    assert_eq!(
        d.send(b"USER alice\r\nPASS secret\r\n"),
        format!("+OK Send PASS\r\n{}", logged_in_line())
    );
}

#[test]
fn plaintext_allowed_on_loopback_and_apop_always() {
    let cfg = Pop3Config {
        plaintext_allowed: false,
        ..config()
    };
    let loopback = Connection {
        loopback: true,
        ..connection()
    };
    let mut d = Driver::with(cfg.clone(), loopback);
    assert_eq!(d.send(b"USER alice\r\n"), "+OK Send PASS\r\n");
    let mut d = Driver::new(cfg);
    let line = format!("APOP mrose {GOOD_DIGEST}\r\n");
    assert_eq!(d.send(line.as_bytes()), logged_in_line());
}

#[test]
fn stls_forgets_the_user_and_refuses_when_not_possible() {
    let mut d = Driver::new(config());
    d.send(b"USER alice\r\nSTLS\r\n");
    assert_eq!(d.send(b"PASS secret\r\n"), "-ERR USER first\r\n");
    assert_eq!(d.send(b"STLS\r\n"), "-ERR TLS already active\r\n");
    let mut d = Driver::new(Pop3Config {
        stls_available: false,
        ..config()
    });
    assert_eq!(d.send(b"STLS\r\n"), "-ERR STLS not available\r\n");
    assert_eq!(d.starttls, 0);
}

#[test]
fn commands_in_the_wrong_state() {
    let mut d = Driver::new(config());
    for cmd in [
        "STAT", "LIST", "UIDL 1", "RETR 1", "TOP 1 0", "DELE 1", "RSET", "LAST",
    ] {
        let line = format!("{cmd}\r\n");
        assert_eq!(
            d.send(line.as_bytes()),
            "-ERR Authenticate first\r\n",
            "{cmd}"
        );
    }
    assert_eq!(d.send(b"NOOP\r\n"), "+OK\r\n");
    let mut d = Driver::logged_in();
    for cmd in ["USER alice", "PASS x", "AUTH PLAIN", "STLS"] {
        let line = format!("{cmd}\r\n");
        assert_eq!(
            d.send(line.as_bytes()),
            "-ERR Already authenticated\r\n",
            "{cmd}"
        );
    }
    assert_eq!(d.send(b"XTND\r\n"), "-ERR Unknown command\r\n");
}

#[test]
fn maildrop_errors_stay_in_authorization() {
    let cases = [
        (
            MaildropError::InUse,
            "-ERR [IN-USE] Mailbox is locked by another session\r\n",
        ),
        (
            MaildropError::Temporary("unable to scan Maildir".into()),
            "-ERR [SYS/TEMP] unable to scan Maildir\r\n",
        ),
        (
            MaildropError::Permanent("no Maildir".into()),
            "-ERR [SYS/PERM] no Maildir\r\n",
        ),
    ];
    for (error, reply) in cases {
        let mut d = Driver::new(config());
        d.mailbox = Err(error);
        assert_eq!(
            d.send(b"USER alice\r\nPASS secret\r\n"),
            format!("+OK Send PASS\r\n{reply}")
        );
        assert!(!d.session.is_authenticated());
        assert_eq!(d.send(b"STAT\r\n"), "-ERR Authenticate first\r\n");
        assert_eq!(d.send(b"PASS secret\r\n"), "-ERR USER first\r\n");
    }
}

#[test]
fn quit_before_login_changes_nothing() {
    let mut d = Driver::new(config());
    assert_eq!(d.send(b"QUIT\r\nNOOP\r\n"), "+OK Logging out\r\n");
    assert!(d.closed);
    assert!(d.updates.is_empty());
}

#[test]
fn passwords_never_show_in_debug_output() {
    let mut s = Session::new(std::sync::Arc::new(config()), connection());
    s.receive(b"USER alice\r\nPASS hunter2\r\n");
    let action = s.next_action();
    assert!(matches!(action, Some(Action::Authenticate { .. })));
    let shown = format!("{action:?} {s:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}
