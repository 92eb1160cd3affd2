//! The connection pool (deadpool-postgres) of one process: at most `pool_size`
//! connections, each made within `connect_timeout_secs`, with TLS when the url
//! requires it (`tls.rs`).

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::tls::Tls;

use super::{DbError, PgSettings};

/// A pool for `settings` (no connection is made yet).
pub fn build(settings: &PgSettings) -> Result<Pool, DbError> {
    settings.validate().map_err(DbError::Config)?;
    let pg = settings.pg_config().map_err(DbError::Config)?;
    // A connection the server closed is dropped on its way out of the pool
    // (is_closed); one that fails later fails one operation, reported as temporary.
    let recycling = || ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match Tls::for_settings(settings)? {
        Tls::Plain => Manager::from_config(pg, NoTls, recycling()),
        Tls::Verified(make) => Manager::from_config(pg, make, recycling()),
    };
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(settings.connect_timeout()))
        .wait_timeout(Some(settings.connect_timeout()))
        .recycle_timeout(Some(settings.connect_timeout()))
        .build()
        .map_err(|e| DbError::Config(format!("[postgres]: {e}")))
}

/// A pool's failure to hand out a connection, for `target`.
pub fn pool_error(target: &str, e: PoolError) -> DbError {
    match e {
        PoolError::Backend(e) => DbError::from_pg(target, &e),
        other => DbError::Unavailable {
            target: target.to_string(),
            reason: match other {
                PoolError::Timeout(_) => "no connection within connect_timeout_secs".into(),
                o => o.to_string(),
            },
        },
    }
}
