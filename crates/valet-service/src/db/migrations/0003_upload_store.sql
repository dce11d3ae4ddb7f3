-- The named store ([stores.NAME]) an upload was created on; NULL for [store].
ALTER TABLE uploads ADD COLUMN store_name TEXT;
