-- xDLMS service APDUs sent in plaintext inside an association that otherwise uses
-- authenticated APDUs: the security policy is not enforced for every request
-- (DLMS:POLICY-ENFORCED). Only xDLMS services count (get/set/action/event
-- 0xC0-0xC7, data-notification 0x0F): ACSE and exception-response are plain by
-- design, and bytes of no known APDU are no request. Ciphered APDUs without authentication are encryption_only's.
WITH cand AS (
  SELECT id, ts, meter_id, system_title, direction, assoc_id
  FROM apdus
  WHERE NOT ciphered AND assoc_id IS NOT NULL
    AND (apdu_tag BETWEEN 192 AND 199 OR apdu_tag = 15)
),
protected AS (
  SELECT p.assoc_id
  FROM apdus p
  WHERE p.authenticated AND p.assoc_id IN (SELECT assoc_id FROM cand)
  GROUP BY p.assoc_id
)
SELECT 'plaintext' AS kind, c.meter_id, MIN(c.system_title) AS system_title,
       MIN(c.direction) AS direction, MIN(c.ts) AS ts, MAX(c.ts) AS ref_ts,
       COUNT(*) AS n, c.assoc_id, array_agg(c.id) AS evidence_ids
FROM cand c JOIN protected p ON c.assoc_id = p.assoc_id
GROUP BY c.meter_id, c.assoc_id
