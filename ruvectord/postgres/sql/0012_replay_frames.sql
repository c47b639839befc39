-- ruvectord schema v12: what `ruvectord replay` needs (README "Replay").
--
-- Every recorded sample carries its replay frame: the inputs its decisions were computed from
-- (integrity/frame.py, zlib-compressed JSON, about 1.2 KB at 64 partitions), written in the
-- sample's own INSERT (ruvector.record_sample, redefined below). NULL for samples recorded
-- before this version: replay says so.
ALTER TABLE ruvector.integrity_samples ADD COLUMN frame bytea;

-- What healing made of a degraded sample, written by the acting daemon when it decided: the
-- class, the strategy chosen (or why none) and the selection's inputs (the safeguards'
-- history and the learned weights as they were), or why it did not get to choose (not
-- acting, paused, recovering, busy). Only degraded samples have a row, so a healthy
-- collection writes nothing here; pruned with the samples.
CREATE TABLE ruvector.healing_decisions (
    collection_id integer NOT NULL REFERENCES ruvector.collections (id) ON DELETE CASCADE,
    sampled_at    timestamptz NOT NULL,
    decision      jsonb NOT NULL,
    PRIMARY KEY (collection_id, sampled_at)
);
GRANT INSERT, DELETE ON ruvector.healing_decisions TO ruvector_daemon;
GRANT SELECT ON ruvector.healing_decisions TO ruvector_reader;

-- The sample's one call (v11) writes the frame too: a new argument, so a new function.
DROP FUNCTION ruvector.record_sample(
    integer, timestamptz, double precision, double precision, double precision, text, integer,
    integer, integer, double precision, double precision, jsonb, jsonb, text, boolean, text,
    jsonb, jsonb, jsonb, jsonb);

CREATE FUNCTION ruvector.record_sample(
    p_collection_id integer, p_sampled_at timestamptz, p_lambda_cut double precision,
    p_lambda_cut_raw double precision, p_lambda2 double precision, p_state text,
    p_node_count integer, p_edge_count integer, p_witness_count integer,
    p_sample_ms double precision, p_computation_ms double precision, p_tracker jsonb,
    p_witness_edges jsonb, p_decision text, p_transitioned boolean, p_graph_reason text,
    p_nodes jsonb, p_edges jsonb, p_witness jsonb, p_cut_side jsonb, p_frame bytea)
RETURNS TABLE (ops text[], pcts integer[], untils timestamptz[], pending bigint,
               oldest timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO ruvector.integrity_samples
           (collection_id, sampled_at, lambda_cut, lambda_cut_raw, lambda2, state, node_count,
            edge_count, witness_count, sample_ms, computation_ms, frame)
    VALUES (p_collection_id, p_sampled_at, p_lambda_cut, p_lambda_cut_raw, p_lambda2, p_state,
            p_node_count, p_edge_count, p_witness_count, p_sample_ms, p_computation_ms,
            p_frame);

    UPDATE ruvector.integrity_state s
       SET state = p_state, lambda_cut = p_lambda_cut, lambda_cut_raw = p_lambda_cut_raw,
           lambda2 = p_lambda2, tracker = p_tracker, witness_edges = p_witness_edges,
           decision = p_decision, last_sample_at = p_sampled_at,
           last_transition_at = CASE WHEN p_transitioned THEN p_sampled_at
                                     ELSE s.last_transition_at END,
           updated_at = now()
     WHERE s.collection_id = p_collection_id;
    IF NOT FOUND THEN
        INSERT INTO ruvector.integrity_state
               (collection_id, state, lambda_cut, lambda_cut_raw, lambda2, tracker,
                witness_edges, decision, last_sample_at, last_transition_at, updated_at)
        VALUES (p_collection_id, p_state, p_lambda_cut, p_lambda_cut_raw, p_lambda2, p_tracker,
                p_witness_edges, p_decision, p_sampled_at,
                CASE WHEN p_transitioned THEN p_sampled_at END, now());
    END IF;

    IF p_graph_reason IS NOT NULL THEN
        -- a wall clock stepped back can repeat a timestamp: the newer graph wins, and a
        -- transition's graph is never relabelled periodic
        INSERT INTO ruvector.graph_snapshots AS g
               (collection_id, sampled_at, reason, state, lambda_cut, lambda_cut_raw, lambda2,
                nodes, edges, witness, cut_side)
        VALUES (p_collection_id, p_sampled_at, p_graph_reason, p_state, p_lambda_cut,
                p_lambda_cut_raw, p_lambda2, p_nodes, p_edges, p_witness, p_cut_side)
        ON CONFLICT (collection_id, sampled_at) DO UPDATE SET
            reason = CASE WHEN g.reason = 'transition' THEN g.reason ELSE EXCLUDED.reason END,
            state = EXCLUDED.state, lambda_cut = EXCLUDED.lambda_cut,
            lambda_cut_raw = EXCLUDED.lambda_cut_raw, lambda2 = EXCLUDED.lambda2,
            nodes = EXCLUDED.nodes, edges = EXCLUDED.edges, witness = EXCLUDED.witness,
            cut_side = EXCLUDED.cut_side;
    END IF;

    UPDATE ruvector.collections c
       SET status = 'ok', status_detail = NULL, updated_at = now()
     WHERE c.id = p_collection_id AND c.status = 'error';

    RETURN QUERY SELECT * FROM ruvector.held(p_collection_id);
END
$$;

GRANT EXECUTE ON FUNCTION ruvector.record_sample(
    integer, timestamptz, double precision, double precision, double precision, text, integer,
    integer, integer, double precision, double precision, jsonb, jsonb, text, boolean, text,
    jsonb, jsonb, jsonb, jsonb, bytea) TO ruvector_daemon;
