-- ruvectord schema v7: the control plane -- the ruvector_healing_* functions of the design,
-- dynamic configuration, and what the acting daemon publishes about itself.
--
-- Mutators never act in the caller's session. Each validates its arguments (a bad one raises
-- with a SQLSTATE and a HINT and changes nothing), records a request with the session_user
-- who asked, and returns its id; the acting daemon carries it out through the engine, with
-- every safeguard that applies, and signs it into the audit trail. A function cannot wait
-- for its own request: the daemon sees the request only once the caller's transaction
-- commits. So waiting is a second call, ruvector_healing_wait(id) (the CLI's --wait does
-- both). A mutator that needs the daemon says at once when no daemon is acting.

-- ----------------------------------------------------------------------------- published
-- What the settings may be (kind and bounds, from the daemon's own models), so that
-- ruvector_healing_configure refuses a bad value at once with the YAML's own message.
CREATE TABLE ruvector.config_schema (
    key               text PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('bool', 'int', 'float', 'text', 'text_list',
                                                   'static')),
    minimum           double precision,
    minimum_exclusive boolean NOT NULL DEFAULT false,
    maximum           double precision,
    maximum_exclusive boolean NOT NULL DEFAULT false,
    choices           text[],
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- What the acting daemon runs with (its dynamic settings only), and where each value comes from.
CREATE TABLE ruvector.effective_config (
    key        text PRIMARY KEY,
    value      jsonb,                   -- NULL: the setting is null (unset)
    source     text NOT NULL CHECK (source IN ('default', 'yaml', 'database')),
    node       text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The strategies the acting daemon has, and the parameters a manual execute may pass.
CREATE TABLE ruvector.strategies (
    name             text PRIMARY KEY,
    classes          text[] NOT NULL,
    impact           double precision NOT NULL,
    reversible       boolean NOT NULL,
    lift_on_recovery boolean NOT NULL,
    leased           boolean NOT NULL,
    params           jsonb NOT NULL DEFAULT '{}',  -- name -> {"kind", "minimum", "maximum"}
    node             text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE, DELETE
   ON ruvector.config_schema, ruvector.effective_config, ruvector.strategies
   TO ruvector_daemon;

-- ----------------------------------------------------------------------------- dynamic config
-- healing_config holds the database's overrides (key -> value), written only through
-- ruvector_healing_configure; every daemon applies them on its next cycle. The pause switch
-- of v4 becomes the dynamic setting healing.enabled.
ALTER TABLE ruvector.healing_config ADD COLUMN reason text;
ALTER TABLE ruvector.healing_config ALTER COLUMN updated_by SET DEFAULT session_user;
INSERT INTO ruvector.healing_config (key, value, updated_by, updated_at, reason)
SELECT 'healing.enabled', 'false'::jsonb, coalesce(c.changed_by, session_user),
       coalesce(c.changed_at, now()), c.reason
  FROM ruvector.control c WHERE c.paused;
DROP FUNCTION public.ruvector_healing_enable(boolean, text);
DROP TABLE ruvector.control;

ALTER TABLE ruvector.healing_requests DROP CONSTRAINT healing_requests_kind_check;
ALTER TABLE ruvector.healing_requests ADD CONSTRAINT healing_requests_kind_check
    CHECK (kind IN ('trigger', 'execute', 'approve', 'reject', 'abort', 'rollback', 'lift',
                    'configure'));

-- ----------------------------------------------------------------------------- helpers
-- The acting daemon holds a session advisory lock (ruvectord/postgres/leader.py: key
-- 0x7275766563746F72 + 1, as classid/objid halves) on a connection to this database.
CREATE FUNCTION ruvector.actor_alive()
RETURNS boolean
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.database = (SELECT d.oid FROM pg_database d
                              WHERE d.datname = current_database())
           AND l.classid = 1920300645 AND l.objid = 1668575091 AND l.objsubid = 1)
$$;

CREATE FUNCTION ruvector.require_actor(what text)
RETURNS void
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT ruvector.actor_alive() THEN
        RAISE EXCEPTION 'no ruvectord daemon is acting on this database, so nobody would %', what
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'start one (systemctl start ruvectord) and ask again; nothing was queued';
    END IF;
END
$$;

-- The effective value of a setting: the database's override, else what the acting daemon
-- published (its YAML or default), else `fallback`.
CREATE FUNCTION ruvector.setting(key text, fallback jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT h.value FROM ruvector.healing_config h WHERE h.key = setting.key),
                    (SELECT e.value FROM ruvector.effective_config e WHERE e.key = setting.key),
                    fallback)
$$;

-- Edit distance, for "did you mean" (fuzzystrmatch is not always installed).
CREATE FUNCTION ruvector.distance(a text, b text)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    prev integer[];
    cur integer[];
    i integer;
    j integer;
BEGIN
    prev := array(SELECT generate_series(0, length(b)));
    FOR i IN 1 .. length(a) LOOP
        cur := ARRAY[i];
        FOR j IN 1 .. length(b) LOOP
            cur := cur || least(prev[j + 1] + 1, cur[j] + 1,
                                prev[j] + CASE WHEN substr(a, i, 1) = substr(b, j, 1)
                                               THEN 0 ELSE 1 END);
        END LOOP;
        prev := cur;
    END LOOP;
    RETURN prev[length(b) + 1];
END
$$;

-- One problem with one setting, worded as config.py words it for the YAML file.
CREATE FUNCTION ruvector.setting_problem(key text, value jsonb)
RETURNS text
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    shown text := CASE jsonb_typeof(value) WHEN 'string' THEN quote_literal(value #>> '{}')
                                          ELSE value::text END;
    n double precision;
    close text;
BEGIN
    SELECT * INTO s FROM ruvector.config_schema c WHERE c.key = setting_problem.key;
    IF NOT FOUND THEN
        SELECT c.key INTO close FROM ruvector.config_schema c
         WHERE c.kind <> 'static'
         ORDER BY ruvector.distance(c.key, setting_problem.key), c.key LIMIT 1;
        RETURN format('%s: unknown key%s', key,
                      CASE WHEN close IS NOT NULL
                                AND ruvector.distance(close, key) <= greatest(3, length(key) / 4)
                           THEN format(' (did you mean %L?)', close) ELSE '' END);
    END IF;
    IF s.kind = 'static' THEN
        RETURN format('%s: is a static setting: change it in the YAML file and restart '
                      'ruvectord (only healing and integrity thresholds, bounds, approval '
                      'lists and windows can be configured here)', key);
    END IF;
    IF jsonb_typeof(value) = 'null' THEN
        RETURN NULL;  -- removes the override
    END IF;
    IF s.kind = 'bool' AND jsonb_typeof(value) <> 'boolean' THEN
        RETURN format('%s: %s is not true or false', key, shown);
    END IF;
    IF s.kind IN ('int', 'float') THEN
        IF jsonb_typeof(value) <> 'number' THEN
            RETURN format('%s: %s is not %s', key, shown,
                          CASE s.kind WHEN 'int' THEN 'an integer' ELSE 'a number' END);
        END IF;
        IF s.kind = 'int' AND (value #>> '{}')::numeric <> trunc((value #>> '{}')::numeric) THEN
            RETURN format('%s: %s is not a whole number', key, shown);
        END IF;
        n := (value #>> '{}')::double precision;
        IF s.minimum IS NOT NULL AND (n < s.minimum OR (s.minimum_exclusive AND n = s.minimum)) THEN
            RETURN format('%s: %s is not %s %s', key, shown,
                          CASE WHEN s.minimum_exclusive THEN '>' ELSE '>=' END, s.minimum);
        END IF;
        IF s.maximum IS NOT NULL AND (n > s.maximum OR (s.maximum_exclusive AND n = s.maximum)) THEN
            RETURN format('%s: %s is not %s %s', key, shown,
                          CASE WHEN s.maximum_exclusive THEN '<' ELSE '<=' END, s.maximum);
        END IF;
    END IF;
    IF s.kind = 'text' AND jsonb_typeof(value) <> 'string' THEN
        RETURN format('%s: %s is not a string', key, shown);
    END IF;
    IF s.kind = 'text' AND s.choices IS NOT NULL AND NOT (value #>> '{}') = ANY (s.choices) THEN
        RETURN format('%s: %s is not one of %s', key, shown, array_to_string(s.choices, ', '));
    END IF;
    IF s.kind = 'text_list' THEN
        IF jsonb_typeof(value) <> 'array' OR EXISTS (
                SELECT 1 FROM jsonb_array_elements(value) e WHERE jsonb_typeof(e) <> 'string') THEN
            RETURN format('%s: is not a list of strings', key);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- ruvector_integrity_status read the pause from the table it replaces
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

-- ----------------------------------------------------------------------------- mutators
CREATE FUNCTION public.ruvector_healing_configure(settings jsonb, reason text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    flat jsonb := '{}';
    item record;
    problems text[] := '{}';
    problem text;
    high double precision;
    low double precision;
    offs double precision;
    id bigint;
BEGIN
    IF settings IS NULL OR jsonb_typeof(settings) <> 'object' THEN
        RAISE EXCEPTION 'settings must be a JSON object, such as {"enabled": false}'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'keys are settings of the YAML file (healing.*, integrity.*); a key '
                         'without a section is a healing setting';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ruvector.config_schema) THEN
        RAISE EXCEPTION 'no ruvectord daemon has published its settings yet'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'start ruvectord once; it publishes what may be configured';
    END IF;
    -- nested objects to dotted keys; a bare key is a healing setting (the design's examples)
    FOR item IN
        WITH RECURSIVE walk(path, value) AS (
            SELECT e.key, e.value FROM jsonb_each(settings) e
            UNION ALL
            SELECT w.path || '.' || e.key, e.value
              FROM walk w, jsonb_each(w.value) e
             WHERE jsonb_typeof(w.value) = 'object'
               AND NOT EXISTS (SELECT 1 FROM ruvector.config_schema c WHERE c.key = w.path)
               AND NOT EXISTS (SELECT 1 FROM ruvector.config_schema c
                                WHERE c.key = 'healing.' || w.path)
        )
        SELECT w.path, w.value FROM walk w
         WHERE jsonb_typeof(w.value) <> 'object'
            OR EXISTS (SELECT 1 FROM ruvector.config_schema c WHERE c.key IN (w.path,
                                                                              'healing.' || w.path))
    LOOP
        IF item.path = 'max_attempts_per_hour' OR item.path = 'healing.max_attempts_per_hour' THEN
            -- the design's spelling: N attempts in a window of an hour
            flat := flat || jsonb_build_object('healing.max_attempts_per_window', item.value,
                                               'healing.attempt_window_seconds', 3600);
        ELSIF strpos(item.path, '.') = 0
              OR NOT EXISTS (SELECT 1 FROM ruvector.config_schema c WHERE c.key = item.path)
                 AND EXISTS (SELECT 1 FROM ruvector.config_schema c
                              WHERE c.key = 'healing.' || item.path) THEN
            flat := flat || jsonb_build_object('healing.' || item.path, item.value);
        ELSE
            flat := flat || jsonb_build_object(item.path, item.value);
        END IF;
    END LOOP;
    FOR item IN SELECT e.key, e.value FROM jsonb_each(flat) e ORDER BY e.key LOOP
        problem := ruvector.setting_problem(item.key, item.value);
        IF problem IS NOT NULL THEN
            problems := problems || problem;
        END IF;
    END LOOP;
    IF cardinality(problems) = 0 THEN
        -- the rules that join two settings, as the models check them
        high := coalesce(flat ->> 'integrity.threshold_high',
                         ruvector.setting('integrity.threshold_high', '0.8') #>> '{}')::float8;
        low := coalesce(flat ->> 'integrity.threshold_low',
                        ruvector.setting('integrity.threshold_low', '0.3') #>> '{}')::float8;
        offs := coalesce(flat ->> 'integrity.recovery_offset',
                         ruvector.setting('integrity.recovery_offset', '0.1') #>> '{}')::float8;
        IF low >= high THEN
            problems := problems || format('integrity: threshold_low (%s) must be below '
                                           'threshold_high (%s)', low, high);
        END IF;
        IF high + offs >= 1 THEN
            problems := problems || format('integrity: threshold_high (%s) + recovery_offset '
                                           '(%s) must be below 1', high, offs);
        END IF;
    END IF;
    IF cardinality(problems) > 0 THEN
        RAISE EXCEPTION '%', problems[1]
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = array_to_string(problems, E'\n'),
                  HINT = 'nothing was changed; `ruvectord config show` lists every setting, '
                         'its value and its source';
    END IF;
    FOR item IN SELECT e.key, e.value FROM jsonb_each(flat) e LOOP
        IF jsonb_typeof(item.value) = 'null' THEN
            DELETE FROM ruvector.healing_config h WHERE h.key = item.key;
        ELSE
            INSERT INTO ruvector.healing_config (key, value, updated_by, updated_at, reason)
            VALUES (item.key, item.value, session_user, now(),
                    ruvector_healing_configure.reason)
            ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,
                updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at,
                reason = EXCLUDED.reason;
        END IF;
    END LOOP;
    id := ruvector.request('configure', NULL, NULL,
                           jsonb_build_object('settings', flat, 'reason', reason));
    PERFORM pg_notify('ruvector_config', id::text);
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
    RETURN public.ruvector_healing_configure(jsonb_build_object('healing.enabled', enabled),
                                             reason);
END
$$;

CREATE FUNCTION public.ruvector_healing_trigger(collection text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ruvector.collection_id(ruvector_healing_trigger.collection);
    PERFORM ruvector.require_actor('sample and heal it');
    RETURN ruvector.request('trigger', ruvector_healing_trigger.collection, NULL, '{}');
END
$$;

CREATE FUNCTION public.ruvector_healing_execute(collection text, strategy text,
                                                params jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    p record;
    spec jsonb;
    n double precision;
BEGIN
    PERFORM ruvector.collection_id(ruvector_healing_execute.collection);
    SELECT * INTO s FROM ruvector.strategies x WHERE x.name = ruvector_healing_execute.strategy;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown strategy %', quote_literal(ruvector_healing_execute.strategy)
            USING ERRCODE = 'undefined_object',
                  HINT = coalesce('strategies: ' || (SELECT string_agg(x.name, ', ' ORDER BY x.name)
                                                       FROM ruvector.strategies x),
                                  'no daemon has published its strategies yet');
    END IF;
    IF params IS NULL OR jsonb_typeof(params) <> 'object' THEN
        RAISE EXCEPTION 'params must be a JSON object, such as {"dry_run": true}'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR p IN SELECT e.key, e.value FROM jsonb_each(params) e LOOP
        spec := CASE p.key WHEN 'dry_run' THEN '{"kind": "bool"}'::jsonb
                           WHEN 'force_impact' THEN '{"kind": "bool"}'::jsonb
                           ELSE s.params -> p.key END;
        IF spec IS NULL THEN
            RAISE EXCEPTION '%: unknown parameter %', s.name, quote_literal(p.key)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'parameters: ' || array_to_string(
                          ARRAY['dry_run', 'force_impact']
                          || ARRAY(SELECT jsonb_object_keys(s.params)), ', ');
        END IF;
        IF spec ->> 'kind' = 'bool' AND jsonb_typeof(p.value) <> 'boolean' THEN
            RAISE EXCEPTION '%.%: % is not true or false', s.name, p.key, p.value
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF spec ->> 'kind' IN ('int', 'float') THEN
            IF jsonb_typeof(p.value) <> 'number' THEN
                RAISE EXCEPTION '%.%: % is not a number', s.name, p.key, p.value
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            n := (p.value #>> '{}')::double precision;
            IF n < (spec ->> 'minimum')::float8 OR n > (spec ->> 'maximum')::float8 THEN
                RAISE EXCEPTION '%.%: % is not within [%, %]', s.name, p.key, p.value,
                                spec ->> 'minimum', spec ->> 'maximum'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END IF;
    END LOOP;
    PERFORM ruvector.require_actor('carry it out');
    RETURN ruvector.request('execute', ruvector_healing_execute.collection, NULL,
                            jsonb_build_object('strategy', s.name, 'params', params));
END
$$;

CREATE FUNCTION public.ruvector_healing_abort(action_id bigint)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
BEGIN
    SELECT x.status, c.name AS collection INTO a
      FROM ruvector.healing_actions x JOIN ruvector.collections c ON c.id = x.collection_id
     WHERE x.id = ruvector_healing_abort.action_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'there is no healing action %', action_id
            USING ERRCODE = 'undefined_object', HINT = 'ruvectord heal list shows the actions';
    END IF;
    IF a.status IN ('pending_approval', 'approved') THEN
        UPDATE ruvector.healing_actions
           SET status = 'aborted', decided_by = session_user, decided_at = now(),
               completed_at = now(), updated_at = now(),
               error_message = format('aborted by %s before it ran', session_user)
         WHERE id = ruvector_healing_abort.action_id AND status IN ('pending_approval', 'approved');
    ELSIF a.status IN ('running', 'verifying') THEN
        PERFORM ruvector.require_actor('stop it');
    ELSE
        RAISE EXCEPTION 'action % is %: only a pending, approved or running action can be aborted',
                        action_id, a.status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'to undo a finished action: SELECT ruvector_healing_rollback(collection)';
    END IF;
    RETURN ruvector.request('abort', a.collection, action_id,
                            jsonb_build_object('was', a.status));
END
$$;

CREATE FUNCTION public.ruvector_healing_rollback(collection text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cid integer := ruvector.collection_id(ruvector_healing_rollback.collection);
    last bigint;
BEGIN
    SELECT a.id INTO last FROM ruvector.healing_actions a
     WHERE a.collection_id = cid AND a.status = 'succeeded' AND a.reversible
     ORDER BY a.id DESC LIMIT 1;
    IF last IS NULL THEN
        RAISE EXCEPTION 'no reversible action is in force on collection %',
                        quote_literal(ruvector_healing_rollback.collection)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'ruvectord heal list shows the actions and their status';
    END IF;
    PERFORM ruvector.require_actor('roll it back');
    RETURN ruvector.request('rollback', ruvector_healing_rollback.collection, last, '{}');
END
$$;

-- Waiting is a second call: the daemon sees a request only once its transaction commits.
CREATE FUNCTION public.ruvector_healing_wait(request_id bigint,
                                             timeout_seconds double precision DEFAULT 30)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    deadline timestamptz;
BEGIN
    IF timeout_seconds IS NULL OR timeout_seconds < 0 OR timeout_seconds > 3600 THEN
        RAISE EXCEPTION 'timeout_seconds must be between 0 and 3600'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    deadline := clock_timestamp() + make_interval(secs => timeout_seconds);
    LOOP
        SELECT x.kind, x.collection, x.status, x.result, x.requested_by, x.requested_at,
               x.processed_at, x.processed_by INTO r
          FROM ruvector.healing_requests x WHERE x.id = ruvector_healing_wait.request_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'there is no request %', request_id
                USING ERRCODE = 'undefined_object',
                      HINT = 'a request is visible once the transaction that made it commits';
        END IF;
        EXIT WHEN r.processed_at IS NOT NULL OR clock_timestamp() >= deadline;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN jsonb_build_object('request_id', request_id, 'kind', r.kind,
                              'collection', r.collection, 'status', r.status,
                              'result', r.result, 'requested_by', r.requested_by,
                              'processed_by', r.processed_by, 'processed_at', r.processed_at,
                              'waited', r.processed_at IS NULL);
END
$$;

-- ----------------------------------------------------------------------------- readers
CREATE FUNCTION public.ruvector_healing_status()
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
             WHERE t.collection_id = c.id AND t.throttle_pct > 0
               AND t.expires_at > statement_timestamp()) thr ON true
     WHERE c.configured
     ORDER BY c.name
$$;

CREATE FUNCTION public.ruvector_healing_history(collection text DEFAULT NULL,
                                                since timestamptz DEFAULT now() - interval '24 hours',
                                                strategy text DEFAULT NULL,
                                                limit_ integer DEFAULT 20)
RETURNS TABLE (action_id bigint, collection_name text, strategy_name text, problem_class text,
               status text, initial_lambda double precision, final_lambda double precision,
               created_at timestamptz, started_at timestamptz, completed_at timestamptz,
               actor text, decided_by text, error_message text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cid integer;
BEGIN
    IF ruvector_healing_history.collection IS NOT NULL THEN
        cid := ruvector.collection_id(ruvector_healing_history.collection);
    END IF;
    IF ruvector_healing_history.strategy IS NOT NULL AND EXISTS (SELECT 1 FROM ruvector.strategies)
       AND NOT EXISTS (SELECT 1 FROM ruvector.strategies x
                        WHERE x.name = ruvector_healing_history.strategy) THEN
        RAISE EXCEPTION 'unknown strategy %', quote_literal(ruvector_healing_history.strategy)
            USING ERRCODE = 'undefined_object',
                  HINT = 'strategies: ' || (SELECT string_agg(x.name, ', ' ORDER BY x.name)
                                              FROM ruvector.strategies x);
    END IF;
    IF limit_ IS NULL OR limit_ < 1 OR limit_ > 10000 THEN
        RAISE EXCEPTION 'limit_ must be between 1 and 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
    SELECT a.id, c.name, a.strategy_name, a.problem_class, a.status, a.initial_lambda,
           a.final_lambda, a.created_at, a.started_at, a.completed_at, a.actor, a.decided_by,
           a.error_message
      FROM ruvector.healing_actions a JOIN ruvector.collections c ON c.id = a.collection_id
     WHERE (cid IS NULL OR a.collection_id = cid)
       AND (ruvector_healing_history.strategy IS NULL
            OR a.strategy_name = ruvector_healing_history.strategy)
       AND a.created_at >= coalesce(since, '-infinity')
     ORDER BY a.id DESC
     LIMIT limit_;
END
$$;

-- Per strategy over the learning window, and one 'overall' row. Time to verification: from
-- the start of the degradation to the verified action; time to recovery: from the start of
-- the degradation to the transition back to normal (the episodes the strategy took part in).
CREATE FUNCTION public.ruvector_healing_effectiveness()
RETURNS TABLE (strategy text, weight double precision, attempts bigint, verified bigint,
               success_rate double precision, avg_improvement double precision,
               mean_time_to_verification_seconds double precision,
               mean_time_to_recovery_seconds double precision)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH win AS (
        SELECT now() - make_interval(days => (ruvector.setting('healing.learning_window_days',
                                                               '30') #>> '{}')::float8::int)
                   AS since
    ),
    transitions AS (
        SELECT e.collection, e.created_at AS at, e.previous_state, e.new_state
          FROM ruvector.integrity_events e
         WHERE e.event_type = 'state_change'
    ),
    episodes AS (
        -- from leaving normal to the first return to normal
        SELECT t.collection, t.at AS started,
               (SELECT min(u.at) FROM transitions u
                 WHERE u.collection = t.collection AND u.at > t.at
                   AND u.new_state = 'normal') AS recovered
          FROM transitions t, win
         WHERE t.previous_state = 'normal' AND t.at >= win.since
    ),
    outcomes AS (
        SELECT o.strategy_name, o.success AND coalesce(o.verified, false) AS ok,
               coalesce(o.improvement_pct, 0) / 100.0 AS gain,
               coalesce((o.system_metrics ->> 'time_to_verification_seconds')::float8,
                        (o.system_metrics ->> 'time_to_recovery_seconds')::float8) AS ttv,
               (SELECT extract(epoch FROM ep.recovered - ep.started)
                  FROM episodes ep JOIN ruvector.collections c ON c.name = ep.collection
                 WHERE c.id = o.collection_id AND ep.started <= o.started_at
                   AND (ep.recovered IS NULL OR ep.recovered >= o.started_at)
                 ORDER BY ep.started DESC LIMIT 1) AS ttr
          FROM ruvector.healing_outcomes o, win
         WHERE o.started_at >= win.since
    )
    SELECT o.strategy_name, w.weight, count(*), count(*) FILTER (WHERE o.ok),
           avg(o.ok::int)::float8, avg(o.gain)::float8,
           avg(o.ttv) FILTER (WHERE o.ok), avg(o.ttr) FILTER (WHERE o.ok)
      FROM outcomes o LEFT JOIN ruvector.strategy_weights w ON w.strategy_name = o.strategy_name
     GROUP BY o.strategy_name, w.weight
    UNION ALL
    SELECT 'overall', NULL, count(*), count(*) FILTER (WHERE o.ok),
           coalesce(avg(o.ok::int)::float8, 0), coalesce(avg(o.gain)::float8, 0),
           avg(o.ttv) FILTER (WHERE o.ok),
           (SELECT avg(extract(epoch FROM ep.recovered - ep.started))
              FROM episodes ep WHERE ep.recovered IS NOT NULL)
      FROM outcomes o
$$;

CREATE FUNCTION public.ruvector_healing_strategies()
RETURNS TABLE (name text, classes text[], impact double precision, reversible boolean,
               requires_approval boolean, enabled boolean, lift_on_recovery boolean,
               leased boolean, params jsonb, weight double precision)
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.name, s.classes, s.impact, s.reversible,
           ruvector.setting('healing.require_approval_strategies', '["scale_replicas"]')
               ? s.name,
           coalesce((ruvector.setting('healing.strategies.' || s.name || '.enabled', 'true'))
                        ::text::boolean, true)
               AND s.impact <= (ruvector.setting('healing.max_auto_heal_impact', '0.5')
                                #>> '{}')::float8,
           s.lift_on_recovery, s.leased, s.params, coalesce(w.weight, 1.0)
      FROM ruvector.strategies s
      LEFT JOIN ruvector.strategy_weights w ON w.strategy_name = s.name
     ORDER BY s.name
$$;

-- ----------------------------------------------------------------------------- grants
REVOKE EXECUTE ON FUNCTION public.ruvector_healing_configure(jsonb, text),
                           public.ruvector_healing_enable(boolean, text),
                           public.ruvector_healing_trigger(text),
                           public.ruvector_healing_execute(text, text, jsonb),
                           public.ruvector_healing_abort(bigint),
                           public.ruvector_healing_rollback(text),
                           public.ruvector_healing_wait(bigint, double precision),
                           public.ruvector_healing_status(),
                           public.ruvector_healing_history(text, timestamptz, text, integer),
                           public.ruvector_healing_effectiveness(),
                           public.ruvector_healing_strategies() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.ruvector_healing_configure(jsonb, text),
                          public.ruvector_healing_enable(boolean, text),
                          public.ruvector_healing_trigger(text),
                          public.ruvector_healing_execute(text, text, jsonb),
                          public.ruvector_healing_abort(bigint),
                          public.ruvector_healing_rollback(text),
                          public.ruvector_healing_wait(bigint, double precision)
   TO ruvector_operator;
GRANT EXECUTE ON FUNCTION public.ruvector_healing_status(),
                          public.ruvector_healing_history(text, timestamptz, text, integer),
                          public.ruvector_healing_effectiveness(),
                          public.ruvector_healing_strategies()
   TO ruvector_reader;
