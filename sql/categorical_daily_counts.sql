-- categorical_daily_counts: how often each value of each categorical field occurred on
-- $day, as (field, value, count). Feeds the hash dictionaries (surface, device_type) and the
-- categorical drift report (all fields). genre_shown / genre_positive count each genre of
-- the item once per impression / positive; country and ui_language are the users' values
-- weighted by their impressions.
WITH x AS (
    SELECT i.*, u.country, u.ui_language
    FROM interactions AS i LEFT JOIN users AS u USING (user_id)
),
g AS (
    SELECT x.is_organic, x.is_positive, unnest(it.genres) AS genre
    FROM x JOIN items AS it USING (item_id)
)
SELECT $day::DATE AS day, field, value, count(*) AS count
FROM (
    SELECT 'surface' AS field, surface AS value FROM x WHERE NOT is_organic
    UNION ALL SELECT 'device_type', device_type FROM x WHERE NOT is_organic
    UNION ALL SELECT 'country', country FROM x WHERE NOT is_organic
    UNION ALL SELECT 'ui_language', ui_language FROM x WHERE NOT is_organic
    UNION ALL SELECT 'genre_shown', genre FROM g WHERE NOT is_organic
    UNION ALL SELECT 'genre_positive', genre FROM g WHERE is_positive
)
WHERE value IS NOT NULL
GROUP BY ALL
ORDER BY field, value
