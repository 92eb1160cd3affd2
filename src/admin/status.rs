//! `turnmail status`: one look at the whole host from its files alone (no daemon
//! needed): domains, mailboxes, sites with their queues and last flush, the outbound
//! queue, and the flush counts of the last 24 hours from the sites' status files.

use std::path::Path;
use std::time::SystemTime;

use serde_json::json;

use super::error::Result;
use super::{domain, layout, site, table, user};

pub fn run(root: &Path, json: bool) -> Result<()> {
    let domains = domain::rows(root)?;
    let users = user::rows(root, None)?;
    let (sites, problems) = site::rows(root)?;
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
    if json {
        table::print_json(&json!({
            "root": root.display().to_string(),
            "domains": domains,
            "users": { "count": users.len(), "messages": messages, "bytes": bytes },
            "sites": sites,
            "queue": { "queued": queued, "oldest_secs": oldest_secs },
            "last_24h": { "sites_flushed": flushes, "delivered": delivered, "bounced": bounced },
            "problems": problems,
        }));
        return Ok(());
    }
    println!("mail root  {}", root.display());
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
