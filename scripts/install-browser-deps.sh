#!/usr/bin/env bash
# Installs what the browser and Node tests of clients/js need, idempotently:
# - Chromium from Debian (/usr/bin/chromium), driven headless by playwright-core: playwright's
#   own browser downloads cannot be reached from the project's machines;
# - the npm packages pinned in clients/js/package-lock.json (dev only: the client has no
#   runtime dependency), with `npm ci`, skipped when node_modules already matches the lock.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  echo "install-browser-deps: installing chromium from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi

cd clients/js
# npm writes node_modules/.package-lock.json on install; when it equals the lock's content the
# tree is already what the lock says, and `npm ci` (which deletes node_modules first) can be skipped.
if [ -e node_modules/.package-lock.json ] &&
  node -e '
    const fs = require("fs");
    const want = JSON.parse(fs.readFileSync("package-lock.json")).packages;
    const have = JSON.parse(fs.readFileSync("node_modules/.package-lock.json")).packages;
    for (const [path, meta] of Object.entries(want)) {
      if (path && (!have[path] || have[path].version !== meta.version)) process.exit(1);
    }' 2>/dev/null; then
  exit 0
fi
echo "install-browser-deps: npm ci in clients/js"
npm ci --no-audit --no-fund --loglevel=error
