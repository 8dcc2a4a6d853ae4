-- Occurrences of every categorical value the hash dictionaries encode, as (field, value, count):
-- user attributes from the raw_users snapshot (one per user), item genres and tags from the
-- raw_items snapshot (one per item), surface and device_type from categorical_daily_counts
-- (every materialized day). Relations: users, items, daily_counts.
SELECT field, value, sum(n)::BIGINT AS count
FROM (
    SELECT 'country' AS field, country AS value, 1 AS n FROM users
    UNION ALL SELECT 'ui_language', ui_language, 1 FROM users
    UNION ALL SELECT 'genres', unnest(genres), 1 FROM items
    UNION ALL SELECT 'tags', unnest(tags), 1 FROM items
    UNION ALL SELECT field, value, count FROM daily_counts WHERE field IN ('surface', 'device_type')
)
WHERE value IS NOT NULL AND value <> ''
GROUP BY ALL
ORDER BY field, value
