-- Held-out truth of day $day for recall evaluation: each user's positive items of that day
-- (relation test_interactions), as dictionary indices.
SELECT DISTINCT u.index AS user_idx, i.index AS item_idx
FROM test_interactions AS x
JOIN user_dictionary AS u ON u.id = x.user_id
JOIN item_dictionary AS i ON i.id = x.item_id
WHERE x.is_positive
