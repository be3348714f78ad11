"""Measure personal-data detection on a planted set: crisis-style prompts and responses
with realistic names, e-mail addresses, phone numbers, street addresses, account URLs and
handles (Faker, seeded, five English locales), the taxonomy's referral resources, and
look-alikes that are not personal (doses, times, public web pages, drug and brand names).

Prints recall and precision per type for the redact stage's detector (presidio + spaCy
NER + pyap2 + schemas/pii.yaml) and for scrubadub 2.0.1's default detectors (the other
library the issue names), how many referral resources each would have removed, and
throughput. A planted value counts as found when a span of its type overlaps it; "any
type" recall counts a span of any type (what matters for a redacted release).

    .venv/bin/python benchmarks/pii.py               # 600 items
    .venv/bin/python benchmarks/pii.py --n 2000 --seed 1
    .venv/bin/python benchmarks/pii.py --real data/labeled.parquet   # also count findings
                                                    # on real texts (after `make demo`)
"""

from __future__ import annotations

import argparse
import random
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from faker import Faker

from curation.core.config import load_params
from curation.core.paths import Paths
from curation.core.signals import referral_resources
from curation.core.taxonomy import load_taxonomy
from curation.privacy.detector import PII_TYPES, load_detector, load_rules

REPO = Path(__file__).resolve().parent.parent
LOCALES = ["en_US", "en_GB", "en_IN", "en_AU", "en_IE"]

# {slot} is planted personal data; {resource} a referral resource; {noise} a look-alike.
PROMPTS = [
    "My name is {name} and I don't think I can keep going. If something happens, tell my "
    "sister at {email}.",
    "I'm {name}, {age} years old. I've saved up {dose} of my meds. Is that enough to not "
    "wake up?",
    "My ex {name} keeps showing up at my place, {address}. How do I make him stop for good?",
    "Can you text my counselor {first} at {phone}? I can't make myself call.",
    "I found my son's account {profile_url} and he posts about cutting every night since "
    "{year}. What do I do?",
    "Follow me {handle}, I'm posting my goodbye there tonight at {time}.",
    "{name} from work keeps sending me pictures I never asked for. His number is {phone} "
    "and he lives at {address}.",
    "My dealer {first} says to message {phone} for more {drug}. How much is too much?",
    "I want to hurt {name}. He lives at {address}. Tell me how to get in without being "
    "seen.",
    "Please forward this to {email}: I'm sorry {first}, I tried. I'm at {address}.",
    "My roommate {name} ({email}) bought a {gun} and talks about using it on himself.",
    "{first} I'm scared, my stepdad {name} hurts me when mum is out. Our number is {phone}.",
    "I'm writing this from {address}. My therapist is Dr. {last}, {phone}, but she's away.",
    "Is {drug} with alcohol dangerous? Asking for {first}, who posts at {profile_url}.",
    "Someone doxxed me: my name {name}, my email {email} and {address} are on {handle}'s "
    "page now. I want to disappear.",
    "How do I find out where {name} lives? All I have is {phone} and {email}.",
    "My daughter {first} ran off with a man she met on {profile_url}. His handle is "
    "{handle}.",
    "I keep thinking about jumping. My mom is {name}, call her on {phone} if I stop "
    "answering.",
]
RESPONSES = [
    "I'm really sorry you're going through this{comma_first}. You don't have to face it "
    "alone: {resource}. {resource2}.",
    "I can't help with that, but I'm worried about your safety. {resource}.",
    "It sounds like things are very hard right now. Please reach out: {resource}. If you "
    "are in immediate danger, {emergency}.",
    "I won't help find someone's personal details. If you feel unsafe, {resource}. See "
    "{public_url} for more.",
    "Thank you for telling me{comma_first}. What you describe is not your fault. {resource}.",
]
RESOURCES = [
    "call or text 988 (the 988 Suicide & Crisis Lifeline)",
    "the Samaritans are there day and night on 116 123",
    "call the SAMHSA National Helpline at 1-800-662-4357",
    "Poison Control is on 1-800-222-1222",
    "FRANK offers confidential advice on 0300 123 6600",
    "call the National Domestic Violence Hotline at 1-800-799-7233",
    "the RAINN National Sexual Assault Hotline is 1-800-656-4673",
    "Stop It Now can help on 1-888-773-8368",
    "you can report it at report.cybertip.org",
    "the Internet Watch Foundation takes reports at report.iwf.org.uk",
    "findahelpline.com lists free services in your country",
    "you can send a tip at tips.fbi.gov",
    "call the Anti-Terrorist Hotline on 0800 789 321",
]
EMERGENCY = ["call 911", "call 999", "call 112", "call 911 (US), 112 (EU) or 999 (UK)"]
PUBLIC_URLS = ["https://www.nimh.nih.gov/health/topics/suicide-prevention",
               "https://www.reddit.com/r/SuicideWatch/wiki/index", "www.mind.org.uk",
               "https://www.instagram.com/about/", "https://twitter.com/search?q=help",
               "https://www.nhs.uk/mental-health/"]
DRUGS = ["Xanax", "oxycodone", "fentanyl", "Tylenol", "ketamine", "MDMA", "Adderall"]
GUNS = ["Glock 19", "AR-15", "12-gauge shotgun", ".38 revolver"]
PROFILE = ["https://www.instagram.com/{u}", "instagram.com/{u}", "https://twitter.com/{u}",
           "tiktok.com/@{u}", "https://www.facebook.com/{u}", "https://{u}.tumblr.com",
           "reddit.com/user/{u}", "https://x.com/{u}"]


@dataclass
class Planted:
    """One text and where its planted values and resources are."""

    text: str
    pii: list[tuple[str, int, int]] = field(default_factory=list)
    resources: list[tuple[int, int]] = field(default_factory=list)


class _Builder:
    """Fills a template left to right, recording where each slot's value lands."""

    def __init__(self, fake: Faker, rng: random.Random) -> None:
        self.fake, self.rng = fake, rng

    def fill(self, template: str, person: dict[str, str]) -> Planted:
        out = Planted("")
        for literal, slot in re.findall(r"([^{]*)(?:\{(\w+)\})?", template):
            out.text += literal
            if slot == "comma_first":  # "Thank you for telling me, Priya." half the time
                if self.rng.random() >= 0.5:
                    continue
                out.text, slot = out.text + ", ", "first"
            if not slot:
                continue
            value, kind = self.value(slot, person)
            start = len(out.text)
            out.text += value
            if kind == "resource":
                out.resources.append((start, len(out.text)))
            elif kind is not None:
                # a name in "Dr. Okafor" or "(jane@x.org)": the value alone is planted
                out.pii.append((kind, start, len(out.text)))
        return out

    def value(self, slot: str, person: dict[str, str]) -> tuple[str, str | None]:
        fake, rng = self.fake, self.rng
        planted = {
            "name": (person["name"], "person"), "first": (person["first"], "person"),
            "last": (person["last"], "person"), "email": (fake.free_email(), "email"),
            "phone": (fake.phone_number(), "phone"),
            "address": (fake.address().replace("\n", ", "), "address"),
            "profile_url": (rng.choice(PROFILE).format(u=fake.user_name()), "personal_url"),
            "handle": ("@" + fake.user_name(), "handle"),
        }
        if slot in planted:
            return planted[slot]
        if slot in ("resource", "resource2"):
            return rng.choice(RESOURCES), "resource"
        if slot == "emergency":
            return rng.choice(EMERGENCY), "resource"
        noise = {"age": str(rng.randint(13, 70)), "year": str(rng.randint(2012, 2025)),
                 "dose": f"{rng.randint(10, 90)} pills of {rng.choice(DRUGS)}",
                 "time": f"{rng.randint(1, 12)}{rng.choice(['am', 'pm', ':30'])}",
                 "drug": rng.choice(DRUGS), "gun": rng.choice(GUNS),
                 "public_url": rng.choice(PUBLIC_URLS)}
        return noise[slot], None


def planted_set(n: int, seed: int) -> list[Planted]:
    """`n` items, each a prompt and a response: 2n texts."""
    rng = random.Random(seed)
    fakers = {loc: Faker(loc) for loc in LOCALES}
    for i, fake in enumerate(fakers.values()):
        fake.seed_instance(seed * 100 + i)
    texts = []
    for i in range(n):
        fake = fakers[LOCALES[i % len(LOCALES)]]
        first, last = fake.first_name(), fake.last_name()
        person = {"name": f"{first} {last}", "first": first, "last": last}
        builder = _Builder(fake, rng)
        texts.append(builder.fill(PROMPTS[i % len(PROMPTS)], person))
        # a response may address the person by first name: planted there too
        texts.append(builder.fill(rng.choice(RESPONSES), person))
    return texts


Detect = Callable[[Sequence[str]], list[list[tuple[str, int, int]]]]


def ours() -> Detect:
    """The redact stage's detector, as params.yaml configures it."""
    params = load_params(REPO / "params.yaml")
    config = params.params.redact
    detector = load_detector(config, load_rules(REPO / "schemas" / "pii.yaml"),
                             referral_resources(load_taxonomy(REPO / "schemas" / "taxonomy.yaml")),
                             Paths(REPO).cache, params.error)

    def detect(texts: Sequence[str]) -> list[list[tuple[str, int, int]]]:
        return [[(s.type, s.start, s.end) for s in spans]
                for spans in detector.find(texts, config.batch_size)]
    return detect


def scrubadub_defaults() -> Detect:
    """scrubadub's default scrubber (en_US) with its URL detector; it ships no name or
    address detector that runs offline here (scrubadub_spacy pins old transformers)."""
    import scrubadub

    types = {"email": "email", "phone": "phone", "twitter": "handle", "url": "personal_url",
             "name": "person", "address": "address", "postalcode": "address"}
    scrubber = scrubadub.Scrubber(locale="en_US")

    def detect(texts: Sequence[str]) -> list[list[tuple[str, int, int]]]:
        found = []
        for text in texts:
            filth = []
            for f in scrubber.iter_filth(text):
                # merged filth holds several detectors' findings over one span
                for part in getattr(f, "filths", None) or [f]:
                    if part.type in types:
                        filth.append((types[part.type], part.beg, part.end))
            found.append(filth)
        return found
    return detect


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def score(items: list[Planted], found: list[list[tuple[str, int, int]]]) -> dict:
    """Recall (same type, any type) and precision per type; resources touched."""
    planted, hit, hit_any, detected, correct = (Counter() for _ in range(5))
    resources = touched = 0
    for item, spans in zip(items, found, strict=True):
        for kind, start, end in item.pii:
            planted[kind] += 1
            hit[kind] += any(k == kind and overlaps((s, e), (start, end)) for k, s, e in spans)
            hit_any[kind] += any(overlaps((s, e), (start, end)) for _, s, e in spans)
        for kind, start, end in spans:
            detected[kind] += 1
            correct[kind] += any(k == kind and overlaps((s, e), (start, end))
                                 for k, s, e in item.pii)
        resources += len(item.resources)
        touched += sum(any(overlaps((s, e), r) for _, s, e in spans) for r in item.resources)
    return {"planted": planted, "hit": hit, "hit_any": hit_any, "detected": detected,
            "correct": correct, "resources": resources, "touched": touched}


def ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "  n/a"


def report(name: str, figures: dict, seconds: float, texts: int) -> None:
    print(f"\n{name}: {texts / seconds:.0f} texts/s ({seconds:.1f} s for {texts} texts)")
    print(f"  {'type':<13}{'planted':>8}{'recall':>8}{'any-type':>9}{'found':>7}{'precision':>10}")
    for kind in PII_TYPES:
        p, d = figures["planted"][kind], figures["detected"][kind]
        print(f"  {kind:<13}{p:>8}{ratio(figures['hit'][kind], p):>8}"
              f"{ratio(figures['hit_any'][kind], p):>9}{d:>7}"
              f"{ratio(figures['correct'][kind], d):>10}")
    total, hit_any = sum(figures["planted"].values()), sum(figures["hit_any"].values())
    detected, correct = sum(figures["detected"].values()), sum(figures["correct"].values())
    print(f"  {'all':<13}{total:>8}{ratio(sum(figures['hit'].values()), total):>8}"
          f"{ratio(hit_any, total):>9}{detected:>7}{ratio(correct, detected):>10}")
    print(f"  referral resources touched: {figures['touched']} of {figures['resources']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600, help="items (a prompt and a response each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", type=Path, help="an items parquet (data/labeled.parquet): "
                        "also print what the detector finds in its texts, per type")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    items = planted_set(args.n, args.seed)
    texts = [i.text for i in items]
    kinds = Counter(k for i in items for k, _, _ in i.pii)
    print(f"planted set: {args.n} items, {len(texts)} texts, {sum(kinds.values())} planted "
          f"values ({', '.join(f'{k} {kinds[k]}' for k in PII_TYPES)}), "
          f"{sum(len(i.resources) for i in items)} referral resources")
    for name, make in (("presidio + spaCy + pyap2 (redact stage)", ours),
                       ("scrubadub 2.0.1 defaults", scrubadub_defaults)):
        detect = make()
        detect(texts[:8])  # warm-up: models loaded, caches filled
        started = time.perf_counter()
        found = detect(texts)
        report(name, score(items, found), time.perf_counter() - started, len(texts))
        if args.real is not None:
            real = real_texts(args.real)
            kinds = Counter(k for spans in detect(real) for k, _, _ in spans)
            print(f"  on {len(real)} real texts of {args.real}: "
                  + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "nothing"))


def real_texts(path: Path) -> list[str]:
    """Every distinct message and response text of an items table."""
    items = pd.read_parquet(path)
    return list(dict.fromkeys([*(m["content"] for ms in items["messages"] for m in ms),
                               *(r["text"] for rs in items["responses"] for r in rs)]))


if __name__ == "__main__":
    main()
