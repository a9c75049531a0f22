"""A pool of long-lived fuzz workers (subprocesses running tools.fuzz.worker).

Cases are sent in batches; a worker that dies is a crash of the case it had started
(recorded with the tail of its stderr), a case that outlives the timeout is a hang (its
worker is killed); either way a fresh worker takes the rest of the batch."""
import collections
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Worker:
    def __init__(self, seed, workdir, n):
        self.dir = os.path.join(workdir, f"w{n}")
        os.makedirs(self.dir, exist_ok=True)
        self.err_path = os.path.join(self.dir, "stderr.txt")
        self.err = open(self.err_path, "wb")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.fuzz", "--worker", "--seed", str(seed), "--tmp", self.dir],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, env=env, cwd=ROOT,
            start_new_session=True)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.buf = b""
        self.ready = False
        self.batch = collections.deque()   # sent, not finished
        self.current = None                 # the started case
        self.header = {}                    # its index, target and arguments
        self.history = collections.deque(maxlen=8)   # the cases it finished
        self.t0 = time.monotonic()

    def send(self, indices):
        self.batch.extend(indices)
        self.proc.stdin.write("".join(f"{i}\n" for i in indices).encode())
        self.proc.stdin.flush()

    def lines(self):
        """The complete lines read so far; None at EOF (the worker died)."""
        try:
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        self.buf += chunk
        *done, self.buf = self.buf.split(b"\n")
        return [d.decode() for d in done]

    def stderr_tail(self, n=12):
        self.err.flush()
        with open(self.err_path, "rb") as f:
            text = f.read()[-4000:].decode(errors="replace")
        return "\n".join(text.strip().splitlines()[-n:])

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.err.close()


def run(seed, indices, *, workers=2, batch=25, timeout=20.0, startup=300.0, on_result=None):
    """Run the cases; returns the list of result dicts (crashes and hangs included)."""
    todo = collections.deque(indices)
    results = []
    sel = selectors.DefaultSelector()
    workdir = tempfile.mkdtemp(prefix="tc-fuzz-")
    started = 0

    def spawn():
        nonlocal started
        w = Worker(seed, workdir, started)
        started += 1
        sel.register(w.proc.stdout, selectors.EVENT_READ, w)
        return w

    def refill(w):
        if w.ready and len(w.batch) < batch // 2 and todo:
            w.send([todo.popleft() for _ in range(min(batch, len(todo)))])

    def finish(w, res):
        results.append(res)
        if on_result:
            on_result(res)

    def replace(w, res):
        """w's current case crashed or hung: record it, requeue the rest of its batch."""
        sel.unregister(w.proc.stdout)
        w.kill()
        rest = [i for i in w.batch if i != res["index"]]
        todo.extendleft(reversed(rest))
        finish(w, res)
        pool.remove(w)
        if todo or any(x.batch for x in pool):
            pool.append(spawn())

    pool = [spawn() for _ in range(min(workers, max(len(todo), 1)))]
    try:
        while pool and (todo or any(w.batch for w in pool) or not all(w.ready for w in pool)):
            for key, _ in sel.select(timeout=0.5):
                w = key.data
                lines = w.lines()
                if lines is None:
                    code = w.proc.wait()
                    if w.current is None and not w.ready:
                        raise RuntimeError(f"a fuzz worker failed to start (exit {code}):\n{w.stderr_tail(30)}")
                    why = f"signal {-code}" if code < 0 else f"exit status {code}"
                    index = w.current if w.current is not None else w.batch[0]
                    replace(w, {**w.header, "index": index, "result": "crash", "error": why,
                                "stderr": w.stderr_tail(), "history": list(w.history)})
                    continue
                for line in lines:
                    if line == "ready":
                        w.ready = True
                    elif line.startswith("start "):
                        w.header = json.loads(line[6:])
                        w.current, w.t0 = w.header["index"], time.monotonic()
                    else:
                        res = json.loads(line)
                        w.history.append(w.batch.popleft())
                        w.current, w.header = None, {}
                        finish(w, res)
                refill(w)
            now = time.monotonic()
            for w in list(pool):
                if not w.ready and now - w.t0 > startup:
                    raise RuntimeError(f"a fuzz worker did not start in {startup:.0f} s:\n{w.stderr_tail(30)}")
                if w.current is not None and now - w.t0 > timeout:
                    replace(w, {**w.header, "result": "hang",
                                "error": f"no result after {timeout:.0f} s", "stderr": w.stderr_tail()})
                else:
                    refill(w)
    finally:
        for w in pool:
            w.proc.stdin.close()
            w.kill()
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    return results
