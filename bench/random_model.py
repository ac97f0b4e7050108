"""A model to time prediction with: a train.py-like directory (dataset.json,
model.json, model.ckpt-0) at the default shapes, with seeded random weights
and, when words are given, random word vectors for them. What the weights are
does not change how long the model takes."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import helper  # noqa: E402  (needs the repository on sys.path)
import models  # noqa: E402
from ser import checkpoints  # noqa: E402
from ser import defaults  # noqa: E402
from ser import dataset  # noqa: E402

tf = helper.import_tensorflow()

# The defaults of data_generator.py and train.py.
SAMPLE_RATE = 16000
EMBEDDING_DIM = 100


def write_word_vectors(path, words, dim, seed):
    """gensim KeyedVectors of `words` with random values, saved at `path`."""
    from gensim.models import KeyedVectors
    words = sorted(set(words))
    vectors = KeyedVectors(vector_size=dim)
    vectors.add_vectors(words, np.random.default_rng(seed).standard_normal(
        (len(words), dim)).astype(np.float32))
    vectors.save(path, separately=[])
    return path


def random_checkpoint(directory, sample_rate=SAMPLE_RATE, embedding_dim=EMBEDDING_DIM,
                      hidden_units=defaults.HIDDEN_UNITS, seed=0, words=()):
    """Write the model directory; `words` get vectors (none: the model serves
    audio alone)."""
    vectors_path = None
    if words:
        vectors_path = write_word_vectors(os.path.join(directory, 'vectors.kv'), words,
                                          embedding_dim, seed)
    info = dataset.DatasetInfo.create(sample_rate, embedding_dim, vectors_path)
    info.save(directory)
    checkpoints.write_model_config(directory, hidden_units, info)
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(seed)
        audio, embeddings = models.inference_inputs(info.frame_samples, embedding_dim)
        models.build_model(audio, embeddings, hidden_units, is_training=False)
        with tf.Session(graph=graph) as session:
            session.run(tf.global_variables_initializer())
            tf.train.Saver(models.model_variables()).save(
                session, os.path.join(directory, checkpoints.CHECKPOINT_PREFIX), global_step=0)
    return directory
