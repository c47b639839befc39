-- ruvectord schema v5: IVFFlat list sizes from the index pages, without reading a vector.
--
-- pgvector keeps no list sizes in the statistics views; its pages hold them (the layout is in
-- ruvectord/postgres/ivf.py). Reading pages needs pg_read_binary_file, which reads any file of
-- the data directory, so the daemon's role never gets it. Instead ivf_list_sizes, owned by
-- ruvector_owner, reads one thing -- the page headers and chain links of an IVFFlat index of
-- a configured collection -- and returns only the meta page's header and a count per list.
-- It works once an administrator lets ruvector_owner execute pg_read_binary_file
-- (deploy/sql/roles.sql -v ivf_pages=on); until then the sampler uses centroid_stats.
-- The helpers below are the owner's alone (0004's default privileges keep them from PUBLIC).

CREATE FUNCTION ruvector.le_u16(b bytea, o bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT
AS $$ SELECT (get_byte(b, o::int) | (get_byte(b, o::int + 1) << 8))::bigint $$;

CREATE FUNCTION ruvector.le_u32(b bytea, o bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT
AS $$
    SELECT get_byte(b, o::int)::bigint | (get_byte(b, o::int + 1)::bigint << 8)
         | (get_byte(b, o::int + 2)::bigint << 16) | (get_byte(b, o::int + 3)::bigint << 24)
$$;

-- `len` bytes at `off` of block `blk` of the relation file at `path` (segments of `seg`
-- blocks of `bs` bytes); empty when the block is not on disk yet
CREATE FUNCTION ruvector.relation_block(path text, bs bigint, seg bigint, blk bigint,
                                        off bigint, len bigint)
RETURNS bytea
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_read_binary_file(path || CASE WHEN blk >= seg THEN '.' || (blk / seg)::text
                                            ELSE '' END,
                               (blk % seg) * bs + off, len, true)
$$;

CREATE FUNCTION ruvector.ivf_pages_raw(index_oid bigint, max_pages integer)
RETURNS TABLE (meta bytea, lists bigint, walked bigint, deepest integer, bad_pages bigint,
               counts bigint[])
LANGUAGE sql STABLE
SET search_path = pg_catalog, ruvector, pg_temp
AS $ivf$
    WITH RECURSIVE
    rel AS (
        SELECT pg_relation_filepath(index_oid::oid::regclass) AS path,
               current_setting('block_size')::bigint AS bs,
               pg_size_bytes(current_setting('segment_size'))
                   / current_setting('block_size')::bigint AS seg
    ),
    -- the chain of list pages from block 1, linked by the next block in their special space
    list_pages(n, page) AS (
        SELECT 1, relation_block(r.path, r.bs, r.seg, 1, 0, r.bs) FROM rel r
        UNION ALL
        SELECT lp.n + 1, relation_block(r.path, r.bs, r.seg, le_u32(lp.page, r.bs::int - 8),
                                        0, r.bs)
          FROM list_pages lp, rel r
         WHERE length(lp.page) = r.bs AND le_u32(lp.page, r.bs::int - 8) <> 4294967295
           AND lp.n < 4096
    ),
    -- one line pointer per list on those pages (pd_lower says how many)
    items AS (
        SELECT lp.n, i, lp.page, le_u32(lp.page, 24 + 4 * i) AS word
          FROM list_pages lp, rel r,
               LATERAL generate_series(0, (le_u16(lp.page, 12) - 24) / 4 - 1) AS i
         WHERE length(lp.page) = r.bs
    ),
    -- each list's first entry page: the first field of its item
    lists AS (
        SELECT (row_number() OVER (ORDER BY n, i) - 1)::int AS list,
               le_u32(page, (word & 32767)::int) AS start_page
          FROM items
         WHERE (word >> 15) & 3 = 1  -- LP_NORMAL
    ),
    -- every list's chain of entry pages, by the links in their special space
    walk(list, blk, depth) AS (
        SELECT l.list, l.start_page, 1 FROM lists l WHERE l.start_page <> 4294967295
        UNION ALL
        SELECT w.list, nx.blk, w.depth + 1
          FROM walk w, rel r,
               LATERAL (SELECT relation_block(r.path, r.bs, r.seg, w.blk, r.bs - 8, 4) AS s) sp,
               LATERAL (SELECT CASE WHEN length(sp.s) = 4 THEN le_u32(sp.s, 0) END AS blk) nx
         WHERE nx.blk IS NOT NULL AND nx.blk <> 4294967295 AND w.depth < max_pages
    ),
    -- of each entry page only its pd_lower (how many entries) and its page id
    pages AS (
        SELECT w.list, w.depth,
               relation_block(r.path, r.bs, r.seg, w.blk, 12, 2) AS lower,
               relation_block(r.path, r.bs, r.seg, w.blk, r.bs - 2, 2) AS page_id
          FROM walk w, rel r
    ),
    per_list AS (
        SELECT l.list,
               coalesce(sum((le_u16(p.lower, 0) - 24) / 4)
                        FILTER (WHERE length(p.lower) = 2), 0)::bigint AS entries
          FROM lists l LEFT JOIN pages p ON p.list = l.list
         GROUP BY l.list
    )
    SELECT (SELECT relation_block(r.path, r.bs, r.seg, 0, 0, 40) FROM rel r),
           (SELECT count(*) FROM lists),
           (SELECT count(*) FROM pages),
           (SELECT coalesce(max(depth), 0) FROM pages),
           (SELECT count(*) FROM pages
             WHERE coalesce(length(lower), 0) < 2 OR coalesce(length(page_id), 0) < 2
                OR le_u16(page_id, 0) <> 65412),  -- IVFFLAT_PAGE_ID 0xFF84
           coalesce((SELECT array_agg(entries ORDER BY list) FROM per_list), '{}')
$ivf$;

CREATE FUNCTION ruvector.ivf_list_sizes(index_oid bigint, max_pages integer)
RETURNS TABLE (meta bytea, lists bigint, walked bigint, deepest integer, bad_pages bigint,
               counts bigint[])
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- only an IVFFlat index on a configured collection's table or one of its partitions
    -- (partitions found through pg_inherits: it takes no lock, unlike pg_partition_tree)
    IF NOT EXISTS (
        WITH RECURSIVE tree(relid) AS (
            SELECT to_regclass(format('%I.%I', c.table_schema, c.table_name))::oid
              FROM ruvector.collections c
            UNION
            SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.relid
        )
        SELECT 1 FROM pg_index x
          JOIN pg_class ic ON ic.oid = x.indexrelid
          JOIN pg_am am ON am.oid = ic.relam
         WHERE x.indexrelid = ivf_list_sizes.index_oid::oid AND am.amname = 'ivfflat'
           AND x.indrelid IN (SELECT relid FROM tree)
    ) THEN
        RAISE EXCEPTION 'relation % is not an IVFFlat index of a configured collection',
                        index_oid
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN QUERY SELECT * FROM ruvector.ivf_pages_raw(index_oid, max_pages);
END
$$;

GRANT EXECUTE ON FUNCTION ruvector.ivf_list_sizes(bigint, integer) TO ruvector_daemon;
