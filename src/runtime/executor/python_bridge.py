"""jinad's Python executor bridge: runs one user Executor class and talks to its pea.

Shipped inside the jinad binary and started as `python3 -u -c <this file> <config JSON>`.
Standard library only. Frames on the original stdout/stdin: a 4-byte big-endian length, then
UTF-8 JSON. The user's own prints go to stderr (the pea's log), never into the protocol.

    pea -> bridge  {"op": "call", "endpoint": "/index", "docs": [...], "parameters": {...}}
                   {"op": "close"}
    bridge -> pea  {"ok": true, "docs": [...]}  |  {"ok": false, "error": "<traceback>"}
    first frame    {"ok": true, "ready": true, "endpoints": [...]}  |  {"ok": false, "error": ...}

User code:

    from jina import Executor, requests      # `jinad` works as the module name too

    class MyEncoder(Executor):
        def __init__(self, dim=64, **kwargs):
            super().__init__(**kwargs)
            self.dim = dim                    # `with:` arguments arrive as keyword arguments

        @requests(on='/index')                # or on=['/index', '/search']; no `on`: every endpoint
        def encode(self, docs, parameters, **kwargs):
            for d in docs:                    # dicts with attribute access: d.text, d.tags, d.embedding
                d.embedding = [float(len(d.text))]

        def close(self):                      # called when the pea stops: persist in self.workspace
            pass
"""
import copy
import importlib.util
import inspect
import json
import os
import signal
import struct
import sys
import threading
import time
import traceback
import types

CONFIG = json.loads(sys.argv[1])

# The pea decides when this process ends (close, or end of stdin): a Ctrl-C meant for the flow
# must not kill the executor before it could persist.
signal.signal(signal.SIGINT, signal.SIG_IGN)


def _watch_parent(parent):
    # If the pea's process is gone, the main loop sees the end of stdin and closes the executor;
    # an executor stuck in a call never gets there, so it is ended here after a grace period.
    while os.getppid() == parent:
        time.sleep(1)
    time.sleep(10)
    os._exit(3)


threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()

_DEFAULTS = {
    "id": "", "text": "", "uri": "", "mime_type": "", "tags": {}, "embedding": [], "blob": "",
    "chunks": [], "matches": [], "scores": {},
}


class Document(dict):
    """A document as a dict (the JSON form of jinad's Document) with attribute access."""

    def __getattr__(self, key):
        if key in self:
            return self[key]
        if key in _DEFAULTS:
            self[key] = copy.copy(_DEFAULTS[key])
            return self[key]
        raise AttributeError(key)

    def __setattr__(self, key, value):
        self[key] = value


def _wrap(doc):
    doc = Document(doc)
    for key in ("chunks", "matches"):
        if key in doc:
            doc[key] = [_wrap(d) for d in doc[key]]
    return doc


class Executor:
    """Base class: `self.workspace` (a directory of its own), `self.runtime_args`, `close()`."""

    def __init__(self, **kwargs):
        pass

    @property
    def workspace(self):
        return CONFIG["workspace"]

    @property
    def runtime_args(self):
        return types.SimpleNamespace(**CONFIG["runtime"])

    def close(self):
        pass


def requests(func=None, *, on=None):
    """Marks a method as the handler of `on` (a string or a list); without `on`, of every endpoint."""

    def mark(f):
        f._jinad_on = [on] if isinstance(on, str) else list(on) if on else ["/default"]
        return f

    return mark(func) if callable(func) else mark


_module = types.ModuleType("jina")
_module.Executor, _module.requests, _module.Document = Executor, requests, Document
sys.modules.setdefault("jina", _module)
sys.modules["jinad"] = _module

_out = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)  # print() in user code goes to stderr
sys.stdout = os.fdopen(1, "w", buffering=1)
_in = sys.stdin.buffer


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()  # numpy arrays and scalars
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def send(obj):
    body = json.dumps(obj, default=_jsonable).encode()
    _out.write(struct.pack(">I", len(body)) + body)
    _out.flush()


def receive():
    head = _in.read(4)
    if len(head) < 4:
        return None
    (n,) = struct.unpack(">I", head)
    return json.loads(_in.read(n))


def load():
    cls = None
    for path in CONFIG["modules"]:
        directory = os.path.dirname(os.path.abspath(path))
        if directory not in sys.path:
            sys.path.insert(0, directory)
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        cls = getattr(module, CONFIG["class"], cls)
    if cls is None:
        raise LookupError(f"class {CONFIG['class']} is not defined in {', '.join(CONFIG['modules'])}")
    os.makedirs(CONFIG["workspace"], exist_ok=True)
    executor = cls(**CONFIG["with"])
    handlers = {}
    for klass in reversed(type(executor).__mro__):
        for attr, fn in vars(klass).items():
            for endpoint in getattr(fn, "_jinad_on", []):
                handlers[endpoint] = getattr(executor, attr)
    return executor, handlers


def call(handler, docs, parameters, endpoint):
    offered = {"docs": docs, "parameters": parameters, "endpoint": endpoint}
    params = inspect.signature(handler).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = offered
    else:
        kwargs = {k: v for k, v in offered.items() if k in params}
    result = handler(**kwargs)
    return docs if result is None else [_wrap(d) if isinstance(d, dict) else d for d in result]


def main():
    try:
        executor, handlers = load()
    except BaseException:
        send({"ok": False, "error": traceback.format_exc()})
        return
    send({"ok": True, "ready": True, "endpoints": sorted(handlers)})
    while True:
        msg = receive()
        if msg is None or msg.get("op") == "close":
            try:
                executor.close()
                reply = {"ok": True}
            except BaseException:
                reply = {"ok": False, "error": traceback.format_exc()}
            if msg is not None:
                send(reply)
            return
        try:
            handler = handlers.get(msg["endpoint"]) or handlers.get("/default")
            docs = [_wrap(d) for d in msg.get("docs", [])]
            if handler is not None:
                docs = call(handler, docs, msg.get("parameters", {}), msg["endpoint"])
            send({"ok": True, "docs": docs})
        except BaseException:
            send({"ok": False, "error": traceback.format_exc()})


main()
