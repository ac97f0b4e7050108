"""Evaluation speed: eval.py's pass over a portion of the generated corpus.

    .venv/bin/python bench/bench_eval.py [--bench_dir DIR] [--portion devel] [--repeats 3]
                                         [--precision auto]

Times ser.evaluation.PortionModel.predictions, the part of eval.py that runs
for every checkpoint it evaluates (also under --watch): restoring the
checkpoint, reading every segment of --portion and running the model over
each whole, in --precision (auto by default, as eval.py's). Building the
graph and session (once per eval.py run; its time is reported apart),
interpreter start-up and the per-segment CSV and PNG outputs are not timed.
The checkpoint has random weights at the dataset's shapes (speed does not
depend on the values) unless --checkpoint names one. After one untimed
pass, --repeats passes are timed; the figure is the portion's frames over
the median pass. Prints the machine
and the figure, and as the last line of stdout a JSON dict
{"eval_frames_per_s": ..., "details": ..., "machine": ...}, the precision
among the details.
"""

import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import helper  # noqa: E402  (needs the repository on sys.path)
from bench import corpus, machine, options, random_model  # noqa: E402
from ser import checkpoints  # noqa: E402
from ser import defaults  # noqa: E402
from ser import evaluation  # noqa: E402
from ser import mixed_precision  # noqa: E402
from ser.dataset import DatasetInfo  # noqa: E402

FLAGS = flags.FLAGS
helper.define_flags('checkpoint', 'portion', 'precision', 'verbose')
options.define('repeats')


@contextlib.contextmanager
def random_checkpoint(dataset_dir, seed):
    """A temporary train.py-like directory for the dataset, random weights."""
    info = DatasetInfo.load(dataset_dir)
    with tempfile.TemporaryDirectory(prefix='bench_eval_') as directory:
        random_model.random_checkpoint(directory, info.sample_rate, info.embedding_dim,
                                       defaults.HIDDEN_UNITS, seed)
        # eval.py checks the checkpoint was made for this very dataset.
        info.save(directory)
        yield directory


def run(dataset_dir, checkpoint_dir, portion='devel', repeats=3, precision='fp32'):
    """{'frames_per_s', 'frames', 'pass_seconds'} of eval.py's pass over the portion."""
    evaluation.check_compatible(checkpoint_dir, dataset_dir)
    config = checkpoints.read_model_config(checkpoint_dir)
    prefix, _ = checkpoints.checkpoint_path(checkpoint_dir)
    seconds = []
    started = time.perf_counter()
    with evaluation.PortionModel(config, dataset_dir, portion, -1, precision) as model:
        build_seconds = time.perf_counter() - started
        for _ in range(repeats + 1):
            started = time.perf_counter()
            segments = model.predictions(prefix)
            seconds.append(time.perf_counter() - started)
    helper.development_msg('passes (s, the first untimed): %s',
                           ', '.join('%.3f' % s for s in seconds))
    frames = sum(len(segment['timestamps']) for segment in segments)
    return {'frames_per_s': frames / statistics.median(seconds[1:]), 'frames': frames,
            'segments': len(segments), 'pass_seconds': seconds[1:],
            'build_seconds': build_seconds}


def main(argv):
    del argv
    info = machine.start(FLAGS.verbose)
    portion = FLAGS.portion or defaults.EVAL_PORTION
    helper.configure_device(-1)
    precision = mixed_precision.choose_precision(FLAGS.precision, -1)
    with contextlib.ExitStack() as stack:
        work_dir, _ = stack.enter_context(corpus.work_directory('tfrecords'))
        dataset_dir = corpus.dataset_dir(work_dir)
        checkpoint = FLAGS.checkpoint or stack.enter_context(
            random_checkpoint(dataset_dir, FLAGS.seed))
        result = run(dataset_dir, checkpoint, portion, FLAGS.repeats, precision)
    logging.info('eval pass over %s (%d segments, %d frames, %s): %.1f frames/s (median of %d '
                 'passes, %.2f s; the graph and session built once in %.2f s)', portion,
                 result['segments'], result['frames'], precision, result['frames_per_s'],
                 FLAGS.repeats, statistics.median(result['pass_seconds']),
                 result['build_seconds'])
    machine.hand_over({'eval_frames_per_s': round(result['frames_per_s'], 2)},
                      {'portion': portion, 'frames': result['frames'], 'precision': precision,
                       'pass_seconds': [round(s, 3) for s in result['pass_seconds']],
                       'build_seconds': round(result['build_seconds'], 3)}, info)
    return 0


if __name__ == '__main__':
    helper.run(main)
