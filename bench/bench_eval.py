"""Evaluation speed: eval.py's pass over a portion of the generated corpus.

    .venv/bin/python bench/bench_eval.py [--work_dir DIR] [--portion devel] [--repeats 3]

Times eval.predict_portion, the part of eval.py that runs for every checkpoint
it evaluates (also under --watch): building the inference graph, restoring
the checkpoint, reading every recording of --portion whole through the
queue pipeline and running the model over it. Interpreter start-up and the
per-recording CSV and PNG outputs are not timed. The checkpoint has random
weights at the dataset's shapes (speed does not depend on the values) unless
--checkpoint names one. After one untimed pass, --repeats passes are timed;
the figure is the portion's frames over the median pass. Prints the machine
and the figure, and as the last line of stdout a JSON dict
{"eval_frames_per_s": ..., "details": ..., "machine": ...}.
"""

import contextlib
import importlib
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import helper  # noqa: E402  (needs the repository on sys.path)
import models  # noqa: E402
from bench import bench_predict, corpus, machine  # noqa: E402

# `eval` is also a builtin: the module gets another name here.
evaluation = importlib.import_module('eval')

FLAGS = flags.FLAGS
DEFINE = dict(allow_override=True)
flags.DEFINE_string('checkpoint', None, 'Checkpoint directory of train.py to evaluate; default: '
                    'random weights at the dataset\'s shapes.', **DEFINE)
flags.DEFINE_enum('portion', 'devel', list(helper.PORTIONS), 'Portion to evaluate.', **DEFINE)
flags.DEFINE_integer('repeats', 3, 'Timed passes; the median is reported.', lower_bound=1,
                     **DEFINE)
flags.DEFINE_bool('verbose', False, 'Development messages (every pass).', **DEFINE)


@contextlib.contextmanager
def random_checkpoint(dataset_dir, seed):
    """A temporary train.py-like directory for the dataset, random weights."""
    info = helper.read_json(os.path.join(dataset_dir, models.DATASET_FILE))
    with tempfile.TemporaryDirectory(prefix='bench_eval_') as directory:
        bench_predict.random_checkpoint(directory, info['sample_rate'], info['embedding_dim'],
                                        models.DEFAULT_HIDDEN_UNITS, seed)
        # eval.py checks the checkpoint was made for this very dataset.
        shutil.copyfile(os.path.join(dataset_dir, models.DATASET_FILE),
                        os.path.join(directory, models.DATASET_FILE))
        yield directory


def run(dataset_dir, checkpoint_dir, portion='devel', repeats=3):
    """{'frames_per_s', 'frames', 'pass_seconds'} of eval.py's pass over the portion."""
    evaluation.check_compatible(checkpoint_dir, dataset_dir)
    config = models.read_model_config(checkpoint_dir)
    prefix, _ = models.checkpoint_path(checkpoint_dir)
    seconds = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        recordings = evaluation.predict_portion(prefix, config, dataset_dir, portion, -1)
        seconds.append(time.perf_counter() - started)
    helper.development_msg('passes (s, the first untimed): %s',
                           ', '.join('%.3f' % s for s in seconds))
    frames = sum(len(recording['timestamps']) for recording in recordings)
    return {'frames_per_s': frames / statistics.median(seconds[1:]), 'frames': frames,
            'recordings': len(recordings), 'pass_seconds': seconds[1:]}


def main(argv):
    del argv
    info = machine.start(FLAGS.verbose)
    helper.configure_device(-1)
    with contextlib.ExitStack() as stack:
        work_dir, _ = stack.enter_context(corpus.work_directory('tfrecords'))
        dataset_dir = corpus.dataset_dir(work_dir)
        checkpoint = FLAGS.checkpoint or stack.enter_context(
            random_checkpoint(dataset_dir, FLAGS.seed))
        result = run(dataset_dir, checkpoint, FLAGS.portion, FLAGS.repeats)
    logging.info('eval pass over %s (%d recordings, %d frames): %.1f frames/s (median of %d '
                 'passes, %.2f s)', FLAGS.portion, result['recordings'], result['frames'],
                 result['frames_per_s'], FLAGS.repeats, statistics.median(result['pass_seconds']))
    machine.hand_over({'eval_frames_per_s': round(result['frames_per_s'], 2)},
                      {'portion': FLAGS.portion, 'frames': result['frames'],
                       'pass_seconds': [round(s, 3) for s in result['pass_seconds']]}, info)
    return 0


if __name__ == '__main__':
    app.run(main)
