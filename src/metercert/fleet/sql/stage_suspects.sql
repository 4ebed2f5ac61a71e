-- Cheap first pass over every unicast ciphered APDU: the (meter, direction) pairs
-- whose counters, in time order, are not strictly increasing in steps of at most
-- ${gap_threshold}, or that have two APDUs with the same timestamp (their order
-- is then not defined by time alone), or that mix senders (system titles).
-- Why this is enough: every per-sender sequence is a subsequence of its
-- (meter, direction) sequence, and a subsequence of a strictly increasing
-- sequence is strictly increasing, so a reused counter, a replayed APDU or a
-- regression always makes its pair suspect. Gaps are exact because a pair with
-- one sender is that sender's whole sequence. The exact detectors then only read
-- the rows of suspect meters (stage_seq_rows).
-- meter_key (an integer digest of meter_id) sorts several times faster than the
-- string; a collision could only merge two meters here, which makes both suspect
-- and costs a little time, never a finding. The sender check is a separate plain
-- aggregate so that the window sorts as few columns as possible.
SELECT meter_key, direction
FROM (
  SELECT meter_key, direction,
         CASE WHEN ts = LAG(ts) OVER w OR ic - LAG(ic) OVER w <= 0
                   OR ic - LAG(ic) OVER w > ${gap_threshold} THEN 1 ELSE 0 END AS bad
  FROM apdus
  WHERE ciphered AND ic IS NOT NULL AND key_set = 'unicast'
  WINDOW w AS (PARTITION BY meter_key, direction ORDER BY ts)
) s
WHERE bad = 1
UNION
SELECT meter_key, direction
FROM apdus
WHERE ciphered AND ic IS NOT NULL AND key_set = 'unicast'
GROUP BY meter_key, direction
HAVING MIN(COALESCE(system_title, '-')) <> MAX(COALESCE(system_title, '-'))
