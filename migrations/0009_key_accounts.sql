-- API keys limited to accounts (src/devices/account-scope.ts): `accounts` null = every
-- account (keys made before this migration keep seeing everything, as they did);
-- otherwise the key sees and acts only on devices whose `devices.account_id` is one of
-- these. Never empty: a key that sees nothing is refused at creation instead.
alter table api_keys add column accounts text[];
alter table api_keys add constraint api_keys_accounts_not_empty check (accounts is null or cardinality(accounts) > 0);
