"""Real-time factor of predict.py's model part on this machine.

    .venv/bin/python bench/bench_predict.py [--duration 60] [--repeats 5] [--device -1]

Builds a randomly initialised checkpoint at the default shapes (16 kHz, so
S = 4000 samples per 250 ms frame; E = 100; 256 LSTM units) in a temporary
directory, loads it once with predict.Predictor, and times
`Predictor.predict` on one --duration second recording (random audio and
embeddings), after one warm-up run. TensorFlow start-up and model loading are
not timed: a service pays them once. Prints the machine and the timings, and
as the last line of stdout a JSON dict {"predict_rtf_60s": ...} (model
seconds per audio second, the median of the repeats; target <= 0.05) that
`make bench` collects.
"""

import logging
import os
import statistics
import sys
import tempfile
import time

from absl import app, flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import helper  # noqa: E402  (needs the repository on sys.path)
import models  # noqa: E402
import predict  # noqa: E402
from bench import machine  # noqa: E402

tf = helper.import_tensorflow()

# Every flag allows override: predict.py, imported above, defines some of them.
FLAGS = flags.FLAGS
flags.DEFINE_float('duration', 60.0, 'Seconds of audio in the timed recording.', lower_bound=0.25,
                   allow_override=True)
flags.DEFINE_integer('repeats', 5, 'Timed runs; the median is reported.', lower_bound=1,
                     allow_override=True)
flags.DEFINE_integer('device', -1, 'GPU id; -1 (default) for the CPU.', allow_override=True)
flags.DEFINE_integer('seed', 0, 'Seed of the random weights and inputs.', allow_override=True)
flags.DEFINE_bool('verbose', False, 'Development messages.', allow_override=True)

# The defaults of data_generator.py and train.py.
SAMPLE_RATE = 16000
EMBEDDING_DIM = 100
TARGET_RTF = 0.05


def random_checkpoint(directory, sample_rate, embedding_dim, hidden_units, seed):
    """A train.py-like directory (dataset.json, model.json, model.ckpt-0)
    with randomly initialised weights."""
    dataset = {'sample_rate': sample_rate, 'frame_samples': sample_rate // 4,
               'label_step_ms': helper.LABEL_STEP_MS, 'embedding_dim': embedding_dim,
               'embeddings': None, 'label_names': list(helper.DIMENSIONS)}
    helper.write_json(os.path.join(directory, models.DATASET_FILE), dataset)
    models.write_model_config(directory, hidden_units, dataset)
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(seed)
        audio, embeddings = models.inference_inputs(dataset['frame_samples'], embedding_dim)
        models.build_model(audio, embeddings, hidden_units, is_training=False)
        with tf.Session(graph=graph) as session:
            session.run(tf.global_variables_initializer())
            tf.train.Saver(models.model_variables()).save(
                session, os.path.join(directory, models.CHECKPOINT_PREFIX), global_step=0)


def run(duration=60.0, repeats=5, device=-1, seed=0):
    """Median model seconds per audio second for one `duration` s recording."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as directory:
        random_checkpoint(directory, SAMPLE_RATE, EMBEDDING_DIM, models.DEFAULT_HIDDEN_UNITS, seed)
        with predict.Predictor.from_checkpoint(directory, device=device) as predictor:
            samples = rng.uniform(-0.5, 0.5, int(duration * SAMPLE_RATE)).astype(np.float32)
            audio, _ = predictor.model_inputs(samples)
            embeddings = rng.standard_normal((len(audio), EMBEDDING_DIM)).astype(np.float32)
            predictor.predict(audio, embeddings)  # warm-up: graph optimisation, allocations
            seconds = []
            for _ in range(repeats):
                started = time.perf_counter()
                predictor.predict(audio, embeddings)
                seconds.append(time.perf_counter() - started)
    audio_seconds = len(audio) * helper.LABEL_STEP_MS / 1000.0
    helper.development_msg('runs (s): %s', ', '.join('%.3f' % s for s in seconds))
    return {'frames': len(audio), 'audio_seconds': audio_seconds, 'model_seconds': seconds,
            'rtf': statistics.median(seconds) / audio_seconds}


def main(argv):
    del argv
    info = machine.start(FLAGS.verbose)
    helper.configure_device(FLAGS.device)
    result = run(FLAGS.duration, FLAGS.repeats, FLAGS.device, FLAGS.seed)
    logging.info('%.0f s of audio (%d frames, S=%d, E=%d, %d LSTM units): model %.3f s median '
                 'of %d (min %.3f); real-time factor %.4f (target <= %.2f%s)',
                 result['audio_seconds'], result['frames'], SAMPLE_RATE // 4, EMBEDDING_DIM,
                 models.DEFAULT_HIDDEN_UNITS, statistics.median(result['model_seconds']),
                 FLAGS.repeats, min(result['model_seconds']), result['rtf'], TARGET_RTF,
                 '' if result['rtf'] <= TARGET_RTF else ', MISSED')
    key = 'predict_rtf_%ds' % round(FLAGS.duration)
    machine.hand_over({key: round(result['rtf'], 5)},
                      {'audio_seconds': result['audio_seconds'],
                       'model_seconds': [round(s, 4) for s in result['model_seconds']]}, info)
    return 0


if __name__ == '__main__':
    app.run(main)
