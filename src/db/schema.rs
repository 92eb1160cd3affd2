//! The database's schema, as ordered migrations recorded in `turnmail_schema`.
//!
//! Tables (every text column UTF-8 without NUL; "lowercase" means ASCII-lowercase, the
//! case rule of qmail's lookups, checked with the `C` collation):
//!
//! | table | rows | from the file |
//! | --- | --- | --- |
//! | `domains(name, prefix)` | one per virtualdomains key (lowercase; `user@domain`, `domain`, `.suffix` or empty) and the prefix its addresses get (empty: not virtual). An alias domain is a row whose prefix is another domain's prefix | `control/virtualdomains` |
//! | `rcpthosts(name)` | the domains (and `.suffix`es) mail is accepted for, lowercase | `control/rcpthosts` |
//! | `routes(position, wildcard, local, user, uid, gid, home, dash, ext)` | users/assign lines in order (`wildcard`: a `+` line) | `users/assign` |
//! | `mailboxes(login, password_hash, owner, home)` | POP accounts; logins unique without ASCII case | `users/poppasswd` |
//! | `secrets(login, secret)` | APOP/CRAM-MD5 secrets by lowercase login | `users/secrets` |
//! | `mailbox_quotas(address, bytes, messages)` | a mailbox's own limits (both NULL: NOQUOTA) | `users/quota` |
//! | `domain_quotas(domain, bytes, messages)` | a domain's default limits | `users/quota` (`@domain`) |
//! | `aliases(domain, local, lines)` | step 4: an alias of a domain (both keys lowercase) and the lines its `.qmail-LOCAL` file would hold (`&address` forwards, `./Maildir/` or `/abs/Maildir/` deliveries), as vpopmail's valias: read before the domain's `.qmail` files, which still answer what no row names | the domain's `.qmail-LOCAL` alias files (`db import`/`db export`) |
//! | `sites(name, relayhost, dir, settings)` | step 5: a customer site (the name's rules those of `turnmail site add`): `relayhost` `host[:port]` (NULL: none, its mail never flushed), `dir` where its spool and RELAYHOST lock file are (NULL: `ROOT/sites/NAME`; an absolute path for a site outside the root, e.g. a converted serialmail host's), `settings` site.toml's keys as one jsonb object, read by the same rules as the file (a key site.toml does not know refused by the table itself): a row turnmail cannot read is refused on load with its name and key, the copy in use kept | each site's RELAYHOST and site.toml (`db import`/`db export`; the export rewrites RELAYHOST, the lock file, after each commit) |
//! | `turnmail_state(version)` | one row: bumped by every change, sent with `NOTIFY turnmail_accounts` | |
//! | `turnmail_schema(version, name, applied_at)` | the migrations applied | |
//!
//! Views for an operator's SQL: `accounts` (a mailbox with its domain, effective quota
//! and where it comes from, and whether it has a secret) and `alias_domains`
//! (alias → target, by the rule of `engine/aliasdomains.rs`). An operator may also
//! change the tables by SQL: a trigger on each bumps the version and notifies once per
//! statement (turnmail's own commits set `turnmail.writer` and bump it once), so every
//! daemon reloads and an editor that read the older version gets a conflict.
//!
//! Not in the database: `.qmail` files other than the aliases' rows (a user's own, a
//! `.qmail-default` written by hand: still read from the domain's home), the sites'
//! spools and lock files, Maildirs and the other control files stay on the mail
//! root's file system.

use tokio_postgres::Client;

use super::DbError;

/// The key of the advisory lock that serialises writers (editors, migrations) on
/// every node: "turnmail" in ASCII.
pub const LOCK_KEY: i64 = 0x7475_726e_6d61_696c;

/// One step of the schema.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every step, in order; a database at version N has had the first N applied.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "account tables",
        sql: include_str!("migrations/0001_tables.sql"),
    },
    Migration {
        version: 2,
        name: "operator views",
        sql: include_str!("migrations/0002_views.sql"),
    },
    Migration {
        version: 3,
        name: "changes by SQL announced",
        sql: include_str!("migrations/0003_change_triggers.sql"),
    },
    Migration {
        version: 4,
        name: "aliases",
        sql: include_str!("migrations/0004_aliases.sql"),
    },
    Migration {
        version: 5,
        name: "sites",
        sql: include_str!("migrations/0005_sites.sql"),
    },
];

/// The schema version this program reads and writes.
pub const LATEST: i32 = MIGRATIONS.len() as i32;

/// The version a database is at; None when it has no schema of ours.
pub async fn current(c: &Client, target: &str) -> Result<Option<i32>, DbError> {
    let pg = |e: tokio_postgres::Error| DbError::from_pg(target, &e);
    let row = c
        .query_one("SELECT to_regclass('turnmail_schema') IS NOT NULL", &[])
        .await
        .map_err(pg)?;
    let exists: bool = row.try_get(0).map_err(pg)?;
    if !exists {
        return Ok(None);
    }
    let row = c
        .query_one("SELECT coalesce(max(version), 0) FROM turnmail_schema", &[])
        .await
        .map_err(pg)?;
    Ok(Some(row.try_get(0).map_err(pg)?))
}

/// Refuse a database this program cannot use as it is.
pub fn require_latest(version: Option<i32>) -> Result<(), DbError> {
    match version {
        None => Err(DbError::Schema(
            "the database has no turnmail schema: run `turnmail db init`".into(),
        )),
        Some(v) if v < LATEST => Err(DbError::Schema(format!(
            "the database is at schema version {v}, this program needs {LATEST}: run `turnmail db migrate`"
        ))),
        Some(v) if v > LATEST => Err(too_new(v)),
        Some(_) => Ok(()),
    }
}

fn too_new(v: i32) -> DbError {
    DbError::Schema(format!(
        "the database is at schema version {v}, newer than this program's {LATEST}: \
         upgrade turnmail on this host"
    ))
}

/// Apply the missing steps up to `upto`, each in its own transaction under the
/// advisory lock (so two hosts migrating at once apply each step once). `create`
/// makes the version table of a database without one (`db init`); without it such a
/// database is refused (`db migrate`). Returns the steps applied.
pub async fn migrate(
    c: &mut Client,
    target: &str,
    upto: i32,
    create: bool,
) -> Result<Vec<i32>, DbError> {
    let pg = |e: tokio_postgres::Error| DbError::from_pg(target, &e);
    let upto = upto.min(LATEST);
    match current(c, target).await? {
        None if !create => {
            return Err(DbError::Schema(
                "the database has no turnmail schema: run `turnmail db init`".into(),
            ));
        }
        None => {
            let tx = c.transaction().await.map_err(pg)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
                .await
                .map_err(pg)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS turnmail_schema (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                );
                COMMENT ON TABLE turnmail_schema IS
                    'turnmail: the schema migrations applied (turnmail db init / migrate)';",
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
        }
        Some(v) if v > LATEST => return Err(too_new(v)),
        Some(_) => {}
    }
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version <= upto) {
        let tx = c.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(pg)?;
        let row = tx
            .query_one("SELECT coalesce(max(version), 0) FROM turnmail_schema", &[])
            .await
            .map_err(pg)?;
        let at: i32 = row.try_get(0).map_err(pg)?;
        if at > LATEST {
            return Err(too_new(at));
        }
        if at >= m.version {
            continue;
        }
        if at != m.version - 1 {
            return Err(DbError::Schema(format!(
                "the database is at schema version {at}; step {} cannot follow it",
                m.version
            )));
        }
        tx.batch_execute(m.sql).await.map_err(|e| {
            DbError::Schema(format!(
                "step {} ({}) failed ({target}): {}",
                m.version,
                m.name,
                super::error::describe(&e)
            ))
        })?;
        tx.execute(
            "INSERT INTO turnmail_schema (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        applied.push(m.version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_in_order() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1, "{}", m.name);
            assert!(!m.sql.trim().is_empty());
        }
        assert!(require_latest(Some(LATEST)).is_ok());
        let e = require_latest(Some(LATEST + 1)).unwrap_err().to_string();
        assert!(e.contains("newer than this program"), "{e}");
        let e = require_latest(Some(1)).unwrap_err().to_string();
        assert!(e.contains("turnmail db migrate"), "{e}");
        assert!(
            require_latest(None)
                .unwrap_err()
                .to_string()
                .contains("db init")
        );
    }

    #[test]
    fn the_sites_table_knows_every_key_of_site_toml() {
        let sql = include_str!("migrations/0005_sites.sql");
        let list = sql
            .split_once("settings - ARRAY[")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(l, _)| l)
            .unwrap();
        let mut in_sql: Vec<&str> = list
            .split(',')
            .map(|k| k.trim().trim_matches('\''))
            .collect();
        in_sql.sort_unstable();
        let v = serde_json::to_value(crate::spool::site::SiteSettings::default()).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(in_sql, keys);
    }
}
