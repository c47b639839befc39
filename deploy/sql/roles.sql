-- Roles and privileges for ruvectord. Run with psql as a superuser, in the database that holds
-- your collections, before the first `ruvectord migrate` and again after adding partitions:
--
--   psql -d vectors -v tables=public.items -f deploy/sql/roles.sql
--
-- Variables (all optional):
--   daemon    the login role ruvectord runs as (default ruvectord; created if missing)
--   tables    comma-separated collection tables (each with its partitions) the throttle
--             guard may be attached to
--   operators comma-separated existing roles that may change healing (pause, approve, lift)
--   readers   comma-separated existing roles that may read healing state and history
--   admin     an existing role that may run `ruvectord migrate` without being a superuser
--   placement comma-separated TABLE:COLUMN:KEY[:AGE] -- collections whose rows
--             rebalance_partitions, drain_hot_partition and evict_cold_data may move: the
--             owner may read the key, placement (and age) columns and UPDATE the placement
--             column only (never a vector), and lock each partition for the length of a batch
--             (MAINTAIN on PostgreSQL 17+; before 17 LOCK needs UPDATE on each partition)
--   ivf_pages on: IVFFlat list sizes are read from the index pages (ruvector.ivf_list_sizes,
--             which returns counts only) rather than fed by the application
--             (ruvector.centroid_stats); this lets ruvector_owner -- nobody logs in as it --
--             execute pg_read_binary_file
-- The maintenance strategies (README, "Maintenance strategies"); each is opt-in, and without
-- it the strategy says which of these it lacks instead of acting:
--   maintenance=on  ruvector_owner may act as the owner of the `tables` (pause autovacuum,
--                   drop an invalid or swapped-out index, rename the rebuilt one) and see
--                   and cancel other sessions (pg_monitor, pg_signal_backend, and on 18
--                   pg_signal_autovacuum_worker). Tables owned by a superuser are refused.
--   canary=on       ruvector_owner may read the `tables` (the recall canary samples 20
--                   probe vectors per partition and runs exact and index searches).
--   indexes=on      the daemon's role may VACUUM and REINDEX CONCURRENTLY the `tables`
--                   (compact_indexes): MAINTAIN, PostgreSQL 17 and later only.
--   index_builds=on the daemon's role may act as the tables' owner (CREATE INDEX
--                   CONCURRENTLY for rebuild_centroids; REINDEX before PostgreSQL 17). This
--                   gives up "the daemon owns nothing" for those tables: read the README.
--   cron=on         ruvector_owner may pause and resume pg_cron jobs of this database (a
--                   row-level policy on cron.job and UPDATE of its `active` column only:
--                   cron.alter_job lets a non-superuser alter its own jobs alone) and see
--                   their runs. Run it in pg_cron's database (cron.database_name).
-- Safe to run again; it also takes back what older versions granted the daemon.
--
-- The model: everything ruvectord creates belongs to ruvector_owner, which nobody logs in
-- as. The daemon's role can write its own state tables and call two functions that attach or
-- remove the guard trigger; it owns nothing, creates nothing and holds no TRIGGER privilege,
-- so it cannot change anything that runs in another role's session.
\set ON_ERROR_STOP on
\if :{?daemon}
\else
  \set daemon ruvectord
\endif

-- 0. The group roles (NOLOGIN). ruvector_daemon, ruvector_reader and ruvector_operator get
--    their rights from the migrations; membership is granted here.
SELECT format('CREATE ROLE %I NOLOGIN', r)
  FROM unnest(ARRAY['ruvector_owner', 'ruvector_daemon', 'ruvector_reader',
                    'ruvector_operator']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
GRANT ruvector_reader TO ruvector_daemon, ruvector_operator;
-- the owner creates schema ruvector and the public.ruvector_* functions (callers find them
-- without a search_path change)
SELECT format('GRANT CREATE ON DATABASE %I TO ruvector_owner', current_database()) \gexec
GRANT CREATE ON SCHEMA public TO ruvector_owner;

-- 1. The daemon: it reads the catalog and the statistics views (pg_monitor), never a row of
--    your tables.
SELECT format('CREATE ROLE %I LOGIN', :'daemon')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'daemon') \gexec
SELECT format('GRANT ruvector_daemon, pg_monitor TO %I', :'daemon') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'daemon') \gexec
-- older versions gave the daemon CREATE (it owned its schema) and TRIGGER: take them back
SELECT format('REVOKE CREATE ON DATABASE %I FROM %I', current_database(), :'daemon') \gexec
SELECT format('REVOKE CREATE ON SCHEMA public FROM %I', :'daemon') \gexec
SELECT format('REVOKE ruvector_owner FROM %I', :'daemon')
 WHERE pg_has_role(:'daemon', 'ruvector_owner', 'MEMBER') \gexec

-- 2. Collection tables: the owner role may attach the guard (a row trigger on a partitioned
--    table is cloned to every partition, so each needs it); the daemon's role may not.
\if :{?tables}
SELECT format('GRANT TRIGGER ON TABLE %s TO ruvector_owner', p.relid::regclass),
       format('REVOKE TRIGGER ON TABLE %s FROM %I', p.relid::regclass, :'daemon')
  FROM unnest(string_to_array(:'tables', ',')) AS t,
       pg_partition_tree(btrim(t)::regclass) AS p \gexec
\endif

-- 2b. Placement (opt-in): the strategies that move rows do so only through
--     ruvector.placement_move, owned by ruvector_owner, which changes the placement column
--     and nothing else; these grants are what lets the owner do that much.
\if :{?placement}
SELECT format('GRANT SELECT (%s) ON TABLE %s TO ruvector_owner',
              (SELECT string_agg(quote_ident(c), ', ') FROM unnest(f[2:4]) AS c), p.relid::regclass),
       format('GRANT UPDATE (%I) ON TABLE %s TO ruvector_owner', f[2], p.relid::regclass),
       CASE WHEN p.isleaf THEN format('GRANT %s ON TABLE %s TO ruvector_owner',
                                      CASE WHEN current_setting('server_version_num')::int >= 170000
                                           THEN 'MAINTAIN' ELSE 'UPDATE' END,
                                      p.relid::regclass) END
  FROM (SELECT string_to_array(btrim(spec), ':') AS f
          FROM unnest(string_to_array(:'placement', ',')) AS spec) AS s,
       pg_partition_tree(f[1]::regclass) AS p
 WHERE cardinality(f) BETWEEN 3 AND 4 \gexec
\endif

\if :{?ivf_pages}
GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)
    TO ruvector_owner;
\endif

-- 3. Maintenance (opt-in, see the top). Concurrent index builds cannot run inside a
--    function, so those two grants go to the daemon's role itself; everything else goes to
--    ruvector_owner, reachable only through the narrow functions of migration 0006.
\if :{?maintenance}
SELECT CASE WHEN r.rolsuper
            THEN format('DO $x$ BEGIN RAISE EXCEPTION %L; END $x$',
                        format('%s belongs to the superuser %s: give it an ordinary owner '
                               'role first (ALTER TABLE ... OWNER TO ...)', c.oid::regclass,
                               r.rolname))
            ELSE format('GRANT %I TO ruvector_owner', r.rolname) END
  FROM unnest(string_to_array(:'tables', ',')) AS t,
       pg_partition_tree(btrim(t)::regclass) AS p
  JOIN pg_class c ON c.oid = p.relid JOIN pg_roles r ON r.oid = c.relowner
 GROUP BY r.rolname, r.rolsuper, c.oid
 ORDER BY r.rolsuper DESC \gexec
GRANT pg_monitor, pg_signal_backend TO ruvector_owner;
SELECT 'GRANT pg_signal_autovacuum_worker TO ruvector_owner'
 WHERE to_regrole('pg_signal_autovacuum_worker') IS NOT NULL \gexec
\endif
\if :{?canary}
SELECT format('GRANT SELECT ON TABLE %s TO ruvector_owner', p.relid::regclass)
  FROM unnest(string_to_array(:'tables', ',')) AS t,
       pg_partition_tree(btrim(t)::regclass) AS p \gexec
\endif
\if :{?indexes}
SELECT CASE WHEN current_setting('server_version_num')::int >= 170000
            THEN format('GRANT MAINTAIN ON TABLE %s TO %I', p.relid::regclass, :'daemon')
            ELSE 'DO $x$ BEGIN RAISE EXCEPTION ''PostgreSQL before 17 has no MAINTAIN '
                 'privilege: REINDEX needs the table owner (-v index_builds=on, see the '
                 'README)''; END $x$' END
  FROM unnest(string_to_array(:'tables', ',')) AS t,
       pg_partition_tree(btrim(t)::regclass) AS p \gexec
\endif
\if :{?index_builds}
SELECT DISTINCT CASE WHEN r.rolsuper
            THEN format('DO $x$ BEGIN RAISE EXCEPTION %L; END $x$',
                        format('%s belongs to a superuser: never make the daemon one',
                               c.oid::regclass))
            ELSE format('GRANT %I TO %I', r.rolname, :'daemon') END
  FROM unnest(string_to_array(:'tables', ',')) AS t,
       pg_partition_tree(btrim(t)::regclass) AS p
  JOIN pg_class c ON c.oid = p.relid JOIN pg_roles r ON r.oid = c.relowner \gexec
\endif
\if :{?cron}
GRANT USAGE ON SCHEMA cron TO ruvector_owner;
-- ruvector_owner may see every job and run of this database, and change one column, `active`
GRANT UPDATE (active) ON cron.job TO ruvector_owner;
SELECT 'CREATE POLICY ruvector_owner_reads ON cron.job FOR SELECT TO ruvector_owner '
       'USING (database = current_database())'
 WHERE NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = 'cron'
                     AND tablename = 'job' AND policyname = 'ruvector_owner_reads') \gexec
SELECT 'CREATE POLICY ruvector_owner_pauses ON cron.job FOR UPDATE TO ruvector_owner '
       'USING (database = current_database()) WITH CHECK (database = current_database())'
 WHERE NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = 'cron'
                     AND tablename = 'job' AND policyname = 'ruvector_owner_pauses') \gexec
SELECT 'CREATE POLICY ruvector_owner_reads_runs ON cron.job_run_details FOR SELECT '
       'TO ruvector_owner USING (database = current_database())'
 WHERE NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = 'cron'
                     AND tablename = 'job_run_details'
                     AND policyname = 'ruvector_owner_reads_runs') \gexec
\endif

-- 4. People and tools.
\if :{?operators}
SELECT format('GRANT ruvector_operator TO %I', btrim(r))
  FROM unnest(string_to_array(:'operators', ',')) AS r \gexec
\endif
\if :{?readers}
SELECT format('GRANT ruvector_reader TO %I', btrim(r))
  FROM unnest(string_to_array(:'readers', ',')) AS r \gexec
\endif
\if :{?admin}
SELECT format('GRANT ruvector_owner TO %I', :'admin') \gexec
\endif
