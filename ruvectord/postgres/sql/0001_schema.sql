-- ruvectord schema v1: every table the daemon reads or writes, in schema "ruvector".
-- Applied by ruvectord.postgres.migrations under an advisory lock, inside one transaction.

CREATE SCHEMA IF NOT EXISTS ruvector;

-- One row per configured collection (mirrors the YAML file; the daemon keeps it in step).
CREATE TABLE ruvector.collections (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    table_schema  text NOT NULL,
    table_name    text NOT NULL,
    vector_column text NOT NULL,
    tenant_column text,
    budgets       jsonb NOT NULL DEFAULT '{}',
    configured    boolean NOT NULL DEFAULT true,   -- false once removed from the config
    status        text NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'error')),
    status_detail text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The hysteresis policy in force for a collection (written by the daemon from its config).
CREATE TABLE ruvector.integrity_policies (
    collection_id         integer PRIMARY KEY REFERENCES ruvector.collections (id) ON DELETE CASCADE,
    threshold_high        double precision NOT NULL,
    threshold_low         double precision NOT NULL,
    degrade_samples       integer NOT NULL,
    critical_samples      integer NOT NULL,
    recovery_offset       double precision NOT NULL,
    recovery_hold_seconds double precision NOT NULL,
    cooldown_seconds      double precision NOT NULL,
    sample_interval_seconds double precision NOT NULL,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- Current integrity state per collection; survives daemon restarts (tracker = counters, holds).
CREATE TABLE ruvector.integrity_state (
    collection_id      integer PRIMARY KEY REFERENCES ruvector.collections (id) ON DELETE CASCADE,
    state              text NOT NULL DEFAULT 'normal' CHECK (state IN ('normal', 'stress', 'critical')),
    lambda_cut         double precision,        -- normalised: 1.0 = as connected as the topology allows
    lambda_cut_raw     double precision,
    lambda2            double precision,
    tracker            jsonb NOT NULL DEFAULT '{}',
    witness_edges      jsonb NOT NULL DEFAULT '[]',
    decision           text,                    -- the last cycle's one-line explanation
    last_sample_at     timestamptz,
    last_transition_at timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ruvector.integrity_samples (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection_id     integer NOT NULL REFERENCES ruvector.collections (id) ON DELETE CASCADE,
    sampled_at        timestamptz NOT NULL,
    lambda_cut        double precision NOT NULL,
    lambda_cut_raw    double precision NOT NULL,
    lambda2           double precision,
    state             text NOT NULL,
    node_count        integer NOT NULL,
    edge_count        integer NOT NULL,
    witness_count     integer NOT NULL,
    sample_ms         double precision NOT NULL,
    computation_ms    double precision NOT NULL
);
CREATE INDEX integrity_samples_collection_time ON ruvector.integrity_samples (collection_id, sampled_at);
CREATE INDEX integrity_samples_time ON ruvector.integrity_samples (sampled_at);

CREATE TABLE ruvector.signing_keys (
    id          text PRIMARY KEY,                  -- signer id: hex SHA-256 prefix of the public key
    public_key  bytea NOT NULL CHECK (length(public_key) = 32),
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);

-- Signed, append-only record of what the integrity monitor and the healer decided.
CREATE TABLE ruvector.integrity_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection     text NOT NULL,
    event_type     text NOT NULL CHECK (event_type IN ('state_change', 'sample', 'policy_update',
                       'manual_override', 'recovery', 'alert', 'audit')),
    previous_state text,
    new_state      text,
    lambda_cut     double precision,
    lambda2        double precision,
    witness_edges  jsonb NOT NULL DEFAULT '[]',
    metadata       jsonb NOT NULL DEFAULT '{}',
    signature      bytea NOT NULL,
    signer_id      text NOT NULL REFERENCES ruvector.signing_keys (id),
    created_at     timestamptz NOT NULL
);
CREATE INDEX integrity_events_collection_time ON ruvector.integrity_events (collection, created_at);

-- The latest contracted graph per collection, kept for forensics.
CREATE TABLE ruvector.contracted_graph (
    collection_id  integer PRIMARY KEY REFERENCES ruvector.collections (id) ON DELETE CASCADE,
    sampled_at     timestamptz NOT NULL,
    lambda_cut     double precision NOT NULL,
    lambda_cut_raw double precision NOT NULL,
    lambda2        double precision,
    nodes          jsonb NOT NULL,          -- [{"index", "kind", "id", "name", "attrs"}]
    cut_side       jsonb NOT NULL           -- node indices on the smaller side of the min cut
);

CREATE TABLE ruvector.contracted_edges (
    collection_id integer NOT NULL REFERENCES ruvector.collections (id) ON DELETE CASCADE,
    edge_index    integer NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('routing', 'partition_link', 'replication',
                      'dependency', 'centroid_route')),
    source        integer NOT NULL,
    target        integer NOT NULL,
    capacity      double precision NOT NULL,  -- health in [0.01, 1], after error rate
    weight        double precision NOT NULL,  -- structural weight (its capacity when healthy)
    flow          double precision NOT NULL,  -- weight * capacity: what it adds to a cut
    witness       boolean NOT NULL,
    reason        text,
    PRIMARY KEY (collection_id, edge_index)
);

-- Optional per-centroid statistics (IVF lists, cluster buckets) fed by the application.
CREATE TABLE ruvector.centroid_stats (
    collection_id integer NOT NULL REFERENCES ruvector.collections (id) ON DELETE CASCADE,
    centroid_id   bigint NOT NULL,
    vector_count  bigint NOT NULL CHECK (vector_count >= 0),
    latency_ms    double precision CHECK (latency_ms >= 0),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_id, centroid_id)
);

-- Runtime overrides of the healing config (key -> value), e.g. set from SQL.
CREATE TABLE ruvector.healing_config (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_by text NOT NULL DEFAULT current_user,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Requests from the SQL interface or the CLI, picked up by the acting daemon.
CREATE TABLE ruvector.healing_requests (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection   text,
    kind         text NOT NULL CHECK (kind IN ('trigger', 'execute', 'approve', 'reject',
                     'abort', 'rollback')),
    action_id    bigint,
    payload      jsonb NOT NULL DEFAULT '{}',
    requested_by text NOT NULL DEFAULT current_user,
    requested_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    result       jsonb
);
CREATE INDEX healing_requests_pending ON ruvector.healing_requests (requested_at) WHERE processed_at IS NULL;

-- The journal: written before a strategy runs and updated at every step, so a crash can be
-- undone at the next start.
CREATE TABLE ruvector.healing_actions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection_id   integer NOT NULL REFERENCES ruvector.collections (id),
    problem_class   text NOT NULL,
    problem_details jsonb NOT NULL,
    strategy_name   text NOT NULL,
    strategy_params jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL CHECK (status IN ('pending_approval', 'approved', 'running',
                        'verifying', 'rolling_back', 'succeeded', 'unverified', 'rolled_back',
                        'rollback_failed', 'failed', 'interrupted', 'expired', 'rejected',
                        'aborted', 'lifted')),
    dry_run         boolean NOT NULL DEFAULT false,
    reversible      boolean NOT NULL,
    integrity_state text NOT NULL,
    initial_lambda  double precision NOT NULL,
    final_lambda    double precision,
    rollback_data   jsonb NOT NULL DEFAULT '{}',
    result          jsonb,
    error_message   text,
    actor           text NOT NULL,
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    completed_at    timestamptz,
    expires_at      timestamptz,
    decided_by      text,
    decided_at      timestamptz,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX healing_actions_collection_time ON ruvector.healing_actions (collection_id, created_at);
CREATE INDEX healing_actions_open ON ruvector.healing_actions (status)
    WHERE status IN ('pending_approval', 'approved', 'running', 'verifying', 'rolling_back');
-- The database itself refuses a second action in flight, whatever the daemons believe.
CREATE UNIQUE INDEX healing_actions_one_in_flight ON ruvector.healing_actions ((true))
    WHERE status IN ('running', 'verifying', 'rolling_back');

-- Outcome tracking, exactly as in the self-healing design (one row per attempt).
CREATE TABLE ruvector.healing_outcomes (
    id BIGSERIAL PRIMARY KEY,
    collection_id INTEGER NOT NULL,
    tenant_id TEXT,

    -- Problem
    problem_class TEXT NOT NULL,
    problem_details JSONB NOT NULL,

    -- Strategy
    strategy_name TEXT NOT NULL,
    strategy_params JSONB,

    -- Execution
    started_at TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    duration_ms INTEGER,

    -- Result
    success BOOLEAN NOT NULL,
    verified BOOLEAN,
    actions_taken INTEGER,
    improvement_pct REAL,
    error_message TEXT,

    -- Context
    initial_lambda REAL NOT NULL,
    final_lambda REAL,
    witness_edges JSONB,
    system_metrics JSONB,

    -- Learning
    feedback_score REAL,  -- Human feedback if provided
    created_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE INDEX idx_healing_outcomes_class ON ruvector.healing_outcomes(problem_class);
CREATE INDEX idx_healing_outcomes_strategy ON ruvector.healing_outcomes(strategy_name);
CREATE INDEX idx_healing_outcomes_success ON ruvector.healing_outcomes(success, verified);

CREATE TABLE ruvector.strategy_weights (
    strategy_name   text PRIMARY KEY,
    weight          double precision NOT NULL,
    attempts        integer NOT NULL,
    successes       integer NOT NULL,
    success_rate    double precision NOT NULL,
    avg_improvement double precision NOT NULL,   -- fraction (0.25 = lambda rose by 25 %)
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Throttle levels per collection and operation (percentage of operations turned away).
CREATE TABLE ruvector.throttles (
    collection_id integer NOT NULL REFERENCES ruvector.collections (id) ON DELETE CASCADE,
    operation     text NOT NULL,
    throttle_pct  smallint NOT NULL CHECK (throttle_pct BETWEEN 0 AND 100),
    retry_after_seconds double precision NOT NULL DEFAULT 5,
    action_id     bigint REFERENCES ruvector.healing_actions (id),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_id, operation)
);

-- Scheduled maintenance the healer may pause (and must resume).
CREATE TABLE ruvector.maintenance_jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection_id integer REFERENCES ruvector.collections (id) ON DELETE CASCADE,
    job_type      text NOT NULL,
    description   text,
    priority      text NOT NULL DEFAULT 'low' CHECK (priority IN ('low', 'normal', 'high')),
    paused        boolean NOT NULL DEFAULT false,
    paused_by     bigint REFERENCES ruvector.healing_actions (id),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
