-- What a claim's windows sent, noted durably as each window comes back and recorded in
-- full (requests `sent`, jobs gone, message ids indexed, numbers kept busy) once per claim
-- or every few hundred milliseconds (QueueRepository.applyNoted).
--
-- The bound on `uncertain` jobs needs a durable commit per window of sends: without it, a
-- worker killed after the provider took a window would leave those jobs with no outcome.
-- The full record, whose work does not depend on its size (one statement of five changes,
-- each with its indexes and the rollup trigger), cost a window about three milliseconds of
-- PostgreSQL's CPU beyond its per-job work; this note, one row per window, about a
-- seventh of that (docs/BENCHMARKS.md, sending run 15).
--
-- A note is written only while its claim is held (the worker locks the claim's row), and
-- the reaper records a dead worker's notes before it fails the rest of the claim as
-- `uncertain`, so a noted job always ends `sent`.
CREATE TABLE sms_claim_sent (
    -- A claim purged by retention (its worker died and its jobs went some other way)
    -- takes its notes with it.
    lease_id       text     NOT NULL REFERENCES sms_claims (lease_id) ON DELETE CASCADE,
    -- The lowest claim position among the noted jobs: windows are disjoint, so unique.
    first_position integer  NOT NULL,
    company_ids    bigint[] NOT NULL,
    job_ids        bigint[] NOT NULL,
    message_ids    text[]   NOT NULL,
    segments       integer[] NOT NULL,
    PRIMARY KEY (lease_id, first_position)
) WITH (toast_tuple_target = 8160);
-- A window's arrays (about 7 kB for 128 jobs) stay in the row rather than in TOAST: one
-- heap write per note.
ALTER TABLE sms_claim_sent
    ALTER COLUMN company_ids SET STORAGE MAIN,
    ALTER COLUMN job_ids SET STORAGE MAIN,
    ALTER COLUMN message_ids SET STORAGE MAIN,
    ALTER COLUMN segments SET STORAGE MAIN;
-- Worker-only, like sms_claims: it holds companies' ids in arrays, outside row-level
-- security, and no role the API uses can read it.
GRANT SELECT, INSERT, DELETE ON sms_claim_sent TO survey_worker;
