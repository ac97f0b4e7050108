"""Train the semantic + acoustic emotion model on the train TFRecords.

    python train.py --dataset_dir tfrecords/ --train_dir checkpoints/ [--max_steps N] [--device -1]

Writes into --train_dir: model.ckpt-N.{index,meta,data-*} and `checkpoint`
(every --save_interval_secs and when training stops), TensorBoard events
(losses, CCC per dimension, learning rate every --save_summaries_secs),
dataset.json (the dataset's, its paths relative to --train_dir), model.json
(the sizes eval.py, predict.py and export_model.py need to rebuild the graph:
hidden_units, frame_samples, embedding_dim, and the --modality it hears) and
log_train.txt (every flag of each run, then progress lines).
Rerunning resumes from the latest checkpoint. Ctrl-C saves a checkpoint and exits.

On several machines (TensorFlow's gRPC runtime, parameter servers and workers),
every task runs train.py with the same cluster and its own job:

    python train.py --ps_hosts h0:2222 --worker_hosts h1:2222,h2:2222 --job_name ps
    python train.py ... --job_name worker --task_index 0    # the chief: writes --train_dir
    python train.py ... --job_name worker --task_index 1

or with the cluster in the TF_CONFIG environment variable instead of the four
flags. A ps serves until it is stopped.

--windows says how training windows are cut from the segments: per_segment,
the default, cuts each segment on its own after a random offset; tight puts
each in the fewest windows that hold it, and packed runs the segments one
after another with the LSTM restarting at each (RESULTS.md: both trained less
accurate models on the demo corpus). Whatever the windows, --skip_padding (the
default) computes the model only on the frames that can change a real frame's
prediction, not on the padding that fills most per-segment windows.
--precision (auto: bf16 on a CPU with native bf16, else fp32) runs the step in
mixed precision where the machine has it natively. Checkpoints are
float32 whatever the precision, the windows or the padding, and a run may
resume with others.
"""

import logging
import os
import sys

from absl import flags

import helper
from ser import defaults, mixed_precision, paths

FLAGS = flags.FLAGS

# ---- Dataset flags ----
helper.define_flags('dataset_dir', 'batch_size', 'sequence_length', 'windows', 'skip_padding')

# ---- Model flags ----
helper.define_flags('hidden_units', 'modality')

# ---- Optimisation flags ----
helper.define_flags('learning_rate')
flags.DEFINE_list('loss_weights', None,
                  'Comma list, one weight per dimension (arousal,valence), e.g. "1,1"; the '
                  'total loss is their normalised weighted mean. Default: plain mean.')
helper.define_flags('max_steps', 'seed')

# ---- Checkpoint and logging flags ----
flags.DEFINE_string('train_dir', defaults.TRAIN_DIR,
                    'Where checkpoints, summaries, model.json, dataset.json and log_train.txt go; '
                    'training resumes from the latest checkpoint found here.')
flags.DEFINE_integer('save_interval_secs', 120, 'Seconds between checkpoints.', lower_bound=1)
flags.DEFINE_integer('save_summaries_secs', 60, 'Seconds between TensorBoard summaries.',
                     lower_bound=1)
flags.DEFINE_integer('max_checkpoints', 5, 'How many recent checkpoints to keep.', lower_bound=1)
flags.DEFINE_integer('log_every_n_steps', defaults.LOG_EVERY_N_STEPS,
                     'Steps between progress lines in log_train.txt.', lower_bound=1)
helper.define_flags('verbose')

# ---- Device flags ----
helper.define_flags('device', 'precision', 'xla')

# ---- Distribution flags ----
flags.DEFINE_list('ps_hosts', None,
                  'Parameter-server tasks of a cluster, host:port,... With --worker_hosts and '
                  '--job_name this process is one task of it. Default: one process, or the '
                  'cluster of the TF_CONFIG environment variable.')
flags.DEFINE_list('worker_hosts', None,
                  'Worker tasks, host:port,... Worker 0 is the chief, the only one that writes '
                  '--train_dir.')
flags.DEFINE_enum('job_name', None, list(defaults.CLUSTER_JOBS),
                  'This task\'s job: a ps holds the variables and serves until stopped; a '
                  'worker trains.')
flags.DEFINE_integer('task_index', 0, 'This task\'s index in its job.', lower_bound=0)
flags.DEFINE_bool('sync_replicas', False,
                  'In a cluster: each update averages as many gradients as there are workers '
                  '(SyncReplicasOptimizer); default: each worker updates asynchronously.')


@flags.validator('loss_weights', message='--loss_weights needs one number per dimension '
                 '(%s), none negative, not all zero' % ','.join(paths.DIMENSIONS))
def _valid_loss_weights(value):
    if value is None:
        return True
    try:
        weights = [float(w) for w in value]
    except ValueError:
        return False
    return len(weights) == len(paths.DIMENSIONS) and min(weights) >= 0 and sum(weights) > 0


def main(argv):
    del argv
    mixed_precision.prepare_process([FLAGS.precision])
    # Here rather than at the top, so that --help does not load TensorFlow, and
    # it loads knowing the precision.
    from ser import cluster, training
    settings = training.Settings(
        batch_size=FLAGS.batch_size, sequence_length=FLAGS.sequence_length,
        hidden_units=FLAGS.hidden_units, modality=FLAGS.modality or defaults.MODALITY,
        learning_rate=FLAGS.learning_rate,
        loss_weights=[float(w) for w in FLAGS.loss_weights] if FLAGS.loss_weights else None,
        max_steps=FLAGS.max_steps, save_interval_secs=FLAGS.save_interval_secs,
        save_summaries_secs=FLAGS.save_summaries_secs, max_checkpoints=FLAGS.max_checkpoints,
        log_every_n_steps=FLAGS.log_every_n_steps, device=FLAGS.device, seed=FLAGS.seed,
        xla=FLAGS.xla, precision=FLAGS.precision, windows=FLAGS.windows,
        skip_padding=FLAGS.skip_padding,
        sync_replicas=FLAGS.sync_replicas)
    task = cluster.task_from_flags(FLAGS.ps_hosts, FLAGS.worker_hosts, FLAGS.job_name,
                                   FLAGS.task_index, os.environ.get('TF_CONFIG'))
    if task is None and FLAGS.sync_replicas:
        raise helper.InputError('--sync_replicas', None, 'needs a cluster (--ps_hosts, '
                                '--worker_hosts and --job_name, or TF_CONFIG)')
    flag_values = {flag.name: flag.value
                   for flag in FLAGS.get_key_flags_for_module(sys.modules[__name__])}
    flag_values['modality'] = settings.modality
    try:
        training.train(FLAGS.dataset_dir, FLAGS.train_dir, settings, flag_values, task)
    except cluster.ParameterServerLost as lost:
        logging.error('%s', lost)
        return 1
    return 0


if __name__ == '__main__':
    helper.run(main)
