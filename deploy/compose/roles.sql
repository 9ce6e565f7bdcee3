-- The database logins of the Compose deployment, run by the `db-roles` service of
-- docker-compose.yml as the superuser on every `docker compose up`, before `migrate`.
-- Idempotent: it creates what is missing and sets each login's password to the one in
-- .env (written once by scripts/compose-init).
--
--   surveyd_migrate  `surveyd migrate`: owns the database, its schema and every table;
--                    CREATEROLE, because the migrations create the NOLOGIN roles below
--                    and hand functions to survey_auth and survey_reports. Not superuser.
--   surveyd_api      `surveyd serve`, and the operator's commands run in its container
--                    (`surveyd company create`, `surveyd token ...`): member of
--                    survey_app (serve switches to it) and survey_admin (the commands do).
--   surveyd_worker   `surveyd worker`: member of survey_worker only.
--
-- Passwords come from the environment (psql's \getenv), never from this file.
\set ON_ERROR_STOP on
\set QUIET on
\getenv migrate_password SURVEYD_MIGRATE_DB_PASSWORD
\getenv api_password SURVEYD_API_DB_PASSWORD
\getenv worker_password SURVEYD_WORKER_DB_PASSWORD

-- Unset counts as empty; an empty password would mean no password at all.
\if :{?migrate_password} \else \set migrate_password '' \endif
\if :{?api_password} \else \set api_password '' \endif
\if :{?worker_password} \else \set worker_password '' \endif
SELECT :'migrate_password' = '' OR :'api_password' = '' OR :'worker_password' = '' AS missing_password \gset
\if :missing_password
DO $$ BEGIN RAISE EXCEPTION 'SURVEYD_MIGRATE_DB_PASSWORD, SURVEYD_API_DB_PASSWORD and SURVEYD_WORKER_DB_PASSWORD must be set: run scripts/compose-init'; END $$;
\endif

SET client_min_messages = warning;
BEGIN;
-- One run at a time (roles are the cluster's, shared by every database).
DO $$ BEGIN PERFORM pg_advisory_xact_lock(hashtext('surveyd compose roles')); END $$;

-- The roles the logins are members of, exactly as sql/0001 and sql/0002 create them (those
-- skip a role that exists). Created here so the memberships can be granted before the
-- first migration; the others (survey_auth, survey_reports) are left to the migrations,
-- so that the migrating login creates them and may hand functions to them.
SELECT 'CREATE ROLE survey_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'survey_app') \gexec
SELECT 'CREATE ROLE survey_admin NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE IN ROLE survey_app'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'survey_admin') \gexec
SELECT 'CREATE ROLE survey_worker NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'survey_worker') \gexec

SELECT format('CREATE ROLE %I', name)
  FROM unnest(ARRAY['surveyd_migrate', 'surveyd_api', 'surveyd_worker']) AS name
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) \gexec

ALTER ROLE surveyd_migrate WITH LOGIN NOSUPERUSER NOBYPASSRLS NOREPLICATION NOCREATEDB CREATEROLE
    PASSWORD :'migrate_password';
ALTER ROLE surveyd_api WITH LOGIN NOSUPERUSER NOBYPASSRLS NOREPLICATION NOCREATEDB NOCREATEROLE
    PASSWORD :'api_password';
ALTER ROLE surveyd_worker WITH LOGIN NOSUPERUSER NOBYPASSRLS NOREPLICATION NOCREATEDB NOCREATEROLE
    PASSWORD :'worker_password';

GRANT survey_app, survey_admin TO surveyd_api;
GRANT survey_worker TO surveyd_worker;
-- And no other of the product's roles (a REVOKE of what was never granted only warns).
SET LOCAL client_min_messages = error;
REVOKE survey_worker FROM surveyd_api;
REVOKE survey_app, survey_admin FROM surveyd_worker;
SELECT format('REVOKE %I FROM %I', role, login)
  FROM unnest(ARRAY['survey_auth', 'survey_reports']) AS role
 CROSS JOIN unnest(ARRAY['surveyd_api', 'surveyd_worker']) AS login
 WHERE EXISTS (SELECT FROM pg_roles WHERE rolname = role) \gexec
SET LOCAL client_min_messages = warning;

-- The migrating login owns the database and its public schema (CREATE there, as the
-- migrations need).
SELECT format('ALTER DATABASE %I OWNER TO surveyd_migrate', current_database()) \gexec
ALTER SCHEMA public OWNER TO surveyd_migrate;

-- A database migrated by an earlier docker-compose.yml, which logged in as the superuser:
-- what the superuser owns in the schema passes to the migrating login, so that later
-- migrations may alter it. (Functions owned by survey_auth and survey_reports keep their
-- owners; owned sequences and indexes follow their tables.) A no-op on a new database.
DO $$
DECLARE
    statement text;
BEGIN
    FOR statement IN
        SELECT format('ALTER %s %s OWNER TO surveyd_migrate',
                      CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                     WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                                     WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END,
                      c.oid::regclass)
          FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
         WHERE c.relnamespace = 'public'::regnamespace AND r.rolsuper
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
           AND NOT (c.relkind = 'S' AND EXISTS (
                   SELECT FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
        UNION ALL
        SELECT format('ALTER ROUTINE %s OWNER TO surveyd_migrate', p.oid::regprocedure)
          FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
         WHERE p.pronamespace = 'public'::regnamespace AND r.rolsuper
        UNION ALL
        SELECT format('ALTER TYPE %s OWNER TO surveyd_migrate', t.oid::regtype)
          FROM pg_type t JOIN pg_roles r ON r.oid = t.typowner
         WHERE t.typnamespace = 'public'::regnamespace AND r.rolsuper AND t.typtype IN ('e', 'd', 'r')
    LOOP
        EXECUTE statement;
    END LOOP;
END
$$;
COMMIT;
\echo 'Logins ready: surveyd_migrate (owner), surveyd_api (survey_app, survey_admin), surveyd_worker (survey_worker).'
