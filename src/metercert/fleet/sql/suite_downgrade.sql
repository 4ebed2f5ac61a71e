-- Downgrades within one counter space, in time order: an APDU under a lower
-- security suite than one the space already used (suite-downgrade,
-- DLMS:SUITE-DOWNGRADE), or under the same suite with less protection than
-- before: authentication or encryption dropped, e.g. SC 0x30 -> 0x10
-- (sc-downgrade). An upgrade is not a downgrade, and a new key (a new key
-- generation, another role) is a new space. Every space that uses more than one
-- SC byte is on the watch list (stage_suspects), so all its APDUs are in seq_rows.
WITH lv AS (
  SELECT a.id, a.ts, a.meter_id, a.system_title, a.direction, a.key_set, a.key_id,
         a.space_key, a.assoc_id, a.suite,
         CASE WHEN a.authenticated THEN 1 ELSE 0 END AS au,
         CAST(FLOOR(a.sc / 32) AS BIGINT) % 2 AS en
  FROM seq_rows a
  WHERE a.sc IS NOT NULL
),
w AS (
  SELECT lv.*,
         MAX(suite) OVER p AS prior_suite,
         MAX(au) OVER p AS prior_au,
         MAX(en) OVER p AS prior_en
  FROM lv
  WINDOW p AS (PARTITION BY space_key ORDER BY ts, id
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
),
hits AS (
  SELECT w.*,
         CASE WHEN suite < prior_suite THEN 'suite-downgrade' ELSE 'sc-downgrade' END AS kind
  FROM w
  WHERE suite < prior_suite
     OR (suite = prior_suite AND (au < prior_au OR en < prior_en))
)
SELECT kind, MIN(meter_id) AS meter_id, MIN(system_title) AS system_title,
       MIN(direction) AS direction, MIN(key_set) AS key_set, MIN(key_id) AS key_id,
       MIN(ts) AS ts, MAX(ts) AS ref_ts,
       MIN(CASE WHEN kind = 'suite-downgrade' THEN suite ELSE au * 16 + en * 32 END) AS value,
       MAX(CASE WHEN kind = 'suite-downgrade' THEN prior_suite
                ELSE prior_au * 16 + prior_en * 32 END) AS ref_value,
       COUNT(*) AS n, MIN(assoc_id) AS assoc_id, MAX(assoc_id) AS ref_assoc_id,
       array_agg(id) AS evidence_ids
FROM hits
GROUP BY kind, space_key
