"""The generated corpus the benchmarks run on, and running the pipeline's scripts.

A bench work directory has the layout of a pipeline run:
    <work_dir>/MuSe-CaR/   the input in MuSe-CaR 2020's layout, written by
                           tools.demo_corpus.generate_corpus
    <work_dir>/truth/      its true word timings (unused by the benchmarks)
    <work_dir>/labels/<Id>/, partition.csv, sync_maps/<Id>/, embeddings/, tfrecords/
prepare() builds what is missing up to a step, untimed, running the
pipeline's scripts as subprocesses; each stage benchmark then times its own
step on it. A rerun with the same settings reuses it all
(the corpus is the same bytes for the same seed).

The flags below are shared by every benchmark that needs data, and passed
down by run_all.py.
"""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import helper  # noqa: E402  (needs the repository on sys.path)
from tools import demo_corpus  # noqa: E402
from ser import paths  # noqa: E402

FLAGS = flags.FLAGS
# Enough for every portion of the partition to get videos.
MIN_VIDEOS = 4

# ---- Corpus flags ----
flags.DEFINE_string('bench_dir', None, 'Bench work directory (corpus and pipeline outputs), '
                    'created or reused; default: a temporary directory removed at the end.')
helper.define_flags('videos', 'seconds_per_video', 'seed')
flags.register_validator('videos', lambda videos: videos >= MIN_VIDEOS,
                         message='the bench corpus needs at least %d videos' % MIN_VIDEOS)

# ---- Dataset flags ----
helper.define_flags('sample_rate')

DERIVED = ('labels', 'partition.csv', 'sync_maps', 'embeddings', 'tfrecords')
STEPS = ('corpus', 'sync_maps', 'tfrecords')


def muse_dir(work_dir):
    return os.path.join(work_dir, 'MuSe-CaR')


def dataset_dir(work_dir):
    return paths.tfrecords_dir(work_dir)


def run_script(script, *args, check=True):
    """Run one of the repository's scripts (path relative to the repository)
    with this Python. Returns (stdout, stderr, wall seconds); RuntimeError
    with the end of its stderr when it fails and `check`."""
    command = [sys.executable, os.path.join(REPO, script)] + [str(a) for a in args]
    started = time.perf_counter()
    process = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if check and process.returncode:
        raise RuntimeError('%s failed (exit %d):\n%s' % (' '.join(command), process.returncode,
                                                         process.stderr[-3000:]))
    return process.stdout, process.stderr, seconds


def prepare(work_dir, upto, videos, seconds_per_video, sample_rate, seed):
    """Build the corpus and the pipeline's outputs up to step `upto` (one of
    STEPS) in work_dir, skipping what is already there. Returns the corpus
    summary of tools.demo_corpus.generate_corpus (seconds of audio, ...)."""
    if upto not in STEPS:
        raise ValueError('upto must be one of %s, not %r' % (', '.join(STEPS), upto))
    muse = muse_dir(work_dir)
    summary = demo_corpus.generate_corpus(muse, os.path.join(work_dir, 'truth'), videos,
                                          seconds_per_video, seed, workers=helper.default_workers())
    if not summary['skipped']:
        # A new corpus: what was derived from the previous one no longer fits.
        for name in DERIVED:
            path = os.path.join(work_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    # Each script skips what it finished before, but costs a start-up to find
    # out: it only runs when its last output is missing.
    if not os.path.isfile(paths.partition_path(work_dir)):
        run_script('label_generator.py', '--muse_dir', muse, '--work_dir', work_dir)
        run_script('partition_generator.py', '--muse_dir', muse, '--work_dir', work_dir,
                   '--seed', seed)
    if STEPS.index(upto) >= STEPS.index('sync_maps') and not sync_maps_ready(work_dir):
        run_script('synchronisation_map_generator.py', '--muse_dir', muse, '--work_dir',
                   work_dir)
    if STEPS.index(upto) >= STEPS.index('tfrecords') and not tfrecords_ready(work_dir,
                                                                             sample_rate):
        run_script('data_generator.py', '--muse_dir', muse, '--work_dir', work_dir,
                   '--sample_rate', sample_rate, '--seed', seed, '--overwrite')
    return summary


def sync_maps_ready(work_dir):
    """Every segment with audio has its sync map."""
    layout = paths.MuseLayout(muse_dir(work_dir))
    videos = paths.select_videos(layout)
    return all(paths.work_segments(paths.sync_maps_dir(work_dir), video)
               == layout.audio_segments(video) for video in videos)


def tfrecords_ready(work_dir, sample_rate):
    path = os.path.join(dataset_dir(work_dir), 'dataset.json')
    return os.path.isfile(path) and helper.read_json(path).get('sample_rate') == sample_rate


@contextlib.contextmanager
def work_directory(upto):
    """The prepared bench work directory of the flags: --bench_dir, or a
    temporary one removed on exit. Yields (path, corpus summary)."""
    with contextlib.ExitStack() as stack:
        work_dir = FLAGS.bench_dir or stack.enter_context(
            tempfile.TemporaryDirectory(prefix='bench_'))
        summary = prepare(work_dir, upto, FLAGS.videos, FLAGS.seconds_per_video,
                          FLAGS.sample_rate, FLAGS.seed)
        yield work_dir, summary


def corpus_flags():
    """The flags above as command-line arguments, to pass them down."""
    return ['--bench_dir=%s' % FLAGS.bench_dir, '--videos=%d' % FLAGS.videos,
            '--seconds_per_video=%g' % FLAGS.seconds_per_video,
            '--sample_rate=%d' % FLAGS.sample_rate, '--seed=%d' % FLAGS.seed]
