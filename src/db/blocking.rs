//! The database for synchronous callers (the CLI, checkpassword, `turnmail deliver`,
//! the engine's blocking paths): a future run to completion on a current-thread
//! runtime of its own. A `Store` belongs to the runtime it was made on, so the
//! helpers make it inside the future they run.

use std::future::Future;

use super::{DbError, PgSettings, Store};

/// Run `f` to completion. Called from inside a tokio runtime (where blocking on
/// another one is not allowed), it runs on a thread of its own.
pub fn run<F>(f: F) -> Result<F::Output, DbError>
where
    F: Future + Send,
    F::Output: Send,
{
    let go = move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DbError::Config(format!("starting a runtime for the database: {e}")))?;
        Ok(rt.block_on(f))
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return go();
    }
    std::thread::scope(|s| match s.spawn(go).join() {
        Ok(r) => r,
        Err(_) => Err(DbError::Config("the database thread panicked".into())),
    })
}

/// Connect (checking the schema), then run `f` on the store.
pub fn with_store<T, F, Fut>(settings: &PgSettings, f: F) -> Result<T, DbError>
where
    T: Send,
    F: FnOnce(Store) -> Fut + Send,
    Fut: Future<Output = Result<T, DbError>> + Send,
{
    let settings = settings.clone();
    run(async move { f(Store::connect(&settings).await?).await })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_outside_and_inside_a_runtime() {
        assert_eq!(run(async { 1 + 1 }).unwrap(), 2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let inner = rt.block_on(async { run(async { 3 }) }).unwrap();
        assert_eq!(inner, 3);
    }

    #[test]
    fn an_unreachable_database_is_unavailable_at_once() {
        let d = tempfile::tempdir().unwrap();
        let url = format!("host={} dbname=x user=x", d.path().display());
        let t = std::time::Instant::now();
        let e = with_store(
            &PgSettings::with_url(&url),
            |s| async move { s.version().await },
        )
        .unwrap_err();
        assert!(e.is_temporary(), "{e}");
        assert!(
            e.to_string().contains(&d.path().display().to_string()),
            "{e}"
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(3));
    }

    #[test]
    fn a_server_that_never_answers_is_unavailable_within_the_connect_timeout() {
        let d = tempfile::tempdir().unwrap();
        // Accepts connections and never says a word.
        let l = std::os::unix::net::UnixListener::bind(d.path().join(".s.PGSQL.5432")).unwrap();
        let held = std::thread::spawn(move || {
            let mut conns = Vec::new();
            for c in l.incoming().take(4) {
                conns.push(c);
            }
            std::thread::sleep(std::time::Duration::from_secs(5));
        });
        let s = PgSettings {
            connect_timeout_secs: 1,
            ..PgSettings::with_url(&format!("host={} dbname=x user=x", d.path().display()))
        };
        let t = std::time::Instant::now();
        let e = with_store(&s, |s| async move { s.version().await }).unwrap_err();
        assert!(e.is_temporary(), "{e}");
        let took = t.elapsed();
        assert!(
            took >= std::time::Duration::from_millis(900)
                && took < std::time::Duration::from_secs(4),
            "{took:?}"
        );
        drop(held);
    }
}
