"""Shared plumbing for the pipeline scripts: TensorFlow set-up, logging,
`run`, the errors it reports, the flags several scripts share, file listing,
atomic writes, validated CSV reading and the parallel map. Every script
imports this instead of repeating any of it."""

import contextlib
import csv
import io
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import warnings

import numpy as np

from ser import defaults

# --------------------------------------------------------------------------
# Defaults of the shared path flags (ser.paths lays out what is under them).
# --------------------------------------------------------------------------
DEFAULT_WORK_DIR = '.'
DEFAULT_MUSE_DIR = './MuSe-CaR'
DEFAULT_TASK_DIR = 'c1_muse_wild'


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


class Cancelled(Exception):
    """The caller went away, so its work was stopped."""


# --------------------------------------------------------------------------
# Logging: --verbose turns on the development messages.
# --------------------------------------------------------------------------
def setup_logging(verbose=False):
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format='%(asctime)s %(levelname)s %(message)s', datefmt='%H:%M:%S',
        force=True)
    # Third-party libraries are noisy at DEBUG; only our own messages go there.
    for name in ('matplotlib', 'gensim', 'smart_open', 'PIL', 'numba', 'h5py', 'absl',
                 'asyncio', 'uvicorn'):
        logging.getLogger(name).setLevel(logging.WARNING)


def development_msg(message, *args):
    """A message for developers, shown with --verbose."""
    logging.debug(message, *args)


def run(main):
    """absl's app.run for a pipeline script: logging set up (--verbose, when the
    script defines it, shows the development messages); bad input ends the run
    with its message and exit status 1; Ctrl-C with status 130. `main(argv)`
    returns the exit status."""
    from absl import app, flags

    def main_with_conventions(argv):
        verbose = 'verbose' in flags.FLAGS and flags.FLAGS.verbose
        setup_logging(verbose)
        try:
            return main(argv)
        except InputError as error:
            logging.error('%s', error)
            return 1
        except KeyboardInterrupt:
            logging.error('interrupted')
            return 130

    app.run(main_with_conventions)


# --------------------------------------------------------------------------
# Flags two or more programs (scripts, tools, benchmarks) share: one
# definition, one default and one help text each (tests/test_flags.py). A
# flag only one program has is defined in that program's flag block.
# --------------------------------------------------------------------------
SHARED_FLAGS = {
    # name: (kind, default, help, keyword arguments)
    # ---- Inputs and outputs ----
    'muse_dir': ('string', DEFAULT_MUSE_DIR,
                 'MuSe-CaR directory (the MuSe 2020 processed-tasks package, read only): '
                 'metadata/partition.csv and <task_dir>/.', {}),
    'task_dir': ('string', DEFAULT_TASK_DIR,
                 'Task folder inside --muse_dir holding audio_segments/, transcription_segments/ '
                 'and label_segments/.', {}),
    'work_dir': ('string', DEFAULT_WORK_DIR,
                 'Pipeline directory: each step reads the earlier steps\' outputs and writes its '
                 'own under it (sync_maps/, labels/, partition.csv, plots/, embeddings/, '
                 'tfrecords/).', {}),
    'ids': ('list', None, 'Only these video ids (comma separated); default: every video of the '
            'partition.', {}),
    'partition': ('string', None, 'Partition file of video ids (header Id,Proposal); default: '
                  '<work_dir>/partition.csv.', {}),
    'truth_dir': ('string', None,
                  'Folder of what only the corpus generator knows: true word timings per segment '
                  '(word_timings/<Id>/<Id>_<seg>.csv, header start,end,word, seconds from the '
                  'segment start), segments.csv, sentence levels, withheld test labels. '
                  'make_demo_corpus.py writes it (default: truth/ beside --output_dir); with it, '
                  'synchronisation_map_generator.py reports alignment accuracy.', {}),
    'output_dir': ('string', None, 'Folder the program writes: make_demo_corpus.py the corpus '
                   '(default demo/MuSe-CaR), ablation.py runs/ and results.json (default '
                   'ablation/).', {}),
    'output': ('string', None, 'File the program writes: partition_generator.py the partition '
               '(default <work_dir>/partition.csv), predict.py the timeline CSV (timestamp (ms), '
               'arousal, valence; default: none), bench/run_all.py the results JSON (default '
               'bench/results/latest.json).', {}),
    'json': ('string', None, 'Also write a JSON summary of the run here: eval.py its metrics, '
             'predict.py the text used, the frames and the means.', {}),
    'dataset_dir': ('string', os.path.join(DEFAULT_WORK_DIR, 'tfrecords'),
                    'Directory with dataset.json and the TFRecords (data_generator.py).', {}),
    'overwrite': ('boolean', False, 'Redo outputs that already exist; by default they are kept, '
                  'so an interrupted run resumes where it stopped.', {}),
    # ---- The generated corpus (make_demo_corpus.py, the benchmarks' corpus) ----
    'videos': ('integer', 16, 'Videos in the generated corpus (each cut into 2 to 4 segments).',
               {'lower_bound': 1}),
    'seconds_per_video': ('float', 60.0, 'Length of every generated video, in seconds.',
                          {'lower_bound': 5.0}),
    # ---- Features ----
    'sample_rate': ('integer', defaults.SAMPLE_RATE,
                    'Audio sample rate in Hz; a 250 ms frame must hold a multiple of 250 samples '
                    '(the model pools by 250), i.e. a multiple of 1000 Hz.', {'lower_bound': 1000}),
    'embedding_dim': ('integer', defaults.EMBEDDING_DIM,
                      'Size of the word vectors (word2vec trained when data_generator.py is not '
                      'given --embeddings).', {'lower_bound': 1}),
    'aligner': ('enum', 'given', 'given: MuSe\'s word times, converted to segment-relative '
                'seconds; phonetic: re-align the segment\'s words against its audio with '
                'PocketSphinx (English; for word times missing or wrong); aeneas: the same with '
                'aeneas (any --language espeak speaks).',
                {'enum_values': list(defaults.ALIGNERS)}),
    'language': ('string', 'eng', 'Language of the text, as an aeneas/espeak code (eng, deu, '
                 'fra, ...): it picks the aligner and the voice it synthesises.', {}),
    'recognise': ('boolean', False,
                  'Where no words are given (predict.py: no --text, --transcript or --words; '
                  'serve.py: a request with no transcript and no words), recognise them from '
                  'the audio with PocketSphinx\'s en-us recogniser (English --language only), '
                  'so that the semantic branch hears them; it costs far more CPU than the model '
                  '(BENCHMARKS.md). serve.py answers "text": "recognised", and recognises a '
                  'stream that brings no words as it comes, phrase by phrase.', {}),
    # ---- Training windows and the model ----
    'batch_size': ('integer', defaults.BATCH_SIZE, 'Windows per training batch.',
                   {'lower_bound': 1}),
    'sequence_length': ('integer', defaults.SEQUENCE_LENGTH,
                        'Frames per training window (250 ms each); any value, no TFRecord '
                        'regeneration.', {'lower_bound': 1}),
    'windows': ('enum', defaults.WINDOWS,
                'How training windows are cut. per_segment: each segment after 0..T-1 padding '
                'frames, its last window padded (most of a window is padding when segments are '
                'shorter than it); tight: each segment in the fewest windows that hold it, its '
                'spare frames as padding at random before and after it; packed: the shuffled '
                'segments run one after another, one padding frame between two, the LSTM state '
                'reset where a segment starts. tight and packed compute less padding but '
                'trained less accurate models on the demo corpus (RESULTS.md).',
                {'enum_values': list(defaults.WINDOW_SCHEMES)}),
    'skip_padding': ('boolean', defaults.SKIP_PADDING,
                     'Compute the model only on the frames that reach a real frame\'s prediction '
                     '(models.compact_frame_features): the same predictions and gradients in '
                     'distribution, without the padding most per-segment windows are made of. '
                     '--noskip_padding computes every frame of every window.', {}),
    'hidden_units': ('integer', defaults.HIDDEN_UNITS,
                     'LSTM units (recorded in model.json; a resumed run must keep them).',
                     {'lower_bound': 1}),
    'modality': ('enum', None, 'What the model hears: both inputs, audio alone (zero embeddings) '
                 'or text alone (zero audio frames), through the same model. train.py records it '
                 'in model.json (default both; a resumed run must keep it); eval.py and '
                 'predict.py default to the model\'s own. A SavedModel applies its own inside '
                 'its graph and can run in no other.',
                 {'enum_values': list(defaults.MODALITIES)}),
    'allow_modality_mismatch': ('boolean', False, 'Run a checkpoint with a --modality other than '
                                'the one it was trained with instead of refusing.', {}),
    # ---- The schedule ----
    'learning_rate': ('float', defaults.LEARNING_RATE,
                      'Adam learning rate (beta1 0.9, beta2 0.99).', {'lower_bound': 0.0}),
    'max_steps': ('integer', None, 'Train to this global step (counting steps of earlier runs). '
                  'train.py by default trains until stopped with Ctrl-C; ablation.py needs it '
                  '(every run trains this far).', {'lower_bound': 1}),
    'seed': ('integer', 0, 'Seed of every random choice the program makes: the same seed, the '
             'same result.', {'lower_bound': 0}),
    # ---- Arithmetic and device ----
    'precision': ('enum', defaults.PRECISION,
                  'Arithmetic of the model, through TensorFlow\'s mixed-precision graph rewrite; '
                  'variables and checkpoints stay float32 either way, and any checkpoint runs in '
                  'any precision. bf16: oneDNN on the CPU (fast only with avx512_bf16 or AMX; '
                  'emulated, and slower, without); fp16: on a GPU, training with a dynamic loss '
                  'scale; auto: bf16 on a CPU with bf16 instructions, fp16 on a GPU with tensor '
                  'cores, fp32 otherwise (a cluster included). train.py writes the one used into log_train.txt and model.json.',
                  {'enum_values': list(defaults.PRECISIONS)}),
    'xla': ('boolean', False, 'Compile the training step with XLA (JIT); the same math, off by '
            'default because it was slower on a CPU (BENCHMARKS.md).', {}),
    'device': ('integer', 0, 'GPU id to run on (the CPU when there is no GPU); -1 for the CPU.',
               {}),
    # ---- Running a trained model ----
    'checkpoint': ('string', None,
                   'Training directory of train.py (model.ckpt-N, dataset.json, model.json). '
                   'eval.py and export_model.py default to checkpoints/, train.py\'s '
                   '--train_dir; predict.py and serve.py take exactly one of --checkpoint and '
                   '--saved_model; bench/bench_eval.py without it times random weights.', {}),
    'steps': ('integer', None, 'With --checkpoint: use model.ckpt-<steps>; default: the latest.',
              {'lower_bound': 0}),
    'saved_model': ('string', None, 'SavedModel of export_model.py, instead of --checkpoint: the '
                    'export directory (its highest version is used) or one version directory.',
                    {}),
    'portion': ('enum', None, 'Portion of the partition to evaluate; default: devel for eval.py '
                'and bench/bench_eval.py (the portion to choose by), test for ablation.py (the '
                'portion its table reports).', {'enum_values': list(defaults.PORTIONS)}),
    'chunk_seconds': ('float', defaults.CHUNK_SECONDS,
                      'Run audio through the model in chunks of this many seconds, the LSTM '
                      'state carried from one to the next and a frame of audio on either side '
                      'for the convolutions: the same predictions as one pass (within 1e-4), in '
                      'memory bounded whatever the length. 0: one pass (memory grows with the '
                      'length).', {'lower_bound': 0.0}),
    'threads': ('integer', 4, 'serve.py: requests processed at once; more wait their turn.',
                {'lower_bound': 1}),
    'stream_threads': ('integer', 2, 'serve.py: streams whose frames run through the model at '
                       'once (requests have their own --threads).', {'lower_bound': 1}),
    # ---- Running a program ----
    'workers': ('integer', None, 'Processes working in parallel (default: all cores).',
                {'lower_bound': 1}),
    'verbose': ('boolean', False, 'Show development messages.', {}),
}
# Checks beyond a flag's type and bounds: (test, what the error says).
FLAG_VALIDATORS = {
    'language': (lambda code: code in aeneas_languages(),
                 'not a language code espeak knows in aeneas (eng, deu, fra, ita, spa, ...)'),
    'sample_rate': (lambda rate: rate % 1000 == 0,
                    'a 250 ms frame must hold a multiple of 250 samples: use a multiple of '
                    '1000 Hz'),
}


def define_flags(*names, table=SHARED_FLAGS):
    """Define the shared flags `names` (of `table`: SHARED_FLAGS, or the
    benchmarks' own) as flags of the calling script: they are listed in its
    --help, and a script that does not ask for one refuses it like any
    unknown flag."""
    from absl import flags
    # Flags defined here belong to the script that calls, not to helper.
    flags.disclaim_key_flags()
    for name in names:
        kind, default, text, keywords = table[name]
        if name == 'workers':
            default = default_workers()
        getattr(flags, 'DEFINE_' + kind)(name, default, help=text, **keywords)
        if name in FLAG_VALIDATORS:
            check, message = FLAG_VALIDATORS[name]
            flags.register_validator(name, check, message=message)


def aeneas_languages():
    """The language codes aeneas's espeak voices speak (ser.alignment's)."""
    from aeneas.ttswrappers.espeakttswrapper import ESPEAKTTSWrapper
    return frozenset(ESPEAKTTSWrapper.LANGUAGE_TO_VOICE_CODE)


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
    `xla` turns on XLA JIT compilation of the graph (auto-clustering).
    ser.mixed_precision.session_config adds the precision's graph rewrite."""
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
