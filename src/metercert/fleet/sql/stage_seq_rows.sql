-- Every ciphered APDU of a meter on the watch list (stage_suspects), plus every
-- broadcast-key APDU (the broadcast key is shared by the fleet, so its counter
-- sequences are not per meter and are always checked in full). Taking the whole
-- meter (a one-column semi-join) is cheaper than matching (meter, direction)
-- and only adds rows the exact detectors will find clean. Rows without a counter
-- are kept for suite_downgrade; the counter detectors leave them out.
SELECT a.id, a.ts, a.meter_id, a.meter_key, a.system_title, a.direction, a.key_set,
       a.assoc_id, a.suite, a.ic, a.ct_sha256
FROM apdus a
WHERE a.ciphered
  AND (a.key_set = 'broadcast' OR a.meter_key IN (SELECT meter_key FROM suspects))
