"""Wake words: streaming validation, checkpoint selection, negative mining.

  kws_jax.wakeword.streams    FRR and FA/h over many long streams, batched;
  kws_jax.wakeword.selection  the best checkpoint by recall near a target FA/h;
  kws_jax.wakeword.mining     hard negatives: windows a model fires on;
  kws_jax.wakeword.recipe     custom wake words from text, step by step;
  python -m kws_jax.wakeword  the recipe end to end (the README's main job).

This stage sits after training, export and detection: it drives
``kws_jax.train.train_and_evaluate`` with a selector and window banks and
``kws_jax.export.export_run`` on the result.
"""
