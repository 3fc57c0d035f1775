#!/bin/sh
# A stand-in for the official python:3.11-slim-bookworm image, for machines that reach Debian's
# packages but no container registry (the tests and CI here): a Debian bookworm root made with
# debootstrap (Python 3.11, its headers, pip and venv), imported into the local engine under
# the tag given (default videoanchor-standin/python:3.11-slim-bookworm). Not for production.
# Does nothing when that tag exists. DEBIAN_MIRROR picks the mirror (debootstrap's default).
set -eu
tag="${1:-videoanchor-standin/python:3.11-slim-bookworm}"
docker="${DOCKER:-docker}"
if $docker image inspect "$tag" >/dev/null 2>&1; then
    exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends debootstrap >/dev/null || { apt-get update >/dev/null && apt-get install -y --no-install-recommends debootstrap >/dev/null; }
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# shellcheck disable=SC2086
debootstrap --variant=minbase --include=python3,python3-dev,python3-pip,python3-venv,ca-certificates \
    bookworm "$work/root" ${DEBIAN_MIRROR:-} >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; exit 1; }
# as in the official image: pip may install outside a virtual environment, `python` exists
rm -f "$work"/root/usr/lib/python3*/EXTERNALLY-MANAGED
ln -sf python3 "$work/root/usr/bin/python"
rm -rf "$work"/root/var/lib/apt/lists/* "$work"/root/var/cache/apt/archives/*.deb
tar -C "$work/root" -c . | $docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$tag" >/dev/null
echo "built the stand-in base $tag"
