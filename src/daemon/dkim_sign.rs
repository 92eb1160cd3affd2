//! DKIM signing of what customers send: every message of a session allowed to relay
//! (AUTH, tcp.smtp, POP-before-SMTP, a site's networks) is signed with the key of its
//! From domain when the root has one. A message that cannot be signed still goes out
//! unsigned: refusing it would punish the customer for the operator's key trouble,
//! which the log line, the counter and `turnmail check` make visible.

use std::net::SocketAddr;

use crate::dkim::sign::Outcome;

/// The `DKIM-Signature:` field to put in front of `data` (LF line ends), if any.
pub(super) fn signature(
    shared: &super::Shared,
    peer: SocketAddr,
    id: &str,
    data: &[u8],
) -> Option<Vec<u8>> {
    let result = shared.dkim.sign_detailed(data);
    shared.metrics.dkim(Outcome::of(&result).as_str());
    match result {
        Ok(Some(signed)) => {
            tracing::debug!(target: "dkim", id, client = %peer, domain = %signed.domain, selector = %signed.selector, "signed");
            Some(signed.header)
        }
        Ok(None) => None,
        Err(e) if e.is_malformed() => {
            tracing::info!(target: "dkim", id, client = %peer, "not signed: {e}");
            None
        }
        Err(e) => {
            tracing::error!(target: "dkim", id, client = %peer, "not signed: {e}");
            None
        }
    }
}
