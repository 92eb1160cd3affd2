//! The site table's text (`[accounts] backend = "postgres"`): one site per line,
//! `NAME<TAB>RELAYHOST<TAB>DIR<TAB>SETTINGS`, where an empty RELAYHOST is a site
//! without one (like a missing RELAYHOST file), an empty DIR is `ROOT/sites/NAME`, and
//! SETTINGS is site.toml's keys as one JSON object (compact, keys sorted; empty or
//! `{}`: no site.toml). A row is valid only when SETTINGS reads as [`SiteSettings`]
//! (unknown keys refused, as in site.toml) and can be written back as a site.toml, so
//! a row the program cannot use is refused with its name, never half-used. Pure: the
//! store, discovery and the edits share it.

use std::collections::BTreeMap;

use super::relayhost::Relayhost;
use super::site::{MAX_CONNECTIONS, SiteSettings};

/// Longest text accepted (all sites of one load are held in memory together).
const MAX_TEXT: usize = 1 << 28;

/// Longest site name (as `turnmail site add` allows).
pub const MAX_NAME: usize = 64;

/// One row of the `sites` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteRow {
    /// `host[:port]`; None: the site has no RELAYHOST (its mail is never flushed).
    pub relayhost: Option<String>,
    /// An absolute path; None: `ROOT/sites/NAME`.
    pub dir: Option<String>,
    /// site.toml's keys as canonical JSON (see [`canonical_settings`]), `{}` for none.
    pub settings: String,
}

/// Name → row.
pub type SiteRows = BTreeMap<String, SiteRow>;

/// A line of the text that is not a site.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sites line {line}: {reason}")]
pub struct SiteTextError {
    pub line: usize,
    pub reason: String,
}

/// Why `name` cannot be a site's name, if it cannot: the rules of `turnmail site
/// add` (lowercase letters, digits, `.`, `_`, `-`, `+`; not starting with `.` or
/// `-`, no `..`, not `default`).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!(
            "site name {name:?}: empty or longer than {MAX_NAME}"
        ));
    }
    if !name.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'+')
    }) {
        return Err(format!(
            "site name {name:?}: only lowercase letters, digits, '.', '_', '-' and '+'"
        ));
    }
    if name.starts_with(['.', '-']) || name.contains("..") {
        return Err(format!(
            "site name {name:?}: starts with '.' or '-', or contains '..'"
        ));
    }
    if name == "default" || name.ends_with("-default") {
        return Err(format!(
            "site name {name:?}: 'default' names qmail's catch-all file"
        ));
    }
    Ok(())
}

fn plain(what: &str, s: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_control()) {
        return Err(format!("{what} {s:?} has a control character"));
    }
    Ok(())
}

/// The settings a JSON object stands for, if it reads as site.toml would.
pub fn settings_of(json: &str) -> Result<SiteSettings, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("settings are not JSON: {e}"))?;
    let serde_json::Value::Object(map) = &v else {
        return Err("settings are not a JSON object".into());
    };
    if map.values().any(serde_json::Value::is_null) {
        // site.toml has no null: the key is left out instead.
        return Err("settings hold a null (leave the key out)".into());
    }
    let s: SiteSettings = serde_json::from_value(v.clone()).map_err(|e| {
        // serde names no key for a wrong type: the first key that fails alone does.
        let culprit = map.iter().find_map(|(k, x)| {
            let one = serde_json::Value::Object([(k.clone(), x.clone())].into_iter().collect());
            serde_json::from_value::<SiteSettings>(one)
                .err()
                .map(|e| format!("settings: {k}: {e}"))
        });
        culprit.unwrap_or_else(|| format!("settings: {e}"))
    })?;
    // What a site.toml could not say back is refused here, not at export.
    toml::Value::try_from(&v).map_err(|e| format!("settings cannot be a site.toml: {e}"))?;
    if let Some(n) = s.connections
        && !(1..=MAX_CONNECTIONS).contains(&n)
    {
        return Err(format!(
            "settings: connections = {n}: between 1 and {MAX_CONNECTIONS}"
        ));
    }
    Ok(s)
}

/// `json` in the one form the table's text holds: compact, keys sorted (so a row
/// read back from jsonb compares equal to the row written).
pub fn canonical_settings(json: &str) -> Result<String, String> {
    settings_of(json)?;
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(v.to_string())
}

/// A site.toml's text as the row's settings (only the keys it has).
pub fn settings_from_toml(text: &str) -> Result<String, String> {
    let t: toml::Table = toml::from_str(text).map_err(|e| format!("site.toml: {e}"))?;
    let v = serde_json::to_value(&t).map_err(|e| format!("site.toml: {e}"))?;
    canonical_settings(&v.to_string()).map_err(|e| format!("site.toml: {e}"))
}

/// The row's settings as a site.toml; None when it has none.
pub fn settings_to_toml(json: &str) -> Result<Option<String>, String> {
    settings_of(json)?;
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    if v.as_object().is_some_and(|m| m.is_empty()) {
        return Ok(None);
    }
    let t: toml::Table = toml::Value::try_from(&v)
        .map_err(|e| e.to_string())?
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string())?;
    toml::to_string(&t).map(Some).map_err(|e| e.to_string())
}

/// Why a row cannot be used, if it cannot; its settings when it can.
pub fn check_row(name: &str, row: &SiteRow) -> Result<SiteSettings, String> {
    check_name(name)?;
    if let Some(r) = &row.relayhost {
        plain("relayhost", r)?;
        if Relayhost::parse(r).is_none() || r.trim() != r {
            return Err(format!("relayhost {r:?} is not host[:port]"));
        }
    }
    if let Some(d) = &row.dir {
        plain("dir", d)?;
        if !d.starts_with('/') || d.ends_with([' ', '\t']) {
            return Err(format!("dir {d:?} is not an absolute path"));
        }
    }
    let s = settings_of(&row.settings)?;
    if canonical_settings(&row.settings)? != row.settings {
        return Err("settings are not in canonical form".into());
    }
    Ok(s)
}

/// Read the text: blank lines and `#` comments skipped; every row checked.
pub fn parse(text: &[u8]) -> Result<SiteRows, SiteTextError> {
    let mut out = SiteRows::new();
    if text.len() > MAX_TEXT {
        return Err(SiteTextError {
            line: 0,
            reason: "the text is too long".into(),
        });
    }
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let bad = |reason: String| SiteTextError {
            line: i + 1,
            reason,
        };
        if raw.is_empty() || raw.starts_with(b"#") {
            continue;
        }
        let line = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8".into()))?;
        let f: Vec<&str> = line.splitn(4, '\t').collect();
        let [name, relayhost, dir, settings] = f[..] else {
            return Err(bad("not NAME<TAB>RELAYHOST<TAB>DIR<TAB>SETTINGS".into()));
        };
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let row = SiteRow {
            relayhost: opt(relayhost),
            dir: opt(dir),
            settings: if settings.is_empty() {
                "{}".into()
            } else {
                settings.to_string()
            },
        };
        check_row(name, &row).map_err(|e| bad(format!("site {name:?}: {e}")))?;
        if out.insert(name.to_string(), row).is_some() {
            return Err(bad(format!("site {name:?} twice")));
        }
    }
    Ok(out)
}

/// The text of `rows` (check them first: [`check_row`]).
pub fn render(rows: &SiteRows) -> Vec<u8> {
    let mut out = String::new();
    for (name, r) in rows {
        out.push_str(name);
        for f in [&r.relayhost, &r.dir] {
            out.push('\t');
            out.push_str(f.as_deref().unwrap_or(""));
        }
        out.push('\t');
        out.push_str(&r.settings);
        out.push('\n');
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rows_read_and_write() {
        let text = b"# sites\n\nacme\tmx.acme.example:2525\t\t{\"schedule\":\"*/5 * * * *\"}\n\
                     old\t\t/home/serialmail/old\t{}\n";
        let rows = parse(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows["acme"].relayhost.as_deref(),
            Some("mx.acme.example:2525")
        );
        assert_eq!(rows["old"].dir.as_deref(), Some("/home/serialmail/old"));
        let again = render(&rows);
        assert_eq!(parse(&again).unwrap(), rows);
        assert!(String::from_utf8(again).unwrap().starts_with("acme\t"));
    }

    #[test]
    fn bad_rows_are_refused_with_their_name() {
        for (line, why) in [
            ("Acme\t\t\t{}", "lowercase"),
            ("a\tmx example\t\t{}", "relayhost"),
            ("a\t\tsites/a\t{}", "absolute"),
            ("a\t\t\t{\"lifetme_days\":3}", "unknown field"),
            ("a\t\t\t{\"tls\":\"maybe\"}", "settings: tls"),
            ("a\t\t\t[1]", "object"),
            ("a\t\t\t{\"port\":null}", "null"),
            ("a\t\t\t{\"connections\":99}", "connections"),
            ("a\t\t\t{ \"port\": 25 }", "canonical"),
            ("a\t\t{}", "NAME<TAB>"),
            ("default\t\t\t{}", "default"),
        ] {
            let e = parse(line.as_bytes()).unwrap_err();
            assert_eq!(e.line, 1);
            assert!(e.reason.contains(why), "{line}: {e}");
        }
        assert!(parse(b"a\t\t\t{}\na\t\t\t{}\n").is_err());
        assert!(parse(b"a\t\t\t\xff\n").is_err());
    }

    #[test]
    fn site_toml_travels_as_json_and_back() {
        let toml_text = "schedule = \"*/5 * * * *\"\ndomains = [\"a.example\"]\nport = 2525\n";
        let json = settings_from_toml(toml_text).unwrap();
        assert_eq!(
            json,
            r#"{"domains":["a.example"],"port":2525,"schedule":"*/5 * * * *"}"#
        );
        let back = settings_to_toml(&json).unwrap().unwrap();
        let a: SiteSettings = toml::from_str(toml_text).unwrap();
        let b: SiteSettings = toml::from_str(&back).unwrap();
        assert_eq!(a, b);
        assert_eq!(settings_to_toml("{}").unwrap(), None);
        assert!(settings_from_toml("bogus = 1\n").is_err());
        assert!(settings_from_toml("when = 1979-05-27\n").is_err());
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9_+-]{0,10}"
            .prop_filter("default", |n| n != "default" && !n.ends_with("-default"))
    }

    fn row() -> impl Strategy<Value = SiteRow> {
        (
            proptest::option::of(
                "[a-z0-9.-]{1,12}(:[0-9]{1,4})?"
                    .prop_filter("parses", |r| Relayhost::parse(r).is_some()),
            ),
            proptest::option::of("/[a-zA-Z0-9_./-]{0,20}"),
            proptest::option::of("[ -~]{0,10}"),
            proptest::option::of(1u64..1000),
            proptest::collection::vec("[a-z.]{1,8}", 0..3),
            any::<bool>(),
        )
            .prop_map(|(relayhost, dir, schedule, days, domains, on)| {
                let s = SiteSettings {
                    schedule,
                    lifetime_days: days,
                    domains,
                    always_on: on,
                    ..SiteSettings::default()
                };
                let t = toml::to_string(&s).unwrap();
                SiteRow {
                    relayhost,
                    dir: dir.filter(|d| !d.ends_with(' ')),
                    settings: settings_from_toml(&t).unwrap(),
                }
            })
    }

    proptest! {
        #[test]
        fn rows_to_text_and_back_are_the_identity(
            rows in proptest::collection::btree_map(name(), row(), 0..6)
        ) {
            for (n, r) in &rows {
                prop_assert!(check_row(n, r).is_ok(), "{n}: {:?}", check_row(n, r));
            }
            prop_assert_eq!(parse(&render(&rows)).unwrap(), rows);
        }

        #[test]
        fn any_text_is_read_or_refused(text in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&text);
        }

        #[test]
        fn tabbed_lines_are_read_or_refused(
            f in proptest::collection::vec("[ -~\t]{0,12}", 4)
        ) {
            let _ = parse(f.join("\t").as_bytes());
        }
    }
}
