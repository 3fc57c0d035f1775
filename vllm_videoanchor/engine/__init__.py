"""The vLLM glue (thin). Nothing here knows about HTTP."""
