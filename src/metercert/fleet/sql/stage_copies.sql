-- Every row of an exact copy (stage_replayed), and whether the sender itself
-- restarted its counters there (restarted = 1), so that the byte-identical APDU is
-- the sender re-using its counters after a reset (nonce reuse, reported by
-- ic_reuse), not an APDU injected by someone else (a replay). The sender restarted
-- in an association (per space and direction) when
--   a. it holds other APDUs, not copies, whose counters are at or below a counter
--      the space had already used (the sender's own counters went back), or
--   b. every APDU of that direction in it is a copy while the other direction of
--      the same association is live (not copies): a meter answering new requests
--      with the very bytes of before. A recorded session replayed whole has copies
--      in both directions and stays a replay.
-- An injected copy inside a live association is neither: the sender's own
-- counters went on rising around it.
WITH copy_rows AS (
  SELECT a.id, a.ts, a.meter_id, a.system_title, a.direction, a.key_set, a.key_id,
         a.space_key, a.assoc_id, a.ic, a.ct_sha256, r.scope, r.first_id
  FROM apdus a
  JOIN replayed r
    ON a.ic = r.ic AND a.ct_sha256 = r.ct_sha256
   AND (CASE WHEN a.key_set = 'broadcast' THEN a.meter_id ELSE '*' END) = r.scope
  WHERE a.ciphered
    AND a.ic IN (SELECT ic FROM replayed)  -- implied by the join; lets the scan filter first
),
copy_keys AS (SELECT DISTINCT ic, ct_sha256 FROM replayed),
marked AS (
  SELECT s.space_key, s.direction, s.assoc_id, s.ic,
         CASE WHEN k.ic IS NULL THEN 0 ELSE 1 END AS is_copy,
         MAX(s.ic) OVER (PARTITION BY s.space_key, s.direction ORDER BY s.ts, s.id
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prior_max
  FROM seq_rows s
  LEFT JOIN copy_keys k ON s.ic = k.ic AND s.ct_sha256 = k.ct_sha256
),
went_back AS (
  SELECT space_key, direction, assoc_id FROM marked
  WHERE is_copy = 0 AND ic <= prior_max
  GROUP BY space_key, direction, assoc_id
),
per_dir AS (
  SELECT a.assoc_id, a.direction, COUNT(*) AS n
  FROM apdus a
  WHERE a.ciphered AND a.ic IS NOT NULL
    AND a.assoc_id IN (SELECT assoc_id FROM copy_rows)
  GROUP BY a.assoc_id, a.direction
),
copied AS (
  SELECT assoc_id, direction, COUNT(*) AS n FROM copy_rows GROUP BY assoc_id, direction
),
live AS (
  SELECT p.assoc_id, p.direction
  FROM per_dir p LEFT JOIN copied c ON p.assoc_id = c.assoc_id AND p.direction = c.direction
  WHERE p.n > COALESCE(c.n, 0)
),
echoed AS (
  SELECT c.assoc_id, c.direction
  FROM copied c
  JOIN live l ON c.assoc_id = l.assoc_id AND c.direction <> l.direction
  LEFT JOIN live s ON c.assoc_id = s.assoc_id AND c.direction = s.direction
  WHERE s.assoc_id IS NULL
)
SELECT c.*,
       CASE WHEN c.id <> c.first_id AND (w.space_key IS NOT NULL OR e.assoc_id IS NOT NULL)
            THEN 1 ELSE 0 END AS restarted
FROM copy_rows c
LEFT JOIN went_back w ON c.space_key = w.space_key AND c.direction = w.direction
 AND c.assoc_id = w.assoc_id
LEFT JOIN echoed e ON c.assoc_id = e.assoc_id AND c.direction = e.direction
