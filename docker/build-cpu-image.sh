#!/bin/sh
# `make image-cpu`: builds vllm-videoanchor:0.1.0-cpu (IMAGE) from docker/Dockerfile.cpu on the
# Docker engine that `docker` reaches (DOCKER_HOST as usual).
#  - base: the official python:3.11-slim-bookworm where it is present or can be pulled;
#    otherwise a local stand-in made with debootstrap (docker/standin-base.sh: for tests and
#    machines without a registry); BASE_IMAGE=... picks one.
#  - wheels: pip on the host fills docker/wheelhouse/ (torch's CPU build, the package's cpu
#    extra and our build backend) with the same configuration `make` installs .venv with
#    (PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu where torch+cpu is not found);
#    the builder stage installs from it alone, and it does not ship in the image.
# Builds run with --network host (Debian's packages; no bridge network) on the classic builder.
set -eu
cd "$(dirname "$0")/.."
tag="${IMAGE:-vllm-videoanchor:0.1.0-cpu}"
docker="${DOCKER:-docker}"
python="${PYTHON:-python3}"
official=python:3.11-slim-bookworm
standin=videoanchor-standin/python:3.11-slim-bookworm
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

base="${BASE_IMAGE:-}"
if [ -z "$base" ]; then
    if $docker image inspect "$official" >/dev/null 2>&1 || timeout 120 $docker pull -q "$official" >/dev/null 2>&1; then
        base="$official"
    else
        echo "image-cpu: $official cannot be pulled here; building on the debootstrap stand-in $standin"
        DOCKER="$docker" sh docker/standin-base.sh "$standin"
        base="$standin"
    fi
fi

if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "image-cpu: the wheelhouse is filled for the image's Python 3.11; set PYTHON to a Python 3.11" >&2
    exit 1
fi
# the wheelhouse is filled again only when pyproject.toml (the pins) changed, or WHEELHOUSE_REFRESH=1
stamp="$(sha256sum pyproject.toml | cut -d' ' -f1)"
start=$(date +%s)
if [ "${WHEELHOUSE_REFRESH:-0}" != 1 ] && [ "$(cat docker/wheelhouse/.pyproject.sha256 2>/dev/null)" = "$stamp" ]; then
    echo "image-cpu: wheelhouse up to date ($(ls docker/wheelhouse | wc -l) wheels, pyproject.toml unchanged)"
elif ! { "$python" -m pip download --quiet -d docker/wheelhouse torch==2.13.0 '.[cpu]' \
        && "$python" -m pip download --quiet --no-deps -d docker/wheelhouse setuptools==84.2.1; } >"$log" 2>&1; then
    grep -v "is ignored: it is neither a file nor a directory" "$log" | tail -30 >&2
    exit 1
else
    echo "$stamp" > docker/wheelhouse/.pyproject.sha256
    echo "image-cpu: wheelhouse $(ls docker/wheelhouse | wc -l) wheels, $(du -sh docker/wheelhouse | cut -f1), $(( $(date +%s) - start )) s"
fi

start=$(date +%s)
DOCKER_BUILDKIT=0 $docker build --network host --build-arg BASE_IMAGE="$base" -f docker/Dockerfile.cpu -t "$tag" .
echo "image-cpu: built $tag on $base in $(( $(date +%s) - start )) s," \
     "$($docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.2f GB", $1 / 1e9}')"
