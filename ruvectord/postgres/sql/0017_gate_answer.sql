-- ruvectord schema v17: the gate's decision -- the spec's matrix, its reason in words, and the
-- healer's throttle narrowing it -- is one function both forms of ruvector_integrity_gate call;
-- v9 carried a copy in each. The answers are exactly v9's (tests compare both forms with the
-- spec's matrix, SPEC_MATRIX in tests/unit/test_gate_and_audit.py). Not granted to anyone:
-- only the gate (SECURITY DEFINER, owned by ruvector_owner) calls it.
CREATE FUNCTION ruvector.gate_answer(op text, risk text, state text, stale boolean,
                                     state_label text, throttle_pct double precision,
                                     retry_after double precision, expires_at timestamptz,
                                     throttle_tenant text,
                                     OUT response text, OUT factor double precision,
                                     OUT retry double precision, OUT reason text)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    whose text := CASE WHEN coalesce(throttle_tenant, '') = '' THEN ''
                       ELSE ' of ' || throttle_tenant END;
BEGIN
    -- the spec's matrix (mirrored by ruvectord.integrity.gate.MATRIX; the tests compare them)
    IF stale OR state = 'normal' OR (risk = 'low' AND state = 'stress') THEN
        response := 'allow'; factor := 1.0; retry := 0;
    ELSIF risk = 'low' THEN
        response := 'throttle'; factor := 0.8; retry := 0;
    ELSIF risk = 'medium' AND state = 'stress' THEN
        response := 'throttle'; factor := 0.5; retry := 0;
    ELSIF risk = 'medium' THEN
        response := 'defer'; factor := 0.0; retry := 60;
    ELSIF state = 'stress' THEN
        response := 'defer'; factor := 0.0; retry := 300;
    ELSE
        response := 'reject'; factor := 0.0; retry := 0;
    END IF;
    IF stale THEN
        reason := format('%s-risk operation; integrity unknown (no recent sample: is ruvectord '
                         'running?), so allowed', risk);
    ELSE
        reason := format('%s-risk operation in %s', risk, state_label);
    END IF;
    IF response = 'throttle' THEN
        reason := reason || format(': proceed at %s%%', round((factor * 100)::numeric));
    ELSIF response = 'defer' THEN
        reason := reason || format(': retry in %s s', retry);
    ELSIF response = 'reject' THEN
        reason := reason || ': not allowed until integrity recovers';
    END IF;

    -- a throttle set by the healer narrows what the matrix allows, never widens it
    IF response IN ('allow', 'throttle') AND throttle_pct IS NOT NULL
       AND 1 - throttle_pct / 100.0 < factor THEN
        factor := 1 - throttle_pct / 100.0;
        retry := greatest(retry, retry_after);
        IF factor <= 0 THEN
            response := 'defer';
            reason := reason || format('; healing turns away every %s%s until %s', op, whose,
                                       expires_at);
        ELSE
            response := 'throttle';
            reason := reason || format('; healing throttles %s%s to %s%% until %s', op, whose,
                                       100 - throttle_pct, expires_at);
        END IF;
    END IF;
END
$$;
REVOKE EXECUTE ON FUNCTION ruvector.gate_answer(text, text, text, boolean, text,
                                                double precision, double precision,
                                                timestamptz, text) FROM PUBLIC;

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
    v record;
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

    -- an assignment, not SELECT ... INTO: PL/pgSQL evaluates a lone function call as a simple
    -- expression, without the executor's per-statement cost
    v := ruvector.gate_answer(op, risk, state, stale, state, st.throttle_pct,
                              st.retry_after_seconds, st.expires_at, '');

    RETURN jsonb_build_object(
        'collection', ruvector_integrity_gate.collection,
        'operation', op,
        'response', v.response,
        'allowed', v.response IN ('allow', 'throttle'),
        'risk_level', risk,
        'state', state,
        'throttle_factor', v.factor,
        'retry_after_secs', v.retry,
        'reason', v.reason,
        'lambda_cut', st.lambda_cut,
        'sampled_at', st.last_sample_at,
        'stale', stale
    );
END
$$;

CREATE OR REPLACE FUNCTION public.ruvector_integrity_gate(collection text, operation text,
                                                          tenant text)
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
    v record;
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

    v := ruvector.gate_answer(
        op, risk, state, stale,
        CASE WHEN st.scope IS NULL THEN state
             WHEN st.scope = who THEN format('%s (tenant %s)', state, who)
             ELSE format('%s (tenant %s, in %s)', state, who, st.scope) END,
        th.throttle_pct, th.retry_after_seconds, th.expires_at, th.tenant);

    RETURN jsonb_build_object(
        'collection', ruvector_integrity_gate.collection,
        'tenant', who,
        'scope', st.scope,
        'operation', op,
        'response', v.response,
        'allowed', v.response IN ('allow', 'throttle'),
        'risk_level', risk,
        'state', state,
        'throttle_factor', v.factor,
        'retry_after_secs', v.retry,
        'reason', v.reason,
        'lambda_cut', st.lambda_cut,
        'sampled_at', st.last_sample_at,
        'stale', stale
    );
END
$$;
