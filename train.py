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

import data_provider
import helper
import models
from ser import cluster, training
from ser import mixed_precision
from ser import paths

FLAGS = flags.FLAGS

# ---- Dataset flags ----
flags.DEFINE_string('dataset_dir', paths.tfrecords_dir(helper.DEFAULT_WORK_DIR),
                    'Directory with dataset.json and the train/ TFRecords (data_generator.py).')
flags.DEFINE_integer('batch_size', 5, 'Windows per batch.', lower_bound=1)
flags.DEFINE_integer('sequence_length', 100,
                     'Frames per window (250 ms each); any value, no TFRecord regeneration.',
                     lower_bound=1)
flags.DEFINE_enum('windows', data_provider.DEFAULT_WINDOWS, list(data_provider.WINDOW_SCHEMES),
                  'How windows are cut. per_segment: each segment after 0..T-1 padding frames, '
                  'its last window padded (most of a window is padding when segments are shorter '
                  'than it); tight: each segment in the fewest windows that hold it, its spare '
                  'frames as padding at random before and after it; packed: the shuffled segments '
                  'run one after another, one padding frame between two, the LSTM state reset '
                  'where a segment starts. tight and packed compute less padding but trained '
                  'less accurate models on the demo corpus (RESULTS.md).')
flags.DEFINE_bool('skip_padding', True,
                  'Compute the model only on the frames that reach a real frame\'s prediction '
                  '(models.compact_frame_features): the same predictions and gradients in '
                  'distribution, without the padding most per-segment windows are made of. '
                  '--noskip_padding computes every frame of every window, as before.')

# ---- Model flags ----
flags.DEFINE_integer('hidden_units', models.DEFAULT_HIDDEN_UNITS,
                     'LSTM units (recorded in model.json; a resumed run must keep them).',
                     lower_bound=1)
flags.DEFINE_enum('modality', models.DEFAULT_MODALITY, list(models.MODALITIES),
                  'What the model hears: both inputs, audio alone (zero embeddings) or text '
                  'alone (zero audio frames), through the same model (recorded in model.json; '
                  'a resumed run must keep it).')

# ---- Optimisation flags ----
flags.DEFINE_float('learning_rate', 5e-4, 'Adam learning rate (beta1 0.9, beta2 0.99).',
                   lower_bound=0.0)
flags.DEFINE_list('loss_weights', None,
                  'Comma list, one weight per dimension (arousal,valence), e.g. "1,1"; the '
                  'total loss is their normalised weighted mean. Default: plain mean.')
flags.DEFINE_integer('max_steps', None,
                     'Stop at this global step (counting steps of earlier runs); '
                     'default: train until stopped with Ctrl-C.', lower_bound=0)
flags.DEFINE_integer('seed', 0, 'Seed of weight initialisation, dropout and window shuffling.')

# ---- Checkpoint and logging flags ----
flags.DEFINE_string('train_dir', 'checkpoints/',
                    'Where checkpoints, summaries, model.json, dataset.json and log_train.txt go; '
                    'training resumes from the latest checkpoint found here.')
flags.DEFINE_integer('save_interval_secs', 120, 'Seconds between checkpoints.', lower_bound=1)
flags.DEFINE_integer('save_summaries_secs', 60, 'Seconds between TensorBoard summaries.',
                     lower_bound=1)
flags.DEFINE_integer('max_checkpoints', 5, 'How many recent checkpoints to keep.', lower_bound=1)
flags.DEFINE_integer('log_every_n_steps', 10, 'Steps between progress lines in log_train.txt.',
                     lower_bound=1)
helper.define_flags('verbose')

# ---- Device flags ----
helper.define_flags('device')
flags.DEFINE_enum('precision', mixed_precision.DEFAULT_PRECISION, list(mixed_precision.PRECISIONS),
                  'Arithmetic of the training step, through TensorFlow\'s mixed-precision graph '
                  'rewrite; variables and checkpoints stay float32 either way. bf16: oneDNN on '
                  'the CPU (fast only with avx512_bf16 or AMX; emulated, and slower, without); '
                  'fp16: on a GPU, without a loss scale; auto (the default): bf16 on a CPU with '
                  'bf16 instructions, fp32 otherwise (a GPU included). The precision used goes '
                  'into log_train.txt and model.json.')
flags.DEFINE_bool('xla', False,
                  'Compile the training step with XLA (JIT). Same math; on this project\'s '
                  '2-core CPU it made steps slower (BENCHMARKS.md), so it is off by default.')

# ---- Distribution flags ----
flags.DEFINE_list('ps_hosts', None,
                  'Parameter-server tasks of a cluster, host:port,... With --worker_hosts and '
                  '--job_name this process is one task of it. Default: one process, or the '
                  'cluster of the TF_CONFIG environment variable.')
flags.DEFINE_list('worker_hosts', None,
                  'Worker tasks, host:port,... Worker 0 is the chief, the only one that writes '
                  '--train_dir.')
flags.DEFINE_enum('job_name', None, list(cluster.JOBS),
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
    settings = training.Settings(
        batch_size=FLAGS.batch_size, sequence_length=FLAGS.sequence_length,
        hidden_units=FLAGS.hidden_units, modality=FLAGS.modality,
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
    try:
        training.train(FLAGS.dataset_dir, FLAGS.train_dir, settings, flag_values, task)
    except cluster.ParameterServerLost as lost:
        logging.error('%s', lost)
        return 1
    return 0


if __name__ == '__main__':
    helper.run(main)
