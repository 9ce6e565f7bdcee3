-- Limits of a shared service: token scopes, per-company settings and a daily SMS cap,
-- rate-limit buckets shared by every `serve` replica, and a notice when a token stops
-- being valid, so replicas that cache tokens drop it at once.

-- A token may only read (reports, listings) or also write (create, delete, send).
-- Existing tokens keep the rights they had.
ALTER TABLE api_tokens ADD COLUMN scope text NOT NULL DEFAULT 'write' CHECK (scope IN ('read', 'write'));
GRANT SELECT (scope) ON api_tokens TO survey_auth;

-- How many SMS a company may queue per UTC day; 0 stops its sending.
ALTER TABLE companies ADD COLUMN daily_sms_cap integer NOT NULL DEFAULT 10000
    CHECK (daily_sms_cap BETWEEN 0 AND 10000000);
-- The operator's admin API (which runs in `serve`, as survey_app) changes both settings.
GRANT UPDATE (daily_sms_cap) ON companies TO survey_app;

-- What each company queued per UTC day, counted in the transaction that queues, so the
-- cap holds exactly under concurrent calls (the row is locked only from the last
-- statement of a send to its commit).
CREATE TABLE daily_sms_usage (
    company_id bigint  NOT NULL REFERENCES companies (company_id) ON DELETE CASCADE,
    day        date    NOT NULL,
    queued     integer NOT NULL CHECK (queued >= 0),
    PRIMARY KEY (company_id, day)
);
SELECT enable_tenant_isolation('daily_sms_usage');
GRANT SELECT, INSERT, UPDATE ON daily_sms_usage TO survey_app;

-- The same lookup as authenticate_api_token, with the scope. A new name rather than a new
-- signature, so replicas of the previous release keep working during a rolling deploy.
CREATE FUNCTION authenticate_api_token_scoped(presented_hash bytea)
RETURNS TABLE (company_id bigint, token_id bigint, scope text)
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.api_tokens AS t
       SET last_used_at = now()
     WHERE t.token_hash = presented_hash
       AND t.revoked_at IS NULL
       AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute');
    SELECT t.company_id, t.token_id, t.scope
      FROM public.api_tokens AS t
     WHERE t.token_hash = presented_hash
       AND t.revoked_at IS NULL;
$$;

-- Ownership as in 0001 and 0003: survey_auth owns it, while the migrator is a member.
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'GRANT survey_auth TO CURRENT_USER';
    END IF;
END
$$;
GRANT USAGE, CREATE ON SCHEMA public TO survey_auth;
ALTER FUNCTION authenticate_api_token_scoped(bytea) OWNER TO survey_auth;
REVOKE CREATE ON SCHEMA public FROM survey_auth;
REVOKE ALL ON FUNCTION authenticate_api_token_scoped(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION authenticate_api_token_scoped(bytea) TO survey_app;
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'REVOKE survey_auth FROM CURRENT_USER';
    END IF;
END
$$;

-- Every `serve` replica caches tokens and LISTENs here; a token revoked or deleted (with
-- its company) is announced by id in the same transaction, delivered at commit.
CREATE FUNCTION announce_api_token_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('api_token_changes', OLD.token_id::text);
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION announce_api_token_change() FROM PUBLIC;
CREATE TRIGGER announce_api_token_revocation
    AFTER UPDATE OF revoked_at, scope, token_hash ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION announce_api_token_change();
CREATE TRIGGER announce_api_token_deletion
    AFTER DELETE ON api_tokens
    FOR EACH ROW EXECUTE FUNCTION announce_api_token_change();

-- Token buckets shared by the replicas (per API token, and per client address for failed
-- authentications). A replica leases a few tokens at a time and spends them locally, so
-- this is touched a few times a second per busy key, not once per request.
-- UNLOGGED: after a crash the buckets start full, which is the state of an idle key.
-- Keys carry no tenant data: a token's id, or a keyed hash of an address.
CREATE UNLOGGED TABLE rate_limit_buckets (
    bucket_key   text             PRIMARY KEY CHECK (char_length(bucket_key) <= 100),
    tokens       double precision NOT NULL,
    refreshed_at timestamptz      NOT NULL
);
GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limit_buckets TO survey_app;

-- Refills the bucket for the time elapsed (at `rate` per second, up to `burst`), then
-- takes up to `wanted` whole tokens. With none left, `retry_after` is the seconds until
-- the next one.
CREATE FUNCTION take_rate_limit_tokens(key text, rate double precision, burst double precision, wanted integer)
RETURNS TABLE (granted integer, retry_after double precision)
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    moment timestamptz;
    last_refresh timestamptz;
    available double precision;
BEGIN
    IF rate <= 0 OR burst < 1 OR wanted < 1 THEN
        RAISE EXCEPTION 'rate must be positive, burst and wanted at least 1' USING ERRCODE = '22023';
    END IF;
    INSERT INTO rate_limit_buckets (bucket_key, tokens, refreshed_at) VALUES (key, burst, clock_timestamp())
    ON CONFLICT (bucket_key) DO NOTHING;
    SELECT b.tokens, b.refreshed_at INTO available, last_refresh
      FROM rate_limit_buckets AS b WHERE b.bucket_key = key FOR UPDATE;
    IF NOT FOUND THEN
        -- Purged between the insert and the lock: grant nothing this time.
        granted := 0;
        retry_after := 1 / rate;
        RETURN NEXT;
        RETURN;
    END IF;
    -- The time is read once the row is ours: a caller that waited for the lock must not
    -- refill for time another caller already counted.
    moment := greatest(clock_timestamp(), last_refresh);
    available := least(burst, available + rate * extract(epoch FROM moment - last_refresh));
    granted := least(wanted, floor(available))::integer;
    UPDATE rate_limit_buckets SET tokens = available - granted, refreshed_at = moment WHERE bucket_key = key;
    retry_after := CASE WHEN granted > 0 THEN 0 ELSE (1 - available) / rate END;
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION take_rate_limit_tokens(text, double precision, double precision, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION take_rate_limit_tokens(text, double precision, double precision, integer) TO survey_app;

-- Readiness (`GET /ready`) checks that every migration a build knows is applied.
GRANT SELECT ON schema_migrations TO survey_app, survey_worker;
