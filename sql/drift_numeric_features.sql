-- Numeric features compared by the drift report, one row per (day, entity, feature):
-- the per-user and per-item daily aggregates of day D and of the reference days.
-- Relations: user_stats (user_daily_stats), item_stats (item_daily_stats).
SELECT day, 'user.' || feature AS feature, value FROM (
    UNPIVOT (
        SELECT day,
               impressions::DOUBLE AS impressions, clicks::DOUBLE AS clicks, plays::DOUBLE AS plays,
               positives::DOUBLE AS positives, watch_time_sec::DOUBLE AS watch_time_sec,
               clicks / nullif(impressions, 0) AS ctr, completion_sum / nullif(watches, 0) AS mean_completion
        FROM user_stats
    ) ON COLUMNS(* EXCLUDE (day)) INTO NAME feature VALUE value
)
UNION ALL
SELECT day, 'item.' || feature, value FROM (
    UNPIVOT (
        SELECT day,
               impressions::DOUBLE AS impressions, positives::DOUBLE AS positives, users::DOUBLE AS users,
               clicks / nullif(impressions, 0) AS ctr, completion_sum / nullif(watches, 0) AS mean_completion
        FROM item_stats
    ) ON COLUMNS(* EXCLUDE (day)) INTO NAME feature VALUE value
)
