-- Integrity SQL interface: status and the operation gate, read from the persisted state.
-- They run with the caller's rights (a SECURITY DEFINER / SET clause would cost more than the
-- lookups themselves); every reference is schema-qualified, and deploy/sql/roles.sql grants
-- the read access callers need.

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

-- The id of a configured collection, or an error that names it and lists the known ones.
CREATE FUNCTION ruvector.collection_id(collection text)
RETURNS integer
LANGUAGE plpgsql STABLE
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
                      (SELECT string_agg(c.name, ', ' ORDER BY c.name)
                         FROM ruvector.collections c),
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
LANGUAGE plpgsql STABLE
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

-- Cheap enough to call before every write: one joined lookup and no nested PL/pgSQL call on
-- the normal path.
CREATE FUNCTION public.ruvector_integrity_gate(collection text, operation text)
RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    op text := lower(btrim(ruvector_integrity_gate.operation));
    risk text := ruvector.operation_risk(op);
    st record;
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
           p.sample_interval_seconds, t.throttle_pct, t.retry_after_seconds
      INTO st
      FROM ruvector.collections c
      LEFT JOIN ruvector.integrity_state s ON s.collection_id = c.id
      LEFT JOIN ruvector.integrity_policies p ON p.collection_id = c.id
      LEFT JOIN LATERAL (
            SELECT th.throttle_pct, th.retry_after_seconds
              FROM ruvector.throttles th
             WHERE th.collection_id = c.id AND th.throttle_pct > 0
               AND (th.operation = op OR (th.operation = 'insert' AND op = 'point_insert'))
             ORDER BY th.throttle_pct DESC
             LIMIT 1) t ON true
     WHERE c.name = ruvector_integrity_gate.collection;
    IF NOT FOUND THEN
        PERFORM ruvector.collection_id(ruvector_integrity_gate.collection);  -- raises, with a hint
    END IF;

    -- the spec's matrix (mirrored by ruvectord.integrity.gate.MATRIX; the tests compare them)
    IF st.state = 'normal' OR (risk = 'low' AND st.state = 'stress') THEN
        resp := 'allow'; factor := 1.0; retry := 0;
    ELSIF risk = 'low' THEN
        resp := 'throttle'; factor := 0.8; retry := 0;
    ELSIF risk = 'medium' AND st.state = 'stress' THEN
        resp := 'throttle'; factor := 0.5; retry := 0;
    ELSIF risk = 'medium' THEN
        resp := 'defer'; factor := 0.0; retry := 60;
    ELSIF st.state = 'stress' THEN
        resp := 'defer'; factor := 0.0; retry := 300;
    ELSE
        resp := 'reject'; factor := 0.0; retry := 0;
    END IF;
    why := format('%s-risk operation in %s', risk, st.state);
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
        resp := 'throttle';
        retry := greatest(retry, st.retry_after_seconds);
        why := why || format('; healing throttles %s to %s%%', op, 100 - st.throttle_pct);
    END IF;

    RETURN jsonb_build_object(
        'collection', ruvector_integrity_gate.collection,
        'operation', op,
        'response', resp,
        'allowed', resp IN ('allow', 'throttle'),
        'risk_level', risk,
        'state', st.state,
        'throttle_factor', factor,
        'retry_after_secs', retry,
        'reason', why,
        'lambda_cut', st.lambda_cut,
        'sampled_at', st.last_sample_at,
        'stale', st.last_sample_at IS NULL OR now() - st.last_sample_at
                 > make_interval(secs => 3 * coalesce(st.sample_interval_seconds, 60) + 5)
    );
END
$$;
