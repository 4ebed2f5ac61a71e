-- Suite downgrade: ciphered APDUs of a meter under a lower security suite than
-- the one it uses most (ties go to the higher suite) (DLMS:SUITE-DOWNGRADE).
-- Every meter that uses more than one suite is on the watch list (stage_suspects),
-- so all its ciphered APDUs are in seq_rows; seq_rows also holds the broadcast
-- APDUs of other meters, which the semi-join on the watch list leaves out.
WITH watched AS (
  SELECT a.id, a.ts, a.meter_id, a.system_title, a.direction, a.key_set, a.assoc_id, a.suite
  FROM seq_rows a
  WHERE a.suite IS NOT NULL AND a.meter_key IN (SELECT meter_key FROM suspects)
),
per AS (
  SELECT meter_id, suite, COUNT(*) AS n
  FROM watched
  GROUP BY meter_id, suite
),
ranked AS (
  SELECT meter_id, suite,
         ROW_NUMBER() OVER (PARTITION BY meter_id ORDER BY n DESC, suite DESC) AS rn
  FROM per
),
usual AS (SELECT meter_id, suite AS usual_suite FROM ranked WHERE rn = 1)
SELECT 'suite-downgrade' AS kind, a.meter_id, MIN(a.system_title) AS system_title,
       MIN(a.direction) AS direction, MIN(a.key_set) AS key_set,
       MIN(a.ts) AS ts, MAX(a.ts) AS ref_ts,
       MIN(a.suite) AS value, MAX(u.usual_suite) AS ref_value, COUNT(*) AS n,
       MIN(a.assoc_id) AS assoc_id, MAX(a.assoc_id) AS ref_assoc_id,
       array_agg(a.id) AS evidence_ids
FROM watched a JOIN usual u ON a.meter_id = u.meter_id
WHERE a.suite < u.usual_suite
GROUP BY a.meter_id
