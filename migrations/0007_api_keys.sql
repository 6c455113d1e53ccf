-- API keys for the REST API (src/keys/). A key is `iotws_<lookup_id>_<secret>`: the
-- lookup id finds the row, the secret is checked against `secret_hash` (SHA-256 of a
-- 256-bit random secret; the secret itself is never stored). Revocation and expiry are
-- times, not deletions, so that a revoked key stays listed with when it was revoked.
-- Later columns (accounts, rate_limit) are added by later migrations.
create table api_keys (
  id uuid primary key,
  name text not null,
  lookup_id text not null unique,
  secret_hash bytea not null,
  scopes text[] not null,
  created_at timestamptz not null default now(),
  expires_at timestamptz,
  revoked_at timestamptz,
  last_used_at timestamptz,
  constraint api_keys_scopes_not_empty check (cardinality(scopes) > 0),
  constraint api_keys_hash_is_sha256 check (octet_length(secret_hash) = 32)
);
