-- Cheap first pass over every unicast ciphered APDU: the (meter, direction) pairs
-- whose counters, in time order, are not strictly increasing in steps of at most
-- ${gap_threshold}, or that mix senders or key sets, or have two APDUs with the
-- same timestamp (their order is then not defined by time alone).
-- Why this is enough: every per-sender sequence is a subsequence of its
-- (meter, direction) sequence, and a subsequence of a strictly increasing
-- sequence is strictly increasing, so a reused counter, a replayed APDU or a
-- regression always makes its pair suspect. Gaps are exact because a pair with
-- one sender and one key set is that sender's whole sequence. The exact
-- detectors then only read the rows of suspect pairs (stage_seq_rows).
SELECT meter_id, direction
FROM (
  SELECT meter_id, direction, COALESCE(system_title, '-') AS sender, key_set,
         CASE WHEN ts = LAG(ts) OVER w OR ic - LAG(ic) OVER w <= 0
                   OR ic - LAG(ic) OVER w > ${gap_threshold} THEN 1 ELSE 0 END AS bad
  FROM apdus
  WHERE ciphered AND ic IS NOT NULL AND key_set = 'unicast'
  WINDOW w AS (PARTITION BY meter_id, direction ORDER BY ts)
) s
GROUP BY meter_id, direction
HAVING MAX(bad) = 1 OR MIN(sender) <> MAX(sender)
