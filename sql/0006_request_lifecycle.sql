-- Issue 13, the request lifecycle for integrations: one request's status, a filtered list
-- and its export, and cancelling a request before it reaches the provider.
--
-- The API's statuses (scheduled, queued, sent, delivered, failed, responded, expired,
-- cancelled) are derived from the stored ones (queued, sent, delivered, failed) and the
-- timestamps, in `RequestRepository`: a cancelled request is stored as `failed` with
-- `cancelled_at` set, so the report counters, which count failures, need no change (a
-- cancelled survey never reached the customer), and a `scheduled` one is `queued` with
-- `scheduled_for` in the future.

-- When the request was cancelled (by the company, or by a send rule that no longer held
-- when it fell due); NULL otherwise.
ALTER TABLE survey_requests ADD COLUMN cancelled_at timestamptz;
-- When its message is to go out, if later than its creation (a requested `sendAt`, or the
-- end of the company's quiet hours).
ALTER TABLE survey_requests ADD COLUMN scheduled_for timestamptz;
ALTER TABLE survey_requests ADD CONSTRAINT survey_requests_cancelled_is_failed
    CHECK (cancelled_at IS NULL OR status = 'failed');
GRANT UPDATE (cancelled_at) ON survey_requests TO survey_app;

-- The list's `referenceId` filter: a CRM looks up its own interaction.
CREATE INDEX survey_requests_by_reference ON survey_requests (company_id, reference_id) WHERE reference_id IS NOT NULL;

-- Cancelling removes the job before a worker claims it (the API only ever deletes jobs of
-- its own tenant: row-level security on sms_jobs).
GRANT DELETE ON sms_jobs TO survey_app;
