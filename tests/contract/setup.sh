#!/usr/bin/env bash
# Installs the contract-test tools into a virtual environment (never the system Python, which
# Debian marks "externally managed"): an OpenAPI validator, a client generator and Schemathesis.
#
#   tests/contract/setup.sh [VENV]      default VENV: .venv-contract at the repository root
#
# The tests (tests/it/contract.rs) find the venv through JINAD_CONTRACT_VENV or that default.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-${JINAD_CONTRACT_VENV:-$PWD/.venv-contract}}"
PINS=(openapi-spec-validator==0.9.0 openapi-python-client==0.29.1 schemathesis==4.32.5)

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" || {
    echo "cannot create a virtual environment: install python3-venv (apt-get install python3-venv)" >&2
    exit 1
  }
fi
if "$VENV/bin/python" -m pip freeze 2>/dev/null | grep -qxF -e "${PINS[0]}" && \
   "$VENV/bin/python" -m pip freeze | grep -qxF "${PINS[1]}" && \
   "$VENV/bin/python" -m pip freeze | grep -qxF "${PINS[2]}"; then
  echo "contract tools present in $VENV"
  exit 0
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
echo "contract tools installed in $VENV"
