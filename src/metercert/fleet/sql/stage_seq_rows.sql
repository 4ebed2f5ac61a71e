-- Every ciphered APDU of a suspect (meter, direction) pair, plus every
-- broadcast-key APDU (the broadcast key is shared by the fleet, so its counter
-- sequences are not per meter and are always checked in full).
SELECT a.id, a.ts, a.meter_id, a.system_title, a.direction, a.key_set, a.assoc_id, a.ic,
       a.ct_sha256
FROM apdus a
WHERE a.ciphered AND a.ic IS NOT NULL
  AND (a.key_set = 'broadcast'
       OR EXISTS (SELECT 1 FROM suspects s
                  WHERE s.meter_id = a.meter_id AND s.direction = a.direction))
