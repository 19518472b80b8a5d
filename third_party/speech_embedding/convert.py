"""Fetches openWakeWord 0.4.0 through pip and converts Google's speech embedding.

    python third_party/speech_embedding/convert.py [--wheel-dir DIR] [--check]

1. ``pip download --no-deps openwakeword==0.4.0`` (9.3 MB; nothing else is
   installed, the wheel is read as a zip);
2. reads ``openwakeword/resources/models/melspectrogram.onnx`` and
   ``embedding_model.onnx`` with the ``onnx`` package, checks that every op is
   the one this converter expects (op type, kernel, padding, stride, pooling)
   and that the STFT kernels are the DFT of a 400-sample periodic Hann window
   centred in 512 samples;
3. writes ``speech_embedding.npz`` beside this script: the Slaney mel matrix
   and the 20 convolutions in kws_jax's layout (kernels ``[time, mel, in,
   out]``; BatchNorm folded into the conv that precedes it in the ONNX graph
   where the graph already folded it, kept as four arrays for the first block
   where it follows a ReLU).

``--check`` converts into memory and fails unless the result equals the
committed file array for array (bit for bit), which is how the tests prove
the provenance of the committed weights.

openWakeWord's own wake-word heads (``alexa_v0.1.onnx``, ...) are CC BY-NC-SA
and are never read.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

PACKAGE = 'openwakeword==0.4.0'
WHEEL = 'openwakeword-0.4.0-py3-none-any.whl'
MODELS = 'openwakeword/resources/models/'
HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = os.path.join(HERE, 'speech_embedding.npz')

# The embedding network after its first block: (ONNX conv name, kernel (time,
# mel), pooling (time, mel) after the activation or None). Every conv is
# followed by LeakyReLU(0.2) and max(x, -0.4); 1x3 convs pad the mel axis by 1.
BODY = (
    ('conv2d_1', (1, 3), None), ('conv2d_2', (3, 1), (2, 2)),
    ('conv2d_3', (1, 3), None), ('conv2d_4', (3, 1), None),
    ('conv2d_5', (1, 3), None), ('conv2d_6', (3, 1), (1, 2)),
    ('conv2d_7', (1, 3), None), ('conv2d_8', (3, 1), None),
    ('conv2d_9', (1, 3), None), ('conv2d_10', (3, 1), (2, 2)),
    ('conv2d_11', (1, 3), None), ('conv2d_12', (3, 1), None),
    ('conv2d_13', (1, 3), None), ('conv2d_14', (3, 1), (1, 2)),
    ('conv2d_15', (1, 3), None), ('conv2d_16', (3, 1), None),
    ('conv2d_17', (1, 3), None), ('conv2d_18', (3, 1), (2, 2)),
)


def fetch_wheel(wheel_dir: str) -> str:
  """The openWakeWord 0.4.0 wheel in ``wheel_dir``, downloaded by pip if absent."""
  path = os.path.join(wheel_dir, WHEEL)
  if not os.path.exists(path):
    subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps',
                    '--quiet', PACKAGE, '-d', wheel_dir], check=True)
  return path


def read_onnx(wheel: str, name: str):
  """An ONNX model from the wheel, and its initializers by name."""
  import onnx  # pylint: disable=g-import-not-at-top
  from onnx import numpy_helper  # pylint: disable=g-import-not-at-top
  with zipfile.ZipFile(wheel) as archive:
    model = onnx.load_model_from_string(archive.read(MODELS + name))
  weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
  return model, weights


def onnx_bytes(wheel: str, name: str) -> bytes:
  """The raw ONNX file (for onnxruntime in the parity tests)."""
  with zipfile.ZipFile(wheel) as archive:
    return archive.read(MODELS + name)


def _attributes(node) -> dict:
  import onnx  # pylint: disable=g-import-not-at-top
  return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _expect(condition: bool, message: str) -> None:
  if not condition:
    raise ValueError(f'unexpected ONNX graph: {message}')


def convert_melspectrogram(wheel: str) -> dict[str, np.ndarray]:
  """``mel_weights [257, 32]``, after checking the STFT kernels and constants."""
  model, weights = read_onnx(wheel, 'melspectrogram.onnx')
  ops = [node.op_type for node in model.graph.node]
  _expect(ops.count('Conv') == 2 and 'ReduceMax' in ops and 'Log' in ops,
          f'melspectrogram ops {ops}')
  for node in model.graph.node:
    if node.op_type == 'Conv':
      attrs = _attributes(node)
      _expect(attrs['strides'] == [160] and attrs['kernel_shape'] == [512],
              f'STFT conv {attrs}')
  n = np.arange(512)
  k = np.arange(257)[:, None]
  window = np.zeros(512)
  window[56:456] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
  real = weights['0.stft.conv_real.weight'][:, 0]
  imag = weights['0.stft.conv_imag.weight'][:, 0]
  _expect(np.abs(real - np.cos(2 * np.pi * k * n / 512) * window).max() < 1e-6
          and np.abs(imag + np.sin(2 * np.pi * k * n / 512) * window).max()
          < 1e-6, 'STFT kernels are not a Hann(400)-in-512 DFT')
  scalars = sorted(float(v) for v in weights.values() if v.size == 1)
  _expect(np.isclose(scalars[0], 1e-10), f'power floor {scalars}')
  return {'mel_weights': weights['1.melW'].astype(np.float32)}


def _to_hwio(kernel: np.ndarray) -> np.ndarray:
  """ONNX ``[out, in, time, mel]`` -> kws_jax ``[time, mel, in, out]``."""
  return np.ascontiguousarray(kernel.transpose(2, 3, 1, 0)).astype(np.float32)


def convert_embedding(wheel: str) -> dict[str, np.ndarray]:
  """The 20 convolutions and the first BatchNorm of the embedding network."""
  model, weights = read_onnx(wheel, 'embedding_model.onnx')
  nodes = {node.name.split('/')[1]: node for node in model.graph.node
           if node.op_type in ('Conv', 'BatchNormalization', 'MaxPool')}
  out = {}

  # Block 0: pad the mel axis by one, 3x3 valid conv without bias, ReLU,
  # BatchNorm (not folded: a ReLU sits between), LeakyReLU, max(x, -0.4).
  conv0 = nodes['conv2d']
  _expect(_attributes(conv0)['kernel_shape'] == [3, 3] and len(conv0.input) == 2,
          'first conv')
  out['conv0/kernel'] = _to_hwio(weights[conv0.input[1]])
  batch_norm = nodes['batch_normalization']
  _expect(np.isclose(_attributes(batch_norm)['epsilon'], 1e-3), 'epsilon')
  for key, name in zip(('scale', 'offset', 'mean', 'variance'),
                       batch_norm.input[1:]):
    out[f'batch_norm0/{key}'] = weights[name].astype(np.float32)

  # Blocks 1-18: conv with the BatchNorm folded in by the ONNX exporter.
  pools = {node.name.split('/')[1]: node for node in model.graph.node
           if node.op_type == 'MaxPool'}
  for index, (name, kernel, _) in enumerate(BODY, start=1):
    node = nodes[name]
    attrs = _attributes(node)
    _expect(tuple(attrs['kernel_shape']) == kernel, f'{name} kernel {attrs}')
    _expect(attrs.get('pads', [0, 0, 0, 0]) ==
            ([0, 1, 0, 1] if kernel == (1, 3) else [0, 0, 0, 0]),
            f'{name} padding {attrs}')
    out[f'conv{index}/kernel'] = _to_hwio(weights[node.input[1]])
    out[f'conv{index}/bias'] = weights[node.input[2]].astype(np.float32)
  _expect(len(pools) == 5 and [tuple(_attributes(p)['kernel_shape'])
                               for p in pools.values()] ==
          [pool for _, _, pool in BODY if pool], 'pooling')
  last = nodes['conv2d_19']
  _expect(_attributes(last)['kernel_shape'] == [3, 1] and len(last.input) == 2,
          'last conv')
  out['conv19/kernel'] = _to_hwio(weights[last.input[1]])
  return out


def convert(wheel: str) -> dict[str, np.ndarray]:
  """Every array of ``speech_embedding.npz``, by name."""
  return {**convert_melspectrogram(wheel), **convert_embedding(wheel)}


def save(arrays: dict[str, np.ndarray], path: str) -> None:
  """Writes the npz atomically (uncompressed: float32 does not compress)."""
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  directory = os.path.dirname(os.path.abspath(path))
  fd, temporary = tempfile.mkstemp(dir=directory, suffix='.tmp')
  with os.fdopen(fd, 'wb') as file:
    file.write(buffer.getvalue())
  os.chmod(temporary, 0o644)
  os.replace(temporary, path)


def check(arrays: dict[str, np.ndarray], path: str) -> None:
  """Raises unless the npz at ``path`` holds exactly ``arrays``."""
  with np.load(path) as committed:
    if sorted(committed.files) != sorted(arrays):
      raise ValueError(f'{path}: arrays {sorted(committed.files)}, converted '
                       f'{sorted(arrays)}')
    for name, value in arrays.items():
      if not np.array_equal(committed[name], value):
        raise ValueError(f'{path}: {name} differs from the conversion')


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--wheel-dir', default=os.path.join(
      os.path.expanduser('~'), '.cache', 'kws_jax', 'wheels'))
  parser.add_argument('--out', default=WEIGHTS)
  parser.add_argument('--check', action='store_true',
                      help='compare with --out instead of writing it')
  args = parser.parse_args(argv)
  os.makedirs(args.wheel_dir, exist_ok=True)
  arrays = convert(fetch_wheel(args.wheel_dir))
  if args.check:
    check(arrays, args.out)
    print(f'{args.out}: equal to the conversion of {PACKAGE}')
  else:
    save(arrays, args.out)
    total = sum(a.size for a in arrays.values())
    print(f'wrote {args.out}: {len(arrays)} arrays, {total:,} values')


if __name__ == '__main__':
  main()
