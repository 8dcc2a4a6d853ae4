-- Cross-record rules shared by every raw table (raw_items, raw_users, raw_impressions,
-- raw_events, raw_watch_stats). Input `validated`: one row per landing line with the
-- contract's typed columns and `row_reason` (the per-line contract violations, or NULL).
-- Output: only the rows that pass every per-line rule but break a cross-record rule,
-- with that reason (ingestion merges them back by line_no; every other row keeps
-- row_reason). One reason per row, in this order of precedence:
--   * duplicate id inside the partition: the first line wins, later copies are quarantined
--   * user_id / item_id must exist in the raw_users / raw_items snapshots
WITH valid AS (
    SELECT line_no, {id_field} AS id {reference_columns}
    FROM validated
    WHERE row_reason IS NULL
), repeated AS (
    SELECT id, min(line_no) AS first_line
    FROM valid
    GROUP BY id
    HAVING count(*) > 1
), reasoned AS (
    SELECT
        valid.line_no,
        coalesce(
            CASE WHEN repeated.first_line < valid.line_no THEN 'duplicate_id' END
            {reference_reasons}
        ) AS reason
    FROM valid
    LEFT JOIN repeated USING (id)
    {reference_joins}
)
SELECT line_no, reason FROM reasoned WHERE reason IS NOT NULL ORDER BY line_no
