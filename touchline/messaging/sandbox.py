"""Renders the step templates whose cost cannot be bounded by reading them, in a child
process that can be killed.

A loop, a macro or a `*` can make a template run for hours or allocate gigabytes, and
Python cannot interrupt a thread that is inside one long C call (`"a" * 10**10`,
`10 ** (10 ** 10)`). A separate process can be: it gets a memory limit of its own, the
parent waits for its answer no longer than the budget and kills it when the budget runs
out. The child imports only Jinja, this module and marks.py (it is started with
`python -c`, not through `multiprocessing`, whose spawn would import the parent's
`__main__`, the whole application, in the child), and it exits when the parent goes away.

Both processes render through `environment()`; for link tracking, with the values a
template substitutes marked (see marks.py).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from jinja2 import Template, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from touchline.messaging import marks
from touchline.messaging.bounded import BoundedEnvironment, Overflow

MEMORY_HEADROOM = 512 * 1024 * 1024
# Starting the child is not a template's fault, so it is not charged to the budget.
_START_TIMEOUT = 30.0
# A source that ran out of time or memory fails at once for this long, rather than
# spending the budget again for every contact; it is tried again afterwards, so that a
# machine that was only overloaded does not fail a step until the worker restarts.
_REMEMBER_SECONDS = 600.0
_REMEMBER_MAX = 1024
_REASON_MAX = 300

# Reply kinds, the first byte of a reply: text, an error of the data, an error of the
# template, text too long, or memory exhausted.
_OK, _DATA, _FAULT, _LONG, _MEMORY = b"o", b"d", b"f", b"l", b"m"


class Failed(Exception):
    """A render that did not produce text; `template_fault` when any contact would fail."""

    def __init__(self, reason: str, *, template_fault: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.template_fault = template_fault


class TooLong(Failed):
    """The text grew past `max_chars`; the caller says which limit that is."""

    def __init__(self) -> None:
        super().__init__("rendered message is too long", template_fault=True)


class Exhausted(Failed):
    """The render ran out of time or memory: worth remembering, too costly to repeat."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, template_fault=True)


def describe(exc: BaseException) -> Failed:
    """A readable failure for an exception raised while compiling or rendering."""
    if isinstance(exc, RecursionError):
        return Failed("template recursed too deeply", template_fault=True)
    if isinstance(exc, MemoryError):
        return Failed("template ran out of memory", template_fault=True)
    text = str(exc) or type(exc).__name__
    if len(text) > _REASON_MAX:
        text = text[:_REASON_MAX] + "…"
    # An undefined value or a type mismatch may come from one contact's data; a sandbox
    # refusal, an unknown filter or an overflow comes from the template itself.
    data = isinstance(exc, UndefinedError) or not isinstance(exc, TemplateError | OverflowError)
    return Failed(f"template error: {text}", template_fault=not data)


def _out_of_memory() -> str:
    return f"template needed more than {MEMORY_HEADROOM // 2**20} MiB to render"


def _too_slow(budget: float) -> str:
    return f"template took longer than {budget:g} s to render"


def environment(*, marked: bool, **options: Any) -> SandboxedEnvironment:
    """The sandbox templates render in, here and in the child; `marked`, it marks values."""
    # Autoescape stays off: bodies are SMS and plain-text email, not HTML. Jinja's own
    # cache of loaded templates is off: the callers keep compiled templates themselves.
    kind = marks.MarkingEnvironment if marked else BoundedEnvironment
    return kind(autoescape=False, keep_trailing_newline=True, cache_size=0, **options)


# --- the child -----------------------------------------------------------------------


def serve(requests_fd: int, replies_fd: int) -> None:
    """The child's loop: one request, one reply, until the parent closes its end."""
    # Ctrl-C in a terminal reaches the whole process group; the parent decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit_memory()
    requests = Connection(requests_fd, writable=False)
    replies = Connection(replies_fd, readable=False)
    envs = {marked: environment(marked=marked) for marked in (False, True)}
    compiled: OrderedDict[tuple[bool, str], Template] = OrderedDict()
    replies.send_bytes(b"ready")
    while True:
        try:
            request = requests.recv_bytes()
        except EOFError:
            return
        except MemoryError:
            replies.send_bytes(_DATA + b"contact data too large to render")
            continue
        replies.send_bytes(_answer(envs, compiled, request))


def _limit_memory() -> None:
    try:
        import resource

        with open("/proc/self/statm") as statm:
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError):
        return  # not Linux: the budget still bounds the time a blowup takes
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _answer(
    envs: dict[bool, SandboxedEnvironment],
    compiled: OrderedDict[tuple[bool, str], Template],
    request: bytes,
) -> bytes:
    try:
        source, variables, max_chars, budget, marked = pickle.loads(request)
        # If the parent died waiting, nobody would kill a runaway render: the kernel's
        # default action for SIGALRM ends this process even inside a long C call.
        signal.setitimer(signal.ITIMER_REAL, budget + 2.0)
        try:
            kind, text = _render_here(envs, compiled, source, variables, max_chars, marked)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except MemoryError:
        kind, text = _MEMORY, _out_of_memory()
    except Exception as exc:
        failure = describe(exc)
        kind, text = (_FAULT if failure.template_fault else _DATA), failure.reason
    return kind + text.encode("utf-8", "surrogatepass")


def _render_here(
    envs: dict[bool, SandboxedEnvironment],
    compiled: OrderedDict[tuple[bool, str], Template],
    source: str,
    variables: dict[str, Any],
    max_chars: int,
    marked: bool,
) -> tuple[bytes, str]:
    template = compiled.get((marked, source))
    if template is None:
        template = compiled[marked, source] = envs[marked].from_string(source)
        if len(compiled) > 256:
            compiled.popitem(last=False)
    parts: list[str] = []
    size = 0
    # Stop as soon as the text is too long rather than build all of it. Marks are not
    # part of the message.
    try:
        for part in template.generate(variables):
            size += len(part) - (marks.count(part) if marked else 0)
            if size > max_chars:
                return _LONG, ""
            parts.append(part)
    except Overflow:
        return _LONG, ""
    return _OK, "".join(parts)


# --- the parent ----------------------------------------------------------------------


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    requests: Connection
    replies: Connection

    @classmethod
    def start(cls) -> _Child:
        requests_read, requests_write = os.pipe()
        replies_read, replies_write = os.pipe()
        # The parent's path, and this package's root in case the parent found it through
        # an import hook that `-S` (no site, a faster start) leaves out.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        boot = (
            f"import sys; sys.path[:] = {[root, *sys.path]!r}; "
            "from touchline.messaging.sandbox import serve; "
            f"serve({requests_read}, {replies_write})"
        )
        requests = Connection(requests_write, readable=False)
        replies = Connection(replies_read, writable=False)
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", boot],
                pass_fds=(requests_read, replies_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        except OSError:
            requests.close()
            replies.close()
            raise
        finally:
            os.close(requests_read)
            os.close(replies_write)
        child = cls(process, requests, replies)
        try:
            ready = replies.poll(_START_TIMEOUT) and replies.recv_bytes() == b"ready"
        except EOFError:
            ready = False
        if not ready:
            child.kill()
            raise OSError("the template renderer did not start")
        return child

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.requests.close()
        self.replies.close()


class Renderer:
    """One child process per parent process, started on first use and replaced after it
    is killed; a lock lets threads share it (renders that need it are rare)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._failed: OrderedDict[bytes, tuple[float, str]] = OrderedDict()

    def render(
        self,
        source: str,
        variables: dict[str, Any],
        *,
        max_chars: int,
        budget: float,
        marked: bool = False,
    ) -> str:
        key = hashlib.sha256(source.encode("utf-8", "surrogatepass")).digest()
        with self._lock:
            if (reason := self._remembered(key)) is not None:
                raise Exhausted(reason)
            try:
                return self._exchange(source, variables, max_chars, budget, marked)
            except Exhausted as failure:
                self._remember(key, failure.reason)
                raise

    def close(self) -> None:
        with self._lock:
            if self._child is not None:
                self._child.kill()
                self._child = None

    def _exchange(
        self, source: str, variables: dict[str, Any], max_chars: int, budget: float, marked: bool
    ) -> str:
        try:
            request = pickle.dumps((source, variables, max_chars, budget, marked))
        except Exception as exc:
            raise Failed(f"contact data cannot be rendered: {exc}", template_fault=False) from None
        child = self._send(request)
        try:
            if not child.replies.poll(budget):
                self._discard()
                raise Exhausted(_too_slow(budget))
            reply = child.replies.recv_bytes(_longest_reply(max_chars))
        except (OSError, EOFError):
            # It died rendering: most often the kernel refused it memory inside a C call.
            self._discard()
            raise Exhausted(_out_of_memory()) from None
        return _reply(reply)

    def _send(self, request: bytes) -> _Child:
        for _attempt in range(2):
            child = self._running_child()
            try:
                child.requests.send_bytes(request)
                return child
            except OSError:
                # Gone before it read the request: not this template's doing.
                self._discard()
        raise Failed("template renderer unavailable: it stopped", template_fault=False)

    def _running_child(self) -> _Child:
        if self._child is not None and self._child.process.poll() is not None:
            self._discard()
        if self._child is None:
            try:
                self._child = _Child.start()
            except OSError as exc:
                reason = f"template renderer unavailable: {exc}"
                raise Failed(reason, template_fault=False) from None
        return self._child

    def _discard(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child = None

    def _remembered(self, key: bytes) -> str | None:
        entry = self._failed.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def _remember(self, key: bytes, reason: str) -> None:
        self._failed[key] = (time.monotonic() + _REMEMBER_SECONDS, reason)
        self._failed.move_to_end(key)
        while len(self._failed) > _REMEMBER_MAX:
            self._failed.popitem(last=False)


def _longest_reply(max_chars: int) -> int:
    # Up to 4 bytes a character in UTF-8, and two one-byte marks around each value of at
    # least one character.
    return 4 * (max_chars + _REASON_MAX) + 2 * max_chars + 64


def _reply(reply: bytes) -> str:
    kind, text = reply[:1], reply[1:].decode("utf-8", "surrogatepass")
    if kind == _OK:
        return text
    if kind == _LONG:
        raise TooLong()
    if kind == _MEMORY:
        raise Exhausted(text)
    raise Failed(text, template_fault=kind == _FAULT)


_renderer = Renderer()


def renderer() -> Renderer:
    return _renderer


def _forget_after_fork() -> None:
    # A forked copy shares the parent's pipes; it must start a child of its own.
    global _renderer
    _renderer = Renderer()


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(lambda: _renderer.close())
