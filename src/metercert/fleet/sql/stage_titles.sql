-- Where each meter system title speaks from: one row per (title, endpoint) of the
-- APDUs a meter sends under its own title, with the time span. Small (one row per
-- meter and address); duplicate_title compares the spans.
SELECT system_title, endpoint, MIN(ts) AS first_ts, MAX(ts) AS last_ts, COUNT(*) AS n,
       MIN(id) AS first_id, MAX(id) AS last_id
FROM apdus
WHERE ciphered AND direction = 's2c' AND system_title IS NOT NULL AND endpoint IS NOT NULL
GROUP BY system_title, endpoint
