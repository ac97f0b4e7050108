"""The training step the step benchmarks time (bench_model_step.py,
bench_step_profile.py): train.py's model, CCC loss and Adam on constant
inputs, with no input pipeline."""

import numpy as np

import helper
from ser import mixed_precision
from ser import paths
from ser import training

tf = helper.import_tensorflow()


def constant_inputs(batch_size, steps, frame_samples, embedding_dim, seed):
    """Random audio, embeddings and labels as non-trainable variables (so they
    are not folded into the graph as constants), and an all-ones mask."""
    rng = np.random.default_rng(seed)
    values = {
        'audio': rng.uniform(-0.5, 0.5, (batch_size, steps, frame_samples)),
        'embeddings': rng.standard_normal((batch_size, steps, embedding_dim)),
        'labels': rng.uniform(-1, 1, (batch_size, steps, len(paths.DIMENSIONS))),
    }
    inputs = {name: tf.Variable(value.astype(np.float32), trainable=False, name=name)
              for name, value in values.items()}
    inputs['mask'] = tf.ones([batch_size, steps], tf.float32)
    return inputs


def training_session(batch_size, sequence_length, frame_samples, embedding_dim, hidden_units,
                     xla, device, seed, precision):
    """(session, fetches) of one training step on constant inputs, initialised."""
    graph = tf.Graph()
    with graph.as_default(), tf.device(helper.configure_device(device)):
        tf.set_random_seed(seed)
        inputs = constant_inputs(batch_size, sequence_length, frame_samples, embedding_dim, seed)
        with training.xla_scope(xla):
            train_op, loss, _ = training.training_step(
                inputs, training.Settings(hidden_units=hidden_units, skip_padding=False))
        session = tf.Session(config=mixed_precision.session_config(device, xla=xla,
                                                                    precision=precision))
        session.run(tf.global_variables_initializer())
    return session, [train_op, loss]
