#!/usr/bin/env bash
# Pushes the server to the Cloud Foundry space targeted with `cf target`, as the
# app <space>-websocket, with manifest.yml (services mypostgres and websocket-ups).
#
#   ./cf-deploy.sh [extra cf push flags, e.g. --strategy rolling]
#
# It builds dist/ (npm run build) before the push: the Node.js buildpack installs
# production dependencies only (no TypeScript) and runs no build script of ours, so what
# is pushed is JavaScript that starts without compiling.
#
# Exit codes: 0 pushed; 1 cf push failed or a bound service is missing;
# 2 the cf CLI is not installed; 3 not logged in or no space targeted;
# 4 the build failed (nothing pushed).
set -euo pipefail

cd "$(dirname "$0")"
readonly SERVICES=(mypostgres websocket-ups)

fail() {
  local code=$1
  shift
  printf 'cf-deploy: %s\n' "$@" >&2
  exit "$code"
}

command -v cf >/dev/null 2>&1 ||
  fail 2 'the Cloud Foundry CLI (cf) is not on PATH.' \
    'Install it (https://docs.cloudfoundry.org/cf-cli/install-go-cli.html), then run: cf login'

if ! target=$(cf target 2>&1); then
  fail 3 'cf is not logged in (cf target failed):' "$target" 'Run: cf login -a <api endpoint>, then cf target -o <org> -s <space>'
fi

# `cf target` prints "space:          <name>" (v6 to v8), or a "No space targeted" hint instead.
space=''
while IFS= read -r line; do
  if [[ $line =~ ^space:[[:space:]]*(.*[^[:space:]])[[:space:]]*$ ]]; then
    space=${BASH_REMATCH[1]}
    break
  fi
done <<<"$target"
[[ -n "$space" ]] || fail 3 'no space is targeted.' 'Run: cf target -o <org> -s <space>'
app="${space}-websocket"

for service in "${SERVICES[@]}"; do
  cf service "$service" >/dev/null 2>&1 ||
    fail 1 "service instance \"$service\" does not exist in space \"$space\"." \
      'Create them first:' \
      '  cf create-service <postgres offering> <plan> mypostgres' \
      "  cf cups websocket-ups -p '{\"username\":\"...\",\"password\":\"at least 12 characters\"}'"
done

if [[ ! -f keys/public.pem ]]; then
  printf 'cf-deploy: %s\n' 'keys/public.pem is missing: the app will start only if websocket-ups gives "devicePublicKey" (PEM).' >&2
fi

[[ -x node_modules/.bin/tsc ]] ||
  fail 4 'node_modules/.bin/tsc is missing: the build needs the development dependencies.' 'Run: npm ci, then ./cf-deploy.sh again'
echo "cf-deploy: building dist/ (npm run build)"
npm run --silent build || fail 4 'the build (npm run build) failed; nothing was pushed.'

echo "cf-deploy: pushing ${app} to space ${space}"
cf push "$app" -f manifest.yml "$@" || fail 1 "cf push of ${app} failed; see: cf logs ${app} --recent"
