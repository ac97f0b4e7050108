"""Export a trained checkpoint as a TensorFlow SavedModel that TensorFlow
Serving loads (and predict.py / serve.py --saved_model).

    python export_model.py --checkpoint checkpoints/ [--steps N] --export_dir exported/

Writes `<export_dir>/<step>/`: saved_model.pb, variables/, and assets.extra/
with model.json, dataset.json and the word vectors, so that the export needs
nothing else. The signature `serving_default` takes audio [batch, frames,
frame_samples] and embeddings [batch, frames, embedding_dim] and gives arousal
and valence [batch, frames], in the modality the model was trained with. The
export is checked against the checkpoint before it is renamed into place; see
ser/export.py.
"""

from absl import flags

import helper
from ser import defaults, export

# ---- Checkpoint flags ----
helper.define_flags('checkpoint', 'steps')

# ---- Export flags ----
flags.DEFINE_string('export_dir', 'exported/',
                    'Base directory of the export; the model goes to <export_dir>/<steps>/.')
flags.DEFINE_bool('bundle_embeddings', True,
                  'Copy the word vectors named in dataset.json into the export, so that it is '
                  'self-contained; turn off for very large vectors, which are then read from '
                  'where they are (dataset.json keeps the path relative to the export).')
helper.define_flags('overwrite')

# ---- Logging flags ----
helper.define_flags('verbose')

FLAGS = flags.FLAGS


def main(argv):
    del argv
    # The export is device-independent; building it needs no GPU.
    helper.configure_device(-1)
    export.export(FLAGS.checkpoint or defaults.TRAIN_DIR, FLAGS.steps, FLAGS.export_dir, FLAGS.bundle_embeddings,
                  FLAGS.overwrite)
    return 0


if __name__ == '__main__':
    helper.run(main)
