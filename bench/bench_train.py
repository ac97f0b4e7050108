"""Training speed of train.py itself, checkpoints and summaries as by default.

    .venv/bin/python bench/bench_train.py [--bench_dir DIR] [--train_steps 200] [--xla]
        [--precision fp32] [--windows packed] [--noskip_padding] [--nobaseline]

Runs train.py on the generated corpus's TFRecords in a fresh temporary
--train_dir (default shapes: batch 5 x 100 frames, 16 kHz) and watches its
log_train.txt, noting when each progress line (every --train_log_every_n_steps
steps) appears. Steady state runs from the first line at or after step
--train_warmup_steps to the last: start-up, graph building and the first steps
(queue filling, graph optimisation) are left out, while the checkpoints
(every 120 s) and summaries (every 60 s) that fall inside are paid as a user
pays them; --train_steps 200 lasts long enough for both on a 2-core CPU. The
figure train_frames_per_s is B*T window frames (padding included, as the
model computes them with --noskip_padding) per steady-state second,
comparable with bench_model_step.py; train_real_frames_per_s counts the real
frames only (from the frames/s train.py logs for each interval), what the
model learns from per second. Both are of train.py with --precision,
--windows and --skip_padding (by default train.py's own defaults); with
--baseline (default) a second run, fp32 with per-segment windows and every
padding frame computed (the settings that leave nothing out, which the
speed-ups are measured against), gives
train_real_frames_per_s_baseline in the same process.
Prints the machine and the figures, and as the last line of stdout a JSON dict
{"train_frames_per_s": ..., "train_real_frames_per_s": ...,
 "train_real_frames_per_s_baseline": ..., "details": ..., "machine": ...}.
"""

import collections
import logging
import os
import re
import subprocess
import sys
import tempfile
import time

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import helper  # noqa: E402  (needs the repository on sys.path)
from bench import corpus, machine, options  # noqa: E402
from ser import mixed_precision  # noqa: E402
from ser import defaults  # noqa: E402

FLAGS = flags.FLAGS
helper.define_flags('batch_size', 'sequence_length', 'xla', 'precision', 'windows',
                    'skip_padding')
options.define('train_steps', 'train_warmup_steps', 'train_log_every_n_steps')
flags.DEFINE_bool('baseline', True, 'Also time train.py with --precision fp32 --windows '
                  'per_segment --noskip_padding (before issue 13), for '
                  'train_real_frames_per_s_baseline.')
helper.define_flags('verbose')

# Nothing left out, nothing faster than fp32: (precision, windows, skip_padding).
BASELINE = ('fp32', 'per_segment', False)
PROGRESS_LINE = re.compile(r'^step (\d+) .*frames/s ([\d.]+)$')
POLL_SECONDS = 0.02
# One progress line of train.py: when it appeared (perf_counter), the CPU time
# the process had used by then (all its threads), its step and logged frames/s.
Progress = collections.namedtuple('Progress', 'time cpu_seconds step real_frames_per_s')


def cpu_seconds(pid):
    """User + system CPU seconds a running process has used (Linux /proc)."""
    with open('/proc/%d/stat' % pid, encoding='ascii') as handle:
        fields = handle.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def watch_progress(process, log_path):
    """The Progress of each line train.py appends to log_path, until it ends."""
    seen, position, pending = [], 0, ''
    while process.poll() is None:
        time.sleep(POLL_SECONDS)
        if not os.path.exists(log_path):
            continue
        with open(log_path, encoding='utf-8') as handle:
            handle.seek(position)
            pending += handle.read()
            position = handle.tell()
        *lines, pending = pending.split('\n')
        matches = [m for m in map(PROGRESS_LINE.match, lines) if m]
        if matches:
            now = time.perf_counter()
            try:
                used = cpu_seconds(process.pid)
            except OSError:  # it has just ended; the line is then past the steady state
                break
            seen += [Progress(now, used, int(m.group(1)), float(m.group(2))) for m in matches]
    return seen


def run(dataset_dir, batch_size=5, sequence_length=100, max_steps=200, warmup_steps=10,
        log_every_n_steps=10, seed=0, xla=False, precision=defaults.PRECISION,
        windows=defaults.WINDOWS, skip_padding=True):
    """{'frames_per_s', 'seconds' (steady state), 'real_frames_per_s', ...} of one
    train.py run."""
    with tempfile.TemporaryDirectory(prefix='bench_train_') as train_dir:
        command = ([sys.executable, os.path.join(corpus.REPO, 'train.py'),
                    '--dataset_dir', dataset_dir, '--train_dir', train_dir, '--device', '-1',
                    '--max_steps', str(max_steps), '--batch_size', str(batch_size),
                    '--sequence_length', str(sequence_length), '--seed', str(seed),
                    '--log_every_n_steps', str(log_every_n_steps), '--precision', precision,
                    '--windows', windows, '--%sskip_padding' % ('' if skip_padding else 'no')]
                   + (['--xla'] if xla else []))
        started = time.perf_counter()
        with open(os.path.join(train_dir, 'stderr.txt'), 'w+', encoding='utf-8') as stderr:
            process = subprocess.Popen(command, cwd=corpus.REPO, stdout=subprocess.DEVNULL,
                                       stderr=stderr)
            lines = watch_progress(process, os.path.join(train_dir, 'log_train.txt'))
            process.wait()
            stderr.seek(0)
            if process.returncode:
                raise RuntimeError('train.py failed (exit %d):\n%s'
                                   % (process.returncode, stderr.read()[-3000:]))
        wall = time.perf_counter() - started
        checkpoints = [n for n in os.listdir(train_dir) if n.endswith('.index')]
    steady = [line for line in lines if line.step >= warmup_steps]
    if len(steady) < 2:
        raise RuntimeError('train.py logged %d progress line(s) from step %d on: need 2; raise '
                           '--train_steps or lower --train_log_every_n_steps' % (len(steady), warmup_steps))
    first, last = steady[0], steady[-1]
    steps, seconds = last.step - first.step, last.time - first.time
    helper.development_msg('progress lines (s after start, CPU s, step, real frames/s): %s',
                           ', '.join('(%.2f, %.2f, %d, %.1f)' % (line.time - started, *line[1:])
                                     for line in lines))
    # Real frames of each interval: train.py's rate over the interval's length.
    real_frames = sum(b.real_frames_per_s * (b.time - a.time) for a, b in zip(steady, steady[1:]))
    return {'frames_per_s': batch_size * sequence_length * steps / seconds,
            'real_frames_per_s': real_frames / seconds, 'precision': precision,
            'windows': windows, 'skip_padding': skip_padding,
            'first_step': first.step, 'last_step': last.step, 'seconds': seconds,
            'cpu_seconds_per_step': (last.cpu_seconds - first.cpu_seconds) / steps,
            'wall_seconds': wall, 'checkpoints_written': len(checkpoints),
            # Slow intervals hold a checkpoint, a summary, or another process's burst.
            'interval_frames_per_s': [
                round(batch_size * sequence_length * (b.step - a.step) / (b.time - a.time), 1)
                for a, b in zip(steady, steady[1:])]}


def rounded(result):
    return {key: round(value, 3) if isinstance(value, float) else value
            for key, value in result.items()}


def main(argv):
    del argv
    info = machine.start(FLAGS.verbose)
    precision = mixed_precision.choose_precision(FLAGS.precision, -1)
    settings = {'with_defaults': (precision, FLAGS.windows, FLAGS.skip_padding)}
    # Timed once when the settings are the baseline's (train.py's defaults today).
    if FLAGS.baseline and settings['with_defaults'] != BASELINE:
        settings['baseline'] = BASELINE
    results = {}
    with corpus.work_directory('tfrecords') as (work_dir, _):
        for name, (run_precision, windows, skip_padding) in settings.items():
            results[name] = run(corpus.dataset_dir(work_dir), FLAGS.batch_size,
                                FLAGS.sequence_length, FLAGS.train_steps, FLAGS.train_warmup_steps,
                                FLAGS.train_log_every_n_steps, FLAGS.seed, FLAGS.xla, run_precision,
                                windows, skip_padding)
            result = results[name]
            logging.info('train.py, B=%d T=%d, %s, %s windows, padding %s%s: %.1f frames/s, '
                         '%.1f real frames/s over steps %d-%d (%.1f s steady state, %.1f s in '
                         'all, %d checkpoint(s) written)', FLAGS.batch_size, FLAGS.sequence_length,
                         run_precision, windows, 'skipped' if skip_padding else 'computed',
                         ', XLA' if FLAGS.xla else '',
                         result['frames_per_s'], result['real_frames_per_s'],
                         result['first_step'], result['last_step'], result['seconds'],
                         result['wall_seconds'], result['checkpoints_written'])
    metrics = {'train_frames_per_s': round(results['with_defaults']['frames_per_s'], 2),
               'train_real_frames_per_s': round(results['with_defaults']['real_frames_per_s'], 2)}
    details = dict(rounded(results['with_defaults']), xla=FLAGS.xla)
    if FLAGS.baseline:
        results.setdefault('baseline', results['with_defaults'])
        metrics['train_real_frames_per_s_baseline'] = round(
            results['baseline']['real_frames_per_s'], 2)
        details['baseline'] = rounded(results['baseline'])
    machine.hand_over(metrics, details, info)
    return 0


if __name__ == '__main__':
    helper.run(main)
