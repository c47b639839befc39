-- ruvectord schema v12: what `ruvectord replay` needs (README "Replay").
--
-- Every recorded sample carries its replay frame: the inputs its decisions were computed from
-- (integrity/frame.py, zlib-compressed JSON, about 1.2 KB at 64 partitions), written in the
-- sample's own INSERT. NULL for samples recorded before this version: replay says so.
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
