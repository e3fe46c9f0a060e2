"""Scanner rules as data: ``rules.toml`` loaded once into frozen :class:`Rule` objects.

Loading validates everything against a typed schema (msgspec: fields, types, no unknown
settings), then regexes, keywords and samples, and raises ``ConfigError`` naming the file, the
failing path and the problem (``rules.toml: rules[2].kind: expected one of platform,
third_party, got "other"``), so a bad rules file stops the scanner at start. The platform's
key prefixes default to the key format's (``KNOWN_PREFIXES``): one source for them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec

from core.errors import ConfigError
from core.keyformat import KNOWN_PREFIXES, has_valid_checksum
from core.redaction import redact_text
from core.schema import convert, fail
from scanners.placeholders import is_placeholder

DEFAULT_RULES_PATH: Final = Path(__file__).with_name("rules.toml")
_PREFIX_TOKEN: Final = "<PREFIX>"  # noqa: S105 (a regex placeholder, not a password)
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


@dataclass(frozen=True, slots=True)
class Rule:
    """One detection rule: keywords for the prefilter, a precise regex, filters and samples."""

    id: str
    description: str
    kind: str
    keywords: tuple[str, ...]
    regex: re.Pattern[str]
    checksum: str | None
    entropy_min: float | None
    samples_match: tuple[str, ...]
    samples_nomatch: tuple[str, ...]
    # Every match begins at one of the keywords (checked on the samples at load): the engine
    # then tries one anchored match per keyword hit instead of searching a window around it.
    keyword_at_start: bool = True

    def secret_of(self, match: re.Match[str]) -> str:
        """The secret in a regex match: group ``secret`` when the pattern has one."""
        return match.group("secret") if "secret" in self.regex.groupindex else match.group(0)

    def accepts(self, secret: str) -> bool:
        """False for placeholders and decoys (checked on the part after the keyword).

        A secret valid by format (its checksum matches) is always accepted: a random body holds
        a placeholder word by chance (``dummy``, ``mykey``, ``xxxxx``: about 5 in a million
        keys), and such a key must still be found; whether it is ours is the store's answer
        (scanners.response), not the heuristics'."""
        if self.checksum is not None and self.checksum_ok(secret):
            return True
        body = secret
        for keyword in self.keywords:
            if secret.startswith(keyword):
                body = secret[len(keyword) :]
                break
        return not is_placeholder(body, self.entropy_min)

    def checksum_ok(self, secret: str) -> bool | None:
        """Whether the secret's checksum is valid; None when the rule has no checksum."""
        if self.checksum == "keywatch-crc32":
            return has_valid_checksum(secret)
        return None

    def find(self, text: str) -> list[str]:
        """Every accepted secret in ``text`` (a plain scan used for samples and tests)."""
        found = (self.secret_of(m) for m in self.regex.finditer(text))
        return [s for s in found if self.accepts(s)]


@dataclass(frozen=True, slots=True)
class RuleSet:
    """All rules of one file, plus the platform's key prefixes."""

    rules: tuple[Rule, ...]
    platform_prefixes: tuple[str, ...]


def load_rules(path: Path = DEFAULT_RULES_PATH) -> RuleSet:
    """Load and validate a rules file; raise ``ConfigError`` on any problem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the rules file: {exc}") from exc
    return parse_rules(data, str(path))


class _RuleSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One ``[[rules]]`` table as written (the schema; ``_rule`` adds the checks across fields)."""

    id: NonEmpty
    description: NonEmpty
    kind: Literal["platform", "third_party"]
    regex: NonEmpty
    keywords: Annotated[list[NonEmpty], msgspec.Meta(min_length=1)] | None = None
    checksum: Literal["keywatch-crc32", "none"] = "none"
    entropy_min: float | None = None
    samples_match: list[str] = []
    samples_nomatch: list[str] = []
    keyword_at_start: bool = True


class _PlatformSpec(msgspec.Struct, forbid_unknown_fields=True):
    """``[platform]``: this platform's key prefixes (default: the key format's)."""

    prefixes: list[NonEmpty] = msgspec.field(default_factory=lambda: list(KNOWN_PREFIXES))


class _RulesFile(msgspec.Struct, forbid_unknown_fields=True):
    """A rules file."""

    rules: Annotated[list[_RuleSpec], msgspec.Meta(min_length=1)]
    platform: _PlatformSpec = msgspec.field(default_factory=_PlatformSpec)


def parse_rules(data: Mapping[str, object], source: str = "<rules>") -> RuleSet:
    """Build a validated :class:`RuleSet` from parsed TOML data; ``ConfigError`` names the
    file, the failing path (``rules[2].kind``) and the problem."""
    spec = convert(data, _RulesFile, source)
    prefixes = spec.platform.prefixes
    rules = tuple(_rule(raw, n, prefixes, source) for n, raw in enumerate(spec.rules))
    seen: set[str] = set()
    for n, rule in enumerate(rules):
        if rule.id in seen:
            raise fail(source, ["rules", n, "id"], f"duplicate rule id {rule.id!r}")
        seen.add(rule.id)
    return RuleSet(rules=rules, platform_prefixes=tuple(prefixes))


def _rule(spec: _RuleSpec, n: int, prefixes: Sequence[str], source: str) -> Rule:
    keywords = spec.keywords
    if keywords is None:
        if spec.kind != "platform" or not prefixes:
            raise fail(source, ["rules", n, "keywords"],
                       'missing (required unless kind = "platform")')  # fmt: skip
        keywords = list(prefixes)
    rule = Rule(
        id=spec.id,
        description=spec.description,
        kind=spec.kind,
        keywords=tuple(keywords),
        regex=_compile(spec.regex, prefixes, source, n),
        checksum=None if spec.checksum == "none" else spec.checksum,
        entropy_min=spec.entropy_min,
        samples_match=tuple(spec.samples_match),
        samples_nomatch=tuple(spec.samples_nomatch),
        keyword_at_start=spec.keyword_at_start,
    )
    _check_samples(rule, source, n)
    return rule


def _compile(pattern: str, prefixes: Sequence[str], source: str, n: int) -> re.Pattern[str]:
    path: list[str | int] = ["rules", n, "regex"]
    if _PREFIX_TOKEN in pattern:
        if not prefixes:
            raise fail(source, path, f"uses {_PREFIX_TOKEN} but platform.prefixes is empty")
        alternation = "(?:" + "|".join(re.escape(p) for p in prefixes) + ")"
        pattern = pattern.replace(_PREFIX_TOKEN, alternation)
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise fail(source, path, f"bad regex: {exc}") from exc


def _check_samples(rule: Rule, source: str, n: int) -> None:
    for i, sample in enumerate(rule.samples_match):
        path: list[str | int] = ["rules", n, "samples_match", i]
        shown = redact_text(sample)[:60]
        if not rule.find(sample):
            raise fail(source, path, f"sample that must match does not: {shown!r}")
        if not any(k in sample for k in rule.keywords):
            raise fail(source, path, f"sample contains none of the keywords: {shown!r}")
        if rule.keyword_at_start and not all(
            sample.startswith(rule.keywords, m.start()) for m in rule.regex.finditer(sample)
        ):
            raise fail(source, path, f"a match of {shown!r} does not begin with a keyword;"
                       " set keyword_at_start = false")  # fmt: skip
    for i, sample in enumerate(rule.samples_nomatch):
        if rule.find(sample):
            shown = redact_text(sample)[:60]
            path = ["rules", n, "samples_nomatch", i]
            raise fail(source, path, f"sample that must not match does: {shown!r}")
