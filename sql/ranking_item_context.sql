-- What the ranker knows about each catalog item at the start of $day: the point-in-time
-- item_features of $day and the item's static attributes (relation items = raw_items
-- snapshot). item_genre is the first listed genre (the hashed categorical feature);
-- available = the item is in item_features of $day, i.e. in the catalog before $day.
SELECT
    i.item_id,
    f.impressions_1d, f.impressions_7d, f.impressions_28d, f.clicks_7d, f.clicks_28d,
    f.ctr_smoothed_7d, f.ctr_smoothed_28d, f.plays_7d, f.positives_1d, f.positives_7d,
    f.positives_28d, f.popularity_rank_7d, f.age_days,
    i.release_year,
    i.duration_sec,
    coalesce(i.genres, []) AS genres,
    i.genres[1] AS item_genre,
    f.item_id IS NOT NULL AS available
FROM items AS i
LEFT JOIN item_features AS f USING (item_id)
ORDER BY i.item_id
