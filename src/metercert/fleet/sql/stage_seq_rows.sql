-- Every ciphered APDU of a counter space on the watch list (stage_suspects). Rows
-- without a counter (head-end logs) are kept for suite_downgrade; the counter
-- detectors leave them out.
SELECT a.id, a.ts, a.meter_id, a.system_title, a.direction, a.key_set, a.key_id,
       a.space_key, a.assoc_id, a.sc, a.suite, a.authenticated, a.ic, a.ct_sha256
FROM apdus a
WHERE a.ciphered
  AND a.space_key IN (SELECT space_key FROM suspects)
