"""Supabase/GoTrue compatibility of names: the columns and enum labels GoTrue's own migrations
create (github.com/supabase/auth, migrations/*.up.sql: users, identities, sessions,
one_time_tokens, mfa_factors, mfa_challenges, mfa_amr_claims and their enums, as of the
2024 migrations that added one_time_tokens and is_anonymous) all exist here with the same
names, and an access token carries exactly the claims supabase-js reads.

Deliberate differences, listed so that this test says what they are: our timestamps are
timestamptz everywhere (GoTrue's one_time_tokens uses timestamp without time zone), and our
tables have extra columns (expiry, attempt counters, link hash, replay step)."""
import jwt

from test_credentials import fast_app_user  # noqa: F401  (fixture)

GOTRUE_COLUMNS = {
    "users": {"id", "email", "encrypted_password", "email_confirmed_at", "phone", "phone_confirmed_at",
              "raw_app_meta_data", "raw_user_meta_data", "banned_until", "last_sign_in_at",
              "created_at", "updated_at", "deleted_at", "is_anonymous", "email_change"},
    "identities": {"id", "provider_id", "user_id", "identity_data", "provider", "last_sign_in_at",
                   "created_at", "updated_at"},
    "sessions": {"id", "user_id", "created_at", "not_after", "aal", "factor_id", "refreshed_at"},
    "one_time_tokens": {"id", "user_id", "token_type", "token_hash", "relates_to", "created_at", "updated_at"},
    "mfa_factors": {"id", "user_id", "friendly_name", "factor_type", "status", "created_at", "updated_at",
                    "secret", "phone", "last_challenged_at"},
    "mfa_challenges": {"id", "factor_id", "created_at", "verified_at", "ip_address"},
    "mfa_amr_claims": {"id", "session_id", "created_at", "updated_at", "authentication_method"},
}

GOTRUE_ENUMS = {
    "one_time_token_type": ["confirmation_token", "reauthentication_token", "recovery_token",
                            "email_change_token_new", "email_change_token_current", "phone_change_token"],
    "factor_type": ["totp", "webauthn", "phone"],
    "factor_status": ["unverified", "verified"],
    "aal_level": ["aal1", "aal2", "aal3"],
}

# The claims of a Supabase access token (GoTrue's AccessTokenClaims).
SUPABASE_CLAIMS = {"aud", "exp", "iat", "iss", "sub", "email", "phone", "app_metadata", "user_metadata",
                   "role", "aal", "amr", "session_id", "is_anonymous"}


def test_gotrue_columns_and_enums_exist_with_the_same_names(cluster):
    with cluster.connect(autocommit=True) as admin:
        for table, columns in GOTRUE_COLUMNS.items():
            ours = {c for (c,) in admin.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (f"auth.{table}",))}
            assert columns <= ours, (table, sorted(columns - ours))
        for enum, labels in GOTRUE_ENUMS.items():
            ours = [l for (l,) in admin.execute(
                "SELECT enumlabel FROM pg_enum WHERE enumtypid = %s::regtype ORDER BY enumsortorder",
                (f"auth.{enum}",))]
            assert ours == labels, enum


def test_access_tokens_carry_supabase_claims(cluster, fast_app_user):  # noqa: F811
    with cluster.connect(user="app_user", autocommit=True) as conn:
        conn.execute("SELECT auth.sign_up('shape@example.test', 'shape password 1')")
        t = conn.execute("SELECT auth.sign_in('shape@example.test', 'shape password 1')").fetchone()[0]
    claims = jwt.decode(t["access_token"], options={"verify_signature": False})
    assert set(claims) - {"jti"} == SUPABASE_CLAIMS
    assert claims["aud"] == "authenticated" and claims["role"] == "authenticated"
    assert claims["aal"] == "aal1" and claims["amr"][0]["method"] == "password"
    assert isinstance(claims["amr"][0]["timestamp"], int)
    assert claims["is_anonymous"] is False
    assert claims["app_metadata"]["provider"] == "email"
    assert set(t) == {"access_token", "token_type", "expires_in", "expires_at", "refresh_token", "user"}
