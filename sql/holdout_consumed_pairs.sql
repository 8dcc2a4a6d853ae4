-- What each user had already consumed before the held-out period (relation
-- history_interactions: every partition before it): items with a positive, a click or a play,
-- as dictionary indices. holdout_evaluation never recommends them and never counts them as hits.
SELECT DISTINCT u.index AS user_idx, i.index AS item_idx
FROM history_interactions AS x
JOIN user_dictionary AS u ON u.id = x.user_id
JOIN item_dictionary AS i ON i.id = x.item_id
WHERE x.is_positive OR x.clicked OR x.played
