"""The floating-point precision of the sampler: double, as Stan samples, scoped to bglmer's own
calls (jax.enable_x64) so that a user's global JAX setting is left alone."""
from __future__ import annotations

X64 = True


def x64_scope(enabled: bool = True):
    """Context manager enabling 64-bit JAX arrays inside bglmer only (older JAX: experimental)."""
    import jax
    ctx = getattr(jax, "enable_x64", None)
    if ctx is None or not callable(ctx):
        from jax.experimental import enable_x64 as ctx
    return ctx(enabled)
