-- Single sign-on: the provider's stable identity (issuer, subject) of each account made by an
-- OpenID Connect sign-in. The account keeps its name when the person's email changes.
CREATE TABLE identities (
    issuer         TEXT NOT NULL,
    subject        TEXT NOT NULL,
    user_name      TEXT NOT NULL REFERENCES users(name),
    created_at     BIGINT NOT NULL,
    last_sign_in   BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX identities_user ON identities (user_name);
