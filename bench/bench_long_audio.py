"""Memory of predict.py on a long recording: chunked inference keeps it
bounded whatever the length.

    .venv/bin/python bench/bench_long_audio.py [--long_audio_minutes 60] [--one_pass_minutes 5]

Writes a randomly initialised model at the default shapes (16 kHz, S = 4000,
E = 100, 256 LSTM units) and a --long_audio_minutes long 16-kHz WAV of noise to a
temporary directory, runs predict.py on it as a command (its default
--chunk_seconds, on the CPU) and reads the process's peak resident memory
from the kernel (wait4). For comparison it also runs predict.py in one pass
(--chunk_seconds 0) on --one_pass_minutes of the same audio, whose memory
grows with the length. Prints the machine and the figures, and as the last
line of stdout the JSON {"predict_max_rss_mb_60min", ...} that `make bench`
collects (target: under 2048 MB).
"""

import logging
import os
import subprocess
import sys
import tempfile
import time

from absl import flags
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import helper  # noqa: E402  (needs the repository on sys.path)
from bench import machine, options, random_model  # noqa: E402

# ---- Benchmark flags ----
options.define('long_audio_minutes')
flags.DEFINE_float('one_pass_minutes', 5.0, 'Length of the one-pass comparison run (0: none).',
                   lower_bound=0.0)
helper.define_flags('seed')

# ---- Logging flags ----
helper.define_flags('verbose')

FLAGS = flags.FLAGS
TARGET_MB = 2048
# Written a minute at a time, so that the benchmark itself stays small.
BLOCK_SECONDS = 60


def write_noise(path, minutes, seed):
    import soundfile
    rng = np.random.default_rng(seed)
    total = int(round(minutes * 60 * random_model.SAMPLE_RATE))
    with soundfile.SoundFile(path, 'w', random_model.SAMPLE_RATE, 1, 'PCM_16') as sound:
        for first in range(0, total, BLOCK_SECONDS * random_model.SAMPLE_RATE):
            size = min(BLOCK_SECONDS * random_model.SAMPLE_RATE, total - first)
            sound.write(rng.uniform(-0.5, 0.5, size).astype(np.float32))


def peak_rss_mb(arguments):
    """(peak resident MB, wall seconds) of predict.py with `arguments`."""
    command = [sys.executable, os.path.join(REPO, 'predict.py'), '--device', '-1',
               '--overwrite'] + arguments
    helper.development_msg('%s', ' '.join(command))
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError('predict.py failed:\n%s' % stderr.decode('utf-8', 'replace')[-3000:])
    # ru_maxrss is in KiB on Linux.
    return usage.ru_maxrss / 1024.0, time.perf_counter() - started


def run(minutes, one_pass_minutes, seed):
    with tempfile.TemporaryDirectory() as directory:
        model_dir = os.path.join(directory, 'model')
        os.makedirs(model_dir)
        random_model.random_checkpoint(model_dir, seed=seed)
        figures = {}
        runs = [('chunked', minutes, [])]
        if one_pass_minutes:
            runs.append(('one_pass', one_pass_minutes, ['--chunk_seconds', '0']))
        for name, length, extra in runs:
            audio = os.path.join(directory, '%s.wav' % name)
            write_noise(audio, length, seed)
            rss, seconds = peak_rss_mb(['--checkpoint', model_dir, '--audio', audio,
                                        '--output', os.path.join(directory, name + '.csv')]
                                       + extra)
            figures[name] = {'minutes': length, 'max_rss_mb': round(rss, 1),
                             'seconds': round(seconds, 1)}
            logging.info('predict.py %s on %.1f min of 16-kHz audio: max RSS %.0f MB, %.0f s',
                         name.replace('_', '-'), length, rss, seconds)
            os.remove(audio)
        return figures


def main(argv):
    del argv
    info = machine.start(FLAGS.verbose)
    figures = run(FLAGS.long_audio_minutes, FLAGS.one_pass_minutes, FLAGS.seed)
    rss = figures['chunked']['max_rss_mb']
    logging.info('max RSS %.0f MB on %.0f minutes (target < %d MB%s)', rss, FLAGS.long_audio_minutes,
                 TARGET_MB, '' if rss < TARGET_MB else ', MISSED')
    machine.hand_over({'predict_max_rss_mb_%dmin' % round(FLAGS.long_audio_minutes): rss}, figures, info)
    return 0


if __name__ == '__main__':
    helper.run(main)
