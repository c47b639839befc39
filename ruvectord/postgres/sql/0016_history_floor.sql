-- ruvectord schema v16: the healing history's 7-day floor rests on times the daemon cannot
-- rewrite. The daemon may UPDATE an action's status and updated_at, and a request's
-- processed_at, so by v13's rule a daemon role turned hostile could backdate a fresh row and
-- prune it. Now it may update only the columns its journal writes, never an action's
-- created_at or a request's requested_at (set by the operator's insert), and pruning also
-- needs those to be older than 7 days.
REVOKE UPDATE ON ruvector.healing_actions FROM ruvector_daemon;
GRANT UPDATE (status, rollback_data, result, error_message, final_lambda, started_at,
              completed_at, decided_by, decided_at, updated_at)
    ON ruvector.healing_actions TO ruvector_daemon;
REVOKE UPDATE ON ruvector.healing_requests FROM ruvector_daemon;
GRANT UPDATE (processed_at, status, result, processed_by)
    ON ruvector.healing_requests TO ruvector_daemon;

CREATE OR REPLACE FUNCTION ruvector.prune_healing_history(older_than timestamptz, batch integer)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    floor_at timestamptz := now() - interval '7 days';
    cutoff timestamptz := least(older_than, floor_at);
    total bigint := 0;
    n bigint;
BEGIN
    DELETE FROM ruvector.healing_actions a
     WHERE a.id IN (SELECT x.id FROM ruvector.healing_actions x
                     WHERE x.status NOT IN ('pending_approval', 'approved', 'running',
                                            'verifying', 'rolling_back')
                       AND x.updated_at < cutoff
                       AND x.created_at < floor_at
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
                       AND x.requested_at < floor_at
                     ORDER BY x.id LIMIT greatest(batch, 1));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN total + n;
END
$$;
