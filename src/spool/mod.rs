//! Spools: Maildirs whose files carry their envelope in the first two lines
//! (`Return-Path: <sender>` and `Delivered-To: recipient`), exactly what qmail-local
//! writes into a site's spool. The outbound queue (`outbound/`) uses the same format, so
//! one piece of code reads both.

pub mod envelope;
pub mod group;
pub mod lock;
pub mod relayhost;
pub mod resume;
pub mod routes;
pub mod scan;
pub mod site;
pub mod site_rows;
pub mod sitetable;
pub mod stamp;
