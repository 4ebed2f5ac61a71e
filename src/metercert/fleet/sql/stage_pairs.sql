-- One hash-aggregate pass over every ciphered APDU, shared so the
-- dataset is read once for the watch-list checks of stage_suspects: does a
-- counter space use more than one security control byte (suite or protection
-- changed), and how high did its counter get? Grouped by space_key, the 60-bit
-- integer digest of the counter space (sender system title, key identity).
SELECT space_key, sc, COUNT(*) AS n, MAX(ic) AS max_ic
FROM apdus
WHERE ciphered AND space_key IS NOT NULL
GROUP BY space_key, sc
