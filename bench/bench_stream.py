"""Latency of serve.py's WebSocket /emotion-stream at real-time pace, and
how many streams this machine holds at real time.

    .venv/bin/python bench/bench_stream.py [--stream_seconds 60] [--streams 1,4,8,16,24,32]

Writes a randomly initialised model at the default shapes (16 kHz, S = 4000,
E = 100, 256 LSTM units) to a temporary directory, starts serve.py on a free
loopback port and streams 16-kHz 16-bit PCM noise to it as a telephony stack
would: a 20 ms piece every 20 ms, in real time, acoustic only. A frame's
latency runs from sending the piece that holds its last sample to receiving
its prediction.

1. One stream for --stream_seconds: `stream_frame_latency_ms_p95` (target < 300 ms).
2. For each count of --streams, that many streams at once for
   --concurrent_seconds while one client sends POST /emotion-recognition
   (5 s of audio, no transcript) every --request_interval seconds: each
   count's frame latency and the requests' latency.
   `stream_max_realtime_streams` is the largest count up to which every
   count tried kept its frames' p95 under 300 ms; the requests' p50 beside
   the idle one tells whether the streams starve them.

All clients run in this one process on asyncio (the websockets library),
which takes CPU from the same cores the server uses. Prints the machine and
the figures, and as the last line of stdout the JSON that `make bench`
collects.
"""

import asyncio
import base64
import io
import json
import logging
import os
import sys
import tempfile
import threading
import time

from absl import flags
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import helper  # noqa: E402  (needs the repository on sys.path)
from bench import machine, options, random_model, serving  # noqa: E402

# ---- Benchmark flags ----
options.define('stream_seconds')
flags.DEFINE_list('streams', ['1', '4', '8', '16', '24', '32'],
                  'Counts of concurrent streams to try (each for --concurrent_seconds).')
flags.DEFINE_float('concurrent_seconds', 20.0, 'Length of each concurrent run.', lower_bound=2.0)
flags.DEFINE_integer('piece_ms', 20, 'Audio per message, sent every piece_ms.', lower_bound=1)
flags.DEFINE_float('request_interval', 1.0, 'Seconds between the POST requests sent during '
                   'the concurrent runs.', lower_bound=0.0)
helper.define_flags('stream_threads', 'seed')

# ---- Device and logging flags ----
helper.define_flags('device', 'verbose')

FLAGS = flags.FLAGS
RATE = random_model.SAMPLE_RATE
FRAME_SAMPLES = RATE // 4
TARGET_P95_MS = 300.0
REQUEST_SECONDS = 5.0


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------
def request_body(seed):
    import soundfile
    samples = np.random.default_rng(seed).uniform(-0.5, 0.5, int(REQUEST_SECONDS * RATE))
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, RATE, subtype='PCM_16', format='WAV')
    return json.dumps({'audio': base64.b64encode(buffer.getvalue()).decode('ascii')}).encode()


def requests_at_intervals(port, body, stop, interval):
    """Latencies (s) of POST requests, one every `interval` s (or as soon as
    the one before is answered), until `stop` is set."""
    latencies = []
    while not stop.is_set():
        started = time.monotonic()
        status, seconds = serving.request(port, 'POST', '/emotion-recognition', body)
        if status != 200:
            raise RuntimeError('request answered %d' % status)
        latencies.append(seconds)
        stop.wait(max(0.0, interval - (time.monotonic() - started)))
    return latencies


# --------------------------------------------------------------------------
# Streams at real-time pace
# --------------------------------------------------------------------------
def noise_pcm(seconds, seed):
    samples = np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * RATE))
    return np.round(samples * 32767).astype('<i2').tobytes()


async def one_stream(port, audio, piece_ms, start_delay):
    """Frame latencies (s) of one stream of `audio` sent at real-time pace."""
    from websockets.asyncio.client import connect
    await asyncio.sleep(start_delay)
    piece = 2 * RATE * piece_ms // 1000
    sent_at = {}            # frame index -> when the piece holding its last sample went
    latencies = []
    async with connect('ws://127.0.0.1:%d/emotion-stream' % port, proxy=None,
                       max_size=None, open_timeout=120) as connection:
        await connection.send(json.dumps({'type': 'start', 'format': 'pcm_s16le',
                                          'sample_rate': RATE}))
        json.loads(await connection.recv())

        async def receive():
            async for message in connection:
                reply = json.loads(message)
                if reply['type'] == 'frame':
                    index = reply['timestamp'] // 250
                    if index in sent_at:
                        latencies.append(time.perf_counter() - sent_at[index])
                elif reply['type'] in ('summary', 'error'):
                    return reply

        receiver = asyncio.create_task(receive())
        loop = asyncio.get_running_loop()
        started = loop.time()
        for number, start in enumerate(range(0, len(audio), piece)):
            await asyncio.sleep(max(0.0, started + number * piece_ms / 1000 - loop.time()))
            await connection.send(audio[start:start + piece])
            now = time.perf_counter()
            last_sample = (start + len(audio[start:start + piece])) // 2
            for index in range(start // 2 // FRAME_SAMPLES, last_sample // FRAME_SAMPLES):
                sent_at.setdefault(index, now)
        await connection.send(json.dumps({'type': 'end'}))
        summary = await receiver
    if summary['type'] != 'summary':
        raise RuntimeError('stream ended with %s' % summary)
    return latencies


def run_streams(port, count, seconds, seed, body=None):
    """(frame latencies of every stream, request latencies) of `count`
    streams at once (starts spread over one frame), with POST requests
    alongside when `body` is given."""
    stop, requests = threading.Event(), []
    worker = None
    if body is not None:
        worker = threading.Thread(target=lambda: requests.extend(
            requests_at_intervals(port, body, stop, FLAGS.request_interval)))
        worker.start()

    async def streams():
        return await asyncio.gather(*[
            one_stream(port, noise_pcm(seconds, seed + index), FLAGS.piece_ms,
                       0.25 * index / count) for index in range(count)])

    try:
        runs = asyncio.run(streams())
    finally:
        stop.set()
        if worker is not None:
            worker.join()
    return [latency for run in runs for latency in run], requests


def percentile_ms(values, q):
    return round(1000 * float(np.percentile(values, q)), 1) if values else None


def main(argv):
    del argv
    info = machine.start(FLAGS.verbose)
    counts = sorted({int(count) for count in FLAGS.streams})
    with tempfile.TemporaryDirectory(prefix='bench-stream-') as directory:
        model_dir = os.path.join(directory, 'model')
        os.makedirs(model_dir)
        # serve.py loads the word vectors at start: a few, though the streams send no words.
        random_model.random_checkpoint(model_dir, seed=FLAGS.seed, words=('engine', 'seat'))
        port = serving.free_port()
        log_path = os.path.join(directory, 'serve.log')
        server = serving.start_server(
            model_dir, port, log_path,
            ['--device', str(FLAGS.device), '--max_streams', str(max(counts + [1])),
             '--stream_threads', str(FLAGS.stream_threads), '--stream_idle_seconds', '60'])
        try:
            body = request_body(FLAGS.seed)
            serving.request(port, 'POST', '/emotion-recognition', body)     # warm-up
            idle_requests = [serving.request(port, 'POST', '/emotion-recognition', body)[1]
                             for _ in range(5)]
            single, _ = run_streams(port, 1, FLAGS.stream_seconds, FLAGS.seed)
            concurrent = {}
            for count in counts:
                latencies, requests = run_streams(port, count, FLAGS.concurrent_seconds,
                                                  FLAGS.seed, body)
                concurrent[count] = {
                    'frame_p50_ms': percentile_ms(latencies, 50),
                    'frame_p95_ms': percentile_ms(latencies, 95),
                    'frames': len(latencies), 'requests': len(requests),
                    'request_p50_ms': percentile_ms(requests, 50),
                    'load_average': machine.load_average()}
                logging.info('%d streams: frame latency p50 %s ms, p95 %s ms; POST p50 %s ms '
                             '(%d requests; idle %s ms)', count,
                             concurrent[count]['frame_p50_ms'], concurrent[count]['frame_p95_ms'],
                             concurrent[count]['request_p50_ms'], len(requests),
                             percentile_ms(idle_requests, 50))
        finally:
            server.terminate()
            server.wait(timeout=60)
        with open(log_path) as log:
            helper.development_msg('server log:\n%s', log.read())
    p95 = percentile_ms(single, 95)
    # The largest count up to which every count tried held real time.
    held = []
    for count in counts:
        if concurrent[count]['frame_p95_ms'] >= TARGET_P95_MS:
            break
        held.append(count)
    logging.info('one stream at real time (%.0f s, %d ms pieces): frame latency p50 %.0f ms, '
                 'p95 %.0f ms (target < %.0f%s); real time held up to %s concurrent streams',
                 FLAGS.stream_seconds, FLAGS.piece_ms, percentile_ms(single, 50), p95, TARGET_P95_MS,
                 '' if p95 < TARGET_P95_MS else ', MISSED', max(held) if held else 0)
    machine.hand_over({'stream_frame_latency_ms_p95': p95,
                       'stream_max_realtime_streams': max(held) if held else 0},
                      {'single': {'seconds': FLAGS.stream_seconds, 'frames': len(single),
                                  'p50_ms': percentile_ms(single, 50),
                                  'max_ms': percentile_ms(single, 100)},
                       'idle_request_p50_ms': percentile_ms(idle_requests, 50),
                       'concurrent': concurrent, 'piece_ms': FLAGS.piece_ms,
                       'stream_threads': FLAGS.stream_threads}, info)
    return 0


if __name__ == '__main__':
    helper.run(main)
