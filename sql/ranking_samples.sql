-- ranking_samples, the labelled pairs of day $day: one row per impression shown that day
-- (relation interactions), grouped by request. label is graded for lambdarank:
-- 2 = became a positive (watched past the completion threshold or liked), 1 = clicked only,
-- 0 = shown but not chosen. Organic watches are not impressions and are left out here.
-- session_id, requested_at (the impression's shown_at) and price carry the request for the
-- request-time features (core/ranking/session_features.py).
SELECT
    request_id,
    user_id,
    item_id,
    position,
    surface,
    device_type,
    session_id,
    event_at AS requested_at,
    price,
    clicked,
    is_positive,
    CASE WHEN is_positive THEN 2 WHEN clicked THEN 1 ELSE 0 END AS label
FROM interactions
WHERE NOT is_organic
ORDER BY request_id, position, item_id
