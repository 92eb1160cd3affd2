//! The TRANSACTION state and UPDATE: listings, retrieval, deletion marks, LAST, and
//! that only QUIT ever changes the Maildir.

use super::{Driver, config, crlf_size, mailbox, stored};
use crate::pop3::{AuthVerdict, Pop3Config, RetrieveError, UpdateReport};

const RETR1: &str = "+OK 28 octets\r\nSubject: one\r\n\r\nfirst body\r\n.\r\n";
const RETR2: &str = "+OK 43 octets\r\nSubject: two\r\n\r\n..dot line\r\nline 2\r\nline 3\r\n.\r\n";
const RETR3: &str = "+OK 30 octets\r\nSubject: three\r\n\r\nno newline\r\n.\r\n";

#[test]
fn stat_list_uidl() {
    let mut d = Driver::logged_in();
    assert_eq!(d.send(b"STAT\r\n"), "+OK 3 101\r\n");
    assert_eq!(
        d.send(b"LIST\r\n"),
        "+OK 3 messages (101 octets)\r\n1 28\r\n2 43\r\n3 30\r\n.\r\n"
    );
    assert_eq!(d.send(b"list 2\r\n"), "+OK 2 43\r\n");
    assert_eq!(
        d.send(b"UIDL\r\n"),
        "+OK\r\n1 1000.M1P1Q1.host,S=28,W=31\r\n2 1001.M1P1Q2.host\r\n3 1002.M1P1Q3.host\r\n.\r\n"
    );
    assert_eq!(d.send(b"UIDL 3\r\n"), "+OK 3 1002.M1P1Q3.host\r\n");
}

#[test]
fn retr_sends_exactly_the_advertised_octets() {
    let mut d = Driver::logged_in();
    assert_eq!(d.send(b"RETR 1\r\n"), RETR1);
    assert_eq!(d.send(b"RETR 2\r\n"), RETR2);
    assert_eq!(d.send(b"RETR 3\r\n"), RETR3);
    for (reply, m) in [RETR1, RETR2, RETR3].iter().zip(mailbox()) {
        let (status, body) = reply.split_once("\r\n").unwrap_or_default();
        let stuffed = body.matches("\r\n..").count() + usize::from(body.starts_with(".."));
        let sent = body.len() - ".\r\n".len() - stuffed;
        assert_eq!(status, format!("+OK {sent} octets"));
        assert_eq!(sent as u64, crlf_size(&m.data));
    }
    assert_eq!(d.retrieves, [(0, None), (1, None), (2, None)]);
}

#[test]
fn top_sends_header_and_lines() {
    let mut d = Driver::logged_in();
    let top = "+OK Top of message follows\r\n";
    assert_eq!(
        d.send(b"TOP 2 0\r\n"),
        format!("{top}Subject: two\r\n\r\n.\r\n")
    );
    assert_eq!(
        d.send(b"TOP 2 1\r\n"),
        format!("{top}Subject: two\r\n\r\n..dot line\r\n.\r\n")
    );
    let whole = RETR2.split_once("\r\n").unwrap_or_default().1;
    assert_eq!(d.send(b"TOP 2 99999999\r\n"), format!("{top}{whole}"));
    assert_eq!(
        d.send(b"TOP 3 5\r\n"),
        format!("{top}Subject: three\r\n\r\nno newline\r\n.\r\n")
    );
    assert_eq!(d.retrieves[0], (1, Some(0)));
}

#[test]
fn message_number_errors() {
    let mut d = Driver::logged_in();
    assert_eq!(
        d.send(b"LIST 0\r\n"),
        "-ERR Messages are numbered from 1\r\n"
    );
    assert_eq!(d.send(b"LIST 4\r\n"), "-ERR No such message\r\n");
    assert_eq!(d.send(b"RETR x\r\n"), "-ERR Invalid message number\r\n");
    assert_eq!(d.send(b"TOP 1\r\n"), "-ERR Syntax: TOP msg lines\r\n");
    assert_eq!(d.send(b"DELE 2\r\n"), "+OK Message 2 deleted\r\n");
    for cmd in ["DELE 2", "RETR 2", "TOP 2 0", "LIST 2", "UIDL 2"] {
        let line = format!("{cmd}\r\n");
        assert_eq!(
            d.send(line.as_bytes()),
            "-ERR Message already deleted\r\n",
            "{cmd}"
        );
    }
    // Ordinary number errors are not bad commands.
    for _ in 0..20 {
        d.send(b"UIDL 99\r\n");
    }
    assert!(!d.closed);
    assert!(d.retrieves.is_empty());
}

#[test]
fn deleted_messages_leave_listings_and_totals() {
    let mut d = Driver::logged_in();
    d.send(b"DELE 1\r\n");
    assert_eq!(d.send(b"STAT\r\n"), "+OK 2 73\r\n");
    assert_eq!(
        d.send(b"LIST\r\n"),
        "+OK 2 messages (73 octets)\r\n2 43\r\n3 30\r\n.\r\n"
    );
    assert_eq!(
        d.send(b"UIDL\r\n"),
        "+OK\r\n2 1001.M1P1Q2.host\r\n3 1002.M1P1Q3.host\r\n.\r\n"
    );
}

#[test]
fn last_and_rset() {
    let mut d = Driver::logged_in();
    assert_eq!(d.send(b"LAST\r\n"), "+OK 0\r\n");
    d.send(b"RETR 3\r\n");
    assert_eq!(d.send(b"LAST\r\n"), "+OK 0\r\n", "RETR does not move LAST");
    d.send(b"DELE 3\r\nDELE 1\r\n");
    assert_eq!(d.send(b"LAST\r\n"), "+OK 3\r\n");
    assert_eq!(
        d.send(b"RSET\r\n"),
        "+OK Maildrop has 3 messages (101 octets)\r\n"
    );
    assert_eq!(d.send(b"LAST\r\n"), "+OK 0\r\n");
    assert_eq!(d.send(b"RETR 3\r\n"), RETR3);
    d.send(b"QUIT\r\n");
    assert_eq!(d.updates, [(vec![], vec![0, 2])]);
}

#[test]
fn quit_hands_out_update() {
    let mut d = Driver::logged_in();
    d.send(b"DELE 1\r\nDELE 2\r\nNOOP\r\n");
    assert_eq!(d.send(b"QUIT\r\nSTAT\r\n"), "+OK Logging out\r\n");
    // Message 1 was in new/ but is deleted; message 3 moves to cur/.
    assert_eq!(d.updates, [(vec![0, 1], vec![2])]);
    assert!(d.closed);
}

#[test]
fn quit_reports_failed_deletions() {
    let mut d = Driver::logged_in();
    d.update_report = UpdateReport { not_removed: 1 };
    d.send(b"DELE 1\r\n");
    assert_eq!(
        d.send(b"QUIT\r\n"),
        "-ERR [SYS/TEMP] Some deleted messages were not removed\r\n"
    );
    assert!(d.closed);
}

#[test]
fn dropped_connection_or_timeout_changes_nothing() {
    let mut d = Driver::logged_in();
    d.send(b"DELE 1\r\nDELE 2\r\n");
    drop(d);
    let mut d = Driver::logged_in();
    d.send(b"DELE 1\r\n");
    assert_eq!(d.timeout(), "-ERR Disconnected for inactivity\r\n");
    assert!(d.closed);
    assert_eq!(d.send(b"QUIT\r\n"), "");
    assert!(d.updates.is_empty());
}

#[test]
fn retrieval_failures_keep_the_session() {
    let mut d = Driver::logged_in();
    d.open_error = Some(RetrieveError::Gone);
    assert_eq!(
        d.send(b"RETR 1\r\nNOOP\r\n"),
        "-ERR Message was removed by another session\r\n+OK\r\n"
    );
    d.open_error = Some(RetrieveError::Unreadable);
    assert_eq!(
        d.send(b"TOP 1 0\r\n"),
        "-ERR [SYS/TEMP] Unable to open that message\r\n"
    );
    d.open_error = None;
    assert_eq!(d.send(b"RETR 1\r\n"), RETR1);
}

#[test]
fn compat_blank_line_is_not_counted() {
    let mut d = Driver::new(Pop3Config {
        compat_extra_blank_line: true,
        ..config()
    });
    d.send(b"USER alice\r\nPASS secret\r\n");
    assert_eq!(
        d.send(b"RETR 1\r\n"),
        "+OK 28 octets\r\nSubject: one\r\n\r\nfirst body\r\n\r\n.\r\n"
    );
}

#[test]
fn empty_maildrop() {
    let mut d = Driver::new(config());
    d.mailbox = Ok(vec![]);
    assert_eq!(
        d.send(b"USER alice\r\nPASS secret\r\n"),
        "+OK Send PASS\r\n+OK Logged in, 0 messages (0 octets)\r\n"
    );
    assert_eq!(d.send(b"STAT\r\n"), "+OK 0 0\r\n");
    assert_eq!(d.send(b"LIST\r\n"), "+OK 0 messages (0 octets)\r\n.\r\n");
    assert_eq!(d.send(b"UIDL\r\n"), "+OK\r\n.\r\n");
    assert_eq!(d.send(b"RETR 1\r\n"), "-ERR No such message\r\n");
}

#[test]
fn hostile_uidls_stay_one_word() {
    let mut d = Driver::new(config());
    d.mailbox = Ok(vec![stored("a b\r\n+OK", b"x\n", true)]);
    d.send(b"USER alice\r\nPASS secret\r\n");
    assert_eq!(d.send(b"UIDL 1\r\n"), "+OK 1 a?b??+OK\r\n");
}

#[test]
fn answers_without_a_question_are_ignored() {
    let mut d = Driver::logged_in();
    d.session.answer_auth(AuthVerdict::Accepted);
    d.session.answer_maildrop(Ok(vec![]));
    d.session.answer_update(UpdateReport::default());
    d.session.retrieve_failed(RetrieveError::Gone);
    d.session.retrieve_done();
    d.session.tls_started();
    assert!(d.session.retrieve_opened().is_none());
    d.run();
    assert_eq!(d.send(b"STAT\r\n"), "+OK 3 101\r\n");
    assert!(!d.closed && !d.session.is_tls());
}
