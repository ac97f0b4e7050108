"""ser.alignment: plain text aligned by the default aligner for English (the
phonetic one; tests/test_phonetic_alignment.py tests it on real speech) and
transcript sentences by aeneas, checked against the true word timings of
demo-corpus segments (espeak speech with pauses and fillers, several voices
and audio formats)."""
import os

import numpy as np
import pytest
import soundfile
import soxr

import helper
from ser import alignment, audio, muse, sync_maps
from ser import paths
from ser.text import normalise_words
from tools import demo_corpus

# Targets on true word timings.
MAX_MEAN_START_ERROR = 0.05
MIN_MIDPOINT_INSIDE = 0.95


@pytest.fixture(scope='module')
def segments(tmp_path_factory):
    """[(samples at 16 kHz, MuSe tokens text, true (start, end, word))] of the
    demo segments with a transcript: 3 videos x 20 s."""
    root = tmp_path_factory.mktemp('alignment_corpus')
    muse_dir, truth_dir = str(root / 'MuSe-CaR'), str(root / 'truth')
    demo_corpus.generate_corpus(muse_dir, truth_dir, 3, 20.0, seed=1)
    layout = paths.MuseLayout(muse_dir)
    found = []
    for video_id in ('1', '2', '3'):
        for name in layout.audio_segments(video_id):
            if not os.path.isfile(layout.transcript_path(name)):
                continue
            truth = helper.read_table(os.path.join(truth_dir, 'word_timings', video_id,
                                                   name + '.csv'), sync_maps.TRUTH_COLUMNS)
            found.append((audio.read_file(layout.audio_path(name), 16000),
                          muse.transcript_text(muse.read_transcript(layout.transcript_path(name))),
                          truth))
    return found


def test_align_text_meets_the_accuracy_targets(segments):
    assert len(segments) >= 5
    accuracies = []
    for samples, text, truth in segments:
        words, fallbacks = alignment.align_text(samples, 16000, text)
        assert fallbacks == 0
        assert [w for _, _, w in words] == normalise_words(text)
        starts, ends = np.array([(s, e) for s, e, _ in words]).T
        assert np.all(ends >= starts) and np.all(starts[1:] >= ends[:-1] - 1e-9)
        accuracies.append(alignment.alignment_accuracy(words, truth))
    pooled = alignment.pooled_accuracy(accuracies)
    assert pooled['mean_abs_start_error'] <= MAX_MEAN_START_ERROR
    assert pooled['midpoint_inside_fraction'] >= MIN_MIDPOINT_INSIDE
    assert pooled['first_start_error'] <= MAX_MEAN_START_ERROR


def test_text_without_words_gives_nothing(segments):
    samples = segments[0][0]
    for text in ('', '   ', '<filler>', '?!, ... <laugh>'):
        assert alignment.align_text(samples, 16000, text) == ([], 0)


def test_fillers_become_placeholders_not_words():
    for text in ('<filler> Well, <laugh>it is <filler>', "Don't<filler>stop!", 'The car.'):
        tokens = alignment.sentence_tokens(text)
        assert [t for t in tokens if t is not None] == normalise_words(text)
        assert tokens.count(None) == text.count('<')


def test_any_sample_rate_and_stereo_align_alike(segments, tmp_path):
    samples, text, truth = segments[1]
    reference, _ = alignment.align_text(samples, 16000, text)
    for rate, channels in ((44100, 2), (22050, 1)):
        path = str(tmp_path / ('%d_%d.wav' % (rate, channels)))
        resampled = soxr.resample(samples, 16000, rate)
        # Channels differ in level, as real stereo does; the mix is what is aligned.
        mixed = np.stack([resampled, 0.5 * resampled], axis=1) if channels == 2 else resampled
        soundfile.write(path, mixed, rate)
        words, fallbacks = alignment.align_text(audio.read_file(path, rate), rate, text)
        assert fallbacks == 0
        assert np.mean([abs(a[0] - b[0]) for a, b in zip(words, reference)]) < 0.02
        accuracy = alignment.alignment_accuracy(words, truth)
        assert accuracy['mean_abs_start_error'] <= MAX_MEAN_START_ERROR
        assert accuracy['midpoint_inside_fraction'] >= MIN_MIDPOINT_INSIDE


def test_sentences_keep_their_numbers_and_a_speechless_one_is_spread(segments):
    samples, text, _ = segments[0]
    rng = np.random.default_rng(0)
    silence = (0.001 * rng.standard_normal(3 * 16000)).astype(np.float32)
    samples = np.concatenate([samples, silence])
    duration = len(samples) / 16000
    sentences = [(0.0, 0.2, '<filler>'), (0.0, duration - 3.0, text),
                 (duration - 2.5, duration - 1.0, 'Ghost, words here!')]
    rows, fallbacks = alignment.align_sentences(samples, 16000, sentences)
    assert [index for index, _ in fallbacks] == [2]
    assert rows[0][0] == 's1w0'
    assert [row[3] for row in rows if row[0].startswith('s1w')] == normalise_words(text)
    spread = [row for row in rows if row[0].startswith('s2w')]
    start = duration - 2.5
    # 'ghost' and 'words' take 5/14 of the 1.5 s each, 'here' the last 4/14.
    expected = [(start, start + 1.5 * 5 / 14), (start + 1.5 * 5 / 14, start + 1.5 * 10 / 14),
                (start + 1.5 * 10 / 14, start + 1.5)]
    assert [row[3] for row in spread] == ['ghost', 'words', 'here']
    np.testing.assert_allclose([row[1:3] for row in spread], expected, atol=0.001)


def test_alignment_accuracy_measures_start_error_and_midpoints():
    truth = [(0.0, 1.0, 'The'), (1.0, 2.0, 'car'), (3.0, 4.0, "driver's")]
    rows = [('w0', 0.1, 0.5, 'the'), ('w1', 1.3, 3.5, 'car'), ('w2', 2.9, 3.9, "driver's")]
    accuracy = alignment.alignment_accuracy(rows, truth)
    assert accuracy['words'] == 3
    assert accuracy['mean_abs_start_error'] == pytest.approx((0.1 + 0.3 + 0.1) / 3)
    assert accuracy['first_start_error'] == pytest.approx(0.1)
    # Midpoints 0.3 (inside), 2.4 (outside [1, 2]), 3.4 (inside).
    assert accuracy['midpoint_inside_fraction'] == pytest.approx(2 / 3)
    # Rows without ids, as align_text gives them, measure the same.
    assert alignment.alignment_accuracy([row[1:] for row in rows], truth) == accuracy
    with pytest.raises(ValueError):
        alignment.alignment_accuracy(rows[:2], truth)
    with pytest.raises(ValueError):
        alignment.alignment_accuracy(rows[:2] + [('w2', 3, 4, 'drivers')], truth)
    pooled = alignment.pooled_accuracy([accuracy, dict(accuracy, words=1, first_start_error=0.3,
                                                       mean_abs_start_error=0.0)])
    assert pooled['words'] == 4 and pooled['recordings'] == 2
    assert pooled['mean_abs_start_error'] == pytest.approx(0.5 / 4)
    assert pooled['first_start_error'] == pytest.approx(0.2)
