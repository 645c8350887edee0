"""Who the caller is and what they may do: the gate seam every room uses, and the access rule each route declares.

The identity middleware (exchange) only says who is calling: it puts the authenticated caller, or an anonymous
one, in `request.state.caller`. Each route declares one `Rule` as a FastAPI dependency, on its router or on the
route itself: `public`, `anonymous_data` (city data screened by the gate), `authenticated`, `scope(...)`,
`role(...)`, or a room's own rule. `undeclared(app)` lists the routes that declare none; `create_app` refuses to
build an app that has any, so a route nobody thought about is closed, never open.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.routing import Mount

from civicmesh.errors import Problem

Operation = Literal["create", "read", "update", "delete", "query"]


@dataclass(frozen=True)
class Caller:
    """Who is asking. Anonymous callers have no organization."""

    subject: str = "anonymous"
    organization: str | None = None
    roles: frozenset[str] = frozenset()

    def may(self, scope: str) -> bool:
        """Whether the credential was granted this scope; a caller without credentials limits nothing here."""
        return True


ANONYMOUS = Caller()

# The caller of the HTTP request being served. A room that calls the broker without a caller (the IoT agent's HTTP
# endpoint, alert rules) acts for this caller; with no HTTP request at all (MQTT, the relay, the simulator) the
# platform itself is acting.
current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("civicmesh_caller", default=None)


@dataclass(frozen=True)
class AccessRequest:
    caller: Caller
    tenant: str
    operation: Operation
    entity_types: tuple[str, ...] = ()
    entity_ids: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    # Attributes the caller may see; None means all of them.
    visible_attributes: frozenset[str] | None = None
    obligations: tuple[str, ...] = field(default_factory=tuple)


class Gate:
    """Allow-all gate with the signature of the real one (the exchange's)."""

    async def check(self, request: AccessRequest) -> Decision:
        return Decision(True, "no access policies configured: allow-all gate")

    def sees_everything(self, caller: Caller) -> bool:
        """Whether every entity and attribute is visible to this caller (no screening needed)."""
        return True

    async def admits(self, caller: Caller, tenant: str, docs: list[dict[str, Any]]) -> list[Any]:
        """Per entity, with no side effects (no metering): None where the caller may not read it, else the gate's
        decision, which a screening gate takes back so that it decides each entity once per request."""
        return [True] * len(docs)


def is_admin(caller: Caller) -> bool:
    return "platform_admin" in caller.roles


def is_anonymous(caller: Caller | None) -> bool:
    # Every credential names an organization (keys belong to one; a JWT without a registered `org` is refused).
    return caller is None or caller.organization is None


# -- the kit every room uses ---------------------------------------------------------------------------------
def caller(request: Request) -> Caller:
    """The authenticated caller; 401 for an anonymous one (the route's rule normally refused it already)."""
    who: Caller | None = getattr(request.state, "caller", None)
    if who is None or is_anonymous(who):
        raise Problem("Unauthorized", f"{request.method} {request.url.path} needs an authenticated caller",
                      status=401, headers=CHALLENGE)
    return who


def organization_of(request: Request) -> dict[str, Any] | None:
    """The registered organization of the caller (its document), as the identity middleware found it."""
    return getattr(request.state, "organization", None)


# -- rules -----------------------------------------------------------------------------------------------------
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="civicmesh"'}
Anonymous = Literal["refuse", "screen", "pass"]
Check = Callable[[Caller, Request], Awaitable[str | None]]


class Rule:
    """An access rule, declared by a route as a FastAPI dependency and checked before its endpoint runs.

    `anonymous`: what happens to a caller without credentials: "refuse" (401), "pass" (the route serves no
    protected data; internal writes are the platform's own) or "screen" (city data, which the gate screens as
    public open data). `check` says why an authenticated caller may not (None: it may); platform admins pass.
    """

    def __init__(self, name: str, *, anonymous: Anonymous = "refuse", check: Check | None = None,
                 admin_exempt: bool = True) -> None:
        self.name = name
        self.anonymous: Anonymous = anonymous
        self.check = check
        self.admin_exempt = admin_exempt

    def __repr__(self) -> str:
        return f"Rule({self.name})"

    async def __call__(self, request: Request) -> None:
        who: Caller | None = getattr(request.state, "caller", None)
        if who is None or is_anonymous(who):
            await self.admit_anonymous(request, who)
            return
        if self.check is None or (self.admin_exempt and is_admin(who)):
            return
        why = await self.check(who, request)
        if why:
            raise Problem("Forbidden", why)

    async def admit_anonymous(self, request: Request, who: Caller | None) -> None:
        if self.anonymous == "pass":
            return
        if self.anonymous == "screen":
            anonymous = who or ANONYMOUS
            request.state.caller = anonymous
            # Screened as anonymous by the gate, not as the platform (which a caller-less room call would be).
            current_caller.set(anonymous)
            return
        raise Problem("Unauthorized", f"{request.method} {request.url.path} needs authentication: an API key "
                      "(X-API-Key or Authorization: Bearer) or an OIDC bearer token", status=401,
                      headers=CHALLENGE)

    def depends(self) -> Any:
        """The dependency to list in `dependencies=[...]` of a route or router."""
        return Depends(self)


public = Rule("public", anonymous="pass")
anonymous_data = Rule("anonymous_data", anonymous="screen")
authenticated = Rule("authenticated")


def scope(name: str) -> Rule:
    """An authenticated caller whose credential was granted this scope (or "*")."""

    async def check(who: Caller, request: Request) -> str | None:
        return None if who.may(name) else f"the credential of {who.subject} lacks the scope {name!r}"

    return Rule(f"scope:{name}", check=check)


def explicit_scope(name: str) -> Rule:
    """Like `scope`, but "*" does not count: the credential must name this scope (writing to the ledger)."""

    async def check(who: Caller, request: Request) -> str | None:
        if name in getattr(who, "scopes", frozenset()):
            return None
        return f"this needs a credential granted the {name!r} scope explicitly; {who.subject}'s is not"

    return Rule(f"explicit-scope:{name}", check=check)


def role(*names: str, scope_name: str | None = None) -> Rule:
    """An authenticated caller with one of these roles (and, if given, the scope); platform admins always."""

    async def check(who: Caller, request: Request) -> str | None:
        if scope_name is not None and not who.may(scope_name):
            return f"the credential of {who.subject} lacks the scope {scope_name!r}"
        if names and not set(names) & who.roles:
            return f"this needs the role {' or '.join(names)}; {who.subject} has {sorted(who.roles) or 'none'}"
        return None

    label = "|".join(names) + (f"+scope:{scope_name}" if scope_name else "")
    return Rule(f"role:{label}", check=check)


platform_admin = role("platform_admin")


def when(predicate: Callable[[Request], bool], then: Rule, otherwise: Rule) -> Rule:
    """One route, two rules: `then` where the request matches (e.g. the `query` batch operation), else `otherwise`."""
    return Branching(f"{then.name} if {getattr(predicate, '__name__', 'matched')} else {otherwise.name}",
                     predicate, then, otherwise)


class Branching(Rule):
    """A rule that picks one of two rules per request."""

    def __init__(self, name: str, predicate: Callable[[Request], bool], then: Rule, otherwise: Rule) -> None:
        super().__init__(name)
        self.predicate = predicate
        self.branches = (then, otherwise)

    async def __call__(self, request: Request) -> None:
        await (self.branches[0] if self.predicate(request) else self.branches[1])(request)


# -- which route declares which rule -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    path: str
    methods: frozenset[str]
    rules: tuple[Rule, ...]
    name: str


def endpoints(app: FastAPI) -> Iterator[Endpoint]:
    """Every HTTP endpoint of the app, included routers and mounts unpacked, with the rules it declares."""
    yield from _walk(app.router.routes, "")


def _walk(routes: list[Any], prefix: str) -> Iterator[Endpoint]:
    for route in routes:
        if hasattr(route, "effective_candidates"):  # a router included by FastAPI (kept as one node)
            yield from _walk([*route.effective_candidates(), *route.effective_low_priority_routes()], prefix)
            continue
        if isinstance(route, Mount):
            if route.routes:
                yield from _walk(list(route.routes), prefix + route.path)
            else:
                yield Endpoint(prefix + route.path, frozenset({"*"}), _declared(route), route.name or "")
            continue
        path = getattr(route, "path", None)
        if path is None:
            continue
        methods = frozenset(getattr(route, "methods", None) or {"*"})
        yield Endpoint(prefix + path, methods, _declared(route), getattr(route, "name", "") or "")


def _declared(route: Any) -> tuple[Rule, ...]:
    found = [d.dependency for d in getattr(route, "dependencies", None) or [] if isinstance(d.dependency, Rule)]
    marked = getattr(route, "access_rule", None)
    if isinstance(marked, Rule):
        found.append(marked)
    return tuple(found)


def declare(route: Any, rule: Rule) -> None:
    """Give a plain Starlette route (FastAPI's own /docs and /openapi.json) its rule; it has no dependencies."""
    route.access_rule = rule


def undeclared(app: FastAPI) -> list[str]:
    """'METHODS path' of every endpoint that declares no rule, or more than one (which would be ambiguous)."""
    return [f"{','.join(sorted(e.methods))} {e.path} ({len(e.rules)} rules)" for e in endpoints(app)
            if len(e.rules) != 1]


def seal(app: FastAPI) -> None:
    """Give FastAPI's own documentation routes the public rule, then refuse an app with an undeclared route."""
    for route in app.router.routes:
        if not isinstance(route, APIRoute) and getattr(route, "path", None) in _DOCS:
            declare(route, public)
    missing = undeclared(app)
    if missing:
        raise RuntimeError("routes without exactly one access rule (declare one from civicmesh.access): "
                           + "; ".join(missing))


_DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
