-- user_features for day $day, point in time: built only from user_daily_stats and
-- user_genre_daily of the 28 days before $day (relations stats_window and genre_window),
-- never from $day itself. One row per user active in the window.
-- Smoothed CTR = (clicks + $prior_clicks) / (impressions + $prior_impressions).
WITH s AS (
    SELECT * FROM stats_window WHERE day < $day::DATE AND day >= $day::DATE - 28
),
agg AS (
    SELECT
        user_id,
        coalesce(sum(impressions) FILTER (WHERE day >= $day::DATE - 1), 0) AS impressions_1d,
        coalesce(sum(impressions) FILTER (WHERE day >= $day::DATE - 7), 0) AS impressions_7d,
        sum(impressions) AS impressions_28d,
        coalesce(sum(clicks) FILTER (WHERE day >= $day::DATE - 1), 0) AS clicks_1d,
        coalesce(sum(clicks) FILTER (WHERE day >= $day::DATE - 7), 0) AS clicks_7d,
        sum(clicks) AS clicks_28d,
        coalesce(sum(plays) FILTER (WHERE day >= $day::DATE - 1), 0) AS plays_1d,
        coalesce(sum(plays) FILTER (WHERE day >= $day::DATE - 7), 0) AS plays_7d,
        sum(plays) AS plays_28d,
        coalesce(sum(positives) FILTER (WHERE day >= $day::DATE - 1), 0) AS positives_1d,
        coalesce(sum(positives) FILTER (WHERE day >= $day::DATE - 7), 0) AS positives_7d,
        sum(positives) AS positives_28d,
        coalesce(sum(watch_time_sec) FILTER (WHERE day >= $day::DATE - 7), 0)::DOUBLE AS watch_time_sec_7d,
        sum(watch_time_sec)::DOUBLE AS watch_time_sec_28d,
        (sum(completion_sum) FILTER (WHERE day >= $day::DATE - 7)
            / nullif(sum(watches) FILTER (WHERE day >= $day::DATE - 7), 0))::DOUBLE AS mean_completion_7d,
        (sum(completion_sum) / nullif(sum(watches), 0))::DOUBLE AS mean_completion_28d,
        count(*) AS active_days_28d,
        max(day) AS source_max_day,
        max(last_event_at) AS last_event_at
    FROM s
    GROUP BY user_id
),
genre_scores AS (
    SELECT user_id, genre, sum(positives) + 0.5 * sum(clicks) AS score
    FROM genre_window
    -- rows without a click or a positive add 0 to every score: dropping them first makes
    -- the 28-day group-by several times smaller (most user x genre x day rows are shows only)
    WHERE day < $day::DATE AND day >= $day::DATE - 28 AND (positives > 0 OR clicks > 0)
    GROUP BY ALL
    HAVING score > 0
),
affinity AS (
    SELECT user_id,
           first(genre ORDER BY score DESC, genre) AS top_genre,
           list(struct_pack(genre := genre, share := score / total) ORDER BY score DESC, genre) AS genre_affinity
    FROM (SELECT *, sum(score) OVER (PARTITION BY user_id) AS total FROM genre_scores)
    GROUP BY user_id
)
SELECT
    $day::DATE AS day,
    user_id,
    impressions_1d, impressions_7d, impressions_28d,
    clicks_1d, clicks_7d, clicks_28d,
    (clicks_1d + $prior_clicks) / (impressions_1d + $prior_impressions) AS ctr_smoothed_1d,
    (clicks_7d + $prior_clicks) / (impressions_7d + $prior_impressions) AS ctr_smoothed_7d,
    (clicks_28d + $prior_clicks) / (impressions_28d + $prior_impressions) AS ctr_smoothed_28d,
    plays_1d, plays_7d, plays_28d,
    positives_1d, positives_7d, positives_28d,
    watch_time_sec_7d, watch_time_sec_28d,
    mean_completion_7d, mean_completion_28d,
    active_days_28d,
    $day::DATE - source_max_day AS days_since_active,
    last_event_at,
    top_genre,
    coalesce(genre_affinity, []) AS genre_affinity,
    source_max_day
FROM agg
LEFT JOIN affinity USING (user_id)
ORDER BY user_id
