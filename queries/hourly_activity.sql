-- name: hourly_activity
-- description: Activity by hour of day (UTC) for peak and capacity analysis: totals, active days, average and peak per hour.
-- params: since:timestamp, from_day:day, to_day:day
SELECT
    extract(hour FROM hour_start) AS hour_utc,
    sum(n_events) AS events,
    count(*) AS days_active,
    round(avg(CAST(n_events AS DOUBLE)), 1) AS avg_events,
    max(n_events) AS peak_events,
    max(n_users) AS peak_users,
    sum(n_changes) AS changes,
    sum(n_errors) AS errors
FROM (
    SELECT
        date_trunc('hour', event_time) AS hour_start,
        count(*) AS n_events,
        count(DISTINCT user_name) AS n_users,
        sum(CASE WHEN read_only = false THEN 1 ELSE 0 END) AS n_changes,
        sum(CASE WHEN error_code IS NOT NULL THEN 1 ELSE 0 END) AS n_errors
    FROM iam_events
    WHERE event_time >= ?
      AND year * 10000 + month * 100 + day BETWEEN ? AND ?
    GROUP BY date_trunc('hour', event_time)
) AS hourly
GROUP BY extract(hour FROM hour_start)
ORDER BY hour_utc
LIMIT 100
