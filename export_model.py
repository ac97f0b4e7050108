"""Export a trained checkpoint as a TensorFlow SavedModel that TensorFlow
Serving loads.

    python export_model.py --checkpoint checkpoints/ [--steps N] --export_dir exported/

Writes `<export_dir>/<step>/` (the integer version directory TensorFlow
Serving expects): `saved_model.pb`, `variables/`, and `assets.extra/` holding
copies of the checkpoint's dataset.json and model.json and of the word vectors
(assets.extra/embeddings/), so that `predict.py --saved_model` needs nothing
else. The signature `serving_default`
(method predict) takes any batch of any number of frames:

    inputs   audio       float32 [batch, frames, frame_samples]
             embeddings  float32 [batch, frames, embedding_dim]
    outputs  arousal     float32 [batch, frames]
             valence     float32 [batch, frames]

The model is built for inference (no dropout) in the modality it was trained
with (model.json): a model trained on audio alone zeroes the embeddings
inside the exported graph, one trained on text alone the audio, so the
signature stays the same and serves exactly what the checkpoint computes; the
copy of model.json in assets.extra/ says which. The export is assembled in a
hidden temporary directory inside --export_dir, reloaded and checked against
the checkpoint on a few frames of random input, then renamed into place.
"""

import logging
import os
import shutil
import tempfile

from absl import app, flags
import numpy as np

import helper
import models

tf = helper.import_tensorflow()

# --------------------------------------------------------------------------
# Flags
# --------------------------------------------------------------------------
# Every flag allows override: the pipeline's scripts share flag names and
# tests import several of them into one process, which absl otherwise refuses.
FLAGS = flags.FLAGS
flags.DEFINE_string('checkpoint', 'checkpoints/',
                    'Training directory of train.py (model.ckpt-N files, dataset.json, '
                    'model.json).', allow_override=True)
flags.DEFINE_integer('steps', None, 'Export model.ckpt-<steps>; default: the latest checkpoint.',
                     lower_bound=0, allow_override=True)
flags.DEFINE_string('export_dir', 'exported/',
                    'Base directory of the export; the model goes to <export_dir>/<steps>/.',
                    allow_override=True)
flags.DEFINE_bool('bundle_embeddings', True,
                  'Copy the word vectors named in dataset.json into the export, so that it is '
                  'self-contained; turn off for very large vectors, which predict.py then reads '
                  'from the path in dataset.json.', allow_override=True)
flags.DEFINE_bool('overwrite', False, 'Replace an existing export of the same step.',
                  allow_override=True)
flags.DEFINE_bool('verbose', False, 'Development messages (tensor names, checks).',
                  allow_override=True)

SIGNATURE_KEY = 'serving_default'
# Files beside the variables that are not part of the graph (TensorFlow
# Serving leaves this directory alone); predict.py --saved_model reads them.
EXTRA_DIR = 'assets.extra'
EMBEDDINGS_DIR = 'embeddings'
# Random frames run through checkpoint and export to prove they agree.
CHECK_FRAMES = 3
CHECK_TOLERANCE = 1e-5


def serving_graph(frame_samples, embedding_dim, hidden_units, modality=models.DEFAULT_MODALITY):
    """The inference model on placeholders for any batch and number of frames,
    hearing what it was trained to hear: the modality's zeroing is part of the
    graph, so a server needs to know nothing about it.
    Returns ({'audio', 'embeddings'}, {'arousal', 'valence'}) tensors."""
    audio, embeddings = models.inference_inputs(frame_samples, embedding_dim)
    predictions = models.build_model(audio, embeddings, hidden_units, is_training=False,
                                     modality=modality)
    outputs = {name: tf.identity(predictions[..., index], name=name)
               for index, name in enumerate(helper.DIMENSIONS)}
    return {'audio': audio, 'embeddings': embeddings}, outputs


def read_checkpoint_dir(checkpoint_dir, steps):
    """The checkpoint prefix, its step, its model.json and the files an export
    carries beside the variables: dataset.json and model.json."""
    prefix, step = models.checkpoint_path(checkpoint_dir, steps)
    dataset_path = os.path.join(checkpoint_dir, models.DATASET_FILE)
    if not os.path.isfile(dataset_path):
        raise helper.InputError(dataset_path, None,
                                'file not found: the checkpoint directory must hold the '
                                'dataset.json copy train.py writes')
    config = models.read_model_config(checkpoint_dir)
    return prefix, step, config, [dataset_path,
                                  os.path.join(checkpoint_dir, models.MODEL_CONFIG_FILE)]


def embeddings_files(dataset_path):
    """The word vectors named in dataset.json: the file and its gensim
    companions (<name>.vectors.npy, ...)."""
    path = helper.read_json(dataset_path).get('embeddings')
    if not path or not os.path.isfile(path):
        raise helper.InputError(dataset_path, None,
                                'word vectors %r not found; export with --nobundle_embeddings '
                                'to leave them out' % path)
    directory, name = os.path.split(path)
    return [path] + [os.path.join(directory, n) for n in helper.list_dir(directory)
                     if n.startswith(name + '.')]


def build_saved_model(prefix, config, model_dir):
    """Write the SavedModel of checkpoint `prefix` to the new directory
    `model_dir`; returns the checkpoint's outputs on random check frames."""
    graph = tf.Graph()
    with graph.as_default():
        inputs, outputs = serving_graph(config['frame_samples'], config['embedding_dim'],
                                        config['hidden_units'], config['modality'])
        with tf.Session(graph=graph, config=helper.session_config(-1)) as session:
            models.restore(session, prefix)
            for name, tensor in list(inputs.items()) + list(outputs.items()):
                helper.development_msg('signature %s: %s %s', name, tensor.name, tensor.shape)
            signature = tf.saved_model.signature_def_utils.predict_signature_def(
                inputs=inputs, outputs=outputs)
            builder = tf.saved_model.Builder(model_dir)
            builder.add_meta_graph_and_variables(
                session, [tf.saved_model.tag_constants.SERVING],
                signature_def_map={SIGNATURE_KEY: signature},
                clear_devices=True, strip_default_attrs=True)
            builder.save()
            feed = check_inputs(config)
            return session.run(outputs, {inputs[name]: value for name, value in feed.items()})


def check_inputs(config):
    rng = np.random.default_rng(0)
    audio = rng.uniform(-1, 1, (1, CHECK_FRAMES, config['frame_samples']))
    embeddings = rng.normal(size=(1, CHECK_FRAMES, config['embedding_dim']))
    return {'audio': audio.astype(np.float32), 'embeddings': embeddings.astype(np.float32)}


def saved_model_outputs(model_dir, feed):
    """Run the exported signature exactly as a server would: load, feed by name."""
    graph = tf.Graph()
    with tf.Session(graph=graph, config=helper.session_config(-1)) as session:
        meta_graph = tf.saved_model.loader.load(session, [tf.saved_model.tag_constants.SERVING],
                                                model_dir)
        signature = meta_graph.signature_def[SIGNATURE_KEY]
        fetches = {name: graph.get_tensor_by_name(info.name)
                   for name, info in signature.outputs.items()}
        return session.run(fetches, {graph.get_tensor_by_name(signature.inputs[name].name): value
                                     for name, value in feed.items()})


def check_export(model_dir, config, expected):
    actual = saved_model_outputs(model_dir, check_inputs(config))
    for name in helper.DIMENSIONS:
        difference = float(np.max(np.abs(actual[name] - expected[name])))
        helper.development_msg('check %s: max abs difference %.2g', name, difference)
        if difference > CHECK_TOLERANCE:
            raise RuntimeError('exported %s differs from the checkpoint by %g' % (name, difference))


def copy_extras(model_dir, paths, embeddings):
    """dataset.json, model.json and (when given) the word vectors, into the
    export's assets.extra/, where predict.py --saved_model looks for them."""
    extra_dir = os.path.join(model_dir, EXTRA_DIR)
    os.makedirs(os.path.join(extra_dir, EMBEDDINGS_DIR) if embeddings else extra_dir)
    for path in paths:
        shutil.copyfile(path, os.path.join(extra_dir, os.path.basename(path)))
    for path in embeddings:
        shutil.copyfile(path, os.path.join(extra_dir, EMBEDDINGS_DIR, os.path.basename(path)))


def export(checkpoint_dir, steps, export_dir, bundle_embeddings=True, overwrite=False):
    """Export model.ckpt-<steps> (latest if None) to <export_dir>/<step>/.
    Returns the version directory; an existing one is kept unless overwrite."""
    prefix, step, config, extras = read_checkpoint_dir(checkpoint_dir, steps)
    target = os.path.join(export_dir, str(step))
    if os.path.exists(target) and not overwrite:
        logging.info('%s exists, skipped (--overwrite to replace it)', target)
        return target
    embeddings = embeddings_files(extras[0]) if bundle_embeddings else []
    os.makedirs(export_dir, exist_ok=True)
    # Hidden, so that TensorFlow Serving, which watches export_dir for integer
    # directories, never sees a half-written version.
    staging = tempfile.mkdtemp(prefix='.export-', dir=export_dir)
    try:
        model_dir = os.path.join(staging, str(step))
        expected = build_saved_model(prefix, config, model_dir)
        copy_extras(model_dir, extras, embeddings)
        check_export(model_dir, config, expected)
        if os.path.exists(target):
            os.rename(target, os.path.join(staging, 'replaced'))
        os.rename(model_dir, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logging.info('exported %s to %s (signature %r: audio [batch, frames, %d], embeddings '
                 '[batch, frames, %d] -> arousal, valence [batch, frames]); modality %s; '
                 'word vectors %s', prefix, target, SIGNATURE_KEY, config['frame_samples'],
                 config['embedding_dim'], config['modality'],
                 'bundled' if embeddings else 'not bundled')
    return target


def main(argv):
    del argv
    helper.setup_logging(FLAGS.verbose)
    # The export is device-independent; building it needs no GPU.
    helper.configure_device(-1)
    try:
        export(FLAGS.checkpoint, FLAGS.steps, FLAGS.export_dir, FLAGS.bundle_embeddings,
               FLAGS.overwrite)
    except helper.InputError as error:
        logging.error('%s', error)
        return 1
    return 0


if __name__ == '__main__':
    app.run(main)
