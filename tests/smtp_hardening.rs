//! Hardening of the SMTP session over real sockets: chunk framing that never lets data
//! become commands, numbers that never wrap, refused recipients that cost the client
//! time and then its connection, and clients that talk before their turn.

mod common;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::{Client, Daemon};
use common::{DemoRoot, demo_root};

fn joe_new(d: &DemoRoot) -> usize {
    count(&d.root.join("domains/example.com/joe/Maildir/new"))
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.flatten().count())
}

/// Greeted, EHLO said, MAIL and one good recipient accepted.
fn in_transaction(s: &Daemon) -> Client {
    let mut c = s.connect();
    assert!(c.reply().starts_with("220 "));
    assert!(c.cmd("EHLO client.example").starts_with("250-"));
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<joe@example.com>"), "250 2.1.5 Ok");
    c
}

/// Every reply until the server closes the connection.
fn replies_to_the_end(c: &mut Client) -> Vec<String> {
    let mut all = String::new();
    let _ = c.r.read_to_string(&mut all);
    all.lines().map(str::to_string).collect()
}

/// What a smuggler hides in a chunk: a whole transaction for joe.
const HIDDEN: &str = "RSET\r\nMAIL FROM:<x@evil.example>\r\nRCPT TO:<joe@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nfrom inside a chunk\r\n.\r\n";

#[test]
fn bdat_octets_are_data_even_when_the_line_is_refused() {
    let d = demo_root();
    let s = Daemon::start(&d.root);
    for line in ["BDAT {} LASTX", "BDAT {} LAST junk", "BDAT {} first"] {
        let mut c = in_transaction(&s);
        let line = line.replace("{}", &HIDDEN.len().to_string());
        c.send(format!("{line}\r\n{HIDDEN}QUIT\r\n").as_bytes());
        assert_eq!(
            replies_to_the_end(&mut c),
            ["501 5.5.4 Syntax: BDAT size [LAST]", "221 2.0.0 Bye"],
            "{line}"
        );
    }
    // `BDAT 5 LAST junk` is not a message either.
    let mut c = in_transaction(&s);
    c.send(b"BDAT 5 LAST junk\r\nhelloQUIT\r\n");
    assert_eq!(
        replies_to_the_end(&mut c),
        ["501 5.5.4 Syntax: BDAT size [LAST]", "221 2.0.0 Bye"]
    );
    assert_eq!(joe_new(&d), 0, "a message was queued from inside a chunk");
    // A good BDAT still delivers.
    let mut c = in_transaction(&s);
    c.send(b"BDAT 13 LAST\r\nSubject: ok\r\nQUIT\r\n");
    let r = replies_to_the_end(&mut c);
    assert!(r[0].starts_with("250 2.0.0 Ok: queued as"), "{r:?}");
    assert_eq!(joe_new(&d), 1);
}

#[test]
fn numbers_too_large_are_never_read_as_small_ones() {
    let d = demo_root();
    let s = Daemon::start(&d.root);
    let mut c = s.connect();
    assert!(c.reply().starts_with("220 "));
    assert!(c.cmd("EHLO client.example").starts_with("250-"));
    for size in ["99999999999999999999999", "18446744073709551616"] {
        assert_eq!(
            c.cmd(&format!("MAIL FROM:<a@example.org> SIZE={size}")),
            "552 5.3.4 Message size exceeds fixed maximum message size",
            "{size}"
        );
    }
    assert_eq!(c.cmd("MAIL FROM:<a@example.org> SIZE=1000"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<joe@example.com>"), "250 2.1.5 Ok");
    // A size that fits no number: nothing says where its data ends, so nothing after
    // it is read as a command.
    c.send(format!("BDAT 99999999999999999999005 LAST\r\nhello{HIDDEN}").as_bytes());
    assert_eq!(
        replies_to_the_end(&mut c),
        [
            "501 5.5.4 Syntax: BDAT size [LAST]",
            "421 4.5.0 Cannot tell where the BDAT data ends, closing connection"
        ]
    );
    assert_eq!(joe_new(&d), 0);
}

#[test]
fn recipient_harvesting_is_slowed_then_cut_off_and_the_address_penalized() {
    // The shipped defaults: 3 refusals at once, 1 s before each further one, 421 at 20,
    // and the address turned away for 300 s.
    let d = demo_root();
    let s = Daemon::start(&d.root);
    let mut c = s.connect();
    assert!(c.reply().starts_with("220 "));
    assert!(c.cmd("EHLO harvester.example").starts_with("250-"));
    assert_eq!(c.cmd("MAIL FROM:<a@harvester.example>"), "250 2.1.0 Ok");
    let start = Instant::now();
    let mut refused = 0;
    let mut last = String::new();
    for i in 0..5000 {
        last = c.cmd(&format!("RCPT TO:<guess{i}@example.com>"));
        if !last.starts_with("550 5.1.1 ") {
            break;
        }
        refused += 1;
    }
    let took = start.elapsed();
    // The 20th refusal is followed by the 421, and the connection ends.
    assert_eq!(refused, 20, "{last}");
    assert_eq!(
        last,
        "421 4.7.0 Too many refused recipients, closing connection"
    );
    assert!(c.closed());
    // 16 refusals (the 4th to the 19th) waited a second each.
    assert!(took >= Duration::from_secs(16), "took {took:?}");
    // The address is turned away at once now, whatever it says.
    let t = Instant::now();
    let mut again = s.connect();
    let r = again.reply();
    assert!(
        r.starts_with("421 4.7.0 ")
            && r.ends_with("Too many refused recipients from your address, try again later"),
        "{r}"
    );
    assert!(again.closed());
    assert!(t.elapsed() < Duration::from_secs(1));
    let log = s.log_text();
    assert!(log.contains("too many refused recipients"), "{log}");
    assert!(log.contains("refused connection: penalized"), "{log}");
}

#[test]
fn refused_recipient_limits_are_settings_and_delivering_starts_the_count_again() {
    let d = demo_root();
    common::config(
        &d,
        "[smtp]\nrcpt_soft_error_limit = 1\nrcpt_hard_error_limit = 4\nrcpt_error_delay_ms = 300\npenalty_secs = 0\n",
    );
    let s = Daemon::start(&d.root);
    let mut c = in_transaction(&s);
    let start = Instant::now();
    for i in 0..3 {
        assert!(
            c.cmd(&format!("RCPT TO:<guess{i}@example.com>"))
                .starts_with("550 5.1.1 ")
        );
    }
    // Two of the three waited.
    assert!(start.elapsed() >= Duration::from_millis(600));
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    assert!(
        c.cmd("Subject: x\r\n\r\nhi\r\n.")
            .starts_with("250 2.0.0 Ok: queued")
    );
    // After a delivery, three more refusals are allowed before the fourth closes.
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>"), "250 2.1.0 Ok");
    for i in 3..6 {
        assert!(
            c.cmd(&format!("RCPT TO:<guess{i}@example.com>"))
                .starts_with("550 5.1.1 ")
        );
    }
    assert_eq!(
        c.cmd("RCPT TO:<relay@elsewhere.example>"),
        "553 5.7.1 <relay@elsewhere.example>: Relaying denied"
    );
    assert_eq!(
        c.reply(),
        "421 4.7.0 Too many refused recipients, closing connection"
    );
    assert!(c.closed());
    // penalty_secs = 0: no penalty, the next connection is served.
    assert!(s.connect().reply().starts_with("220 "));
    assert_eq!(joe_new(&d), 1);
}

const REFUSE_BOTH: &str = "[smtp]\ngreeting_pause_ms = 400\nearly_talkers = \"refuse\"\nunoffered_pipelining = \"refuse\"\n";

#[test]
fn early_talkers_are_refused_when_set_and_clients_that_wait_are_served() {
    let d = demo_root();
    common::config(&d, REFUSE_BOTH);
    let s = Daemon::start(&d.root);
    // A spam engine fires its whole dialogue as soon as it connects.
    let mut bot = s.connect();
    bot.send(format!("EHLO bot.example\r\nMAIL FROM:<a@bot.example>\r\nRCPT TO:<joe@example.com>\r\nDATA\r\n{HIDDEN}QUIT\r\n").as_bytes());
    assert_eq!(
        replies_to_the_end(&mut bot),
        [
            "421 4.5.0 mail.example.com Protocol error: input before the greeting, closing connection"
        ]
    );
    // A client that waits gets the greeting after the pause, and its mail goes through.
    let t = Instant::now();
    let mut c = s.connect();
    assert_eq!(c.reply(), "220 mail.example.com ESMTP turnmail");
    assert!(t.elapsed() >= Duration::from_millis(400));
    assert!(c.cmd("EHLO client.example").starts_with("250-"));
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    assert_eq!(joe_new(&d), 0);
    let log = s.log_text();
    assert!(
        log.contains(
            "protocol violation (refused): talked before the greeting: \"EHLO bot.example"
        ),
        "{log}"
    );
}

#[test]
fn pipelining_without_the_offer_is_refused_when_set_and_real_clients_pass() {
    let d = demo_root();
    common::config(&d, REFUSE_BOTH);
    let s = Daemon::start(&d.root);
    let refusal =
        "421 4.5.0 Protocol error: commands pipelined without PIPELINING, closing connection";
    // After HELO: no PIPELINING was offered.
    let mut c = s.connect();
    assert!(c.reply().starts_with("220 "));
    assert_eq!(c.cmd("HELO client.example"), "250 mail.example.com");
    c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<joe@example.com>\r\nDATA\r\n");
    assert_eq!(replies_to_the_end(&mut c), [refusal]);
    // Before EHLO's reply: the client cannot know yet that PIPELINING is offered.
    let mut c = s.connect();
    assert!(c.reply().starts_with("220 "));
    c.send(b"EHLO client.example\r\nMAIL FROM:<a@example.org>\r\n");
    assert_eq!(replies_to_the_end(&mut c), [refusal]);
    // After HELO, a message followed by QUIT before its 250: not delivered.
    let mut c = s.connect();
    assert!(c.reply().starts_with("220 "));
    assert_eq!(c.cmd("HELO client.example"), "250 mail.example.com");
    assert_eq!(c.cmd("MAIL FROM:<a@example.org>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<joe@example.com>"), "250 2.1.5 Ok");
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n");
    assert_eq!(replies_to_the_end(&mut c), [refusal]);
    assert_eq!(joe_new(&d), 0);
    // Real clients wait where they must: swaks plain and pipelining after EHLO,
    // smtplib with EHLO and with HELO.
    let server = s.addr.to_string();
    for extra in [&[][..], &["--pipeline"][..]] {
        let mut args = vec!["--server", &server, "--to", "joe@example.com"];
        args.extend_from_slice(extra);
        let (code, out) = common::daemon::tool("swaks", &args);
        assert_eq!(code, 0, "{out}");
    }
    for greet in ["s.ehlo()", "s.helo()"] {
        let script = format!(
            "import smtplib\ns = smtplib.SMTP('127.0.0.1', {})\n{greet}\n\
             s.sendmail('a@example.org', ['joe@example.com'], b'Subject: py\\r\\n\\r\\nhi\\r\\n')\ns.quit()\n",
            s.addr.port()
        );
        let (code, out) = common::daemon::tool("python3", &["-c", &script]);
        assert_eq!(code, 0, "{out}");
    }
    assert_eq!(joe_new(&d), 4);
    let log = s.log_text();
    assert!(
        log.contains("protocol violation (refused): pipelined without PIPELINING offered: \"MAIL FROM:<a@example.org>\""),
        "{log}"
    );
    assert!(!log.contains("talked before the greeting"), "{log}");
}

#[test]
fn unoffered_pipelining_is_only_logged_by_default_once_per_session() {
    let d = demo_root();
    let s = Daemon::start(&d.root);
    let mut c = s.connect();
    assert!(c.reply().starts_with("220 "));
    c.send(
        b"HELO early.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<joe@example.com>\r\nDATA\r\n",
    );
    assert_eq!(c.reply(), "250 mail.example.com");
    assert_eq!(c.reply(), "250 2.1.0 Ok");
    assert_eq!(c.reply(), "250 2.1.5 Ok");
    assert!(c.reply().starts_with("354 "));
    c.send(b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n");
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued as"));
    assert_eq!(c.reply(), "221 2.0.0 Bye");
    assert!(c.closed());
    assert_eq!(joe_new(&d), 1);
    let log = s.log_text();
    assert_eq!(
        log.matches(
            "protocol violation (logged only): pipelined without PIPELINING offered: \"HELO early.example\""
        )
        .count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("protocol violation").count(), 1, "{log}");
}

#[test]
fn early_talk_during_the_greeting_pause_is_only_logged_by_default() {
    let d = demo_root();
    common::config(&d, "[smtp]\ngreeting_pause_ms = 300\n");
    let s = Daemon::start(&d.root);
    let mut c = s.connect();
    c.send(b"EHLO early.example\r\n");
    assert!(c.reply().starts_with("220 "));
    assert!(c.reply().starts_with("250-mail.example.com"));
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    let log = s.log_text();
    assert!(
        log.contains(
            "protocol violation (logged only): talked before the greeting: \"EHLO early.example??\""
        ),
        "{log}"
    );
}
