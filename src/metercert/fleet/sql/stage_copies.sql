-- Every row of an exact copy (stage_replayed), and whether the sender itself
-- restarted its counters there: the copy's association (in the same space) holds
-- other APDUs, not copies, whose counters are at or below a counter the space had
-- already used. Then the byte-identical APDU is the sender re-using its counters
-- after a reset (nonce reuse, reported by ic_reuse), not one injected by someone
-- else (a replay: the sender's own counters went on rising around it).
WITH copy_keys AS (SELECT DISTINCT ic, ct_sha256 FROM replayed),
marked AS (
  SELECT s.space_key, s.direction, s.assoc_id, s.ic,
         CASE WHEN k.ic IS NULL THEN 0 ELSE 1 END AS is_copy,
         MAX(s.ic) OVER (PARTITION BY s.space_key, s.direction ORDER BY s.ts, s.id
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prior_max
  FROM seq_rows s
  LEFT JOIN copy_keys k ON s.ic = k.ic AND s.ct_sha256 = k.ct_sha256
),
restart AS (
  SELECT space_key, direction, assoc_id FROM marked
  WHERE is_copy = 0 AND ic <= prior_max
  GROUP BY space_key, direction, assoc_id
)
SELECT a.id, a.ts, a.meter_id, a.system_title, a.direction, a.key_set, a.key_id,
       a.space_key, a.assoc_id, a.ic, a.ct_sha256, r.scope, r.first_id,
       CASE WHEN a.id <> r.first_id AND rs.space_key IS NOT NULL THEN 1 ELSE 0 END
         AS restarted
FROM apdus a
JOIN replayed r
  ON a.ic = r.ic AND a.ct_sha256 = r.ct_sha256
 AND (CASE WHEN a.key_set = 'broadcast' THEN a.meter_id ELSE '*' END) = r.scope
LEFT JOIN restart rs ON a.space_key = rs.space_key AND a.direction = rs.direction
 AND a.assoc_id = rs.assoc_id
WHERE a.ciphered
