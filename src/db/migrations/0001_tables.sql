-- turnmail schema step 1: the records of the six account files.
-- "Lowercase" is ASCII-lowercase (qmail's case rule), hence the C collation in checks.

CREATE TABLE turnmail_state (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint NOT NULL DEFAULT 0 CHECK (version >= 0)
);
INSERT INTO turnmail_state (id, version) VALUES (true, 0);
COMMENT ON TABLE turnmail_state IS
    'turnmail: one row; version is bumped by every change and sent with NOTIFY turnmail_accounts';

CREATE TABLE domains (
    name text PRIMARY KEY
        CHECK (name = lower(name COLLATE "C") AND strpos(name, ':') = 0
               AND strpos(name, E'\n') = 0 AND name NOT LIKE '#%'),
    prefix text NOT NULL CHECK (strpos(prefix, E'\n') = 0)
);
COMMENT ON TABLE domains IS
    'turnmail: control/virtualdomains, a key (domain, .suffix, user@domain or empty) and the prefix of its addresses; an alias domain names another domain''s prefix';

CREATE TABLE rcpthosts (
    name text PRIMARY KEY
        CHECK (name <> '' AND name = lower(name COLLATE "C")
               AND strpos(name, E'\n') = 0 AND name NOT LIKE '#%')
);
COMMENT ON TABLE rcpthosts IS 'turnmail: control/rcpthosts, the domains mail is accepted for';

CREATE TABLE routes (
    position integer PRIMARY KEY CHECK (position > 0),
    wildcard boolean NOT NULL,
    local text NOT NULL,
    "user" text NOT NULL,
    uid text NOT NULL,
    gid text NOT NULL,
    home text NOT NULL,
    dash text NOT NULL,
    ext text NOT NULL
);
COMMENT ON TABLE routes IS
    'turnmail: users/assign lines in order (wildcard: a + line; ext is its pre)';

CREATE TABLE mailboxes (
    login text PRIMARY KEY CHECK (login <> '' AND login NOT LIKE '#%'),
    password_hash text NOT NULL,
    owner text NOT NULL CHECK (owner <> ''),
    home text NOT NULL CHECK (home LIKE '/%')
);
CREATE UNIQUE INDEX mailboxes_login_key ON mailboxes (lower(login COLLATE "C"));
COMMENT ON TABLE mailboxes IS
    'turnmail: users/poppasswd, POP accounts (login:crypt hash:owner:home)';

CREATE TABLE secrets (
    login text PRIMARY KEY CHECK (login <> '' AND login = lower(login COLLATE "C")),
    secret text NOT NULL CHECK (secret <> '')
);
COMMENT ON TABLE secrets IS
    'turnmail: users/secrets, APOP and CRAM-MD5 secrets (plaintext or {CRAM-MD5} states)';

CREATE TABLE mailbox_quotas (
    address text PRIMARY KEY
        CHECK (address = lower(address COLLATE "C") AND address LIKE '_%@_%'),
    bytes bigint CHECK (bytes > 0),
    messages bigint CHECK (messages > 0)
);
COMMENT ON TABLE mailbox_quotas IS
    'turnmail: users/quota user@domain lines (both limits NULL: NOQUOTA)';

CREATE TABLE domain_quotas (
    domain text PRIMARY KEY
        CHECK (domain <> '' AND domain = lower(domain COLLATE "C") AND strpos(domain, '@') = 0),
    bytes bigint CHECK (bytes > 0),
    messages bigint CHECK (messages > 0)
);
COMMENT ON TABLE domain_quotas IS 'turnmail: users/quota @domain lines, a domain''s default';
