-- turnmail schema step 5: customer sites (serialmail's per-site spools): where a
-- site's mail is flushed to and its site.toml, in the accounts' version; the spool,
-- its RELAYHOST lock file and the mail stay on disk in the site's directory.

CREATE TABLE sites (
    -- The rules of `turnmail site add`: the name is the directory's.
    name text PRIMARY KEY
        CHECK (name ~ '^[a-z0-9_+][a-z0-9._+-]{0,63}$' COLLATE "C"
               AND strpos(name, '..') = 0
               AND name <> 'default' AND name NOT LIKE '%-default'),
    -- host[:port] as RELAYHOST holds it; NULL: no RELAYHOST, never flushed.
    relayhost text
        CHECK (relayhost <> '' AND relayhost !~ '[[:space:][:cntrl:]]'),
    -- NULL: ROOT/sites/NAME; else an absolute path (a converted serialmail host's).
    dir text
        CHECK (dir LIKE '/%' AND dir !~ '[[:cntrl:]]'),
    -- site.toml's keys (validated by turnmail on load: a row it cannot read is
    -- refused with its name; a key site.toml does not know is refused here already).
    settings jsonb NOT NULL DEFAULT '{}'
        CHECK (jsonb_typeof(settings) = 'object'
               AND settings - ARRAY[
                   'prefix', 'lifetime_days', 'tls', 'helo', 'port', 'domains',
                   'schedule', 'timezone', 'always_on', 'accounts', 'etrn',
                   'etrn_to_client', 'etrn_networks', 'autoturn', 'relay_networks',
                   'connections'
               ] = '{}'::jsonb)
);
COMMENT ON TABLE sites IS
    'turnmail: customer sites: RELAYHOST (host[:port]), the directory of the spool (NULL: ROOT/sites/NAME) and site.toml''s keys as a JSON object';

CREATE TRIGGER sites_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON sites
    FOR EACH STATEMENT EXECUTE FUNCTION turnmail_touch();
