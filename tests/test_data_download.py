"""Download, verification, resume and extraction, against a local HTTP server (never the internet)."""

import hashlib
import http.server
import io
import os
import tarfile
import threading

import numpy as np
import pytest

from kws_jax.data import audio, download, speech_commands as sc


def make_archive(tmp_path) -> bytes:
  """A small Speech Commands-like .tar.gz, members at the top level like the real one."""
  source = tmp_path / 'source'
  for word in ('yes', 'no'):
    for speaker in ('aaaa0000', 'bbbb1111', 'cccc2222'):
      audio.write_wav(
          source / word / f'{speaker}_nohash_0.wav',
          np.random.default_rng(len(word)).uniform(-0.5, 0.5, 4000),
      )
  audio.write_wav(
      source / '_background_noise_' / 'white_noise.wav', np.zeros(20000)
  )
  (source / 'testing_list.txt').write_text(
      'yes/aaaa0000_nohash_0.wav\nno/aaaa0000_nohash_0.wav\n'
  )
  (source / 'validation_list.txt').write_text(
      'yes/bbbb1111_nohash_0.wav\nno/bbbb1111_nohash_0.wav\n'
  )
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
    for name in sorted(os.listdir(source)):
      tar.add(source / name, arcname=f'./{name}')
  return buffer.getvalue()


class Server:
  """Serves {path: bytes} over HTTP on localhost, with optional Range support."""

  def __init__(self, files: dict, honor_range: bool = True):
    self.files, self.honor_range, self.requests = files, honor_range, []
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def do_GET(self):
        server.requests.append((self.path, self.headers.get('Range')))
        if self.path not in server.files:
          self.send_error(404)
          return
        content = server.files[self.path]
        start = 0
        range_header = self.headers.get('Range')
        if range_header and server.honor_range:
          start = int(range_header.removeprefix('bytes=').split('-')[0])
          if start >= len(content):
            self.send_error(416)
            return
          self.send_response(206)
          self.send_header(
              'Content-Range',
              f'bytes {start}-{len(content) - 1}/{len(content)}',
          )
        else:
          self.send_response(200)
        self.send_header('Content-Length', str(len(content) - start))
        self.end_headers()
        self.wfile.write(content[start:])

      def log_message(self, *args):
        pass

    self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    self.thread = threading.Thread(
        target=self.httpd.serve_forever, args=(0.01,), daemon=True
    )
    self.thread.start()

  def url(self, path: str) -> str:
    return f'http://127.0.0.1:{self.httpd.server_address[1]}{path}'

  def close(self):
    self.httpd.shutdown()
    self.httpd.server_close()


@pytest.fixture(scope='module')
def archive_bytes(tmp_path_factory):
  return make_archive(tmp_path_factory.mktemp('archive'))


@pytest.fixture
def server(archive_bytes):
  server = Server({'/data/speech_commands_v0.02.tar.gz': archive_bytes})
  yield server
  server.close()


def local_archive(server, content, **overrides):
  fields = {
      'url': server.url('/data/speech_commands_v0.02.tar.gz'),
      'sha256': hashlib.sha256(content).hexdigest(),
      'size': len(content),
  }
  return download.Archive(**{**fields, **overrides})


def test_published_archives():
  assert download.speech_commands_archive('v0.02').url.endswith(
      '/speech_commands_v0.02.tar.gz'
  )
  assert len(download.speech_commands_archive('v0.01').sha256) == 64
  assert download.SPEECH_COMMANDS_V2.size == 2428923189
  with pytest.raises(ValueError, match="version 'v3'"):
    download.speech_commands_archive('v3')


def test_download_and_extract(tmp_path, server, archive_bytes):
  root = tmp_path / 'root'
  data_dir = download.download_speech_commands(
      root, archive=local_archive(server, archive_bytes), progress=False
  )
  assert data_dir == str(root / 'speech_commands_v0.02')
  assert (root / 'speech_commands_v0.02.tar.gz').read_bytes() == archive_bytes
  assert sorted(os.listdir(data_dir)) == [
      '_background_noise_',
      'no',
      'testing_list.txt',
      'validation_list.txt',
      'yes',
  ]
  assert sorted(os.listdir(root)) == [
      'speech_commands_v0.02',
      'speech_commands_v0.02.tar.gz',
  ]
  dataset = sc.load_speech_commands(
      data_dir, ('yes', 'no'), use_split_lists=True
  )
  assert {
      os.path.relpath(e.path, data_dir)
      for e in dataset.split('testing')
      if e.path
  } == {'yes/aaaa0000_nohash_0.wav', 'no/aaaa0000_nohash_0.wav'}
  # A second call finds everything in place and makes no request.
  requests = len(server.requests)
  assert (
      download.download_speech_commands(
          root, archive=local_archive(server, archive_bytes)
      )
      == data_dir
  )
  assert len(server.requests) == requests


@pytest.mark.parametrize('fraction', [0.01, 0.5, 0.99])
def test_resume_after_a_truncated_partial_file(
    tmp_path, server, archive_bytes, fraction
):
  have = int(len(archive_bytes) * fraction)
  (tmp_path / 'a.tar.gz.part').write_bytes(archive_bytes[:have])
  path = download.download(
      local_archive(server, archive_bytes),
      tmp_path / 'a.tar.gz',
      progress=False,
  )
  assert server.requests == [
      ('/data/speech_commands_v0.02.tar.gz', f'bytes={have}-')
  ]
  assert open(path, 'rb').read() == archive_bytes
  assert not (tmp_path / 'a.tar.gz.part').exists()


def test_server_without_range_support_restarts(tmp_path, archive_bytes):
  server = Server({'/a.tar.gz': archive_bytes}, honor_range=False)
  try:
    (tmp_path / 'a.tar.gz.part').write_bytes(archive_bytes[:100])
    archive = download.Archive(
        server.url('/a.tar.gz'), hashlib.sha256(archive_bytes).hexdigest(), None
    )
    download.download(archive, tmp_path / 'a.tar.gz', progress=False)
    assert (tmp_path / 'a.tar.gz').read_bytes() == archive_bytes
  finally:
    server.close()


def test_complete_partial_file_is_verified_without_download(
    tmp_path, server, archive_bytes
):
  (tmp_path / 'a.tar.gz.part').write_bytes(archive_bytes)
  download.download(
      local_archive(server, archive_bytes),
      tmp_path / 'a.tar.gz',
      progress=False,
  )
  assert server.requests == []
  assert (tmp_path / 'a.tar.gz').read_bytes() == archive_bytes


def test_oversized_partial_file_restarts(tmp_path, server, archive_bytes):
  (tmp_path / 'a.tar.gz.part').write_bytes(archive_bytes + b'junk')
  download.download(
      local_archive(server, archive_bytes),
      tmp_path / 'a.tar.gz',
      progress=False,
  )
  assert server.requests == [('/data/speech_commands_v0.02.tar.gz', None)]
  assert (tmp_path / 'a.tar.gz').read_bytes() == archive_bytes


@pytest.mark.parametrize(
    'field, value, message',
    [
        ('sha256', '0' * 64, 'SHA-256 [0-9a-f]{64}, expected 0{64}'),
        ('size', 10, 'bytes, expected 10 bytes'),
    ],
)
def test_mismatch_raises_and_removes_the_partial_file(
    tmp_path, server, archive_bytes, field, value, message
):
  with pytest.raises(ValueError, match=message) as raised:
    download.download(
        local_archive(server, archive_bytes, **{field: value}),
        tmp_path / 'a.tar.gz',
        progress=False,
    )
  assert 'a.tar.gz' in str(raised.value)
  assert os.listdir(tmp_path) == []


def test_http_error_names_the_url(tmp_path, server, archive_bytes):
  archive = local_archive(
      server, archive_bytes, url=server.url('/missing.tar.gz')
  )
  with pytest.raises(OSError, match='missing.tar.gz: HTTP 404'):
    download.download(archive, tmp_path / 'a.tar.gz', progress=False)


def test_unreachable_server(tmp_path):
  archive = download.Archive(
      'http://127.0.0.1:9/none.tar.gz', None, None
  )  # Port 9: discard, closed.
  with pytest.raises(OSError, match='none.tar.gz'):
    download.download(archive, tmp_path / 'a.tar.gz', timeout=2, progress=False)


def test_corrupt_archive_leaves_no_directory(tmp_path):
  (tmp_path / 'bad.tar.gz').write_bytes(b'\x1f\x8b not really gzip')
  with pytest.raises(ValueError, match='bad.tar.gz: not a readable .tar.gz'):
    download.extract(tmp_path / 'bad.tar.gz', tmp_path / 'out')
  assert os.listdir(tmp_path) == ['bad.tar.gz']


def test_extract_refuses_members_outside_the_target(tmp_path):
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
    info = tarfile.TarInfo('../evil.txt')
    info.size = 4
    tar.addfile(info, io.BytesIO(b'evil'))
  (tmp_path / 'evil.tar.gz').write_bytes(buffer.getvalue())
  with pytest.raises(ValueError, match='evil.tar.gz: .*outside'):
    download.extract(tmp_path / 'evil.tar.gz', tmp_path / 'out' / 'data')
  assert (
      not (tmp_path / 'out' / 'evil.txt').exists()
      and not (tmp_path / 'evil.txt').exists()
  )
  assert not (tmp_path / 'out' / 'data').exists()
