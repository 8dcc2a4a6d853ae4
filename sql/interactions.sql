-- interactions: one row per impression of day $day, labelled with what followed it that day
-- (events and watches matched on request_id + user_id + item_id), plus one row per organic
-- watch (no matching impression), which counts as a positive signal with is_organic = true.
-- Inputs: impressions, events, watches (raw partitions of $day).
-- Params: $day, $min_pos_completion (a watch this complete is positive), $like_is_positive.
WITH shown_events AS (
    SELECT request_id, user_id, item_id,
           bool_or(type = 'click') AS clicked,
           bool_or(type = 'play_start') AS play_started,
           bool_or(type = 'like') AS liked,
           bool_or(type = 'dislike') AS disliked,
           max(value) FILTER (WHERE type = 'rate') AS rating
    FROM events
    GROUP BY ALL
),
watched AS (
    SELECT request_id, user_id, item_id,
           count(*) AS watches,
           min(started_at) AS started_at,
           sum(watch_time_sec::DECIMAL(18, 3))::DOUBLE AS watch_time_sec,  -- exact: parallel float sums vary by order
           max(completion) AS completion,
           min(session_id) AS session_id
    FROM watches
    GROUP BY ALL
),
shown AS (
    SELECT
        i.impression_id, i.request_id, i.user_id, i.item_id, i.surface, i.position, i.device_type,
        i.session_id, i.price,
        i.shown_at AS event_at,
        coalesce(e.clicked, false) AS clicked,
        coalesce(e.play_started, false) OR w.watches IS NOT NULL AS played,
        coalesce(e.liked, false) AS liked,
        coalesce(e.disliked, false) AS disliked,
        e.rating,
        coalesce(w.watch_time_sec, 0) AS watch_time_sec,
        w.completion,
        false AS is_organic
    FROM impressions AS i
    LEFT JOIN shown_events AS e USING (request_id, user_id, item_id)
    LEFT JOIN watched AS w USING (request_id, user_id, item_id)
),
organic AS (
    SELECT
        NULL::BIGINT AS impression_id, w.request_id, w.user_id, w.item_id, NULL::VARCHAR AS surface,
        NULL::BIGINT AS position, NULL::VARCHAR AS device_type,
        w.session_id, NULL::DOUBLE AS price, w.started_at AS event_at,
        false AS clicked, true AS played,
        coalesce(e.liked, false) AS liked, coalesce(e.disliked, false) AS disliked, e.rating,
        w.watch_time_sec, w.completion, true AS is_organic
    FROM watched AS w
    LEFT JOIN shown_events AS e
           ON e.user_id = w.user_id AND e.item_id = w.item_id AND e.request_id IS NOT DISTINCT FROM w.request_id
    WHERE NOT EXISTS (SELECT 1 FROM impressions AS i
                      WHERE i.request_id = w.request_id AND i.user_id = w.user_id AND i.item_id = w.item_id)
)
SELECT
    $day::DATE AS day, *,
    coalesce(completion >= $min_pos_completion, false) OR ($like_is_positive AND liked) AS is_positive
FROM (SELECT * FROM shown UNION ALL SELECT * FROM organic)
ORDER BY is_organic, event_at, impression_id, user_id, item_id
