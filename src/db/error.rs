//! What can go wrong talking to the accounts database, split into the failures a
//! caller should retry (the database is unreachable, an edit raced another) and
//! those it should report (no schema, a record that cannot be stored).

/// A database operation's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    /// `[postgres]` settings that cannot work (an unparsable url, a zero count).
    #[error("{0}")]
    Config(String),
    /// The database cannot be reached or stopped answering: temporary.
    #[error("database unavailable ({target}): {reason}")]
    Unavailable { target: String, reason: String },
    /// The accounts moved on since the edit read them: read again and redo it.
    #[error("the accounts changed meanwhile (read at version {base}, now {current}): try again")]
    Conflict { base: u64, current: u64 },
    /// The schema is missing, older or newer than this program's.
    #[error("database schema: {0}")]
    Schema(String),
    /// Records that cannot be stored or read back (a text that does not parse, a
    /// field the file format cannot hold, a row that breaks the format's rules).
    #[error("{0}")]
    Invalid(String),
    /// Any other refusal by the server (a constraint, a permission).
    #[error("database refused ({target}): {reason}")]
    Refused { target: String, reason: String },
}

impl DbError {
    /// Whether retrying later may succeed (the faces answer 4xx, exit 111).
    pub fn is_temporary(&self) -> bool {
        matches!(self, DbError::Unavailable { .. } | DbError::Conflict { .. })
    }

    /// Classify a client error: lost connections, shutdowns, resource shortages and
    /// serialisation failures are temporary; a missing table means no schema.
    pub fn from_pg(target: &str, e: &tokio_postgres::Error) -> DbError {
        let Some(db) = e.as_db_error() else {
            // No SQLSTATE: an I/O error, a closed connection, a timeout.
            return DbError::Unavailable {
                target: target.to_string(),
                reason: chain(e),
            };
        };
        let code = db.code().code();
        let temporary = ["08", "53", "57P", "58"]
            .iter()
            .any(|p| code.starts_with(p))
            || matches!(code, "40001" | "40P01" | "55P03");
        if temporary {
            DbError::Unavailable {
                target: target.to_string(),
                reason: format!("{} ({code})", db.message()),
            }
        } else if code == "42P01" {
            DbError::Schema(format!(
                "{} ({target}): run `turnmail db init` first",
                db.message()
            ))
        } else {
            DbError::Refused {
                target: target.to_string(),
                reason: format!("{} ({code})", db.message()),
            }
        }
    }
}

/// An error and its causes on one line ("error connecting to server: No such file").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}

/// [`chain`] for other error types of this module.
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    chain(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_ones_are_named() {
        let u = DbError::Unavailable {
            target: "host=/x".into(),
            reason: "gone".into(),
        };
        assert!(u.is_temporary());
        assert!(u.to_string().contains("database unavailable (host=/x)"));
        assert!(
            DbError::Conflict {
                base: 1,
                current: 2
            }
            .is_temporary()
        );
        assert!(!DbError::Schema("x".into()).is_temporary());
        assert!(!DbError::Invalid("x".into()).is_temporary());
    }
}
