#!/usr/bin/env bash
# Create (or reuse) the virtual environment of the contract tooling and install the pinned
# versions of openapi-spec-validator, openapi-python-client and schemathesis into it.
#
#   tests/contract/setup.sh [VENV_DIR]     # default: $JINAD_CONTRACT_VENV, else <repo>/.venv-contract
#
# Idempotent: a venv that already holds the pinned versions is left alone. Always a venv:
# Debian 12's python3 is "externally managed" (PEP 668), so nothing is installed system-wide.
# PYTHON=... picks the interpreter used to create the venv (default: python3).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${1:-${JINAD_CONTRACT_VENV:-$ROOT/.venv-contract}}"
PYTHON="${PYTHON:-python3}"
CONSTRAINTS="$HERE/constraints.txt"   # the whole tree as installed and tested (pip freeze)

# The tools, pinned. Keep in step with constraints.txt and README.md.
PINS=(
  "openapi-spec-validator==0.9.0"
  "openapi-python-client==0.29.1"
  "schemathesis==4.32.5"
  "kubernetes-validate==1.37.0"   # `jinad export kubernetes` manifests, schemas shipped (offline)
  "prometheus-client==0.26.0"     # its text-format parser reads `GET /metrics`
)

die() { echo "setup.sh: $*" >&2; exit 1; }

pins_ok() {
  # True if the venv's interpreter sees exactly the pinned versions.
  "$VENV/bin/python" - "${PINS[@]}" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
EOF
}

command -v "$PYTHON" >/dev/null 2>&1 \
  || die "$PYTHON not found. On Debian/Ubuntu: apt-get install -y python3 python3-venv"

# A directory without a working pip is what a failed `python3 -m venv` leaves behind.
if [ -e "$VENV" ] && ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; }; then
  echo "setup.sh: $VENV is not a usable venv; recreating it" >&2
  rm -rf "$VENV"
fi

if [ -x "$VENV/bin/python" ] && pins_ok; then
  echo "setup.sh: $VENV already has ${PINS[*]}"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup.sh: creating $VENV with $("$PYTHON" --version 2>&1)"
  if ! "$PYTHON" -m venv "$VENV"; then
    rm -rf "$VENV"
    cat >&2 <<EOF

setup.sh: '$PYTHON -m venv' failed. On Debian/Ubuntu the venv module (with ensurepip) is a
separate package; install it and run this script again:

    apt-get install -y python3-venv      # Debian 12: pulls in python3.11-venv

(Do not 'pip install' into the system Python: it is externally managed, PEP 668.)
EOF
    exit 1
  fi
  # Some broken setups create the directory but no pip; treat that the same way.
  "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || {
    rm -rf "$VENV"
    die "the new venv has no pip (ensurepip missing?). Install python3-venv: apt-get install -y python3-venv"
  }
fi

echo "setup.sh: installing ${PINS[*]} into $VENV"
"$VENV/bin/python" -m pip install --disable-pip-version-check --quiet \
  --constraint "$CONSTRAINTS" "${PINS[@]}"

pins_ok || die "after installing, $VENV still lacks one of: ${PINS[*]}"
"$VENV/bin/openapi-spec-validator" --version
"$VENV/bin/openapi-python-client" --version
"$VENV/bin/schemathesis" --version
echo "setup.sh: done; tools are in $VENV/bin"
