-- Integrity SQL interface: status and the operation gate, read from the persisted state.
-- SECURITY DEFINER with a fixed search_path, so application roles need only EXECUTE.

CREATE FUNCTION ruvector.operation_risk(operation text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE lower(btrim(operation))
        WHEN 'search' THEN 'low' WHEN 'read' THEN 'low'
        WHEN 'point_insert' THEN 'low' WHEN 'point_delete' THEN 'low'
        WHEN 'hnsw_rewire' THEN 'high' WHEN 'index_rebuild' THEN 'high'
        WHEN 'compaction' THEN 'high' WHEN 'tier_demotion' THEN 'high'
        WHEN 'shard_move' THEN 'high' WHEN 'replication_reshuffle' THEN 'high'
        ELSE 'medium'   -- bulk_insert, bulk_delete, update, centroid_update, graph_edge_*, unknown
    END
$$;

-- The spec's matrix. Returns (response, throttle_factor, retry_after_secs).
CREATE FUNCTION ruvector.gate_matrix(risk text, state text,
    OUT response text, OUT throttle_factor double precision, OUT retry_after_secs integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT m.response, m.factor, m.retry
    FROM (VALUES
        ('low',    'normal',   'allow',    1.0::float8, 0),
        ('low',    'stress',   'allow',    1.0, 0),
        ('low',    'critical', 'throttle', 0.8, 0),
        ('medium', 'normal',   'allow',    1.0, 0),
        ('medium', 'stress',   'throttle', 0.5, 0),
        ('medium', 'critical', 'defer',    0.0, 60),
        ('high',   'normal',   'allow',    1.0, 0),
        ('high',   'stress',   'defer',    0.0, 300),
        ('high',   'critical', 'reject',   0.0, 0)
    ) AS m (risk, state, response, factor, retry)
    WHERE m.risk = gate_matrix.risk AND m.state = gate_matrix.state
$$;

CREATE FUNCTION ruvector.collection_id(collection text)
RETURNS integer
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, ruvector
AS $$
DECLARE
    cid integer;
BEGIN
    IF collection IS NULL THEN
        RAISE EXCEPTION 'collection must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.id INTO cid FROM ruvector.collections c WHERE c.name = collection;
    IF cid IS NULL THEN
        RAISE EXCEPTION 'unknown collection %', quote_literal(collection)
            USING ERRCODE = 'undefined_object',
                  HINT = coalesce('configured collections: ' ||
                      (SELECT string_agg(name, ', ' ORDER BY name) FROM ruvector.collections),
                      'no collection is configured yet');
    END IF;
    RETURN cid;
END
$$;

CREATE FUNCTION ruvector.is_stale(last_sample_at timestamptz, interval_seconds double precision)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT last_sample_at IS NULL
        OR now() - last_sample_at > make_interval(secs => 3 * coalesce(interval_seconds, 60) + 5)
$$;

CREATE FUNCTION public.ruvector_integrity_status(collection text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, ruvector
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
        'throttles', coalesce((SELECT jsonb_object_agg(t.operation, t.throttle_pct)
                                 FROM ruvector.throttles t
                                WHERE t.collection_id = cid AND t.throttle_pct > 0),
                              '{}'::jsonb)
    ) INTO result
    FROM ruvector.collections c
    LEFT JOIN ruvector.integrity_state s ON s.collection_id = c.id
    LEFT JOIN ruvector.integrity_policies p ON p.collection_id = c.id
    WHERE c.id = cid;
    RETURN result;
END
$$;

CREATE FUNCTION public.ruvector_integrity_gate(collection text, operation text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, ruvector
AS $$
DECLARE
    cid integer := ruvector.collection_id(collection);
    st record;
    m record;
    risk text;
    cur_state text;
    throttle record;
    factor double precision;
    resp text;
    retry double precision;
    why text;
    op text := lower(btrim(ruvector_integrity_gate.operation));
BEGIN
    IF op IS NULL OR op = '' THEN
        RAISE EXCEPTION 'operation must be a non-empty text such as ''search'' or ''bulk_insert'''
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    risk := ruvector.operation_risk(op);
    SELECT s.state, s.lambda_cut, s.last_sample_at, p.sample_interval_seconds
      INTO st
      FROM ruvector.collections c
      LEFT JOIN ruvector.integrity_state s ON s.collection_id = c.id
      LEFT JOIN ruvector.integrity_policies p ON p.collection_id = c.id
     WHERE c.id = cid;
    cur_state := coalesce(st.state, 'normal');
    SELECT * INTO m FROM ruvector.gate_matrix(risk, cur_state);
    resp := m.response;
    factor := m.throttle_factor;
    retry := m.retry_after_secs;
    why := format('%s-risk operation in %s', risk, cur_state);
    IF resp = 'throttle' THEN
        why := why || format(': proceed at %s%%', round((factor * 100)::numeric));
    ELSIF resp = 'defer' THEN
        why := why || format(': retry in %s s', retry);
    ELSIF resp = 'reject' THEN
        why := why || ': not allowed until integrity recovers';
    END IF;

    -- a throttle set by the healer narrows what the matrix allows, never widens it
    IF resp IN ('allow', 'throttle') THEN
        SELECT t.throttle_pct, t.retry_after_seconds INTO throttle
          FROM ruvector.throttles t
         WHERE t.collection_id = cid
           AND t.throttle_pct > 0
           AND (t.operation = op OR (t.operation = 'insert' AND op = 'point_insert'))
         ORDER BY t.throttle_pct DESC
         LIMIT 1;
        IF FOUND AND 1 - throttle.throttle_pct / 100.0 < factor THEN
            factor := 1 - throttle.throttle_pct / 100.0;
            resp := 'throttle';
            retry := greatest(retry, throttle.retry_after_seconds);
            why := why || format('; healing throttles %s to %s%%', op,
                                 100 - throttle.throttle_pct);
        END IF;
    END IF;

    RETURN jsonb_build_object(
        'collection', ruvector_integrity_gate.collection,
        'operation', op,
        'response', resp,
        'allowed', resp IN ('allow', 'throttle'),
        'risk_level', risk,
        'state', cur_state,
        'throttle_factor', factor,
        'retry_after_secs', retry,
        'reason', why,
        'lambda_cut', st.lambda_cut,
        'sampled_at', st.last_sample_at,
        'stale', ruvector.is_stale(st.last_sample_at, st.sample_interval_seconds)
    );
END
$$;
