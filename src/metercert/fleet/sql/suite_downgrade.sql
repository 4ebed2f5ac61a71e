-- Suite downgrade: ciphered APDUs of a meter under a lower security suite than
-- the one it uses most (ties go to the higher suite) (DLMS:SUITE-DOWNGRADE).
WITH per AS (
  SELECT meter_id, suite, COUNT(*) AS n
  FROM apdus
  WHERE ciphered AND suite IS NOT NULL
  GROUP BY meter_id, suite
),
ranked AS (
  SELECT meter_id, suite, n,
         ROW_NUMBER() OVER (PARTITION BY meter_id ORDER BY n DESC, suite DESC) AS rn
  FROM per
),
usual AS (SELECT meter_id, suite AS usual_suite FROM ranked WHERE rn = 1),
low AS (
  SELECT p.meter_id, MAX(u.usual_suite) AS usual_suite
  FROM per p JOIN usual u ON p.meter_id = u.meter_id
  WHERE p.suite < u.usual_suite
  GROUP BY p.meter_id
)
SELECT 'suite-downgrade' AS kind, a.meter_id, MIN(a.system_title) AS system_title,
       MIN(a.direction) AS direction, MIN(a.key_set) AS key_set,
       MIN(a.ts) AS ts, MAX(a.ts) AS ref_ts,
       MIN(a.suite) AS value, MAX(l.usual_suite) AS ref_value, COUNT(*) AS n,
       MIN(a.assoc_id) AS assoc_id, MAX(a.assoc_id) AS ref_assoc_id,
       array_agg(a.id) AS evidence_ids
FROM apdus a JOIN low l ON a.meter_id = l.meter_id
WHERE a.ciphered AND a.suite < l.usual_suite
GROUP BY a.meter_id
