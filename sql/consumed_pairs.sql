-- The (user, item) pairs a user already consumed before day $day: every interaction of
-- relation history_interactions (every interactions partition before $day, whatever its age)
-- that is a consumption: a watch or a play (played: a play_start event or a watch_stats row,
-- organic or after an impression, any completion), a rating of any value, or a positive (e.g.
-- a like). An impression alone, a click without a play, or a dislike alone is not one.
-- Dictionary indices; recall, the re-rank and the evaluation never propose these again.
SELECT DISTINCT u.index::INTEGER AS user_idx, i.index::INTEGER AS item_idx
FROM history_interactions AS x
JOIN user_dictionary AS u ON u.id = x.user_id
JOIN item_dictionary AS i ON i.id = x.item_id
WHERE x.played OR x.rating IS NOT NULL OR x.is_positive
