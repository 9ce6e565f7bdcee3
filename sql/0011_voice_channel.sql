-- Issue 16: voice, the third channel. The worker places a call through a Twilio-compatible
-- Calls API; our signed TwiML endpoints read the question and gather a keypad score; the
-- call's status callback ends it. Unlike a message, a call is not over when the provider
-- takes it: the job stays (its number with it) until the call's final status, so that a
-- call nobody answered can be placed again, and never two at once.

ALTER TABLE survey_requests DROP CONSTRAINT survey_requests_channel_check;
ALTER TABLE survey_requests ADD CONSTRAINT survey_requests_channel_check CHECK (channel IN ('SMS', 'EMAIL', 'VOICE'));
ALTER TABLE sms_jobs DROP CONSTRAINT sms_jobs_channel_check;
ALTER TABLE sms_jobs ADD CONSTRAINT sms_jobs_channel_check CHECK (channel IN ('SMS', 'EMAIL', 'VOICE'));

-- How long the answered call lasted (the provider's CallDuration): usage is in minutes.
ALTER TABLE survey_requests ADD COLUMN call_seconds integer CHECK (call_seconds >= 0);
GRANT UPDATE (call_seconds) ON survey_requests TO survey_app;

-- Calls cost money, like SMS: a daily cap of their own. And the company's rules for a call
-- nobody answered: how many calls a request may take in all, and how long between them.
ALTER TABLE companies
    ADD COLUMN daily_voice_cap integer NOT NULL DEFAULT 1000 CHECK (daily_voice_cap BETWEEN 0 AND 10000000),
    ADD COLUMN voice_call_attempts integer NOT NULL DEFAULT 2 CHECK (voice_call_attempts BETWEEN 1 AND 5),
    ADD COLUMN voice_retry_minutes integer NOT NULL DEFAULT 60 CHECK (voice_retry_minutes BETWEEN 1 AND 1440);
GRANT UPDATE (daily_voice_cap, voice_call_attempts, voice_retry_minutes) ON companies TO survey_app;
ALTER TABLE daily_sms_usage ADD COLUMN calls_queued integer NOT NULL DEFAULT 0 CHECK (calls_queued >= 0);
GRANT UPDATE (calls_queued) ON daily_sms_usage TO survey_worker;

-- A call's final status comes to the API (the provider's callback): it ends the job, or
-- gives it back to the queue for another call later (a call nobody answered), due then:
-- its maximum age and its retries' count from the new call's time, not the first's.
GRANT UPDATE (run_at, due_at, leased_until, lease_id, claim_position) ON sms_jobs TO survey_app;
-- Calls placed for the job's request (`attempts` counts claims, which a refused API call
-- also makes): the company's `voice_call_attempts` bounds these.
ALTER TABLE sms_jobs ADD COLUMN calls_placed integer NOT NULL DEFAULT 0 CHECK (calls_placed >= 0);
GRANT SELECT (calls_placed), UPDATE (calls_placed) ON sms_jobs TO survey_worker;
