"""A serve.py process for the tests that talk to it (test_serve.py,
test_live_page.py): the server as a command on a free loopback port, the
seeded random model it serves, the sentences its tests speak, and how they
send audio."""

import base64
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import time

import pytest
import soundfile

from model_fixtures import PYTHON, REPO, write_random_checkpoint

START_TIMEOUT_SECONDS = 120
SENTENCES = [
    'the engine is quiet and the seat is great',
    'the brakes are awful and the price is rough',
    'i love how smooth this car feels on the motorway',
    'the seat is loud and the engine is slow',
    'what a fast and quiet ride that was',
    'honestly the price is great for such a smooth engine',
    'the brake pedal feels rough and the seat is awful',
    'fast slow great awful engine seat brake quiet',
]


# --------------------------------------------------------------------------
# The server as a command
# --------------------------------------------------------------------------
def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


class Server:
    """serve.py in a subprocess on 127.0.0.1:<free port>, with its own
    working and temporary directories (so that a file it leaves is seen) and
    its log in a file."""

    def __init__(self, root, *args):
        self.port = free_port()
        self.work_dir, self.tmp_dir = root / 'cwd', root / 'tmp'
        self.work_dir.mkdir(parents=True)
        self.tmp_dir.mkdir()
        self.log_path = root / 'serve.log'
        environment = dict(os.environ, TMPDIR=str(self.tmp_dir))
        with open(self.log_path, 'w') as log:
            self.process = subprocess.Popen(
                [PYTHON, os.path.join(REPO, 'serve.py'), '--host', '127.0.0.1', '--port',
                 str(self.port), '--device', '-1'] + [str(a) for a in args],
                cwd=self.work_dir, env=environment, stdout=log, stderr=subprocess.STDOUT)
        self.wait_until_ready()

    def wait_until_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, 'serve.py exited:\n' + self.log()
            try:
                if self.request('GET', '/health')[0] == 200:
                    return
            except OSError:
                pass   # not listening yet
            time.sleep(0.2)
        raise AssertionError('serve.py not ready after %d s:\n%s'
                             % (START_TIMEOUT_SECONDS, self.log()))

    def request(self, method, path, body=None, headers=None, raw=False):
        """(status, parsed JSON body (raw: the bytes), headers) of one HTTP request."""
        connection = http.client.HTTPConnection('127.0.0.1', self.port, timeout=120)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            content = response.read()
            return (response.status, content if raw else json.loads(content),
                    dict(response.getheaders()))
        finally:
            connection.close()

    def recognise(self, payload):
        """(status, JSON) of POST /emotion-recognition; payload: a dict (sent
        as JSON) or raw bytes."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        status, answer, _ = self.request('POST', '/emotion-recognition', body,
                                         {'Content-Type': 'application/json'})
        return status, answer

    def log(self):
        return self.log_path.read_text()

    def stop(self):
        """SIGTERM, as docker stop sends; returns the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@pytest.fixture(scope='module')
def checkpoint(tiny_dataset, tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp('serve_model') / 'checkpoints',
                                   tiny_dataset)


def encoded(data):
    return base64.b64encode(data).decode('ascii')


def wav_bytes(samples, rate, subtype='PCM_16', container='WAV'):
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, subtype=subtype, format=container)
    return buffer.getvalue()
