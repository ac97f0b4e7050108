"""serve.py as the service benchmarks run it: on a free loopback port, with a
model directory, and one HTTP request at a time on a new connection."""

import http.client
import os
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT_SECONDS = 300


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def start_server(model_dir, port, log_path, arguments):
    """serve.py --checkpoint model_dir on 127.0.0.1:port with `arguments`, its
    output in log_path; returns the process once /health answers."""
    command = [sys.executable, os.path.join(REPO, 'serve.py'), '--checkpoint', model_dir,
               '--host', '127.0.0.1', '--port', str(port)] + list(arguments)
    with open(log_path, 'w') as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(log_path) as log:
                raise RuntimeError('serve.py exited:\n' + log.read())
        try:
            if request(port, 'GET', '/health')[0] == 200:
                return process
        except OSError:
            time.sleep(0.2)   # not listening yet
    process.kill()
    raise RuntimeError('serve.py not ready after %d s' % START_TIMEOUT_SECONDS)


def request(port, method, path, body=None, timeout=300):
    """(status, seconds) of one HTTP request on a new connection."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    try:
        connection.request(method, path, body=body,
                           headers={'Content-Type': 'application/json'} if body else {})
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        connection.close()
