"""The main job runs end to end and writes its plot."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_streams_like_non_streaming(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'kws_jax.demo', '--out', str(tmp_path),
       '--seconds', '1.5'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'Total params: 606,732' in result.stdout
  line = next(l for l in result.stdout.splitlines() if 'max |diff|' in l)
  assert line.startswith('26 windows of 1 s over 1.5 s')
  assert float(line.rsplit('= ', 1)[1]) < 1e-5
  assert (tmp_path / 'streaming_demo.png').stat().st_size > 10_000
