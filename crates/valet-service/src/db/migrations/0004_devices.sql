-- Devices enrolled with an organisation's enrollment secret. A device's id is the sign-in
-- family of its tokens: revoking the device revokes them all.
CREATE TABLE devices (
    id          TEXT PRIMARY KEY,         -- = tokens.family
    user_name   TEXT NOT NULL REFERENCES users(name),
    device_name TEXT NOT NULL,            -- as the device reported it (its host name)
    enrollment  TEXT NOT NULL,            -- the [[enrollment]] entry's name
    enrolled_at BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX devices_user ON devices (user_name);
