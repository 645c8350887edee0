"""JSON-LD @context handling for NGSI-LD: resolve contexts offline, expand and compact terms.

Only what NGSI-LD needs of JSON-LD: term definitions (string or `{"@id": ...}`), prefixes and compact IRIs,
`@vocab`, arrays of contexts and remote contexts by URL. Remote contexts never come from the network: the core
context is built in, other URLs come from the context cache directory (`index.json` maps URL -> file) or from
contexts hosted by the broker itself (`/jsonldContexts`). Anything else is 503 LdContextNotAvailable.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from civicmesh.errors import Problem

NGSI_LD = "https://uri.etsi.org/ngsi-ld/"
DEFAULT_VOCAB = NGSI_LD + "default-context/"
CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
GEOJSON = "https://purl.org/geojson/vocab#"

# Core terms an entity may use as attribute or type names, besides the structural members the parser handles.
_CORE_NGSI_TERMS = """
Attribute AttributeList ContextSourceNotification ContextSourceRegistration Date DateTime EntityType
EntityTypeInfo EntityTypeList GeoProperty JsonProperty LanguageProperty ListProperty ListRelationship
Notification Property Relationship Subscription TemporalProperty Time VocabProperty accept attributeCount
attributeDetails attributeList attributeName attributeNames attributeTypes attributes cooldown createdAt csf
data dataset datasetId deletedAt detail distinctCount endAt endTimeAt endpoint entities entity entityCount error
errors expiresAt format geoQ geoproperty georel idPattern information instanceId isActive lang lastFailure
lastNotification lastSuccess location management managementInterval max min modifiedAt notification
notificationTrigger notifiedAt notifierInfo observationInterval observationSpace observedAt operationSpace
operations q reason receiverInfo refreshRate registrationId registrationName relationshipNames scope scopeQ
showChanges startAt status stddev subscriptionId subscriptionName success sum sumsq sysAttrs temporalQ tenant
throttling timeAt timeInterval timeout timeproperty timerel timesFailed timesSent title totalCount triggerReason
typeList typeName typeNames unitCode uri watchedAttributes propertyNames
""".split()
_GEOJSON_TERMS = """Feature FeatureCollection GeometryCollection LineString MultiLineString MultiPoint MultiPolygon
Point Polygon bbox coordinates features geometry properties""".split()

CORE_TERMS: dict[str, str] = {t: NGSI_LD + t for t in _CORE_NGSI_TERMS}
CORE_TERMS.update({t: GEOJSON + t for t in _GEOJSON_TERMS})
CORE_TERMS.update({
    "ngsi-ld": NGSI_LD,
    "geojson": GEOJSON,
    "description": "http://purl.org/dc/terms/description",
    "value": NGSI_LD + "hasValue",
    "object": NGSI_LD + "hasObject",
    "languageMap": NGSI_LD + "hasLanguageMap",
    "json": NGSI_LD + "hasJSON",
    "vocab": NGSI_LD + "hasVocab",
    "valueList": NGSI_LD + "hasValueList",
    "objectList": NGSI_LD + "hasObjectList",
})

_CORE_URL = re.compile(r"^https?://uri\.etsi\.org/ngsi-ld/v1/ngsi-ld-core-context(-v\d+\.\d+(\.\d+)?)?\.jsonld$")
_MAX_DEPTH = 16


def is_core_context_url(url: str) -> bool:
    return bool(_CORE_URL.match(url))


def core_context_document() -> dict[str, Any]:
    """The built-in core context as a JSON-LD document, served at /ngsi-ld/v1/jsonldContexts."""
    ctx: dict[str, Any] = {"@vocab": DEFAULT_VOCAB, "id": "@id", "type": "@type"}
    ctx.update(CORE_TERMS)
    return {"@context": ctx}


class TermMap:
    """The compiled result of one @context: expand terms to IRIs and compact IRIs back to terms."""

    __slots__ = ("_terms", "_vocab", "_reverse", "_prefixes", "_expand_cache", "_compact_cache")

    def __init__(self, terms: dict[str, str], vocab: str) -> None:
        self._terms = terms
        self._vocab = vocab
        self._prefixes = {t: iri for t, iri in terms.items()
                          if iri.endswith(("/", "#", ":")) and ":" not in t}
        reverse: dict[str, str] = {}
        # Earlier definitions win on compaction only if no later one shadows them; the later (core last) wins.
        for term, iri in terms.items():
            if term in self._prefixes:
                continue
            current = reverse.get(iri)
            if current is None or len(term) < len(current):
                reverse[iri] = term
        self._reverse = reverse
        self._expand_cache: dict[str, str] = {}
        self._compact_cache: dict[str, str] = {}

    def expand(self, term: str) -> str:
        cached = self._expand_cache.get(term)
        if cached is not None:
            return cached
        iri = self._expand(term)
        if len(self._expand_cache) < 50_000:
            self._expand_cache[term] = iri
        return iri

    def _expand(self, term: str) -> str:
        if term in self._terms:
            return self._resolve(self._terms[term])
        prefix, sep, suffix = term.partition(":")
        if sep:
            if prefix in self._prefixes and not suffix.startswith("//"):
                return self._prefixes[prefix] + suffix
            return term  # an absolute IRI (http://, urn:, ...)
        return self._vocab + term

    def _resolve(self, value: str) -> str:
        prefix, sep, suffix = value.partition(":")
        if sep and prefix in self._prefixes and not suffix.startswith("//"):
            return self._prefixes[prefix] + suffix
        return value

    def compact(self, iri: str) -> str:
        cached = self._compact_cache.get(iri)
        if cached is not None:
            return cached
        term = self._reverse.get(iri)
        if term is None:
            suffix = iri[len(self._vocab):] if iri.startswith(self._vocab) else ""
            if suffix and suffix not in self._terms:
                term = suffix
            else:
                # A compact IRI (prefix:rest) with the longest matching prefix, as JSON-LD compaction does.
                term = iri
                best = ""
                for prefix, base in self._prefixes.items():
                    if iri.startswith(base) and len(iri) > len(base) and len(base) > len(best):
                        term, best = f"{prefix}:{iri[len(base):]}", base
        if len(self._compact_cache) < 50_000:
            self._compact_cache[iri] = term
        return term


@dataclass
class HostedContext:
    id: str
    url: str
    kind: str  # Hosted | Cached | ImplicitlyCreated
    body: Any
    created_at: str


class ContextResolver:
    """Turns a request's @context (URL, object or array) into a TermMap, without touching the network."""

    def __init__(self, cache_dir: str | None = None, *, public_base: str = "") -> None:
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._index: dict[str, str] = {}
        self.hosted: dict[str, HostedContext] = {}
        self.public_base = public_base
        self._compiled: OrderedDict[bytes, TermMap] = OrderedDict()
        self._lock = threading.Lock()
        self._documents: dict[str, Any] = {}
        if self._cache_dir is not None:
            index = self._cache_dir / "index.json"
            if index.exists():
                self._index = orjson.loads(index.read_bytes())
        self.core = self._compile([])

    def register_document(self, url: str, body: Any) -> None:
        """Make a context document available under a URL (hosted contexts, the demo city's context)."""
        self._documents[url] = body
        with self._lock:
            self._compiled.clear()

    def forget_document(self, url: str) -> None:
        self._documents.pop(url, None)
        with self._lock:
            self._compiled.clear()

    def term_map(self, context: Any) -> TermMap:
        if context is None or context == [] or context == "":
            return self.core
        key = orjson.dumps(context, option=orjson.OPT_SORT_KEYS)
        with self._lock:
            found = self._compiled.get(key)
            if found is not None:
                self._compiled.move_to_end(key)
                return found
        compiled = self._compile(context if isinstance(context, list) else [context])
        with self._lock:
            self._compiled[key] = compiled
            if len(self._compiled) > 256:
                self._compiled.popitem(last=False)
        return compiled

    def _compile(self, contexts: list[Any]) -> TermMap:
        terms: dict[str, str] = {}
        state = {"vocab": DEFAULT_VOCAB}
        for ctx in contexts:
            self._merge(ctx, terms, state, depth=0)
        # The core context comes last and cannot be overridden (NGSI-LD 5.5.7).
        terms.update(CORE_TERMS)
        terms.update({"id": "@id", "type": "@type"})
        return TermMap(terms, state["vocab"])

    def _merge(self, ctx: Any, terms: dict[str, str], state: dict[str, str], depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise Problem("BadRequestData", "@context nests more than 16 levels of remote contexts")
        if ctx is None:
            terms.clear()
            return
        if isinstance(ctx, list):
            for item in ctx:
                self._merge(item, terms, state, depth)
            return
        if isinstance(ctx, str):
            if is_core_context_url(ctx):
                return
            self._merge(self._load(ctx), terms, state, depth + 1)
            return
        if not isinstance(ctx, dict):
            raise Problem("BadRequestData", f"@context entries must be URLs or objects, not {type(ctx).__name__}")
        for term, definition in ctx.items():
            if term == "@vocab":
                if isinstance(definition, str):
                    state["vocab"] = _expand_with(definition, terms)
                continue
            if term.startswith("@"):
                continue
            if isinstance(definition, str):
                terms[term] = definition
            elif isinstance(definition, dict):
                target = definition.get("@id")
                if isinstance(target, str):
                    terms[term] = target
                elif ":" in term:
                    terms[term] = term
            elif definition is None:
                terms.pop(term, None)
            else:
                raise Problem("BadRequestData", f"@context term {term!r} has an invalid definition")
        for term, iri in list(terms.items()):
            terms[term] = _expand_with(iri, terms)

    def _load(self, url: str) -> Any:
        if not (url.startswith(("http://", "https://", "urn:")) or ":" in url):
            raise Problem("BadRequestData", f"@context URL {url!r} is not an absolute URL")
        body = self._documents.get(url)
        if body is None and url in self._index and self._cache_dir is not None:
            path = self._cache_dir / self._index[url]
            try:
                body = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError) as exc:
                raise Problem("LdContextNotAvailable", f"cached @context for {url} is unreadable: {exc}") from exc
        if body is None:
            raise Problem("LdContextNotAvailable",
                          f"@context {url} is neither built in, hosted nor in the context cache directory; "
                          "this broker never downloads contexts (add it to --context-dir or POST /jsonldContexts)")
        if not isinstance(body, dict) or "@context" not in body:
            raise Problem("LdContextNotAvailable", f"document at {url} has no @context member")
        return body["@context"]

    def index(self) -> dict[str, str]:
        return dict(self._index)


def _expand_with(iri: str, terms: dict[str, str]) -> str:
    prefix, sep, suffix = iri.partition(":")
    if sep and not suffix.startswith("//") and prefix in terms and terms[prefix] != iri:
        base = terms[prefix]
        if base.endswith(("/", "#", ":")):
            return base + suffix
    return iri
