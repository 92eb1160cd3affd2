//! `turnmail status`: one look at the whole host: from its files (no daemon needed)
//! domains, mailboxes, sites with their queues, last and next flush, the outbound queue
//! and the flush counts of the last 24 hours from the sites' status files; and, when a
//! daemon answers on the control socket, whether it runs, since when, on which
//! addresses, and its counters (the next flushes are then the daemon's own plan).

use std::path::Path;
use std::time::SystemTime;

use serde_json::json;

use super::error::Result;
use super::{domain, layout, site, table, user};
use crate::daemon::control::{DaemonState, Request, Response};
use crate::daemon::metrics::Counters;

pub fn run(root: &Path, node: Option<&crate::cluster::NodeName>, json: bool) -> Result<()> {
    let domains = domain::rows(root)?;
    let users = user::rows(root, None)?;
    let (mut sites, problems) = site::rows(root)?;
    let daemon = match crate::daemon::control::ask(root, node, &Request::Status) {
        Some(Response::Status(d)) => Some(*d),
        _ => None,
    };
    if let Some(d) = &daemon {
        for row in &mut sites {
            if let Some(t) = d
                .sites
                .iter()
                .find(|s| s.name == row.site)
                .and_then(|s| s.next_run.as_deref())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            {
                row.next_run = Some(t.timestamp());
            }
        }
    }
    let (queued, oldest) = layout::spool_usage(&root.join("queue"));
    let oldest_secs = oldest
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(|d| d.as_secs());
    let now = crate::datetime::now_unix();
    let status_dir = root.join("run/sites");
    let (mut delivered, mut bounced, mut flushes) = (0, 0, 0);
    for s in &sites {
        if let Some(st) = crate::flush::status::read(&status_dir, &s.site)
            && now.saturating_sub(st.last_attempt) < 86_400
        {
            flushes += 1;
            delivered += st.last_delivered;
            bounced += st.last_bounced;
        }
    }
    let messages: u64 = users.iter().map(|u| u.messages).sum();
    let bytes: u64 = users.iter().map(|u| u.bytes).sum();
    let with_quota = users.iter().filter(|u| !u.quota.limits.is_none()).count();
    let over_quota: Vec<&str> = users
        .iter()
        .filter(|u| u.quota.usage.is_some_and(|q| q.is_over()))
        .map(|u| u.login.as_str())
        .collect();
    if json {
        table::print_json(&json!({
            "root": root.display().to_string(),
            "domains": domains,
            "users": { "count": users.len(), "messages": messages, "bytes": bytes,
                       "with_quota": with_quota, "over_quota": over_quota },
            "sites": sites,
            "queue": { "queued": queued, "oldest_secs": oldest_secs },
            "last_24h": { "sites_flushed": flushes, "delivered": delivered, "bounced": bounced },
            "daemon": daemon,
            "accounts": accounts_info(root)?,
            "problems": problems,
        }));
        return Ok(());
    }
    println!("mail root  {}", root.display());
    let socket = crate::daemon::control::socket_path(root, node);
    print_daemon(
        daemon.as_ref(),
        socket.strip_prefix(root).unwrap_or(&socket),
    );
    if let Some(line) = accounts_line(root, daemon.as_ref())? {
        println!("accounts   {line}");
    }
    println!(
        "domains    {} ({} not in rcpthosts)",
        domains.len(),
        domains.iter().filter(|d| !d.accepted).count()
    );
    println!(
        "mailboxes  {} holding {} message(s), {}",
        users.len(),
        messages,
        table::human_bytes(bytes)
    );
    println!(
        "quotas     {with_quota} mailbox(es) with a quota, {} over it{}",
        over_quota.len(),
        if over_quota.is_empty() {
            String::new()
        } else {
            format!(": {}", over_quota.join(", "))
        }
    );
    println!(
        "queue      {queued} outbound message(s){}",
        oldest_secs
            .map(|s| format!(", oldest {}", table::human_age(s)))
            .unwrap_or_default()
    );
    println!(
        "last 24h   {flushes} site flush(es) recorded: {delivered} delivered, {bounced} bounced \
         (last flush of each site)"
    );
    println!("sites      {}", sites.len());
    if !sites.is_empty() {
        println!();
        print!("{}", site::site_table(&sites).render());
    }
    for p in problems {
        eprintln!("turnmail: {p}");
    }
    Ok(())
}

/// The account source with the database's version (only said for `postgres`).
fn accounts_info(root: &Path) -> Result<crate::engine::backend::BackendInfo> {
    let config = crate::config::Config::load(root)?;
    Ok(crate::engine::backend::BackendInfo::ask(&config))
}

fn accounts_line(root: &Path, d: Option<&DaemonState>) -> Result<Option<String>> {
    let info = accounts_info(root)?;
    if info.backend == "files" {
        return Ok(None);
    }
    let mut line = info.line();
    if let Some(a) = d.and_then(|d| d.accounts.as_ref()) {
        match (&a.unavailable, a.version) {
            (Some(why), _) => {
                line.push_str(&format!("; the daemon answers temporary failures: {why}"))
            }
            (None, Some(v)) => line.push_str(&format!("; the daemon has version {v}")),
            (None, None) => {}
        }
    }
    Ok(Some(line))
}

fn print_daemon(d: Option<&DaemonState>, socket: &Path) {
    let Some(d) = d else {
        println!("daemon     not running (no answer on {})", socket.display());
        return;
    };
    let node = d
        .node
        .as_deref()
        .map(|n| format!("node {n}, "))
        .unwrap_or_default();
    println!(
        "daemon     running: {node}pid {}, version {}, up {} (since {})",
        d.pid,
        d.version,
        table::human_age(d.uptime_secs),
        crate::datetime::rfc5322(d.started)
    );
    for l in &d.listening {
        println!("           {:<8} {}", l.service, l.address);
    }
    let c = &d.counters;
    let sum = Counters::sum;
    println!(
        "connections {} ({} refused)   messages {} accepted, {} refused, {} deferred   \
         recipients refused {}",
        sum(&c.connections, &[]),
        sum(&c.connections_refused, &[]),
        sum(&c.messages, &[("result", "accepted")]),
        sum(&c.messages, &[("result", "rejected")]),
        sum(&c.messages, &[("result", "temporary")]),
        sum(&c.recipients_refused, &[]),
    );
    println!(
        "logins     {} good, {} failed, {} refused unchecked; {} client(s) blocked now",
        sum(&c.logins, &[("result", "success")]),
        sum(&c.logins, &[("result", "failure")]),
        sum(&c.logins, &[("result", "blocked")]),
        c.blocked_clients,
    );
    println!(
        "flushes    {} delivered, {} found nothing, {} failed, {} locked elsewhere; \
         queue runs {}",
        sum(&c.flushes, &[("result", "delivered")]),
        sum(&c.flushes, &[("result", "nothing_queued")]),
        sum(&c.flushes, &[("result", "failed")]),
        sum(&c.flushes, &[("result", "locked")]),
        c.queue_runs,
    );
}
