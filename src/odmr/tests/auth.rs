//! AUTH (RFC 4954): PLAIN in both forms, LOGIN, CRAM-MD5 failures, the TLS policy,
//! cancelling, the failure limit, and keeping secrets out of the log.

use super::{Driver, SECRET, USER, b64, codes, config, cram_response, greeted};
use crate::odmr::{Connection, Credential, Mechanism, OdmrConfig};

fn plaintext() -> OdmrConfig {
    OdmrConfig {
        plaintext_auth: true,
        ..config()
    }
}

fn plain_blob(login: &str, password: &str) -> String {
    b64(format!("\0{login}\0{password}").as_bytes())
}

#[test]
fn plain_with_initial_response() {
    let mut d = greeted(plaintext());
    let line = format!("AUTH PLAIN {}\r\n", plain_blob(USER, SECRET));
    assert_eq!(
        d.send(line.as_bytes()),
        "235 2.7.0 Authentication successful\r\n"
    );
    let (mechanism, login, credential) = &d.auths[0];
    assert_eq!(*mechanism, Mechanism::Plain);
    assert_eq!(login, b"tim");
    assert!(matches!(credential, Credential::Plain(s) if s.expose() == SECRET.as_bytes()));
}

#[test]
fn plain_with_continuation() {
    let mut d = greeted(plaintext());
    assert_eq!(d.send(b"auth plain\r\n"), "334 \r\n");
    let line = format!("{}\r\n", plain_blob(USER, SECRET));
    assert_eq!(codes(&d.send(line.as_bytes())), ["235 2.7.0"]);
    assert_eq!(codes(&d.send(b"AUTH PLAIN\r\n")), ["503 5.5.1"]);
}

#[test]
fn login_in_two_steps_and_with_initial_user() {
    let mut d = greeted(plaintext());
    assert_eq!(d.send(b"AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(
        d.send(format!("{}\r\n", b64(b"tim")).as_bytes()),
        "334 UGFzc3dvcmQ6\r\n"
    );
    assert_eq!(
        codes(&d.send(format!("{}\r\n", b64(SECRET.as_bytes())).as_bytes())),
        ["235 2.7.0"]
    );
    assert_eq!(d.auths[0].0, Mechanism::Login);

    let mut d = greeted(plaintext());
    let line = format!("AUTH LOGIN {}\r\n", b64(b"tim"));
    assert_eq!(d.send(line.as_bytes()), "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(
        codes(&d.send(format!("{}\r\n", b64(b"wrong")).as_bytes())),
        ["535 5.7.8"]
    );
}

#[test]
fn wrong_password_and_unknown_user_get_535() {
    let mut d = greeted(config());
    d.send(b"AUTH CRAM-MD5\r\n");
    assert_eq!(
        d.send(&cram_response(USER, "not the secret")),
        "535 5.7.8 Authentication credentials invalid\r\n"
    );
    assert!(!d.session.is_authenticated());
    d.send(b"AUTH CRAM-MD5\r\n");
    assert_eq!(codes(&d.send(&cram_response("joe", SECRET))), ["535 5.7.8"]);
    assert_eq!(codes(&d.send(b"ATRN\r\n")), ["530 5.7.0"]);
    assert_eq!(d.atrns.len(), 0);
}

#[test]
fn engine_trouble_is_454_and_not_counted() {
    let mut d = greeted(plaintext());
    for _ in 0..4 {
        let line = format!("AUTH PLAIN {}\r\n", plain_blob("temp", "x"));
        assert_eq!(codes(&d.send(line.as_bytes())), ["454 4.7.0"]);
    }
    assert!(!d.closed);
}

#[test]
fn plaintext_mechanisms_need_tls_unless_allowed() {
    let mut d = greeted(config());
    let line = format!("AUTH PLAIN {}\r\n", plain_blob(USER, SECRET));
    assert_eq!(
        d.send(line.as_bytes()),
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    );
    assert_eq!(codes(&d.send(b"AUTH LOGIN\r\n")), ["538 5.7.11"]);
    assert!(d.auths.is_empty(), "the password never reached the engine");

    // Implicit TLS: offered and accepted.
    let mut d = Driver::with_connection(
        config(),
        Connection {
            tls_active: true,
            challenge: super::CHALLENGE.into(),
        },
    );
    let ehlo = d.send(b"EHLO site.test\r\n");
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN CRAM-MD5\r\n"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"));
    assert_eq!(codes(&d.send(line.as_bytes())), ["235 2.7.0"]);
}

#[test]
fn cancel_bad_base64_and_malformed_responses() {
    let mut d = greeted(OdmrConfig {
        max_auth_failures: 10,
        ..plaintext()
    });
    d.send(b"AUTH CRAM-MD5\r\n");
    assert_eq!(d.send(b"*\r\n"), "501 5.7.0 Authentication cancelled\r\n");
    d.send(b"AUTH LOGIN\r\n");
    assert_eq!(codes(&d.send(b"*\r\n")), ["501 5.7.0"]);
    d.send(b"AUTH PLAIN\r\n");
    assert_eq!(codes(&d.send(b"not base64!\r\n")), ["501 5.5.2"]);
    d.send(b"AUTH CRAM-MD5\r\n");
    assert_eq!(
        codes(&d.send(format!("{}\r\n", b64(b"tim")).as_bytes())),
        ["501 5.5.2"]
    );
    assert_eq!(codes(&d.send(b"AUTH PLAIN =\r\n")), ["501 5.5.2"]);
    let blob = b64(b"admin\0tim\0tanstaaftanstaaf");
    assert_eq!(
        codes(&d.send(format!("AUTH PLAIN {blob}\r\n").as_bytes())),
        ["535 5.7.8"]
    );
    assert!(d.auths.is_empty());
    // After all that, the session still reads commands.
    assert_eq!(codes(&d.send(b"NOOP\r\n")), ["250 2.0.0"]);
}

#[test]
fn command_errors_around_auth() {
    let mut d = greeted(config());
    assert_eq!(codes(&d.send(b"AUTH GSSAPI\r\n")), ["504 5.5.4"]);
    assert_eq!(codes(&d.send(b"AUTH\r\n")), ["501 5.5.4"]);
    assert_eq!(codes(&d.send(b"AUTH CRAM-MD5 =\r\n")), ["501 5.5.4"]);
    let mut d = super::authenticated();
    assert_eq!(codes(&d.send(b"AUTH CRAM-MD5\r\n")), ["503 5.5.1"]);
}

#[test]
fn three_failed_exchanges_close_the_connection() {
    let mut d = greeted(config());
    let mut out = String::new();
    for _ in 0..3 {
        out.push_str(&d.send(b"AUTH CRAM-MD5\r\n"));
        out.push_str(&d.send(&cram_response(USER, "guess")));
    }
    assert_eq!(
        codes(&out),
        [
            "334",
            "535 5.7.8",
            "334",
            "535 5.7.8",
            "334",
            "535 5.7.8",
            "421 4.7.0"
        ]
    );
    assert!(d.closed);
    assert_eq!(d.auths.len(), 3);
}

#[test]
fn cancelling_counts_towards_the_limit() {
    let mut d = greeted(config());
    let out =
        d.send_bytewise(b"AUTH CRAM-MD5\r\n*\r\nAUTH CRAM-MD5\r\n*\r\nAUTH CRAM-MD5\r\n*\r\n");
    assert_eq!(codes(&out).last().map(String::as_str), Some("421 4.7.0"));
    assert!(d.closed);
}

#[test]
fn over_long_response_ends_the_exchange() {
    let mut d = greeted(plaintext());
    d.send(b"AUTH PLAIN\r\n");
    let mut long = vec![b'A'; 600];
    long.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(codes(&d.send(&long)), ["500 5.5.6", "250 2.0.0"]);
}

#[test]
fn secrets_stay_out_of_the_log() {
    let mut d = greeted(plaintext());
    let blob = plain_blob(USER, "hunter2");
    d.send(format!("AUTH PLAIN {blob}\r\n").as_bytes());
    d.send(format!("AUTH PLAIN {blob} extra\r\n").as_bytes());
    d.send(b"AUTH LOGIN\r\n");
    d.send(format!("{}\r\n", b64(b"tim")).as_bytes());
    d.send(format!("{}\r\n", b64(b"hunter2")).as_bytes());
    let log = format!("{:?} {:?}", d.refused, d.auths);
    assert!(!log.contains(&blob), "{log}");
    assert!(!log.contains("hunter2"), "{log}");
    assert!(!log.contains(&b64(b"hunter2")), "{log}");
    assert_eq!(d.refused[0].0, "AUTH PLAIN");
    assert_eq!(d.refused[1].0, "AUTH PLAIN ***");
    // No processed line is held on to.
    assert_eq!(d.session.buffered(), 0);
}
