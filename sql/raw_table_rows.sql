-- Cross-record rules shared by every raw table (raw_items, raw_users, raw_impressions,
-- raw_events, raw_watch_stats). Input `validated`: one row per landing line with the
-- contract's typed columns and `row_reason` (the per-line contract violations, or NULL).
-- Output: the same rows with the final `reason`; NULL means the row is loaded.
--   * duplicate id inside the partition: the first line wins, later copies are quarantined
--   * user_id / item_id must exist in the raw_users / raw_items snapshots
WITH ranked AS (
    SELECT
        *,
        CASE WHEN row_reason IS NULL
             THEN row_number() OVER (PARTITION BY row_reason IS NULL, {id_field} ORDER BY line_no)
        END AS id_rank
    FROM validated
)
SELECT
    ranked.*,
    coalesce(
        row_reason,
        CASE WHEN id_rank > 1 THEN 'duplicate_id' END
        {reference_reasons}
    ) AS reason
FROM ranked
{reference_joins}
