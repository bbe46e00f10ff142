-- Calls to a masked number (DID) that had no binding, per DID and day (NXCLOUD's time, UTC).
SELECT
  coalesce(detail.did, '') AS did,
  substr(detail.occurredAt, 1, 10) AS occurred_day,
  count(DISTINCT detail.eventId) AS unbound_calls
FROM events
WHERE detail_type = 'UnboundCall'
GROUP BY 1, 2
ORDER BY 1, 2
