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
import models
from ser import evaluation, inference

FLAGS = flags.FLAGS

# ---- Dataset flags ----
flags.DEFINE_string('dataset_dir', helper.tfrecords_dir(helper.DEFAULT_WORK_DIR),
                    'Directory with dataset.json and the portion\'s TFRecords.')
flags.DEFINE_enum('portion', 'devel', list(helper.PORTIONS), 'Portion to evaluate.')

# ---- Model flags ----
flags.DEFINE_enum('modality', None, list(models.MODALITIES),
                  'What the model hears: both, audio (zero embeddings) or text (zero audio '
                  'frames); default: the modality the checkpoint was trained with (model.json).')
flags.DEFINE_bool('allow_modality_mismatch', False,
                  'Run with a --modality other than the checkpoint\'s instead of refusing.')
flags.DEFINE_float('chunk_seconds', inference.DEFAULT_CHUNK_SECONDS,
                   'Run each segment through the model in chunks of this many seconds, the LSTM '
                   'state carried over (the same predictions within 1e-4, memory bounded '
                   'whatever the segment\'s length); 0: each segment in one pass.',
                   lower_bound=0.0)

# ---- Checkpoint flags ----
flags.DEFINE_string('checkpoint', 'checkpoints/',
                    'Checkpoint directory written by train.py (model.ckpt-N, model.json, '
                    'dataset.json).')
helper.define_flags('steps')
flags.DEFINE_bool('watch', False,
                  'Evaluate every new checkpoint as training writes it and keep the best '
                  '(mean CCC) in <checkpoint>/best/.')
flags.DEFINE_integer('watch_interval_secs', 30, 'With --watch: seconds between looks for a new '
                     'checkpoint.', lower_bound=1)
flags.DEFINE_integer('watch_timeout_secs', 900, 'With --watch: stop after this many seconds '
                     'without a new checkpoint.', lower_bound=1)

# ---- Output flags ----
flags.DEFINE_string('json', None, 'Also write the metrics to this JSON file.')
flags.DEFINE_string('predictions_dir', None,
                    'Where the per-segment CSV and PNG go (<Id>/<Id>_<seg>.csv); default '
                    'predictions/<portion>/.')
flags.DEFINE_bool('plots', True, 'Draw a PNG per segment beside its CSV.')
helper.define_flags('verbose')

# ---- Device flags ----
helper.define_flags('device')
flags.DEFINE_enum('precision', helper.DEFAULT_PRECISION, list(helper.PRECISIONS),
                  'Arithmetic of the model, as train.py --precision (any checkpoint runs in any '
                  'precision); auto picks what this machine runs natively.')


def main(argv):
    del argv
    helper.configure_device(FLAGS.device)
    evaluation.check_compatible(FLAGS.checkpoint, FLAGS.dataset_dir)
    config = models.read_model_config(FLAGS.checkpoint)
    config['modality'] = models.choose_modality(
        os.path.join(FLAGS.checkpoint, models.MODEL_CONFIG_FILE), config['modality'],
        FLAGS.modality, FLAGS.allow_modality_mismatch)
    options = evaluation.Options(
        dataset_dir=FLAGS.dataset_dir, portion=FLAGS.portion, device=FLAGS.device,
        predictions_dir=FLAGS.predictions_dir, plots=FLAGS.plots, json_path=FLAGS.json,
        precision=helper.choose_precision(FLAGS.precision, FLAGS.device),
        chunk_seconds=FLAGS.chunk_seconds)
    if FLAGS.watch:
        evaluation.watch(FLAGS.checkpoint, config, options, FLAGS.watch_interval_secs,
                         FLAGS.watch_timeout_secs)
    else:
        prefix, step = models.checkpoint_path(FLAGS.checkpoint, FLAGS.steps)
        evaluation.evaluate(prefix, step, FLAGS.checkpoint, config, options)
    return 0


if __name__ == '__main__':
    helper.run(main)
