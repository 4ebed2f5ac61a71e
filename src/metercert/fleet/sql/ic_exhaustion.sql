-- Counters within ${exhaustion_margin} of the 32-bit limit: the sender must be
-- re-keyed before the counter wraps, or it will reuse nonces (DLMS:IC-UNIQUE).
-- Every such APDU is in seq_rows: its space's highest counter (stage_pairs) put
-- the space on the watch list of stage_suspects.
SELECT 'ic-exhaustion' AS kind, MIN(meter_id) AS meter_id, MIN(system_title) AS system_title,
       MIN(direction) AS direction, MIN(key_set) AS key_set, MIN(key_id) AS key_id,
       MIN(ts) AS ts, MAX(ts) AS ref_ts,
       MAX(ic) AS value, 4294967296 - ${exhaustion_margin} AS ref_value, COUNT(*) AS n,
       MIN(assoc_id) AS assoc_id, MAX(assoc_id) AS ref_assoc_id,
       array_agg(id) AS evidence_ids
FROM seq_rows
WHERE ic >= 4294967296 - ${exhaustion_margin}
GROUP BY space_key
