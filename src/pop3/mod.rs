//! The POP3 server session, sans-IO: bytes in, replies and actions out.
//!
//! Everything about the protocol (RFC 1939 with APOP, TOP, UIDL and qmail-pop3d's
//! LAST; RFC 2449 CAPA, RESP-CODES and PIPELINING; RFC 2595 STLS; RFC 5034 AUTH
//! PLAIN; RFC 3206 AUTH-RESP-CODE) lives here, with no sockets, clock, files or async,
//! so it can be tested byte by byte and fuzzed. A thin shell (the listener) owns the
//! connection, the engine and the Maildir, and carries out the [`Action`]s. Maildir
//! semantics are qmail-pop3d's (UIDL = name up to `:`; deletions and new/ → cur/ moves
//! only at QUIT) with RFC-exact sizes.
//!
//! # Driving a session
//!
//! ```text
//! let mut s = Session::new(cfg, Connection { tls_active, loopback, apop_timestamp });
//! loop {
//!     while let Some(action) = s.next_action() {
//!         match action {
//!             Authenticate { login, credential } => {
//!                 let verdict = engine.check(login, credential);   // delay on failure
//!                 s.answer_auth(verdict)
//!             }
//!             OpenMaildrop => { entries = scan(); s.answer_maildrop(Ok(infos(&entries))) }
//!             Retrieve { index, .. } => match open(&entries[index]) {
//!                 Err(e) => s.retrieve_failed(e),
//!                 Ok(file) => {
//!                     let Some(mut enc) = s.retrieve_opened() else { unreachable };
//!                     write(s.take_output());                     // "+OK ..." last
//!                     for chunk in file { enc.feed(chunk, &mut buf); write(buf) }  // until enc.is_done()
//!                     enc.finish(&mut buf); write(buf);           // ".\r\n"
//!                     s.retrieve_done()                          // on a read error: close instead
//!                 }
//!             },
//!             Update { delete, seen } => s.answer_update(apply(delete, seen)),
//!             StartTls => { write(s.take_output()); handshake()?; s.tls_started() }
//!             Flush    => write(s.take_output()),
//!             Refused { command, reply } => log(command, reply),
//!             Close    => {}
//!         }
//!     }
//!     write_all(s.take_output()).await;              // every time next_action gives None
//!     if s.is_closed() { break }
//!     let n = read(&mut buf[..s.input_room()]) with idle timeout (on timeout: s.timeout(); continue);
//!     if n == 0 { break }                           // EOF: no UPDATE, nothing changes
//!     s.receive(&buf[..n]);
//! }
//! ```
//!
//! * [`Session::next_action`] processes buffered input until an action needs the
//!   shell; `None` means it needs more bytes (or is closed). `Authenticate`,
//!   `OpenMaildrop`, `Retrieve`, `Update` and `StartTls` pause the session until
//!   answered; pipelined input stays buffered and replies stay in order.
//! * Output order: whatever the session wrote before an action precedes it on the
//!   wire. For `Retrieve`, `retrieve_opened` appends the `+OK` line, so the shell
//!   writes `take_output()` and only then the encoded message. A read error after the
//!   first message byte was written cannot be turned into `-ERR` (the client is
//!   reading a multi-line response): the shell must close the connection; nothing
//!   else changes, since UPDATE only follows QUIT.
//! * Read at most [`Session::input_room`] bytes. Buffered input never exceeds
//!   `max_line + max_pipelined`; whenever `next_action` has returned `None` without a
//!   pending answer the room is more than `max_pipelined`. Output grows beyond 64 KiB
//!   only by one reply (a LIST of a large maildrop) before `Flush` asks for a write.
//! * Timeouts, EOF and errors never produce `Update`: only QUIT in the TRANSACTION
//!   state does, as RFC 1939 §6 and qmail-pop3d require.
//! * The failure delay, rate limits, the optional session lock (`[IN-USE]`) and the
//!   APOP timestamp are the shell's: the session only words the replies.
//!
//! # Replies
//!
//! All reply texts are in [`texts`]; [`Reply::write_to`] is the only serialiser and
//! strips CR, LF and other control characters from any text. Passwords travel as
//! [`Secret`]s (hidden from `Debug`, wiped on drop), and `Refused` never shows them.

mod action;
mod command;
mod config;
pub mod encode;
mod handlers;
mod maildrop;
mod reply;
mod sasl;
mod session;
pub mod texts;

pub use crate::auth::Secret;
pub use action::{
    Action, AuthVerdict, Credential, MaildropError, MessageInfo, RetrieveError, UpdateReport,
};
pub use config::{Connection, Pop3Config};
pub use encode::RetrEncoder;
pub use reply::{Reply, RespCode, Status};
pub use session::Session;

#[cfg(test)]
mod tests;
