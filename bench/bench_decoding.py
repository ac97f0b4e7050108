"""Memory and time of decoding an upload in the worst cases the service
accepts (ser.audio), on this machine.

    .venv/bin/python bench/bench_decoding.py [--decoding_seconds 600]

For each case, a FLAC of --decoding_seconds of silence at that rate and channel
count (a few MB: what a hostile caller sends under the 32 MiB body limit), then
how much the resident memory grows while decoding it to mono at 16 kHz (the model's rate at the paper's
settings, and the aligner's) and at 8 kHz (the demo model's), beside what
the decoded output itself takes. The cases are the largest rate x channels
the service accepts (ser.audio.MAX_SAMPLES_PER_SECOND) and a plain 16-kHz
mono upload.

Resident memory is measured in a fork per case (the peak, ru_maxrss, less
what the fork started with): it counts what libsndfile, soxr and numpy hold
alike, and 1 MiB is 1.05 MB.

Prints the machine and the figures, and as the last line of stdout the JSON
{"decode_peak_mb_worst", "decode_output_mb_worst", "decode_seconds_worst"}.
"""

import io
import json
import logging
import os
import resource
import sys
import time

from absl import app, flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import machine, options  # noqa: E402
from ser import audio  # noqa: E402

options.define('decoding_seconds')

FLAGS = flags.FLAGS
CASES = ((48000, 4), (96000, 2), (192000, 1), (16000, 1))
TARGETS = (8000, 16000)


def flac_upload(rate, channels, seconds):
    """FLAC bytes of silence, written a second at a time."""
    import soundfile
    buffer = io.BytesIO()
    second = np.zeros((rate, channels), dtype=np.int16)
    with soundfile.SoundFile(buffer, 'w', rate, channels, 'PCM_16', format='FLAC') as sound:
        for _ in range(int(seconds)):
            sound.write(second)
    return buffer.getvalue()


def measure(data):
    """(MB the resident memory grew by while decoding, output MB, seconds),
    in a fork of this process, so that each case starts from the same
    memory (the upload already in it) and is measured alone."""
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(reading)
        before = resident_mb()
        started = time.perf_counter()
        decoded = audio.decode_bytes(data, TARGETS, max_seconds=FLAGS.decoding_seconds + 1)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        output = sum(samples.nbytes for samples in decoded.values()) / 1e6
        os.write(writing, json.dumps([peak - before, output, seconds]).encode())
        os._exit(0)
    os.close(writing)
    with os.fdopen(reading) as pipe:
        figures = json.loads(pipe.read())
    os.waitpid(child, 0)
    return tuple(figures)


def resident_mb():
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError('no VmRSS in /proc/self/status')


def main(argv):
    del argv
    info = machine.start(verbose=False)
    results = {}
    for rate, channels in CASES:
        data = flac_upload(rate, channels, FLAGS.decoding_seconds)
        peak, output, seconds = measure(data)
        float32_input = FLAGS.decoding_seconds * rate * channels * 4 / 1e6
        results['%dx%d' % (rate, channels)] = {'upload_mb': len(data) / 1e6, 'peak_mb': peak,
                                              'output_mb': output, 'seconds': seconds}
        logging.info('%6d Hz x %d, %.0f s: upload %.1f MB, decoding grew memory by %.1f MiB for %.1f MB of '
                     'mono output at %s Hz (the file in float32: %.0f MB), %.2f s', rate,
                     channels, FLAGS.decoding_seconds, len(data) / 1e6, peak, output,
                     ' and '.join(map(str, TARGETS)), float32_input, seconds)
    worst = max((case for case in results.values()), key=lambda case: case['peak_mb'])
    machine.hand_over({'decode_peak_mb_worst': round(worst['peak_mb'], 1),
                       'decode_output_mb_worst': round(worst['output_mb'], 1),
                       'decode_seconds_worst': round(worst['seconds'], 2)}, results, info)


if __name__ == '__main__':
    app.run(main)
