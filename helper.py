"""Shared plumbing for the pipeline scripts: TensorFlow set-up, paths, file
listing, atomic writes, validated CSV reading, audio reading, logging and
parallel map. Every script imports this instead of repeating any of it."""

import contextlib
import csv
import io
import json
import logging
import multiprocessing
import os
import re
import string
import subprocess
import sys
import tempfile
import warnings

import numpy as np

# --------------------------------------------------------------------------
# Default paths (DESIGN.md): outputs land beside the scripts.
# --------------------------------------------------------------------------
DEFAULT_WORK_DIR = '.'
DEFAULT_MUSE_DIR = './MuSe-CaR'
LABEL_STEP_MS = 250
DIMENSIONS = ('arousal', 'valence')
PORTIONS = ('train', 'devel', 'test')
AUDIO_EXTENSIONS = ('.wav', '.flac', '.ogg', '.mp3', '.mp4', '.m4a', '.webm', '.mkv')


def sync_maps_dir(work_dir):
    return os.path.join(work_dir, 'sync_maps')


def labels_dir(work_dir):
    return os.path.join(work_dir, 'labels')


def sync_map_path(work_dir, recording_id):
    return os.path.join(sync_maps_dir(work_dir), recording_id + '.csv')


def label_path(work_dir, recording_id):
    return os.path.join(labels_dir(work_dir), recording_id + '.csv')


def partition_path(work_dir):
    return os.path.join(work_dir, 'partition.csv')


def plots_dir(work_dir):
    return os.path.join(work_dir, 'plots')


def tfrecords_dir(work_dir):
    return os.path.join(work_dir, 'tfrecords')


def embeddings_dir(work_dir):
    return os.path.join(work_dir, 'embeddings')


def muse_partition_path(muse_dir):
    return os.path.join(muse_dir, 'metadata', 'partition.csv')


def transcript_path(muse_dir, recording_id):
    return os.path.join(muse_dir, 'transcriptions', recording_id + '.csv')


def label_segment_path(muse_dir, dimension, recording_id):
    return os.path.join(muse_dir, 'label_segments', dimension, recording_id + '.csv')


def audio_path(muse_dir, recording_id):
    """The recording's audio file: `<Id>.wav`, or another container ffmpeg reads."""
    audio_dir = os.path.join(muse_dir, 'audio')
    for extension in AUDIO_EXTENSIONS:
        candidate = os.path.join(audio_dir, recording_id + extension)
        if os.path.isfile(candidate):
            return candidate
    raise InputError(os.path.join(audio_dir, recording_id + '.wav'), None,
                     'no audio file for recording %s' % recording_id)


# --------------------------------------------------------------------------
# Errors that name the file, the row and what is wrong.
# --------------------------------------------------------------------------
class InputError(Exception):
    """Bad input: `path` and `row` (1-based line number in the file, header
    is row 1; None when the problem is the whole file) locate it."""

    def __init__(self, path, row, problem):
        self.path, self.row, self.problem = path, row, problem
        where = path if row is None else '%s, row %d' % (path, row)
        super().__init__('%s: %s' % (where, problem))


# --------------------------------------------------------------------------
# Logging: --verbose turns on the development messages.
# --------------------------------------------------------------------------
def setup_logging(verbose=False):
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format='%(asctime)s %(levelname)s %(message)s', datefmt='%H:%M:%S',
        force=True)
    # Third-party libraries are noisy at DEBUG; only our own messages go there.
    for name in ('matplotlib', 'gensim', 'smart_open', 'PIL', 'numba', 'h5py', 'absl'):
        logging.getLogger(name).setLevel(logging.WARNING)


def development_msg(message, *args):
    """A message for developers, shown with --verbose."""
    logging.debug(message, *args)


# --------------------------------------------------------------------------
# TensorFlow: legacy Keras, graph mode, quiet logs, device choice.
# --------------------------------------------------------------------------
def configure_device(device):
    """The device to place the graph on for `--device`: a GPU id, or -1 for the
    CPU. Returns None for a GPU (session_config makes it the visible one) and
    '/cpu:0' for the CPU, also when no GPU is there."""
    import_tensorflow()
    import tensorflow
    gpus = tensorflow.config.list_physical_devices('GPU')
    if int(device) < 0 or not gpus:
        logging.info('running on the CPU%s', '' if int(device) < 0 else ' (no GPU found)')
        return '/cpu:0'
    if int(device) >= len(gpus):
        raise ValueError('--device %d: only %d GPU(s) found' % (int(device), len(gpus)))
    logging.info('running on GPU %d', int(device))
    return None


def import_tensorflow():
    """tf.compat.v1 in graph mode. Must be the first TensorFlow import of the
    process: tf.compat.v1.layers and LSTMCell need Keras 2, which TensorFlow
    only picks when TF_USE_LEGACY_KERAS is set before it is first imported."""
    os.environ['TF_USE_LEGACY_KERAS'] = '1'
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    if 'tensorflow' not in sys.modules:
        # tf.compat.v1 is what this project is written in; its deprecation notices say nothing new.
        warnings.filterwarnings('ignore', message='.*is deprecated.*')
        with _quiet_native_start_up():
            import tensorflow
            # CUDA reports on stderr when it finds no GPU, the first time anything
            # looks (TensorFlow does at absl's app.run): look now, quietly.
            tensorflow.config.list_physical_devices('GPU')
    import tensorflow as tf
    if not tf.keras.__name__.startswith('tf_keras'):
        logging.warning('TensorFlow was imported before helper.import_tensorflow(): %s '
                        'is active, tf.compat.v1.layers will fail', tf.keras.__name__)
    tf.get_logger().setLevel(logging.ERROR)
    tf.compat.v1.disable_eager_execution()
    return tf.compat.v1


@contextlib.contextmanager
def _quiet_native_start_up():
    """TensorFlow 2.21's C++ start-up messages (oneDNN, CUDA stubs, cuInit)
    ignore TF_CPP_MIN_LOG_LEVEL: they are written before its logging is set up.
    They all come while the library loads and first looks for GPUs, so stderr
    is muted for that moment only.
    TF_CPP_MIN_LOG_LEVEL=0 shows them (useful on a GPU box)."""
    if os.environ.get('TF_CPP_MIN_LOG_LEVEL') == '0':
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(null)
        os.close(saved)


def session_config(device, xla=False):
    """A ConfigProto that lets GPU memory grow and falls back to the CPU;
    `xla` turns on XLA JIT compilation of the graph (auto-clustering)."""
    tf = import_tensorflow()
    config = tf.ConfigProto(allow_soft_placement=True)
    config.gpu_options.allow_growth = True
    if int(device) < 0:
        config.device_count['GPU'] = 0
    elif tf.config.list_physical_devices('GPU'):
        # The chosen GPU becomes the session's /gpu:0.
        config.gpu_options.visible_device_list = str(int(device))
    if xla:
        config.graph_options.optimizer_options.global_jit_level = tf.OptimizerOptions.ON_1
    return config


# --------------------------------------------------------------------------
# Files: listing without hidden files, atomic writes.
# --------------------------------------------------------------------------
def is_hidden(name):
    return name.startswith('.') or name.startswith('._')


def list_dir(path, suffix=None):
    """Sorted names in `path`, without hidden files (.DS_Store, ._*); only
    those ending in `suffix` when given. A missing directory is an error."""
    if not os.path.isdir(path):
        raise InputError(path, None, 'directory not found')
    names = [n for n in os.listdir(path) if not is_hidden(n)]
    if suffix is not None:
        names = [n for n in names if n.endswith(suffix)]
    return sorted(names)


def list_ids(path, suffix):
    """Recording ids of the files `<Id><suffix>` in `path`."""
    return [n[:-len(suffix)] for n in list_dir(path, suffix)]


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path beside `path`; rename it to `path` only when the
    block completes. On any error (or Ctrl-C) the temporary file is removed and
    `path` is untouched."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, tmp_path = tempfile.mkstemp(
        prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=directory)
    os.close(handle)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); outputs get the usual umask permissions.
        umask = os.umask(0)
        os.umask(umask)
        if os.path.isfile(tmp_path):
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


@contextlib.contextmanager
def atomic_write(path, mode='w', **open_kwargs):
    """Open a file for writing that appears at `path` only once complete."""
    if 'b' not in mode:
        open_kwargs.setdefault('encoding', 'utf-8')
        open_kwargs.setdefault('newline', '')
    with atomic_output(path) as tmp_path:
        with open(tmp_path, mode, **open_kwargs) as handle:
            yield handle


def write_csv(path, header, rows):
    """Write a CSV atomically."""
    with atomic_write(path) as handle:
        writer = csv.writer(handle, lineterminator='\n')
        writer.writerow(header)
        writer.writerows(rows)


def write_json(path, obj):
    with atomic_write(path) as handle:
        json.dump(obj, handle, indent=2, sort_keys=True)
        handle.write('\n')


def read_json(path):
    try:
        with open(path, encoding='utf-8') as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise InputError(path, None, 'file not found') from None
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError(path, None, 'not valid JSON: %s' % error) from None


def append_line(path, line):
    """Append one line to a log file (a line at a time, so never half a record)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'a', encoding='utf-8') as handle:
        handle.write(line.rstrip('\n') + '\n')


# --------------------------------------------------------------------------
# CSV input with errors that name file, row and problem.
# --------------------------------------------------------------------------
def _parse_cell(path, row_number, column, text, kind):
    if kind is str:
        return text
    try:
        value = kind(text)
    except ValueError:
        raise InputError(path, row_number,
                         'column %r: %r is not a valid %s' % (column, text, kind.__name__)) from None
    if kind is float and not np.isfinite(value):
        raise InputError(path, row_number, 'column %r: %r is not a finite number' % (column, text))
    return value


def read_table(path, columns, line_numbers=False):
    """Rows of a CSV whose header must be exactly the names of `columns`, an
    ordered list of (name, type). Returns a list of tuples, or with
    `line_numbers` a list of (line, tuple). Rows are numbered as lines of the
    file (header = row 1) in every error; blank lines are skipped."""
    names = [name for name, _ in columns]
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except FileNotFoundError:
        raise InputError(path, None, 'file not found') from None
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as error:
        raise InputError(path, data.count(b'\n', 0, error.start) + 1,
                         'not valid UTF-8 (byte 0x%02x at offset %d)'
                         % (data[error.start], error.start)) from None
    try:
        lines = list(csv.reader(io.StringIO(text, newline='')))
    except csv.Error as error:  # e.g. a NUL byte, or a binary file's over-long field
        raise InputError(path, None, 'malformed CSV: %s' % error) from None
    if not lines:
        raise InputError(path, None, 'empty file, expected header %s' % ','.join(names))
    header = [cell.strip().lstrip('\ufeff') for cell in lines[0]]
    if header != names:
        raise InputError(path, 1, 'header is %s, expected %s' % (','.join(header), ','.join(names)))
    rows = []
    for row_number, cells in enumerate(lines[1:], start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(names):
            raise InputError(path, row_number,
                             'expected %d columns (%s), found %d'
                             % (len(names), ','.join(names), len(cells)))
        row = tuple(_parse_cell(path, row_number, name, cell.strip(), kind)
                    for (name, kind), cell in zip(columns, cells))
        rows.append((row_number, row) if line_numbers else row)
    return rows


def read_partition(path):
    """{Id: Proposal} from a partition file (header Id,Proposal), in file order."""
    partition = {}
    rows = read_table(path, [('Id', str), ('Proposal', str)], line_numbers=True)
    for row_number, (recording_id, proposal) in rows:
        if not recording_id:
            raise InputError(path, row_number, 'empty Id')
        if proposal not in PORTIONS:
            raise InputError(path, row_number, 'Proposal %r is not one of %s'
                             % (proposal, ', '.join(PORTIONS)))
        if recording_id in partition:
            raise InputError(path, row_number, 'Id %s listed twice' % recording_id)
        partition[recording_id] = proposal
    return partition


def select_recordings(muse_dir, ids=None):
    """Recording ids of the MuSe partition, in file order; only `ids` if given."""
    partition_file = muse_partition_path(muse_dir)
    recording_ids = list(read_partition(partition_file))
    unknown = sorted(set(ids or ()) - set(recording_ids))
    if unknown:
        raise InputError(partition_file, None, '--ids not in the partition: %s' % ', '.join(unknown))
    return [i for i in recording_ids if ids is None or i in ids]


def read_labels(path):
    """(timestamps int64 [N] ms, labels float64 [N, 2]) from labels/<Id>.csv.
    Timestamps must rise strictly on the grid of label steps."""
    columns = [('timestamp', float)] + [(name, float) for name in DIMENSIONS]
    rows = read_table(path, columns, line_numbers=True)
    if not rows:
        raise InputError(path, None, 'no label rows')
    previous = None
    for line, (timestamp, _, _) in rows:
        if timestamp < 0 or timestamp % LABEL_STEP_MS:
            raise InputError(path, line, 'timestamp %g ms is not a non-negative multiple of %d ms'
                             % (timestamp, LABEL_STEP_MS))
        if previous is not None and timestamp <= previous:
            raise InputError(path, line, 'timestamp %g ms does not follow %g ms' % (timestamp, previous))
        previous = timestamp
    table = np.asarray([row for _, row in rows], dtype=np.float64)
    return table[:, 0].astype(np.int64), table[:, 1:]


# --------------------------------------------------------------------------
# Text: one normalisation for alignment, embeddings and ASR words.
# --------------------------------------------------------------------------
_FILLER = re.compile(r'<[^>]*>')
_PUNCTUATION = str.maketrans({c: ' ' for c in string.punctuation if c != "'"})


def normalise_words(text):
    """Lower-cased words of `text` with fillers (`<filler>`, `<laugh>`, ...)
    and punctuation removed; apostrophes inside words are kept (don't, car's)."""
    text = _FILLER.sub(' ', text.lower()).translate(_PUNCTUATION)
    return [word for word in (w.strip("'") for w in text.split()) if word]


# --------------------------------------------------------------------------
# Audio: any container, any rate, any channel count -> mono float32.
# --------------------------------------------------------------------------
def read_audio(path, sample_rate):
    """Mono float32 samples in [-1, 1] at `sample_rate`. WAV/FLAC/OGG are read
    with soundfile; anything else is decoded by ffmpeg."""
    import soundfile
    import soxr
    if not os.path.isfile(path):
        raise InputError(path, None, 'file not found')
    try:
        samples, rate = soundfile.read(path, dtype='float32', always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, TypeError):
        samples, rate = _decode_with_ffmpeg(path, sample_rate), sample_rate
    samples = samples.mean(axis=1) if samples.ndim == 2 else samples
    if samples.size == 0:
        raise InputError(path, None, 'audio is empty')
    if rate != sample_rate:
        samples = soxr.resample(samples, rate, sample_rate)
    return np.ascontiguousarray(samples, dtype=np.float32)


def _decode_with_ffmpeg(path, sample_rate):
    command = ['ffmpeg', '-nostdin', '-v', 'error', '-i', path, '-ac', '1',
               '-ar', str(sample_rate), '-f', 'f32le', '-']
    try:
        result = subprocess.run(command, capture_output=True, check=False)
    except FileNotFoundError:
        raise InputError(path, None, 'not a WAV/FLAC file, and ffmpeg is not installed') from None
    if result.returncode != 0:
        message = result.stderr.decode('utf-8', 'replace').strip().splitlines()
        raise InputError(path, None, 'unreadable audio: %s'
                         % (message[-1] if message else 'ffmpeg failed'))
    return np.frombuffer(result.stdout, dtype=np.float32)[:, None]


# --------------------------------------------------------------------------
# Parallel map over recordings with a progress bar.
# --------------------------------------------------------------------------
def default_workers():
    return os.cpu_count() or 1


def parallel_map(function, items, workers, description):
    """Yield function(item) for every item, in completion order, with a tqdm
    bar. `function` must be picklable (module level). workers <= 1 runs in
    this process, which keeps tracebacks simple when debugging."""
    from tqdm import tqdm
    items = list(items)
    workers = max(1, min(int(workers), len(items) or 1))
    with tqdm(total=len(items), desc=description, unit='rec', file=sys.stderr,
              dynamic_ncols=True) as bar:
        if workers == 1:
            for item in items:
                yield function(item)
                bar.update()
            return
        context = multiprocessing.get_context('spawn' if 'tensorflow' in sys.modules else 'fork')
        with context.Pool(workers) as pool:
            for result in pool.imap_unordered(function, items):
                yield result
                bar.update()
