"""Reading an ecosystem file into plain data: YAML, JSON, TOML, JS (through node), Procfile.

Each reader returns what the file says (mappings, lists, scalars) or raises a one-line
`ConfigError` naming the file, and the line where the parser knows it. Every read is
bounded: the file's size, and for YAML the number of values its aliases expand to.

- YAML: `runtime.config.yamlfile` (PyYAML's C loader, imported only for YAML files).
- JSON: the standard library; a file it refuses is read again with `json5` (up to
  MAX_JSON5_BYTES), as pm2 evaluates `.json` files as JavaScript (comments, trailing
  commas, single quotes pass).
- JS (`.js`, `.cjs`, `.mjs`): `node` loads the file (`require`, or `import()` for ES
  modules, with `export default` or `export const apps`) and prints it as JSON, with the
  variables the file set in `process.env` (`require('dotenv').config()`), which pm2 hands
  to every app.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from collections.abc import Mapping

from runtime.errors import ConfigError

MAX_FILE_BYTES = 4 << 20  # an ecosystem file, a Procfile or an env_file
NODE_TIMEOUT_S = 30
# json5 is pure Python, about 20-40 KB/s here: a larger file strict JSON refuses is not
# read again with it (a 2 MB one took minutes; pm2's lenient .json files are small)
MAX_JSON5_BYTES = 32 << 10
PROCFILE_WEB_PORT = "5000"

_KINDS = (
    ((".yml", ".yaml"), "yaml"),
    ((".json",), "json"),
    ((".toml",), "toml"),
    ((".js", ".cjs", ".mjs"), "js"),
)
_PROCESS_TYPE = re.compile(r"[A-Za-z0-9_-]+")
_NODE_ERROR = re.compile(r"[A-Za-z]*Error\b")
# Loads the file, then prints {"config": what it exports, "env": what it set in process.env}.
_NODE_PROGRAM = """
const file = process.argv[1];
const before = { ...process.env };
async function load() {
  if (!file.endsWith('.mjs')) {
    try {
      const m = require(file);
      return m && m.__esModule && m.default ? m.default : m;
    } catch (e) {
      if (e.code !== 'ERR_REQUIRE_ESM') throw e;
    }
  }
  const m = await import(require('url').pathToFileURL(file).href);
  return m.default !== undefined ? m.default : { ...m };
}
load().then((config) => {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (before[k] !== v) env[k] = v;
  process.stdout.write(JSON.stringify({ config: config === undefined ? null : config, env }));
}, (e) => { console.error((e && e.stack) || String(e)); process.exit(1); });
"""


def file_kind(path: str) -> str:
    """`yaml`, `json`, `toml`, `js` or `procfile`, from the file name alone."""
    name = os.path.basename(path)
    lower = name.lower()
    if name == "Procfile" or lower.endswith(".procfile"):
        return "procfile"
    for suffixes, kind in _KINDS:
        if lower.endswith(suffixes):
            return kind
    raise ConfigError(
        path, "expected a .yml, .yaml, .json, .toml, .js, .cjs, .mjs file or a Procfile"
    )


class TooLarge(ValueError):
    """A file over its size limit."""


class NotAFile(ValueError):
    """A FIFO or a socket: reading one could wait for ever."""


def read_bounded(path: str, limit_bytes: int = MAX_FILE_BYTES) -> str:
    """A UTF-8 file of at most `limit_bytes` (OSError, UnicodeDecodeError, TooLarge or
    NotAFile). Never waits: opened non-blocking, a FIFO (whose open would wait for a
    writer) or a socket is refused, and a terminal with nothing typed fails (EAGAIN)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            raise NotAFile("expected a file, got a pipe or a socket")
        chunks: list[bytes] = []
        size = 0
        while size <= limit_bytes and (chunk := os.read(fd, limit_bytes + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit_bytes:
        raise TooLarge(f"expected a file of at most {limit_bytes} bytes, got more")
    return data.decode("utf-8")


def read_text(path: str, label: str) -> str:
    """The ecosystem file's text, or a ConfigError saying why not."""
    try:
        return read_bounded(path)
    except FileNotFoundError:
        raise ConfigError(label, "no such file") from None
    except OSError as exc:
        raise ConfigError(label, f"cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(label, f"expected UTF-8 text, got {exc.reason}") from None
    except (TooLarge, NotAFile) as exc:
        raise ConfigError(label, str(exc)) from None


# --- JSON, TOML, JS, Procfile -----------------------------------------------------------


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str, label: str, *, lenient: bool = True) -> object:
    """JSON; with `lenient`, what strict JSON refuses is read as JSON5 (as pm2 reads `.json`).

    When JSON5 refuses it too, the error is strict JSON's, which names the line.
    """
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        strict = ConfigError(label, f"line {exc.lineno}: invalid JSON: {exc.msg}")
    except (ValueError, RecursionError) as exc:
        strict = ConfigError(label, f"invalid JSON: {exc}")
    if not lenient:
        raise strict
    if len(text) > MAX_JSON5_BYTES:
        raise ConfigError(
            label,
            f"{strict.message} (comments, trailing commas and the like are read only in files "
            f"of at most {MAX_JSON5_BYTES // 1024} KiB)",
        )
    import json5  # only for files strict JSON refuses

    try:
        return json5.loads(text)
    except (ValueError, RecursionError):
        raise strict from None


# tomllib's time and memory grow with the square of the parts of a `dotted.key = value`
# line's key (10,000 parts: 600 MB; a table header's or an inline table's do not): such a
# key of more parts than this is refused before parsing. Only a line with that many dots
# is scanned, once, so the check stays linear in the file.
MAX_TOML_KEY_PARTS = 128


def _key_parts(line: str) -> int:
    """The parts of the key of a `key = value` line, dots inside quotes not counted."""
    dots, quote = 0, ""
    for ch in line.lstrip():
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == ".":
            dots += 1
        elif ch in "=[#":
            break
    return dots + 1


def _has_long_dotted_key(text: str) -> bool:
    return any(
        line.count(".") >= MAX_TOML_KEY_PARTS and _key_parts(line) > MAX_TOML_KEY_PARTS
        for line in text.splitlines()
    )


def parse_toml(text: str, label: str) -> object:
    """TOML (`[[apps]]` tables)."""
    if _has_long_dotted_key(text):
        raise ConfigError(
            label, f"invalid TOML: expected dotted keys of at most {MAX_TOML_KEY_PARTS} parts"
        )
    import tomllib  # here, not at the top: its import is 10 ms of the start-up path

    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError; an int over 4300 digits
        raise ConfigError(label, f"invalid TOML: {exc}") from None


def _node_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if _NODE_ERROR.match(line)]
    return (errors or lines or ["no output"])[0]


def parse_js(path: str, label: str, environ: Mapping[str, str]) -> tuple[object, dict[str, str]]:
    """What the file exports, and the variables it set in `process.env` (bounded by
    NODE_TIMEOUT_S)."""
    import subprocess  # here, not at the top: 5 ms that only a .js file needs

    node = shutil.which("node", path=environ.get("PATH", os.defpath))
    if node is None:
        name = os.path.basename(path)
        raise ConfigError(label, f"node is not installed; it is needed to read {name}")
    try:
        done = subprocess.run(
            [node, "-e", _NODE_PROGRAM, os.path.abspath(path)],
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
            cwd=os.path.dirname(os.path.abspath(path)),
            env=dict(environ),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(label, f"node did not finish reading it in {NODE_TIMEOUT_S} s") from None
    except OSError as exc:
        raise ConfigError(label, f"cannot run node: {exc.strerror or exc}") from None
    if done.returncode != 0:
        raise ConfigError(label, f"node could not load it: {_node_error(done.stderr)}")
    out = parse_json(done.stdout, label, lenient=False)
    if not isinstance(out, dict) or not isinstance(out.get("env"), dict):
        raise ConfigError(label, "node printed something other than the ecosystem")
    env = {str(k): str(v) for k, v in out["env"].items()}
    return out.get("config"), env


def parse_procfile(text: str, label: str, environ: Mapping[str, str]) -> list[object]:
    """Each `type: command` line as an app named `type`; `web` gets `PORT`."""
    apps: list[object] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, colon, command = stripped.partition(":")
        name, command = name.rstrip(), command.strip()
        if not colon or not command or not _PROCESS_TYPE.fullmatch(name):
            message = f"line {number}: expected 'type: command', got {stripped[:60]!r}"
            raise ConfigError(label, message)
        app: dict[str, object] = {"name": name, "script": command}
        if name == "web":
            app["env"] = {"PORT": environ.get("PORT") or PROCFILE_WEB_PORT}
        apps.append(app)
    if not apps:
        raise ConfigError(label, "expected at least one 'type: command' line, got none")
    return apps
