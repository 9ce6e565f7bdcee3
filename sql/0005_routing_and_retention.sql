-- Issue 12's storage defects:
--   * the routing tables (open_surveys, provider_messages) were readable and writable by
--     every role (`USING (true)`): the API now reaches them only through narrow SECURITY
--     DEFINER functions that act for the transaction's own tenant, or return a pointer;
--   * delivery statuses and replies that arrive before the worker has recorded the send
--     were acknowledged and dropped: they are kept and applied once it has;
--   * inbound_messages, provider_messages and expired open_surveys were never purged:
--     indexes for the worker's batched purge;
--   * survey_requests' foreign key on (company_id, question_id) had no index;
--   * a company-wide rate limit, beside the per-token one.

-- ---------------------------------------------------------------------------------------
-- The role that owns the routing functions. No login, owns no table.
DO $$
BEGIN
    CREATE ROLE survey_routing NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;
GRANT USAGE ON SCHEMA public TO survey_routing;

-- Hands SECURITY DEFINER functions to the role they run as, and closes them to PUBLIC
-- (grant what callers need before: grants carry over to the new owner).
-- A migrator that is not a superuser must be a member of the new owner, and the owner
-- needs CREATE on the schema, for `ALTER FUNCTION … OWNER TO`: both are given for this
-- call only. One function, so every migration that adds such a function does it the same
-- way. It runs as the migrator (SECURITY INVOKER); nobody else may call it.
CREATE FUNCTION hand_functions_to(owner regrole, functions regprocedure[]) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
DECLARE
    superuser constant boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
    fn regprocedure;
BEGIN
    IF NOT superuser THEN
        EXECUTE format('GRANT %s TO CURRENT_USER', owner);
    END IF;
    EXECUTE format('GRANT CREATE ON SCHEMA public TO %s', owner);
    FOREACH fn IN ARRAY functions LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %s', fn, owner);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
    EXECUTE format('REVOKE CREATE ON SCHEMA public FROM %s', owner);
    IF NOT superuser THEN
        EXECUTE format('REVOKE %s FROM CURRENT_USER', owner);
    END IF;
END
$$;
REVOKE ALL ON FUNCTION hand_functions_to(regrole, regprocedure[]) FROM PUBLIC;

-- Every role saw every row; now each role sees what it needs.
DROP POLICY cross_tenant_routing ON open_surveys;
DROP POLICY cross_tenant_routing ON provider_messages;
REVOKE ALL ON open_surveys, provider_messages FROM survey_app;
CREATE POLICY routing_functions ON open_surveys TO survey_routing USING (true) WITH CHECK (true);
CREATE POLICY routing_functions ON provider_messages TO survey_routing USING (true) WITH CHECK (true);
-- The worker works across tenants by nature (one queue); its column and table grants
-- (0002 and below) keep it to what sending, callbacks and retention need.
CREATE POLICY worker_routing ON open_surveys TO survey_worker USING (true) WITH CHECK (true);
CREATE POLICY worker_routing ON provider_messages TO survey_worker USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON open_surveys TO survey_routing;
GRANT SELECT, DELETE ON provider_messages TO survey_routing;
GRANT USAGE ON SEQUENCE survey_requests_request_id_seq TO survey_routing;
-- Releasing a deleted survey's routes finds its requests (the function filters by tenant).
CREATE POLICY routing_lookup ON survey_requests FOR SELECT TO survey_routing USING (true);
GRANT SELECT (company_id, request_id, survey_id, destination_hash, provider_message_id) ON survey_requests TO survey_routing;

-- The transaction's tenant, as `Database.withTenant` sets it; the functions refuse to act
-- without one.
CREATE FUNCTION routing_tenant() RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tenant bigint := NULLIF(current_setting('app.company_id', true), '')::bigint;
BEGIN
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'no tenant is set for this transaction' USING ERRCODE = '42501';
    END IF;
    RETURN tenant;
END
$$;

-- Sending: claims each number's open-survey slot for the tenant, drawing a request id for
-- each, in the order given (callers sort by hash, so concurrent calls cannot deadlock); an
-- expired slot is taken over. Returns the numbers claimed.
CREATE FUNCTION claim_open_surveys(hashes bytea[], slot_seconds integer)
RETURNS TABLE (destination_hash bytea, request_id bigint)
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH candidate AS (
        SELECT hash, position, nextval('public.survey_requests_request_id_seq') AS request_id
          FROM unnest(hashes) WITH ORDINALITY AS t(hash, position)
    )
    INSERT INTO public.open_surveys AS o (destination_hash, company_id, request_id, expires_at)
    SELECT hash, public.routing_tenant(), request_id, now() + make_interval(secs => slot_seconds)
      FROM candidate ORDER BY position
    ON CONFLICT (destination_hash) DO UPDATE
       SET company_id = EXCLUDED.company_id, request_id = EXCLUDED.request_id, expires_at = EXCLUDED.expires_at
     WHERE o.expires_at <= now()
    RETURNING o.destination_hash, o.request_id;
$$;

-- Frees the tenant's own slots (a good answer, a failure).
CREATE FUNCTION release_open_surveys(hashes bytea[], request_ids bigint[])
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM public.open_surveys AS o
     USING unnest(hashes, request_ids) AS t(hash, request_id)
     WHERE o.destination_hash = t.hash AND o.company_id = public.routing_tenant() AND o.request_id = t.request_id;
$$;

-- A deleted survey neither keeps numbers busy nor receives callbacks: the tenant's routes
-- to its requests go (called before the survey's rows cascade away).
CREATE FUNCTION release_survey_routes(survey bigint)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM public.open_surveys AS o USING public.survey_requests AS r
     WHERE r.company_id = public.routing_tenant() AND r.survey_id = survey
       AND o.destination_hash = r.destination_hash AND o.company_id = r.company_id AND o.request_id = r.request_id;
    DELETE FROM public.provider_messages AS p USING public.survey_requests AS r
     WHERE r.company_id = public.routing_tenant() AND r.survey_id = survey AND r.provider_message_id IS NOT NULL
       AND p.provider_message_id = r.provider_message_id AND p.company_id = r.company_id;
$$;

-- A reply says only its number: the open survey it answers, locked until the reply's
-- transaction ends. A pointer, no tenant data.
CREATE FUNCTION route_reply(hash bytea)
RETURNS TABLE (company_id bigint, request_id bigint)
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.company_id, o.request_id FROM public.open_surveys AS o
     WHERE o.destination_hash = hash AND o.expires_at > now()
       FOR UPDATE;
$$;

-- STOP applies to every company: the number's open survey, whoever's, is closed.
CREATE FUNCTION release_destination(hash bytea)
RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM public.open_surveys WHERE destination_hash = hash;
$$;

-- Delivery statuses that arrive before the worker has recorded the send (the provider can
-- call back before its answer to the send has reached us): kept, keyed by the provider's
-- id, until the worker applies them. Not tenant data: an id and a status.
CREATE TABLE early_delivery_statuses (
    provider_message_id text        PRIMARY KEY CHECK (char_length(provider_message_id) <= 64),
    status              text        NOT NULL CHECK (status IN ('delivered', 'failed')),
    received_at         timestamptz NOT NULL DEFAULT now()
);
GRANT INSERT ON early_delivery_statuses TO survey_routing;

-- A delivery status: the request it is for, or, when the send is not recorded yet and the
-- status is final, kept for the worker to apply (the first final status wins).
CREATE FUNCTION route_delivery_status(message_id text, final_status text)
RETURNS TABLE (company_id bigint, request_id bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY SELECT p.company_id, p.request_id FROM public.provider_messages AS p WHERE p.provider_message_id = message_id;
    IF NOT FOUND AND final_status IN ('delivered', 'failed') THEN
        INSERT INTO public.early_delivery_statuses (provider_message_id, status) VALUES (message_id, final_status)
        ON CONFLICT DO NOTHING;
    END IF;
END
$$;

-- Ownership: survey_routing owns the functions (as survey_auth owns token lookup). Grants
-- first, while the migrator owns them (they carry over to the new owner).
GRANT EXECUTE ON FUNCTION routing_tenant() TO survey_routing;
GRANT EXECUTE ON FUNCTION claim_open_surveys(bytea[], integer), release_open_surveys(bytea[], bigint[]),
    release_survey_routes(bigint), route_reply(bytea), release_destination(bytea), route_delivery_status(text, text)
    TO survey_app;
SELECT hand_functions_to('survey_routing', ARRAY[
    'routing_tenant()', 'claim_open_surveys(bytea[], integer)', 'release_open_surveys(bytea[], bigint[])',
    'release_survey_routes(bigint)', 'route_reply(bytea)', 'release_destination(bytea)', 'route_delivery_status(text, text)'
]::regprocedure[]);

-- Replies that arrive while their request is still `queued` (the send is under way but
-- not recorded): only the parsed meaning, as for every reply; applied by the worker once
-- the request is sent, dropped if it fails.
CREATE TABLE early_replies (
    company_id          bigint      NOT NULL,
    request_id          bigint      NOT NULL,
    provider_message_id text        NOT NULL CHECK (char_length(provider_message_id) <= 64),
    -- NULL: a bad reply.
    score               smallint    CHECK (score BETWEEN 0 AND 10),
    received_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, request_id, provider_message_id),
    FOREIGN KEY (company_id, request_id) REFERENCES survey_requests (company_id, request_id) ON DELETE CASCADE
);
SELECT enable_tenant_isolation('early_replies');
GRANT INSERT ON early_replies TO survey_app;
CREATE POLICY worker_early_replies ON early_replies TO survey_worker USING (true);

-- The worker applies what arrived early, and purges what is past keeping.
GRANT SELECT, DELETE ON early_replies, early_delivery_statuses TO survey_worker;
GRANT SELECT, DELETE ON provider_messages, inbound_messages TO survey_worker;
GRANT SELECT (score, responded_at, bad_replies, sent_at, delivered_at, failed_at),
      UPDATE (score, responded_at, bad_replies, delivered_at) ON survey_requests TO survey_worker;

-- Retention (docs/SENDING.md): the purge walks these in small batches, oldest first.
CREATE INDEX inbound_messages_received ON inbound_messages (received_at);
CREATE INDEX provider_messages_created ON provider_messages (created_at);
CREATE INDEX open_surveys_expires ON open_surveys (expires_at);

-- Deleting a survey deletes its questions, which cascades to requests by question.
CREATE INDEX survey_requests_by_question ON survey_requests (company_id, question_id);

-- A company's own request rate, across all its tokens; NULL takes the service's default.
ALTER TABLE companies
    ADD COLUMN rate_limit_per_second double precision CHECK (rate_limit_per_second > 0 AND rate_limit_per_second <= 1000000),
    ADD COLUMN rate_limit_burst integer CHECK (rate_limit_burst BETWEEN 1 AND 10000000);
GRANT UPDATE (rate_limit_per_second, rate_limit_burst) ON companies TO survey_app;

-- Token lookup also returns the company's own rate limit, so the per-company bucket needs
-- no second query; survey_auth may read just those columns.
CREATE POLICY token_authentication_limits ON companies FOR SELECT TO survey_auth USING (true);
GRANT SELECT (company_id, rate_limit_per_second, rate_limit_burst) ON companies TO survey_auth;

CREATE FUNCTION authenticate_api_token_limited(presented_hash bytea)
RETURNS TABLE (company_id bigint, token_id bigint, scope text, rate_limit_per_second double precision, rate_limit_burst integer)
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.api_tokens AS t
       SET last_used_at = now()
     WHERE t.token_hash = presented_hash
       AND t.revoked_at IS NULL
       AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute');
    SELECT t.company_id, t.token_id, t.scope, c.rate_limit_per_second, c.rate_limit_burst
      FROM public.api_tokens AS t
      JOIN public.companies AS c ON c.company_id = t.company_id
     WHERE t.token_hash = presented_hash
       AND t.revoked_at IS NULL;
$$;
GRANT EXECUTE ON FUNCTION authenticate_api_token_limited(bytea) TO survey_app;
SELECT hand_functions_to('survey_auth', ARRAY['authenticate_api_token_limited(bytea)']::regprocedure[]);

-- Replicas cache a token's identity, now with its company's limit: a change of the limit
-- is announced for each of the company's tokens, as a revocation is.
CREATE FUNCTION announce_company_limit_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('api_token_changes', t.token_id::text) FROM public.api_tokens AS t WHERE t.company_id = NEW.company_id;
    RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION announce_company_limit_change() FROM PUBLIC;
CREATE TRIGGER announce_company_limit_change
    AFTER UPDATE OF rate_limit_per_second, rate_limit_burst ON companies
    FOR EACH ROW WHEN (OLD.rate_limit_per_second IS DISTINCT FROM NEW.rate_limit_per_second
                       OR OLD.rate_limit_burst IS DISTINCT FROM NEW.rate_limit_burst)
    EXECUTE FUNCTION announce_company_limit_change();

-- A claim's progress: its jobs are sent in claim order (`claim_position`), and before a
-- window of them goes out the worker moves `started_through` past it, one small row per
-- claim rather than a write of every job. A worker that dies leaves the jobs at or below
-- `started_through` `uncertain` (they may have gone out) and the others to go back to the
-- queue when the lease runs out, instead of failing the whole claim.
CREATE TABLE sms_claims (
    lease_id        text        PRIMARY KEY,
    started_through integer     NOT NULL DEFAULT 0,
    claimed_at      timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE, DELETE ON sms_claims TO survey_worker;
-- The API asks whether a queued request's call has started (an early reply is kept only then).
GRANT SELECT ON sms_claims TO survey_app;
ALTER TABLE sms_jobs ADD COLUMN claim_position integer;
GRANT UPDATE (claim_position) ON sms_jobs TO survey_worker;
-- Which claim holds the job: a worker marks, retries or releases only jobs its own claim
-- still holds (a worker stalled past its lease must not touch a job the reaper gave back
-- and another worker claimed).
ALTER TABLE sms_jobs ADD COLUMN lease_id text;
GRANT UPDATE (lease_id) ON sms_jobs TO survey_worker;

-- The rollup trigger skips updates that change no counter's input without planning its
-- dynamic statement (the worker records a window of sends every few dozen messages; each
-- record's queued → sent update paid that planning). Same function otherwise (0003).
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'GRANT survey_reports TO CURRENT_USER';
    END IF;
END
$$;
CREATE OR REPLACE FUNCTION record_report_changes() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    -- What the counters read of a request.
    columns constant text := 'company_id, survey_id, channel, segments, coalesce(language, '''') AS language, created_at, '
        || 'status = ''failed'' AS failed, score, bad_replies > 0 AS bad';
    changes text;
BEGIN
    -- Inserts (send calls, the hot path) have a static, cached plan: aggregate the new rows
    -- once per full key, derive the other levels from those, write both grains.
    IF TG_OP = 'INSERT' THEN
        WITH detail AS (
            SELECT company_id, (created_at AT TIME ZONE 'UTC')::date AS day, survey_id, channel, segments,
                   coalesce(language, '') AS language,
                   count(*) AS requests,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   count(*) FILTER (WHERE score IS NOT NULL) AS good,
                   count(*) FILTER (WHERE score IS NULL AND bad_replies > 0) AS bad,
                   count(*) FILTER (WHERE score >= 9) AS promoters,
                   count(*) FILTER (WHERE score BETWEEN 7 AND 8) AS passives,
                   count(*) FILTER (WHERE score <= 6) AS detractors
              FROM new_rows
             GROUP BY 1, 2, 3, 4, 5, 6
        ), cells AS (
            SELECT CASE GROUPING(segments, language) WHEN 0 THEN 'full' WHEN 1 THEN 'segments' WHEN 2 THEN 'language' ELSE 'survey' END AS detail,
                   company_id, day, survey_id, channel,
                   CASE WHEN GROUPING(segments) = 0 THEN segments ELSE '{}' END AS segments,
                   CASE WHEN GROUPING(language) = 0 THEN language ELSE '' END AS language,
                   sum(requests) AS requests, sum(failed) AS failed, sum(good) AS good, sum(bad) AS bad,
                   sum(promoters) AS promoters, sum(passives) AS passives, sum(detractors) AS detractors
              FROM detail
             GROUP BY company_id, day, survey_id, channel,
                      GROUPING SETS ((segments, language), (segments), (language), ())
        )
        INSERT INTO public.report_rollups
               (company_id, detail, grain, bucket, survey_id, channel, segments, language,
                requests, failed, good, bad, promoters, passives, detractors)
        SELECT c.company_id, c.detail, g.grain,
               CASE g.grain WHEN 'day' THEN c.day ELSE date_trunc('month', c.day)::date END,
               c.survey_id, c.channel, c.segments, c.language,
               c.requests, c.failed, c.good, c.bad, c.promoters, c.passives, c.detractors
          FROM cells AS c
         CROSS JOIN (VALUES ('day'), ('month')) AS g(grain);
        RETURN NULL;
    END IF;

    -- An update that changes no counter's input (queued → sent, the worker's every window)
    -- appends nothing: found by a static query with a cached plan, before the dynamic
    -- statement below, whose planning is the cost of every update statement otherwise.
    -- (Nested: the condition is planned as one query, and a DELETE has no new_rows.)
    IF TG_OP = 'UPDATE' THEN
        IF NOT EXISTS (
            SELECT company_id, survey_id, channel, segments, coalesce(language, ''), created_at, status = 'failed', score, bad_replies > 0
              FROM new_rows
            EXCEPT ALL
            SELECT company_id, survey_id, channel, segments, coalesce(language, ''), created_at, status = 'failed', score, bad_replies > 0
              FROM old_rows
        ) THEN
            RETURN NULL;
        END IF;
    END IF;

    -- Updates and deletes: each request contributes +1 for what is there now and -1 for
    -- what was, reduced to what the counters read (queued → sent reads the same). Rows
    -- whose reading did not change cancel out in EXCEPT ALL, whatever else changed
    -- (even company_id or request_id), so the statement is exact for any UPDATE.
    changes := CASE TG_OP
        WHEN 'DELETE' THEN format('SELECT -1 AS sign, %s FROM old_rows', columns)
        ELSE format(
            $changed$
            SELECT 1 AS sign, * FROM (SELECT %1$s FROM new_rows EXCEPT ALL SELECT %1$s FROM old_rows) AS added
            UNION ALL
            SELECT -1 AS sign, * FROM (SELECT %1$s FROM old_rows EXCEPT ALL SELECT %1$s FROM new_rows) AS removed
            $changed$, columns)
    END;
    EXECUTE format($sql$
        INSERT INTO public.report_rollups
               (company_id, detail, grain, bucket, survey_id, channel, segments, language,
                requests, failed, good, bad, promoters, passives, detractors)
        SELECT * FROM (
            SELECT c.company_id, d.detail, g.grain,
                   CASE g.grain WHEN 'day' THEN c.day ELSE date_trunc('month', c.day)::date END AS bucket,
                   c.survey_id, c.channel,
                   CASE WHEN d.detail IN ('segments', 'full') THEN c.segments ELSE '{}' END AS segments,
                   CASE WHEN d.detail IN ('language', 'full') THEN c.language ELSE '' END AS language,
                   sum(c.sign) AS requests,
                   coalesce(sum(c.sign) FILTER (WHERE c.failed), 0) AS failed,
                   coalesce(sum(c.sign) FILTER (WHERE c.score IS NOT NULL), 0) AS good,
                   coalesce(sum(c.sign) FILTER (WHERE c.score IS NULL AND c.bad), 0) AS bad,
                   coalesce(sum(c.sign) FILTER (WHERE c.score >= 9), 0) AS promoters,
                   coalesce(sum(c.sign) FILTER (WHERE c.score BETWEEN 7 AND 8), 0) AS passives,
                   coalesce(sum(c.sign) FILTER (WHERE c.score <= 6), 0) AS detractors
              FROM (SELECT x.*, (x.created_at AT TIME ZONE 'UTC')::date AS day FROM (%s) AS x) AS c
             CROSS JOIN (VALUES ('survey'), ('segments'), ('language'), ('full')) AS d(detail)
             CROSS JOIN (VALUES ('day'), ('month')) AS g(grain)
             GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
        ) AS delta
         WHERE (requests, failed, good, bad, promoters, passives, detractors) <> (0, 0, 0, 0, 0, 0, 0)
    $sql$, changes);
    RETURN NULL;
END
$function$;
REVOKE ALL ON FUNCTION record_report_changes() FROM PUBLIC;
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'REVOKE survey_reports FROM CURRENT_USER';
    END IF;
END
$$;
