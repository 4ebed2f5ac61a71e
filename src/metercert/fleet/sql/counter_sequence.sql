-- Counter regression and counter jumps per counter space and sender (direction:
-- a space two senders share is shared_space's finding), in time order (stream
-- order within a stream), over the watched spaces (seq_rows). Exact replays are
-- left out of the sequence (replay.sql reports them), so a replayed old APDU is
-- not also a regression.
--   ic-regression: the counter went down (DLMS:IC-PERSIST: a counter that is not
--     kept across a reboot or a restore); ref_assoc_id shows the association it
--     followed: a change of association at the step points at a reboot/re-login.
--   ic-gap: the counter jumped by more than ${gap_threshold}.
WITH replays AS (
  SELECT id FROM copies c
  WHERE c.id <> c.first_id AND c.restarted = 0
),
seq AS (
  SELECT a.id, a.ts, a.meter_id, a.system_title, a.direction, a.key_set, a.key_id,
         a.assoc_id, a.ic,
         LAG(a.ic) OVER w AS prev_ic,
         LAG(a.id) OVER w AS prev_id,
         LAG(a.ts) OVER w AS prev_ts,
         LAG(a.assoc_id) OVER w AS prev_assoc
  FROM seq_rows a
  LEFT JOIN replays r ON a.id = r.id
  WHERE r.id IS NULL AND a.ic IS NOT NULL
  WINDOW w AS (PARTITION BY a.space_key, a.direction ORDER BY a.ts, a.id)
)
SELECT CASE WHEN ic < prev_ic THEN 'ic-regression' ELSE 'ic-gap' END AS kind,
       meter_id, system_title, direction, key_set, key_id, ts, prev_ts AS ref_ts,
       ic AS value, prev_ic AS ref_value, assoc_id, prev_assoc AS ref_assoc_id,
       id AS row_id, prev_id AS ref_row_id
FROM seq
WHERE prev_ic IS NOT NULL AND (ic < prev_ic OR ic - prev_ic > ${gap_threshold})
