-- The service's state. Kept to portable SQL (SQLite now, PostgreSQL later): TEXT, BIGINT and
-- INTEGER columns only; times are Unix milliseconds (BIGINT), ids are random TEXT.

CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,          -- argon2id PHC string
    created_at    BIGINT NOT NULL
);

-- Access (vat_), refresh (vrt_) and API (vpt_) tokens, stored only as SHA-256.
CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,         -- public id, for listing and revoking
    token_hash  TEXT NOT NULL UNIQUE,     -- hex SHA-256 of the whole token
    kind        TEXT NOT NULL,            -- access | refresh | api
    user_name   TEXT NOT NULL REFERENCES users(name),
    family      TEXT,                     -- the sign-in an access/refresh token belongs to
    label       TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,                   -- NULL: until revoked (API tokens)
    used_at     BIGINT,                   -- refresh tokens: when rotated (single use)
    revoked_at  BIGINT
);
CREATE INDEX tokens_family ON tokens (family);
CREATE INDEX tokens_user ON tokens (user_name);

CREATE TABLE uploads (
    id               TEXT PRIMARY KEY,    -- random, unguessable
    user_name        TEXT NOT NULL REFERENCES users(name),
    object_key       TEXT NOT NULL,
    file_name        TEXT NOT NULL,       -- as the client gave it
    size             BIGINT NOT NULL,
    content_type     TEXT NOT NULL,
    part_size        BIGINT NOT NULL,
    part_count       INTEGER NOT NULL,
    store_upload_id  TEXT NOT NULL,
    state            TEXT NOT NULL,       -- open | verified | aborted | failed
    sha256           TEXT,                -- whole-file hex, once verified
    etag             TEXT,
    store_checksum   TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    last_activity_at BIGINT NOT NULL,
    completed_at     BIGINT
);
CREATE INDEX uploads_user ON uploads (user_name, created_at);
CREATE INDEX uploads_state ON uploads (state, last_activity_at);

-- The digest signed into the latest key of each part: completion must match it.
CREATE TABLE part_digests (
    upload_id   TEXT NOT NULL REFERENCES uploads(id),
    part_number INTEGER NOT NULL,
    size        BIGINT NOT NULL,
    sha256      TEXT NOT NULL,            -- standard base64 of the 32-byte digest
    issued_at   BIGINT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);

CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,      -- insertion order (SQLite rowid; BIGSERIAL on PostgreSQL)
    at          BIGINT NOT NULL,
    event       TEXT NOT NULL,
    user_name   TEXT,
    upload_id   TEXT,
    part        INTEGER,
    expires_at  BIGINT,
    client_addr TEXT,
    detail      TEXT                      -- JSON object or NULL
);
CREATE INDEX audit_upload ON audit_log (upload_id);
