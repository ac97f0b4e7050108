"""Speed of one training step of the model alone, without any input pipeline.

    .venv/bin/python bench/bench_model_step.py [--steps 10] [--xla]

The graph of train.py (models.build_model with a mask, the CCC loss, Adam with
lr 5e-4, beta1 0.9, beta2 0.99) on constant inputs held in non-trainable
variables at train.py's default shapes: B=5 windows of T=100 frames, S=4000
samples per 250 ms frame at 16 kHz, E=100 embedding values, 256 LSTM units.
After --warmup steps (graph optimisation, allocations) each of --steps steps
is timed on its own; the figure is B*T frames over the median step time:
the ceiling train.py can reach on this machine. The CPU seconds (all
threads) of each step are recorded too: unlike the wall time they barely move
when other processes share the machine. Prints the machine and the timings,
and as the last line of stdout a JSON dict
{"model_step_frames_per_s": ..., "details": {...}, "machine": {...}}.
"""

import logging
import os
import statistics
import sys
import time

from absl import app, flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import helper  # noqa: E402  (needs the repository on sys.path)
import losses  # noqa: E402
import models  # noqa: E402
import train  # noqa: E402
from bench import machine  # noqa: E402

tf = helper.import_tensorflow()

FLAGS = flags.FLAGS
DEFINE = dict(allow_override=True)
flags.DEFINE_integer('batch_size', 5, 'Windows per batch (train.py default).', lower_bound=1,
                     **DEFINE)
flags.DEFINE_integer('sequence_length', 100, 'Frames per window (train.py default).',
                     lower_bound=1, **DEFINE)
flags.DEFINE_integer('sample_rate', 16000, 'Audio rate; a frame holds rate/4 samples.',
                     lower_bound=1000, **DEFINE)
flags.DEFINE_integer('embedding_dim', 100, 'Embedding values per frame (data_generator default).',
                     lower_bound=1, **DEFINE)
flags.DEFINE_integer('hidden_units', models.DEFAULT_HIDDEN_UNITS, 'LSTM units.', lower_bound=1,
                     **DEFINE)
flags.DEFINE_integer('warmup', 3, 'Untimed steps first.', lower_bound=1, **DEFINE)
flags.DEFINE_integer('steps', 10, 'Timed steps; the median is reported.', lower_bound=1, **DEFINE)
flags.DEFINE_bool('xla', False, 'XLA JIT compilation of the step, as train.py --xla.', **DEFINE)
flags.DEFINE_integer('device', -1, 'GPU id; -1 (default) for the CPU.', **DEFINE)
flags.DEFINE_integer('seed', 0, 'Seed of the inputs and weights.', **DEFINE)
flags.DEFINE_bool('verbose', False, 'Development messages (every step time).', **DEFINE)


def constant_inputs(batch_size, steps, frame_samples, embedding_dim, seed):
    """Random audio, embeddings and labels as non-trainable variables (so they
    are not folded into the graph as constants), and an all-ones mask."""
    rng = np.random.default_rng(seed)
    values = {
        'audio': rng.uniform(-0.5, 0.5, (batch_size, steps, frame_samples)),
        'embeddings': rng.standard_normal((batch_size, steps, embedding_dim)),
        'labels': rng.uniform(-1, 1, (batch_size, steps, len(helper.DIMENSIONS))),
    }
    inputs = {name: tf.Variable(value.astype(np.float32), trainable=False, name=name)
              for name, value in values.items()}
    inputs['mask'] = tf.ones([batch_size, steps], tf.float32)
    return inputs


def training_step(inputs, hidden_units):
    """The same loss and optimiser as train.py's graph."""
    predictions = models.build_model(inputs['audio'], inputs['embeddings'], hidden_units,
                                     is_training=True, mask=inputs['mask'])
    loss, _ = losses.ccc_loss(predictions, inputs['labels'], inputs['mask'])
    optimizer = tf.train.AdamOptimizer(5e-4, beta1=0.9, beta2=0.99)
    return optimizer.minimize(loss, global_step=tf.train.get_or_create_global_step()), loss


def run(batch_size=5, sequence_length=100, sample_rate=16000, embedding_dim=100,
        hidden_units=models.DEFAULT_HIDDEN_UNITS, warmup=3, steps=10, xla=False, device=-1,
        seed=0):
    """{'frames_per_s', 'step_seconds' [steps], ...} of timed training steps."""
    graph = tf.Graph()
    with graph.as_default(), tf.device(helper.configure_device(device)):
        tf.set_random_seed(seed)
        inputs = constant_inputs(batch_size, sequence_length, sample_rate // 4, embedding_dim,
                                 seed)
        with train.xla_scope(xla):
            train_op, loss = training_step(inputs, hidden_units)
        with tf.Session(config=helper.session_config(device, xla=xla)) as session:
            session.run(tf.global_variables_initializer())
            for _ in range(warmup):
                session.run([train_op, loss])
            seconds, cpu_seconds = [], []
            for _ in range(steps):
                started, cpu_started = time.perf_counter(), time.process_time()
                session.run([train_op, loss])
                seconds.append(time.perf_counter() - started)
                cpu_seconds.append(time.process_time() - cpu_started)
    helper.development_msg('step times (s): %s', ', '.join('%.3f' % s for s in seconds))
    helper.development_msg('step CPU times (s): %s', ', '.join('%.3f' % s for s in cpu_seconds))
    frames = batch_size * sequence_length
    return {'frames_per_s': frames / statistics.median(seconds), 'step_seconds': seconds,
            'step_cpu_seconds': cpu_seconds, 'frames_per_step': frames}


def main(argv):
    del argv
    info = machine.start(FLAGS.verbose)
    helper.configure_device(FLAGS.device)
    result = run(FLAGS.batch_size, FLAGS.sequence_length, FLAGS.sample_rate, FLAGS.embedding_dim,
                 FLAGS.hidden_units, FLAGS.warmup, FLAGS.steps, FLAGS.xla, FLAGS.device,
                 FLAGS.seed)
    step = statistics.median(result['step_seconds'])
    logging.info('training step, B=%d T=%d S=%d E=%d%s: %.3f s median of %d (min %.3f, max %.3f)'
                 ': %.1f frames/s', FLAGS.batch_size, FLAGS.sequence_length,
                 FLAGS.sample_rate // 4, FLAGS.embedding_dim, ', XLA' if FLAGS.xla else '', step,
                 FLAGS.steps, min(result['step_seconds']), max(result['step_seconds']),
                 result['frames_per_s'])
    machine.hand_over({'model_step_frames_per_s': round(result['frames_per_s'], 2)},
                      {'step_seconds': [round(s, 4) for s in result['step_seconds']],
                       'step_cpu_seconds': [round(s, 4) for s in result['step_cpu_seconds']],
                       'xla': FLAGS.xla}, info)
    return 0


if __name__ == '__main__':
    app.run(main)
