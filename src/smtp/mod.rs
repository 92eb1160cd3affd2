//! The SMTP server session, sans-IO: bytes in, replies and actions out.
//!
//! Everything about the protocol (RFC 5321 with PIPELINING, SIZE, 8BITMIME,
//! ENHANCEDSTATUSCODES, STARTTLS, CHUNKING, ETRN and AUTH) lives here, with no sockets,
//! clock, files or async, so it can be tested byte by byte and fuzzed. A thin shell
//! (the listener) owns the connection and carries out the [`Action`]s.
//!
//! # Driving a session
//!
//! ```text
//! let mut s = Session::new(cfg, implicit_tls);      // greeting is in the output
//! loop {
//!     while let Some(action) = s.next_action() {
//!         match action {
//!             CheckRecipient { address } => s.answer_recipient(engine.check(address).await),
//!             Deliver { .. }             => s.answer_message(deliver(..).await),
//!             Etrn { argument }          => s.answer_etrn(trigger_flush(argument, account)),
//!             Authenticate { .. }        => s.answer_auth(engine.check(..).await), // keep the account
//!             StartTls                   => { write(s.take_output()); handshake()?; s.tls_started() }
//!             Pause(delay)               => { write(s.take_output()); sleep(delay); s.resume() }
//!             Penalize                   => penalties.punish(peer_ip, now),
//!             ProtocolViolation { .. }   => log(..),
//!             Refused { command, reply } => log(command, reply),
//!             Close                      => {}
//!         }
//!     }
//!     write_all(s.take_output()).await;              // every time next_action gives None
//!     if s.is_closed() { break }
//!     let n = read(&mut buf[..s.input_room()]) with idle timeout (on timeout: s.timeout(); continue);
//!     if n == 0 { break }
//!     s.receive(&buf[..n]);
//! }
//! ```
//!
//! * [`Session::next_action`] processes all buffered input until an action needs the
//!   shell; `None` means it needs more bytes (or is closed). `CheckRecipient`,
//!   `Deliver`, `Etrn`, `Authenticate`, `StartTls` and `Pause` pause the session until
//!   answered; pipelined input stays buffered and replies stay in order.
//! * Refused recipients are counted (`harvest.rs`): beyond a soft limit each refusal
//!   comes after a `Pause` (the session has no clock; the shell sleeps), and the one at
//!   the hard limit ends the session with 421 after `Penalize`.
//! * Clients that do not wait their turn (`violations.rs`): the shell calls
//!   [`Session::talked_before_greeting`] if bytes arrived before it wrote the greeting;
//!   the session itself sees input pipelined when PIPELINING was not offered. Each is
//!   logged (`ProtocolViolation`) or refused with 421, by `SessionConfig`.
//! * Call [`Session::take_output`] and write it whenever `next_action` returns `None`
//!   (before reading again) and before the TLS handshake. After `Close`, write what is
//!   left and close.
//! * Read at most [`Session::input_room`] bytes: buffered input never exceeds the
//!   command line limit plus 32 KiB, and a message body never exceeds
//!   `max_message_size`. Whenever `next_action` has returned `None` without a pending
//!   answer, the room is at least 32 KiB, so [`Session::receive`] takes everything
//!   read within it. After `StartTls` the shell must discard any plaintext it holds
//!   (the session already dropped what it buffered).
//! * The shell adds the `Received:` field ([`received_line`]) when it stores the
//!   message; the session does not know the peer address or the queue id.
//!
//! * AUTH (`auth.rs`, when `SessionConfig::auth`): PLAIN and LOGIN under TLS or with
//!   `plaintext_auth`, CRAM-MD5 with the challenge from [`Session::with_challenge`].
//!   The shell checks the credential with the engine, delays failures, and keeps the
//!   account for ETRN; the session closes after `max_auth_failures` failed exchanges,
//!   and STARTTLS forgets an AUTH. AUTH lines are wiped from the input and shown as
//!   `AUTH MECH ***` in `Refused`. The session asks the shell about every recipient the
//!   same way with or without AUTH; whether AUTH lets a client relay is the shell's
//!   decision (`submit`).
//! * Submission (`SessionConfig::auth_required`, RFC 6409): MAIL before AUTH gets 530
//!   unless the shell said the client may relay by its address
//!   ([`Session::with_relay_client`]). With `check_sender` the shell judges each MAIL
//!   sender (`CheckSender`: 553 5.7.1 not yours, 451 4.7.1 over a limit).
//!
//! # Replies
//!
//! All reply texts are in [`texts`]; [`Reply::to_bytes`] is the only serialiser and
//! strips CR, LF and other control characters from any text.

mod action;
pub mod address;
mod auth;
mod chunk;
mod command;
mod config;
mod dot;
mod handlers;
mod harvest;
mod message;
mod number;
mod received;
mod reply;
mod session;
pub mod texts;
mod violations;

pub use action::{Action, MessageVerdict, RcptVerdict, SenderVerdict, Violation};
pub use config::{SessionConfig, ViolationPolicy};
pub use message::MAX_HOPS;
pub use received::{Trace, received_line};
pub use reply::Reply;
pub use session::Session;

#[cfg(test)]
mod tests;
