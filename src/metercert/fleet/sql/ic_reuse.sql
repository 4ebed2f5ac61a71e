-- Invocation-counter reuse: one counter space (one sender system title under one
-- key), one counter, two different ciphertexts. The GCM nonce repeated under one
-- key: confidentiality and integrity of both APDUs are lost (DLMS:IC-UNIQUE).
-- Direction is not part of the space: a client and a meter that share a system
-- title and a key (a "simple key" setup) share one nonce space.
-- Also: a byte-identical APDU that the sender sent again after restarting its
-- counters (stage_copies.restarted): the same nonce under the same key again.
-- Input: seq_rows (a reuse always lies in a watched space; see stage_suspects).
WITH reused AS (
  SELECT space_key, ic
  FROM seq_rows
  WHERE ct_sha256 IS NOT NULL AND ic IS NOT NULL
  GROUP BY space_key, ic
  HAVING MIN(ct_sha256) <> MAX(ct_sha256)
),
hits AS (
  SELECT a.id, a.ts, a.meter_id, a.system_title, a.direction, a.key_set, a.key_id,
         a.space_key, a.assoc_id, a.ic, 0 AS same_ct
  FROM seq_rows a JOIN reused r ON a.space_key = r.space_key AND a.ic = r.ic
  UNION ALL
  SELECT c.id, c.ts, c.meter_id, c.system_title, c.direction, c.key_set, c.key_id,
         c.space_key, c.assoc_id, c.ic, 1 AS same_ct
  FROM copies c
  JOIN (SELECT space_key, ic FROM copies WHERE restarted = 1 GROUP BY space_key, ic) x
    ON c.space_key = x.space_key AND c.ic = x.ic
)
SELECT 'ic-reuse' AS kind,
       MIN(meter_id) AS meter_id, MIN(system_title) AS system_title,
       CASE WHEN MIN(direction) = MAX(direction) THEN MIN(direction) ELSE 'both' END
         AS direction,
       MIN(key_set) AS key_set, MIN(key_id) AS key_id,
       MIN(ts) AS ts, MAX(ts) AS ref_ts, ic AS value, COUNT(DISTINCT id) AS n,
       MIN(assoc_id) AS assoc_id, MAX(assoc_id) AS ref_assoc_id,
       MIN(same_ct) AS ref_value,
       array_agg(DISTINCT id) AS evidence_ids
FROM hits
GROUP BY space_key, ic
