-- Every ciphered APDU of a meter with a suspect sequence, plus every
-- broadcast-key APDU (the broadcast key is shared by the fleet, so its counter
-- sequences are not per meter and are always checked in full). Taking the whole
-- meter (a one-column semi-join) is cheaper than matching (meter, direction)
-- and only adds rows the exact detectors will find clean.
SELECT a.id, a.ts, a.meter_id, a.system_title, a.direction, a.key_set, a.assoc_id, a.ic,
       a.ct_sha256
FROM apdus a
WHERE a.ciphered AND a.ic IS NOT NULL
  AND (a.key_set = 'broadcast' OR a.meter_key IN (SELECT meter_key FROM suspects))
