"""Write the demo corpus: a small synthetic MuSe-CaR 2020 in its distributed
layout (c1_muse_wild/audio_segments, transcription_segments, label_segments),
spoken by espeak, so the pipeline can run, be tested and be benchmarked
without the licensed data. What only the generator knows (true word timings
per segment, sentence levels, the test videos' labels) goes to --truth_dir.

Videos have 2 to 4 segments; the word transcripts are in ms of video time
with every onset and offset off by up to +-50 ms, like a recogniser's; the
last segment of the first train video has no transcript; the test videos have
no label files (with --late_unlabelled their first segment is left out, so
they start late in the video; --label_aligned_features writes the feature
files that place them); Mac litter (.DS_Store, ._*) lies in a few folders.
Same seed, same bytes. See tools/demo_corpus.py for the design.

    .venv/bin/python make_demo_corpus.py --output_dir demo/MuSe-CaR --truth_dir demo/truth
"""
import logging
import os

from absl import flags

import helper
from tools import demo_corpus

FLAGS = flags.FLAGS
OUTPUT_DIR = os.path.join('demo', 'MuSe-CaR')

# ---- Output flags ----
helper.define_flags('output_dir', 'truth_dir', 'overwrite')

# ---- Corpus flags ----
helper.define_flags('videos', 'seconds_per_video', 'seed')
flags.DEFINE_bool('late_unlabelled', False,
                  'Leave out the first topic segment of every test (unlabelled) video, so that '
                  'its segments start late in the video, as MuSe-CaR\'s may.')
flags.DEFINE_bool('label_aligned_features', False,
                  'Write a label-aligned feature file per video '
                  '(c1_muse_wild/feature_segments/label_aligned/loudness/<Id>.csv, columns '
                  'timestamp,segment_id,loudness_db), which places unlabelled videos\' segments.')

# ---- Run flags ----
helper.define_flags('workers', 'verbose')


def main(argv):
    del argv  # unused
    output_dir = FLAGS.output_dir or OUTPUT_DIR
    truth_dir = FLAGS.truth_dir or os.path.join(os.path.dirname(os.path.normpath(output_dir)),
                                                'truth')
    try:
        summary = demo_corpus.generate_corpus(output_dir, truth_dir, FLAGS.videos,
                                              FLAGS.seconds_per_video, FLAGS.seed, FLAGS.workers,
                                              FLAGS.overwrite, FLAGS.late_unlabelled,
                                              FLAGS.label_aligned_features)
    except ValueError as error:  # folders that must not be replaced, impossible settings
        logging.error('%s', error)
        return 1
    logging.info('demo corpus %s: %d videos, %d segments (train %d, devel %d, test %d videos), '
                 '%.1f s of audio, %d sentences, %d words, wall time %.1f s%s', output_dir,
                 summary['videos'], summary['segments'], summary['partition']['train'],
                 summary['partition']['devel'], summary['partition']['test'], summary['seconds'],
                 summary['sentences'], summary['words'], summary['wall_seconds'],
                 ' (already complete)' if summary['skipped'] else '')
    logging.info('segments without a transcript: %s; truth (word timings, sentence levels, '
                 'withheld labels): %s', ', '.join(summary['no_transcript']) or 'none',
                 truth_dir)
    return 0


if __name__ == '__main__':
    helper.run(main)
