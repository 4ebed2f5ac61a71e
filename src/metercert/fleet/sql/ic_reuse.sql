-- Invocation-counter reuse: one sender (system title), one key, one direction,
-- one counter, two different ciphertexts. The GCM nonce repeated under one key:
-- confidentiality and integrity of both APDUs are lost (DLMS:IC-UNIQUE).
-- A unicast key belongs to one meter, so unicast groups are per meter; the
-- broadcast key is shared by the fleet, so broadcast groups span meters.
-- Input: seq_rows (a reuse always lies in a suspect sequence; see stage_suspects).
WITH reused AS (
  SELECT CASE WHEN key_set = 'broadcast' THEN '*' ELSE meter_id END AS scope,
         system_title, key_set, direction, ic
  FROM seq_rows
  WHERE system_title IS NOT NULL AND ct_sha256 IS NOT NULL AND ic IS NOT NULL
  GROUP BY CASE WHEN key_set = 'broadcast' THEN '*' ELSE meter_id END,
           system_title, key_set, direction, ic
  HAVING MIN(ct_sha256) <> MAX(ct_sha256)
)
SELECT 'ic-reuse' AS kind,
       MIN(a.meter_id) AS meter_id, a.system_title, a.direction, a.key_set,
       MIN(a.ts) AS ts, MAX(a.ts) AS ref_ts, a.ic AS value, COUNT(*) AS n,
       MIN(a.assoc_id) AS assoc_id, MAX(a.assoc_id) AS ref_assoc_id,
       array_agg(a.id) AS evidence_ids
FROM seq_rows a
JOIN reused r
  ON a.system_title = r.system_title AND a.key_set = r.key_set
 AND a.direction = r.direction AND a.ic = r.ic
 AND (CASE WHEN a.key_set = 'broadcast' THEN '*' ELSE a.meter_id END) = r.scope
WHERE a.ct_sha256 IS NOT NULL
GROUP BY r.scope, a.system_title, a.key_set, a.direction, a.ic
