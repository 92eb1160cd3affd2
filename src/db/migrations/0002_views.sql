-- turnmail schema step 2: views for operators' SQL, and the index behind them.

CREATE INDEX domains_prefix ON domains (lower(prefix COLLATE "C"));

-- alias -> target: a key routed to the prefix P of a domain whose own line is P:P
-- (engine/aliasdomains.rs); sites (site- prefixes), .suffix, address and empty keys
-- are never aliases.
CREATE VIEW alias_domains AS
SELECT a.name AS domain, t.name AS target
FROM domains a
JOIN domains t ON t.name = lower(a.prefix COLLATE "C")
               AND lower(t.prefix COLLATE "C") = t.name
WHERE a.name <> t.name
  AND a.name <> '' AND a.name NOT LIKE '.%' AND strpos(a.name, '@') = 0
  AND t.name NOT LIKE 'site-%';

-- A mailbox with its domain, its effective quota (its own line, else its domain's
-- default) and where that comes from, and whether it has a secret.
CREATE VIEW accounts AS
SELECT m.login,
       substring(lower(m.login COLLATE "C") from '@([^@]*)$') AS domain,
       m.owner,
       m.home,
       CASE WHEN mq.address IS NOT NULL THEN mq.bytes ELSE dq.bytes END AS quota_bytes,
       CASE WHEN mq.address IS NOT NULL THEN mq.messages ELSE dq.messages END AS quota_messages,
       CASE WHEN mq.address IS NOT NULL THEN 'mailbox'
            WHEN dq.domain IS NOT NULL THEN 'domain'
            ELSE 'none' END AS quota_source,
       s.login IS NOT NULL AS has_secret
FROM mailboxes m
LEFT JOIN mailbox_quotas mq ON mq.address = lower(m.login COLLATE "C")
LEFT JOIN domain_quotas dq
       ON dq.domain = substring(lower(m.login COLLATE "C") from '@([^@]*)$')
LEFT JOIN secrets s ON s.login = lower(m.login COLLATE "C");
