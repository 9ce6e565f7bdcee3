-- Issue 16: e-mail, the second channel. A request by e-mail goes through the same queue,
-- rules, slots and reports as one by SMS; what differs is how it is answered: by a score
-- link (`/r/{token}/{score}`) rather than a reply, so the link's token, hashed, is kept
-- with the request, and the raw token, like the raw address, only in the job.
--
-- Compatible with the previous release while it still runs (a rolling deploy): nothing it
-- reads or writes is renamed or narrowed.

ALTER TABLE survey_requests DROP CONSTRAINT survey_requests_channel_check;
ALTER TABLE survey_requests ADD CONSTRAINT survey_requests_channel_check CHECK (channel IN ('SMS', 'EMAIL'));

-- SHA-256 of the request's score-link token (e-mail only). Unique across tenants: a link
-- names one request, found without knowing whose it is.
ALTER TABLE survey_requests ADD COLUMN response_token_hash bytea CHECK (octet_length(response_token_hash) = 32);
CREATE UNIQUE INDEX survey_requests_by_response_token ON survey_requests (response_token_hash)
    WHERE response_token_hash IS NOT NULL;

-- The queue carries every channel's jobs (it was named before it carried more than SMS).
-- A worker claims its own channel's: the index of ready jobs leads with the channel.
ALTER TABLE sms_jobs ADD COLUMN channel text NOT NULL DEFAULT 'SMS' CHECK (channel IN ('SMS', 'EMAIL'));
-- The score links' token (e-mail), and the request's language (the words around the
-- question): the only copy of the token, gone with the job.
ALTER TABLE sms_jobs ADD COLUMN response_token text CHECK (char_length(response_token) = 22);
ALTER TABLE sms_jobs ADD COLUMN language text CHECK (char_length(language) <= 64);
DROP INDEX sms_jobs_ready;
CREATE INDEX sms_jobs_ready ON sms_jobs (channel, run_at) WHERE leased_until IS NULL AND NOT needs_admission;
GRANT SELECT (channel, response_token, language) ON sms_jobs TO survey_worker;
-- The scheduler gives back a cancelled request's place under the cap of its channel.
GRANT SELECT (channel) ON survey_requests TO survey_worker;
-- The e-mail's subject names the company.
GRANT SELECT (name) ON companies TO survey_worker;

-- E-mail has a daily cap of its own (SMS cost money; e-mail's volume is of another order).
ALTER TABLE companies ADD COLUMN daily_email_cap integer NOT NULL DEFAULT 50000
    CHECK (daily_email_cap BETWEEN 0 AND 10000000);
GRANT UPDATE (daily_email_cap) ON companies TO survey_app;
ALTER TABLE daily_sms_usage ADD COLUMN emails_queued integer NOT NULL DEFAULT 0 CHECK (emails_queued >= 0);
GRANT UPDATE (emails_queued) ON daily_sms_usage TO survey_worker;

-- A score link says only its token: the request it names, locked until the transaction
-- ends (a second click waits for the first). A pointer, no tenant data.
GRANT SELECT (response_token_hash) ON survey_requests TO survey_routing;
CREATE FUNCTION route_response_token(hash bytea)
RETURNS TABLE (company_id bigint, request_id bigint)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.company_id, r.request_id FROM public.survey_requests AS r WHERE r.response_token_hash = hash;
$$;
GRANT EXECUTE ON FUNCTION route_response_token(bytea) TO survey_app;
SELECT hand_functions_to('survey_routing', ARRAY['route_response_token(bytea)']::regprocedure[]);

-- A second choice within the window replaces the first; the company hears of it as a
-- response, like the first (same trigger function, a wider condition).
-- The function belongs to survey_outbox (0007): a migrator that is not a superuser
-- replaces it as a member, for this migration only.
DROP TRIGGER webhook_events ON survey_requests;
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'GRANT survey_outbox TO CURRENT_USER';
    END IF;
END
$$;
CREATE OR REPLACE FUNCTION emit_request_webhook_events() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.score IS NOT NULL AND NEW.score IS DISTINCT FROM OLD.score THEN
        PERFORM public.emit_webhook_event(NEW.company_id, 'response.received', NEW.request_id,
                                          json_build_object('request', public.webhook_request(NEW)));
    ELSIF NEW.bad_replies > OLD.bad_replies THEN
        -- Never the reply's text (it is not kept anywhere): only that one came.
        PERFORM public.emit_webhook_event(NEW.company_id, 'response.invalid', NEW.request_id,
                                          json_build_object('request', public.webhook_request(NEW),
                                                            'receivedAt', public.webhook_time(now())));
    END IF;
    IF NEW.status = 'delivered' AND OLD.status IS DISTINCT FROM 'delivered' THEN
        PERFORM public.emit_webhook_event(NEW.company_id, 'request.delivered', NEW.request_id,
                                          json_build_object('request', public.webhook_request(NEW)));
    ELSIF NEW.status = 'failed' AND OLD.status IS DISTINCT FROM 'failed' THEN
        PERFORM public.emit_webhook_event(NEW.company_id, 'request.failed', NEW.request_id,
                                          json_build_object('request', public.webhook_request(NEW)));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER webhook_events AFTER UPDATE ON survey_requests
    FOR EACH ROW
    WHEN ((NEW.score IS NOT NULL AND NEW.score IS DISTINCT FROM OLD.score) OR NEW.bad_replies > OLD.bad_replies
          OR (NEW.status IS DISTINCT FROM OLD.status AND NEW.status IN ('delivered', 'failed')))
    EXECUTE FUNCTION emit_request_webhook_events();
DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'REVOKE survey_outbox FROM CURRENT_USER';
    END IF;
END
$$;
