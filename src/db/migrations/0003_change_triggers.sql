-- turnmail schema step 3: a change made by an operator's SQL to any account table
-- bumps the version and announces it, as turnmail's own commits do, so that every
-- daemon reloads and an editor that read the old version gets a conflict instead of
-- writing over the change. turnmail's commits set turnmail.writer for their
-- transaction and bump the version once themselves.

CREATE FUNCTION turnmail_touch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    IF coalesce(current_setting('turnmail.writer', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    UPDATE turnmail_state SET version = version + 1 RETURNING version INTO v;
    PERFORM pg_notify('turnmail_accounts', v::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER domains_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON domains
    FOR EACH STATEMENT EXECUTE FUNCTION turnmail_touch();
CREATE TRIGGER rcpthosts_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON rcpthosts
    FOR EACH STATEMENT EXECUTE FUNCTION turnmail_touch();
CREATE TRIGGER routes_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON routes
    FOR EACH STATEMENT EXECUTE FUNCTION turnmail_touch();
CREATE TRIGGER mailboxes_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mailboxes
    FOR EACH STATEMENT EXECUTE FUNCTION turnmail_touch();
CREATE TRIGGER secrets_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON secrets
    FOR EACH STATEMENT EXECUTE FUNCTION turnmail_touch();
CREATE TRIGGER mailbox_quotas_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mailbox_quotas
    FOR EACH STATEMENT EXECUTE FUNCTION turnmail_touch();
CREATE TRIGGER domain_quotas_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON domain_quotas
    FOR EACH STATEMENT EXECUTE FUNCTION turnmail_touch();
