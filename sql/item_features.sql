-- item_features for day $day, point in time: every catalog item available before $day
-- (added_at before the start of $day, or unknown), with windowed stats from the
-- item_daily_stats of the 28 days before $day (relation stats_window). Cold items get zeros.
WITH s AS (
    SELECT * FROM stats_window WHERE day < $day::DATE AND day >= $day::DATE - 28
),
agg AS (
    SELECT
        item_id,
        coalesce(sum(impressions) FILTER (WHERE day >= $day::DATE - 1), 0) AS impressions_1d,
        coalesce(sum(impressions) FILTER (WHERE day >= $day::DATE - 7), 0) AS impressions_7d,
        sum(impressions) AS impressions_28d,
        coalesce(sum(clicks) FILTER (WHERE day >= $day::DATE - 7), 0) AS clicks_7d,
        sum(clicks) AS clicks_28d,
        coalesce(sum(plays) FILTER (WHERE day >= $day::DATE - 7), 0) AS plays_7d,
        coalesce(sum(positives) FILTER (WHERE day >= $day::DATE - 1), 0) AS positives_1d,
        coalesce(sum(positives) FILTER (WHERE day >= $day::DATE - 7), 0) AS positives_7d,
        sum(positives) AS positives_28d,
        coalesce(sum(users) FILTER (WHERE day >= $day::DATE - 7), 0) AS user_days_7d,
        (sum(completion_sum) / nullif(sum(watches), 0))::DOUBLE AS mean_completion_28d,
        max(day) AS source_max_day
    FROM s
    GROUP BY item_id
)
SELECT
    $day::DATE AS day,
    i.item_id,
    coalesce(impressions_1d, 0) AS impressions_1d,
    coalesce(impressions_7d, 0) AS impressions_7d,
    coalesce(impressions_28d, 0) AS impressions_28d,
    coalesce(clicks_7d, 0) AS clicks_7d,
    coalesce(clicks_28d, 0) AS clicks_28d,
    (coalesce(clicks_7d, 0) + $prior_clicks) / (coalesce(impressions_7d, 0) + $prior_impressions) AS ctr_smoothed_7d,
    (coalesce(clicks_28d, 0) + $prior_clicks) / (coalesce(impressions_28d, 0) + $prior_impressions) AS ctr_smoothed_28d,
    coalesce(plays_7d, 0) AS plays_7d,
    coalesce(positives_1d, 0) AS positives_1d,
    coalesce(positives_7d, 0) AS positives_7d,
    coalesce(positives_28d, 0) AS positives_28d,
    coalesce(user_days_7d, 0) AS user_days_7d,
    mean_completion_28d,
    row_number() OVER (ORDER BY coalesce(positives_7d, 0) DESC, coalesce(impressions_7d, 0) DESC, i.item_id) AS popularity_rank_7d,
    $day::DATE - CAST(timezone('UTC', i.added_at) AS DATE) AS age_days,
    coalesce(i.genres, []) AS genres,
    coalesce(i.tags, []) AS tags,
    i.release_year,
    i.duration_sec,
    source_max_day
FROM items AS i
LEFT JOIN agg USING (item_id)
WHERE i.added_at IS NULL OR i.added_at < $day::DATE::TIMESTAMPTZ
ORDER BY i.item_id
