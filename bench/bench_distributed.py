"""Training speed of train.py on a local cluster: 1 ps and 1, then 2, worker
processes on 127.0.0.1 (tools.local_cluster), asynchronous updates.

    .venv/bin/python bench/bench_distributed.py [--bench_dir DIR] [--worker_counts 1,2] [--train_steps 200]
    .venv/bin/python bench/bench_distributed.py --dataset_dir demo/tfrecords   # existing TFRecords

Watches the chief's log_train.txt, noting when each progress line appears;
the steady state runs from the first line at or after --train_warmup_steps to the
last, and the figure is global steps (every worker's updates) per second.
On one machine the workers share its cores, so this measures the overhead of
the runtime (gRPC, the ps round trips) more than a speed-up; the CPU seconds
per step of each task are in the details. Prints the machine and the figures,
and as the last line of stdout a JSON dict
{"cluster_steps_per_s_1_workers": ..., ..., "details": ..., "machine": ...}.
"""

import contextlib
import logging
import os
import re
import sys
import tempfile
import time

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import helper  # noqa: E402  (needs the repository on sys.path)
from bench import corpus, machine, options  # noqa: E402
from tools.local_cluster import LocalCluster, worker_steps  # noqa: E402

FLAGS = flags.FLAGS
helper.define_flags('batch_size', 'sequence_length', 'dataset_dir')
flags.DEFINE_list('worker_counts', ['1', '2'], 'Worker counts to measure, one cluster each.')
options.define('train_steps', 'train_warmup_steps', 'train_log_every_n_steps')
helper.define_flags('verbose')

PROGRESS_LINE = re.compile(r'^step (\d+) ', re.MULTILINE)
POLL_SECONDS = 0.05
RUN_TIMEOUT_SECS = 3600


def cpu_seconds(pid):
    """User + system CPU seconds a running process has used (Linux /proc)."""
    with open('/proc/%d/stat' % pid, encoding='ascii') as handle:
        fields = handle.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def watch_chief(local, log_path):
    """[(time, global step, {task: CPU seconds})] of each progress line the
    chief appends, until every worker has ended."""
    seen, count = [], 0
    while any(local.running('worker', i) for i in range(len(local.hosts['worker']))):
        time.sleep(POLL_SECONDS)
        if not os.path.exists(log_path):
            continue
        with open(log_path, encoding='utf-8') as handle:
            steps = [int(step) for step in PROGRESS_LINE.findall(handle.read())]
        if len(steps) > count:
            try:
                used = {key: cpu_seconds(process.pid)
                        for key, process in local.processes.items()}
            except OSError:  # a task has just ended: past the steady state
                break
            seen += [(time.perf_counter(), step, used) for step in steps[count:]]
            count = len(steps)
    return seen


def run(dataset_dir, num_workers, batch_size, sequence_length, max_steps, warmup_steps,
        log_every_n_steps, seed):
    """{'steps_per_s', ...} of one cluster run of `num_workers` workers."""
    with tempfile.TemporaryDirectory(prefix='bench_distributed_') as scratch:
        train_dir = os.path.join(scratch, 'train')
        train_args = ['--dataset_dir', dataset_dir, '--train_dir', train_dir, '--device', '-1',
                      '--max_steps', max_steps, '--batch_size', batch_size,
                      '--sequence_length', sequence_length, '--seed', seed,
                      '--log_every_n_steps', log_every_n_steps]
        with LocalCluster(train_args, os.path.join(scratch, 'logs'), 1, num_workers) as local:
            local.start_all()
            lines = watch_chief(local, os.path.join(train_dir, 'log_train.txt'))
            statuses = local.wait_workers(RUN_TIMEOUT_SECS)
            if any(statuses):
                failed = statuses.index(next(s for s in statuses if s))
                raise RuntimeError('worker %d failed (exit %d):\n%s' % (
                    failed, statuses[failed], local.log('worker', failed)[-3000:]))
            steps_per_worker = worker_steps(local)
    steady = [line for line in lines if line[1] >= warmup_steps]
    if len(steady) < 2:
        raise RuntimeError('the chief logged %d progress line(s) from step %d on: need 2; '
                           'raise --train_steps' % (len(steady), warmup_steps))
    (first_time, first_step, first_cpu), (last_time, last_step, last_cpu) = steady[0], steady[-1]
    steps = last_step - first_step
    return {'steps_per_s': steps / (last_time - first_time),
            'first_step': first_step, 'last_step': last_step,
            'seconds': last_time - first_time,
            'cpu_seconds_per_step': {'%s%d' % key: round((last_cpu[key] - first_cpu[key]) / steps,
                                                         3) for key in first_cpu},
            'steps_per_worker': steps_per_worker}


def main(argv):
    del argv
    info = machine.start(FLAGS.verbose)
    figures, details = {}, {}
    with contextlib.ExitStack() as stack:
        dataset_dir = FLAGS.dataset_dir if FLAGS['dataset_dir'].present else corpus.dataset_dir(
            stack.enter_context(corpus.work_directory('tfrecords'))[0])
        for count in [int(n) for n in FLAGS.worker_counts]:
            result = run(dataset_dir, count, FLAGS.batch_size,
                         FLAGS.sequence_length, FLAGS.train_steps, FLAGS.train_warmup_steps,
                         FLAGS.train_log_every_n_steps, FLAGS.seed)
            logging.info('1 ps + %d worker(s), B=%d T=%d: %.3f global steps/s over steps %d-%d '
                         '(%.1f s); CPU s per step %s; steps per worker %s', count,
                         FLAGS.batch_size, FLAGS.sequence_length, result['steps_per_s'],
                         result['first_step'], result['last_step'], result['seconds'],
                         result['cpu_seconds_per_step'], result['steps_per_worker'])
            figures['cluster_steps_per_s_%d_workers' % count] = round(result['steps_per_s'], 3)
            details['%d_workers' % count] = {key: round(value, 3) if isinstance(value, float)
                                             else value for key, value in result.items()}
    details['load_average_end'] = machine.load_average()
    machine.hand_over(figures, details, info)
    return 0


if __name__ == '__main__':
    helper.run(main)
