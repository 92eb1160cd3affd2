//! The `postgres` accounts backend: the account records in a PostgreSQL database
//! instead of the mail root's files, handed to the engine as the same six texts
//! (`engine::source::AccountTexts`), so every parser, lookup and login rule is shared.
//!
//! - `config.rs`: `[accounts] backend` and `[postgres]`.
//! - `model.rs`: texts ↔ records (pure, property-tested).
//! - `schema.rs` + `migrations/`: the tables (documented there) and their versions.
//! - `pool.rs`, `store.rs`: the connection pool and [`Store`] (load, commit, ...).
//! - `tls.rs`: TLS with `sslmode=require`, the server verified; every connection's
//!   making and driving.
//! - `listen.rs` ([`cache`]): keeping a process's copy current with LISTEN/NOTIFY.
//! - `blocking.rs`: the store from synchronous code.
//! - `advisory.rs`: the database's advisory locks as the senders' second lock.
//! - `cli.rs`: `turnmail db init|migrate|status|import|export`.

pub mod advisory;
pub mod blocking;
pub mod cli;
pub mod config;
pub mod error;
pub mod listen;
pub mod model;
pub mod pool;
pub mod schema;
pub mod store;
pub mod tls;

pub use config::{Backend, PgSettings};
pub use error::DbError;
pub use listen as cache;
pub use listen::CacheSink;
pub use store::Store;
