//! `Store`: the accounts in PostgreSQL, read and written as whole sets of records.
//!
//! Readers take everything in one snapshot-isolated read ([`Store::load`]) and get
//! the six texts the files would hold (and the alias and site tables' texts), plus the version; the engine builds its
//! tables from them in memory. Writers hand the six new texts to [`Store::commit`]
//! with the version they read: one transaction, under an advisory lock so that
//! editors on several hosts take turns, checks the version, writes the differences
//! table by table, bumps the version and notifies `turnmail_accounts`.
//!
//! Every operation is bounded in time: a database that does not answer is a
//! temporary [`DbError::Unavailable`], never a hang. A `Store` (its pool) belongs to
//! the tokio runtime it was made on.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Object, Pool, Transaction};
use tokio_postgres::IsolationLevel;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::model::{Mailbox, Records, Route};
use super::{DbError, PgSettings, pool, schema};
use crate::engine::source::AccountTexts;
use crate::quota::spec::Limits;

/// The channel every change is announced on, with the new version as payload.
pub const CHANNEL: &str = "turnmail_accounts";

/// The longest a whole operation (a load of every account, a commit) may take before
/// it counts as the database not answering.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// The accounts database of one process; cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    target: Arc<str>,
    settings: PgSettings,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("target", &self.target)
            .finish()
    }
}

/// Rows per table, for `turnmail db status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub schema_version: i32,
    pub version: u64,
    pub counts: Vec<(&'static str, i64)>,
}

impl Store {
    /// A store for `settings` without connecting (settings errors only).
    pub fn new(settings: &PgSettings) -> Result<Store, DbError> {
        Ok(Store {
            pool: pool::build(settings)?,
            target: settings.target().into(),
            settings: settings.clone(),
        })
    }

    /// A store whose database answers and has this program's schema.
    pub async fn connect(settings: &PgSettings) -> Result<Store, DbError> {
        let store = Store::new(settings)?;
        let s = store.clone();
        store
            .bounded(async move {
                let c = s.client().await?;
                schema::require_latest(schema::current(&c, &s.target).await?)
            })
            .await?;
        Ok(store)
    }

    /// Where the database is (for messages; no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn settings(&self) -> &PgSettings {
        &self.settings
    }

    fn pg(&self) -> impl Fn(tokio_postgres::Error) -> DbError + '_ {
        |e| DbError::from_pg(&self.target, &e)
    }

    /// A pooled connection.
    pub async fn client(&self) -> Result<Object, DbError> {
        self.pool
            .get()
            .await
            .map_err(|e| pool::pool_error(&self.target, e))
    }

    async fn bounded<T>(&self, f: impl Future<Output = Result<T, DbError>>) -> Result<T, DbError> {
        match tokio::time::timeout(OPERATION_TIMEOUT, f).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Unavailable {
                target: self.target.to_string(),
                reason: format!("no answer within {} s", OPERATION_TIMEOUT.as_secs()),
            }),
        }
    }

    /// The current version of the accounts.
    pub async fn version(&self) -> Result<u64, DbError> {
        self.bounded(async {
            let c = self.client().await?;
            let row = c
                .query_one("SELECT version FROM turnmail_state", &[])
                .await
                .map_err(self.pg())?;
            version_of(&row)
        })
        .await
    }

    /// Every account record as the six texts, and their version, in one read.
    pub async fn load(&self) -> Result<(AccountTexts, u64), DbError> {
        let (records, version) = self.load_records().await?;
        Ok((records.to_texts(), version))
    }

    /// Every account record and their version, in one snapshot-isolated read.
    pub async fn load_records(&self) -> Result<(Records, u64), DbError> {
        self.bounded(async {
            let mut c = self.client().await?;
            let (tx, version) = self.snapshot(&mut c).await?;
            let records = self.read_all(&tx).await?;
            tx.commit().await.map_err(self.pg())?;
            records.check().map_err(invalid)?;
            Ok((records, version))
        })
        .await
    }

    /// A read-only repeatable-read transaction (every table as of one moment) and the
    /// accounts version it sees.
    async fn snapshot<'c>(&self, c: &'c mut Object) -> Result<(Transaction<'c>, u64), DbError> {
        let tx = c
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(self.pg())?;
        let version = version_of(
            &tx.query_one("SELECT version FROM turnmail_state", &[])
                .await
                .map_err(self.pg())?,
        )?;
        Ok((tx, version))
    }

    async fn read_all(&self, tx: &Transaction<'_>) -> Result<Records, DbError> {
        let q = |sql: &'static str| async move { tx.query(sql, &[]).await.map_err(self.pg()) };
        let mut r = Records::default();
        for row in q("SELECT name, prefix FROM domains").await? {
            r.domains.insert(text(&row, 0)?, text(&row, 1)?);
        }
        for row in q("SELECT name FROM rcpthosts").await? {
            r.rcpthosts.insert(text(&row, 0)?);
        }
        let sql = "SELECT wildcard, local, \"user\", uid, gid, home, dash, ext FROM routes ORDER BY position";
        for row in q(sql).await? {
            r.routes.push(route_of(&row)?);
        }
        for row in q("SELECT login, password_hash, owner, home FROM mailboxes").await? {
            let m = mailbox_of(&row)?;
            r.mailboxes.insert(m.login.to_ascii_lowercase(), m);
        }
        for row in q("SELECT login, secret FROM secrets").await? {
            r.secrets.insert(text(&row, 0)?, text(&row, 1)?);
        }
        for row in q("SELECT address, bytes, messages FROM mailbox_quotas").await? {
            r.mailbox_quotas.insert(text(&row, 0)?, limits_of(&row)?);
        }
        for row in q("SELECT domain, bytes, messages FROM domain_quotas").await? {
            r.domain_quotas.insert(text(&row, 0)?, limits_of(&row)?);
        }
        for row in q("SELECT domain, local, lines FROM aliases").await? {
            let lines: Vec<String> = row
                .try_get(2)
                .map_err(|e| DbError::Invalid(format!("aliases.lines: {e}")))?;
            let address = format!("{}@{}", text(&row, 1)?, text(&row, 0)?);
            r.aliases.insert(address, lines);
        }
        r.sites = self.read_sites(tx).await?;
        Ok(r)
    }

    async fn read_sites(
        &self,
        tx: &Transaction<'_>,
    ) -> Result<crate::spool::sitetable::SiteRows, DbError> {
        let mut sites = crate::spool::sitetable::SiteRows::new();
        let sql = "SELECT name, relayhost, dir, settings::text FROM sites";
        for row in tx.query(sql, &[]).await.map_err(self.pg())? {
            let name = text(&row, 0)?;
            let opt = |i: usize| {
                row.try_get::<_, Option<String>>(i)
                    .map_err(|e| DbError::Invalid(format!("sites.{}: {e}", column(&row, i))))
            };
            let raw = text(&row, 3)?;
            // jsonb spaces and orders keys its own way; a row that is not valid keeps
            // its text, so that the check names it.
            let settings = crate::spool::sitetable::canonical_settings(&raw).unwrap_or(raw);
            let row = crate::spool::sitetable::SiteRow {
                relayhost: opt(1)?,
                dir: opt(2)?,
                settings,
            };
            sites.insert(name, row);
        }
        Ok(sites)
    }

    /// What site discovery needs, in one snapshot: the texts of users/assign,
    /// control/virtualdomains and the site table (the others empty), and their
    /// version. A row that cannot be used refuses the whole load, naming it.
    pub async fn load_sites(&self) -> Result<(AccountTexts, u64), DbError> {
        self.bounded(async {
            let mut c = self.client().await?;
            let (tx, version) = self.snapshot(&mut c).await?;
            let mut r = Records::default();
            for row in tx
                .query("SELECT name, prefix FROM domains", &[])
                .await
                .map_err(self.pg())?
            {
                r.domains.insert(text(&row, 0)?, text(&row, 1)?);
            }
            let sql = "SELECT wildcard, local, \"user\", uid, gid, home, dash, ext FROM routes ORDER BY position";
            for row in tx.query(sql, &[]).await.map_err(self.pg())? {
                r.routes.push(route_of(&row)?);
            }
            r.sites = self.read_sites(&tx).await?;
            tx.commit().await.map_err(self.pg())?;
            r.check().map_err(invalid)?;
            Ok((r.to_texts(), version))
        })
        .await
    }

    /// Replace the accounts by `new`, if they are still at `base_version`: the
    /// differences only, in one transaction; the new version is returned (the same
    /// one when nothing differs) and announced on [`CHANNEL`].
    pub async fn commit(&self, base_version: u64, new: &AccountTexts) -> Result<u64, DbError> {
        let records = Records::from_texts(new).map_err(invalid)?;
        self.commit_records(base_version, &records).await
    }

    /// [`Store::commit`] of records.
    pub async fn commit_records(&self, base_version: u64, new: &Records) -> Result<u64, DbError> {
        new.check().map_err(invalid)?;
        self.bounded(async {
            let mut c = self.client().await?;
            let tx = c.transaction().await.map_err(self.pg())?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::LOCK_KEY])
                .await
                .map_err(self.pg())?;
            let current = version_of(
                &tx.query_one("SELECT version FROM turnmail_state FOR UPDATE", &[])
                    .await
                    .map_err(self.pg())?,
            )?;
            if current != base_version {
                return Err(DbError::Conflict {
                    base: base_version,
                    current,
                });
            }
            // The tables' triggers leave the version to this commit (schema step 3).
            tx.batch_execute("SET LOCAL turnmail.writer = 'on'")
                .await
                .map_err(self.pg())?;
            let old = self.read_all(&tx).await?;
            if !self.write_differences(&tx, &old, new).await? {
                return Ok(current);
            }
            let row = tx
                .query_one(
                    "UPDATE turnmail_state SET version = version + 1 RETURNING version",
                    &[],
                )
                .await
                .map_err(self.pg())?;
            let version = version_of(&row)?;
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&CHANNEL, &version.to_string()],
            )
            .await
            .map_err(self.pg())?;
            tx.commit().await.map_err(self.pg())?;
            Ok(version)
        })
        .await
    }

    /// Delete what went or changed, insert what came or changed; whether anything did.
    async fn write_differences(
        &self,
        tx: &Transaction<'_>,
        old: &Records,
        new: &Records,
    ) -> Result<bool, DbError> {
        let mut changed = false;
        let exec = |sql: &'static str, params: Vec<Param>| async move {
            let refs: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            tx.execute(sql, &refs).await.map_err(self.pg())
        };

        changed |= self
            .write_pairs(tx, &DOMAINS, &old.domains, &new.domains)
            .await?;
        let set = |s: &BTreeSet<String>| {
            s.iter()
                .map(|h| (h.clone(), String::new()))
                .collect::<BTreeMap<_, _>>()
        };
        changed |= self
            .write_pairs(tx, &RCPTHOSTS, &set(&old.rcpthosts), &set(&new.rcpthosts))
            .await?;

        // Routes by position: a line inserted in the middle moves the ones after it.
        let index = |v: &[Route]| {
            v.iter()
                .enumerate()
                .map(|(i, r)| (i as i32 + 1, r.clone()))
                .collect::<BTreeMap<i32, Route>>()
        };
        let (gone, came) = diff(&index(&old.routes), &index(&new.routes));
        changed |= !gone.is_empty() || !came.is_empty();
        if !gone.is_empty() {
            exec(
                "DELETE FROM routes WHERE position = ANY($1)",
                vec![Box::new(gone)],
            )
            .await?;
        }
        if !came.is_empty() {
            let mut cols: (Vec<i32>, Vec<bool>, [Vec<String>; 7]) = Default::default();
            for (pos, r) in came {
                cols.0.push(pos);
                cols.1.push(r.wildcard);
                for (c, v) in cols
                    .2
                    .iter_mut()
                    .zip([r.local, r.user, r.uid, r.gid, r.home, r.dash, r.ext])
                {
                    c.push(v);
                }
            }
            let [local, user, uid, gid, home, dash, ext] = cols.2;
            exec(
                "INSERT INTO routes (position, wildcard, local, \"user\", uid, gid, home, dash, ext) \
                 SELECT * FROM unnest($1::int[], $2::bool[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::text[], $8::text[], $9::text[])",
                vec![
                    Box::new(cols.0),
                    Box::new(cols.1),
                    Box::new(local),
                    Box::new(user),
                    Box::new(uid),
                    Box::new(gid),
                    Box::new(home),
                    Box::new(dash),
                    Box::new(ext),
                ],
            )
            .await?;
        }

        let (gone, came) = diff(&old.mailboxes, &new.mailboxes);
        changed |= !gone.is_empty() || !came.is_empty();
        if !gone.is_empty() {
            // Stored under the login as written.
            let logins: Vec<String> = gone
                .iter()
                .map(|k| old.mailboxes[k].login.clone())
                .collect();
            exec(
                "DELETE FROM mailboxes WHERE login = ANY($1)",
                vec![Box::new(logins)],
            )
            .await?;
        }
        if !came.is_empty() {
            let mut cols: [Vec<String>; 4] = Default::default();
            for (_, m) in came {
                for (c, v) in cols.iter_mut().zip([m.login, m.hash, m.owner, m.home]) {
                    c.push(v);
                }
            }
            let [login, hash, owner, home] = cols;
            exec(
                "INSERT INTO mailboxes (login, password_hash, owner, home) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])",
                vec![
                    Box::new(login),
                    Box::new(hash),
                    Box::new(owner),
                    Box::new(home),
                ],
            )
            .await?;
        }

        changed |= self
            .write_pairs(tx, &SECRETS, &old.secrets, &new.secrets)
            .await?;
        for (t, old_q, new_q) in [
            (&MAILBOX_QUOTAS, &old.mailbox_quotas, &new.mailbox_quotas),
            (&DOMAIN_QUOTAS, &old.domain_quotas, &new.domain_quotas),
        ] {
            let (gone, came) = diff(old_q, new_q);
            changed |= !gone.is_empty() || !came.is_empty();
            if !gone.is_empty() {
                exec(t.delete, vec![Box::new(gone)]).await?;
            }
            if !came.is_empty() {
                let mut keys = Vec::new();
                let (mut bytes, mut messages): (Vec<Option<i64>>, Vec<Option<i64>>) =
                    Default::default();
                for (k, l) in came {
                    keys.push(k);
                    bytes.push(l.bytes.map(signed).transpose()?);
                    messages.push(l.messages.map(signed).transpose()?);
                }
                exec(
                    t.insert,
                    vec![Box::new(keys), Box::new(bytes), Box::new(messages)],
                )
                .await?;
            }
        }

        let (gone, came) = diff(&old.sites, &new.sites);
        changed |= !gone.is_empty() || !came.is_empty();
        if !gone.is_empty() {
            exec(
                "DELETE FROM sites WHERE name = ANY($1)",
                vec![Box::new(gone)],
            )
            .await?;
        }
        if !came.is_empty() {
            let (mut names, mut settings): (Vec<String>, Vec<String>) = Default::default();
            let (mut relayhosts, mut dirs): (Vec<Option<String>>, Vec<Option<String>>) =
                Default::default();
            for (name, row) in came {
                names.push(name);
                relayhosts.push(row.relayhost);
                dirs.push(row.dir);
                settings.push(row.settings);
            }
            exec(
                "INSERT INTO sites (name, relayhost, dir, settings) \
                 SELECT n, r, d, s::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) \
                 AS x(n, r, d, s)",
                vec![
                    Box::new(names),
                    Box::new(relayhosts),
                    Box::new(dirs),
                    Box::new(settings),
                ],
            )
            .await?;
        }

        let (gone, came) = diff(&old.aliases, &new.aliases);
        changed |= !gone.is_empty() || !came.is_empty();
        // Keys are checked local@domain (the last '@' splits them, as in the text).
        let split = |a: &str| {
            a.rsplit_once('@')
                .map(|(l, d)| (l.to_string(), d.to_string()))
                .unwrap_or_default()
        };
        if !gone.is_empty() {
            let (l, d): (Vec<String>, Vec<String>) = gone.iter().map(|a| split(a)).unzip();
            exec(
                "DELETE FROM aliases a USING unnest($1::text[], $2::text[]) AS g(local, domain) \
                 WHERE a.local = g.local AND a.domain = g.domain",
                vec![Box::new(l), Box::new(d)],
            )
            .await?;
        }
        if !came.is_empty() {
            let mut cols: [Vec<String>; 3] = Default::default();
            for (a, lines) in came {
                let (l, d) = split(&a);
                cols[0].push(l);
                cols[1].push(d);
                // Lines never hold a newline (checked), so it separates them here.
                cols[2].push(lines.join("\n"));
            }
            let [l, d, lines] = cols;
            exec(
                "INSERT INTO aliases (local, domain, lines) \
                 SELECT l, d, string_to_array(t, E'\\n') \
                 FROM unnest($1::text[], $2::text[], $3::text[]) AS n(l, d, t)",
                vec![Box::new(l), Box::new(d), Box::new(lines)],
            )
            .await?;
        }
        Ok(changed)
    }

    /// The differences of one keyed table of text values (its statements in
    /// `table`); whether anything differed.
    async fn write_pairs(
        &self,
        tx: &Transaction<'_>,
        table: &Statements,
        old: &BTreeMap<String, String>,
        new: &BTreeMap<String, String>,
    ) -> Result<bool, DbError> {
        let (gone, came) = diff(old, new);
        let changed = !gone.is_empty() || !came.is_empty();
        if !gone.is_empty() {
            tx.execute(table.delete, &[&gone])
                .await
                .map_err(self.pg())?;
        }
        if !came.is_empty() {
            let (k, v): (Vec<String>, Vec<String>) = came.into_iter().unzip();
            tx.execute(table.insert, &[&k, &v])
                .await
                .map_err(self.pg())?;
        }
        Ok(changed)
    }

    /// What a login needs and no more (for `turnmail checkpassword`): the accounts it
    /// may name (as typed, `user%domain` as `user@domain`, through an alias domain, or,
    /// for a bare login, with any domain, which covers the IP-bound and default
    /// domains), their secrets and quotas, and every virtualdomains line (the alias
    /// rule needs them). The other texts are empty.
    pub async fn load_for_login(&self, login: &[u8]) -> Result<AccountTexts, DbError> {
        let Ok(login) = std::str::from_utf8(login) else {
            // No stored login can equal bytes that are not UTF-8.
            return Ok(Records::default().to_texts());
        };
        let mut login = login.to_ascii_lowercase();
        if !login.contains('@')
            && let Some(p) = login.find('%')
        {
            login.replace_range(p..p + 1, "@");
        }
        self.bounded(async {
            let mut c = self.client().await?;
            let tx = c
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(self.pg())?;
            let mut r = Records::default();
            for row in tx
                .query("SELECT name, prefix FROM domains", &[])
                .await
                .map_err(self.pg())?
            {
                r.domains.insert(text(&row, 0)?, text(&row, 1)?);
            }
            let aliases = crate::engine::aliasdomains::alias_map(
                r.domains.iter().map(|(k, p)| (k.as_bytes(), p.as_bytes())),
            );
            let mut names = vec![login.clone()];
            if let Some(t) = crate::engine::aliasdomains::canonical(login.as_bytes(), &aliases) {
                names.push(String::from_utf8_lossy(&t).into_owned());
            }
            let bare = (!login.contains('@')).then(|| format!("{}@%", like_escape(&login)));
            let rows = tx
                .query(
                    "SELECT login, password_hash, owner, home FROM mailboxes \
                     WHERE lower(login COLLATE \"C\") = ANY($1) \
                        OR ($2::text IS NOT NULL AND lower(login COLLATE \"C\") LIKE $2)",
                    &[&names, &bare],
                )
                .await
                .map_err(self.pg())?;
            for row in rows {
                let m = mailbox_of(&row)?;
                r.mailboxes.insert(m.login.to_ascii_lowercase(), m);
            }
            let keys: Vec<String> = r.mailboxes.keys().cloned().chain(names).collect();
            for row in tx
                .query(
                    "SELECT login, secret FROM secrets WHERE login = ANY($1)",
                    &[&keys],
                )
                .await
                .map_err(self.pg())?
            {
                r.secrets.insert(text(&row, 0)?, text(&row, 1)?);
            }
            for row in tx
                .query(
                    "SELECT address, bytes, messages FROM mailbox_quotas WHERE address = ANY($1)",
                    &[&keys],
                )
                .await
                .map_err(self.pg())?
            {
                r.mailbox_quotas.insert(text(&row, 0)?, limits_of(&row)?);
            }
            let domains: Vec<String> = keys
                .iter()
                .filter_map(|k| k.rsplit_once('@').map(|(_, d)| d.to_string()))
                .collect();
            for row in tx
                .query(
                    "SELECT domain, bytes, messages FROM domain_quotas WHERE domain = ANY($1)",
                    &[&domains],
                )
                .await
                .map_err(self.pg())?
            {
                r.domain_quotas.insert(text(&row, 0)?, limits_of(&row)?);
            }
            tx.commit().await.map_err(self.pg())?;
            r.check().map_err(invalid)?;
            Ok(r.to_texts())
        })
        .await
    }

    /// Schema version, accounts version and rows per table.
    pub async fn status(&self) -> Result<Status, DbError> {
        self.bounded(async {
            let c = self.client().await?;
            let schema_version = schema::current(&c, &self.target).await?;
            schema::require_latest(schema_version)?;
            let version = version_of(
                &c.query_one("SELECT version FROM turnmail_state", &[])
                    .await
                    .map_err(self.pg())?,
            )?;
            let mut counts = Vec::new();
            for table in TABLES {
                let row = c
                    .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                    .await
                    .map_err(self.pg())?;
                counts.push((table, row.try_get::<_, i64>(0).map_err(self.pg())?));
            }
            Ok(Status {
                schema_version: schema_version.unwrap_or(0),
                version,
                counts,
            })
        })
        .await
    }
}

/// How the rows of one keyed table go (`$1`: the keys) and come (`$1`: keys, then
/// the value columns as arrays).
struct Statements {
    delete: &'static str,
    insert: &'static str,
}

const DOMAINS: Statements = Statements {
    delete: "DELETE FROM domains WHERE name = ANY($1)",
    insert: "INSERT INTO domains (name, prefix) SELECT * FROM unnest($1::text[], $2::text[])",
};

/// A set: the values (all empty) are not stored.
const RCPTHOSTS: Statements = Statements {
    delete: "DELETE FROM rcpthosts WHERE name = ANY($1)",
    insert: "INSERT INTO rcpthosts (name) SELECT k FROM unnest($1::text[], $2::text[]) AS n(k, v)",
};

const SECRETS: Statements = Statements {
    delete: "DELETE FROM secrets WHERE login = ANY($1)",
    insert: "INSERT INTO secrets (login, secret) SELECT * FROM unnest($1::text[], $2::text[])",
};

const MAILBOX_QUOTAS: Statements = Statements {
    delete: "DELETE FROM mailbox_quotas WHERE address = ANY($1)",
    insert: "INSERT INTO mailbox_quotas (address, bytes, messages) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])",
};

const DOMAIN_QUOTAS: Statements = Statements {
    delete: "DELETE FROM domain_quotas WHERE domain = ANY($1)",
    insert: "INSERT INTO domain_quotas (domain, bytes, messages) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[])",
};

/// A statement's parameter, owned (futures holding it stay `Send`).
type Param = Box<dyn ToSql + Sync + Send>;

/// The account tables, in the order `db status` shows them.
pub const TABLES: [&str; 9] = [
    "domains",
    "rcpthosts",
    "routes",
    "mailboxes",
    "secrets",
    "mailbox_quotas",
    "domain_quotas",
    "aliases",
    "sites",
];

/// Keys that went or changed, and entries that came or changed.
fn diff<K: Ord + Clone, V: PartialEq + Clone>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
) -> (Vec<K>, Vec<(K, V)>) {
    let gone = old
        .iter()
        .filter(|(k, v)| new.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    let came = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (gone, came)
}

/// `s` matched literally by LIKE (backslash is LIKE's default escape).
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn invalid(e: super::model::ModelError) -> DbError {
    DbError::Invalid(e.to_string())
}

fn column(row: &Row, i: usize) -> String {
    row.columns()
        .get(i)
        .map_or_else(|| format!("column {i}"), |c| c.name().to_string())
}

fn text(row: &Row, i: usize) -> Result<String, DbError> {
    row.try_get::<_, String>(i)
        .map_err(|e| DbError::Invalid(format!("{}: {e}", column(row, i))))
}

fn version_of(row: &Row) -> Result<u64, DbError> {
    let v: i64 = row
        .try_get(0)
        .map_err(|e| DbError::Invalid(format!("turnmail_state.version: {e}")))?;
    u64::try_from(v).map_err(|_| DbError::Invalid(format!("turnmail_state.version is {v}")))
}

fn route_of(row: &Row) -> Result<Route, DbError> {
    Ok(Route {
        wildcard: row
            .try_get(0)
            .map_err(|e| DbError::Invalid(format!("routes.wildcard: {e}")))?,
        local: text(row, 1)?,
        user: text(row, 2)?,
        uid: text(row, 3)?,
        gid: text(row, 4)?,
        home: text(row, 5)?,
        dash: text(row, 6)?,
        ext: text(row, 7)?,
    })
}

fn mailbox_of(row: &Row) -> Result<Mailbox, DbError> {
    Ok(Mailbox {
        login: text(row, 0)?,
        hash: text(row, 1)?,
        owner: text(row, 2)?,
        home: text(row, 3)?,
    })
}

fn limits_of(row: &Row) -> Result<Limits, DbError> {
    let get = |i: usize| -> Result<Option<u64>, DbError> {
        let v: Option<i64> = row
            .try_get(i)
            .map_err(|e| DbError::Invalid(format!("{}: {e}", column(row, i))))?;
        Ok(v.and_then(|v| u64::try_from(v).ok()))
    };
    Ok(Limits {
        bytes: get(1)?,
        messages: get(2)?,
    })
}

fn signed(v: u64) -> Result<i64, DbError> {
    i64::try_from(v).map_err(|_| DbError::Invalid(format!("limit {v} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_what_went_and_came() {
        let old: BTreeMap<&str, i32> = [("a", 1), ("b", 2), ("c", 3)].into();
        let new: BTreeMap<&str, i32> = [("a", 1), ("b", 5), ("d", 4)].into();
        let (gone, came) = diff(&old, &new);
        assert_eq!(gone, ["b", "c"]);
        assert_eq!(came, [("b", 5), ("d", 4)]);
    }

    #[test]
    fn like_patterns_are_literal() {
        assert_eq!(like_escape("a_b%c\\"), "a\\_b\\%c\\\\");
    }
}
