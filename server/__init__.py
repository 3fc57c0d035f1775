"""The serving layer of vllm-videoanchor (installed as `vllm_videoanchor_server`): the
`vllm-videoanchor serve` command, and an ASGI middleware in front of vLLM's OpenAI server
that turns the `anchor` request option into the plugin's per-request processor kwargs."""
