-- The tickets' (user_id, kind, idem_key) key of 005 begins with user_id, so
-- it serves every lookup by user that idx_tickets_user served; the second
-- index only cost every order and gift a write.
ALTER TABLE tickets DROP KEY idx_tickets_user;
