//! The ODMR server session (RFC 2645, On-Demand Mail Relay), sans-IO: bytes in,
//! replies and actions out.
//!
//! A customer site with a dynamic address connects (port 366), authenticates and sends
//! `ATRN [domain,...]`; if mail waits, the provider answers 250 and the roles reverse
//! on the same connection: the customer sends a 220 greeting and turnmail delivers the
//! mail of every requested domain's site to it with the ordinary flush client, all in
//! one SMTP session. This module is everything before
//! the reversal (EHLO, AUTH PLAIN/LOGIN/CRAM-MD5 per RFC 4954, STARTTLS per RFC 3207,
//! ATRN), with no sockets, clock, files or async, so it can be tested byte by byte and
//! fuzzed. A thin shell (the listener) owns the connection, the accounts, the sites and
//! the flush, and carries out the [`Action`]s.
//!
//! # Driving a session
//!
//! ```text
//! let mut s = Session::new(cfg, Connection { tls_active, challenge: "<pid.time.n@host>" });
//! loop {
//!     while let Some(action) = s.next_action() {
//!         match action {
//!             Authenticate { mechanism, login, credential } => {
//!                 let verdict = engine.check(login, credential);  // delay on failure;
//!                 s.answer_auth(verdict)                          // keep the account
//!             }
//!             Atrn { domains } => s.answer_atrn(entitled_and_waiting(account, domains)),
//!             StartTls => { write(s.take_output()); handshake()?; s.tls_started() }
//!             Reverse  => {
//!                 write_all(s.take_output()).await;              // the 250 is last
//!                 return flush_client(stream, sites).await;      // waits for the 220;
//!                                                                // all sites, one session
//!             }
//!             Refused { command, reply } => log(command, reply),
//!             Close    => {}
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
//! * [`Session::next_action`] processes buffered input until an action needs the
//!   shell; `None` means it needs more bytes, an answer is pending, or the session is
//!   closed or reversed. `Authenticate`, `Atrn` and `StartTls` pause the session until
//!   answered; the shell answers before it reads again.
//! * Read at most [`Session::input_room`] bytes: buffered input never exceeds
//!   `max_command_line + max_pipelined`, and [`Session::receive`] takes everything read
//!   within it. Output between two reads is bounded by what that input can ask for (no
//!   reply is longer than the EHLO reply). After `StartTls` the shell must discard any
//!   plaintext it holds (the session already dropped what it buffered).
//! * HELO gets a plain 250 with no extensions, so AUTH after it is refused with 503
//!   "Send EHLO first" and ATRN stays at 530: RFC 2645 §5.1.1 makes EHLO the way in
//!   (details in `handlers.rs`). A later EHLO or HELO keeps an AUTH; STARTTLS drops it.
//! * Authentication: the session only takes the SASL messages apart. The shell checks
//!   [`Credential::Plain`] against the password and [`Credential::CramMd5`] against the
//!   account's stored secret (`Accounts::authenticate_cram_md5`), applies the failure
//!   delay and per-address blocking as the POP3 shell does, and remembers the account
//!   it answered [`AuthVerdict::Accepted`] for: ATRN is checked against it. The session
//!   closes the connection itself after `max_auth_failures` failed exchanges.
//! * ATRN: the client must wait at least 10 minutes for this answer (RFC 2645 §5.2.1),
//!   but the shell does as little as it can before answering: check that the account
//!   is listed in site.toml of every site owning a named domain (none named: all its
//!   sites), look at those sites' spools, and keep those with mail whose flush is not
//!   running (in this process or, by the RELAYHOST lock, elsewhere): they are all
//!   turned, and those left out wait for their own flush. No site with mail:
//!   [`AtrnVerdict::NoMail`]; every one of them busy: [`AtrnVerdict::RateLimited`]. No
//!   DNS, no delivery, no waiting for a lock: a slow engine answers `Temporary` (451)
//!   rather than keep the client waiting. The spool scan must stay cheap for sites with
//!   big queues (a count, not a read of every message).
//! * After [`Action::Reverse`] the session is finished: `receive` takes nothing and
//!   `next_action` gives nothing more. The flush client reads the customer's 220 from
//!   the same (possibly TLS) stream, sends one EHLO and the mail of every turned site,
//!   one site after another, keeps its usual duties (each site locked for the whole
//!   session, each message settled in its own site's spool under that site's lifetime
//!   and bounce rules, RFC 2645 §5.3; each site's status recorded) and ends with QUIT.
//!   It must not start TLS again on a stream that is already encrypted.
//!
//! # Replies
//!
//! | Situation | Reply |
//! |---|---|
//! | greeting | `220 HOST ODMR service ready` |
//! | EHLO / HELO | `250-HOST` `AUTH …` [`STARTTLS`] `ENHANCEDSTATUSCODES` `ATRN` / `250 HOST` |
//! | AUTH challenge | `334 base64` (PLAIN: empty; LOGIN: `Username:`, `Password:`; CRAM-MD5: the challenge) |
//! | AUTH accepted / rejected / engine trouble | `235 2.7.0` / `535 5.7.8` / `454 4.7.0` |
//! | AUTH `*`, bad base64, malformed response | `501 5.7.0` / `501 5.5.2` / `501 5.5.2` |
//! | AUTH PLAIN/LOGIN without TLS (policy) | `538 5.7.11` |
//! | AUTH unknown mechanism / twice / before EHLO | `504 5.5.4` / `503 5.5.1` / `503 5.5.1` |
//! | AUTH line over the limit | `500 5.5.6` |
//! | ATRN before AUTH / bad domain list | `530 5.7.0` / `501 5.5.4` |
//! | ATRN turn / not entitled / rate limited / trouble / no mail | `250 2.0.0` / `450 4.7.1` / `450 4.7.0` / `451 4.3.0` / `453 4.2.0 You have no mail` |
//! | STARTTLS | `220 2.0.0`, `502 5.5.1` when not offered, `503 5.5.1` under TLS |
//! | RSET, NOOP / QUIT | `250 2.0.0` / `221 2.0.0` |
//! | MAIL, RCPT, DATA, ETRN, … (RFC 2645 §5.4) / unknown verb | `502 5.5.1` / `500 5.5.2` |
//! | line too long / control characters / bad arguments | `500 5.5.2` / `501 5.5.4` / `501 5.5.4` |
//! | too many errors / AUTH failures / idle | `421 4.7.0` / `421 4.7.0` / `421 4.4.2` |
//!
//! All texts are in [`texts`]; [`Reply::to_bytes`](crate::smtp::Reply::to_bytes) is
//! the only serialiser and strips control characters from any text. Passwords travel as
//! [`Secret`](crate::auth::Secret)s and processed input is wiped; `Refused` never shows
//! an AUTH response.

mod action;
pub(crate) mod command;
mod config;
mod handlers;
mod session;
pub mod texts;

pub use action::{Action, AtrnVerdict, AuthVerdict, Credential, Mechanism};
pub use config::{Connection, OdmrConfig};
pub use session::Session;

#[cfg(test)]
mod tests;
