"""Training: ``train_and_evaluate(config, workdir)`` and its parts.

    python -m kws_jax.train --config experiments/configs/cnn.py --workdir runs/cnn
"""

from kws_jax.train.loop import Evaluation, evaluate, train_and_evaluate

__all__ = ['Evaluation', 'evaluate', 'train_and_evaluate']
