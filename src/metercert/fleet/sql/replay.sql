-- Exact replays: the same ciphered APDU (counter and payload) delivered twice
-- to/from one meter (DLMS:IC-REPLAY). Whether the receiver accepted it is not visible on the wire;
-- the copy being there at all shows the path allows injection.
SELECT 'replay' AS kind, a.meter_id,
       MIN(a.system_title) AS system_title, MIN(a.direction) AS direction,
       MIN(a.key_set) AS key_set, MIN(a.ts) AS ts, MAX(a.ts) AS ref_ts,
       MIN(a.ic) AS value, MAX(a.ic) AS ref_value, COUNT(*) AS n,
       MIN(a.assoc_id) AS assoc_id, MAX(a.assoc_id) AS ref_assoc_id,
       array_agg(a.id) AS evidence_ids
FROM seq_rows a
JOIN replayed r
  ON a.meter_id = r.meter_id AND a.ic = r.ic AND a.ct_sha256 = r.ct_sha256
GROUP BY a.meter_id, a.ic, a.ct_sha256
