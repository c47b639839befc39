-- Roles and privileges for ruvectord. Run with psql as a superuser (or a role with
-- CREATEROLE that owns the collection tables), in the database that holds your collections:
--
--   psql -d vectors -v app=my_app_user -v tables=public.items -f deploy/sql/roles.sql
--
-- Variables (all optional): daemon (default ruvectord), app (an existing role that calls the
-- gate; skipped when unset), tables (comma-separated collection tables for the throttle
-- guard; skipped when unset). Safe to run again.
\set ON_ERROR_STOP on
\if :{?daemon}
\else
  \set daemon ruvectord
\endif

-- 1. The daemon. It never reads a row of your tables: it reads the catalog and the
--    statistics views (pg_monitor), owns schema ruvector (CREATE on the database, for its
--    first migration), puts the ruvector_* SQL functions in schema public, where callers find
--    them without a search_path change (CREATE on public), and may add the throttle guard
--    trigger to collection tables (TRIGGER).
SELECT format('CREATE ROLE %I LOGIN', :'daemon')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'daemon') \gexec
SELECT format('GRANT pg_monitor TO %I', :'daemon') \gexec
SELECT format('GRANT CONNECT, CREATE ON DATABASE %I TO %I', current_database(), :'daemon') \gexec
SELECT format('GRANT CREATE ON SCHEMA public TO %I', :'daemon') \gexec
\if :{?tables}
-- the guard is cloned onto every partition, so each needs the privilege (run this again
-- after adding partitions)
SELECT format('GRANT TRIGGER ON TABLE %s TO %I', p.relid::regclass, :'daemon')
  FROM unnest(string_to_array(:'tables', ',')) AS t,
       pg_partition_tree(btrim(t)::regclass) AS p \gexec
\endif

-- 2. Applications that ask the gate before writing: read access to four small tables of
--    schema ruvector (run this part again after the first `ruvectord migrate` if the schema
--    did not exist yet). Inserting under the throttle guard needs nothing extra.
\if :{?app}
SELECT format('GRANT USAGE ON SCHEMA ruvector TO %I', :'app')
 WHERE EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'ruvector') \gexec
SELECT format('GRANT SELECT ON ruvector.collections, ruvector.integrity_state, '
              'ruvector.integrity_policies, ruvector.throttles TO %I', :'app')
 WHERE EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'ruvector') \gexec
\endif
