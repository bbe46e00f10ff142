-- Where every call's recording stands (ARCHIVED, FAILED or PENDING) and, when it failed, why.
-- A record's state is its latest event: CallRecorded gives the state at intake, a later
-- RecordingArchived or RecordingFailed the archiver's conclusion.
WITH states AS (
  SELECT
    detail.id AS id,
    CASE detail_type
      WHEN 'CallRecorded' THEN detail.recordingStatus
      WHEN 'RecordingArchived' THEN 'ARCHIVED'
      ELSE 'FAILED'
    END AS status,
    -- Never NULL: max_by's NULL handling differs between engines.
    CASE WHEN detail_type = 'RecordingFailed' THEN coalesce(detail.recordingError, '') ELSE '' END AS reason,
    -- At equal times the conclusion wins over the intake state.
    concat("time", CASE WHEN detail_type = 'CallRecorded' THEN '0' ELSE '1' END) AS at
  FROM events
  WHERE detail_type IN ('CallRecorded', 'RecordingArchived', 'RecordingFailed')
),
latest AS (
  SELECT id, max_by(status, at) AS status, max_by(reason, at) AS reason
  FROM states
  GROUP BY id
)
SELECT
  status,
  reason,
  count(*) AS recordings
FROM latest
WHERE status <> 'NONE'
GROUP BY 1, 2
ORDER BY 1, 2
