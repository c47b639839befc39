-- ruvectord schema v11: bounded storage and WAL.
--
-- Before this version every sample rewrote the collection's whole contracted graph
-- (DELETE + COPY of every edge, ~39 KB of WAL a sample at 64 partitions). Now:
--  * a sample is one call, ruvector.record_sample: the sample row, a HOT update of the
--    state row, the error status cleared, what healing holds read back (~1-2 KB of WAL);
--  * the graph is kept where it tells something -- at every transition, and periodically
--    (integrity.graph_snapshot_seconds) -- in ruvector.graph_snapshots, one row per graph;
--    the graph of the latest sample is served from the daemon's memory (/status?graph=1);
--  * contracted_graph and contracted_edges become views of each collection's newest snapshot,
--    so what read them still answers (with that snapshot's sampled_at);
--  * every table that grows is pruned by the acting daemon (retention.* in the config), the
--    audit trail and the healing history only through the SECURITY DEFINER functions below,
--    which never delete anything younger than their floor, whatever the daemon asks.

-- ----------------------------------------------------------------------------- graphs
CREATE TABLE ruvector.graph_snapshots (
    collection_id  integer NOT NULL REFERENCES ruvector.collections (id) ON DELETE CASCADE,
    sampled_at     timestamptz NOT NULL,
    reason         text NOT NULL CHECK (reason IN ('transition', 'periodic')),
    state          text NOT NULL,
    lambda_cut     double precision NOT NULL,
    lambda_cut_raw double precision NOT NULL,
    lambda2        double precision,
    nodes          jsonb NOT NULL,   -- [{"index", "kind", "id", "name", "attrs"}]
    edges          jsonb NOT NULL,   -- [[kind, source, target, capacity, weight, reason]], by index
    witness        jsonb NOT NULL,   -- edge indices of the minimum cut
    cut_side       jsonb NOT NULL,   -- node indices on the smaller side of the min cut
    PRIMARY KEY (collection_id, sampled_at)
);
CREATE INDEX graph_snapshots_time ON ruvector.graph_snapshots (sampled_at);
GRANT INSERT, UPDATE, DELETE ON ruvector.graph_snapshots TO ruvector_daemon;

-- the latest graph each collection had, kept across the upgrade
INSERT INTO ruvector.graph_snapshots
       (collection_id, sampled_at, reason, state, lambda_cut, lambda_cut_raw, lambda2, nodes,
        edges, witness, cut_side)
SELECT g.collection_id, g.sampled_at, 'periodic', coalesce(s.state, 'normal'), g.lambda_cut,
       g.lambda_cut_raw, g.lambda2, g.nodes,
       coalesce((SELECT jsonb_agg(jsonb_build_array(e.kind, e.source, e.target, e.capacity,
                                                    e.weight, e.reason) ORDER BY e.edge_index)
                   FROM ruvector.contracted_edges e WHERE e.collection_id = g.collection_id),
                '[]'),
       coalesce((SELECT jsonb_agg(e.edge_index ORDER BY e.edge_index)
                   FROM ruvector.contracted_edges e
                  WHERE e.collection_id = g.collection_id AND e.witness), '[]'),
       g.cut_side
  FROM ruvector.contracted_graph g
  LEFT JOIN ruvector.integrity_state s ON s.collection_id = g.collection_id;

DROP TABLE ruvector.contracted_edges;
DROP TABLE ruvector.contracted_graph;

CREATE VIEW ruvector.contracted_graph AS
SELECT DISTINCT ON (s.collection_id)
       s.collection_id, s.sampled_at, s.lambda_cut, s.lambda_cut_raw, s.lambda2, s.nodes,
       s.cut_side
  FROM ruvector.graph_snapshots s
 ORDER BY s.collection_id, s.sampled_at DESC;

CREATE VIEW ruvector.contracted_edges AS
SELECT g.collection_id,
       (e.ordinality - 1)::integer AS edge_index,
       e.edge ->> 0 AS kind,
       (e.edge ->> 1)::integer AS source,
       (e.edge ->> 2)::integer AS target,
       (e.edge ->> 3)::double precision AS capacity,
       (e.edge ->> 4)::double precision AS weight,
       (e.edge ->> 3)::double precision * (e.edge ->> 4)::double precision AS flow,
       g.witness @> to_jsonb(e.ordinality - 1) AS witness,
       nullif(e.edge ->> 5, '') AS reason
  FROM (SELECT DISTINCT ON (s.collection_id) s.collection_id, s.edges, s.witness
          FROM ruvector.graph_snapshots s
         ORDER BY s.collection_id, s.sampled_at DESC) g,
       jsonb_array_elements(g.edges) WITH ORDINALITY AS e (edge, ordinality);

GRANT SELECT ON ruvector.graph_snapshots, ruvector.contracted_graph, ruvector.contracted_edges
    TO ruvector_reader;

-- ----------------------------------------------------------------------------- one sample
-- integrity_state is updated every sample: only its primary key is indexed, so with room on
-- the page the update is HOT (no index entries, no new page). The fill factor leaves the room.
ALTER TABLE ruvector.integrity_state SET (fillfactor = 50);

-- What healing holds on a collection: every throttle by operation and level (its tenants'
-- too, so a brake on one tenant is seen), and the approvals pending.
CREATE FUNCTION ruvector.held(collection_id integer)
RETURNS TABLE (ops text[], pcts integer[], untils timestamptz[], pending bigint,
               oldest timestamptz)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.ops, t.pcts, t.untils, p.pending, p.oldest
      FROM (SELECT array_agg(th.operation ORDER BY th.operation, th.throttle_pct) AS ops,
                   array_agg(th.throttle_pct::integer ORDER BY th.operation, th.throttle_pct)
                       AS pcts,
                   array_agg(th.expires_at ORDER BY th.operation, th.throttle_pct) AS untils
              FROM ruvector.throttles th
             WHERE th.collection_id = held.collection_id AND th.throttle_pct > 0) t,
           (SELECT count(*) AS pending, min(a.created_at) AS oldest
              FROM ruvector.healing_actions a
             WHERE a.collection_id = held.collection_id AND a.status = 'pending_approval') p
$$;

-- One sample, in one round trip and one transaction: the sample row, the state (a HOT
-- update), the graph when one is due (graph_reason not NULL), an error status cleared (a good
-- sample ends it, whoever set it: the status says what is true now), and what healing holds.
-- SECURITY INVOKER: it runs with the daemon's own privileges and can do nothing the daemon
-- could not do statement by statement.
CREATE FUNCTION ruvector.record_sample(
    p_collection_id integer, p_sampled_at timestamptz, p_lambda_cut double precision,
    p_lambda_cut_raw double precision, p_lambda2 double precision, p_state text,
    p_node_count integer, p_edge_count integer, p_witness_count integer,
    p_sample_ms double precision, p_computation_ms double precision, p_tracker jsonb,
    p_witness_edges jsonb, p_decision text, p_transitioned boolean, p_graph_reason text,
    p_nodes jsonb, p_edges jsonb, p_witness jsonb, p_cut_side jsonb)
RETURNS TABLE (ops text[], pcts integer[], untils timestamptz[], pending bigint,
               oldest timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO ruvector.integrity_samples
           (collection_id, sampled_at, lambda_cut, lambda_cut_raw, lambda2, state, node_count,
            edge_count, witness_count, sample_ms, computation_ms)
    VALUES (p_collection_id, p_sampled_at, p_lambda_cut, p_lambda_cut_raw, p_lambda2, p_state,
            p_node_count, p_edge_count, p_witness_count, p_sample_ms, p_computation_ms);

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

GRANT EXECUTE ON FUNCTION ruvector.held(integer) TO ruvector_daemon;
GRANT EXECUTE ON FUNCTION ruvector.record_sample(
    integer, timestamptz, double precision, double precision, double precision, text, integer,
    integer, integer, double precision, double precision, jsonb, jsonb, text, boolean, text,
    jsonb, jsonb, jsonb, jsonb) TO ruvector_daemon;

-- ----------------------------------------------------------------------------- audit trail
-- When the server recorded each event. The daemon signs created_at from its own clock, so a
-- compromised daemon could date an event as it likes; recorded_at it cannot set (its INSERT
-- privilege names every other column), and pruning goes by it. Events from before this
-- version get the time of the upgrade: kept at least the floor from now.
ALTER TABLE ruvector.integrity_events
    ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX integrity_events_recorded ON ruvector.integrity_events (recorded_at);
REVOKE INSERT ON ruvector.integrity_events FROM ruvector_daemon;
GRANT INSERT (collection, event_type, previous_state, new_state, lambda_cut, lambda2,
              witness_edges, metadata, signature, signer_id, created_at, prev_hash)
    ON ruvector.integrity_events TO ruvector_daemon;

-- The signed marker written (as the next link of the chain) before the oldest events are
-- pruned: it names the last pruned event and its hash, which the first retained event links
-- to, so `audit verify` can start the chain there. NOT VALID: existing rows passed the
-- narrower check.
ALTER TABLE ruvector.integrity_events DROP CONSTRAINT integrity_events_event_type_check;
ALTER TABLE ruvector.integrity_events ADD CONSTRAINT integrity_events_event_type_check
    CHECK (event_type IN ('state_change', 'sample', 'policy_update', 'manual_override',
                          'recovery', 'alert', 'audit', 'tenant_state_change',
                          'audit_pruned')) NOT VALID;
CREATE INDEX integrity_events_pruned ON ruvector.integrity_events
    (((metadata ->> 'through_id')::bigint)) WHERE event_type = 'audit_pruned';

-- The adversary: the daemon's role, compromised. It holds the signing key and may write
-- markers, but it must not erase recent history. So the audit trail is pruned only here,
-- only as a prefix (the oldest events, so what is left is one unbroken chain), only behind a
-- marker, and never an event the server recorded less than 30 days ago, whatever the
-- daemon asks (`retention.audit_days`, itself at least 30, may only keep more).

-- The next batch to prune: the newest event of the oldest `batch`, all recorded before
-- least(older_than, now() - 30 days), and the hash the event after it links to (through_hash).
CREATE FUNCTION ruvector.audit_prune_point(older_than timestamptz, batch integer)
RETURNS TABLE (through_id bigint, through_hash bytea, events bigint)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff timestamptz := least(older_than, now() - interval '30 days');
    stop bigint;
BEGIN
    -- the prefix ends before the oldest event that must stay
    SELECT min(e.id) INTO stop FROM ruvector.integrity_events e WHERE e.recorded_at >= cutoff;
    SELECT max(x.id), count(*) INTO through_id, events
      FROM (SELECT e.id FROM ruvector.integrity_events e
             WHERE stop IS NULL OR e.id < stop
             ORDER BY e.id LIMIT greatest(batch, 1)) x;
    IF through_id IS NULL THEN
        RETURN;
    END IF;
    SELECT e.prev_hash INTO through_hash FROM ruvector.integrity_events e
     WHERE e.id > through_id ORDER BY e.id LIMIT 1;
    IF NOT FOUND THEN
        SELECT h.last_hash INTO through_hash FROM ruvector.audit_head h;
    END IF;
    RETURN NEXT;
END
$$;

CREATE FUNCTION ruvector.prune_audit(through_id bigint, older_than timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff timestamptz := least(older_than, now() - interval '30 days');
    deleted bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ruvector.integrity_events m
                    WHERE m.event_type = 'audit_pruned'
                      AND (m.metadata ->> 'through_id')::bigint = prune_audit.through_id
                      AND m.id > prune_audit.through_id) THEN
        RAISE EXCEPTION 'no audit_pruned marker names event %', through_id
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'sign the marker into the chain first, in the same transaction';
    END IF;
    IF EXISTS (SELECT 1 FROM ruvector.integrity_events e
                WHERE e.id <= prune_audit.through_id AND e.recorded_at >= cutoff) THEN
        RAISE EXCEPTION 'refusing to prune audit events up to %: some were recorded after %',
                through_id, cutoff
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'the audit trail keeps every event for at least 30 days';
    END IF;
    DELETE FROM ruvector.integrity_events e WHERE e.id <= prune_audit.through_id;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;

-- ----------------------------------------------------------------------------- healing history
-- Finished actions (no throttle or paused job still naming them), their outcomes and
-- processed requests, at most `batch` rows of each, never younger than 7 days. The daemon
-- role cannot DELETE these tables: an open action is the journal crash recovery needs, and a
-- pending request is an operator's.
CREATE FUNCTION ruvector.prune_healing_history(older_than timestamptz, batch integer)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cutoff timestamptz := least(older_than, now() - interval '7 days');
    total bigint := 0;
    n bigint;
BEGIN
    DELETE FROM ruvector.healing_actions a
     WHERE a.id IN (SELECT x.id FROM ruvector.healing_actions x
                     WHERE x.status NOT IN ('pending_approval', 'approved', 'running',
                                            'verifying', 'rolling_back')
                       AND x.updated_at < cutoff
                       AND NOT EXISTS (SELECT 1 FROM ruvector.throttles t
                                        WHERE t.action_id = x.id)
                       AND NOT EXISTS (SELECT 1 FROM ruvector.maintenance_jobs j
                                        WHERE j.paused_by = x.id)
                     ORDER BY x.id LIMIT greatest(batch, 1));
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    DELETE FROM ruvector.healing_outcomes o
     WHERE o.id IN (SELECT x.id FROM ruvector.healing_outcomes x
                     WHERE coalesce(x.completed_at, x.started_at) < cutoff
                     ORDER BY x.id LIMIT greatest(batch, 1));
    GET DIAGNOSTICS n = ROW_COUNT;
    total := total + n;
    DELETE FROM ruvector.healing_requests r
     WHERE r.id IN (SELECT x.id FROM ruvector.healing_requests x
                     WHERE x.processed_at IS NOT NULL AND x.processed_at < cutoff
                     ORDER BY x.id LIMIT greatest(batch, 1));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN total + n;
END
$$;

GRANT EXECUTE ON FUNCTION ruvector.audit_prune_point(timestamptz, integer),
                          ruvector.prune_audit(bigint, timestamptz),
                          ruvector.prune_healing_history(timestamptz, integer)
    TO ruvector_daemon;
