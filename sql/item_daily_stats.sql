-- item_daily_stats: one row per item shown or watched on $day; windows of item_features sum these.
-- The history partition ($history_partition): one row per item and day of the event.
SELECT
    CASE WHEN $history_partition THEN CAST(timezone('UTC', event_at) AS DATE) ELSE $day::DATE END AS day,
    item_id,
    count(*) FILTER (WHERE NOT is_organic) AS impressions,
    count(*) FILTER (WHERE clicked) AS clicks,
    count(*) FILTER (WHERE played) AS plays,
    count(*) FILTER (WHERE liked) AS likes,
    count(*) FILTER (WHERE is_positive) AS positives,
    count(DISTINCT user_id) AS users,
    sum(watch_time_sec::DECIMAL(18, 3)) AS watch_time_sec,  -- DECIMAL: exact, so re-runs are byte-identical
    count(completion) AS watches,
    coalesce(sum(completion::DECIMAL(18, 6)), 0) AS completion_sum
FROM interactions
GROUP BY ALL
ORDER BY day, item_id
