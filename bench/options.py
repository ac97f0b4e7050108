"""Flags several stage benchmarks share, defined here once. Each benchmark
calls the definitions it uses (before absl parses the command line), so a
benchmark has only the flags it reads, then adopts them as its key flags
(flags.adopt_module_key_flags) so that its --help lists them; the corpus
flags are in corpus.py."""

from absl import flags


def define_verbose(shows):
    flags.DEFINE_bool('verbose', False, 'Development messages (%s).' % shows)


def define_repeats(what):
    flags.DEFINE_integer('repeats', 3, '%s; the median is reported.' % what, lower_bound=1)


def define_window_shape():
    """--batch_size and --sequence_length, train.py's defaults."""
    flags.DEFINE_integer('batch_size', 5, 'Windows per batch (train.py --batch_size).',
                         lower_bound=1)
    flags.DEFINE_integer('sequence_length', 100,
                         'Frames per window (train.py --sequence_length).', lower_bound=1)


def define_xla():
    flags.DEFINE_bool('xla', False, 'XLA JIT compilation of the training step (train.py --xla).')


def define_step_shape():
    """The frames of the step benchmarks: audio rate, embedding width,
    warm-up steps and the seed of their inputs and weights."""
    flags.DEFINE_integer('sample_rate', 16000, 'Audio rate; a frame holds rate/4 samples.',
                         lower_bound=1000)
    flags.DEFINE_integer('embedding_dim', 100, 'Embedding values per frame (data_generator '
                         'default).', lower_bound=1)
    flags.DEFINE_integer('warmup', 3, 'Untimed steps first.', lower_bound=1)
    flags.DEFINE_integer('seed', 0, 'Seed of the inputs and weights.')
