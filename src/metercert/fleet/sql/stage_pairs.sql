-- One hash-aggregate pass over every ciphered APDU, shared so the dataset is read
-- once for all of them: the sender check of stage_suspects (does a (meter,
-- direction) sequence mix system titles?), the suite check (does a meter use more
-- than one suite?) and the counter-limit check (highest counter).
-- Grouped by meter_key, the 60-bit integer digest of meter_id, which hashes
-- faster than the string.
SELECT meter_key, direction, key_set, suite,
       CASE WHEN ic IS NULL THEN 0 ELSE 1 END AS has_ic,
       COUNT(*) AS n, COUNT(system_title) AS titled,
       MIN(system_title) AS min_title, MAX(system_title) AS max_title,
       MAX(ic) AS max_ic
FROM apdus
WHERE ciphered
GROUP BY meter_key, direction, key_set, suite, CASE WHEN ic IS NULL THEN 0 ELSE 1 END
