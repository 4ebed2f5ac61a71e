-- The rows among which every exact copy lies: each ciphered APDU whose payload
-- hash (ct_sha256) a watched row (seq_rows) also has. A copy repeats its space's
-- counter instead of raising it, so at least one copy of each lies in a watched
-- space; its other copies (on other meters too) carry the same hash. One read of
-- the wide columns serves stage_replayed and stage_copies.
SELECT a.id, a.ts, a.meter_id, a.system_title, a.direction, a.key_set, a.key_id,
       a.space_key, a.assoc_id, a.ic, a.ct_sha256
FROM apdus a
WHERE a.ciphered AND a.ic IS NOT NULL AND a.ct_sha256 IS NOT NULL
  AND a.ct_sha256 IN (SELECT ct_sha256 FROM seq_rows)
