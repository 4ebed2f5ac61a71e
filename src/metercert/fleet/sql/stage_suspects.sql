-- The watch list: meters whose ciphered APDUs the exact detectors must read in
-- full (stage_seq_rows). Everything else is proven clean here by one sort and a
-- few aggregates, without reading the wide columns.
--
-- 1. Counter sequences. The (meter, direction) pairs whose unicast counters, in
--    time order, are not strictly increasing in steps of at most ${gap_threshold},
--    or that have two APDUs with the same timestamp (their order is then not
--    defined by time alone), or that mix senders (system titles).
--    Why this is enough: every per-sender sequence is a subsequence of its
--    (meter, direction) sequence, and a subsequence of a strictly increasing
--    sequence is strictly increasing, so a reused counter, a replayed APDU or a
--    regression always makes its pair suspect. Gaps are exact because a pair with
--    one sender is that sender's whole sequence.
-- 2. Meters with a counter within ${exhaustion_margin} of 2^32 (ic_exhaustion).
-- 3. Meters that use more than one security suite (suite_downgrade).
--
-- Speed: the sort is most of a scan's time, and it grows with every column it
-- carries. So the window sees three BIGINT-sized columns only: k = meter_key * 2 +
-- direction bit (meter_key is a 60-bit integer digest of meter_id, so k cannot
-- overflow), ts and ic; the bad k are mapped back to meters through the small
-- stage_pairs table. A digest collision could only merge two meters, which makes
-- both suspect and costs a little time, never a finding. The sender and
-- counter-limit checks read stage_pairs instead of scanning again.
SELECT p.meter_key
FROM pairs p
JOIN (
  SELECT k
  FROM (
    SELECT k,
           CASE WHEN ts = LAG(ts) OVER w OR ic - LAG(ic) OVER w <= 0
                     OR ic - LAG(ic) OVER w > ${gap_threshold} THEN 1 ELSE 0 END AS bad
    FROM (
      SELECT meter_key * 2 + CASE WHEN direction = 'c2s' THEN 0 ELSE 1 END AS k, ts, ic
      FROM apdus
      WHERE ciphered AND ic IS NOT NULL AND key_set = 'unicast'
    ) x
    WINDOW w AS (PARTITION BY k ORDER BY ts)
  ) s
  WHERE bad = 1
) b ON p.meter_key * 2 + CASE WHEN p.direction = 'c2s' THEN 0 ELSE 1 END = b.k
UNION
SELECT meter_key
FROM pairs
WHERE key_set = 'unicast' AND has_ic = 1
GROUP BY meter_key, direction
HAVING MIN(min_title) <> MAX(max_title)
    OR (SUM(titled) > 0 AND SUM(titled) < SUM(n))
UNION
SELECT meter_key FROM pairs WHERE max_ic >= 4294967296 - ${exhaustion_margin}
UNION
SELECT meter_key
FROM pairs
WHERE suite IS NOT NULL
GROUP BY meter_key
HAVING MIN(suite) <> MAX(suite)
