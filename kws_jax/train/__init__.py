"""Training: ``train_and_evaluate(config, workdir)`` and its parts.

    python -m kws_jax.train --config experiments/configs/cnn.py --workdir runs/cnn
"""

from kws_jax.train.checkpoints import load_run
from kws_jax.train.loop import (
    Evaluation, Selection, Selector, evaluate, train_and_evaluate,
)

__all__ = ['Evaluation', 'Selection', 'Selector', 'evaluate', 'load_run',
           'train_and_evaluate']
