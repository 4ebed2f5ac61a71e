-- Ciphered payloads (ciphertext || tag) seen more than once on the same meter.
-- Broadcast APDUs legitimately reach many meters with one ciphertext, so the
-- scope of a replay is one meter. A replayed copy never raises its sequence's
-- counter, so it is always among seq_rows.
SELECT meter_id, ct_sha256, COUNT(*) AS n
FROM seq_rows
WHERE ct_sha256 IS NOT NULL
GROUP BY meter_id, ct_sha256
HAVING COUNT(*) > 1
