"""kws_jax: streaming keyword spotting in JAX."""
