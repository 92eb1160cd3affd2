//! What turnmail keeps for Dovecot serving IMAP (and POP3) on the same accounts.

pub mod passwd_file;
