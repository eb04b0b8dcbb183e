"""The hub started by the application: runs the `livebridge` binary that came with this package
(the `livebridge-hub` wheel puts it in the environment's scripts directory) as a child process,
for as long as a `with` block lasts.

    import livebridge.hub
    from livebridge.events import broadcast_job_progress

    with livebridge.hub.running(port=0, data_dir="/var/tmp/pipeline-hub") as hub:
        print("hub at", hub.url)                  # http://127.0.0.1:<free port>
        broadcast_job_progress("abc123", "analyzing", 45.5)   # goes to this hub

What it does, and why:

- Settings are passed as `livebridge serve` flags: `data_dir="x"` becomes `--data-dir x`
  (underscores to dashes), `True` a bare flag (`broker_durable=True`), a list or tuple one flag
  per item (`allowed_origin=[...]`), `None` and `False` nothing. Anything else that the binary
  reads (`LIVEBRIDGE_*` variables) comes from `env`, by default this process's environment.
- Ready means listening: the binary prints `livebridge listening on http://ADDR` on stdout once
  its socket is bound, and `start()` waits for that line (up to `startup_timeout`), so there is
  no sleep and `port=0` works (the line carries the port the OS chose). A binary that exits
  first (a bad flag, a data directory it cannot open, a port in use) raises `HubStartError`
  with its exit code and what it wrote on stderr.
- The hub's stderr (its log) goes to a file, never to a pipe that could fill and block it;
  `hub.log()` reads it, and every error carries its tail.
- The module-level publisher (`livebridge.events`, `livebridge.configure`) is pointed at the
  hub while it runs, and back at what it was before when it stops.
- A hub that exits while the application runs is reported, never silent: a watcher thread
  notices at once, logs an error on the `livebridge` logger and calls `on_exit(error)` if
  given; from then on `hub.url` and `hub.check()` raise `HubExited` (with `returncode` and
  `log_tail`), and so does leaving the `with` block if nothing reported it yet.
- Stopping is SIGTERM (the hub closes WebSockets with 1001 and flushes its data directory,
  exit code 0), then SIGKILL after `stop_timeout` seconds.

The hub is a child of this process: it shares the terminal's Ctrl+C, and it does not outlive
a `kill -9` of the application. A hub that must outlive the application runs as a service
(docs/installing.md).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, List, Mapping, Optional, Sequence, Type, Union

from .errors import LivebridgeError

logger = logging.getLogger("livebridge")

__all__ = ["Hub", "HubError", "HubExited", "HubStartError", "find_binary", "running", "settings_to_flags"]

_READY_LINE = re.compile(r"livebridge listening on (https?://\S+)")
_LOG_TAIL_BYTES = 4000
_EXE = ".exe" if os.name == "nt" else ""


class HubError(LivebridgeError):
    """The hub binary could not be found, started or kept running."""


class HubStartError(HubError):
    """The hub did not become ready: it exited first (`returncode`), or did not report
    listening before the deadline (`returncode` None). `log_tail` is the end of its stderr."""

    def __init__(self, message: str, returncode: Optional[int], log_tail: str) -> None:
        super().__init__(f"{message}\n--- hub log (stderr) ---\n{log_tail}" if log_tail else message)
        self.returncode = returncode
        self.log_tail = log_tail


class HubExited(HubError):
    """The hub exited while the application was using it (it was not stopped by `stop()`).
    `returncode` is its exit code (negative: the signal that ended it, -9 for SIGKILL) and
    `log_tail` the end of its stderr."""

    def __init__(self, returncode: int, log_tail: str) -> None:
        how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
        message = f"the livebridge hub {how}"
        super().__init__(f"{message}\n--- hub log (stderr) ---\n{log_tail}" if log_tail else message)
        self.returncode = returncode
        self.log_tail = log_tail


def find_binary(binary: Union[str, "os.PathLike[str]", None] = None) -> str:
    """The `livebridge` binary to run: `binary` if given, else `LIVEBRIDGE_BIN`, else the one
    installed with this package in the running interpreter's scripts directory (a virtual
    environment's `bin/`, or the user scheme's for `pip install --user`), else the one beside
    the interpreter, else `livebridge` on PATH. The scripts directory comes before PATH so that
    the application runs the hub of its own version, not another one installed elsewhere."""
    if binary is not None:
        return _checked(Path(binary), "the binary given")
    configured = os.environ.get("LIVEBRIDGE_BIN")
    if configured:
        return _checked(Path(configured), "LIVEBRIDGE_BIN")
    candidates: List[Path] = []
    for scheme in (None, f"{os.name}_user"):
        try:
            scripts = sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
        except KeyError:  # no user scheme on this platform
            continue
        if scripts:
            candidates.append(Path(scripts) / f"livebridge{_EXE}")
    candidates.append(Path(sys.executable).parent / f"livebridge{_EXE}")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    on_path = shutil.which("livebridge")
    if on_path:
        return on_path
    looked = ", ".join(str(c) for c in candidates)
    raise HubError(
        "no livebridge binary found (looked in " + looked + " and on PATH): install the "
        "livebridge-hub wheel, which carries it, or pass binary=... or set LIVEBRIDGE_BIN"
    )


def _checked(path: Path, origin: str) -> str:
    if not path.is_file():
        raise HubError(f"{origin} names {path}, which is not a file")
    return str(path)


def settings_to_flags(settings: Mapping[str, Any]) -> List[str]:
    """`livebridge serve` flags for keyword settings: `data_dir="x"` -> `--data-dir x`,
    `True` -> the bare flag, a list or tuple -> the flag once per item, `None`/`False` -> none."""
    flags: List[str] = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            flags.append(flag)
        elif isinstance(value, (list, tuple)):
            for item in value:
                flags += [flag, os.fspath(item) if isinstance(item, os.PathLike) else str(item)]
        else:
            flags += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return flags


class Hub:
    """One `livebridge serve` child process. Usually made by `running()`; `start()` and
    `stop()` for code that cannot use a `with` block.

    - `port`: 0 lets the OS choose a free one (read back from the hub's ready line);
      `host`: the address to bind (`127.0.0.1`: this machine only).
    - `data_dir`: keep channel history there, across restarts and crashes (else in memory).
    - `binary`: the executable (see `find_binary()`); `args`: extra arguments after the flags.
    - `env`: the child's environment (default: this process's).
    - `configure_publisher`: point `livebridge.events` at this hub while it runs.
    - `on_exit(error)`: called once with a `HubExited` when the hub exits without `stop()`,
      on the watcher thread (or on the thread of the `check()`, `url` or `stop()` that
      noticed first).
    - `startup_timeout`, `stop_timeout`: seconds to wait for the ready line, and for the hub
      to exit after SIGTERM before it is killed.
    - `log_path`: write the hub's stderr there (kept); by default a temporary file, removed
      once the hub is stopped (its tail is kept in memory).
    - `**settings`: more `livebridge serve` flags (see `settings_to_flags()`).
    """

    def __init__(
        self,
        port: int = 5100,
        data_dir: Union[str, "os.PathLike[str]", None] = None,
        *,
        host: str = "127.0.0.1",
        binary: Union[str, "os.PathLike[str]", None] = None,
        args: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        configure_publisher: bool = True,
        on_exit: Optional[Callable[[HubExited], None]] = None,
        startup_timeout: float = 15.0,
        stop_timeout: float = 10.0,
        log_path: Union[str, "os.PathLike[str]", None] = None,
        **settings: Any,
    ) -> None:
        if "bind" in settings:
            raise TypeError("give host= and port= instead of bind=")
        self.binary = find_binary(binary)
        bind_host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        self.command: List[str] = [
            self.binary,
            "serve",
            "--bind",
            f"{bind_host}:{int(port)}",
            *settings_to_flags({"data_dir": data_dir, **settings}),
            *args,
        ]
        self.env = dict(os.environ if env is None else env)
        self.configure_publisher = configure_publisher
        self.on_exit = on_exit
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._admin_token: Optional[str] = settings.get("admin_token") or self.env.get("LIVEBRIDGE_ADMIN_TOKEN") or None
        self._log_path = Path(log_path) if log_path is not None else None
        self._owns_log = log_path is None
        self._final_log_tail: Optional[str] = None
        self._process: Optional["subprocess.Popen[bytes]"] = None
        self._url: Optional[str] = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._stopping = False
        self._exited: Optional[HubExited] = None  # set when it exited without stop()
        self._reported = False  # the exit reached the application (raised, or on_exit ran)
        self._previous_settings: Any = None

    # ------------------------------------------------------------------------------------
    # Life cycle

    def start(self) -> "Hub":
        """Starts the hub and returns once it listens. Raises `HubStartError` if it exits
        first or does not report listening within `startup_timeout` seconds."""
        if self._process is not None:
            raise HubError("this hub was already started; make a new Hub to start another")
        if self._log_path is None:
            handle, name = tempfile.mkstemp(prefix="livebridge-hub-", suffix=".log")
            os.close(handle)
            self._log_path = Path(name)
        log = open(self._log_path, "ab")
        try:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=self.env,
            )
        except OSError as error:
            raise HubStartError(f"cannot run {self.binary}: {error}", None, "") from error
        finally:
            log.close()  # the child has its own descriptor
        threading.Thread(target=self._read_stdout, name="livebridge-hub-stdout", daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._ready.wait(0.02):
            if self._process.poll() is not None and not self._ready.is_set():
                code = self._process.returncode
                raise HubStartError(
                    f"the livebridge hub exited with code {code} before it listened "
                    f"(command: {' '.join(self.command)})",
                    code,
                    self._release_log(),
                )
            if time.monotonic() > deadline:
                self._kill()
                raise HubStartError(
                    f"the livebridge hub did not report listening within {self.startup_timeout} s "
                    f"(command: {' '.join(self.command)}); it was killed",
                    None,
                    self._release_log(),
                )
        threading.Thread(target=self._watch, name="livebridge-hub-watcher", daemon=True).start()
        if self.configure_publisher:
            from . import settings as settings_module

            self._previous_settings = settings_module.current()
            settings_module.configure(url=self._url, admin_token=self._admin_token)
        return self

    def stop(self) -> int:
        """Stops the hub: SIGTERM, then SIGKILL after `stop_timeout` seconds. Returns its exit
        code (0 after a graceful stop; that of its crash if it had already exited)."""
        process = self._process
        if process is None:
            raise HubError("this hub was never started")
        if process.poll() is not None:
            self._note_exit(process.returncode)  # it crashed before stop(): still a crash
        with self._lock:
            self._stopping = True
        if process.poll() is None:
            if os.name == "nt":
                process.terminate()
            else:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "the livebridge hub did not exit within %s s of SIGTERM; killing it", self.stop_timeout
                )
                process.kill()
                process.wait()
        self._restore_publisher()
        self._release_log()
        return process.returncode

    def __enter__(self) -> "Hub":
        return self.start() if self._process is None else self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.stop()
        # A crash that nothing has reported yet is raised here rather than lost; an exception
        # already on its way out of the block is not replaced.
        with self._lock:
            unreported = self._exited if (self._exited is not None and not self._reported) else None
            self._reported = True
        if unreported is not None and exc_type is None:
            raise unreported

    # ------------------------------------------------------------------------------------
    # State

    @property
    def url(self) -> str:
        """The hub's base URL (`http://127.0.0.1:PORT`). Raises `HubExited` if it exited
        without `stop()`."""
        self.check()
        if self._url is None:
            raise HubError("the hub is not running: start() it first")
        return self._url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/")[0])

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> Optional[int]:
        """None while it runs; its exit code once it exited."""
        return self._process.poll() if self._process is not None else None

    def check(self) -> None:
        """Raises `HubExited` if the hub exited without `stop()` (for a health check loop)."""
        process = self._process
        if process is None:
            return
        if process.poll() is not None:
            self._note_exit(process.returncode)
        with self._lock:
            exited = self._exited
            if exited is not None:
                self._reported = True
        if exited is not None:
            raise exited

    def log(self) -> str:
        """What the hub wrote on stderr (its log) so far; after `stop()` with the default
        temporary log file, its last few thousand characters."""
        if self._final_log_tail is not None:
            return self._final_log_tail
        if self._log_path is None:
            return ""
        try:
            return self._log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, limit: int = _LOG_TAIL_BYTES) -> str:
        text = self.log()
        return text[-limit:]

    # ------------------------------------------------------------------------------------
    # Internals

    def _read_stdout(self) -> None:
        # Reads the ready line, then keeps reading (and discarding) so the pipe never fills.
        process = self._process
        assert process is not None and process.stdout is not None
        for raw in process.stdout:
            if not self._ready.is_set():
                match = _READY_LINE.search(raw.decode(errors="replace"))
                if match:
                    self._url = match.group(1).rstrip("/")
                    self._ready.set()
        process.stdout.close()

    def _watch(self) -> None:
        process = self._process
        assert process is not None
        code = process.wait()
        self._note_exit(code)

    def _note_exit(self, code: int) -> None:
        with self._lock:
            if self._stopping or self._exited is not None:
                return
            error = HubExited(code, self.log_tail())
            self._exited = error
        logger.error("%s", error)
        if self.on_exit is not None:
            try:
                self.on_exit(error)
            except Exception:  # a failing callback must not hide the exit it was told of
                logger.exception("the on_exit callback of the livebridge hub raised")
            else:
                with self._lock:
                    self._reported = True

    def _kill(self) -> None:
        assert self._process is not None
        with self._lock:
            self._stopping = True
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def _restore_publisher(self) -> None:
        if not self.configure_publisher or self._previous_settings is None:
            return
        from . import settings as settings_module

        previous, self._previous_settings = self._previous_settings, None
        if settings_module.current().url == self._url:  # nobody re-pointed it meanwhile
            settings_module.configure(url=previous.url, admin_token=previous.admin_token)

    def _release_log(self) -> str:
        """Keeps the log's tail in memory and removes the temporary log file."""
        tail = self.log_tail()
        if self._owns_log and self._log_path is not None and self._final_log_tail is None:
            self._final_log_tail = tail
            try:
                self._log_path.unlink()
            except FileNotFoundError:
                pass
        return tail


def running(
    port: int = 5100,
    data_dir: Union[str, "os.PathLike[str]", None] = None,
    **options: Any,
) -> Hub:
    """A `Hub` to use as a context manager: `with livebridge.hub.running(port=0) as hub:`
    starts the hub and waits until it listens, and stops it at the end of the block. Keyword
    options are those of `Hub` (`binary`, `host`, `env`, `on_exit`, ...) and any
    `livebridge serve` setting (`admin_token="..."`, `history_size=5000`, ...)."""
    return Hub(port, data_dir, **options)

