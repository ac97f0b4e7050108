"""Forced-alignment speed: synchronisation_map_generator.py --aligner aeneas
(or --aligner phonetic, or given) on the generated corpus.

    .venv/bin/python bench/bench_alignment.py [--bench_dir DIR] [--repeats 3] [--aligner aeneas]

Runs the script itself (--overwrite, so every segment is aligned) with one
worker and with all cores, --repeats times each, and reads the speed it
reports: seconds of audio aligned per wall second, from the start of its work
to the end (interpreter start-up excluded). The figures are the medians.
Prints the machine and the figures, and as the last line of stdout a JSON dict
{"alignment_rtf_1worker": ..., "alignment_rtf_all_workers": ..., "details": ...,
"machine": ...}.
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

FLAGS = flags.FLAGS

# ---- Benchmark flags ----
helper.define_flags('aligner', 'verbose')
options.define('repeats')

# The script's summary line: "speed: 960.0 s of audio in 7.0 s: 136.7 s of audio per wall second"
SPEED_LINE = re.compile(r'speed: ([\d.]+) s of audio in ([\d.]+) s: ([\d.]+) s of audio per wall')


def align_once(work_dir, workers, aligner='aeneas'):
    """(audio seconds, wall seconds, audio seconds per wall second) of one run."""
    _, stderr, _ = corpus.run_script(
        'synchronisation_map_generator.py', '--muse_dir', corpus.muse_dir(work_dir),
        '--work_dir', work_dir, '--workers', workers, '--aligner', aligner, '--overwrite')
    match = SPEED_LINE.search(stderr)
    if not match:
        raise RuntimeError('no speed line in the output of synchronisation_map_generator.py:\n'
                           + stderr[-2000:])
    return tuple(float(value) for value in match.groups())


def run(work_dir, repeats=3, aligner='aeneas'):
    """{'alignment_rtf_1worker', 'alignment_rtf_all_workers', 'details'}."""
    metrics, details = {}, {}
    for name, workers in (('1worker', 1), ('all_workers', helper.default_workers())):
        runs = [align_once(work_dir, workers, aligner) for _ in range(repeats)]
        helper.development_msg('%d worker(s): %s', workers,
                               ', '.join('%.1f s audio in %.1f s' % run[:2] for run in runs))
        metrics['alignment_rtf_%s' % name] = statistics.median(run[2] for run in runs)
        details[name] = {'workers': workers, 'aligner': aligner, 'audio_seconds': runs[0][0],
                         'wall_seconds': [run[1] for run in runs]}
    return dict(metrics, details=details)


def main(argv):
    del argv
    info = machine.start(FLAGS.verbose)
    with corpus.work_directory('corpus') as (work_dir, _):
        result = run(work_dir, FLAGS.repeats, FLAGS.aligner)
    for name in ('1worker', 'all_workers'):
        logging.info('alignment (%s), %d worker(s): %.1f s of audio per wall second (median of '
                     '%d, %.0f s of audio)', FLAGS.aligner, result['details'][name]['workers'],
                     result['alignment_rtf_%s' % name], FLAGS.repeats,
                     result['details'][name]['audio_seconds'])
    details = result.pop('details')
    machine.hand_over(result, details, info)
    return 0


if __name__ == '__main__':
    helper.run(main)
