"""Real-time factor of predict.py's model part on this machine.

    .venv/bin/python bench/bench_predict.py [--predict_duration 60] [--repeats 3] [--device -1]

Builds a randomly initialised checkpoint at the default shapes (16 kHz, so
S = 4000 samples per 250 ms frame; E = 100; 256 LSTM units) in a temporary
directory, loads it once with ser.inference.Predictor, and times
`Predictor.predict` on one --predict_duration second recording (random audio and
embeddings), after one warm-up run. TensorFlow start-up and model loading are
not timed: a service pays them once. Prints the machine and the timings, and
as the last line of stdout a JSON dict {"predict_rtf_60s": ...,
"predict_frames_per_s_60s": ...} (model seconds per audio second, the
median of the repeats, target <= 0.05; and the frames a second that makes,
which eval.py is held to) that `make bench` collects.
"""

import logging
import os
import statistics
import sys
import tempfile
import time

from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import helper  # noqa: E402  (needs the repository on sys.path)
from bench import machine, options, random_model  # noqa: E402
from ser import inference  # noqa: E402
from ser import defaults  # noqa: E402
from ser import paths  # noqa: E402

# ---- Benchmark flags ----
options.define('predict_duration', 'repeats')
helper.define_flags('seed')

# ---- Device flags ----
helper.define_flags('device')

# ---- Logging flags ----
helper.define_flags('verbose')

FLAGS = flags.FLAGS
SAMPLE_RATE = random_model.SAMPLE_RATE
EMBEDDING_DIM = random_model.EMBEDDING_DIM
TARGET_RTF = 0.05


def run(duration=60.0, repeats=5, device=-1, seed=0):
    """Median model seconds per audio second for one `duration` s recording."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as directory:
        random_model.random_checkpoint(directory, seed=seed)
        with inference.Predictor.from_checkpoint(directory, device=device) as predictor:
            samples = rng.uniform(-0.5, 0.5, int(duration * SAMPLE_RATE)).astype(np.float32)
            audio, _ = predictor.model_inputs(samples)
            embeddings = rng.standard_normal((len(audio), EMBEDDING_DIM)).astype(np.float32)
            predictor.predict(audio, embeddings)  # warm-up: graph optimisation, allocations
            seconds = []
            for _ in range(repeats):
                started = time.perf_counter()
                predictor.predict(audio, embeddings)
                seconds.append(time.perf_counter() - started)
    audio_seconds = len(audio) * paths.LABEL_STEP_MS / 1000.0
    helper.development_msg('runs (s): %s', ', '.join('%.3f' % s for s in seconds))
    return {'frames': len(audio), 'audio_seconds': audio_seconds, 'model_seconds': seconds,
            'rtf': statistics.median(seconds) / audio_seconds}


def main(argv):
    del argv
    info = machine.start(FLAGS.verbose)
    helper.configure_device(FLAGS.device)
    result = run(FLAGS.predict_duration, FLAGS.repeats, FLAGS.device, FLAGS.seed)
    logging.info('%.0f s of audio (%d frames, S=%d, E=%d, %d LSTM units): model %.3f s median '
                 'of %d (min %.3f); real-time factor %.4f (target <= %.2f%s)',
                 result['audio_seconds'], result['frames'], SAMPLE_RATE // 4, EMBEDDING_DIM,
                 defaults.HIDDEN_UNITS, statistics.median(result['model_seconds']),
                 FLAGS.repeats, min(result['model_seconds']), result['rtf'], TARGET_RTF,
                 '' if result['rtf'] <= TARGET_RTF else ', MISSED')
    seconds = round(FLAGS.predict_duration)
    frames_per_s = result['frames'] / statistics.median(result['model_seconds'])
    machine.hand_over({'predict_rtf_%ds' % seconds: round(result['rtf'], 5),
                       'predict_frames_per_s_%ds' % seconds: round(frames_per_s, 1)},
                      {'audio_seconds': result['audio_seconds'],
                       'model_seconds': [round(s, 4) for s in result['model_seconds']]}, info)
    return 0


if __name__ == '__main__':
    helper.run(main)
