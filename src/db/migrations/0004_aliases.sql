-- turnmail schema step 4: aliases, the way vpopmail's valias table has them: the
-- lines a domain's .qmail-LOCAL file would hold, consulted before the files.

CREATE TABLE aliases (
    domain text NOT NULL
        CHECK (domain <> '' AND domain = lower(domain COLLATE "C")
               AND strpos(domain, '@') = 0 AND strpos(domain, ':') = 0
               AND strpos(domain, E'\n') = 0 AND strpos(domain, '/') = 0),
    local text NOT NULL
        CHECK (local <> '' AND local = lower(local COLLATE "C")
               AND strpos(local, ':') = 0 AND strpos(local, E'\n') = 0
               AND strpos(local, '/') = 0 AND local NOT LIKE '#%'),
    lines text[] NOT NULL CHECK (cardinality(lines) > 0),
    PRIMARY KEY (domain, local)
);
COMMENT ON TABLE aliases IS
    'turnmail: aliases (valias): the .qmail-LOCAL lines of a domain (&address forwards, ./Maildir/ or /abs/Maildir/ deliveries), read before the domain''s .qmail files';

CREATE TRIGGER aliases_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON aliases
    FOR EACH STATEMENT EXECUTE FUNCTION turnmail_touch();
