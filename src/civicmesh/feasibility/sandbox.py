"""Runs one evaluation from an untrusted project file in a child process with a memory cap and a time limit.

A project file of 1 MB can ask for work that is large in both: 200,000 Monte Carlo draws over hundreds of benefit
streams and 100 years is tens of GB of arrays. In the server's process that would stall the event loop and could
take the machine's memory; in a child with `RLIMIT_AS` the allocation fails inside the child (a 413-style refusal
naming the limit), and a child that runs past the time limit is killed. Children fork from a `forkserver` that has
already imported NumPy and the evaluator, so a request does not pay the import again (a fork is milliseconds).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson

from civicmesh.errors import Problem

_CONTEXT = multiprocessing.get_context("forkserver")
# "__main__" too, so a child does not import the server's main script afresh (the usual multiprocessing contract:
# the main script guards its start with `if __name__ == "__main__"`, as console scripts and pytest do).
_CONTEXT.set_forkserver_preload(["__main__", "civicmesh.feasibility.evaluate", "civicmesh.feasibility.report"])


@dataclass(frozen=True)
class Limits:
    seconds: float
    memory_bytes: int


@dataclass(frozen=True)
class Outcome:
    """What the child produced: the report body and its media type."""

    body: bytes
    media_type: str


def _child(conn: Connection, text: str, draws: int, fmt: str, lang: str, memory_bytes: int) -> None:
    """In the child: cap the address space, then parse, evaluate and render; send back one tagged tuple."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    from civicmesh.feasibility.evaluate import as_json, run
    from civicmesh.feasibility.model import ProjectError, load_project
    from civicmesh.feasibility.report import render_html

    try:
        project = load_project("request body", text=text, base_dir=None)
        result = run(project, draws=draws)
        if fmt == "html":
            conn.send(("ok", render_html(result, lang).encode(), "text/html; charset=utf-8"))
        else:
            conn.send(("ok", orjson.dumps(as_json(result), option=orjson.OPT_SERIALIZE_NUMPY), "application/json"))
    except ProjectError as exc:
        conn.send(("project", str(exc), exc.where, exc.line))
    except MemoryError:
        conn.send(("memory",))
    finally:
        conn.close()


def _wait(text: str, draws: int, fmt: str, lang: str, limits: Limits) -> tuple[Any, ...]:
    """Blocking: start the child, wait up to the time limit, kill it if it is still running."""
    parent, child = _CONTEXT.Pipe(duplex=False)
    process = _CONTEXT.Process(target=_child, args=(child, text, draws, fmt, lang, limits.memory_bytes),
                               daemon=True, name="feasibility-evaluation")
    process.start()
    child.close()
    try:
        if not parent.poll(limits.seconds):
            return ("timeout",)
        try:
            return parent.recv()  # type: ignore[no-any-return]
        except EOFError:  # the child died without a word: the kernel killed it (memory) or it crashed
            process.join(5)
            return ("died", process.exitcode)
    finally:
        parent.close()
        if process.is_alive():
            process.kill()
        process.join(5)


async def evaluate(text: str, *, draws: int, fmt: str, lang: str, limits: Limits) -> Outcome:
    """The report for this project text, or a Problem: 400 for a bad file, 413 over the memory cap, 503 when it
    ran out of time. The event loop waits in a thread, free for other requests."""
    answer = await asyncio.to_thread(_wait, text, draws, fmt, lang, limits)
    tag = answer[0]
    if tag == "ok":
        return Outcome(answer[1], answer[2])
    if tag == "project":
        raise Problem("BadRequestData", answer[1], extra={"field": answer[2], "line": answer[3]})
    megabytes = limits.memory_bytes // (1024 * 1024)
    if tag in ("memory", "died"):
        how = "needs" if tag == "memory" else f"ended (exit code {answer[1]}), most likely needing"
        raise Problem("PayloadTooLarge", f"evaluating this project {how} more than the {megabytes:,} MB an "
                      "evaluation may use (CIVICMESH_FEASIBILITY_MEMORY_MB); ask for fewer draws or a smaller project")
    raise Problem("ServiceUnavailable", f"the evaluation did not finish within {limits.seconds:g} s "
                  "(CIVICMESH_FEASIBILITY_SECONDS) and was stopped; ask for fewer draws", status=503,
                  title="The evaluation took too long")
