-- Issue 13, the request lifecycle for integrations: one request's status, a filtered list
-- and its export, and cancelling a request before it reaches the provider.
--
-- The API's statuses (scheduled, queued, sent, delivered, failed, responded, expired,
-- cancelled) are derived from the stored ones (queued, sent, delivered, failed, and now
-- cancelled) and the timestamps, in `RequestRepository`: a `scheduled` request is `queued`
-- with `scheduled_for` ahead; `responded` is a score; `expired` is past `respond_by`.
-- A cancelled request never reached anyone: the reports count it as a request (as they
-- count one still queued) but not as a failure, so cancelling or erasing changes no
-- number of theirs (the rollup trigger sees no counter's input change).

-- When the request was cancelled (by the company, or by a send rule that no longer held
-- when it fell due); NULL otherwise.
ALTER TABLE survey_requests ADD COLUMN cancelled_at timestamptz;
-- When its message is to go out, if later than its creation (a requested `sendAt`, or the
-- end of the company's quiet hours).
ALTER TABLE survey_requests ADD COLUMN scheduled_for timestamptz;
ALTER TABLE survey_requests DROP CONSTRAINT survey_requests_status_check;
ALTER TABLE survey_requests ADD CONSTRAINT survey_requests_status_check
    CHECK (status IN ('queued', 'sent', 'delivered', 'failed', 'cancelled'));
ALTER TABLE survey_requests ADD CONSTRAINT survey_requests_cancelled_at
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL));
GRANT UPDATE (cancelled_at) ON survey_requests TO survey_app;

-- The list's `referenceId` filter: a CRM looks up its own interaction.
CREATE INDEX survey_requests_by_reference ON survey_requests (company_id, reference_id) WHERE reference_id IS NOT NULL;

-- Cancelling removes the job before a worker claims it (the API only ever deletes jobs of
-- its own tenant: row-level security on sms_jobs).
GRANT DELETE ON sms_jobs TO survey_app;

-- ---------------------------------------------------------------------------------------
-- Scheduled sends and quiet hours.
--
-- A request asked for later (`sendAt`), or queued inside its company's quiet hours, is
-- checked against the send rules when the call is made, but claims its number only when
-- it falls due: its job waits with `needs_admission`, and the worker's scheduler admits it
-- then (checking the rules again: opted out, surveyed meanwhile, number busy) or cancels
-- it with the rule as the reason. Workers never look at waiting jobs: the claim reads an
-- index of admitted jobs only, the scheduler an index of waiting ones, both by due time.

-- The company's quiet hours (both NULL: none) and its time zone, in which they are read.
-- Companies that exist already keep sending as they did (no quiet hours, so their send
-- calls answer as before); new ones get the default window.
ALTER TABLE companies
    ADD COLUMN quiet_hours_start time(0),
    ADD COLUMN quiet_hours_end time(0),
    ADD COLUMN time_zone text NOT NULL DEFAULT 'Europe/Brussels' CHECK (char_length(time_zone) BETWEEN 1 AND 64),
    ADD CONSTRAINT companies_quiet_hours
        CHECK ((quiet_hours_start IS NULL) = (quiet_hours_end IS NULL) AND quiet_hours_start <> quiet_hours_end);
ALTER TABLE companies ALTER COLUMN quiet_hours_start SET DEFAULT '21:00', ALTER COLUMN quiet_hours_end SET DEFAULT '09:00';
GRANT UPDATE (quiet_hours_start, quiet_hours_end, time_zone) ON companies TO survey_app;

-- `due_at`: when the job fell (or falls) due; its maximum age counts from then, not from
-- the call that queued it weeks before.
ALTER TABLE sms_jobs ADD COLUMN needs_admission boolean NOT NULL DEFAULT false;
ALTER TABLE sms_jobs ADD COLUMN due_at timestamptz;
UPDATE sms_jobs SET due_at = created_at;
ALTER TABLE sms_jobs ALTER COLUMN due_at SET DEFAULT now(), ALTER COLUMN due_at SET NOT NULL;
DROP INDEX sms_jobs_ready;
CREATE INDEX sms_jobs_ready ON sms_jobs (run_at) WHERE leased_until IS NULL AND NOT needs_admission;
CREATE INDEX sms_jobs_waiting ON sms_jobs (run_at) WHERE needs_admission;
-- A request's job, found without a scan: cancelling one, erasing by reference, a reply's
-- lookup, and the cascade when a survey's requests are deleted.
CREATE INDEX sms_jobs_by_request ON sms_jobs (company_id, request_id);

-- The scheduler (the worker's role): the companies' rules and hours, the requests' history
-- for the resurvey rule, the open-survey slot it claims, and the cancellation it records.
CREATE POLICY worker_scheduling ON companies FOR SELECT TO survey_worker USING (true);
GRANT SELECT (company_id, resurvey_days, quiet_hours_start, quiet_hours_end, time_zone) ON companies TO survey_worker;
GRANT SELECT (created_at, scheduled_for), UPDATE (cancelled_at, scheduled_for) ON survey_requests TO survey_worker;
GRANT UPDATE (needs_admission, due_at) ON sms_jobs TO survey_worker;
GRANT INSERT, UPDATE (company_id, request_id) ON open_surveys TO survey_worker;
CREATE POLICY worker_scheduling ON daily_sms_usage TO survey_worker USING (true) WITH CHECK (true);
GRANT SELECT, UPDATE (queued) ON daily_sms_usage TO survey_worker;

-- The API asks, for a request it schedules, whether the number is busy now (without
-- claiming it): which of the given numbers have an open survey. No tenant data.
CREATE FUNCTION busy_destinations(hashes bytea[])
RETURNS SETOF bytea
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT destination_hash FROM public.open_surveys WHERE destination_hash = ANY(hashes) AND expires_at > now();
$$;
GRANT EXECUTE ON FUNCTION busy_destinations(bytea[]) TO survey_app;
SELECT hand_functions_to('survey_routing', ARRAY['busy_destinations(bytea[])']::regprocedure[]);

-- ---------------------------------------------------------------------------------------
-- A company's own suppression list: numbers it must never survey (its customer asked it,
-- not us), as the keyed hash only, like STOP. Unlike STOP, it binds this company alone.
CREATE TABLE company_opt_outs (
    company_id       bigint      NOT NULL REFERENCES companies (company_id) ON DELETE CASCADE,
    destination_hash bytea       NOT NULL CHECK (octet_length(destination_hash) = 32),
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (company_id, destination_hash)
);
SELECT enable_tenant_isolation('company_opt_outs');
GRANT SELECT, INSERT, DELETE ON company_opt_outs TO survey_app;
-- The senders look before each window, the scheduler before admitting.
CREATE POLICY worker_suppression ON company_opt_outs FOR SELECT TO survey_worker USING (true);
GRANT SELECT ON company_opt_outs TO survey_worker;

-- Erasure (a customer's right to be forgotten, asked of the company): the requests keep
-- their numbers for the reports, but lose the referenceId and segments that tie them to a
-- person; the stored replay of a send call loses the referenceId too.
GRANT UPDATE (reference_id, segments) ON survey_requests TO survey_app;

-- ---------------------------------------------------------------------------------------
-- Company self-service: a third token scope, `admin`, for the company's own administrator
-- (its tokens and settings). The operator issues the first; a company cannot revoke its
-- last one.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_scope_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_scope_check CHECK (scope IN ('read', 'write', 'admin'));
-- One company's active admin tokens, locked together when one is revoked.
CREATE INDEX api_tokens_active_admins ON api_tokens (company_id) WHERE scope = 'admin' AND revoked_at IS NULL;
