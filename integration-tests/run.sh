#!/usr/bin/env bash
# Third-party-client integration tests: installs kcat and a Python venv (.venv/) with the
# client libraries when missing, builds the `sluice` binary, runs the pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v kcat >/dev/null; then
  echo "installing kcat (Debian package)"
  apt-get update -qq && apt-get install -y -qq kcat >/dev/null
fi
req=integration-tests/python/requirements.txt
stamp=.venv/.requirements
if [ ! -x .venv/bin/python ] || ! cmp -s "$req" "$stamp"; then
  echo "preparing the Python venv in .venv/"
  python3 -m venv .venv
  .venv/bin/pip install -q -r "$req"
  cp "$req" "$stamp"
fi
cargo build -q -p sluice-cli --bin sluice
exec .venv/bin/python -m pytest -q -p no:cacheprovider integration-tests/python "$@"
