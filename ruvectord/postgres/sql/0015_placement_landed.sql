-- ruvectord schema v15: placement_move's check that every moved row landed where it was sent
-- compares the key *and the new value*. v8-v14 counted the target's rows by key alone, and a
-- key is unique per partition only (a partitioned table's primary key must include the
-- partition key): a row already in the target with a moved row's key passed for one that was
-- routed to a third partition. Same signature, same grants; otherwise v14's function.
CREATE OR REPLACE FUNCTION ruvector.placement_move(collection_id integer, from_partition regclass,
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
    deadline timestamptz;
    first regclass := from_partition;
    second regclass := to_partition;
    swap regclass;
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
    -- Never wait for one partition while holding the other: a writer holding the second and
    -- waiting for the first would close a deadlock, and its victim may be the writer (whose
    -- deadlock_timeout runs out first). Wait in the queue for one (holding neither), take the
    -- other only if free at once, else let go of both and try again, the other way round.
    -- a NULL or non-positive wait is one try (as v8's 1 ms lock_timeout was), never forever
    deadline := clock_timestamp() + greatest(coalesce(lock_wait, interval '0'),
                                             interval '1 millisecond');
    LOOP
        BEGIN
            PERFORM set_config('lock_timeout', greatest(1, least(
                (extract(epoch FROM deadline - clock_timestamp()) * 1000)::bigint,
                200)) || 'ms', true);
            EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', first);
            EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE NOWAIT', second);
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            IF clock_timestamp() >= deadline THEN
                RAISE EXCEPTION 'could not lock partitions % and % within %',
                                from_partition, to_partition, lock_wait
                    USING ERRCODE = 'lock_not_available';
            END IF;
            swap := first; first := second; second := swap;
        END;
    END LOOP;
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
    -- every moved row must be in `to_partition` now, with the value it was given (a value
    -- routed elsewhere undoes it all). Its key alone would not say so: keys are unique per
    -- partition only, and another row of `to_partition` may have it. With the new value it
    -- does: no row routed elsewhere can hold a value that fits `to_partition`.
    EXECUTE format($q$
        SELECT count(DISTINCT t.%2$I) = cardinality($1) FROM ONLY %1$s t
          JOIN unnest($2::bigint[], $3::text[]) AS w(k, v) ON t.%2$I = w.k
         WHERE w.k = ANY ($1) AND t.%3$I = w.v::%4$s
    $q$, to_partition, s.kcol, s.pcol, s.ptype)
    INTO landed
    USING moved, keys, new_values;
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
