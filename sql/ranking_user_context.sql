-- What the ranker knows about each user at the start of $day: the point-in-time
-- user_features of $day (built from the days before it) and the user's static attributes
-- (relation users = raw_users snapshot). Users without features get NULLs, not an error.
SELECT
    u.user_id,
    f.impressions_7d, f.impressions_28d, f.clicks_7d, f.clicks_28d,
    f.ctr_smoothed_7d, f.ctr_smoothed_28d, f.plays_7d, f.positives_7d, f.positives_28d,
    f.watch_time_sec_28d, f.mean_completion_28d, f.active_days_28d, f.days_since_active,
    f.top_genre,
    u.country,
    u.ui_language
FROM users AS u
LEFT JOIN user_features AS f USING (user_id)
ORDER BY u.user_id
