-- Suite downgrade: ciphered APDUs of a meter under a lower security suite than
-- the one it uses most (ties go to the higher suite) (DLMS:SUITE-DOWNGRADE).
-- Grouped by meter_key (integer digest of meter_id, 60 bits) for speed.
WITH per AS (
  SELECT meter_key, suite, COUNT(*) AS n
  FROM apdus
  WHERE ciphered AND suite IS NOT NULL
  GROUP BY meter_key, suite
),
ranked AS (
  SELECT meter_key, suite, n,
         ROW_NUMBER() OVER (PARTITION BY meter_key ORDER BY n DESC, suite DESC) AS rn
  FROM per
),
usual AS (SELECT meter_key, suite AS usual_suite FROM ranked WHERE rn = 1),
low AS (
  SELECT p.meter_key, MAX(u.usual_suite) AS usual_suite
  FROM per p JOIN usual u ON p.meter_key = u.meter_key
  WHERE p.suite < u.usual_suite
  GROUP BY p.meter_key
)
SELECT 'suite-downgrade' AS kind, a.meter_id, MIN(a.system_title) AS system_title,
       MIN(a.direction) AS direction, MIN(a.key_set) AS key_set,
       MIN(a.ts) AS ts, MAX(a.ts) AS ref_ts,
       MIN(a.suite) AS value, MAX(l.usual_suite) AS ref_value, COUNT(*) AS n,
       MIN(a.assoc_id) AS assoc_id, MAX(a.assoc_id) AS ref_assoc_id,
       array_agg(a.id) AS evidence_ids
FROM apdus a JOIN low l ON a.meter_key = l.meter_key
WHERE a.ciphered AND a.suite < l.usual_suite
GROUP BY a.meter_id
