"""Training on several machines with TensorFlow's gRPC runtime (between-graph
replication, as slim and TF1's replicated MNIST example do it).

Parameter-server tasks hold the variables and serve until they are stopped;
every worker builds the whole training graph, places the variables on the ps
tasks (replica_device_setter) and runs its own input pipeline and steps.
Worker 0 is the chief: it initialises or restores the variables and alone
writes checkpoints, summaries and log_train.txt. Updates are asynchronous
unless SyncReplicasOptimizer averages one gradient per worker into each.

The cluster comes from train.py's --ps_hosts/--worker_hosts/--job_name/
--task_index or from the TF_CONFIG environment variable that Kubernetes
training operators set; a `chief` (or `master`) task there becomes worker 0.

Each worker reads the whole training set in its own seeded order
(worker_seed): a restarted or added worker needs no re-sharding, and no
worker's shard ends up holding the long segments.
"""

import dataclasses
import json
import logging
import os
import socket
import time

import numpy as np

import helper

tf = helper.import_tensorflow()

JOBS = ('ps', 'worker')
# How often a worker that waits for the chief to initialise the variables looks
# again (TensorFlow's default is 30 s, long for a cluster that starts together).
READY_POLL_SECS = 1
# A worker gives up when the variables are still not initialised after this long.
READY_TIMEOUT_SECS = 2 * 3600
# A worker waiting for a ps task to listen tries every PS_POLL_SECS and says so
# every PS_REPORT_SECS.
PS_POLL_SECS = 1
PS_REPORT_SECS = 30
# Seconds a stopping worker waits for its queue threads. The chief's
# SyncReplicasOptimizer thread waits for gradients that stopped workers no
# longer send; TensorFlow's 120 s would only delay the exit.
STOP_GRACE_SECS = 5


@dataclasses.dataclass(frozen=True)
class Task:
    """This process's place in the cluster: `hosts` {'ps': [...], 'worker': [...]}
    of 'host:port' addresses, its job ('ps' or 'worker') and index."""
    hosts: dict
    job_name: str
    task_index: int

    @property
    def is_chief(self):
        return self.job_name == 'worker' and self.task_index == 0

    @property
    def num_workers(self):
        return len(self.hosts['worker'])

    @property
    def address(self):
        return self.hosts[self.job_name][self.task_index]

    @property
    def name(self):
        return '/job:%s/task:%d' % (self.job_name, self.task_index)

    def cluster_spec(self):
        return tf.train.ClusterSpec(self.hosts)


class ParameterServerLost(Exception):
    """A worker lost its connection to a parameter server: the variables of
    this run are gone, so the worker stops instead of waiting."""


# --------------------------------------------------------------------------
# The cluster: from flags or TF_CONFIG
# --------------------------------------------------------------------------
def task_from_flags(ps_hosts, worker_hosts, job_name, task_index, tf_config=None):
    """This process's Task, or None for single-process training.

    ps_hosts, worker_hosts: lists of 'host:port' (train.py's comma lists);
    job_name: 'ps' or 'worker'; tf_config: the TF_CONFIG variable's text, used
    when none of the flags is given. Bad or half-given settings raise
    helper.InputError naming the flag or TF_CONFIG."""
    given = [name for name, value in (('--ps_hosts', ps_hosts), ('--worker_hosts', worker_hosts),
                                      ('--job_name', job_name)) if value]
    if given and tf_config:
        raise helper.InputError('TF_CONFIG', None, 'the cluster is given twice, by TF_CONFIG and '
                                'by %s: unset one' % ', '.join(given))
    if tf_config:
        return task_from_tf_config(tf_config)
    if not given:
        return None
    missing = [name for name in ('--ps_hosts', '--worker_hosts', '--job_name')
               if name not in given]
    if missing:
        raise helper.InputError(given[0], None, 'a cluster needs --ps_hosts, --worker_hosts and '
                                '--job_name; missing %s' % ', '.join(missing))
    return make_task({'ps': list(ps_hosts), 'worker': list(worker_hosts)}, job_name,
                     task_index, '--job_name/--task_index')


def task_from_tf_config(text):
    """The Task TF_CONFIG describes: {"cluster": {"ps": [...], "worker": [...],
    optionally "chief": [one]}, "task": {"type": ..., "index": ...}}. A chief
    (or, in older operators, master) task is worker 0 and the workers follow it."""
    try:
        config = json.loads(text)
        cluster, task = dict(config['cluster']), dict(config['task'])
        job_name, task_index = task['type'], int(task.get('index', 0))
    except (ValueError, TypeError, KeyError) as error:
        raise helper.InputError('TF_CONFIG', None, 'not a cluster description (%s): expected '
                                '{"cluster": {"ps": [...], "worker": [...]}, "task": {"type": '
                                '"worker", "index": 0}}' % error)
    chiefs = [job for job in ('chief', 'master') if job in cluster]
    if len(chiefs) > 1 or any(len(cluster[job]) != 1 for job in chiefs):
        raise helper.InputError('TF_CONFIG', None, 'expected one chief task, found %s'
                                % {job: cluster[job] for job in chiefs})
    unknown = set(cluster) - set(JOBS) - set(chiefs)
    if unknown or job_name not in JOBS + tuple(chiefs):
        raise helper.InputError('TF_CONFIG', None, 'train.py runs ps, worker and chief tasks, '
                                'not %s (evaluate with eval.py --watch on the chief\'s '
                                'train_dir)' % ', '.join(sorted(unknown) or [job_name]))
    hosts = {'ps': cluster.get('ps', []),
             'worker': [host for job in chiefs for host in cluster[job]] + cluster.get('worker', [])}
    if job_name in chiefs:
        job_name, task_index = 'worker', 0
    elif job_name == 'worker' and chiefs:
        task_index += 1
    return make_task(hosts, job_name, task_index, 'TF_CONFIG')


def make_task(hosts, job_name, task_index, source):
    """A checked Task; problems raise InputError naming `source`."""
    for job in JOBS:
        if not hosts.get(job):
            raise helper.InputError(source, None, 'the cluster has no %s task; parameter-server '
                                    'training needs at least one' % job)
        for address in hosts[job]:
            check_address(address, source)
    addresses = hosts['ps'] + hosts['worker']
    repeated = sorted({a for a in addresses if addresses.count(a) > 1})
    if repeated:
        raise helper.InputError(source, None, 'address used by two tasks: %s' % ', '.join(repeated))
    if job_name not in JOBS:
        raise helper.InputError(source, None, 'job %r: expected ps or worker' % job_name)
    if not 0 <= task_index < len(hosts[job_name]):
        raise helper.InputError(source, None, 'task index %d of job %s: the cluster has %d %s '
                                'task(s) (indices from 0)' % (task_index, job_name,
                                                             len(hosts[job_name]), job_name))
    return Task({job: list(hosts[job]) for job in JOBS}, job_name, task_index)


def check_address(address, source):
    host, _, port = str(address).rpartition(':')
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise helper.InputError(source, None, 'address %r: expected host:port' % (address,))


# --------------------------------------------------------------------------
# Servers, placement, seeds
# --------------------------------------------------------------------------
def start_server(task, config=None):
    """This task's gRPC server. A worker's server takes `config` (the
    ConfigProto of helper.session_config: the GPU it owns); a ps keeps its
    variables in host memory and never takes a GPU."""
    # gRPC calls to a task that went away fail at once instead of waiting for
    # it to come back (a new ps would not hold this run's variables anyway).
    os.environ.setdefault('GRPC_FAIL_FAST', 'true')
    if task.job_name == 'ps':
        config = tf.ConfigProto(device_count={'GPU': 0})
    server = tf.train.Server(task.cluster_spec(), job_name=task.job_name,
                             task_index=task.task_index, config=config, start=True)
    logging.info('%s serving at %s (cluster: %d ps, %d workers)', task.name, task.address,
                 len(task.hosts['ps']), task.num_workers)
    return server


def serve(task):
    """Run a parameter server until the process is stopped."""
    start_server(task).join()


def device_setter(task, device):
    """Variables round-robin on the ps tasks, every other op on this worker
    (its CPU for `device` '/cpu:0', as helper.configure_device returns it;
    its GPU otherwise)."""
    worker_device = task.name + (device or '')
    return tf.train.replica_device_setter(worker_device=worker_device,
                                          cluster=task.cluster_spec())


def session_config(task, config):
    """A copy of `config` (helper.session_config's) with which a worker sees
    only the ps tasks and itself: its session neither waits for nor fails
    with another worker."""
    filtered = tf.ConfigProto()
    filtered.CopyFrom(config)
    filtered.device_filters[:] = ['/job:ps', task.name]
    return filtered


def wait_for_ps(task):
    """Return once every ps task accepts connections. A session created
    before that fails at once (GRPC_FAIL_FAST), and TensorFlow would retry it
    in a tight loop."""
    started = next_report = time.monotonic()
    for address in task.hosts['ps']:
        host, _, port = address.rpartition(':')
        while not _listening(host, int(port)):
            if time.monotonic() >= next_report:
                logging.info('%s: waiting for ps %s (%.0f s)', task.name, address,
                             time.monotonic() - started)
                next_report = time.monotonic() + PS_REPORT_SECS
            time.sleep(PS_POLL_SECS)


def _listening(host, port):
    try:
        socket.create_connection((host, port), timeout=PS_POLL_SECS).close()
        return True
    except OSError:
        return False


def worker_seed(seed, task_index):
    """The input-order (and dropout) seed of a worker: `seed` itself for the
    chief, so a one-worker cluster reads as train.py alone does; an independent
    seed derived from (seed, index) for the others."""
    if task_index == 0:
        return seed
    return int(np.random.SeedSequence([seed, task_index]).generate_state(1)[0] % (2 ** 31 - 1))


def sync_replicas(optimizer, task):
    """SyncReplicasOptimizer over `optimizer`: each update averages as many
    fresh gradients as there are workers (a faster worker may send two, stale
    ones are dropped). Returns it and the hook every worker must run."""
    sync = tf.train.SyncReplicasOptimizer(optimizer, replicas_to_aggregate=task.num_workers,
                                          total_num_replicas=task.num_workers)
    return sync, sync.make_session_run_hook(task.is_chief)


# --------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------
class _WorkerSessionCreator(tf.train.SessionCreator):
    """A non-chief worker's session: it waits until the chief has initialised
    or restored the variables, looking every READY_POLL_SECS."""

    def __init__(self, scaffold, master, config):
        self._scaffold, self._master, self._config = scaffold, master, config

    def create_session(self):
        self._scaffold.finalize()
        manager = tf.train.SessionManager(
            local_init_op=self._scaffold.local_init_op, ready_op=self._scaffold.ready_op,
            ready_for_local_init_op=self._scaffold.ready_for_local_init_op,
            graph=tf.get_default_graph(), recovery_wait_secs=READY_POLL_SECS)
        return manager.wait_for_session(self._master, config=self._config,
                                        max_wait_secs=READY_TIMEOUT_SECS)


class _OneSessionOnly(tf.train.SessionCreator):
    """MonitoredSession answers a lost connection by creating a new session,
    and waits for the lost task for as long as it takes. A worker talks to the
    ps tasks only (session_config), so that can only mean a ps is gone, and
    its variables with it: after the first session this raises
    ParameterServerLost instead. Before the first session it waits for the ps
    tasks to listen, and a failed attempt is retried after PS_POLL_SECS."""

    def __init__(self, creator, task):
        self._creator, self._task, self._created = creator, task, False

    def create_session(self):
        if self._created:
            raise ParameterServerLost(
                '%s lost its connection to the parameter server(s) %s; the variables there are '
                'gone. Restart the ps task(s), then the workers: the chief resumes from the '
                'latest checkpoint.' % (self._task.name, ', '.join(self._task.hosts['ps'])))
        wait_for_ps(self._task)
        try:
            session = self._creator.create_session()
        except (tf.errors.UnavailableError, tf.errors.AbortedError):
            time.sleep(PS_POLL_SECS)
            raise
        self._created = True
        return session


class _ReportStart(tf.train.SessionRunHook):
    """Logs, as soon as a session exists, the global step it starts at and
    where the chief's variables came from: how a restart shows it resumed."""

    def __init__(self, task, train_dir):
        self._task, self._train_dir, self._global_step = task, train_dir, None

    def begin(self):
        self._global_step = tf.train.get_global_step()

    def after_create_session(self, session, coord):
        if self._task.is_chief:
            checkpoint = tf.train.latest_checkpoint(self._train_dir)
            source = 'restored %s' % os.path.basename(checkpoint) if checkpoint else 'initialised'
        else:
            source = 'variables of the chief'
        logging.info('%s: session ready at global step %d (%s)', self._task.name,
                     session.run(self._global_step), source)


def monitored_session(task, server, train_dir, scaffold, hooks, config,
                      save_checkpoint_secs, save_summaries_secs):
    """What tf.train.MonitoredTrainingSession(master=server.target,
    is_chief=task.is_chief, ...) builds: the chief restores from train_dir's
    latest checkpoint (or initialises) and saves checkpoints and summaries
    there; another worker waits for the chief and writes nothing. Unlike it,
    the session ends with ParameterServerLost when a ps goes away."""
    hooks = [_ReportStart(task, train_dir)] + list(hooks)
    if not task.is_chief:
        creator = _WorkerSessionCreator(scaffold, server.target, config)
        return tf.train.MonitoredSession(session_creator=_OneSessionOnly(creator, task),
                                         hooks=hooks, stop_grace_period_secs=STOP_GRACE_SECS)
    creator = tf.train.ChiefSessionCreator(scaffold=scaffold, master=server.target,
                                           config=config, checkpoint_dir=train_dir)
    chief_hooks = [
        hooks[0],
        tf.train.StepCounterHook(output_dir=train_dir, every_n_steps=100),
        tf.train.SummarySaverHook(scaffold=scaffold, save_secs=save_summaries_secs,
                                  output_dir=train_dir),
        tf.train.CheckpointSaverHook(train_dir, save_secs=save_checkpoint_secs,
                                     scaffold=scaffold),
    ]
    return tf.train.MonitoredSession(session_creator=_OneSessionOnly(creator, task),
                                     hooks=chief_hooks + hooks[1:],
                                     stop_grace_period_secs=STOP_GRACE_SECS)
