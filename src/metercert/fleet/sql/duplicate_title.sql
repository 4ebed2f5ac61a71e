-- One meter system title speaking from two network endpoints at overlapping times
-- (stage_titles): two devices claim one identity, a cloned meter or two meters
-- given the same title. A title must be unique per key: with shared keys their
-- counters collide (nonce reuse); with their own keys the head-end cannot tell
-- them apart and the GCM nonce (title || counter) no longer names one sender.
-- A meter that comes back on a new address after a reboot does not overlap.
-- Overlap without pairing every endpoint with every other (a meter that pushes
-- from a new port each time has thousands): in first-seen order, an endpoint
-- overlaps an earlier one when it starts before the latest end seen so far.
WITH ordered AS (
  SELECT system_title, endpoint, first_ts, last_ts, first_id,
         MAX(last_ts) OVER (PARTITION BY system_title ORDER BY first_ts, endpoint
                            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prior_end,
         FIRST_VALUE(first_id) OVER (PARTITION BY system_title ORDER BY first_ts, endpoint
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
           AS title_first_id,
         FIRST_VALUE(endpoint) OVER (PARTITION BY system_title ORDER BY first_ts, endpoint
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
           AS title_first_ep
  FROM titles
),
hits AS (
  SELECT * FROM ordered WHERE prior_end IS NOT NULL AND first_ts <= prior_end
),
ev AS (
  SELECT system_title, first_id AS id, endpoint AS ep, first_ts AS ts, last_ts AS te
  FROM hits
  UNION ALL
  SELECT system_title, MIN(title_first_id) AS id, MIN(title_first_ep) AS ep,
         MIN(first_ts) AS ts, MAX(last_ts) AS te
  FROM hits GROUP BY system_title
)
SELECT 'duplicate-title' AS kind, 'st:' || system_title AS meter_id, system_title,
       's2c' AS direction, MIN(ts) AS ts, MAX(te) AS ref_ts,
       COUNT(DISTINCT ep) AS value, COUNT(DISTINCT ep) AS n,
       MIN(ep) AS assoc_id, MAX(ep) AS ref_assoc_id, array_agg(DISTINCT id) AS evidence_ids
FROM ev
GROUP BY system_title
