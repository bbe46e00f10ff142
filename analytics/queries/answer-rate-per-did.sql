-- Answer rate and average talk time (answered calls) per masked number (DID).
WITH calls AS (
  SELECT
    detail.id AS id,
    arbitrary(detail.did) AS did,
    arbitrary(detail.answered) AS answered,
    arbitrary(detail.duration) AS duration
  FROM events
  WHERE detail_type = 'CallRecorded'
  GROUP BY detail.id
)
SELECT
  coalesce(did, '') AS did,
  count(*) AS calls,
  count_if(answered) AS answered,
  round(CAST(count_if(answered) AS DOUBLE) / count(*), 4) AS answer_rate,
  round(avg(CASE WHEN answered THEN duration END), 1) AS avg_talk_seconds
FROM calls
GROUP BY 1
ORDER BY 1
