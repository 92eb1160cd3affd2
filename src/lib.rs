//! turnmail: a mail host for many virtual POP domains and for customer sites that are
//! not always connected. See ARCHITECTURE.md for the map of this crate.

pub mod admin;
pub mod auth;
pub mod check;
pub mod checkpassword;
pub mod client;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod datetime;
pub mod db;
pub mod deliver;
pub mod dkim;
pub mod dovecot;
pub mod engine;
pub mod flush;
pub mod fsutil;
pub mod generate;
pub mod line_input;
pub mod maildir;
pub mod mailroot;
pub mod net;
pub mod odmr;
pub mod outbound;
pub mod owner;
pub mod pid;
pub mod policy;
pub mod pop3;
pub mod privilege;
pub mod qmail;
pub mod quota;
pub mod schedule;
pub mod smtp;
pub mod spool;
pub mod submit;
pub mod tls;
