-- ruvectord schema: placement -- the strategies that move rows between partitions
-- (rebalance_partitions, drain_hot_partition, evict_cold_data).
--
-- Moving a row is an UPDATE of the collection's placement column (its LIST or RANGE partition
-- key): PostgreSQL moves it across partitions as a DELETE and an INSERT in one statement, so
-- an MVCC snapshot sees it exactly once. The daemon's role holds no privilege on collection
-- tables and never reads a row of them; it calls two SECURITY DEFINER functions owned by
-- ruvector_owner that
--   * accept only a configured collection that declared a placement, and only its declared
--     placement column -- which must be the table's partition key -- and key column;
--   * move a bounded batch (at most 10 000 rows) named by key, from one leaf partition of that
--     collection to another, each row only if it still holds the value the caller saw;
--   * return keys and placement values only, never a vector or any other column.
-- ruvector_owner itself may do this only where an administrator opted the table in
-- (deploy/sql/roles.sql -v placement=TABLE:COLUMN:KEY[:AGE]), column by column.

-- The declaration, kept in step with the config file by the daemon. A declaration taken out
-- of the config stays (declared = false) so that what was moved under it can still be moved
-- back; no new move starts under it.
CREATE TABLE ruvector.placements (
    collection_id    integer PRIMARY KEY REFERENCES ruvector.collections (id) ON DELETE CASCADE,
    placement_column text NOT NULL,
    key_column       text NOT NULL,
    age_column       text,
    cold_value       text,
    declared         boolean NOT NULL DEFAULT true,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Every batch that moved rows, written by the moving transaction itself (so it exists exactly
-- when the batch committed): counts only, for status and forensics.
CREATE TABLE ruvector.placement_batches (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection_id  integer NOT NULL REFERENCES ruvector.collections (id) ON DELETE CASCADE,
    action_id      bigint,
    from_partition text NOT NULL,
    to_partition   text NOT NULL,
    moved          integer NOT NULL,
    moved_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX placement_batches_action ON ruvector.placement_batches (action_id);

-- drain_hot_partition's routing map: new writes for `from_value` are spread over `to_values`
-- while the lease holds. A lease, like a throttle: only the acting daemon renews it, so the drain of a
-- daemon that died lapses by itself and writers go back to their own partition.
CREATE TABLE ruvector.drains (
    collection_id integer NOT NULL REFERENCES ruvector.collections (id) ON DELETE CASCADE,
    from_value    text NOT NULL,
    to_values     text[] NOT NULL CHECK (cardinality(to_values) BETWEEN 1 AND 64
                                         AND array_position(to_values, NULL) IS NULL),
    action_id     bigint,
    expires_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection_id, from_value),
    CHECK (NOT from_value = ANY (to_values))
);

-- ----------------------------------------------------------------------------- helpers
-- (the owner's alone: 0004's default privileges keep them from PUBLIC)

-- Is `part` a leaf partition of `tbl` (at any depth), and not its DEFAULT partition?
-- pg_inherits, not pg_partition_tree: no lock is taken to answer.
CREATE FUNCTION ruvector.placement_leaf(tbl regclass, part regclass)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE tree(relid) AS (
        SELECT tbl::oid
        UNION
        SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid
    )
    SELECT EXISTS (
        SELECT 1 FROM tree JOIN pg_class c ON c.oid = tree.relid
         WHERE c.oid = part::oid AND c.relkind = 'r' AND c.relispartition
           AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT')
$$;

-- The declared placement of a collection, checked against the catalog; raises naming the rule.
CREATE FUNCTION ruvector.placement_spec(collection_id integer,
                                        OUT tbl regclass, OUT pcol text, OUT kcol text,
                                        OUT acol text, OUT ptype text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
    strat "char";
    natts integer;
    keyatt integer;
    att integer;
    ktype regtype;
    atype regtype;
    cname text;
BEGIN
    tbl := ruvector.collection_table(placement_spec.collection_id);
    SELECT c.name INTO cname FROM ruvector.collections c WHERE c.id = placement_spec.collection_id;
    SELECT * INTO p FROM ruvector.placements pl WHERE pl.collection_id = placement_spec.collection_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'placement not declared for %', cname
            USING ERRCODE = 'undefined_object',
                  HINT = 'collections[].placement in the config file';
    END IF;
    SELECT pt.partstrat, pt.partnatts, pt.partattrs[0] INTO strat, natts, keyatt
      FROM pg_partitioned_table pt WHERE pt.partrelid = tbl;
    IF NOT FOUND OR strat NOT IN ('l', 'r') OR natts <> 1 THEN
        RAISE EXCEPTION '% (collection %) is not partitioned BY LIST or BY RANGE on one column',
                        tbl, cname USING ERRCODE = 'wrong_object_type';
    END IF;
    SELECT a.attnum, format_type(a.atttypid, a.atttypmod) INTO att, ptype
      FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = p.placement_column AND NOT a.attisdropped;
    IF NOT FOUND OR att <> keyatt THEN
        RAISE EXCEPTION 'column % is not the partition key of % (collection %)',
                        quote_ident(p.placement_column), tbl, cname
            USING ERRCODE = 'invalid_column_reference';
    END IF;
    SELECT a.atttypid INTO ktype FROM pg_attribute a
     WHERE a.attrelid = tbl AND a.attname = p.key_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF NOT FOUND OR ktype NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
        RAISE EXCEPTION 'key column % of % must exist and be an integer (collection %)',
                        quote_ident(p.key_column), tbl, cname
            USING ERRCODE = 'invalid_column_reference';
    END IF;
    IF p.age_column IS NOT NULL THEN
        SELECT a.atttypid INTO atype FROM pg_attribute a
         WHERE a.attrelid = tbl AND a.attname = p.age_column AND a.attnum > 0
           AND NOT a.attisdropped;
        IF NOT FOUND OR atype NOT IN ('timestamptz'::regtype, 'timestamp'::regtype) THEN
            RAISE EXCEPTION 'age column % of % must exist and be a timestamp (collection %)',
                            quote_ident(p.age_column), tbl, cname
                USING ERRCODE = 'invalid_column_reference';
        END IF;
    END IF;
    pcol := p.placement_column;
    kcol := p.key_column;
    acol := p.age_column;
END
$$;

-- ----------------------------------------------------------------------------- the daemon's

-- Up to `max_rows` rows of one leaf partition: (key, placement value) only. Without
-- `older_than`, the newest keys first (rebalance, drain); with it, rows whose age column is
-- older, oldest first (evict).
CREATE FUNCTION ruvector.placement_candidates(collection_id integer, from_partition regclass,
                                              max_rows integer,
                                              older_than timestamptz DEFAULT NULL)
RETURNS TABLE (key bigint, value text)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
BEGIN
    SELECT * INTO s FROM ruvector.placement_spec(placement_candidates.collection_id);
    IF NOT ruvector.placement_leaf(s.tbl, from_partition) THEN
        RAISE EXCEPTION '% is not a partition of % (collection %)', from_partition, s.tbl,
                        placement_candidates.collection_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF max_rows IS NULL OR max_rows < 1 OR max_rows > 10000 THEN
        RAISE EXCEPTION 'max_rows must be 1..10000, not %', max_rows
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF older_than IS NULL THEN
        RETURN QUERY EXECUTE format(
            'SELECT %1$I::bigint, %2$I::text FROM ONLY %3$s ORDER BY %1$I DESC LIMIT $1',
            s.kcol, s.pcol, from_partition)
            USING max_rows;
    ELSE
        IF s.acol IS NULL THEN
            RAISE EXCEPTION 'no age column declared for collection %',
                            placement_candidates.collection_id
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RETURN QUERY EXECUTE format(
            'SELECT %1$I::bigint, %2$I::text FROM ONLY %3$s WHERE %4$I < $2 '
            'ORDER BY %4$I, %1$I LIMIT $1',
            s.kcol, s.pcol, from_partition, s.acol)
            USING max_rows, older_than;
    END IF;
END
$$;

-- Move the rows named by `keys` that are in `from_partition` and still hold `expect[i]` to
-- `new_values[i]`; every moved row must land in `to_partition`, or the whole batch is undone.
-- One transaction (the statement). Writers are kept from meeting a row mid-move: both
-- partitions are locked SHARE ROW EXCLUSIVE first (a writer's UPDATE waits before it takes its
-- snapshot, then finds the row where it now is, instead of failing with "tuple to be locked
-- was already moved to another partition"); never longer than `lock_wait`, else the batch
-- fails with lock_not_available and nothing moved. Rows another session has locked are
-- skipped (SKIP LOCKED), or, with `wait_for_rows` (moving back: nothing may be left behind),
-- waited for. Returns the keys moved. The same call with `expect` and `new_values` swapped,
-- and from and to swapped, moves them back.
CREATE FUNCTION ruvector.placement_move(collection_id integer, from_partition regclass,
                                        to_partition regclass, keys bigint[], expect text[],
                                        new_values text[], action_id bigint DEFAULT NULL,
                                        lock_wait interval DEFAULT '200 milliseconds',
                                        wait_for_rows boolean DEFAULT false)
RETURNS bigint[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    n integer := coalesce(cardinality(keys), 0);
    moved bigint[];
    landed boolean;
    prev text := current_setting('lock_timeout');
BEGIN
    SELECT * INTO s FROM ruvector.placement_spec(placement_move.collection_id);
    IF NOT ruvector.placement_leaf(s.tbl, from_partition)
       OR NOT ruvector.placement_leaf(s.tbl, to_partition) THEN
        RAISE EXCEPTION '% and % must both be partitions of % (collection %)',
                        from_partition, to_partition, s.tbl, placement_move.collection_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF from_partition = to_partition THEN
        RAISE EXCEPTION 'from and to are the same partition %', from_partition
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF n = 0 THEN
        RETURN '{}'::bigint[];
    END IF;
    IF n > 10000 OR coalesce(cardinality(expect), -1) <> n
       OR coalesce(cardinality(new_values), -1) <> n THEN
        RAISE EXCEPTION 'a batch is 1..10000 keys, each with its expected and new value'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_position(keys, NULL) IS NOT NULL OR array_position(new_values, NULL) IS NOT NULL
       OR array_position(expect, NULL) IS NOT NULL
       OR (SELECT count(DISTINCT k) FROM unnest(keys) AS k) <> n THEN
        RAISE EXCEPTION 'keys must be distinct, and no key or value NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('lock_timeout',
                       greatest(1, (extract(epoch FROM lock_wait) * 1000)::bigint) || 'ms', true);
    EXECUTE format('LOCK TABLE %s, %s IN SHARE ROW EXCLUSIVE MODE', from_partition, to_partition);
    PERFORM set_config('lock_timeout', prev, true);
    -- (no system column such as tableoid anywhere: the owner's grants are column by column,
    -- and a system column needs the whole table)
    EXECUTE format($q$
        WITH want AS (
            SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS w(k, expect, new_value)
        ),
        picked AS (
            SELECT p.%1$I AS k FROM ONLY %2$s p
              JOIN want ON want.k = p.%1$I AND p.%3$I = want.expect::%4$s
               FOR UPDATE OF p %6$s
        ),
        moved AS (
            UPDATE %5$s t SET %3$I = want.new_value::%4$s
              FROM picked JOIN want ON want.k = picked.k
             WHERE t.%1$I = picked.k AND t.%3$I = want.expect::%4$s
            RETURNING t.%1$I::bigint AS k
        )
        SELECT array_agg(k ORDER BY k) FROM moved
    $q$, s.kcol, from_partition, s.pcol, s.ptype, s.tbl,
         CASE WHEN wait_for_rows THEN '' ELSE 'SKIP LOCKED' END)
    INTO moved
    USING keys, expect, new_values;
    moved := coalesce(moved, '{}'::bigint[]);
    -- every moved row must be in `to_partition` now (a value routed elsewhere undoes it all)
    EXECUTE format('SELECT count(*) = $2 FROM ONLY %s WHERE %I = ANY ($1)', to_partition, s.kcol)
    INTO landed
    USING moved, cardinality(moved);
    IF NOT landed THEN
        RAISE EXCEPTION 'rows of % would not land in %: nothing moved', from_partition,
                        to_partition
            USING ERRCODE = 'check_violation';
    END IF;
    IF cardinality(moved) > 0 THEN
        INSERT INTO ruvector.placement_batches
               (collection_id, action_id, from_partition, to_partition, moved)
        VALUES (placement_move.collection_id, placement_move.action_id,
                from_partition::text, to_partition::text, cardinality(moved));
    END IF;
    RETURN moved;
END
$$;

-- What is wrong with a collection's placement, one line each (empty: ready). For
-- `check-config --online` and the strategies' plan; reads the catalog only.
CREATE FUNCTION ruvector.placement_problems(collection_id integer)
RETURNS SETOF text
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    leaf record;
    cols text[];
    col text;
    fix text;
    lock_priv text := CASE WHEN current_setting('server_version_num')::int >= 170000
                           THEN 'MAINTAIN' ELSE 'UPDATE' END;
BEGIN
    BEGIN
        SELECT * INTO s FROM ruvector.placement_spec(placement_problems.collection_id);
    EXCEPTION WHEN undefined_object OR wrong_object_type OR invalid_column_reference
                   OR undefined_table THEN
        RETURN NEXT SQLERRM;
        RETURN;
    END;
    cols := ARRAY[s.kcol, s.pcol] || CASE WHEN s.acol IS NULL THEN '{}'::text[]
                                         ELSE ARRAY[s.acol] END;
    fix := format('psql -v placement=%s:%s:%s%s -f deploy/sql/roles.sql', s.tbl,
                  quote_ident(s.pcol), quote_ident(s.kcol),
                  coalesce(':' || quote_ident(s.acol), ''));
    FOR leaf IN
        WITH RECURSIVE tree(relid) AS (
            SELECT s.tbl::oid
            UNION
            SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid
        )
        SELECT c.oid::regclass AS rel, c.relkind = 'r' AS is_leaf FROM tree
          JOIN pg_class c ON c.oid = tree.relid ORDER BY c.oid = s.tbl::oid DESC, c.relname
    LOOP
        FOREACH col IN ARRAY cols LOOP
            IF NOT has_column_privilege('ruvector_owner', leaf.rel, col, 'SELECT') THEN
                RETURN NEXT format('ruvector_owner may not read column %s of %s: %s',
                                   quote_ident(col), leaf.rel, fix);
            END IF;
        END LOOP;
        IF NOT has_column_privilege('ruvector_owner', leaf.rel, s.pcol, 'UPDATE') THEN
            RETURN NEXT format('ruvector_owner may not UPDATE (%s) on %s: %s',
                               quote_ident(s.pcol), leaf.rel, fix);
        END IF;
        IF leaf.is_leaf AND NOT has_table_privilege('ruvector_owner', leaf.rel, lock_priv) THEN
            RETURN NEXT format('ruvector_owner may not LOCK %s (it needs %s on it): %s',
                               leaf.rel, lock_priv, fix);
        END IF;
    END LOOP;
END
$$;

-- ----------------------------------------------------------------------------- applications

-- Where a new row for `placement` should go: one of the drain's targets (spread at random)
-- while a drain of that value is in force, else the value itself. Fails open: an unknown
-- collection, no drain, or a drain whose lease lapsed all answer `placement` unchanged, so a
-- writer never gets an error here. One index lookup.
CREATE FUNCTION public.ruvector_route(collection text, placement text)
RETURNS text
LANGUAGE sql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(
        (SELECT d.to_values[1 + floor(random() * cardinality(d.to_values))::int]
           FROM ruvector.drains d JOIN ruvector.collections c ON c.id = d.collection_id
          WHERE c.name = ruvector_route.collection AND d.from_value = ruvector_route.placement
            AND d.expires_at > statement_timestamp()),
        ruvector_route.placement)
$$;

CREATE FUNCTION public.ruvector_route(collection text, placement bigint)
RETURNS bigint
LANGUAGE sql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT public.ruvector_route(ruvector_route.collection, ruvector_route.placement::text)::bigint
$$;

-- ----------------------------------------------------------------------------- grants
GRANT EXECUTE ON FUNCTION public.ruvector_route(text, text),
                          public.ruvector_route(text, bigint) TO PUBLIC;
GRANT INSERT, UPDATE, DELETE ON ruvector.placements, ruvector.drains TO ruvector_daemon;
GRANT EXECUTE ON FUNCTION
    ruvector.placement_candidates(integer, regclass, integer, timestamptz),
    ruvector.placement_move(integer, regclass, regclass, bigint[], text[], text[], bigint,
                            interval, boolean),
    ruvector.placement_problems(integer)
    TO ruvector_daemon;
GRANT EXECUTE ON FUNCTION ruvector.placement_problems(integer) TO ruvector_reader;
