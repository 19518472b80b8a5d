"""Words that are not the keywords: a large vocabulary and phonetic near-misses.

    vocab = negative_vocabulary(['yes', 'no'], size=3000)
    vocab.words        # 3000 frequent English words, no keyword, no homophone
    vocab.near_misses  # {'yes': ('yet', 'less', ...), 'no': ('know'?...)}

A keyword model learns what its keywords are *not* from its `_unknown_`
class. Twenty-five auxiliary words (Speech Commands' own) teach it little;
false accepts in a stream come from the thousands of other words people say,
and above all from the ones that sound alike. This module gives both:

  - `frequent_words(n)`: the n most frequent English words of `wordfreq`
    (its code is Apache-2.0, its ranking data CC BY-SA 4.0; only the ranking
    is read, at run time), letters only, at least two of them;
  - `phonemes(words)`: eSpeak NG's phonemes of each word, one tuple per word
    (stress marks dropped, a tied multi-letter phoneme such as "a͡ɪ" and a
    long vowel such as "iː" count as one phoneme);
  - `edit_distance(a, b)`: Levenshtein distance of two phoneme sequences;
  - `negative_vocabulary(keywords, size)`: frequent words without the
    keywords, their homophones (phoneme distance 0, e.g. "know" for "no",
    "write" for "right") and their extensions (words that begin with the
    keyword's phonemes: "stopped", "upper", "nobody"; a streaming detector
    has heard the keyword before the rest of the word comes), and for each
    keyword its near-misses: the words of the vocabulary within
    `max_distance` phoneme edits ("yes": "yet", "less", "guess"), closest
    first.

Why extensions are left out: trained as `_unknown_`, "stopped" teaches the
model that "stop" followed by speech is not "stop", which is what the
keyword said inside a sentence sounds like. Measured with
experiments/head_study.py (experiments/RESULTS.md): leaving them out raised
keyword accuracy (73.0% -> 74.3%) and lowered the stream FRR at 1% false
windows (91% -> 87%).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Sequence

from kws_jax.data import espeak

Phonemes = tuple[str, ...]

_WORD = re.compile(r'[a-z]{2,}')
# One phoneme: a letter followed by length marks and tied letters.
_PHONEME = re.compile(r'[^\sˈˌː͡](?:ː|͡[^\sˈˌː͡])*')
# Near-misses per keyword, at most: enough variety without crowding out the
# rest of the vocabulary.
DEFAULT_MAX_NEAR_MISSES = 40


def frequent_words(count: int) -> list[str]:
  """The `count` most frequent English words (wordfreq), letters only.

  Words of one letter, with digits, apostrophes or other characters are
  skipped, and the list is read further until `count` words are found.

  Raises:
    ValueError: count < 1, or wordfreq knows fewer such words.
    ModuleNotFoundError: wordfreq is not installed; the message says how.
  """
  if count < 1:
    raise ValueError(f'count={count}, expected >= 1')
  try:
    import wordfreq  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ModuleNotFoundError(
        'the negative vocabulary needs the wordfreq package: pip install '
        'wordfreq'
    ) from None
  ranked = wordfreq.top_n_list('en', 4 * count + 200)
  words = [word for word in ranked if _WORD.fullmatch(word)][:count]
  if len(words) < count:
    raise ValueError(
        f'wordfreq lists only {len(words)} English words of letters, '
        f'expected count={count}'
    )
  return words


def split_phonemes(ipa: str) -> Phonemes:
  """The phonemes of eSpeak IPA written with ties (phonemize(tie=True))."""
  return tuple(_PHONEME.findall(ipa))


def phonemes(words: Sequence[str], voice: str = 'en-us') -> list[Phonemes]:
  """eSpeak NG's phonemes of each word (see `split_phonemes`).

  A word eSpeak reads as several ("ii" -> "roman two") keeps all their
  phonemes.
  """
  return [
      split_phonemes(ipa)
      for ipa in espeak.phonemize_each(list(words), voice, tie=True)
  ]


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
  """Levenshtein distance: insertions, deletions and substitutions, cost 1."""
  if len(a) < len(b):
    a, b = b, a
  previous = list(range(len(b) + 1))
  for i, x in enumerate(a, 1):
    current = [i]
    for j, y in enumerate(b, 1):
      current.append(
          min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y))
      )
    previous = current
  return previous[-1]


@dataclasses.dataclass(frozen=True)
class NegativeVocabulary:
  """Words for the `_unknown_` class of a keyword model.

  Attributes:
    keywords: the keywords, in the order given.
    words: frequent words, most frequent first, without the keywords and
      their homophones. Every near-miss is among them.
    near_misses: keyword -> the words of `words` within the distance,
      closest first (then by frequency).
    homophones: keyword -> the frequent words left out because they sound
      the same (phoneme distance 0), e.g. "know" for "no".
    extensions: keyword -> the frequent words left out because they begin
      with the keyword's phonemes, e.g. "stopped" for "stop".
  """

  keywords: tuple[str, ...]
  words: tuple[str, ...]
  near_misses: dict[str, tuple[str, ...]]
  homophones: dict[str, tuple[str, ...]]
  extensions: dict[str, tuple[str, ...]]

  def all_near_misses(self) -> tuple[str, ...]:
    """The near-misses of every keyword, each once, in keyword order."""
    return tuple(dict.fromkeys(
        word for keyword in self.keywords for word in self.near_misses[keyword]
    ))


def _phrase_near_misses(keyword: str, keywords: Sequence[str],
                        candidates: Sequence[str],
                        candidate_phonemes: Sequence[tuple[str, ...]],
                        left_out: set[str], voice: str) -> tuple[str, ...]:
  """Near-misses of a phrase: its parts, then one word swapped for a near one.

  "hey jax" -> "hey", "jax", then "hay jax"-like swaps from the candidates
  (each word's near-misses at distance 1, homophones excluded). A part that
  is itself a keyword is left out. Single words give ().
  """
  words = keyword.split()
  if len(words) < 2:
    return ()
  parts = [' '.join(words[i:j]) for i in range(len(words))
           for j in range(i + 1, len(words) + 1) if j - i < len(words)]
  per_position = []
  for position, sounds in enumerate(phonemes(words, voice)):
    per_position.append([
        ' '.join(words[:position] + [candidates[i]] + words[position + 1:])
        for i, other in enumerate(candidate_phonemes)
        if abs(len(other) - len(sounds)) <= 1
        and edit_distance(sounds, other) == 1 and candidates[i] not in left_out
    ])
  # Interleaved, so that a cap keeps swaps of every word.
  swaps = [swap for group in itertools.zip_longest(*per_position)
           for swap in group if swap is not None]
  return tuple(p for p in dict.fromkeys(parts + swaps) if p not in keywords)


def negative_vocabulary(
    keywords: Sequence[str],
    size: int,
    *,
    max_distance: int = 1,
    max_near_misses: int = DEFAULT_MAX_NEAR_MISSES,
    exclude: Sequence[str] = (),
    voice: str = 'en-us',
) -> NegativeVocabulary:
  """The `size` most frequent words that are not keywords, and near-misses.

  Homophones and extensions of a keyword are left out (see the module
  docstring).

  Args:
    keywords: the words (or phrases) the model spots.
    size: how many frequent words to read from wordfreq, before the
      keywords, their homophones and `exclude` are taken out.
    max_distance: a word within this many phoneme edits of a keyword is its
      near-miss (1: "yes" -> "yet", "less", "guess"; 2 adds "just", ...).
      The distance is relative: keywords of one or two phonemes ("no",
      "up") take only distance 1, however large max_distance is.
    max_near_misses: at most this many near-misses per keyword. A phrase's
      near-misses start with its parts ("hey" and "jax" for "hey jax")
      and the phrase with one word swapped for a near-miss of it.
    exclude: further words to leave out (e.g. an evaluation set's words).
    voice: the eSpeak voice whose phonemes are compared.

  Raises:
    ValueError: no keyword, or a keyword eSpeak cannot transcribe.
  """
  keywords = tuple(keywords)
  if not keywords:
    raise ValueError('negative_vocabulary(): no keywords')
  keyword_phonemes = phonemes(keywords, voice)
  for keyword, sounds in zip(keywords, keyword_phonemes):
    if not sounds:
      raise ValueError(f'keyword {keyword!r}: eSpeak NG gives no phonemes')
  candidates = [
      word for word in frequent_words(size)
      if word not in set(keywords) | set(exclude)
  ]
  candidate_phonemes = phonemes(candidates, voice)
  distances = [
      [edit_distance(sounds, word_sounds) for word_sounds in candidate_phonemes]
      for sounds in keyword_phonemes
  ]
  homophones = {
      keyword: tuple(candidates[i] for i, d in enumerate(row) if d == 0)
      for keyword, row in zip(keywords, distances)
  }
  extensions = {
      keyword: tuple(
          word for word, word_sounds in zip(candidates, candidate_phonemes)
          if len(word_sounds) > len(sounds)
          and word_sounds[:len(sounds)] == sounds
      )
      for keyword, sounds in zip(keywords, keyword_phonemes)
  }
  left_out = {word for group in (homophones, extensions)
              for words in group.values() for word in words}
  near_misses = {}
  for keyword, sounds, row in zip(keywords, keyword_phonemes, distances):
    reach = min(max_distance, max(1, len(sounds) - 2))
    order = sorted(range(len(candidates)), key=lambda i: (row[i], i))
    single = tuple(
        candidates[i] for i in order
        if 0 < row[i] <= reach and candidates[i] not in left_out
    )
    phrase = _phrase_near_misses(keyword, keywords, candidates,
                                 candidate_phonemes, left_out, voice)
    near_misses[keyword] = tuple(dict.fromkeys(phrase + single))[
        :max_near_misses]
  return NegativeVocabulary(
      keywords=keywords,
      words=tuple(word for word in candidates if word not in left_out),
      near_misses=near_misses,
      homophones=homophones,
      extensions=extensions,
  )
