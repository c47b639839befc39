-- ruvectord schema v13: the moving strategies' batch log (ruvector.placement_batches, one row
-- per batch moved) is pruned with the healing history it belongs to: same floor (never under
-- 7 days), never a batch of an action still in flight. Same function, same grant.
CREATE OR REPLACE FUNCTION ruvector.prune_healing_history(older_than timestamptz, batch integer)
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
    DELETE FROM ruvector.placement_batches p
     WHERE p.id IN (SELECT x.id FROM ruvector.placement_batches x
                     WHERE x.moved_at < cutoff
                       AND NOT EXISTS (SELECT 1 FROM ruvector.healing_actions a
                                        WHERE a.id = x.action_id
                                          AND a.status IN ('running', 'verifying',
                                                           'rolling_back'))
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
