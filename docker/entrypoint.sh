#!/bin/sh
# Starts `vllm-videoanchor serve`. MODEL (a hub id or a directory) picks the model; without
# it, the tiny random-weight model in VIDEOANCHOR_TINY_DIR is served (built there on first
# use). HOST / PORT set the address; any arguments go to the server (vLLM flags included).
set -eu

model="${MODEL:-}"
if [ -z "$model" ]; then
    model="${VIDEOANCHOR_TINY_DIR:-/models/tiny}"
    if [ ! -f "$model/config.json" ]; then
        python -m vllm_videoanchor.testing "$model" >/dev/null
    fi
fi

exec vllm-videoanchor serve "$model" --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" "$@"
