"""Step 5: one TFRecord per segment, the input of training and evaluation.

For every segment `<Id>_<seg>` of the partition's videos (its label file
labels/<Id>/<Id>_<seg>.csv), the segment's audio (mono, resampled to
--sample_rate) is cut into one frame per label row, frame i covering
[t_i, t_i + 250 ms) of the segment audio (zeros past its end). Each frame
carries the embedding of the word of sync_maps/<Id>/<Id>_<seg>.csv that
overlaps it most (zeros where nobody speaks; a header-only sync map is a
segment without transcript) and its (arousal, valence) label. Output:

  <work_dir>/tfrecords/<set>/<Id>_<seg>.tfrecords   one tf.train.Example each
  <work_dir>/tfrecords/dataset.json                 shapes, embeddings, partition by segment

Without --embeddings, word2vec is trained on the words of the sync maps (one
sentence per segment) and kept in <work_dir>/embeddings/word2vec_<dim>.kv.
A segment that fails is reported and left out; the run exits 1 at the end.
A rerun skips the segments already written (--overwrite rewrites them).

Example:
  python data_generator.py --muse_dir MuSe-CaR --work_dir . --workers 2
"""

from absl import flags

import helper
from ser import embeddings, generation, paths

FLAGS = flags.FLAGS

# ---- Dataset flags ----
helper.define_flags('muse_dir', 'task_dir', 'work_dir', 'partition')

# ---- Feature flags ----
helper.define_flags('sample_rate')
flags.DEFINE_string('embeddings', None,
                    'Word vectors to use: word2vec/fastText text (.txt, .vec) or binary (.bin), '
                    'or gensim KeyedVectors (.kv). Default: word2vec trained on the words of '
                    'the sync maps, kept in <work_dir>/embeddings/word2vec_<dim>.kv.')
helper.define_flags('embedding_dim')
flags.DEFINE_integer('word2vec_epochs', embeddings.WORD2VEC_EPOCHS,
                     'Passes of the word2vec training over the sync maps\' words. A corpus of a '
                     'few thousand words needs many: with gensim\'s default of 5 its vectors '
                     'stay near their tiny random start and carry no meaning to the model.',
                     lower_bound=1)
helper.define_flags('seed')

# ---- Run flags ----
helper.define_flags('workers', 'overwrite', 'verbose')


def main(argv):
    del argv
    run = generation.generate(
        paths.MuseLayout(FLAGS.muse_dir, FLAGS.task_dir), FLAGS.work_dir, FLAGS.partition,
        embeddings=FLAGS.embeddings, embedding_dim=FLAGS.embedding_dim,
        word2vec_epochs=FLAGS.word2vec_epochs, sample_rate=FLAGS.sample_rate,
        workers=FLAGS.workers, overwrite=FLAGS.overwrite, seed=FLAGS.seed)
    return generation.log_summary(run)


if __name__ == '__main__':
    helper.run(main)
