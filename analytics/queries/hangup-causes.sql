-- Why calls ended: hang-up cause and Q.850 code, with who hung up, most frequent first.
WITH calls AS (
  SELECT
    detail.id AS id,
    arbitrary(detail.hangupCause) AS cause,
    arbitrary(detail.hangupCode) AS code,
    arbitrary(detail.hangupBy) AS hung_up_by
  FROM events
  WHERE detail_type = 'CallRecorded'
  GROUP BY detail.id
)
SELECT
  coalesce(nullif(cause, ''), '(none)') AS hangup_cause,
  coalesce(code, -1) AS hangup_code,
  coalesce(hung_up_by, 'UNKNOWN') AS hung_up_by,
  count(*) AS calls
FROM calls
GROUP BY 1, 2, 3
ORDER BY calls DESC, 1, 2, 3
