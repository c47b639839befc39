-- Enforcement of throttle_ingestion: a trigger on the collection's table that turns away the
-- throttled fraction of inserts, with SQLSTATE RV429 and a retry hint.
--
-- The decision is taken once per statement (so a multi-row INSERT or COPY is accepted or
-- rejected as a whole) and cached for the rest of that statement in a transaction-local
-- setting. The level comes from ruvector.throttles: 'insert' by default; a session that sets
--   SET ruvector.operation = 'bulk_insert'
-- is held to the bulk level instead. With no throttle the cost is one index lookup per row.

CREATE FUNCTION ruvector.throttle_guard()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    op text := lower(coalesce(nullif(current_setting('ruvector.operation', true), ''), 'insert'));
    t record;
    stmt text;
    cached text;
    verdict text;
BEGIN
    IF op = 'point_insert' THEN
        op := 'insert';
    END IF;
    -- the common case, nothing throttled: one index lookup and out
    SELECT th.throttle_pct, th.retry_after_seconds, th.action_id INTO t
      FROM ruvector.throttles th
     WHERE th.collection_id = TG_ARGV[0]::integer AND th.operation = op AND th.throttle_pct > 0;
    IF NOT FOUND THEN
        RETURN NEW;
    END IF;
    -- throttled: decide once per statement, remember it for the statement's other rows
    stmt := statement_timestamp()::text || '/' || pg_backend_pid();
    cached := current_setting('ruvector.throttle_verdict', true);
    IF cached IS NOT NULL AND split_part(cached, '|', 1) = stmt THEN
        verdict := split_part(cached, '|', 2);
    ELSE
        verdict := CASE WHEN random() * 100 < t.throttle_pct THEN 'reject' ELSE 'pass' END;
        PERFORM set_config('ruvector.throttle_verdict', stmt || '|' || verdict, true);
    END IF;
    IF verdict = 'reject' THEN
        RAISE EXCEPTION 'ruvector: % into %.% throttled (% %% of % statements turned away)',
                op, TG_TABLE_SCHEMA, TG_TABLE_NAME, t.throttle_pct, op
            USING ERRCODE = 'RV429',
                  HINT = format('retry after %s s', t.retry_after_seconds),
                  DETAIL = format('throttle_ingestion, healing action %s',
                                  coalesce(t.action_id::text, '-'));
    END IF;
    RETURN NEW;
END
$$;

-- The guard runs with the writer's rights (a SECURITY DEFINER function would cost every
-- insert more than the lookup does); throttle levels are not secret, so anyone may read them.
GRANT USAGE ON SCHEMA ruvector TO PUBLIC;
GRANT SELECT ON ruvector.throttles TO PUBLIC;

-- Install (or replace) the guard on a collection's table. A row-level trigger on a
-- partitioned table is cloned to every partition, present and future, so inserts aimed
-- straight at a partition are guarded too.
-- CREATE TRIGGER takes a lock that queues behind running writes and in front of new ones:
-- never wait for it longer than `wait` (the caller retries later).
CREATE FUNCTION ruvector.install_throttle_guard(tbl regclass, collection_id integer,
                                               wait interval DEFAULT '1 second')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, ruvector
AS $$
BEGIN
    PERFORM set_config('lock_timeout', (extract(epoch FROM wait) * 1000)::bigint || 'ms', true);
    EXECUTE format(
        'CREATE OR REPLACE TRIGGER ruvector_throttle_guard BEFORE INSERT ON %s '
        'FOR EACH ROW EXECUTE FUNCTION ruvector.throttle_guard(%L)',
        tbl, collection_id);
END
$$;

CREATE FUNCTION ruvector.remove_throttle_guard(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, ruvector
AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS ruvector_throttle_guard ON %s', tbl);
END
$$;

CREATE FUNCTION ruvector.has_throttle_guard(tbl regclass)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgrelid = tbl AND tgname = 'ruvector_throttle_guard' AND NOT tgisinternal)
$$;
