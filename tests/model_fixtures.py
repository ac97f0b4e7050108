"""Models for the prediction and service tests, made in seconds: checkpoints
laid out as train.py writes them (dataset.json, model.json, model.ckpt-N) with
seeded random weights at the tiny dataset's shapes, and their export.

Random weights are enough here: these tests check that the same input gives
the same output through every path (checkpoint, SavedModel, predict.py,
serve.py), not what the model learnt; train.py itself is tested elsewhere."""

import os
import subprocess
import sys

import helper
import models
from ser import checkpoints
from ser import dataset

tf = helper.import_tensorflow()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
HIDDEN_UNITS = 16
# Two checkpoints with different weights, so that --steps visibly selects one.
STEPS = (0, 3)


def write_random_checkpoint(train_dir, dataset_dir, steps=STEPS, modality='both'):
    """A train.py-like directory at the shapes of the dataset in
    `dataset_dir`, one checkpoint per step, each with weights seeded by its
    step. The biases are random too, as a trained model's are: zero biases
    would hide a path that lets padding or context reach a frame (a ReLU of
    zero is zero)."""
    info = dataset.DatasetInfo.load(dataset_dir)
    os.makedirs(train_dir, exist_ok=True)
    info.save(train_dir)
    checkpoints.write_model_config(train_dir, HIDDEN_UNITS, info, modality)
    for step in steps:
        graph = tf.Graph()
        with graph.as_default():
            tf.set_random_seed(step)
            audio, embeddings = models.inference_inputs(info.frame_samples, info.embedding_dim)
            models.build_model(audio, embeddings, HIDDEN_UNITS, is_training=False,
                               modality=modality)
            randomise_biases = [bias.assign(tf.random.normal(tf.shape(bias), stddev=0.1))
                                for bias in models.model_variables() if 'bias' in bias.op.name]
            with tf.Session(graph=graph) as session:
                session.run(tf.global_variables_initializer())
                session.run(randomise_biases)
                tf.train.Saver(models.model_variables()).save(
                    session, os.path.join(train_dir, checkpoints.CHECKPOINT_PREFIX),
                    global_step=step)
    return str(train_dir)


def run_script(script, *args, **kwargs):
    """A pipeline script as a command: CompletedProcess with text output."""
    return subprocess.run([PYTHON, os.path.join(REPO, script)] + [str(a) for a in args],
                          cwd=kwargs.pop('cwd', REPO), capture_output=True, text=True,
                          timeout=kwargs.pop('timeout', 300), **kwargs)
