-- Append-only id dictionary: ids already in `previous` keep their index for ever (late data
-- can move their first_seen_day earlier but never renumbers them); new ids get the next
-- indices in (first_seen_day, id) order, so a rebuild from scratch over data that arrived
-- in order gives the same mapping. `observed` comes from id_observed.sql.
WITH merged AS (
    SELECT
        coalesce(o.id, p.id) AS id,
        p.index AS old_index,
        CASE WHEN p.first_seen_day IS NULL THEN o.first_seen_day
             WHEN o.first_seen_day IS NULL THEN p.first_seen_day
             ELSE least(p.first_seen_day, o.first_seen_day) END AS first_seen_day,
        coalesce(o.last_seen_day, p.last_seen_day) AS last_seen_day,
        coalesce(o.frequency, 0) AS frequency
    FROM observed AS o FULL OUTER JOIN previous AS p ON o.id = p.id
)
SELECT
    id,
    coalesce(old_index,
             (SELECT coalesce(max(index) + 1, 0) FROM previous)
             + row_number() OVER (PARTITION BY old_index IS NULL ORDER BY first_seen_day NULLS LAST, id) - 1
    )::BIGINT AS index,
    first_seen_day, last_seen_day, frequency::BIGINT AS frequency
FROM merged
ORDER BY index
