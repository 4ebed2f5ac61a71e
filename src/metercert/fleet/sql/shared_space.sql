-- One counter space used in both directions: the client and the meter protect
-- with the same system title and the same key (a "simple key" setup), so the two
-- independent counters share one GCM nonce space and collide as soon as one
-- reaches a value the other has used (DLMS:IC-UNIQUE). Every such space is on the
-- watch list (stage_suspects). Evidence: the first and last APDU of each direction.
WITH ends AS (
  SELECT space_key, direction, MIN(id) AS first_id, MAX(id) AS last_id
  FROM seq_rows
  GROUP BY space_key, direction
),
shared AS (
  SELECT space_key FROM ends GROUP BY space_key HAVING COUNT(*) > 1
),
ev AS (
  SELECT e.space_key, e.first_id AS id FROM ends e JOIN shared s ON e.space_key = s.space_key
  UNION ALL
  SELECT e.space_key, e.last_id AS id FROM ends e JOIN shared s ON e.space_key = s.space_key
),
rows_ AS (
  SELECT a.space_key, MIN(a.meter_id) AS meter_id, MIN(a.system_title) AS system_title,
         MIN(a.key_set) AS key_set, MIN(a.key_id) AS key_id, MIN(a.ts) AS ts,
         MAX(a.ts) AS ref_ts, COUNT(*) AS n, MIN(a.assoc_id) AS assoc_id,
         MAX(a.assoc_id) AS ref_assoc_id
  FROM seq_rows a JOIN shared s ON a.space_key = s.space_key
  GROUP BY a.space_key
),
ids AS (SELECT space_key, array_agg(DISTINCT id) AS evidence_ids FROM ev GROUP BY space_key)
SELECT 'shared-space' AS kind, r.meter_id, r.system_title, 'both' AS direction, r.key_set,
       r.key_id, r.ts, r.ref_ts, r.n, r.assoc_id, r.ref_assoc_id, i.evidence_ids
FROM rows_ r JOIN ids i ON r.space_key = i.space_key
