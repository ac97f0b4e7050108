"""Checkpoints and what it takes to rebuild the model from them, as every
script that reloads a model needs it (eval.py, predict.py, export_model.py):
the model.json written beside the checkpoints, the modality to run the model
in, and the choice of `model.ckpt-N`. The dataset.json beside them is
ser.dataset.DatasetInfo.
"""
import logging
import os
import re

import helper
from ser import defaults
import models

tf = helper.import_tensorflow()

# Files written beside the checkpoints by train.py (with dataset.json).
MODEL_CONFIG_FILE = 'model.json'
CHECKPOINT_PREFIX = 'model.ckpt'


def write_model_config(train_dir, hidden_units, dataset, modality=defaults.MODALITY,
                       precision=None):
    """model.json: everything beyond dataset.json (`dataset`, a DatasetInfo)
    needed to rebuild the graph, the modality the model was trained to hear
    and, when given, the precision its last training run computed in."""
    config = {
        'hidden_units': int(hidden_units),
        'frame_samples': int(dataset.frame_samples),
        'embedding_dim': int(dataset.embedding_dim),
        'modality': modality,
    }
    if precision is not None:
        config['precision'] = precision
    helper.write_json(os.path.join(train_dir, MODEL_CONFIG_FILE), config)


def read_model_config(checkpoint_dir):
    """model.json as a dict, its fields checked."""
    path = os.path.join(checkpoint_dir, MODEL_CONFIG_FILE)
    config = helper.read_json(path)
    for key in ('hidden_units', 'frame_samples', 'embedding_dim'):
        if not isinstance(config.get(key), int):
            raise helper.InputError(path, None, 'missing integer field %r' % key)
    if config.get('modality') not in defaults.MODALITIES:
        raise helper.InputError(path, None, 'modality %r is none of %s'
                                % (config.get('modality'), ', '.join(defaults.MODALITIES)))
    return config


def choose_modality(config_path, trained, requested, allow_mismatch):
    """The modality to run a model trained with `trained` in: `requested`, or
    the trained one when None. Another than the trained one is refused unless
    allow_mismatch: a model asked to hear what it never heard gives numbers
    that look like results but measure something else."""
    if requested is None or requested == trained:
        return trained
    if not allow_mismatch:
        raise helper.InputError(config_path, None, 'the model was trained with modality %r, '
                                'not %r; pass --allow_modality_mismatch to run it anyway'
                                % (trained, requested))
    logging.warning('modality %r on a model trained with %r (--allow_modality_mismatch)',
                    requested, trained)
    return requested


def available_steps(checkpoint_dir):
    """Sorted global steps of the `model.ckpt-N` checkpoints in the directory."""
    if not os.path.isdir(checkpoint_dir):
        raise helper.InputError(checkpoint_dir, None, 'checkpoint directory not found')
    pattern = re.compile(r'^%s-(\d+)\.index$' % re.escape(CHECKPOINT_PREFIX))
    return sorted(int(m.group(1)) for m in map(pattern.match, helper.list_dir(checkpoint_dir)) if m)


def checkpoint_path(checkpoint_dir, steps=None):
    """Prefix of `model.ckpt-<steps>` (the latest when steps is None) and its step.
    A missing step is an error that lists the steps that exist."""
    existing = available_steps(checkpoint_dir)
    if not existing:
        raise helper.InputError(checkpoint_dir, None,
                                'no %s-N checkpoint found' % CHECKPOINT_PREFIX)
    if steps is None:
        steps = existing[-1]
    elif int(steps) not in existing:
        raise helper.InputError(checkpoint_dir, None,
                                'no checkpoint for step %s; available steps: %s'
                                % (steps, ', '.join(map(str, existing))))
    return os.path.join(checkpoint_dir, '%s-%d' % (CHECKPOINT_PREFIX, int(steps))), int(steps)


def checkpoint_files(prefix):
    """The files that make up one checkpoint (.index, .meta, .data-*)."""
    directory, name = os.path.split(prefix)
    return [os.path.join(directory, n) for n in helper.list_dir(directory)
            if n.startswith(name + '.')]


def restore(session, checkpoint_prefix):
    """Load the model's variables (not the optimiser's) from a checkpoint."""
    tf.train.Saver(var_list=models.model_variables()).restore(session, checkpoint_prefix)
