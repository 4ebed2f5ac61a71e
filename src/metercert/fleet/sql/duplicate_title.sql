-- One meter system title speaking from two network endpoints at overlapping times
-- (stage_titles): two devices claim one identity, a cloned meter or two meters
-- given the same title. A title must be unique per key: with shared keys their
-- counters collide (nonce reuse); with their own keys the head-end cannot tell
-- them apart and the GCM nonce (title || counter) no longer names one sender.
-- A meter that comes back on a new address after a reboot does not overlap.
WITH overlap AS (
  SELECT a.system_title, a.endpoint AS ep_a, b.endpoint AS ep_b,
         a.first_ts AS ts_a, b.first_ts AS ts_b, a.last_ts AS end_a, b.last_ts AS end_b,
         a.first_id AS id_a, b.first_id AS id_b, a.n + b.n AS n
  FROM titles a
  JOIN titles b ON a.system_title = b.system_title AND a.endpoint < b.endpoint
  WHERE a.first_ts <= b.last_ts AND b.first_ts <= a.last_ts
),
ev AS (
  SELECT system_title, ep_a AS ep, ts_a AS ts, end_a AS te, id_a AS id FROM overlap
  UNION ALL
  SELECT system_title, ep_b AS ep, ts_b AS ts, end_b AS te, id_b AS id FROM overlap
)
SELECT 'duplicate-title' AS kind, 'st:' || system_title AS meter_id, system_title,
       's2c' AS direction, MIN(ts) AS ts, MAX(te) AS ref_ts,
       COUNT(DISTINCT ep) AS value, COUNT(DISTINCT ep) AS n,
       MIN(ep) AS assoc_id, MAX(ep) AS ref_assoc_id, array_agg(id) AS evidence_ids
FROM ev
GROUP BY system_title
