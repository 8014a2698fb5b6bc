#!/usr/bin/env bash
# Build a Python base image for jinad workspaces with no container registry:
# debootstrap Debian bookworm (python3, pip, venv, ca-certificates) into a folder, then `docker import` it.
#
#   docker/build-base-image.sh [TAG]        default TAG: jinad/python:3.11-bookworm
#
# The daemon uses it through `jinad serve --base-image-template jinad/python:{python}-bookworm`
# (bookworm ships Python 3.11, so `python = 3.11` in `.jinad` maps to this tag).
# Needs root (debootstrap) and a Debian mirror reachable with apt's normal configuration.
set -euo pipefail

TAG="${1:-jinad/python:3.11-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm

if docker image inspect "$TAG" >/dev/null 2>&1 && [ "${FORCE:-0}" != 1 ]; then
  echo "base image $TAG already present (FORCE=1 rebuilds)"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "installing debootstrap" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

ROOT="$(mktemp -d /var/tmp/jinad-rootfs.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT

debootstrap --variant=minbase \
  --include=python3,python3-pip,python3-venv,ca-certificates \
  "$SUITE" "$ROOT" "$MIRROR"

# Slim the tree: apt lists and caches are not needed at run time.
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb
# Debian's Python stays marked "externally managed" (PEP 668), as on any stock Debian/Ubuntu base:
# jinad's runtime image installs requirements into its own virtual environment, not the system's.
ln -sf python3 "$ROOT/usr/bin/python"
[ -e "$ROOT/usr/bin/pip" ] || ln -sf pip3 "$ROOT/usr/bin/pip"

tar -C "$ROOT" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_DISABLE_PIP_VERSION_CHECK=1' \
  --change 'CMD ["python3"]' \
  - "$TAG"
echo "built $TAG"
