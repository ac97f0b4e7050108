"""dataset.json: what data_generator.py wrote and every later step reads its
shapes from. It lives in tfrecords/ and, copied by train.py, beside the
checkpoints (and in an exported model).

    sample_rate, frame_samples, label_step_ms, embedding_dim, label_names
    embeddings       the word vectors, relative to the directory of dataset.json
    partition_file   the partition it was made from, relative likewise (or null)
    partition        {portion: [segment names]}
    recordings       {segment name: frames}
    frames           {portion: frames}

Paths are stored relative to the file, so a work directory (tfrecords/,
embeddings/, checkpoints/) copied to another machine still works.
"""

import os

import helper
from ser import paths
from ser import defaults
from ser import records

DATASET_FILE = 'dataset.json'
# What fixes the model's input: a checkpoint only fits data that agrees on all of them.
FEATURE_KEYS = ('sample_rate', 'frame_samples', 'label_step_ms', 'embedding_dim', 'label_names')
POSITIVE_INTEGERS = ('sample_rate', 'frame_samples', 'label_step_ms', 'embedding_dim')


def _json_path(path_or_dir):
    if os.path.isdir(path_or_dir) or not path_or_dir.endswith('.json'):
        return os.path.join(path_or_dir, DATASET_FILE)
    return path_or_dir


class DatasetInfo:
    """One dataset.json. `path` is the file it was loaded from or saved to
    (None for one just created); `embeddings_path` and `partition_file` are
    absolute."""

    def __init__(self, sample_rate, frame_samples, label_step_ms, embedding_dim, label_names,
                 embeddings_path, partition, recordings, partition_file=None, path=None):
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self.label_step_ms = label_step_ms
        self.embedding_dim = embedding_dim
        self.label_names = list(label_names)
        self.embeddings_path = embeddings_path and os.path.abspath(embeddings_path)
        self.partition = {portion: sorted(partition.get(portion, ()), key=_segment_order)
                          for portion in defaults.PORTIONS}
        self.recordings = {name: int(n) for name, n in recordings.items()}
        self.partition_file = partition_file and os.path.abspath(partition_file)
        self.path = path

    @classmethod
    def create(cls, sample_rate, embedding_dim, embeddings_path, partition=None, recordings=None,
               partition_file=None):
        """The description of data framed at `sample_rate` with `embedding_dim`
        word vectors from `embeddings_path`. `partition`: {portion: [segment
        names]}, `recordings`: {segment name: frames}."""
        return cls(int(sample_rate), records.frame_samples_for(sample_rate), paths.LABEL_STEP_MS,
                   int(embedding_dim), paths.DIMENSIONS, embeddings_path, partition or {},
                   recordings or {}, partition_file)

    @classmethod
    def load(cls, path_or_dir):
        """The dataset.json at `path_or_dir` (the file, or the directory
        holding it), checked; InputError naming the file otherwise."""
        path = _json_path(path_or_dir)
        if not os.path.isfile(path):
            raise helper.InputError(path, None, 'not found: run data_generator.py first, or '
                                    'point at the tfrecords (or checkpoint) directory holding it')
        content = helper.read_json(path)
        _validate(path, content)
        directory = os.path.dirname(os.path.abspath(path))

        def resolve(relative):
            return relative and os.path.normpath(os.path.join(directory, relative))

        return cls(content['sample_rate'], content['frame_samples'], content['label_step_ms'],
                   content['embedding_dim'], content['label_names'],
                   resolve(content['embeddings']), content['partition'], content['recordings'],
                   resolve(content.get('partition_file')), path)

    def save(self, path_or_dir):
        """Write dataset.json atomically at `path_or_dir` (the file, or its
        directory), paths relative to it; `path` becomes that file."""
        path = _json_path(path_or_dir)
        directory = os.path.dirname(os.path.abspath(path))

        def relative(absolute):
            return absolute and os.path.relpath(absolute, directory)

        helper.write_json(path, {
            'sample_rate': self.sample_rate,
            'frame_samples': self.frame_samples,
            'label_step_ms': self.label_step_ms,
            'embedding_dim': self.embedding_dim,
            'label_names': self.label_names,
            'embeddings': relative(self.embeddings_path),
            'partition_file': relative(self.partition_file),
            'partition': self.partition,
            'recordings': dict(sorted(self.recordings.items())),
            'frames': self.frames,
        })
        self.path = path
        return path

    @property
    def directory(self):
        """The directory of the file (the tfrecords or checkpoint directory)."""
        return self.path and os.path.dirname(os.path.abspath(self.path))

    @property
    def frames(self):
        return {portion: sum(self.recordings.get(name, 0) for name in names)
                for portion, names in self.partition.items()}

    def features(self):
        return {key: getattr(self, key) for key in FEATURE_KEYS}

    def check_compatible(self, other, same_data=False):
        """InputError naming both files unless `other` has the same input
        shapes (FEATURE_KEYS) and word vectors (by file name: the directories
        may have moved); with `same_data` also the same partition and frames.
        Returns `other`."""
        mine, theirs = self._comparable(same_data), other._comparable(same_data)
        differences = ['%s: %r vs %r' % (key, mine[key], theirs[key])
                       for key in sorted(mine) if mine[key] != theirs[key]]
        if differences:
            raise helper.InputError(other.path or '<new dataset>', None, 'does not match %s (%s)'
                                    % (self.path or '<new dataset>', '; '.join(differences)))
        return other

    def _comparable(self, same_data):
        values = dict(self.features(), embeddings=self.embeddings_path and
                      os.path.basename(self.embeddings_path))
        if same_data:
            values.update(partition=self.partition, recordings=self.recordings)
        return values

    def portion_files(self, portion):
        """TFRecord paths of the segments listed for `portion`, in segment
        order; InputError when there are none or one is missing."""
        if portion not in defaults.PORTIONS:
            raise ValueError('portion must be one of %s, not %r' % (', '.join(defaults.PORTIONS),
                                                                    portion))
        directory = os.path.join(self.directory, portion)
        names = self.partition.get(portion, [])
        if not names:
            raise helper.InputError(directory, None, 'no %s segments in this dataset' % portion)
        files = [os.path.join(directory, name + '.tfrecords') for name in names]
        for path in files:
            if not os.path.isfile(path):
                raise helper.InputError(path, None, 'listed in %s but missing' % self.path)
        return files


def _segment_order(name):
    # Segments of a video in order (2 before 10); any other name after them.
    try:
        return (0, paths.segment_sort_key(name))
    except ValueError:
        return (1, name)


def _validate(path, content):
    if not isinstance(content, dict):
        raise helper.InputError(path, None, 'expected a JSON object')
    missing = [key for key in POSITIVE_INTEGERS + ('label_names', 'embeddings', 'partition',
                                                   'recordings') if key not in content]
    if missing:
        raise helper.InputError(path, None, 'missing keys: %s' % ', '.join(missing))
    for key in POSITIVE_INTEGERS:
        value = content[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise helper.InputError(path, None, '%s must be a positive integer, not %r'
                                    % (key, value))
    if content['frame_samples'] * 1000 != content['sample_rate'] * content['label_step_ms']:
        raise helper.InputError(path, None, 'frame_samples %d is not %d ms at %d Hz' % (
            content['frame_samples'], content['label_step_ms'], content['sample_rate']))
    if not isinstance(content['label_names'], list):
        raise helper.InputError(path, None, 'label_names must be a list')
    for key in ('embeddings', 'partition_file'):
        if content.get(key) is not None and not isinstance(content[key], str):
            raise helper.InputError(path, None, '%s must be a path or null' % key)
    partition = content['partition']
    if not isinstance(partition, dict) or not all(
            portion in defaults.PORTIONS and isinstance(names, list)
            and all(isinstance(name, str) for name in names)
            for portion, names in partition.items()):
        raise helper.InputError(path, None, 'partition must map %s to lists of segment names'
                                % '/'.join(defaults.PORTIONS))
    recordings = content['recordings']
    if not isinstance(recordings, dict) or not all(
            isinstance(n, int) and n >= 0 for n in recordings.values()):
        raise helper.InputError(path, None, 'recordings must map segment names to frame counts')
    unlisted = sorted(name for names in partition.values() for name in names
                      if name not in recordings)
    if unlisted:
        raise helper.InputError(path, None, 'partition lists segments without a frame count: %s'
                                % ', '.join(unlisted[:5]))
