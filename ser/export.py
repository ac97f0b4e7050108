"""A trained checkpoint as a TensorFlow SavedModel that TensorFlow Serving
loads, and that ser.inference.Predictor.from_saved_model (predict.py,
serve.py) reads.

`export(checkpoint_dir, steps, export_dir)` writes `<export_dir>/<step>/`
(the integer version directory TensorFlow Serving expects): saved_model.pb,
variables/, and assets.extra/ holding the checkpoint's model.json, its
dataset.json and (unless bundle_embeddings is off) the word vectors under
assets.extra/embeddings/, the dataset.json pointing at them, so the export
needs nothing else. The signature `serving_default` (method predict) takes
any batch of any number of frames:

    inputs   audio       float32 [batch, frames, frame_samples]
             embeddings  float32 [batch, frames, embedding_dim]
    outputs  arousal     float32 [batch, frames]
             valence     float32 [batch, frames]

and the signature `chunk` runs a long recording piece by piece (what
Predictor uses; TensorFlow Serving can serve it too):

    inputs   audio       float32 [batch, before + frames + after, frame_samples]
             embeddings  float32 [batch, frames, embedding_dim]
             context     int32 [2]  (before, after): audio frames around the chunk's,
                         read by the convolutions only (ser.inference.inference_graph)
             state_c, state_h  float32 [batch, hidden_units]: the LSTM state after the
                         previous chunk (zeros at the start)
    outputs  arousal, valence [batch, frames]; state_c, state_h for the next chunk

The model is built for inference (no dropout) in the modality it was trained
with: a model trained on audio alone zeroes the embeddings inside the graph,
one trained on text alone the audio, so the signature stays the same and
serves exactly what the checkpoint computes. The export is assembled in a
hidden directory inside export_dir, reloaded and checked against the
checkpoint on random frames, then renamed into place.
"""

import logging
import os
import shutil
import tempfile

import numpy as np

import helper
from ser import checkpoints
from ser import defaults
from ser import dataset
from ser import paths
from ser.inference import (CHUNK_SIGNATURE_KEY, EMBEDDINGS_DIR, EXTRA_DIR, SIGNATURE_KEY,
                           inference_graph)

tf = helper.import_tensorflow()

# Random frames run through checkpoint and export to prove they agree.
CHECK_FRAMES = 3
CHECK_TOLERANCE = 1e-5


def serving_graph(frame_samples, embedding_dim, hidden_units, modality=defaults.MODALITY):
    """The inference model (ser.inference.inference_graph), hearing what it
    was trained to hear, and its two signatures: {key: (inputs, outputs)},
    dicts of tensors. serving_default takes whole recordings (audio,
    embeddings -> arousal, valence); 'chunk' adds the context frames and the
    LSTM state in and out."""
    inputs, outputs = inference_graph(frame_samples, embedding_dim, hidden_units, modality)
    predictions = outputs['predictions']
    dimensions = {name: tf.identity(predictions[..., index], name=name)
                  for index, name in enumerate(paths.DIMENSIONS)}
    whole = {name: inputs[name] for name in ('audio', 'embeddings')}
    chunk_outputs = dict(dimensions, state_c=outputs['state_c'], state_h=outputs['state_h'])
    return {SIGNATURE_KEY: (whole, dimensions), CHUNK_SIGNATURE_KEY: (inputs, chunk_outputs)}


def embeddings_files(info):
    """The word vectors of a DatasetInfo: the file and its gensim companions
    (<name>.vectors.npy, ...)."""
    path = info.embeddings_path
    if not path or not os.path.isfile(path):
        raise helper.InputError(info.path, None, 'word vectors %r not found; export with '
                                '--nobundle_embeddings to leave them out' % path)
    directory, name = os.path.split(path)
    return [path] + [os.path.join(directory, n) for n in helper.list_dir(directory)
                     if n.startswith(name + '.')]


def check_inputs(config):
    """{signature key: feed} of random inputs: three whole frames; one frame
    between two context frames from a random LSTM state."""
    rng = np.random.default_rng(0)
    audio = rng.uniform(-1, 1, (1, CHECK_FRAMES, config['frame_samples'])).astype(np.float32)
    embeddings = rng.normal(size=(1, CHECK_FRAMES, config['embedding_dim'])).astype(np.float32)
    state = rng.normal(size=(2, 1, config['hidden_units'])).astype(np.float32)
    return {SIGNATURE_KEY: {'audio': audio, 'embeddings': embeddings},
            CHUNK_SIGNATURE_KEY: {'audio': audio, 'embeddings': embeddings[:, 1:2],
                                  'context': np.array([1, 1], dtype=np.int32),
                                  'state_c': state[0], 'state_h': state[1]}}


def build_saved_model(prefix, config, model_dir):
    """Write the SavedModel of checkpoint `prefix` to the new directory
    `model_dir`; returns the checkpoint's outputs on the check inputs,
    {signature key: {output: value}}."""
    graph = tf.Graph()
    with graph.as_default():
        signatures = serving_graph(config['frame_samples'], config['embedding_dim'],
                                   config['hidden_units'], config['modality'])
        with tf.Session(graph=graph, config=helper.session_config(-1)) as session:
            checkpoints.restore(session, prefix)
            for key, (inputs, outputs) in signatures.items():
                for name, tensor in list(inputs.items()) + list(outputs.items()):
                    helper.development_msg('signature %s, %s: %s %s', key, name, tensor.name,
                                           tensor.shape)
            builder = tf.saved_model.Builder(model_dir)
            builder.add_meta_graph_and_variables(
                session, [tf.saved_model.tag_constants.SERVING],
                signature_def_map={key: tf.saved_model.signature_def_utils.predict_signature_def(
                    inputs=inputs, outputs=outputs)
                    for key, (inputs, outputs) in signatures.items()},
                clear_devices=True, strip_default_attrs=True)
            builder.save()
            feeds = check_inputs(config)
            return {key: session.run(outputs, {inputs[name]: value
                                               for name, value in feeds[key].items()})
                    for key, (inputs, outputs) in signatures.items()}


def saved_model_outputs(model_dir, feeds):
    """Run each exported signature exactly as a server would: load, feed by
    name. {signature key: {output: value}}."""
    graph = tf.Graph()
    with tf.Session(graph=graph, config=helper.session_config(-1)) as session:
        meta_graph = tf.saved_model.loader.load(session, [tf.saved_model.tag_constants.SERVING],
                                                model_dir)
        results = {}
        for key, feed in feeds.items():
            signature = meta_graph.signature_def[key]
            fetches = {name: graph.get_tensor_by_name(info.name)
                       for name, info in signature.outputs.items()}
            results[key] = session.run(fetches, {
                graph.get_tensor_by_name(signature.inputs[name].name): value
                for name, value in feed.items()})
        return results


def check_export(model_dir, config, expected):
    actual = saved_model_outputs(model_dir, check_inputs(config))
    for key, outputs in expected.items():
        for name, value in outputs.items():
            difference = float(np.max(np.abs(actual[key][name] - value)))
            helper.development_msg('check %s %s: max abs difference %.2g', key, name, difference)
            if difference > CHECK_TOLERANCE:
                raise RuntimeError('exported %s (%s) differs from the checkpoint by %g'
                                   % (name, key, difference))


def copy_extras(model_dir, checkpoint_dir, info, vector_files):
    """model.json, the word vectors (when given) and a dataset.json that points
    at them, into the export's assets.extra/."""
    extra_dir = os.path.join(model_dir, EXTRA_DIR)
    os.makedirs(os.path.join(extra_dir, EMBEDDINGS_DIR) if vector_files else extra_dir)
    shutil.copyfile(os.path.join(checkpoint_dir, checkpoints.MODEL_CONFIG_FILE),
                    os.path.join(extra_dir, checkpoints.MODEL_CONFIG_FILE))
    for path in vector_files:
        shutil.copyfile(path, os.path.join(extra_dir, EMBEDDINGS_DIR, os.path.basename(path)))
    if vector_files:
        info.embeddings_path = os.path.join(extra_dir, EMBEDDINGS_DIR,
                                            os.path.basename(vector_files[0]))
    info.save(extra_dir)


def export(checkpoint_dir, steps, export_dir, bundle_embeddings=True, overwrite=False):
    """Export model.ckpt-<steps> (latest if None) to <export_dir>/<step>/.
    Returns the version directory; an existing one is kept unless overwrite."""
    prefix, step = checkpoints.checkpoint_path(checkpoint_dir, steps)
    info = dataset.DatasetInfo.load(checkpoint_dir)
    config = checkpoints.read_model_config(checkpoint_dir)
    target = os.path.join(export_dir, str(step))
    if os.path.exists(target) and not overwrite:
        logging.info('%s exists, skipped (--overwrite to replace it)', target)
        return target
    vector_files = embeddings_files(info) if bundle_embeddings else []
    os.makedirs(export_dir, exist_ok=True)
    # Hidden, so that TensorFlow Serving, which watches export_dir for integer
    # directories, never sees a half-written version; beside the target, so
    # that dataset.json's relative paths hold after the rename.
    staging = tempfile.mkdtemp(prefix='.export-', dir=export_dir)
    replaced = None
    try:
        expected = build_saved_model(prefix, config, staging)
        copy_extras(staging, checkpoint_dir, info, vector_files)
        check_export(staging, config, expected)
        if os.path.exists(target):
            replaced = tempfile.mkdtemp(prefix='.replaced-', dir=export_dir)
            os.rename(target, os.path.join(replaced, str(step)))
        os.rename(staging, target)
    finally:
        for directory in (staging, replaced):
            if directory:
                shutil.rmtree(directory, ignore_errors=True)
    logging.info('exported %s to %s (signature %r: audio [batch, frames, %d], embeddings '
                 '[batch, frames, %d] -> arousal, valence [batch, frames]; and %r, which adds '
                 'context frames and the LSTM state); modality %s; word vectors %s', prefix,
                 target, SIGNATURE_KEY, config['frame_samples'],
                 config['embedding_dim'], CHUNK_SIGNATURE_KEY, config['modality'],
                 'bundled' if vector_files else 'not bundled')
    return target
