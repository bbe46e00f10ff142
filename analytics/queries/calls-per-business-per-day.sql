-- Calls per business per day (the call's start, UTC): calls, answered calls and talk time.
-- Each call counts once however often its event was delivered (detail.eventId is stable).
WITH calls AS (
  SELECT
    detail.id AS id,
    arbitrary(detail.businessId) AS business_id,
    arbitrary(detail.startAt) AS start_at,
    arbitrary(detail.answered) AS answered,
    arbitrary(detail.duration) AS duration
  FROM events
  WHERE detail_type = 'CallRecorded'
  GROUP BY detail.id
)
SELECT
  coalesce(business_id, '') AS business_id,
  date_format(from_unixtime(start_at), '%Y-%m-%d') AS call_day,
  count(*) AS calls,
  count_if(answered) AS answered,
  coalesce(sum(CASE WHEN answered THEN duration END), 0) AS talk_seconds
FROM calls
WHERE start_at IS NOT NULL
GROUP BY 1, 2
ORDER BY 1, 2
