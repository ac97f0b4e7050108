"""Speed of one training step of the model alone, without any input pipeline.

    .venv/bin/python bench/bench_model_step.py [--model_steps 10] [--xla] [--precisions fp32,bf16]

The training step of train.py (ser.training.training_step: models.build_model
with a mask, the CCC loss, Adam with lr 5e-4, beta1 0.9, beta2 0.99) on constant inputs held in non-trainable
variables at train.py's default shapes: B=5 windows of T=100 frames, S=4000
samples per 250 ms frame at 16 kHz, E=100 embedding values, 256 LSTM units,
every frame real and computed (--noskip_padding: what skipping the padding
saves depends on the windows, and bench_train.py measures it).
After --warmup steps (graph optimisation, allocations) each of --model_steps steps
is timed on its own; the figure is B*T frames over the median step time:
the ceiling train.py can reach on this machine. The CPU seconds (all
threads) of each step are recorded too: unlike the wall time they barely move
when other processes share the machine. Each of --precisions (train.py
--precision; default fp32 and the mixed precision of the device, bf16 on the
CPU even without native bf16 instructions, to show what it costs there) has
its own graph and session, and their timed steps alternate, so that a change
in the machine's load falls on all of them alike. Prints the machine and the
timings, and as the last line of stdout a JSON dict
{"model_step_frames_per_s": (fp32), "model_step_frames_per_s_<precision>": ...,
 "details": {...}, "machine": {...}}.
"""

import logging
import os
import statistics
import sys
import time

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import helper  # noqa: E402  (needs the repository on sys.path)
from bench import machine, options  # noqa: E402
from ser import mixed_precision  # noqa: E402
from ser import defaults  # noqa: E402
from ser import records  # noqa: E402

FLAGS = flags.FLAGS
helper.define_flags('batch_size', 'sequence_length', 'sample_rate', 'embedding_dim', 'seed',
                    'hidden_units', 'xla', 'device')
options.define('warmup', 'model_steps')
flags.DEFINE_list('precisions', None, 'Precisions to time, of fp32, bf16, fp16 (train.py '
                  '--precision); default: fp32 and fp16 on a GPU, fp32 and bf16 on a CPU '
                  'where TensorFlow runs oneDNN by itself, fp32 elsewhere (asking for bf16 '
                  'there turns oneDNN on, for fp32 too).')
helper.define_flags('verbose')


def device_precisions(device):
    """fp32 and the device's mixed precision, if it has one that leaves
    fp32's kernels as train.py's fp32 runs them."""
    if mixed_precision.gpu_capability(device) is not None:
        return ['fp32', 'fp16']
    if mixed_precision.onednn_enabled():
        return ['fp32', 'bf16']
    logging.info('bf16 not timed: TensorFlow leaves oneDNN off on this CPU (--precisions '
                 'fp32,bf16 turns it on, and times fp32 with its kernels)')
    return ['fp32']


def run(batch_size=5, sequence_length=100, sample_rate=16000, embedding_dim=100,
        hidden_units=defaults.HIDDEN_UNITS, warmup=3, steps=10, xla=False, device=-1,
        seed=0, precisions=('fp32',)):
    """{precision: {'frames_per_s', 'step_seconds' [steps], ...}} of timed
    training steps, the precisions' steps alternating."""
    from bench import step_graph   # loads TensorFlow: after prepare_process
    sessions = {precision: step_graph.training_session(
                    batch_size, sequence_length, records.frame_samples_for(sample_rate),
                    embedding_dim, hidden_units, xla, device, seed, precision)
                for precision in precisions}
    seconds = {precision: [] for precision in precisions}
    cpu_seconds = {precision: [] for precision in precisions}
    try:
        for session, fetches in sessions.values():
            for _ in range(warmup):
                session.run(fetches)
        for _ in range(steps):
            for precision, (session, fetches) in sessions.items():
                started, cpu_started = time.perf_counter(), time.process_time()
                session.run(fetches)
                seconds[precision].append(time.perf_counter() - started)
                cpu_seconds[precision].append(time.process_time() - cpu_started)
    finally:
        for session, _ in sessions.values():
            session.close()
    frames = batch_size * sequence_length
    results = {}
    for precision in precisions:
        helper.development_msg('%s step times (s): %s', precision,
                               ', '.join('%.3f' % s for s in seconds[precision]))
        helper.development_msg('%s step CPU times (s): %s', precision,
                               ', '.join('%.3f' % s for s in cpu_seconds[precision]))
        results[precision] = {'frames_per_s': frames / statistics.median(seconds[precision]),
                              'step_seconds': seconds[precision],
                              'step_cpu_seconds': cpu_seconds[precision],
                              'frames_per_step': frames}
    return results


def metric_name(precision):
    return 'model_step_frames_per_s' + ('' if precision == 'fp32' else '_' + precision)


def main(argv):
    del argv
    mixed_precision.prepare_process(FLAGS.precisions or [])
    info = machine.start(FLAGS.verbose)
    helper.configure_device(FLAGS.device)
    precisions = FLAGS.precisions or device_precisions(FLAGS.device)
    if 'fp32' not in precisions:
        precisions = ['fp32'] + precisions   # the figure the others are compared with
    results = run(FLAGS.batch_size, FLAGS.sequence_length, FLAGS.sample_rate, FLAGS.embedding_dim,
                  FLAGS.hidden_units, FLAGS.warmup, FLAGS.model_steps, FLAGS.xla, FLAGS.device,
                  FLAGS.seed, precisions)
    for precision, result in results.items():
        step = statistics.median(result['step_seconds'])
        logging.info('training step, B=%d T=%d S=%d E=%d, %s%s: %.3f s median of %d (min %.3f, '
                     'max %.3f; CPU %.3f s): %.1f frames/s', FLAGS.batch_size,
                     FLAGS.sequence_length, records.frame_samples_for(FLAGS.sample_rate),
                     FLAGS.embedding_dim, precision, ', XLA' if FLAGS.xla else '', step,
                     FLAGS.model_steps, min(result['step_seconds']), max(result['step_seconds']),
                     statistics.median(result['step_cpu_seconds']), result['frames_per_s'])
    fp32 = results['fp32']
    details = {'step_seconds': [round(s, 4) for s in fp32['step_seconds']],
               'step_cpu_seconds': [round(s, 4) for s in fp32['step_cpu_seconds']],
               'xla': FLAGS.xla, 'precisions': {
                   precision: {'step_seconds': [round(s, 4) for s in result['step_seconds']],
                               'step_cpu_seconds': [round(s, 4)
                                                    for s in result['step_cpu_seconds']]}
                   for precision, result in results.items()}}
    machine.hand_over({metric_name(precision): round(result['frames_per_s'], 2)
                       for precision, result in results.items()}, details, info)
    return 0


if __name__ == '__main__':
    helper.run(main)
