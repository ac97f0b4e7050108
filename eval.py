"""Evaluate a checkpoint on one portion: CCC per dimension over the portion.

    python eval.py --portion devel --checkpoint checkpoints/ [--steps N] [--device -1]
    python eval.py --watch ...      # follow a training run, keep the best checkpoint

Every segment `<Id>_<seg>` of the portion runs whole, frames in order, padding
excluded; CCC is computed over the concatenation of all segments. Results: a
table on stdout, one line appended to <checkpoint>/log_eval.txt, optionally
--json, and per segment <Id>/<Id>_<seg>.csv
(timestamp,arousal_pred,valence_pred,arousal,valence; ms from the segment
start) and <Id>/<Id>_<seg>.png under --predictions_dir.

The model hears what it was trained to hear (the modality in model.json:
both, audio or text); another --modality is refused unless
--allow_modality_mismatch. The JSON and the log line record the modality used.

--watch evaluates each new checkpoint as train.py writes it and keeps the best
by mean CCC in <checkpoint>/best/: that checkpoint's files, model.json,
dataset.json and best.json, so `--checkpoint <checkpoint>/best` works with
eval.py, predict.py and export_model.py.
"""

import os

from absl import flags

import helper
from ser import defaults, mixed_precision

FLAGS = flags.FLAGS

# ---- Dataset flags ----
helper.define_flags('dataset_dir', 'portion')

# ---- Model flags ----
helper.define_flags('modality', 'allow_modality_mismatch', 'chunk_seconds')

# ---- Checkpoint flags ----
helper.define_flags('checkpoint', 'steps')
flags.DEFINE_bool('watch', False,
                  'Evaluate every new checkpoint as training writes it and keep the best '
                  '(mean CCC) in <checkpoint>/best/.')
flags.DEFINE_integer('watch_interval_secs', 30, 'With --watch: seconds between looks for a new '
                     'checkpoint.', lower_bound=1)
flags.DEFINE_integer('watch_timeout_secs', 900, 'With --watch: stop after this many seconds '
                     'without a new checkpoint.', lower_bound=1)

# ---- Output flags ----
helper.define_flags('json')
flags.DEFINE_string('predictions_dir', None,
                    'Where the per-segment CSV and PNG go (<Id>/<Id>_<seg>.csv); default '
                    'predictions/<portion>/.')
flags.DEFINE_bool('plots', True, 'Draw a PNG per segment beside its CSV.')
helper.define_flags('verbose')

# ---- Device flags ----
helper.define_flags('device', 'precision')


def main(argv):
    del argv
    mixed_precision.prepare_process([FLAGS.precision])
    # Here rather than at the top, so that TensorFlow loads knowing the precision.
    from ser import checkpoints, evaluation
    checkpoint_dir = FLAGS.checkpoint or defaults.TRAIN_DIR
    portion = FLAGS.portion or defaults.EVAL_PORTION
    helper.configure_device(FLAGS.device)
    evaluation.check_compatible(checkpoint_dir, FLAGS.dataset_dir)
    config = checkpoints.read_model_config(checkpoint_dir)
    config['modality'] = checkpoints.choose_modality(
        os.path.join(checkpoint_dir, checkpoints.MODEL_CONFIG_FILE), config['modality'],
        FLAGS.modality, FLAGS.allow_modality_mismatch)
    options = evaluation.Options(
        dataset_dir=FLAGS.dataset_dir, portion=portion, device=FLAGS.device,
        predictions_dir=FLAGS.predictions_dir, plots=FLAGS.plots, json_path=FLAGS.json,
        precision=mixed_precision.choose_precision(FLAGS.precision, FLAGS.device),
        chunk_seconds=FLAGS.chunk_seconds)
    if FLAGS.watch:
        evaluation.watch(checkpoint_dir, config, options, FLAGS.watch_interval_secs,
                         FLAGS.watch_timeout_secs)
    else:
        prefix, step = checkpoints.checkpoint_path(checkpoint_dir, FLAGS.steps)
        evaluation.evaluate(prefix, step, checkpoint_dir, config, options)
    return 0


if __name__ == '__main__':
    helper.run(main)
