-- user_daily_stats: one row per user active on $day (an impression or an organic watch).
-- The additive building block of user_features: windows sum these rows. The history partition
-- of a long source ($history_partition) holds years: one row per user and day of the event, so
-- the feature windows of the days after it count only what happened in them.
SELECT
    CASE WHEN $history_partition THEN CAST(timezone('UTC', event_at) AS DATE) ELSE $day::DATE END AS day,
    user_id,
    count(*) FILTER (WHERE NOT is_organic) AS impressions,
    count(*) FILTER (WHERE clicked) AS clicks,
    count(*) FILTER (WHERE played) AS plays,
    count(*) FILTER (WHERE liked) AS likes,
    count(*) FILTER (WHERE is_positive) AS positives,
    count(*) FILTER (WHERE is_organic) AS organic_watches,
    sum(watch_time_sec::DECIMAL(18, 3)) AS watch_time_sec,  -- DECIMAL: exact, so re-runs are byte-identical
    count(completion) AS watches,
    coalesce(sum(completion::DECIMAL(18, 6)), 0) AS completion_sum,
    max(event_at) AS last_event_at
FROM interactions
GROUP BY ALL
ORDER BY day, user_id
