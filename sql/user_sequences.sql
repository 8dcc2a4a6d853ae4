-- user_sequences for day $day: each user's last $max_length positive items before $day,
-- oldest first, from the positives of the 28 days before $day by their own time (relation
-- positives_window). A user with no positive in that window has no row. By event time, not by
-- partition: a history partition holds years under one partition day, and its day would put
-- all of them in the window of the 28 days after it.
WITH ranked AS (
    SELECT user_id, item_id, event_at, day,
           row_number() OVER (PARTITION BY user_id ORDER BY event_at DESC, item_id DESC) AS recency
    FROM positives_window
    WHERE is_positive AND day < $day::DATE
      AND coalesce(CAST(timezone('UTC', event_at) AS DATE), day) >= $day::DATE - 28
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
