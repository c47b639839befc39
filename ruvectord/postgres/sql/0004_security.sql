-- ruvectord schema v4: the security model.
--
-- Everything in schema ruvector and every public.ruvector_* function is owned by
-- ruvector_owner, a NOLOGIN role nobody runs as (migrations run under SET ROLE from an
-- administrator's connection). The daemon's runtime role (a member of ruvector_daemon) may
-- write its own state tables and call two guard-installing functions; it cannot replace or
-- alter anything that runs in another role's session. Functions that other roles execute are
-- SECURITY DEFINER with a fixed search_path, so neither the caller's search_path nor anything
-- the caller can SET decides what they do.
--
-- The roles ruvector_owner, ruvector_daemon, ruvector_reader and ruvector_operator exist
-- before this file runs, the latter two members of ruvector_reader (role membership is the
-- administrator's business: ruvectord.postgres.migrations or deploy/sql/roles.sql).

-- ----------------------------------------------------------------------------- defaults
-- Nothing the owner creates is executable by PUBLIC unless granted below, one by one.
ALTER DEFAULT PRIVILEGES FOR ROLE ruvector_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA ruvector FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA ruvector FROM PUBLIC;
REVOKE CREATE, USAGE ON SCHEMA ruvector FROM PUBLIC;
GRANT USAGE ON SCHEMA ruvector TO ruvector_daemon, ruvector_reader;
-- readers (and so operators and the daemon) may read every ruvector table, now and later
GRANT SELECT ON ALL TABLES IN SCHEMA ruvector TO ruvector_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE ruvector_owner IN SCHEMA ruvector
    GRANT SELECT ON TABLES TO ruvector_reader;

-- ----------------------------------------------------------------------------- bad rows
-- A NaN or an infinity in a row the daemon reads used to fail every sample or every healing
-- attempt. NOT VALID: rows written before this version stay; the sampler skips those.
ALTER TABLE ruvector.centroid_stats
    ADD CONSTRAINT centroid_stats_latency_finite
        CHECK (latency_ms IS NULL OR (latency_ms >= 0 AND latency_ms < 3600000)) NOT VALID;
ALTER TABLE ruvector.throttles
    ADD CONSTRAINT throttles_retry_finite
        CHECK (retry_after_seconds >= 0 AND retry_after_seconds <= 86400) NOT VALID;

-- ----------------------------------------------------------------------------- leases
-- A throttle is a lease: it holds only until expires_at, which only the acting daemon
-- renews while it still judges the collection degraded. The trigger and the gate ignore an
-- expired row, so a brake whose owner is gone fails open. Rows from before leases existed
-- are expired at once; new rows must say when they expire (no default).
ALTER TABLE ruvector.throttles ADD COLUMN expires_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE ruvector.throttles ALTER COLUMN expires_at DROP DEFAULT;

-- ----------------------------------------------------------------------------- control
-- Healing on/off for the whole database, obeyed by every daemon (`ruvectord pause`).
CREATE TABLE ruvector.control (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    paused     boolean NOT NULL DEFAULT false,
    reason     text,
    changed_by text,
    changed_at timestamptz
);
INSERT INTO ruvector.control DEFAULT VALUES;

-- Requests from SQL and the CLI; the acting daemon signs each one into the audit trail.
ALTER TABLE ruvector.healing_requests DROP CONSTRAINT healing_requests_kind_check;
ALTER TABLE ruvector.healing_requests ADD CONSTRAINT healing_requests_kind_check
    CHECK (kind IN ('trigger', 'execute', 'approve', 'reject', 'abort', 'rollback', 'enable',
                    'lift', 'configure'));
ALTER TABLE ruvector.healing_requests ALTER COLUMN requested_by SET DEFAULT session_user;
ALTER TABLE ruvector.healing_requests
    ADD COLUMN status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'done', 'failed')),
    ADD COLUMN processed_by text;

-- ----------------------------------------------------------------------------- audit chain
-- Each event carries the SHA-256 of the previous event (its canonical form and signature),
-- inside what it signs; the head row names the newest event, so a deleted, reordered or
-- replayed row breaks the chain. NULL prev_hash: an event from before the chain existed.
ALTER TABLE ruvector.integrity_events ADD COLUMN prev_hash bytea;
CREATE TABLE ruvector.audit_head (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_event_id bigint,
    last_hash     bytea
);
INSERT INTO ruvector.audit_head DEFAULT VALUES;

-- ----------------------------------------------------------------------------- the guard
-- Throttle enforcement for inserts. What the throttled session can SET does not decide:
--  * its `ruvector.operation` label may only make it stricter (bulk_insert), never looser;
--  * the per-statement verdict is derived from the statement's start time and the backend
--    pid (one verdict for every row of a statement, COPY included), not cached in a setting;
--  * SECURITY DEFINER with a fixed search_path: its own search_path cannot shadow an operator.
CREATE OR REPLACE FUNCTION ruvector.throttle_guard()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    asked text := lower(nullif(current_setting('ruvector.operation', true), ''));
    t record;
    roll bigint;
BEGIN
    IF asked IS NULL OR asked = 'point_insert' THEN
        asked := 'insert';
    END IF;
    SELECT th.operation, th.throttle_pct, th.retry_after_seconds, th.action_id INTO t
      FROM ruvector.throttles th
     WHERE th.collection_id = TG_ARGV[0]::integer
       AND th.operation IN ('insert', asked)
       AND th.throttle_pct > 0
       AND th.expires_at > statement_timestamp()
     ORDER BY th.throttle_pct DESC
     LIMIT 1;
    IF NOT FOUND THEN
        RETURN NEW;
    END IF;
    roll := hashtextextended(statement_timestamp()::text || '/' || pg_backend_pid(),
                             TG_ARGV[0]::bigint);
    IF t.throttle_pct >= 100 OR ((roll % 100) + 100) % 100 < t.throttle_pct THEN
        RAISE EXCEPTION 'ruvector: % into %.% throttled (% %% of % statements turned away)',
                t.operation, TG_TABLE_SCHEMA, TG_TABLE_NAME, t.throttle_pct, t.operation
            USING ERRCODE = 'RV429',
                  HINT = format('retry after %s s', t.retry_after_seconds),
                  DETAIL = format('throttle_ingestion, healing action %s',
                                  coalesce(t.action_id::text, '-'));
    END IF;
    RETURN NEW;
END
$$;

-- Installing the guard is the only DDL the daemon can cause on a collection table, and only
-- through these two functions: the owner holds TRIGGER on the collection tables (granted by
-- deploy/sql/roles.sql), the daemon holds none, so it cannot attach a function of its own.
DROP FUNCTION ruvector.install_throttle_guard(regclass, integer, interval);
DROP FUNCTION ruvector.remove_throttle_guard(regclass);

CREATE FUNCTION ruvector.collection_table(collection_id integer)
RETURNS regclass
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tbl regclass;
BEGIN
    SELECT to_regclass(format('%I.%I', c.table_schema, c.table_name)) INTO tbl
      FROM ruvector.collections c WHERE c.id = collection_table.collection_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no collection with id %', collection_table.collection_id
            USING ERRCODE = 'undefined_object';
    END IF;
    IF tbl IS NULL THEN
        RAISE EXCEPTION 'the table of collection % does not exist', collection_table.collection_id
            USING ERRCODE = 'undefined_table';
    END IF;
    RETURN tbl;
END
$$;

-- CREATE TRIGGER queues behind running writes and in front of new ones: never wait for its
-- lock longer than `wait` (the caller retries later).
CREATE FUNCTION ruvector.install_throttle_guard(collection_id integer,
                                               wait interval DEFAULT '1 second')
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tbl regclass := ruvector.collection_table(install_throttle_guard.collection_id);
BEGIN
    IF EXISTS (SELECT 1 FROM pg_trigger
                WHERE tgrelid = tbl AND tgname = 'ruvector_throttle_guard' AND NOT tgisinternal) THEN
        RETURN 'installed';
    END IF;
    PERFORM set_config('lock_timeout', (extract(epoch FROM wait) * 1000)::bigint || 'ms', true);
    EXECUTE format(
        'CREATE TRIGGER ruvector_throttle_guard BEFORE INSERT ON %s '
        'FOR EACH ROW EXECUTE FUNCTION ruvector.throttle_guard(%L)',
        tbl, install_throttle_guard.collection_id);
    RETURN 'installed now';
END
$$;

CREATE FUNCTION ruvector.remove_throttle_guard(collection_id integer)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS ruvector_throttle_guard ON %s',
                   ruvector.collection_table(remove_throttle_guard.collection_id));
END
$$;

-- ----------------------------------------------------------------------------- the gate
-- Fails open: a stale state (no sample for three intervals: the daemon is gone) allows, and
-- an expired throttle is ignored. A throttle that lets nothing through is a deferral, not an
-- "allowed" answer with factor 0.
CREATE OR REPLACE FUNCTION public.ruvector_integrity_gate(collection text, operation text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    op text := lower(btrim(ruvector_integrity_gate.operation));
    risk text := ruvector.operation_risk(op);
    st record;
    stale boolean;
    state text;
    resp text;
    factor double precision;
    retry double precision;
    why text;
BEGIN
    IF ruvector_integrity_gate.collection IS NULL THEN
        RAISE EXCEPTION 'collection must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF op IS NULL OR op = '' THEN
        RAISE EXCEPTION 'operation must be a non-empty text such as ''search'' or ''bulk_insert'''
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT coalesce(s.state, 'normal') AS state, s.lambda_cut, s.last_sample_at,
           p.sample_interval_seconds, t.throttle_pct, t.retry_after_seconds, t.expires_at
      INTO st
      FROM ruvector.collections c
      LEFT JOIN ruvector.integrity_state s ON s.collection_id = c.id
      LEFT JOIN ruvector.integrity_policies p ON p.collection_id = c.id
      LEFT JOIN LATERAL (
            SELECT th.throttle_pct, th.retry_after_seconds, th.expires_at
              FROM ruvector.throttles th
             WHERE th.collection_id = c.id AND th.throttle_pct > 0
               AND th.expires_at > statement_timestamp()
               AND (th.operation = op OR (th.operation = 'insert' AND op = 'point_insert'))
             ORDER BY th.throttle_pct DESC
             LIMIT 1) t ON true
     WHERE c.name = ruvector_integrity_gate.collection;
    IF NOT FOUND THEN
        PERFORM ruvector.collection_id(ruvector_integrity_gate.collection);  -- raises, with a hint
    END IF;
    stale := st.last_sample_at IS NULL OR now() - st.last_sample_at
             > make_interval(secs => 3 * coalesce(st.sample_interval_seconds, 60) + 5);
    state := st.state;

    -- the spec's matrix (mirrored by ruvectord.integrity.gate.MATRIX; the tests compare them)
    IF stale OR state = 'normal' OR (risk = 'low' AND state = 'stress') THEN
        resp := 'allow'; factor := 1.0; retry := 0;
    ELSIF risk = 'low' THEN
        resp := 'throttle'; factor := 0.8; retry := 0;
    ELSIF risk = 'medium' AND state = 'stress' THEN
        resp := 'throttle'; factor := 0.5; retry := 0;
    ELSIF risk = 'medium' THEN
        resp := 'defer'; factor := 0.0; retry := 60;
    ELSIF state = 'stress' THEN
        resp := 'defer'; factor := 0.0; retry := 300;
    ELSE
        resp := 'reject'; factor := 0.0; retry := 0;
    END IF;
    IF stale THEN
        why := format('%s-risk operation; integrity unknown (no recent sample: is ruvectord '
                      'running?), so allowed', risk);
    ELSE
        why := format('%s-risk operation in %s', risk, state);
    END IF;
    IF resp = 'throttle' THEN
        why := why || format(': proceed at %s%%', round((factor * 100)::numeric));
    ELSIF resp = 'defer' THEN
        why := why || format(': retry in %s s', retry);
    ELSIF resp = 'reject' THEN
        why := why || ': not allowed until integrity recovers';
    END IF;

    -- a throttle set by the healer narrows what the matrix allows, never widens it
    IF resp IN ('allow', 'throttle') AND st.throttle_pct IS NOT NULL
       AND 1 - st.throttle_pct / 100.0 < factor THEN
        factor := 1 - st.throttle_pct / 100.0;
        retry := greatest(retry, st.retry_after_seconds);
        IF factor <= 0 THEN
            resp := 'defer';
            why := why || format('; healing turns away every %s until %s', op, st.expires_at);
        ELSE
            resp := 'throttle';
            why := why || format('; healing throttles %s to %s%% until %s',
                                 op, 100 - st.throttle_pct, st.expires_at);
        END IF;
    END IF;

    RETURN jsonb_build_object(
        'collection', ruvector_integrity_gate.collection,
        'operation', op,
        'response', resp,
        'allowed', resp IN ('allow', 'throttle'),
        'risk_level', risk,
        'state', state,
        'throttle_factor', factor,
        'retry_after_secs', retry,
        'reason', why,
        'lambda_cut', st.lambda_cut,
        'sampled_at', st.last_sample_at,
        'stale', stale
    );
END
$$;

-- The status function reads what the gate reads, for readers; throttles show their lease.
CREATE OR REPLACE FUNCTION public.ruvector_integrity_status(collection text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cid integer := ruvector.collection_id(collection);
    result jsonb;
BEGIN
    SELECT jsonb_build_object(
        'collection', c.name,
        'table', format('%I.%I', c.table_schema, c.table_name),
        'collection_status', c.status,
        'collection_status_detail', c.status_detail,
        'state', coalesce(s.state, 'normal'),
        'lambda_cut', s.lambda_cut,
        'lambda_cut_raw', s.lambda_cut_raw,
        'lambda2', s.lambda2,
        'witness_edges', coalesce(s.witness_edges, '[]'::jsonb),
        'decision', s.decision,
        'last_sample_at', s.last_sample_at,
        'last_transition_at', s.last_transition_at,
        'stale', ruvector.is_stale(s.last_sample_at, p.sample_interval_seconds),
        'tracker', coalesce(s.tracker, '{}'::jsonb),
        'policy', CASE WHEN p.collection_id IS NULL THEN NULL
                       ELSE to_jsonb(p) - 'collection_id' END,
        'paused', (SELECT k.paused FROM ruvector.control k),
        'throttles', coalesce((SELECT jsonb_object_agg(t.operation, t.throttle_pct)
                                 FROM ruvector.throttles t
                                WHERE t.collection_id = cid AND t.throttle_pct > 0
                                  AND t.expires_at > statement_timestamp()),
                              '{}'::jsonb),
        'throttle_leases', coalesce((SELECT jsonb_object_agg(t.operation, t.expires_at)
                                       FROM ruvector.throttles t
                                      WHERE t.collection_id = cid AND t.throttle_pct > 0
                                        AND t.expires_at > statement_timestamp()),
                                    '{}'::jsonb)
    ) INTO result
    FROM ruvector.collections c
    LEFT JOIN ruvector.integrity_state s ON s.collection_id = c.id
    LEFT JOIN ruvector.integrity_policies p ON p.collection_id = c.id
    WHERE c.id = cid;
    RETURN result;
END
$$;

-- ----------------------------------------------------------------------------- operators
-- Requests are recorded with session_user (who logged in), which no caller can choose, and
-- take effect in the database at once where that is the safe direction (pausing, lifting a
-- brake); the acting daemon signs each into the audit trail when it picks it up.
CREATE FUNCTION ruvector.request(kind text, collection text, action_id bigint, payload jsonb)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    id bigint;
BEGIN
    INSERT INTO ruvector.healing_requests (kind, collection, action_id, payload, requested_by)
    VALUES (request.kind, request.collection, request.action_id,
            coalesce(request.payload, '{}'::jsonb), session_user)
    RETURNING healing_requests.id INTO id;
    PERFORM pg_notify('ruvector_healing', id::text);
    RETURN id;
END
$$;

CREATE FUNCTION public.ruvector_healing_enable(enabled boolean, reason text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF enabled IS NULL THEN
        RAISE EXCEPTION 'enabled must be true or false' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE ruvector.control
       SET paused = NOT enabled, reason = ruvector_healing_enable.reason,
           changed_by = session_user, changed_at = now();
    RETURN ruvector.request('enable', NULL, NULL,
                            jsonb_build_object('enabled', enabled, 'reason', reason));
END
$$;

CREATE FUNCTION public.ruvector_healing_throttles()
RETURNS TABLE (collection text, operation text, throttle_pct smallint,
               retry_after_seconds double precision, action_id bigint,
               expires_at timestamptz, in_force boolean)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.name, t.operation, t.throttle_pct, t.retry_after_seconds, t.action_id,
           t.expires_at, t.throttle_pct > 0 AND t.expires_at > statement_timestamp()
      FROM ruvector.throttles t JOIN ruvector.collections c ON c.id = t.collection_id
     ORDER BY c.name, t.operation
$$;

-- The brake comes off at once (every lease of the collection expires now, and an expired
-- lease is never renewed); the daemon then undoes the action with its own rollback.
CREATE FUNCTION public.ruvector_healing_throttle_lift(collection text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cid integer := ruvector.collection_id(ruvector_healing_throttle_lift.collection);
    n integer;
BEGIN
    UPDATE ruvector.throttles SET expires_at = statement_timestamp(), updated_at = now()
     WHERE collection_id = cid AND expires_at > statement_timestamp();
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN ruvector.request('lift', ruvector_healing_throttle_lift.collection, NULL,
                            jsonb_build_object('throttles_lifted', n));
END
$$;

CREATE FUNCTION ruvector.decide(action_id bigint, approve boolean, reason text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current text;
    cname text;
BEGIN
    IF action_id IS NULL THEN
        RAISE EXCEPTION 'action_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE ruvector.healing_actions a
       SET status = CASE WHEN approve THEN 'approved' ELSE 'rejected' END,
           decided_by = session_user, decided_at = now(), updated_at = now(),
           error_message = CASE WHEN approve THEN a.error_message
                                ELSE coalesce('rejected: ' || reason, 'rejected') END
     WHERE a.id = decide.action_id AND a.status = 'pending_approval';
    IF NOT FOUND THEN
        SELECT a.status INTO current FROM ruvector.healing_actions a WHERE a.id = decide.action_id;
        IF current IS NULL THEN
            RAISE EXCEPTION 'there is no healing action %', action_id
                USING ERRCODE = 'undefined_object',
                      HINT = 'ruvectord heal list shows the actions';
        END IF;
        RAISE EXCEPTION 'action % is %, not pending approval', action_id, current
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'only a pending_approval action can be approved or rejected';
    END IF;
    SELECT c.name INTO cname FROM ruvector.healing_actions a
      JOIN ruvector.collections c ON c.id = a.collection_id WHERE a.id = decide.action_id;
    RETURN ruvector.request(CASE WHEN approve THEN 'approve' ELSE 'reject' END, cname, action_id,
                            jsonb_build_object('reason', reason));
END
$$;

CREATE FUNCTION public.ruvector_healing_approve(action_id bigint)
RETURNS bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ruvector.decide(ruvector_healing_approve.action_id, true, NULL) $$;

CREATE FUNCTION public.ruvector_healing_reject(action_id bigint, reason text DEFAULT NULL)
RETURNS bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ruvector.decide(ruvector_healing_reject.action_id, false,
                             ruvector_healing_reject.reason) $$;

-- ----------------------------------------------------------------------------- grants
GRANT EXECUTE ON FUNCTION public.ruvector_integrity_gate(text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION public.ruvector_integrity_status(text) TO ruvector_reader;
GRANT EXECUTE ON FUNCTION public.ruvector_healing_throttles() TO ruvector_reader;
REVOKE EXECUTE ON FUNCTION public.ruvector_healing_enable(boolean, text),
                           public.ruvector_healing_throttle_lift(text),
                           public.ruvector_healing_approve(bigint),
                           public.ruvector_healing_reject(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.ruvector_healing_enable(boolean, text),
                          public.ruvector_healing_throttle_lift(text),
                          public.ruvector_healing_approve(bigint),
                          public.ruvector_healing_reject(bigint, text) TO ruvector_operator;
REVOKE EXECUTE ON FUNCTION public.ruvector_integrity_status(text),
                           public.ruvector_healing_throttles() FROM PUBLIC;

-- The daemon: its own state, read everything in the schema, append-only audit trail.
GRANT USAGE ON ALL SEQUENCES IN SCHEMA ruvector TO ruvector_daemon;
GRANT INSERT, UPDATE ON ruvector.collections, ruvector.integrity_policies,
                        ruvector.integrity_state, ruvector.contracted_graph,
                        ruvector.healing_actions, ruvector.strategy_weights
    TO ruvector_daemon;
GRANT INSERT, DELETE ON ruvector.integrity_samples, ruvector.contracted_edges TO ruvector_daemon;
GRANT INSERT ON ruvector.integrity_events, ruvector.signing_keys, ruvector.healing_outcomes
    TO ruvector_daemon;
GRANT UPDATE ON ruvector.audit_head, ruvector.healing_requests, ruvector.maintenance_jobs
    TO ruvector_daemon;
GRANT INSERT, UPDATE, DELETE ON ruvector.throttles TO ruvector_daemon;
GRANT EXECUTE ON FUNCTION ruvector.install_throttle_guard(integer, interval),
                          ruvector.remove_throttle_guard(integer) TO ruvector_daemon;
