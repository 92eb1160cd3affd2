//! TLS to the accounts database: with `sslmode=require` in `[postgres] url`, every
//! connection (the pool's, the notification listener's, the advisory locks') is
//! encrypted and the server's certificate verified, name included, against the public
//! roots and `[postgres] ca_file` (libpq's `verify-full`: the database is sent password
//! hashes and answers logins, so an unverified server is no better than none).
//! Otherwise connections are plain, as for a Unix socket or a trusted network; a
//! server offering TLS is not asked to use it (Debian's stock server offers it with a
//! snakeoil certificate no client could verify).

use std::path::Path;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::config::SslMode;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{DbError, PgSettings};

/// How this process connects to the database.
#[derive(Clone)]
pub enum Tls {
    Plain,
    Verified(MakeRustlsConnect),
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tls::Plain => "Tls::Plain",
            Tls::Verified(_) => "Tls::Verified",
        })
    }
}

impl Tls {
    /// TLS when the url asks for it (`sslmode=require`), with the roots it is checked
    /// against; a `ca_file` that cannot be read is an error, not a silent fallback.
    pub fn for_settings(settings: &PgSettings) -> Result<Tls, DbError> {
        let config = settings.pg_config().map_err(DbError::Config)?;
        if config.get_ssl_mode() != SslMode::Require {
            return Ok(Tls::Plain);
        }
        let roots = settings.ca_file.as_deref().map(Path::new);
        let client = crate::tls::verified_client_config(roots)
            .map_err(|e| DbError::Config(format!("[postgres] ca_file: {e}")))?;
        Ok(Tls::Verified(MakeRustlsConnect::new((*client).clone())))
    }
}

/// Connect with `config` and drive the connection in a task of its own, handing each
/// message from the server to `on_message` (None when the connection ended) until it
/// returns false. The task ends with the connection, or is aborted through the handle.
pub async fn connect<F>(
    config: &Config,
    tls: &Tls,
    on_message: F,
) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>
where
    F: FnMut(Option<Result<AsyncMessage, tokio_postgres::Error>>) -> bool + Send + 'static,
{
    Ok(match tls {
        Tls::Plain => {
            let (client, conn) = config.connect(NoTls).await?;
            (client, tokio::spawn(drive(conn, on_message)))
        }
        Tls::Verified(make) => {
            let (client, conn) = config.connect(make.clone()).await?;
            (client, tokio::spawn(drive(conn, on_message)))
        }
    })
}

async fn drive<S, T, F>(mut conn: Connection<S, T>, mut on_message: F)
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(Option<Result<AsyncMessage, tokio_postgres::Error>>) -> bool,
{
    let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    while let Some(m) = messages.next().await {
        if !on_message(Some(m)) {
            return;
        }
    }
    on_message(None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_only_when_the_url_requires_it() {
        for url in [
            "host=/var/run/postgresql dbname=turnmail",
            "postgres://u@db.example/turnmail",
            "postgres://u@db.example/turnmail?sslmode=prefer",
            "host=db.example sslmode=disable",
        ] {
            let t = Tls::for_settings(&PgSettings::with_url(url)).unwrap();
            assert!(matches!(t, Tls::Plain), "{url}");
        }
        let required = PgSettings::with_url("postgres://u@db.example/turnmail?sslmode=require");
        assert!(matches!(
            Tls::for_settings(&required).unwrap(),
            Tls::Verified(_)
        ));
        let missing_ca = PgSettings {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..required
        };
        let e = Tls::for_settings(&missing_ca).unwrap_err().to_string();
        assert!(
            e.contains("ca_file") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }
}
