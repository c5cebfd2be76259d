-- When each account was last disabled: tokens issued before it stay
-- refused once the account is enabled again. Filled here from the events
-- already stored; the projector keeps it from now on.
ALTER TABLE users ADD COLUMN disabled_at TEXT;
UPDATE users SET disabled_at = (
    SELECT MAX(recorded_at) FROM events
     WHERE aggregate_type = 'Account' AND event_type = 'AccountDisabled'
       AND replace(aggregate_id, '-', '') = lower(hex(users.id)));
