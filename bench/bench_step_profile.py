"""Where one training step's time goes, block by block, and the FLOP/s it
reaches against the CPU's peak.

    .venv/bin/python bench/bench_step_profile.py [--profile_steps 5] [--precision fp32]

The step of bench_model_step.py (train.py's model, CCC loss and Adam on
constant inputs at train.py's default shapes, every frame computed) is run
--profile_steps times with TensorFlow's full trace (RunMetadata step stats) after
--warmup untimed steps. Every op's time, forward and backward alike (the
gradient of an op carries its name under gradients/), is summed into the
block it belongs to: the three convolution blocks, the input fusion's two
projections, the fusion attention, the three hidden layers, the LSTM, the
output layer, the loss and the optimizer. Ops run side by side on the
cores, so the shares are of the op time summed, not of the wall time.

The model's FLOPs per frame come from its shapes (models.py): a width-k
convolution from C to F channels costs 2 k C F per output position, a dense
layer 2 n m per frame, the LSTM 2 (n + h) 4h per frame; a training step
costs about three times the forward pass (the backward pass computes the
gradients of inputs and of weights). The CPU's fp32 peak is taken as cores x
the clock /proc/cpuinfo reports x 32 FLOPs a cycle (two AVX-512 FMA units of
16 lanes), which a CPU with one FMA unit halves.

Prints the machine and the table, and as the last line of stdout the JSON
{"step_flops_per_frame", "step_gflops_per_s", "step_peak_fraction",
"details": {"shares": {block: fraction}, ...}}.
"""

import collections
import logging
import os
import re
import statistics
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import helper  # noqa: E402  (needs the repository on sys.path)
import models  # noqa: E402
from bench import machine, options, step_graph  # noqa: E402
from ser import host  # noqa: E402
from ser import defaults  # noqa: E402
from ser import mixed_precision  # noqa: E402
from ser import records  # noqa: E402

tf = helper.import_tensorflow()

FLAGS = flags.FLAGS
helper.define_flags('batch_size', 'sequence_length', 'sample_rate', 'embedding_dim', 'seed',
                    'precision', 'verbose')
options.define('warmup')
flags.DEFINE_integer('profile_steps', 5, 'Traced steps.', lower_bound=1)

# Blocks in the order of the model, each the name pattern of its ops.
BLOCKS = (
    ('conv1', r'acoustic/(conv|pool|dropout)1(?!\d)'),
    ('conv2', r'acoustic/(conv|pool|dropout)2(?!\d)'),
    ('conv3', r'acoustic/(conv|pool|dropout)3(?!\d)'),
    ('projections', r'fusion_input/project_[xy]'),
    ('fusion', r'/fusion_'),
    ('hidden layers', r'/hidden\d'),
    ('LSTM', r'/recurrent/'),
    ('output', r'/output/'),
    ('optimizer', r'(^|/)(Adam|beta\d_power|update_)|/Adam(_\d+)?$'),
    ('loss', r'ccc|loss'),
)
FP32_FLOPS_PER_CYCLE = 32
CPU_PRECISIONS = ('fp32', 'bf16')


def block_of(node_name):
    # An optimizer's update of a layer's variable carries the layer's name too.
    for block, pattern in sorted(BLOCKS, key=lambda item: item[0] != 'optimizer'):
        if re.search(pattern, node_name):
            return block
    return 'other'


def forward_flops_per_frame(frame_samples, embedding_dim, hidden_units):
    """Multiply-adds x 2 of the model's forward pass for one frame."""
    flops, positions, channels = 0, frame_samples, 1
    for filters, width, pool in models.CONV_BLOCKS:
        flops += 2 * positions * width * channels * filters
        positions //= pool
        channels = filters
    acoustic = frame_samples                          # the features: the frame's width again
    projection = models.FUSION_PROJECTION_UNITS
    flops += 2 * (acoustic + embedding_dim) * projection
    flops += models.N_HIDDEN_FC * 2 * projection * models.HIDDEN_FC_UNITS
    flops += 2 * (models.HIDDEN_FC_UNITS + hidden_units) * 4 * hidden_units
    flops += 2 * hidden_units * 2
    return flops


def cpu_ghz():
    try:
        return float(host.cpuinfo_field('cpu MHz')) / 1000.0
    except (TypeError, ValueError):
        return None


def traced_step_seconds(session, fetches, count):
    """({block: op seconds summed over the traced steps}, [wall seconds of each])."""
    run_options = tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE)
    totals, walls, unplaced = collections.Counter(), [], collections.Counter()
    for _ in range(count):
        metadata = tf.RunMetadata()
        started = time.perf_counter()
        session.run(fetches, options=run_options, run_metadata=metadata)
        walls.append(time.perf_counter() - started)
        for device in metadata.step_stats.dev_stats:
            for node in device.node_stats:
                seconds = node.all_end_rel_micros / 1e6
                block = block_of(node.node_name)
                totals[block] += seconds
                if block == 'other':
                    unplaced[node.node_name] += seconds
    for name, seconds in unplaced.most_common(15):
        helper.development_msg('other: %s %.4f s', name, seconds)
    return totals, walls


def main(argv):
    del argv
    precision = mixed_precision.choose_precision(FLAGS.precision, -1)
    if precision not in CPU_PRECISIONS:
        raise app.UsageError('--precision %s: the profile runs on the CPU, in %s'
                             % (precision, ' or '.join(CPU_PRECISIONS)))
    info = machine.start(FLAGS.verbose)
    frame_samples = records.frame_samples_for(FLAGS.sample_rate)
    session, fetches = step_graph.training_session(
        FLAGS.batch_size, FLAGS.sequence_length, frame_samples, FLAGS.embedding_dim,
        defaults.HIDDEN_UNITS, False, -1, FLAGS.seed, precision)
    try:
        for _ in range(FLAGS.warmup):
            session.run(fetches)
        totals, walls = traced_step_seconds(session, fetches, FLAGS.profile_steps)
    finally:
        session.close()
    frames = FLAGS.batch_size * FLAGS.sequence_length
    step_flops = 3 * frames * forward_flops_per_frame(frame_samples, FLAGS.embedding_dim,
                                                      defaults.HIDDEN_UNITS)
    wall = statistics.median(walls)
    achieved = step_flops / wall
    ghz = cpu_ghz()
    peak = (os.cpu_count() or 1) * ghz * 1e9 * FP32_FLOPS_PER_CYCLE if ghz else None
    summed = sum(totals.values())
    shares = {block: totals[block] / summed for block, _ in BLOCKS + (('other', ''),)}
    for block, share in shares.items():
        logging.info('%-14s %5.1f %% of the op time', block, 100 * share)
    logging.info('step: %.3f s (median of %d traced), %.2f GFLOP (%d frames), %.1f GFLOP/s'
                 '%s', wall, FLAGS.profile_steps, step_flops / 1e9, frames, achieved / 1e9,
                 '' if peak is None else ', %.1f %% of the %.0f GFLOP/s fp32 peak' % (
                     100 * achieved / peak, peak / 1e9))
    machine.hand_over({'step_flops_per_frame': round(step_flops / frames),
                       'step_gflops_per_s': round(achieved / 1e9, 2),
                       'step_peak_fraction': None if peak is None else round(achieved / peak, 4)},
                      {'shares': {block: round(share, 4) for block, share in shares.items()},
                       'precision': precision, 'step_seconds': walls,
                       'cpu_ghz': ghz, 'peak_gflops_per_s': peak and round(peak / 1e9, 1)},
                      info)
    return 0


if __name__ == '__main__':
    helper.run(main)
