-- Traffic-level drift of day $day, point in time: the share of the day's impressions on
-- users and items absent from the previous 28 days (not yet in the dictionaries' view of
-- the past) and on items added to the catalog in the last 7 days.
-- Relations: interactions (day D), user_history / item_history (daily stats of D-28..D-1; a
-- history partition among them holds years, by day of the event, hence the filter), items.
WITH shown AS (SELECT user_id, item_id FROM interactions WHERE NOT is_organic)
SELECT
    count(*) AS impressions,
    coalesce(avg(CASE WHEN user_id NOT IN (SELECT user_id FROM user_history WHERE day >= $day::DATE - 28) THEN 1.0 ELSE 0.0 END), 0) AS unseen_user_share,
    coalesce(avg(CASE WHEN item_id NOT IN (SELECT item_id FROM item_history WHERE day >= $day::DATE - 28) THEN 1.0 ELSE 0.0 END), 0) AS unseen_item_share,
    coalesce(avg(CASE WHEN item_id IN (SELECT item_id FROM items
                                       WHERE added_at >= ($day::DATE - 6)::TIMESTAMPTZ) THEN 1.0 ELSE 0.0 END), 0) AS new_item_share
FROM shown
