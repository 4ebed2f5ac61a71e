-- Ciphered APDUs whose security control says encrypted but not authenticated
-- (SC 0x2x): GCM without the tag check is malleable, a bit flipped in the
-- ciphertext flips the same bit of the plaintext and nobody can tell
-- (DLMS:POLICY-ENFORCED). One finding per association.
SELECT 'encryption-only' AS kind, meter_id, MIN(system_title) AS system_title,
       CASE WHEN MIN(direction) = MAX(direction) THEN MIN(direction) ELSE 'both' END
         AS direction,
       MIN(key_set) AS key_set, MIN(key_id) AS key_id, MIN(ts) AS ts, MAX(ts) AS ref_ts,
       MIN(sc) AS value, COUNT(*) AS n, assoc_id, array_agg(id) AS evidence_ids
FROM apdus
WHERE ciphered AND sc IS NOT NULL AND NOT authenticated
GROUP BY meter_id, assoc_id
