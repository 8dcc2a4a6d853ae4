-- user_genre_daily: per user and genre of the item, what the user was shown, clicked and
-- liked on $day (items with several genres count once per genre). Feeds genre affinity.
-- The history partition ($history_partition): by day of the event.
SELECT
    CASE WHEN $history_partition THEN CAST(timezone('UTC', x.event_at) AS DATE) ELSE $day::DATE END AS day,
    x.user_id,
    g.genre,
    count(*) FILTER (WHERE NOT x.is_organic) AS impressions,
    count(*) FILTER (WHERE x.clicked) AS clicks,
    count(*) FILTER (WHERE x.is_positive) AS positives
FROM interactions AS x
JOIN (SELECT item_id, unnest(genres) AS genre FROM items) AS g USING (item_id)
GROUP BY ALL
ORDER BY day, user_id, genre
