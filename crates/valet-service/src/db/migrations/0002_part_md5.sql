-- The MD5 a part's newest key was issued for, on stores that check Content-MD5 (Azure, GCS):
-- completion compares it with what the store holds.
ALTER TABLE part_digests ADD COLUMN md5 TEXT;
