//! What the running daemon counts: one registry (prometheus-client) that `turnmail
//! status` reads through the control socket and the optional metrics listener serves
//! in Prometheus's text format. Counters are bumped where things happen; gauges that
//! describe the disk (site spools, the outbound queue) are read when asked for.

use std::time::{Duration, Instant, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub listener: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    pub service: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlushLabels {
    pub trigger: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabel {
    pub site: String,
}

/// The label values each family takes, for the status snapshot and so that every
/// series exists (at 0) from the start: an alert on a rate needs the series first.
pub const LISTENERS: [&str; 4] = ["smtp", "submission", "pop3", "odmr"];
pub const CONN_REFUSALS: [&str; 4] = ["limit", "penalty", "protocol", "tcp_rules"];
/// Messages of sessions allowed to relay (submission), and their refusals.
pub const SUBMISSION_RESULTS: [&str; 4] = ["accepted", "failed", "sender", "limit"];
/// What DKIM signing made of a submitted message (`dkim::sign::Outcome` labels).
pub const DKIM_RESULTS: [&str; 4] = ["signed", "no_key", "malformed", "failed"];
pub const MESSAGE_RESULTS: [&str; 3] = ["accepted", "temporary", "rejected"];
pub const RCPT_REFUSALS: [&str; 4] = ["relaying_denied", "unknown", "bad_address", "temporary"];
pub const LOGIN_SERVICES: [&str; 3] = ["pop3", "smtp", "odmr"];
pub const LOGIN_RESULTS: [&str; 4] = ["success", "failure", "blocked", "temporary"];
pub const FLUSH_TRIGGERS: [&str; 6] = [
    "schedule", "etrn", "odmr", "operator", "new_mail", "autoturn",
];
pub const FLUSH_RESULTS: [&str; 4] = ["delivered", "nothing_queued", "failed", "locked"];
pub const QUEUE_RESULTS: [&str; 3] = ["delivered", "bounced", "deferred"];

/// The daemon's metrics.
pub struct Metrics {
    registry: Registry,
    pub connections: Family<ListenerLabel, Counter>,
    pub connections_refused: Family<RefusalLabels, Counter>,
    pub messages: Family<ResultLabel, Counter>,
    pub recipients_refused: Family<ReasonLabel, Counter>,
    pub submissions: Family<ResultLabel, Counter>,
    pub dkim: Family<ResultLabel, Counter>,
    pub logins: Family<LoginLabels, Counter>,
    pub blocked_clients: Gauge,
    pub flushes: Family<FlushLabels, Counter>,
    pub flushed_messages: Family<ResultLabel, Counter>,
    pub requests: Family<KindLabel, Counter>,
    pub queue_runs: Counter,
    pub queue_messages: Family<ResultLabel, Counter>,
    pub queue_depth: Gauge,
    pub site_queued: Family<SiteLabel, Gauge>,
    pub site_bytes: Family<SiteLabel, Gauge>,
    pub site_oldest: Family<SiteLabel, Gauge>,
    pub site_since_success: Family<SiteLabel, Gauge>,
    pub site_running: Family<SiteLabel, Gauge>,
    pub delivery_seconds: Histogram,
    pub flush_seconds: Histogram,
    started: Instant,
    started_unix: u64,
    /// Held from setting the gauges to encoding them: another render clearing the
    /// site series in between would drop them from this one.
    rendering: std::sync::Mutex<()>,
}

/// Seconds, from a millisecond to a minute: delivery is milliseconds, a flush of a
/// big spool over a slow link minutes.
fn seconds_buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        300.0,
    ]
    .into_iter()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("turnmail");
        let m = Metrics {
            connections: Family::default(),
            connections_refused: Family::default(),
            messages: Family::default(),
            recipients_refused: Family::default(),
            submissions: Family::default(),
            dkim: Family::default(),
            logins: Family::default(),
            blocked_clients: Gauge::default(),
            flushes: Family::default(),
            flushed_messages: Family::default(),
            requests: Family::default(),
            queue_runs: Counter::default(),
            queue_messages: Family::default(),
            queue_depth: Gauge::default(),
            site_queued: Family::default(),
            site_bytes: Family::default(),
            site_oldest: Family::default(),
            site_since_success: Family::default(),
            site_running: Family::default(),
            delivery_seconds: Histogram::new(seconds_buckets()),
            flush_seconds: Histogram::new(seconds_buckets()),
            registry: Registry::default(),
            started: Instant::now(),
            started_unix: crate::datetime::now_unix(),
            rendering: std::sync::Mutex::new(()),
        };
        r.register("connections", "Connections accepted", m.connections.clone());
        r.register(
            "connections_refused",
            "Connections turned away at once (over a connection limit, a penalized client, a protocol violation)",
            m.connections_refused.clone(),
        );
        r.register(
            "smtp_messages",
            "SMTP messages by outcome",
            m.messages.clone(),
        );
        r.register(
            "smtp_recipients_refused",
            "SMTP recipients refused, by reason",
            m.recipients_refused.clone(),
        );
        r.register(
            "submissions",
            "Messages of sessions allowed to relay: accepted, failed, or refused for their sender or a sending limit",
            m.submissions.clone(),
        );
        r.register(
            "dkim_messages",
            "Messages of sessions allowed to relay, by what DKIM signing made of them: signed, no_key (no key for the From domain), malformed (no single From), failed (a key that cannot be used)",
            m.dkim.clone(),
        );
        r.register(
            "logins",
            "Password checks and logins refused unchecked, by service and result",
            m.logins.clone(),
        );
        r.register(
            "login_blocked_clients",
            "Clients (IPv4 addresses, IPv6 prefixes) blocked after failed logins",
            m.blocked_clients.clone(),
        );
        r.register(
            "flushes",
            "Site flushes by trigger and result",
            m.flushes.clone(),
        );
        r.register(
            "flushed_messages",
            "Messages of site flushes by outcome",
            m.flushed_messages.clone(),
        );
        r.register(
            "turn_requests",
            "Requests for a site's mail (ETRN on the SMTP port, ATRN on the ODMR port)",
            m.requests.clone(),
        );
        r.register(
            "queue_runs",
            "Runs of the outbound queue",
            m.queue_runs.clone(),
        );
        r.register(
            "queue_messages",
            "Outbound queue messages by outcome",
            m.queue_messages.clone(),
        );
        r.register(
            "queue_depth_messages",
            "Messages in the outbound queue",
            m.queue_depth.clone(),
        );
        r.register(
            "site_queued_messages",
            "Messages waiting in a site's spool",
            m.site_queued.clone(),
        );
        r.register(
            "site_queued_bytes",
            "Bytes waiting in a site's spool",
            m.site_bytes.clone(),
        );
        r.register(
            "site_oldest_message_age_seconds",
            "Age of the oldest message in a site's spool (0 when empty)",
            m.site_oldest.clone(),
        );
        r.register(
            "site_seconds_since_last_success",
            "Seconds since a flush of the site last ended without trouble (-1: never recorded)",
            m.site_since_success.clone(),
        );
        r.register(
            "site_flush_running",
            "1 while this daemon flushes the site (it holds the site's lock)",
            m.site_running.clone(),
        );
        r.register(
            "delivery_duration_seconds",
            "From the end of an SMTP message to its reply (written and synced, or refused)",
            m.delivery_seconds.clone(),
        );
        r.register(
            "flush_duration_seconds",
            "One site flush, from its start to its end",
            m.flush_seconds.clone(),
        );
        let start = Gauge::<i64>::default();
        start.set(m.started_unix as i64);
        r.register(
            "start_time_seconds",
            "When the daemon started, in seconds since the epoch",
            start,
        );
        m.touch_all();
        Metrics { registry: r, ..m }
    }

    /// Create every labelled series at 0.
    fn touch_all(&self) {
        for l in LISTENERS {
            let _ = self
                .connections
                .get_or_create(&ListenerLabel { listener: l });
            for r in CONN_REFUSALS {
                let _ = self.connections_refused.get_or_create(&RefusalLabels {
                    listener: l,
                    reason: r,
                });
            }
        }
        for r in MESSAGE_RESULTS {
            let _ = self.messages.get_or_create(&ResultLabel { result: r });
        }
        for r in RCPT_REFUSALS {
            let _ = self
                .recipients_refused
                .get_or_create(&ReasonLabel { reason: r });
        }
        for r in SUBMISSION_RESULTS {
            let _ = self.submissions.get_or_create(&ResultLabel { result: r });
        }
        for r in DKIM_RESULTS {
            let _ = self.dkim.get_or_create(&ResultLabel { result: r });
        }
        for s in LOGIN_SERVICES {
            for r in LOGIN_RESULTS {
                let _ = self.logins.get_or_create(&LoginLabels {
                    service: s,
                    result: r,
                });
            }
        }
        for t in FLUSH_TRIGGERS {
            for r in FLUSH_RESULTS {
                let _ = self.flushes.get_or_create(&FlushLabels {
                    trigger: t,
                    result: r,
                });
            }
        }
        for r in ["delivered", "bounced", "kept"] {
            let _ = self
                .flushed_messages
                .get_or_create(&ResultLabel { result: r });
        }
        for r in QUEUE_RESULTS {
            let _ = self
                .queue_messages
                .get_or_create(&ResultLabel { result: r });
        }
        for k in ["etrn", "atrn"] {
            let _ = self.requests.get_or_create(&KindLabel { kind: k });
        }
    }

    /// An ETRN or ATRN request.
    pub fn request(&self, kind: &'static str) {
        self.requests.get_or_create(&KindLabel { kind }).inc();
    }

    pub fn connection(&self, listener: &'static str) {
        self.connections
            .get_or_create(&ListenerLabel { listener })
            .inc();
    }

    pub fn refused(&self, listener: &'static str, reason: &'static str) {
        self.connections_refused
            .get_or_create(&RefusalLabels { listener, reason })
            .inc();
    }

    pub fn message(&self, result: &'static str, took: Duration) {
        self.messages.get_or_create(&ResultLabel { result }).inc();
        self.delivery_seconds.observe(took.as_secs_f64());
    }

    /// A message of a session allowed to relay, or its refusal (see
    /// [`SUBMISSION_RESULTS`]).
    pub fn submission(&self, result: &'static str) {
        self.submissions
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// What DKIM signing made of a submitted message (see [`DKIM_RESULTS`]).
    pub fn dkim(&self, result: &'static str) {
        self.dkim.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn recipient_refused(&self, reason: &'static str) {
        self.recipients_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn login(&self, service: &'static str, result: &'static str) {
        self.logins
            .get_or_create(&LoginLabels { service, result })
            .inc();
    }

    /// A flush ended: count it by trigger and result, and its messages.
    pub fn flush(&self, trigger: &str, result: &crate::flush::FlushResult, took: Duration) {
        use crate::flush::FlushResult;
        let trigger = FLUSH_TRIGGERS
            .iter()
            .copied()
            .find(|t| t.replace('_', " ") == trigger.replace('_', " "))
            .unwrap_or("operator");
        let result_name = match result {
            FlushResult::Locked => "locked",
            FlushResult::NothingQueued { .. } => "nothing_queued",
            FlushResult::Failed { .. } => "failed",
            FlushResult::Done(s) if s.error.is_some() && s.delivered == 0 => "failed",
            FlushResult::Done(_) => "delivered",
        };
        self.flushes
            .get_or_create(&FlushLabels {
                trigger,
                result: result_name,
            })
            .inc();
        if let FlushResult::Done(s) = result {
            for (r, n) in [
                ("delivered", s.delivered),
                ("bounced", s.bounced),
                ("kept", s.kept),
            ] {
                self.flushed_messages
                    .get_or_create(&ResultLabel { result: r })
                    .inc_by(n as u64);
            }
        }
        if !matches!(result, FlushResult::Locked) {
            self.flush_seconds.observe(took.as_secs_f64());
        }
    }

    pub fn queue_run(&self, r: &crate::outbound::runner::RunReport) {
        self.queue_runs.inc();
        self.queue_settled(r);
    }

    /// Queue files settled, by a pass or sent at once after an SMTP session queued them.
    pub fn queue_settled(&self, r: &crate::outbound::runner::RunReport) {
        for (name, n) in [
            ("delivered", r.delivered),
            ("bounced", r.bounced),
            ("deferred", r.deferred),
        ] {
            self.queue_messages
                .get_or_create(&ResultLabel { result: name })
                .inc_by(n as u64);
        }
    }

    /// Set the gauges that describe the disk and the daemon's state, then encode
    /// everything in Prometheus's text format (0.0.4).
    pub fn render(&self, state: &State) -> String {
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(|p| p.into_inner());
        self.set_state(state);
        let mut out = String::new();
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    fn set_state(&self, s: &State) {
        self.blocked_clients.set(s.blocked_clients as i64);
        self.queue_depth.set(s.queue_depth as i64);
        // Sites come and go: only the ones there now have series.
        for f in [
            &self.site_queued,
            &self.site_bytes,
            &self.site_oldest,
            &self.site_since_success,
            &self.site_running,
        ] {
            f.clear();
        }
        for site in &s.sites {
            let l = SiteLabel {
                site: site.name.clone(),
            };
            self.site_queued.get_or_create(&l).set(site.queued as i64);
            self.site_bytes.get_or_create(&l).set(site.bytes as i64);
            self.site_oldest
                .get_or_create(&l)
                .set(site.oldest_age_secs.unwrap_or(0) as i64);
            self.site_since_success
                .get_or_create(&l)
                .set(site.since_success_secs.map_or(-1, |s| s as i64));
            self.site_running
                .get_or_create(&l)
                .set(i64::from(site.running));
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn started_unix(&self) -> u64 {
        self.started_unix
    }

    /// Every counter, by name and labels, for `turnmail status`.
    pub fn snapshot(&self) -> Counters {
        let mut c = Counters::default();
        for l in LISTENERS {
            c.connections.push(Count::new(
                &[("listener", l)],
                self.connections
                    .get_or_create(&ListenerLabel { listener: l })
                    .get(),
            ));
            for r in CONN_REFUSALS {
                let n = self
                    .connections_refused
                    .get_or_create(&RefusalLabels {
                        listener: l,
                        reason: r,
                    })
                    .get();
                c.connections_refused
                    .push(Count::new(&[("listener", l), ("reason", r)], n));
            }
        }
        for r in MESSAGE_RESULTS {
            let n = self
                .messages
                .get_or_create(&ResultLabel { result: r })
                .get();
            c.messages.push(Count::new(&[("result", r)], n));
        }
        for r in RCPT_REFUSALS {
            let n = self
                .recipients_refused
                .get_or_create(&ReasonLabel { reason: r })
                .get();
            c.recipients_refused.push(Count::new(&[("reason", r)], n));
        }
        for s in LOGIN_SERVICES {
            for r in LOGIN_RESULTS {
                let n = self
                    .logins
                    .get_or_create(&LoginLabels {
                        service: s,
                        result: r,
                    })
                    .get();
                c.logins
                    .push(Count::new(&[("service", s), ("result", r)], n));
            }
        }
        for t in FLUSH_TRIGGERS {
            for r in FLUSH_RESULTS {
                let n = self
                    .flushes
                    .get_or_create(&FlushLabels {
                        trigger: t,
                        result: r,
                    })
                    .get();
                c.flushes
                    .push(Count::new(&[("trigger", t), ("result", r)], n));
            }
        }
        for k in ["etrn", "atrn"] {
            let n = self.requests.get_or_create(&KindLabel { kind: k }).get();
            c.turn_requests.push(Count::new(&[("kind", k)], n));
        }
        c.queue_runs = self.queue_runs.get();
        for r in QUEUE_RESULTS {
            let n = self
                .queue_messages
                .get_or_create(&ResultLabel { result: r })
                .get();
            c.queue_messages.push(Count::new(&[("result", r)], n));
        }
        c.blocked_clients = self.blocked_clients.get().max(0) as u64;
        c
    }
}

/// One labelled count.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Count {
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: u64,
}

impl Count {
    fn new(labels: &[(&str, &str)], value: u64) -> Count {
        Count {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }
}

/// The daemon's counters as `turnmail status --json` shows them: stable field names,
/// each a list of counts by label.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    pub connections: Vec<Count>,
    pub connections_refused: Vec<Count>,
    pub messages: Vec<Count>,
    pub recipients_refused: Vec<Count>,
    pub logins: Vec<Count>,
    pub blocked_clients: u64,
    pub flushes: Vec<Count>,
    pub turn_requests: Vec<Count>,
    pub queue_runs: u64,
    pub queue_messages: Vec<Count>,
}

impl Counters {
    /// The sum of a family's counts whose labels include all of `want`.
    pub fn sum(list: &[Count], want: &[(&str, &str)]) -> u64 {
        list.iter()
            .filter(|c| {
                want.iter()
                    .all(|(k, v)| c.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|c| c.value)
            .sum()
    }
}

/// What the disk and the flusher say now, for the gauges.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub blocked_clients: usize,
    pub queue_depth: usize,
    pub sites: Vec<SiteGauge>,
}

#[derive(Debug, Clone, Default)]
pub struct SiteGauge {
    pub name: String,
    pub queued: usize,
    pub bytes: u64,
    pub oldest_age_secs: Option<u64>,
    pub since_success_secs: Option<u64>,
    pub running: bool,
}

/// Seconds from `t` to now (0 for a time in the future).
pub fn age_secs(t: SystemTime) -> u64 {
    SystemTime::now()
        .duration_since(t)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_text_format_and_the_snapshot() {
        let m = Metrics::new();
        m.connection("smtp");
        m.login("pop3", "failure");
        m.login("pop3", "failure");
        m.message("accepted", Duration::from_millis(3));
        let text = m.render(&State {
            blocked_clients: 2,
            queue_depth: 5,
            sites: vec![SiteGauge {
                name: "acme".into(),
                queued: 3,
                bytes: 4096,
                oldest_age_secs: Some(70),
                since_success_secs: None,
                running: true,
            }],
        });
        assert!(
            text.contains("turnmail_connections_total{listener=\"smtp\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("turnmail_logins_total{service=\"pop3\",result=\"failure\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("turnmail_site_queued_messages{site=\"acme\"} 3"),
            "{text}"
        );
        assert!(text.contains("turnmail_site_seconds_since_last_success{site=\"acme\"} -1"));
        assert!(text.contains("turnmail_login_blocked_clients 2"), "{text}");
        assert!(
            text.contains("turnmail_delivery_duration_seconds_count 1"),
            "{text}"
        );
        let s = m.snapshot();
        assert_eq!(Counters::sum(&s.logins, &[("result", "failure")]), 2);
        assert_eq!(Counters::sum(&s.connections, &[]), 1);
        assert_eq!(s.blocked_clients, 2);
        // A site gone from disk loses its series.
        let text = m.render(&State::default());
        assert!(!text.contains("site=\"acme\""), "{text}");
    }
}
