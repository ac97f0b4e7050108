"""TFRecord generation speed: data_generator.py on the generated corpus.

    .venv/bin/python bench/bench_tfrecord.py [--bench_dir DIR] [--repeats 3]

Runs the script itself with --overwrite on the aligned corpus (all cores, its
default), --repeats times, and reads the throughput it reports: frames written
per second from the start of its work to the end (interpreter start-up
excluded): reading and resampling the audio, framing, embedding lookup,
serialising. The word2vec vectors are trained once beforehand and passed with
--embeddings, so their training (a one-off cost that grows with the corpus,
not the audio) is not timed. The figure is the median. Prints the machine and
the figure, and as the last line of stdout a JSON dict
{"tfrecord_frames_per_s": ..., "details": ..., "machine": ...}.
"""

import logging
import os
import re
import statistics
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import helper  # noqa: E402  (needs the repository on sys.path)
from bench import corpus, machine, options  # noqa: E402
from ser.dataset import DatasetInfo  # noqa: E402

FLAGS = flags.FLAGS
options.define('repeats')
helper.define_flags('verbose')

# The script's last summary line: "5.2 s, 652 frames/s written"
SPEED_LINE = re.compile(r'([\d.]+) s, ([\d.]+) frames/s written')


def generate_once(work_dir, sample_rate, embeddings):
    """(wall seconds, frames per second) of one run."""
    _, stderr, _ = corpus.run_script(
        'data_generator.py', '--muse_dir', corpus.muse_dir(work_dir), '--work_dir', work_dir,
        '--sample_rate', sample_rate, '--embeddings', embeddings, '--overwrite')
    match = SPEED_LINE.search(stderr)
    if not match:
        raise RuntimeError('no speed line in the output of data_generator.py:\n' + stderr[-2000:])
    return float(match.group(1)), float(match.group(2))


def run(work_dir, sample_rate, repeats=3):
    """{'tfrecord_frames_per_s', 'details'}."""
    # The vectors the first run of data_generator.py (in prepare()) trained.
    info = DatasetInfo.load(corpus.dataset_dir(work_dir))
    runs = [generate_once(work_dir, sample_rate, info.embeddings_path) for _ in range(repeats)]
    helper.development_msg('runs: %s', ', '.join('%.1f s (%.0f frames/s)' % r for r in runs))
    frames = sum(info.recordings.values())
    return {'tfrecord_frames_per_s': statistics.median(r[1] for r in runs),
            'details': {'frames': frames, 'segments': len(info.recordings),
                        'wall_seconds': [r[0] for r in runs],
                        'workers': helper.default_workers()}}


def main(argv):
    del argv
    info = machine.start(FLAGS.verbose)
    with corpus.work_directory('tfrecords') as (work_dir, _):
        result = run(work_dir, FLAGS.sample_rate, FLAGS.repeats)
    logging.info('data_generator.py: %.0f frames/s written (median of %d; %d frames, %d Hz)',
                 result['tfrecord_frames_per_s'], FLAGS.repeats, result['details']['frames'],
                 FLAGS.sample_rate)
    details = result.pop('details')
    machine.hand_over(result, details, info)
    return 0


if __name__ == '__main__':
    helper.run(main)
