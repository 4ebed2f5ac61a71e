-- The watch list: counter spaces whose ciphered APDUs the exact detectors must read
-- in full (stage_seq_rows). Everything else is proven clean here by one sort and a
-- few aggregates, without reading the wide columns.
--
-- A counter space is one GCM nonce space: one sender system title under one key
-- (a role's global unicast key at one meter, the broadcast key, or one
-- association's dedicated key, per key generation). Within it every counter must
-- be used once and, in stream order, rise.
-- 1. Spaces whose counters, in (ts, id) order (the order every detector uses: id
--    follows stream order within a capture), are not strictly increasing in steps
--    of at most ${gap_threshold}. A reused counter, a replayed APDU or a regression
--    always breaks strict increase, so it is always caught. Equal timestamps (head-end
--    logs of minute resolution) need no special case: id orders them.
-- 2. Spaces with a counter within ${exhaustion_margin} of 2^32 (ic_exhaustion).
-- 3. Spaces that use more than one security control byte (suite_downgrade), or
--    that both directions use (shared_space).
--
-- Speed: the window sees three BIGINT columns and the timestamp only.
SELECT space_key
FROM (
  SELECT space_key,
         CASE WHEN ic - LAG(ic) OVER w <= 0
                   OR ic - LAG(ic) OVER w > ${gap_threshold} THEN 1 ELSE 0 END AS bad
  FROM apdus
  WHERE ciphered AND ic IS NOT NULL AND space_key IS NOT NULL
  WINDOW w AS (PARTITION BY space_key ORDER BY ts, id)
) s
WHERE bad = 1
GROUP BY space_key
UNION
SELECT space_key FROM pairs WHERE max_ic >= 4294967296 - ${exhaustion_margin}
UNION
SELECT space_key
FROM pairs
GROUP BY space_key
HAVING MIN(sc) <> MAX(sc) OR MIN(direction) <> MAX(direction)
