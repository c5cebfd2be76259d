-- When each account was last disabled: tokens issued before it stay
-- refused once the account is enabled again. Filled here from the events
-- already stored; the projector keeps it from now on.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;
UPDATE users SET disabled_at = disabled.at
  FROM (SELECT aggregate_id, MAX(recorded_at) AS at FROM events
         WHERE aggregate_type = 'Account' AND event_type = 'AccountDisabled'
         GROUP BY aggregate_id) AS disabled
 WHERE disabled.aggregate_id = users.id::text;
