-- ruvectord schema v5: the maintenance strategies (pause_maintenance, compact_indexes,
-- rebuild_centroids) and the recall canary.
--
-- Each function below does exactly one kind of thing to a relation or backend of a
-- configured collection, checks that its target belongs to one (ruvector.collection_relation,
-- which reads pg_inherits and takes no lock: these run exactly while something holds a
-- conflicting lock), is SECURITY DEFINER with a fixed search_path, and is EXECUTE-granted
-- to ruvector_daemon only. What ruvector_owner itself may do to collection tables is the
-- DBA's choice, in deploy/sql/roles.sql; without it each function fails with
-- insufficient_privilege and the strategy's decision line says which grant is missing.
--
-- Two things cannot go through a function: REINDEX INDEX CONCURRENTLY and CREATE INDEX
-- CONCURRENTLY refuse to run inside any transaction block, and a function call always is
-- one. They run in the daemon's own session, as statements these functions build from the
-- catalog (format('%I'), regclass), so the daemon's role needs the privilege for them
-- itself (roles.sql -v indexes=on; see the README's privilege matrix).

-- ----------------------------------------------------------------------------- targets
-- The collection's relation `rel` (a leaf partition, or an index on one), or an error.
-- pg_partition_tree() would lock every partition; pg_inherits does not.
CREATE FUNCTION ruvector.collection_relation(collection_id integer, rel regclass)
RETURNS regclass
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    root regclass := ruvector.collection_table(collection_relation.collection_id);
    tbl oid := rel;
BEGIN
    IF rel IS NULL THEN
        RAISE EXCEPTION 'relation must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT i.indrelid INTO tbl FROM pg_index i WHERE i.indexrelid = rel;
    IF NOT FOUND THEN
        tbl := rel;
    END IF;
    IF NOT EXISTS (
        WITH RECURSIVE tree(relid) AS (
            SELECT root::oid
            UNION ALL
            SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid)
        SELECT 1 FROM tree JOIN pg_class c ON c.oid = tree.relid
         WHERE tree.relid = tbl AND c.relkind IN ('r', 'm')) THEN
        RAISE EXCEPTION '% is not a partition of collection % (%), nor an index on one',
                rel, collection_relation.collection_id, root
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN rel;
END
$$;

-- ----------------------------------------------------------------------------- autovacuum
-- Set or remove (NULL) the autovacuum_enabled reloption of one partition, and nothing else.
-- The value is kept as given ('false', 'off', ...), so a rollback restores the exact text.
-- ALTER TABLE ... SET takes SHARE UPDATE EXCLUSIVE, which does not block reads or writes; it
-- does conflict with a running autovacuum, which PostgreSQL then cancels by itself after
-- deadlock_timeout unless it is an anti-wraparound vacuum. Never waits for the lock longer
-- than `wait`.
CREATE FUNCTION ruvector.set_autovacuum(collection_id integer, part regclass, value text,
                                        wait interval DEFAULT '3 seconds')
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tbl regclass := ruvector.collection_relation(set_autovacuum.collection_id, part);
    parsed boolean;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = tbl) THEN
        RAISE EXCEPTION '% is an index, not a partition', tbl
            USING ERRCODE = 'wrong_object_type';
    END IF;
    parsed := value::boolean;  -- anything but a boolean is refused here
    PERFORM set_config('lock_timeout', (extract(epoch FROM wait) * 1000)::bigint || 'ms', true);
    IF value IS NULL THEN
        EXECUTE format('ALTER TABLE %s RESET (autovacuum_enabled)', tbl);
        RETURN 'reset';
    END IF;
    EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = %L)', tbl, value);
    RETURN CASE WHEN parsed THEN 'enabled' ELSE 'disabled' END;
END
$$;

-- How close a relation is to a forced (anti-wraparound) vacuum, as a share of
-- autovacuum_freeze_max_age (its own reloption if set), the larger of xid and multixact.
CREATE FUNCTION ruvector.freeze_age_share(rel regclass)
RETURNS double precision
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT greatest(
        age(c.relfrozenxid)::float8 / coalesce(
            (SELECT option_value::float8 FROM pg_options_to_table(c.reloptions)
              WHERE option_name = 'autovacuum_freeze_max_age'),
            current_setting('autovacuum_freeze_max_age')::float8),
        mxid_age(c.relminmxid)::float8 / coalesce(
            (SELECT option_value::float8 FROM pg_options_to_table(c.reloptions)
              WHERE option_name = 'autovacuum_multixact_freeze_max_age'),
            current_setting('autovacuum_multixact_freeze_max_age')::float8))
      FROM pg_class c WHERE c.oid = rel
$$;

-- Cancel the autovacuum worker `pid` vacuuming a partition of the collection, unless it is an
-- anti-wraparound vacuum or its relation is above 80 % of its freeze max age. Returns what it
-- did ('cancelled', 'gone', or 'refused: why'); never raises for a refusal.
CREATE FUNCTION ruvector.cancel_autovacuum(collection_id integer, pid integer)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    w record;
    share double precision;
BEGIN
    SELECT a.pid, a.query, p.relid INTO w
      FROM pg_stat_activity a LEFT JOIN pg_stat_progress_vacuum p ON p.pid = a.pid
     WHERE a.pid = cancel_autovacuum.pid AND a.backend_type = 'autovacuum worker';
    IF NOT FOUND THEN
        RETURN 'gone';
    END IF;
    IF w.relid IS NULL THEN
        RETURN 'refused: the worker is not vacuuming a table right now';
    END IF;
    PERFORM ruvector.collection_relation(cancel_autovacuum.collection_id, w.relid::regclass);
    IF w.query IS NULL THEN  -- hidden without pg_read_all_stats: never guess, refuse
        RETURN 'refused: cannot see whether it is an anti-wraparound vacuum (ruvector_owner '
               'needs pg_read_all_stats: roles.sql -v maintenance=on)';
    END IF;
    IF w.query LIKE '%(to prevent wraparound)%' THEN
        RETURN format('refused: %s is an anti-wraparound vacuum of %s', w.pid, w.relid::regclass);
    END IF;
    share := ruvector.freeze_age_share(w.relid::regclass);
    IF share > 0.8 THEN
        RETURN format('refused: %s is at %s%% of its freeze max age (above 80%%)',
                      w.relid::regclass, round((share * 100)::numeric, 1));
    END IF;
    IF pg_cancel_backend(w.pid) THEN
        RETURN 'cancelled';
    END IF;
    RETURN 'gone';
END
$$;

-- Cancel a person's (or a script's) VACUUM / REINDEX / CREATE INDEX / CLUSTER session that
-- holds or waits for a lock on the collection. The daemon calls this only when
-- healing.strategies.pause_maintenance.cancel_manual_sessions allows it.
CREATE FUNCTION ruvector.cancel_manual_maintenance(collection_id integer, pid integer)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    q text;
    rel oid;
BEGIN
    SELECT a.query INTO q FROM pg_stat_activity a
     WHERE a.pid = cancel_manual_maintenance.pid AND a.backend_type = 'client backend'
       AND a.state <> 'idle';
    IF NOT FOUND THEN
        RETURN 'gone';
    END IF;
    IF q IS NULL OR q !~* '^\s*(vacuum|reindex|create\s+(unique\s+)?index|cluster)\M' THEN
        RETURN 'refused: not a VACUUM, REINDEX, CREATE INDEX or CLUSTER statement';
    END IF;
    FOR rel IN SELECT l.relation FROM pg_locks l
                WHERE l.pid = cancel_manual_maintenance.pid AND l.locktype = 'relation'
                  AND l.database = (SELECT oid FROM pg_database
                                     WHERE datname = current_database())
    LOOP
        BEGIN
            PERFORM ruvector.collection_relation(cancel_manual_maintenance.collection_id,
                                                 rel::regclass);
            IF pg_cancel_backend(cancel_manual_maintenance.pid) THEN
                RETURN 'cancelled';
            END IF;
            RETURN 'gone';
        EXCEPTION WHEN insufficient_privilege THEN
            -- not this relation; but a failed pg_cancel_backend is re-raised below
            IF SQLERRM NOT LIKE '%is not a partition of collection%' THEN
                RAISE;
            END IF;
        END;
    END LOOP;
    RETURN 'refused: the session touches none of the collection''s relations';
END
$$;

-- ----------------------------------------------------------------------------- pg_cron
-- pg_cron jobs of this database whose command names the collection's table or one of its
-- partitions (as a word). Needs pg_cron and, for jobs of other users, the SELECT policy
-- roles.sql adds on cron.job (-v cron=on). Empty without pg_cron.
CREATE FUNCTION ruvector.cron_jobs(collection_id integer)
RETURNS TABLE (jobid bigint, jobname text, active boolean, username text, command text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    root regclass := ruvector.collection_table(cron_jobs.collection_id);
    names text[];
    r record;
BEGIN
    IF to_regclass('cron.job') IS NULL THEN
        RETURN;
    END IF;
    WITH RECURSIVE tree(relid) AS (
        SELECT root::oid
        UNION ALL
        SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid)
    SELECT array_agg(c.relname::text) INTO names
      FROM tree JOIN pg_class c ON c.oid = tree.relid;
    FOR r IN EXECUTE 'SELECT j.jobid, j.jobname::text AS jobname, j.active, '
                     'j.username::text AS username, j.command FROM cron.job j '
                     'WHERE j.database = current_database() ORDER BY j.jobid'
    LOOP
        -- the name as a word (optionally quoted), case-insensitively
        IF EXISTS (SELECT 1 FROM unnest(names) n
                    WHERE r.command ~* ('(^|[^[:alnum:]_$])"?'
                                        || regexp_replace(n, '([^[:alnum:]_])', '\\\1', 'g')
                                        || '"?($|[^[:alnum:]_$])')) THEN
            jobid := r.jobid;
            jobname := r.jobname;
            active := r.active;
            username := r.username;
            command := r.command;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;

-- Pause (false) or resume (true) one pg_cron job of the collection; returns whether it was
-- active before. cron.alter_job would not do: pg_cron lets a non-superuser alter only jobs
-- whose username is its own. So this updates the one column directly, which is what
-- alter_job does too (cron.job's trigger tells the scheduler): ruvector_owner holds
-- UPDATE (active) on cron.job and a row-level policy for this database's jobs, nothing more
-- (roles.sql -v cron=on), so it can never change a job's command, schedule or user.
CREATE FUNCTION ruvector.cron_set_active(collection_id integer, job_id bigint, active boolean)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    was boolean;
    n integer;
BEGIN
    IF active IS NULL THEN
        RAISE EXCEPTION 'active must be true or false' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT j.active INTO was FROM ruvector.cron_jobs(cron_set_active.collection_id) j
     WHERE j.jobid = cron_set_active.job_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pg_cron job % does not touch collection %', job_id, collection_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE 'UPDATE cron.job SET active = $2 WHERE jobid = $1 AND database = current_database()'
        USING cron_set_active.job_id, cron_set_active.active;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n <> 1 THEN
        RAISE EXCEPTION 'pg_cron job % cannot be changed by ruvector_owner', job_id
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'psql -v cron=on -f deploy/sql/roles.sql in pg_cron''s database';
    END IF;
    RETURN was;
END
$$;

-- Cancel the running runs of one pg_cron job of the collection; returns how many.
CREATE FUNCTION ruvector.cron_cancel_runs(collection_id integer, job_id bigint)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p integer;
    n integer := 0;
BEGIN
    PERFORM 1 FROM ruvector.cron_jobs(cron_cancel_runs.collection_id) j
     WHERE j.jobid = cron_cancel_runs.job_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pg_cron job % does not touch collection %', job_id, collection_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    FOR p IN EXECUTE 'SELECT job_pid FROM cron.job_run_details '
                     'WHERE jobid = $1 AND status = ''running'' AND job_pid > 0'
             USING cron_cancel_runs.job_id
    LOOP
        IF pg_cancel_backend(p) THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;

-- ----------------------------------------------------------------------------- app jobs
-- Application maintenance jobs honour an advisory lock between batches (README):
--   SELECT pg_advisory_lock_shared(ruvector_maintenance_key('items-reembed'));  -- waits
--   ... one batch ...
--   SELECT pg_advisory_unlock_shared(ruvector_maintenance_key('items-reembed'));
-- ruvectord pauses a job by holding the exclusive lock on a session of its own: the pause
-- ends when it lets go, and by itself if the daemon dies (the session ends).
CREATE FUNCTION public.ruvector_maintenance_key(name text)
RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT hashtextextended('ruvector.maintenance:' || name, 0) $$;
GRANT EXECUTE ON FUNCTION public.ruvector_maintenance_key(text) TO PUBLIC;

ALTER TABLE ruvector.maintenance_jobs
    ADD COLUMN name text,
    ADD COLUMN pausable boolean NOT NULL DEFAULT true;
UPDATE ruvector.maintenance_jobs SET name = job_type || '-' || id WHERE name IS NULL;
ALTER TABLE ruvector.maintenance_jobs
    ALTER COLUMN name SET NOT NULL,
    ADD CONSTRAINT maintenance_jobs_name_key UNIQUE (name),
    ADD COLUMN lock_key bigint GENERATED ALWAYS AS (public.ruvector_maintenance_key(name)) STORED;
-- operators register and remove jobs; the daemon marks them paused
GRANT INSERT, UPDATE, DELETE ON ruvector.maintenance_jobs TO ruvector_operator;

-- ----------------------------------------------------------------------------- indexes
-- The statement that rebuilds one vector index of the collection without blocking writes.
-- Run by the daemon in its own session (no function can run it, see the top).
CREATE FUNCTION ruvector.reindex_statement(collection_id integer, idx regclass)
RETURNS text
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ruvector.collection_relation(reindex_statement.collection_id, idx);
    IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                     JOIN pg_am am ON am.oid = c.relam
                    WHERE i.indexrelid = idx AND am.amname IN ('hnsw', 'ivfflat')) THEN
        RAISE EXCEPTION '% is not an HNSW or IVFFlat index', idx
            USING ERRCODE = 'wrong_object_type';
    END IF;
    RETURN format('REINDEX INDEX CONCURRENTLY %s', idx);
END
$$;

-- The plain VACUUM of the index's partition that compact_indexes runs before its REINDEX: the
-- rebuilt index then holds only live rows, and the dead tuples the sensor counts are gone.
-- Plain VACUUM takes SHARE UPDATE EXCLUSIVE: reads and writes go on.
CREATE FUNCTION ruvector.vacuum_statement(collection_id integer, idx regclass)
RETURNS text
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ruvector.reindex_statement(vacuum_statement.collection_id, idx);
    RETURN format('VACUUM (INDEX_CLEANUP ON) %s',
                  (SELECT indrelid::regclass FROM pg_index WHERE indexrelid = idx));
END
$$;

-- CREATE INDEX CONCURRENTLY of an IVFFlat index like `idx` (same column, operator class,
-- tablespace and predicate) with `lists` lists, named `new_name`, next to it.
CREATE FUNCTION ruvector.ivfflat_build_statement(collection_id integer, idx regclass,
                                                 lists integer, new_name text)
RETURNS text
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    PERFORM ruvector.collection_relation(ivfflat_build_statement.collection_id, idx);
    IF lists IS NULL OR lists < 1 OR lists > 32768 THEN
        RAISE EXCEPTION 'lists must be in 1..32768, not %', lists
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF new_name IS NULL OR new_name !~ '^[a-z_][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'new index name % is not a plain identifier of at most 63 characters',
                new_name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT i.indrelid::regclass AS tbl, i.indnatts, i.indexprs IS NOT NULL AS has_exprs,
           pg_get_indexdef(i.indexrelid, 1, false) AS coldef,
           format('%I.%I', opn.nspname, op.opcname) AS opclass,
           pg_get_expr(i.indpred, i.indrelid) AS pred, ts.spcname, n.nspname, am.amname
      INTO r
      FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_am am ON am.oid = c.relam
      JOIN pg_opclass op ON op.oid = i.indclass[0]
      JOIN pg_namespace opn ON opn.oid = op.opcnamespace
      LEFT JOIN pg_tablespace ts ON ts.oid = c.reltablespace
     WHERE i.indexrelid = idx;
    IF r.amname IS DISTINCT FROM 'ivfflat' OR r.indnatts <> 1 THEN
        RAISE EXCEPTION '% is not a single-column IVFFlat index', idx
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF to_regclass(format('%I.%I', r.nspname, new_name)) IS NOT NULL THEN
        RAISE EXCEPTION 'relation %.% already exists', r.nspname, new_name
            USING ERRCODE = 'duplicate_table';
    END IF;
    RETURN format('CREATE INDEX CONCURRENTLY %I ON %s USING ivfflat (%s %s) WITH (lists = %s)',
                  new_name, r.tbl, r.coldef, r.opclass, lists)
        || CASE WHEN r.spcname IS NULL THEN '' ELSE format(' TABLESPACE %I', r.spcname) END
        || CASE WHEN r.pred IS NULL THEN '' ELSE ' WHERE ' || r.pred END;
END
$$;

-- The statement that builds a copy of an index from its saved definition (pg_get_indexdef),
-- concurrently and under `new_name`: how a rollback brings back a dropped index exactly.
CREATE FUNCTION ruvector.index_restore_statement(collection_id integer, part regclass,
                                                 definition text, old_name text,
                                                 new_name text)
RETURNS text
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    at integer;
BEGIN
    PERFORM ruvector.collection_relation(index_restore_statement.collection_id, part);
    IF new_name IS NULL OR new_name !~ '^[a-z_][a-z0-9_]{0,62}$' THEN
        RAISE EXCEPTION 'new index name % is not a plain identifier', new_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- the saved text is pg_get_indexdef() of an index on `part` (its table name may or may not
    -- be schema-qualified, as the reading session's search_path had it); keep what follows
    -- USING: the method, columns, operator classes, options, tablespace and predicate
    at := position(' USING ' IN definition);
    IF definition !~ '^CREATE INDEX ' OR at = 0
       OR position(format('CREATE INDEX %I ON ', old_name) IN definition) <> 1 THEN
        RAISE EXCEPTION 'the saved definition is not an index named %', old_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN format('CREATE INDEX CONCURRENTLY %I ON %s', new_name, part)
        || substr(definition, at);
END
$$;

-- Drop a leftover index of the collection: one that is invalid (a failed or interrupted
-- concurrent build: REINDEX CONCURRENTLY's *_ccnew, CREATE INDEX CONCURRENTLY's remains), or
-- a copy ruvectord built itself (ruvector_rebuild_N, ruvector_restore_N) that was never
-- swapped in. Any other valid index is never dropped here. DROP INDEX takes ACCESS EXCLUSIVE
-- on the table: never wait long for it.
CREATE FUNCTION ruvector.drop_leftover_index(collection_id integer, idx regclass,
                                             wait interval DEFAULT '1 second')
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ruvector.collection_relation(drop_leftover_index.collection_id, idx);
    IF NOT EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = idx) THEN
        RAISE EXCEPTION '% is not an index', idx USING ERRCODE = 'wrong_object_type';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                WHERE i.indexrelid = idx AND i.indisvalid
                  AND c.relname !~ '^ruvector_(rebuild|restore)_[0-9]+$') THEN
        RAISE EXCEPTION '% is a valid index that ruvectord did not build; it is not dropped', idx
            USING ERRCODE = 'object_in_use';
    END IF;
    PERFORM set_config('lock_timeout', (extract(epoch FROM wait) * 1000)::bigint || 'ms', true);
    EXECUTE format('DROP INDEX %s', idx);
    RETURN 'dropped';
END
$$;

-- ----------------------------------------------------------------------------- canary
-- A fixed set of probe vectors per partition, sampled once from its rows. They are rows of
-- the collection: readers do not see this table, only the canary functions read it.
CREATE TABLE ruvector.probe_vectors (
    collection_id integer NOT NULL REFERENCES ruvector.collections (id) ON DELETE CASCADE,
    partition_name text NOT NULL,
    probe_no integer NOT NULL,
    embedding text NOT NULL,
    sampled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_id, partition_name, probe_no)
);
REVOKE ALL ON ruvector.probe_vectors FROM ruvector_reader;

-- The ordering (distance) operator of an index's operator class, schema-qualified as
-- OPERATOR(schema.op) (these functions run with search_path = pg_catalog), or NULL.
CREATE FUNCTION ruvector.index_distance_operator(idx regclass)
RETURNS text
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('OPERATOR(%I.%s)', n.nspname, o.oprname)
      FROM pg_index i
      JOIN pg_opclass oc ON oc.oid = i.indclass[0]
      JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoppurpose = 'o'
      JOIN pg_operator o ON o.oid = ao.amopopr
      JOIN pg_namespace n ON n.oid = o.oprnamespace
     WHERE i.indexrelid = idx
     ORDER BY ao.amopstrategy
     LIMIT 1
$$;

-- Sample `n` probe vectors of a partition once (returns how many are stored). Reads rows:
-- ruvector_owner needs SELECT on the partition (roles.sql -v canary=on).
CREATE FUNCTION ruvector.sample_probes(collection_id integer, part regclass, n integer)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    col text;
    have integer;
BEGIN
    PERFORM ruvector.collection_relation(sample_probes.collection_id, part);
    SELECT count(*) INTO have FROM ruvector.probe_vectors p
     WHERE p.collection_id = sample_probes.collection_id AND p.partition_name = part::text;
    IF have > 0 THEN
        RETURN have;
    END IF;
    SELECT c.vector_column INTO col FROM ruvector.collections c
     WHERE c.id = sample_probes.collection_id;
    EXECUTE format(
        'INSERT INTO ruvector.probe_vectors (collection_id, partition_name, probe_no, embedding) '
        'SELECT $1, $2, row_number() OVER (), v FROM ('
        '  SELECT %I::text AS v FROM %s WHERE %I IS NOT NULL ORDER BY random() LIMIT $3) s',
        col, part, col)
        USING sample_probes.collection_id, part::text, greatest(1, least(n, 1000));
    GET DIAGNOSTICS have = ROW_COUNT;
    RETURN have;
END
$$;

-- For each probe of the index's partition, the distance of the k-th nearest row by exact
-- search (a sequential scan: no index is used).
CREATE FUNCTION ruvector.canary_exact(collection_id integer, idx regclass, k integer)
RETURNS double precision[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_indexscan = off
SET enable_bitmapscan = off
SET enable_indexonlyscan = off
AS $$
DECLARE
    part regclass;
    col text;
    vtype text;
    op text := ruvector.index_distance_operator(idx);
    p record;
    d double precision;
    out double precision[] := '{}';
BEGIN
    PERFORM ruvector.collection_relation(canary_exact.collection_id, idx);
    SELECT i.indrelid::regclass INTO part FROM pg_index i WHERE i.indexrelid = idx;
    SELECT c.vector_column INTO col FROM ruvector.collections c
     WHERE c.id = canary_exact.collection_id;
    SELECT format_type(a.atttypid, a.atttypmod) INTO vtype FROM pg_attribute a
     WHERE a.attrelid = part AND a.attname = col;
    IF op IS NULL THEN
        RAISE EXCEPTION 'no known distance operator for index %', idx
            USING ERRCODE = 'wrong_object_type';
    END IF;
    FOR p IN SELECT pv.embedding FROM ruvector.probe_vectors pv
              WHERE pv.collection_id = canary_exact.collection_id
                AND pv.partition_name = part::text ORDER BY pv.probe_no
    LOOP
        EXECUTE format('SELECT max(d) FROM (SELECT %I %s $1::%s AS d FROM %s '
                       'WHERE %I IS NOT NULL ORDER BY 1 LIMIT %s) s',
                       col, op, vtype, part, col, k)
            INTO d USING p.embedding;
        out := out || d;
    END LOOP;
    RETURN out;
END
$$;

-- Recall of the index against `kth` (canary_exact's distances, one per probe): the share
-- of the index's top-k rows no farther than the exact k-th. The index search runs as
-- applications' do, with the index forced (sequential scans off) and the given search
-- settings (0: the server's).
CREATE FUNCTION ruvector.canary_index(collection_id integer, idx regclass, k integer,
                                      kth double precision[], ivfflat_probes integer,
                                      hnsw_ef_search integer)
RETURNS double precision
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
DECLARE
    part regclass;
    col text;
    vtype text;
    op text := ruvector.index_distance_operator(idx);
    p record;
    hits bigint := 0;
    total bigint := 0;
    got bigint;
    i integer := 0;
BEGIN
    PERFORM ruvector.collection_relation(canary_index.collection_id, idx);
    SELECT x.indrelid::regclass INTO part FROM pg_index x WHERE x.indexrelid = idx;
    SELECT c.vector_column INTO col FROM ruvector.collections c
     WHERE c.id = canary_index.collection_id;
    SELECT format_type(a.atttypid, a.atttypmod) INTO vtype FROM pg_attribute a
     WHERE a.attrelid = part AND a.attname = col;
    IF ivfflat_probes > 0 THEN
        PERFORM set_config('ivfflat.probes', ivfflat_probes::text, true);
    END IF;
    IF hnsw_ef_search > 0 THEN
        PERFORM set_config('hnsw.ef_search', hnsw_ef_search::text, true);
    END IF;
    FOR p IN SELECT pv.embedding FROM ruvector.probe_vectors pv
              WHERE pv.collection_id = canary_index.collection_id
                AND pv.partition_name = part::text ORDER BY pv.probe_no
    LOOP
        i := i + 1;
        EXIT WHEN i > coalesce(array_length(kth, 1), 0);
        CONTINUE WHEN kth[i] IS NULL;
        EXECUTE format('SELECT count(*) FILTER (WHERE d <= $2 * (1 + 1e-6) + 1e-9) FROM '
                       '(SELECT %I %s $1::%s AS d FROM %s WHERE %I IS NOT NULL '
                       'ORDER BY %I %s $1::%s LIMIT %s) s',
                       col, op, vtype, part, col, col, op, vtype, k)
            INTO got USING p.embedding, kth[i];
        hits := hits + got;
        total := total + k;
    END LOOP;
    IF total = 0 THEN
        RETURN NULL;
    END IF;
    RETURN hits::float8 / total;
END
$$;

-- The swap: in one short transaction, drop the old index and give the new one its name;
-- then measure the new index's recall (now the only one on the partition, so the planner
-- cannot pick the old) and, below `min_recall`, raise: the whole swap is undone and the old
-- index stays, exactly as it was. Returns the recall measured.
CREATE FUNCTION ruvector.swap_index(collection_id integer, old_idx regclass,
                                    new_idx regclass, kth double precision[], k integer,
                                    min_recall double precision, ivfflat_probes integer,
                                    hnsw_ef_search integer, wait interval DEFAULT '2 seconds')
RETURNS double precision
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_name text;
    recall double precision;
BEGIN
    PERFORM ruvector.collection_relation(swap_index.collection_id, old_idx);
    PERFORM ruvector.collection_relation(swap_index.collection_id, new_idx);
    IF (SELECT indrelid FROM pg_index WHERE indexrelid = old_idx)
       IS DISTINCT FROM (SELECT indrelid FROM pg_index WHERE indexrelid = new_idx) THEN
        RAISE EXCEPTION '% and % are not on the same partition', old_idx, new_idx
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT (SELECT indisvalid FROM pg_index WHERE indexrelid = new_idx) THEN
        RAISE EXCEPTION 'the new index % is not valid', new_idx
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT relname INTO old_name FROM pg_class WHERE oid = old_idx;
    PERFORM set_config('lock_timeout', (extract(epoch FROM wait) * 1000)::bigint || 'ms', true);
    EXECUTE format('DROP INDEX %s', old_idx);
    EXECUTE format('ALTER INDEX %s RENAME TO %I', new_idx, old_name);
    IF min_recall IS NOT NULL AND min_recall > 0 THEN
        recall := ruvector.canary_index(swap_index.collection_id, new_idx, k, kth,
                                        ivfflat_probes, hnsw_ef_search);
        IF recall IS NULL OR recall < min_recall THEN
            RAISE EXCEPTION 'recall % of the new index is below the floor %; swap undone',
                    coalesce(round(recall::numeric, 3)::text, 'unknown'), min_recall
                USING ERRCODE = 'RV410';
        END IF;
    END IF;
    RETURN recall;
END
$$;

-- Put a restored copy back under its old name: drop the index now holding the name, rename
-- the copy (one short transaction, as swap_index without a canary).
CREATE FUNCTION ruvector.replace_index(collection_id integer, current_idx regclass,
                                       restored_idx regclass, wait interval DEFAULT '2 seconds')
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ruvector.swap_index(replace_index.collection_id, current_idx, restored_idx,
                                NULL, 1, NULL, 0, 0, wait);
    RETURN 'replaced';
END
$$;

-- ----------------------------------------------------------------------------- grants
-- ruvector.collection_relation, freeze_age_share and index_distance_operator are helpers
-- of the functions above; the daemon calls only these:
GRANT EXECUTE ON FUNCTION
    ruvector.set_autovacuum(integer, regclass, text, interval),
    ruvector.cancel_autovacuum(integer, integer),
    ruvector.cancel_manual_maintenance(integer, integer),
    ruvector.cron_jobs(integer),
    ruvector.cron_set_active(integer, bigint, boolean),
    ruvector.cron_cancel_runs(integer, bigint),
    ruvector.reindex_statement(integer, regclass),
    ruvector.vacuum_statement(integer, regclass),
    ruvector.ivfflat_build_statement(integer, regclass, integer, text),
    ruvector.index_restore_statement(integer, regclass, text, text, text),
    ruvector.drop_leftover_index(integer, regclass, interval),
    ruvector.sample_probes(integer, regclass, integer),
    ruvector.canary_exact(integer, regclass, integer),
    ruvector.canary_index(integer, regclass, integer, double precision[], integer, integer),
    ruvector.swap_index(integer, regclass, regclass, double precision[], integer,
                        double precision, integer, integer, interval),
    ruvector.replace_index(integer, regclass, regclass, interval)
    TO ruvector_daemon;
-- centroid_stats describe the lists of one IVFFlat index: rebuild_centroids clears them when
-- it replaces the index (the application refills them) and its rollback restores them
GRANT INSERT, DELETE ON ruvector.centroid_stats TO ruvector_daemon;
