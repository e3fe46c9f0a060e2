"""Scanner rules as data: ``rules.toml`` loaded once into frozen :class:`Rule` objects.

Loading validates everything (fields, types, regexes, keywords, samples) and raises
``ConfigError`` naming the rule and the problem, so a bad rules file stops the scanner at start.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from scanners.placeholders import is_placeholder
from worker.errors import ConfigError
from worker.keystore.keyformat import has_valid_checksum
from worker.redaction import redact_text

DEFAULT_RULES_PATH: Final = Path(__file__).with_name("rules.toml")
KINDS: Final = ("platform", "third_party")
CHECKSUMS: Final = ("keywatch-crc32", "none")
_PREFIX_TOKEN: Final = "<PREFIX>"  # noqa: S105 (a regex placeholder, not a password)


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
        """False for placeholders and decoys (checked on the part after the keyword)."""
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
        raise ConfigError(f"rules file {path}: {exc}") from exc
    return parse_rules(data, str(path))


def parse_rules(data: Mapping[str, object], source: str = "<rules>") -> RuleSet:
    """Build a validated :class:`RuleSet` from parsed TOML data."""
    platform = data.get("platform", {})
    if not isinstance(platform, Mapping):
        raise ConfigError(f"{source}: [platform] must be a table")
    prefixes = _str_list(platform.get("prefixes", []), f"{source}: platform.prefixes")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ConfigError(f"{source}: no [[rules]]")
    rules = tuple(_parse_rule(raw, prefixes, source) for raw in raw_rules)
    ids = [r.id for r in rules]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{source}: duplicate rule ids in {ids}")
    return RuleSet(rules=rules, platform_prefixes=tuple(prefixes))


def _parse_rule(raw: object, prefixes: Sequence[str], source: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: each [[rules]] entry must be a table")
    rid = raw.get("id")
    where = f"{source}: rule {rid!r}"
    if not isinstance(rid, str) or not rid:
        raise ConfigError(f"{where}: missing field 'id'")
    kind = _required_str(raw, "kind", where)
    if kind not in KINDS:
        raise ConfigError(f"{where}: kind must be one of {KINDS}, not {kind!r}")
    checksum = raw.get("checksum", "none")
    if checksum not in CHECKSUMS:
        raise ConfigError(f"{where}: checksum must be one of {CHECKSUMS}, not {checksum!r}")
    default_kw = list(prefixes) if kind == "platform" else None
    keywords = _str_list(raw.get("keywords", default_kw), f"{where}: keywords")
    if not keywords or any(not k for k in keywords):
        raise ConfigError(f"{where}: keywords must be non-empty strings")
    rule = Rule(
        id=rid,
        description=_required_str(raw, "description", where),
        kind=kind,
        keywords=tuple(keywords),
        regex=_compile(_required_str(raw, "regex", where), prefixes, where),
        checksum=None if checksum == "none" else str(checksum),
        entropy_min=_optional_float(raw.get("entropy_min"), where),
        samples_match=_samples(raw, "samples_match", where),
        samples_nomatch=_samples(raw, "samples_nomatch", where),
        keyword_at_start=_optional_bool(raw.get("keyword_at_start", True), where),
    )
    _check_samples(rule, where)
    return rule


def _compile(pattern: str, prefixes: Sequence[str], where: str) -> re.Pattern[str]:
    if _PREFIX_TOKEN in pattern:
        if not prefixes:
            raise ConfigError(f"{where}: regex uses {_PREFIX_TOKEN} but platform.prefixes is empty")
        alternation = "(?:" + "|".join(re.escape(p) for p in prefixes) + ")"
        pattern = pattern.replace(_PREFIX_TOKEN, alternation)
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{where}: bad regex: {exc}") from exc


def _check_samples(rule: Rule, where: str) -> None:
    for sample in rule.samples_match:
        shown = redact_text(sample)[:60]
        if not rule.find(sample):
            raise ConfigError(f"{where}: sample that must match does not: {shown!r}")
        if not any(k in sample for k in rule.keywords):
            raise ConfigError(f"{where}: sample contains none of the keywords: {shown!r}")
        if rule.keyword_at_start and not all(
            sample.startswith(rule.keywords, m.start()) for m in rule.regex.finditer(sample)
        ):
            raise ConfigError(
                f"{where}: a match of {shown!r} does not begin with a keyword;"
                " set keyword_at_start = false"
            )
    for sample in rule.samples_nomatch:
        if rule.find(sample):
            shown = redact_text(sample)[:60]
            raise ConfigError(f"{where}: sample that must not match does: {shown!r}")


def _samples(raw: Mapping[str, object], name: str, where: str) -> tuple[str, ...]:
    return tuple(_str_list(raw.get(name, []), f"{where}: {name}"))


def _required_str(raw: Mapping[str, object], name: str, where: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: missing or empty field {name!r}")
    return value


def _str_list(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return [str(v) for v in value]


def _optional_bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: keyword_at_start must be true or false")
    return value


def _optional_float(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: entropy_min must be a number")
    return float(value)
