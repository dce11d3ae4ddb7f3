-- The key a client sent with its create request, so that a repeated create (its answer was
-- lost) finds the upload it made instead of making another. Unique per user; NULL for creates
-- without one (NULLs never collide, on SQLite as on PostgreSQL).
ALTER TABLE uploads ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX uploads_idempotency_key ON uploads (user_name, idempotency_key);
