-- ruvectord schema v10: removing the throttle guard says who can.
--
-- Dropping a trigger needs the table's owner; roles.sql gives ruvector_owner TRIGGER on a
-- collection's tables, which is enough to attach the guard and not to drop it. Instead of
-- PostgreSQL's bare "must be owner of table", say whose it is and what they run.

CREATE OR REPLACE FUNCTION ruvector.remove_throttle_guard(collection_id integer)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tbl regclass := ruvector.collection_table(remove_throttle_guard.collection_id);
    owner_name name;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgrelid = tbl AND tgname = 'ruvector_throttle_guard'
                      AND NOT tgisinternal) THEN
        RETURN;
    END IF;
    SELECT pg_get_userbyid(c.relowner) INTO owner_name FROM pg_class c WHERE c.oid = tbl;
    IF NOT pg_has_role(current_user, owner_name, 'USAGE') THEN
        RAISE EXCEPTION 'the throttle guard on % can be removed only by the table''s owner, %',
                        tbl, owner_name
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('as %I: DROP TRIGGER ruvector_throttle_guard ON %s',
                                owner_name, tbl);
    END IF;
    EXECUTE format('DROP TRIGGER ruvector_throttle_guard ON %s', tbl);
END
$$;
