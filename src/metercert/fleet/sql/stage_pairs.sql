-- One hash-aggregate pass over every ciphered APDU, shared so the
-- dataset is read once for the watch-list checks of stage_suspects: does a
-- counter space use more than one security control byte (suite or protection
-- changed), is it used in both directions (client and meter share a title and a
-- key), and how high did its counter get? Grouped by space_key, the 60-bit
-- integer digest of the counter space (sender system title, key identity).
SELECT space_key, direction, sc, COUNT(*) AS n, MAX(ic) AS max_ic
FROM apdus
WHERE ciphered AND space_key IS NOT NULL
GROUP BY space_key, direction, sc
