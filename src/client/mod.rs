//! The outbound SMTP client that flushes a site's spool and sends the outbound queue:
//! many messages, each with one sender and one or more recipients, over one
//! connection, with one result per message (and each recipient's RCPT refusal).
//!
//! serialsmtp waits for every message's final reply before it sends the next one (two
//! round trips a message); a simple client stops a whole transaction at the first
//! refused recipient. This client keeps the pipe full instead: with CHUNKING it streams
//! `BDAT n LAST` transactions without waiting, with PIPELINING it sends the next
//! message's commands right behind the previous end-of-data dot, and it still reports
//! exactly one outcome per message, in order, refusing to guess when the server's
//! replies stop making sense. A relay that wants a login (an ISP's smarthost) gets
//! AUTH PLAIN or LOGIN after STARTTLS, never in clear text.
//!
//! Layers: `session` is the protocol as a sans-IO state machine (bytes in, bytes,
//! actions and outcomes out), `encode` turns spool bytes into wire bytes, and
//! `driver` runs a session over any tokio stream with timeouts and an optional
//! STARTTLS upgrade. A flush calls [`flush`] (or [`flush_with_tls`] with a closure
//! doing the tokio-rustls handshake) with a connected stream (TCP_NODELAY set), the
//! options, a [`MessageSource`] that hands out messages as they are asked for, and a
//! callback that sees each [`Outcome`] as soon as it is known.

mod caps;
mod driver;
mod encode;
mod flight;
mod options;
mod outcome;
mod reply;
mod session;
#[cfg(test)]
mod session_tests;

#[cfg(test)]
mod fake_server;
#[cfg(test)]
mod rcpt_tests;
#[cfg(test)]
mod tests;

pub use caps::Capabilities;
pub use driver::{
    FlushReport, Message, MessageSource, Stats, flush, flush_with_tls, send_with_tls,
};
pub use encode::{Encoder, LengthCounter, bdat_len};
pub use options::{ClientOptions, Credentials, Timeouts, TlsPolicy, Window};
pub use outcome::{NotSent, Outcome, ProtocolError, SessionError};
pub use reply::{Reply, ReplyParser};
pub use session::{Action, MessageHead, MessageResult, Session};
