-- Exact replays: the same ciphered APDU (counter and payload) delivered twice, to
-- one meter or to another one (DLMS:IC-REPLAY). Whether the receiver accepted it
-- is not visible on the wire; the copy being there at all shows the path allows
-- injection. Copies the sender made itself after a counter reset are nonce reuse
-- (ic_reuse), not replays.
SELECT 'replay' AS kind, MIN(meter_id) AS meter_id,
       MIN(system_title) AS system_title, MIN(direction) AS direction,
       MIN(key_set) AS key_set, MIN(key_id) AS key_id, MIN(ts) AS ts, MAX(ts) AS ref_ts,
       MIN(ic) AS value, COUNT(DISTINCT meter_id) AS ref_value, COUNT(*) AS n,
       MIN(assoc_id) AS assoc_id, MAX(assoc_id) AS ref_assoc_id,
       MAX(meter_id) AS other_meter_id,
       array_agg(id) AS evidence_ids
FROM copies
GROUP BY scope, ic, ct_sha256
HAVING SUM(CASE WHEN id <> first_id AND restarted = 0 THEN 1 ELSE 0 END) > 0
