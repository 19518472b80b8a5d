"""Wake words: streaming validation, checkpoint selection, negative mining.

  kws_jax.wakeword.streams    FRR and FA/h over many long streams, batched;
  kws_jax.wakeword.selection  the best checkpoint by FRR at a target FA/h;
  kws_jax.wakeword.mining     hard negatives: windows a model fires on.

This stage sits after training and detection: it drives
``kws_jax.train.train_and_evaluate`` with a selector and window banks.
"""
