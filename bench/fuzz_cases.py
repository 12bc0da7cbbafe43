"""The adversarial uploads of bench/fuzz_uploads.py. Case i of seed S is rebuilt from (S, i) alone,
so a worker process regenerates its inputs instead of receiving them, and any failure is
reproduced with `make_case(S, i)`."""
from __future__ import annotations

import gzip
import io
import json
import random
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED_DIRS = [ROOT / "tests" / "fixtures" / "logs", ROOT / "tests" / "data"]


@dataclass
class Case:
    kind: str                     # family/variant, e.g. "mutate:truncate", "struct:depth"
    name: str                     # upload name (load_bytes) or the top path (load_paths)
    data: bytes = b""
    # load_paths cases: files to write under a temp folder, and symlinks (path, target) in it
    files: list = field(default_factory=list)
    links: list = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.data) + sum(len(b) for _, b in self.files)


def seed_files() -> list[tuple[str, bytes]]:
    out = []
    for d in SEED_DIRS:
        for p in sorted(d.rglob("*")):
            if p.is_file() and p.stat().st_size < 5_000_000:
                out.append((p.relative_to(d).as_posix(), p.read_bytes()))
    return out


_SEEDS: list | None = None


def _seeds() -> list[tuple[str, bytes]]:
    global _SEEDS
    if _SEEDS is None:
        _SEEDS = seed_files()
    return _SEEDS


# ----------------------------------------------------------------------------------------------
# mutations of real logs
_NUMBER = re.compile(rb"\d+(?:\.\d+)?(?:e[-+]?\d+)?")
_ODD_NUMBERS = [b"1e309", b"-1e309", b"nan", b"NaN", b"inf", b"-inf", b"Infinity", b"1e-400", b"9" * 400,
                b"-0", b"0x1f", b"1_000", b"1.2.3", b"\xd9\xa3", b"\xef\xbc\x91"]


def _truncate(r, d):
    return d[: r.randrange(len(d) + 1)]


def _flip(r, d):
    b = bytearray(d)
    for _ in range(r.randint(1, 12)):
        if b:
            b[r.randrange(len(b))] ^= 1 << r.randrange(8)
    return bytes(b)


def _nul(r, d):
    b = bytearray(d)
    for _ in range(r.randint(1, 5)):
        b[r.randrange(len(b) + 1):0] = b"\x00" * r.randint(1, 4)
    return bytes(b)


def _crlf(r, d):
    return d.replace(b"\n", r.choice([b"\r\n", b"\r", b"\n\r"]))


def _utf16(r, d):
    t = d.decode("utf-8", "replace")
    return t.encode(r.choice(["utf-16", "utf-16-le", "utf-16-be"])) if r.random() < 0.3 else t.encode("utf-16")


def _numbers(r, d):
    return _NUMBER.sub(lambda m: r.choice(_ODD_NUMBERS) if r.random() < 0.3 else m.group(0), d)


def _dup_steps(r, d):
    lines = d.split(b"\n")
    out = []
    for ln in lines:
        out.append(ln)
        if r.random() < 0.3:
            out.append(ln)
    if r.random() < 0.5:
        out = out + out  # a resumed run printing the same steps again
    return b"\n".join(out)


def _splice(r, d):
    other = r.choice(_seeds())[1]
    a, b = r.randrange(len(d) + 1), r.randrange(len(other) + 1)
    return d[:a] + other[b:]


def _cut_char(r, d):
    return d + "é".encode()[:1] if r.random() < 0.5 else d.rstrip(b"\n") + " acc=0.€".encode()[:-1]


def _grow(r, d):
    return d * r.randint(50, 3000)


MUTATIONS = {"truncate": _truncate, "flip": _flip, "nul": _nul, "crlf": _crlf, "utf16": _utf16,
             "numbers": _numbers, "dup_steps": _dup_steps, "splice": _splice, "cut_char": _cut_char,
             "grow": _grow}


def mutate(r: random.Random) -> Case:
    name, data = r.choice(_seeds())
    ops = r.sample(sorted(MUTATIONS), r.randint(1, 3))
    for op in ops:
        data = MUTATIONS[op](r, data) if data else data
    return Case("mutate:" + "+".join(ops), Path(name).name, data)


# ----------------------------------------------------------------------------------------------
# structural attacks
def _zip(members: dict, compress=zipfile.ZIP_DEFLATED, links: dict | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as z:
        for n, b in members.items():
            z.writestr(n, b)
        for n, target in (links or {}).items():
            info = zipfile.ZipInfo(n)
            info.external_attr = (0o120777 << 16)  # a unix symlink entry; its content is the target
            z.writestr(info, target)
    return buf.getvalue()


def _lying_zip(r) -> bytes:
    """A member whose header claims a small size but whose deflated stream expands far beyond it."""
    real = b"acc=0.5 " * r.randint(100_000, 2_000_000)
    blob = bytearray(_zip({"small.log": real}))
    # The central directory's uncompressed-size field: patch it down to 100 bytes.
    cd = blob.rfind(b"PK\x01\x02")
    blob[cd + 24:cd + 28] = (100).to_bytes(4, "little")
    lh = blob.find(b"PK\x03\x04")
    blob[lh + 22:lh + 26] = (100).to_bytes(4, "little")
    return bytes(blob)


def structural(r: random.Random) -> Case:
    kind = r.choice(["depth_json", "depth_jsonl", "depth_trainer_state", "width_csv", "width_jsonl",
                     "width_text", "series_text", "long_line", "long_token", "long_line_mixed", "many_lines",
                     "zip_members", "zip_symlink", "zip_traversal", "zip_bomb", "zip_lying", "zip_nested",
                     "zip_tracker", "folder_symlink", "gzip", "csv_ragged", "json_huge_number"])
    big = r.random() < 0.05  # a few real-size inputs; the rest stay small so 1,000 run in minutes
    if kind == "depth_json":
        d = r.choice([50, 65, 500, 999, 1001, 5000, 100_000])
        o, c = r.choice([("[", "]"), ('{"a":', "}")])
        return Case(f"struct:{kind}", "deep.json", (o * d + "1" + c * d).encode())
    if kind == "depth_jsonl":
        d = r.choice([70, 1000, 5000, 50_000])
        line = '{"step": 1, "x": ' + "[" * d + "]" * d + "}"
        return Case(f"struct:{kind}", "deep.jsonl", ("\n".join(['{"step": %d, "loss": 0.5}' % i for i in range(20)]
                                                              + [line] * r.randint(1, 5))).encode())
    if kind == "depth_trainer_state":
        d = r.choice([100, 3000])
        return Case(f"struct:{kind}", "trainer_state.json",
                    ('{"log_history": [{"step": 1, "loss": 0.5, "deep": ' + '{"a":' * d + "1" + "}" * d + "}]}").encode())
    if kind == "width_csv":
        w = r.choice([9_999, 10_001, 100_000, 200_000]) if big or r.random() < 0.5 else r.randint(2, 5000)
        header = ",".join(["step"] + [f"m{i}" for i in range(w - 1)])
        rows = [",".join([str(s)] + ["0.5"] * (w - 1)) for s in range(r.randint(1, 3))]
        return Case(f"struct:{kind}", "wide.csv", ("\n".join([header] + rows) + "\n").encode())
    if kind == "width_jsonl":
        w = r.choice([100, 5000, 20_000, 100_000])
        rec = json.dumps({"step": 1, **{f"k{i}": 0.5 for i in range(w)}})
        return Case(f"struct:{kind}", "wide.jsonl", (rec + "\n" + rec + "\n").encode())
    if kind == "width_text":
        w = r.choice([100, 10_000, 60_000])
        line = " ".join(f"k{i}={i % 7 / 7:.3f}" for i in range(w))
        return Case(f"struct:{kind}", "wide.log", (line + "\n").encode() * r.randint(1, 3))
    if kind == "series_text":
        n = r.choice([1000, 20_000, 200_000 if big else 50_000])
        return Case(f"struct:{kind}", "keys.log", "".join(f"step={i} key{i}=0.5\n" for i in range(n)).encode())
    if kind == "long_line":
        n = 6_000_000 if big else r.choice([100_000, 150_000, 500_000])
        return Case(f"struct:{kind}", "one_line.log", b"acc=0.5 " * n)
    if kind == "long_token":
        n = 48_000_000 if big else r.choice([2_000_000, 5_000_000])
        return Case(f"struct:{kind}", "token.log", b"acc=" + b"9" * n + b"\n" + b"epoch=1 acc=0.5\n" * 10)
    if kind == "long_line_mixed":
        good = b"".join(b"epoch=%d acc=0.%d\n" % (i, i % 10) for i in range(200))
        return Case(f"struct:{kind}", "mixed.log", good + b"loss=0.1 " * 300_000 + b"\n" + good)
    if kind == "many_lines":
        n = 5_000_000 if big else r.choice([100_000, 300_000])
        return Case(f"struct:{kind}", "many.log", b"acc=0.5\n" * n)
    if kind == "zip_members":
        n = r.choice([10, 1999, 2001, 8000])
        return Case(f"struct:{kind}", "many.zip", _zip({f"d/r{i}_seed1.log": b"epoch=1 acc=0.5\n" for i in range(n)}))
    if kind == "zip_symlink":
        return Case(f"struct:{kind}", "links.zip", _zip({"ok.log": b"epoch=1 acc=0.5\nepoch=2 acc=0.6\n"},
                                                        links={"passwd.log": b"/etc/passwd", "up.log": b"../../x",
                                                               "self.log": b"self.log"}))
    if kind == "zip_traversal":
        return Case(f"struct:{kind}", "evil.zip", _zip({"../../evil.log": b"epoch=1 acc=0.5\n",
                                                        "/abs.log": b"epoch=1 acc=0.5\n",
                                                        "C:/win.log": b"epoch=1 acc=0.5\n", "ok.log": b"epoch=1 acc=0.5\n"}))
    if kind == "zip_bomb":
        mb = r.choice([2, 20, 100, 600]) if big else r.choice([2, 20])
        return Case(f"struct:{kind}", "bomb.zip", _zip({"zeros.log": b"0" * (mb << 20)}))
    if kind == "zip_lying":
        return Case(f"struct:{kind}", "lying.zip", _lying_zip(r))
    if kind == "zip_nested":
        inner = _zip({"a.log": b"epoch=1 acc=0.5\n"})
        return Case(f"struct:{kind}", "nested.zip", _zip({"inner.zip": inner, "b.log": b"epoch=1 acc=0.5\n"}))
    if kind == "zip_tracker":
        members = {n: b for n, b in _seeds() if n.startswith(("mlruns/", "offline-run", "wandb/"))}
        for n in list(members):
            if r.random() < 0.3:
                members[n] = r.choice([b"", b"\xff\xfe\x00", b"{" * 5000, members[n][: len(members[n]) // 2]])
        return Case(f"struct:{kind}", "trackers.zip", _zip(members))
    if kind == "folder_symlink":
        return Case(f"struct:{kind}", "folder", files=[("a_seed1.log", b"epoch=1 acc=0.5\n"), ("sub/b.log", b"x=1\n")],
                    links=[("passwd.log", "/etc/passwd"), ("loop", "."), ("dangling.log", "/nonexistent/x.log"),
                           ("sub/up", "..")])
    if kind == "gzip":
        return Case(f"struct:{kind}", "run.log.gz", gzip.compress(b"epoch=1 acc=0.5\n" * 1000))
    if kind == "csv_ragged":
        rows = ["step,loss,acc"] + [",".join(["1"] * r.randint(1, 40)) for _ in range(r.randint(2, 200))]
        return Case(f"struct:{kind}", "ragged.csv", "\n".join(rows).encode())
    return Case(f"struct:{kind}", "huge.jsonl", b'{"step": 1, "loss": 1' + b"0" * r.choice([400, 5000, 100_000]) + b"}\n")


# ----------------------------------------------------------------------------------------------
# random bytes
_HEADS = [b"", b"PK\x03\x04", b"\x1f\x8b", b"\xff\xfe", b"\xef\xbb\xbf", b"{", b"[", b"epoch=1 ", b"\x00"]


def random_bytes(r: random.Random) -> Case:
    n = r.choice([0, 1, 7, 100, 4096, 65536])
    data = r.choice(_HEADS) + r.randbytes(n)
    name = r.choice(["r.log", "r.csv", "r.json", "r.jsonl", "r.zip", "events.out.tfevents.1.x", "r"])
    return Case("random", name, data)


def make_case(seed: int, i: int) -> Case:
    r = random.Random(f"{seed}:{i}")
    u = r.random()
    if u < 0.5:
        return mutate(r)
    if u < 0.85:
        return structural(r)
    return random_bytes(r)
