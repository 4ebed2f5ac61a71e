-- Exact copies: one ciphered APDU (same invocation counter, same ciphertext ||
-- tag) seen more than once on the same meter. Broadcast APDUs legitimately reach
-- many meters with one ciphertext, so the scope of a replay is one meter. A copy
-- repeats its sequence's counter instead of raising it, so its meter is always on
-- the watch list and every copy is among seq_rows.
SELECT meter_id, ic, ct_sha256, COUNT(*) AS n
FROM seq_rows
WHERE ct_sha256 IS NOT NULL AND ic IS NOT NULL
GROUP BY meter_id, ic, ct_sha256
HAVING COUNT(*) > 1
