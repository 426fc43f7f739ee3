-- Anonymous sign-in (docs/passwordless.md, "Anonymous users"): a user without email or
-- password, role authenticated, is_anonymous in the user and the token. auth.update_user
-- turns such a user into an email account, keeping its id and so its rows.
ALTER TABLE auth.users ADD COLUMN is_anonymous boolean NOT NULL DEFAULT false;
