-- Exact copies: one ciphered APDU (same invocation counter, same ciphertext || tag)
-- seen more than once. A unicast or dedicated APDU belongs to one meter and one
-- association, so a copy anywhere (even on another meter: an APDU for meter A
-- injected to meter B) is a copy. Broadcast APDUs legitimately reach many meters
-- with one ciphertext, so for them the scope is one meter.
-- A copy repeats its space's counter instead of raising it, so at least one copy
-- lies in a watched space (seq_rows); the other copies are found from there.
SELECT CASE WHEN a.key_set = 'broadcast' THEN a.meter_id ELSE '*' END AS scope,
       a.ic, a.ct_sha256, COUNT(*) AS n, MIN(a.id) AS first_id
FROM apdus a
WHERE a.ciphered AND a.ic IS NOT NULL AND a.ct_sha256 IS NOT NULL
  AND a.ct_sha256 IN (SELECT ct_sha256 FROM seq_rows)
GROUP BY CASE WHEN a.key_set = 'broadcast' THEN a.meter_id ELSE '*' END, a.ic, a.ct_sha256
HAVING COUNT(*) > 1
