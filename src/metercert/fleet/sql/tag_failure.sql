-- Authentication tags that do not verify with the key file's keys (tag_ok false):
-- a tampered or forged APDU, or a key file that does not match the meter, which
-- leaves the audit blind to that meter. One finding per counter space.
SELECT 'tag-failure' AS kind, MIN(meter_id) AS meter_id, MIN(system_title) AS system_title,
       CASE WHEN MIN(direction) = MAX(direction) THEN MIN(direction) ELSE 'both' END
         AS direction,
       MIN(key_set) AS key_set, MIN(key_id) AS key_id, MIN(ts) AS ts, MAX(ts) AS ref_ts,
       MIN(ic) AS value, MAX(ic) AS ref_value, COUNT(*) AS n,
       MIN(assoc_id) AS assoc_id, MAX(assoc_id) AS ref_assoc_id,
       array_agg(id) AS evidence_ids
FROM apdus
WHERE tag_ok = false
GROUP BY COALESCE(space_key, meter_key)
