-- What the data says about each id, for the id dictionaries: the first and last day it was
-- seen (activity, or its registration / catalog day) and how many interactions it had.
-- Relations: daily (user_daily_stats or item_daily_stats with column {id}),
-- entities (raw_users / raw_items with {id} and the timestamp {since}).
SELECT id, min(first_day) AS first_seen_day, max(last_day) AS last_seen_day, sum(frequency) AS frequency
FROM (
    SELECT {id} AS id, min(day) AS first_day, max(day) AS last_day,
           sum(impressions) + sum({extra}) AS frequency
    FROM daily GROUP BY {id}
    UNION ALL
    SELECT {id}, CAST(timezone('UTC', {since}) AS DATE), NULL, 0 FROM entities
)
GROUP BY id
