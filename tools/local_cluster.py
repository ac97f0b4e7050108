"""A whole training cluster on one machine: train.py's ps and worker tasks as
processes on free 127.0.0.1 ports, for `make cluster-demo`, the tests and
bench/bench_distributed.py.

    python -m tools.local_cluster [--num_ps 1] [--num_workers 2] [--log_dir DIR] \\
        -- --dataset_dir demo/tfrecords --train_dir demo/cluster --max_steps 100 ...

starts them, waits for the workers to finish, stops the ps tasks (they serve
until stopped) and reports each worker's steps. Every process it started is
gone when it returns, also after an error or Ctrl-C; a task's output goes to
<log_dir>/<job><index>.log.
"""

import contextlib
import ctypes
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time

from absl import flags

import helper

FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_SCRIPT = os.path.join(REPO, 'train.py')
# A task gets this long to end after SIGTERM before it is killed.
STOP_GRACE_SECS = 10
POLL_SECS = 0.2
DEFAULT_LOG_DIR = 'cluster_logs'
# The line train.py's workers end with (ser.training).
RAN_STEPS = re.compile(r'(/job:worker/task:\d+) ran (\d+) steps')
_PR_SET_PDEATHSIG = 1


def free_ports(count):
    """`count` distinct TCP ports free on 127.0.0.1 right now."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(('127.0.0.1', 0))
        return [sock.getsockname()[1] for sock in sockets]


def _die_with_parent():
    """In the child before exec: Linux kills it when the launcher dies, even by
    SIGKILL, so no server outlives the cluster it belonged to."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class LocalCluster:
    """The ps and worker tasks of one train.py run on loopback ports.

    `train_args` are train.py's own flags (dataset, train_dir, steps...); the
    cluster flags are added per task. Use as a context manager: leaving it
    stops every task still running."""

    def __init__(self, train_args, log_dir, num_ps=1, num_workers=2, script=TRAIN_SCRIPT,
                 env=None):
        ports = free_ports(num_ps + num_workers)
        self.hosts = {'ps': ['127.0.0.1:%d' % p for p in ports[:num_ps]],
                      'worker': ['127.0.0.1:%d' % p for p in ports[num_ps:]]}
        self.train_args = [str(a) for a in train_args]
        self.log_dir = log_dir
        self.script = script
        self.env = dict(os.environ if env is None else env)
        self.processes = {}
        os.makedirs(log_dir, exist_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def command(self, job, index):
        return ([sys.executable, self.script] + self.train_args +
                ['--ps_hosts', ','.join(self.hosts['ps']),
                 '--worker_hosts', ','.join(self.hosts['worker']),
                 '--job_name', job, '--task_index', str(index)])

    def log_path(self, job, index):
        return os.path.join(self.log_dir, '%s%d.log' % (job, index))

    def start(self, job, index):
        """Start (or restart) one task; its output is appended to its log."""
        if self.running(job, index):
            raise RuntimeError('%s %d is already running' % (job, index))
        with open(self.log_path(job, index), 'a', encoding='utf-8') as log:
            self.processes[job, index] = subprocess.Popen(
                self.command(job, index), cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent)
        logging.debug('started %s %d (pid %d)', job, index, self.processes[job, index].pid)

    def start_all(self):
        for job in ('ps', 'worker'):
            for index in range(len(self.hosts[job])):
                self.start(job, index)

    def running(self, job, index):
        process = self.processes.get((job, index))
        return process is not None and process.poll() is None

    def kill(self, job, index, sig=signal.SIGKILL):
        """Send `sig` to a task (by default the hard way, like a lost machine)
        and wait for it to end; returns its exit status."""
        process = self.processes[job, index]
        if process.poll() is None:
            process.send_signal(sig)
        return process.wait()

    def wait(self, job, index, timeout):
        """The task's exit status once it ends; TimeoutError after `timeout` s."""
        try:
            return self.processes[job, index].wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError('%s %d still running after %.0f s; its log ends:\n%s'
                               % (job, index, timeout, self.log(job, index)[-3000:])) from None

    def wait_workers(self, timeout):
        """Exit statuses of all workers, waiting at most `timeout` s in all."""
        deadline = time.monotonic() + timeout
        return [self.wait('worker', i, max(0.0, deadline - time.monotonic()))
                for i in range(len(self.hosts['worker']))]

    def wait_for_log(self, job, index, pattern, timeout, after=0):
        """The first match of regular expression `pattern` in the task's log
        past character `after`; TimeoutError after `timeout` s or when the task
        ends without it."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log(job, index), after)
            if match:
                return match
            if not self.running(job, index) or time.monotonic() > deadline:
                raise TimeoutError('%s %d: no line matching %r (%s); its log ends:\n%s' % (
                    job, index, pattern, 'it ended' if not self.running(job, index)
                    else 'after %.0f s' % timeout, self.log(job, index)[-3000:]))
            time.sleep(POLL_SECS)

    def log(self, job, index):
        try:
            with open(self.log_path(job, index), encoding='utf-8', errors='replace') as handle:
                return handle.read()
        except FileNotFoundError:
            return ''

    def stop(self):
        """End every task still running: SIGTERM, then SIGKILL after STOP_GRACE_SECS."""
        alive = [p for p in self.processes.values() if p.poll() is None]
        for process in alive:
            process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECS
        for process in alive:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def worker_steps(cluster):
    """{task name: steps it ran} from the workers' closing lines."""
    return {m.group(1): int(m.group(2))
            for i in range(len(cluster.hosts['worker']))
            for m in RAN_STEPS.finditer(cluster.log('worker', i))}


def define_flags():
    """The launcher's flags, defined only when it runs as a program, so that
    what imports LocalCluster (the tests, bench/bench_distributed.py) does
    not get them. --log_dir, where each task's log goes (<job><index>.log;
    default cluster_logs/), is absl's own flag."""
    flags.DEFINE_integer('num_ps', 1, 'Parameter-server tasks.', lower_bound=1)
    flags.DEFINE_integer('num_workers', 2, 'Worker tasks (worker 0 is the chief).',
                         lower_bound=1)
    flags.DEFINE_float('timeout', 3600.0, 'Seconds the workers may take in all.',
                       lower_bound=1.0)
    helper.define_flags('verbose')


def main(argv):
    """Train with train.py on a cluster of local processes; the arguments
    after -- (argv[1:]) go to every train.py task."""
    train_args = argv[1:]
    log_dir = FLAGS.log_dir or DEFAULT_LOG_DIR
    with LocalCluster(train_args, log_dir, FLAGS.num_ps, FLAGS.num_workers) as cluster:
        logging.info('ps %s, workers %s; logs in %s', ' '.join(cluster.hosts['ps']),
                     ' '.join(cluster.hosts['worker']), log_dir)
        cluster.start_all()
        statuses = cluster.wait_workers(FLAGS.timeout)
    for index, status in enumerate(statuses):
        logging.info('worker %d: exit status %d', index, status)
    for name, steps in sorted(worker_steps(cluster).items()):
        logging.info('%s ran %d steps', name, steps)
    failed = [i for i, status in enumerate(statuses) if status]
    if failed:
        logging.error('worker(s) %s failed; see %s', ', '.join(map(str, failed)),
                      ', '.join(cluster.log_path('worker', i) for i in failed))
        return 1
    return 0


if __name__ == '__main__':
    define_flags()
    helper.run(main)
