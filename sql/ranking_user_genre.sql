-- Each user's history per genre before $day, for the user x item cross features:
-- positives and clicks in the 28 days before $day (relation genre_window = user_genre_daily
-- partitions), and the genre's share of the user's affinity from user_features of $day.
WITH counts AS (
    SELECT user_id, genre, sum(positives)::DOUBLE AS positives, sum(clicks)::DOUBLE AS clicks
    FROM genre_window
    -- shows-only rows would add all-zero (user, genre) rows, which the cross features
    -- treat exactly like absent ones; dropping them keeps the context a fraction of the size
    WHERE day < $day::DATE AND day >= $day::DATE - 28 AND (positives > 0 OR clicks > 0)
    GROUP BY ALL
),
shares AS (
    SELECT user_id, a.genre AS genre, a.share AS share
    FROM (SELECT user_id, unnest(genre_affinity) AS a FROM user_features)
)
SELECT user_id, genre, coalesce(c.positives, 0) AS positives, coalesce(c.clicks, 0) AS clicks,
       coalesce(s.share, 0) AS share
FROM counts AS c FULL OUTER JOIN shares AS s USING (user_id, genre)
ORDER BY user_id, genre
