-- user_sequences for day $day: each user's last $max_length positive items before $day,
-- oldest first, from the interactions of the 28 days before $day (relation
-- positives_window). A user with no positive in that window has no row.
WITH ranked AS (
    SELECT user_id, item_id, event_at, day,
           row_number() OVER (PARTITION BY user_id ORDER BY event_at DESC, item_id DESC) AS recency
    FROM positives_window
    WHERE is_positive AND day < $day::DATE AND day >= $day::DATE - 28
)
SELECT
    $day::DATE AS day,
    user_id,
    list(item_id ORDER BY event_at, item_id) AS item_ids,
    list(event_at ORDER BY event_at, item_id) AS event_ats,
    count(*) AS length,
    max(event_at) AS last_positive_at,
    max(day) AS source_max_day
FROM ranked
WHERE recency <= $max_length
GROUP BY user_id
ORDER BY user_id
