-- ID tokens already traded for a sign-in, by SHA-256, kept until they expire: each works once,
-- so a copied ID token (it carries its own nonce) cannot start a second sign-in.
CREATE TABLE used_id_tokens (
    token_hash  TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);
