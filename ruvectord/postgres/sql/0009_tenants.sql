-- ruvectord schema v9: per-tenant integrity (README "Multi-tenant collections").
--
-- Where a collection declares a tenant column and is LIST-partitioned by it, the daemon keeps a
-- state per tenant scope: the busiest tenants (integrity.tenants.top) each, every other
-- tenant together as the aggregate '(other)'. Writers may ask the gate for their tenant, and a
-- throttle may target one tenant (or the aggregate): the guard trigger decides a row's tenant
-- from the row itself (the tenant column of NEW), never from anything the session can SET.

-- ----------------------------------------------------------------------------- tenant state
-- One row per scope of a collection, as ruvector.integrity_state is per collection; a tenant
-- that leaves the top N loses its row (and its state: its partitions join '(other)').
CREATE TABLE ruvector.tenant_state (
    collection_id      integer NOT NULL REFERENCES ruvector.collections (id) ON DELETE CASCADE,
    tenant             text NOT NULL,               -- the tenant column's value as text, or '(other)'
    rank               integer,                     -- 1 = first (degraded, then busiest); '(other)': NULL
    load_ops           double precision NOT NULL DEFAULT 0,  -- smoothed operations per second
    partitions         text[] NOT NULL DEFAULT '{}',
    state              text NOT NULL DEFAULT 'normal' CHECK (state IN ('normal', 'stress', 'critical')),
    lambda_cut         double precision,
    lambda_cut_raw     double precision,
    tracker            jsonb NOT NULL DEFAULT '{}',
    witness_edges      jsonb NOT NULL DEFAULT '[]',
    decision           text,
    last_sample_at     timestamptz,
    last_transition_at timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_id, tenant)
);
GRANT INSERT, UPDATE, DELETE ON ruvector.tenant_state TO ruvector_daemon;

-- A tenant's transitions are signed like the collection's, under their own type: the episodes
-- of a collection (time to recovery, degraded since) read 'state_change' events only.
-- NOT VALID: every existing row passed the narrower check it replaces.
ALTER TABLE ruvector.integrity_events DROP CONSTRAINT integrity_events_event_type_check;
ALTER TABLE ruvector.integrity_events ADD CONSTRAINT integrity_events_event_type_check
    CHECK (event_type IN ('state_change', 'sample', 'policy_update', 'manual_override',
                          'recovery', 'alert', 'audit', 'tenant_state_change')) NOT VALID;

-- ----------------------------------------------------------------------------- throttles
-- '' targets the whole collection (every row written before this version); a tenant's value
-- targets that tenant's rows; '(other)' the rows of every tenant without a scope of its own.
ALTER TABLE ruvector.throttles ADD COLUMN tenant text NOT NULL DEFAULT '';
ALTER TABLE ruvector.throttles DROP CONSTRAINT throttles_pkey;
ALTER TABLE ruvector.throttles ADD PRIMARY KEY (collection_id, operation, tenant);

-- The guard. With nothing throttled, or only the whole collection, it costs what it did (one
-- index lookup per row). Only while a throttle targets a tenant does it read the row's tenant:
-- the tenant column of NEW (its name from ruvector.collections, checked against the table),
-- the value tuple routing itself decided by -- nothing the session can SET. A row whose
-- tenant has no scope of its own (or is NULL) is in '(other)'. One verdict per statement, as
-- before: a statement with any row of a throttled tenant is turned away as a whole.
CREATE OR REPLACE FUNCTION ruvector.throttle_guard()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    asked text := lower(nullif(current_setting('ruvector.operation', true), ''));
    cid integer := TG_ARGV[0]::integer;
    t record;
    col name;
    who text;
    roll bigint;
BEGIN
    IF asked IS NULL OR asked = 'point_insert' THEN
        asked := 'insert';
    END IF;
    SELECT th.operation, th.throttle_pct, th.retry_after_seconds, th.action_id, th.tenant INTO t
      FROM ruvector.throttles th
     WHERE th.collection_id = cid
       AND th.operation IN ('insert', asked)
       AND th.throttle_pct > 0
       AND th.expires_at > statement_timestamp()
     ORDER BY th.throttle_pct DESC, th.tenant = '' DESC
     LIMIT 1;
    IF NOT FOUND THEN
        RETURN NEW;
    END IF;
    IF t.tenant <> '' THEN
        -- the strictest throttle in force targets a tenant: whose row is this?
        SELECT a.attname INTO col
          FROM ruvector.collections c
          JOIN pg_attribute a ON a.attrelid = TG_RELID AND a.attname = c.tenant_column
                             AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.id = cid;
        IF FOUND THEN
            EXECUTE format('SELECT ($1).%I::text', col) INTO who USING NEW;
        END IF;
        SELECT th.operation, th.throttle_pct, th.retry_after_seconds, th.action_id, th.tenant
          INTO t
          FROM ruvector.throttles th
         WHERE th.collection_id = cid
           AND th.operation IN ('insert', asked)
           AND th.throttle_pct > 0
           AND th.expires_at > statement_timestamp()
           AND (th.tenant = '' OR th.tenant = who
                OR (th.tenant = '(other)' AND NOT EXISTS (
                        SELECT 1 FROM ruvector.tenant_state s
                         WHERE s.collection_id = cid AND s.tenant = who)))
         ORDER BY th.throttle_pct DESC
         LIMIT 1;
        IF NOT FOUND THEN
            RETURN NEW;
        END IF;
    END IF;
    roll := hashtextextended(statement_timestamp()::text || '/' || pg_backend_pid(), cid::bigint);
    IF t.throttle_pct >= 100 OR ((roll % 100) + 100) % 100 < t.throttle_pct THEN
        RAISE EXCEPTION 'ruvector: % into %.% throttled (% %% of % statements turned away)',
                t.operation, TG_TABLE_SCHEMA, TG_TABLE_NAME, t.throttle_pct,
                t.operation || CASE WHEN t.tenant = '' THEN ''
                                    ELSE format(' of tenant %s', t.tenant) END
            USING ERRCODE = 'RV429',
                  HINT = format('retry after %s s', t.retry_after_seconds),
                  DETAIL = format('throttle_ingestion, healing action %s',
                                  coalesce(t.action_id::text, '-'));
    END IF;
    RETURN NEW;
END
$$;

-- ----------------------------------------------------------------------------- the gate
-- The two-argument form answers for the collection as a whole: its state and the throttles on
-- the whole collection. A tenant's throttle holds back that tenant's rows and answers only
-- (else a brake on one tenant would defer every writer who does not name theirs). Otherwise
-- exactly as in v4.
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
             WHERE th.collection_id = c.id AND th.tenant = '' AND th.throttle_pct > 0
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

-- ruvector_integrity_gate(collection, operation, tenant => 't1'): the answer for one tenant,
-- from its scope's state (its own, or '(other)' when it has none; the collection's while no
-- tenant scope has been sampled) and the throttles that hold its rows (the collection's, its
-- own, '(other)'s when it is in the aggregate), by the same matrix as the two-argument form,
-- which is unchanged. tenant => NULL is the two-argument form.
CREATE FUNCTION public.ruvector_integrity_gate(collection text, operation text, tenant text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    op text := lower(btrim(ruvector_integrity_gate.operation));
    who text := ruvector_integrity_gate.tenant;
    risk text := ruvector.operation_risk(op);
    c record;
    st record;
    th record;
    stale boolean;
    state text;
    resp text;
    factor double precision;
    retry double precision;
    why text;
BEGIN
    IF who IS NULL THEN
        RETURN public.ruvector_integrity_gate(ruvector_integrity_gate.collection,
                                              ruvector_integrity_gate.operation);
    END IF;
    IF ruvector_integrity_gate.collection IS NULL THEN
        RAISE EXCEPTION 'collection must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF op IS NULL OR op = '' THEN
        RAISE EXCEPTION 'operation must be a non-empty text such as ''search'' or ''bulk_insert'''
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT co.id, p.sample_interval_seconds INTO c
      FROM ruvector.collections co
      LEFT JOIN ruvector.integrity_policies p ON p.collection_id = co.id
     WHERE co.name = ruvector_integrity_gate.collection;
    IF NOT FOUND THEN
        PERFORM ruvector.collection_id(ruvector_integrity_gate.collection);  -- raises, with a hint
    END IF;
    SELECT s.tenant AS scope, s.state, s.lambda_cut, s.last_sample_at INTO st
      FROM ruvector.tenant_state s
     WHERE s.collection_id = c.id AND s.tenant IN (who, '(other)')
     ORDER BY s.tenant = who DESC
     LIMIT 1;
    IF NOT FOUND THEN
        SELECT NULL::text AS scope, coalesce(s.state, 'normal') AS state, s.lambda_cut,
               s.last_sample_at INTO st
          FROM (SELECT 1) one
          LEFT JOIN ruvector.integrity_state s ON s.collection_id = c.id;
    END IF;
    SELECT x.throttle_pct, x.retry_after_seconds, x.expires_at, x.tenant INTO th
      FROM ruvector.throttles x
     WHERE x.collection_id = c.id AND x.throttle_pct > 0
       AND x.expires_at > statement_timestamp()
       AND (x.operation = op OR (x.operation = 'insert' AND op = 'point_insert'))
       AND (x.tenant = '' OR x.tenant = who
            OR (x.tenant = '(other)' AND st.scope IS DISTINCT FROM who))
     ORDER BY x.throttle_pct DESC
     LIMIT 1;
    stale := st.last_sample_at IS NULL OR now() - st.last_sample_at
             > make_interval(secs => 3 * coalesce(c.sample_interval_seconds, 60) + 5);
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
        why := format('%s-risk operation in %s', risk,
                      CASE WHEN st.scope IS NULL THEN state
                           WHEN st.scope = who THEN format('%s (tenant %s)', state, who)
                           ELSE format('%s (tenant %s, in %s)', state, who, st.scope) END);
    END IF;
    IF resp = 'throttle' THEN
        why := why || format(': proceed at %s%%', round((factor * 100)::numeric));
    ELSIF resp = 'defer' THEN
        why := why || format(': retry in %s s', retry);
    ELSIF resp = 'reject' THEN
        why := why || ': not allowed until integrity recovers';
    END IF;

    -- a throttle set by the healer narrows what the matrix allows, never widens it
    IF resp IN ('allow', 'throttle') AND th.throttle_pct IS NOT NULL
       AND 1 - th.throttle_pct / 100.0 < factor THEN
        factor := 1 - th.throttle_pct / 100.0;
        retry := greatest(retry, th.retry_after_seconds);
        IF factor <= 0 THEN
            resp := 'defer';
            why := why || format('; healing turns away every %s%s until %s', op,
                                 CASE WHEN th.tenant = '' THEN '' ELSE ' of ' || th.tenant END,
                                 th.expires_at);
        ELSE
            resp := 'throttle';
            why := why || format('; healing throttles %s%s to %s%% until %s', op,
                                 CASE WHEN th.tenant = '' THEN '' ELSE ' of ' || th.tenant END,
                                 100 - th.throttle_pct, th.expires_at);
        END IF;
    END IF;

    RETURN jsonb_build_object(
        'collection', ruvector_integrity_gate.collection,
        'tenant', who,
        'scope', st.scope,
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
GRANT EXECUTE ON FUNCTION public.ruvector_integrity_gate(text, text, text) TO PUBLIC;

-- ----------------------------------------------------------------------------- readers
-- Every scope of a collection: state, lambda, load, partitions, the throttles on its rows.
CREATE FUNCTION public.ruvector_integrity_tenants(collection text)
RETURNS TABLE (tenant text, rank integer, state text, lambda_cut double precision,
               load_ops_per_second double precision, partitions text[], throttles jsonb,
               decision text, last_sample_at timestamptz, last_transition_at timestamptz,
               stale boolean)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.tenant, s.rank, s.state, s.lambda_cut, s.load_ops, s.partitions,
           coalesce((SELECT jsonb_object_agg(t.operation, t.throttle_pct)
                       FROM ruvector.throttles t
                      WHERE t.collection_id = s.collection_id AND t.tenant = s.tenant
                        AND t.throttle_pct > 0 AND t.expires_at > statement_timestamp()),
                    '{}'::jsonb),
           s.decision, s.last_sample_at, s.last_transition_at,
           ruvector.is_stale(s.last_sample_at, p.sample_interval_seconds)
      FROM ruvector.tenant_state s
      LEFT JOIN ruvector.integrity_policies p ON p.collection_id = s.collection_id
     WHERE s.collection_id = ruvector.collection_id(ruvector_integrity_tenants.collection)
     ORDER BY s.rank NULLS LAST, s.tenant
$$;
REVOKE EXECUTE ON FUNCTION public.ruvector_integrity_tenants(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.ruvector_integrity_tenants(text) TO ruvector_reader;

-- ruvector_healing_throttles() names the tenant a throttle targets (NULL: the whole collection).
DROP FUNCTION public.ruvector_healing_throttles();
CREATE FUNCTION public.ruvector_healing_throttles()
RETURNS TABLE (collection text, operation text, throttle_pct smallint,
               retry_after_seconds double precision, action_id bigint,
               expires_at timestamptz, in_force boolean, tenant text)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.name, t.operation, t.throttle_pct, t.retry_after_seconds, t.action_id,
           t.expires_at, t.throttle_pct > 0 AND t.expires_at > statement_timestamp(),
           nullif(t.tenant, '')
      FROM ruvector.throttles t JOIN ruvector.collections c ON c.id = t.collection_id
     ORDER BY c.name, t.operation, t.tenant
$$;
REVOKE EXECUTE ON FUNCTION public.ruvector_healing_throttles() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.ruvector_healing_throttles() TO ruvector_reader;

-- ----------------------------------------------------------------------------- status
-- The collection-wide throttles stay what `throttles` means (a tenant's would otherwise stand
-- in for them, one per operation); a tenant's show under `tenant_throttles`, and each scope's
-- state under `tenants`. Otherwise as in v7.
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
        'paused', coalesce((SELECT h.value = 'false'::jsonb FROM ruvector.healing_config h
                             WHERE h.key = 'healing.enabled'), false),
        'acting_daemon', ruvector.actor_alive(),
        'throttles', coalesce((SELECT jsonb_object_agg(t.operation, t.throttle_pct)
                                 FROM ruvector.throttles t
                                WHERE t.collection_id = cid AND t.tenant = ''
                                  AND t.throttle_pct > 0
                                  AND t.expires_at > statement_timestamp()),
                              '{}'::jsonb),
        'throttle_leases', coalesce((SELECT jsonb_object_agg(t.operation, t.expires_at)
                                       FROM ruvector.throttles t
                                      WHERE t.collection_id = cid AND t.tenant = ''
                                        AND t.throttle_pct > 0
                                        AND t.expires_at > statement_timestamp()),
                                    '{}'::jsonb),
        'tenant_throttles', coalesce((SELECT jsonb_object_agg(x.tenant, x.levels)
                                        FROM (SELECT t.tenant,
                                                     jsonb_object_agg(t.operation, t.throttle_pct)
                                                         AS levels
                                                FROM ruvector.throttles t
                                               WHERE t.collection_id = cid AND t.tenant <> ''
                                                 AND t.throttle_pct > 0
                                                 AND t.expires_at > statement_timestamp()
                                               GROUP BY t.tenant) x),
                                     '{}'::jsonb),
        'tenants', coalesce((SELECT jsonb_object_agg(ts.tenant, jsonb_build_object(
                                        'state', ts.state, 'lambda_cut', ts.lambda_cut,
                                        'rank', ts.rank))
                               FROM ruvector.tenant_state ts WHERE ts.collection_id = cid),
                            '{}'::jsonb)
    ) INTO result
    FROM ruvector.collections c
    LEFT JOIN ruvector.integrity_state s ON s.collection_id = c.id
    LEFT JOIN ruvector.integrity_policies p ON p.collection_id = c.id
    WHERE c.id = cid;
    RETURN result;
END
$$;

-- As in v7, the throttles being the collection-wide ones (ruvector_healing_throttles() lists
-- every throttle, with its tenant).
CREATE OR REPLACE FUNCTION public.ruvector_healing_status()
RETURNS TABLE (collection text, enabled boolean, paused_by text, paused_reason text,
               state text, lambda_cut double precision, stale boolean,
               active_action bigint, active_strategy text, last_healing timestamptz,
               healings_24h bigint, success_rate_24h double precision,
               cooldown_until timestamptz, pending_approvals bigint, throttles jsonb,
               acting_daemon boolean)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.name,
           (ruvector.setting('healing.enabled', 'true'))::text::boolean,
           CASE WHEN h.value = 'false'::jsonb THEN h.updated_by END,
           CASE WHEN h.value = 'false'::jsonb THEN h.reason END,
           coalesce(s.state, 'normal'), s.lambda_cut,
           ruvector.is_stale(s.last_sample_at, p.sample_interval_seconds),
           act.id, act.strategy_name, last.at,
           coalesce(day.n, 0), day.rate,
           last.started + make_interval(secs => (ruvector.setting(
               'healing.min_healing_interval_seconds', '300') #>> '{}')::float8),
           coalesce(pend.n, 0),
           coalesce(thr.levels, '{}'::jsonb),
           ruvector.actor_alive()
      FROM ruvector.collections c
      LEFT JOIN ruvector.integrity_state s ON s.collection_id = c.id
      LEFT JOIN ruvector.integrity_policies p ON p.collection_id = c.id
      LEFT JOIN ruvector.healing_config h ON h.key = 'healing.enabled'
      LEFT JOIN LATERAL (
            SELECT a.id, a.strategy_name FROM ruvector.healing_actions a
             WHERE a.collection_id = c.id AND a.status IN ('running', 'verifying', 'rolling_back')
             ORDER BY a.id DESC LIMIT 1) act ON true
      LEFT JOIN LATERAL (
            SELECT max(coalesce(a.completed_at, a.started_at)) AS at, max(a.started_at) AS started
              FROM ruvector.healing_actions a
             WHERE a.collection_id = c.id AND a.started_at IS NOT NULL) last ON true
      LEFT JOIN LATERAL (
            SELECT count(*) AS n, avg((o.success AND coalesce(o.verified, false))::int)::float8
                       AS rate
              FROM ruvector.healing_outcomes o
             WHERE o.collection_id = c.id AND o.started_at > now() - interval '24 hours') day
             ON true
      LEFT JOIN LATERAL (
            SELECT count(*) AS n FROM ruvector.healing_actions a
             WHERE a.collection_id = c.id AND a.status = 'pending_approval') pend ON true
      LEFT JOIN LATERAL (
            SELECT jsonb_object_agg(t.operation, jsonb_build_object(
                       'throttle_pct', t.throttle_pct, 'lease_until', t.expires_at,
                       'action_id', t.action_id)) AS levels
              FROM ruvector.throttles t
             WHERE t.collection_id = c.id AND t.tenant = '' AND t.throttle_pct > 0
               AND t.expires_at > statement_timestamp()) thr ON true
     WHERE c.configured
     ORDER BY c.name
$$;
