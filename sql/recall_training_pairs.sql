-- The (user, item) pairs a recall model of day $day learns from: every interaction of the
-- training window (relation train_interactions: days $day-window .. $day-1), mapped to the
-- dictionaries' indices. signal = completion (1 for a positive without a watch, e.g. a like)
-- for positives, $click_weight for clicks that did not become positives, 0 otherwise;
-- shown_not_chosen counts impressions with neither a click nor a positive; days_ago /
-- seconds_ago date the latest positive or click before the start of $day, by its own time:
-- a history partition holds months under one partition day, so x.day would make every one of
-- them as old as the last (x.day only stands in for a row without a time).
SELECT
    u.index AS user_idx,
    i.index AS item_idx,
    max(CASE WHEN x.is_positive THEN coalesce(x.completion, 1.0)
             WHEN x.clicked THEN $click_weight ELSE 0 END)::FLOAT AS signal,
    count(*) FILTER (WHERE NOT x.is_organic AND NOT x.clicked AND NOT x.is_positive)::FLOAT AS shown_not_chosen,
    ($day::DATE - 1 - coalesce(
        CAST(timezone('UTC', max(x.event_at) FILTER (WHERE x.is_positive OR x.clicked)) AS DATE),
        max(x.day) FILTER (WHERE x.is_positive OR x.clicked)))::FLOAT AS days_ago,
    epoch($day::DATE::TIMESTAMPTZ) - epoch(max(x.event_at) FILTER (WHERE x.is_positive OR x.clicked)) AS seconds_ago
FROM train_interactions AS x
JOIN user_dictionary AS u ON u.id = x.user_id
JOIN item_dictionary AS i ON i.id = x.item_id
GROUP BY ALL
