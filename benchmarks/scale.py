"""WebSeg at growing collection sizes, against the sequential loop research code runs (not a test).

For each N, the collection is `--collection` repeated N times with fresh ids (the same media,
absolute uris). In the same run, two ways over it:
- webseg: the real `webseg pseudo-label` command in a subprocess (its own local Ray);
- baseline: one process calling the same stage cores (decode_batch, CamStage, RefineStage,
  write_batch: plain Python classes, no Ray) item by item in a plain loop.
Measured for each: wall seconds, items/s and frames/s (manifest rows), the machine's CPU
utilisation over the run (/proc/stat) and the run's own (CPU seconds of its process tree over
wall x cores), peak memory (summed RSS of the process tree: the CLI,
the Ray processes it started, their workers; sampled every SAMPLE_S; RSS counts the object store's
shared pages once per process that maps them, so the summed PSS, which shares them out, is
reported beside it), and for webseg the per-stage
seconds from run.json. Prints a table and writes everything as JSON.

A 2-core machine's speed drifts by up to ~12 % over a 40-minute run (other tenants, thermal), so
by default (`--order split`) the loop runs over the first half of the items before webseg and over
the second half after it, and its figures are the two halves summed: a linear drift then weighs
on both ways alike. `--order webseg-first` runs the whole loop after webseg (sessions up to 19).
`--two-loops` also runs two loops at once, one per half of the items and no Ray: what this machine
gives two plain processes (they share caches and memory bandwidth, and the CPU may clock lower
with both cores busy), the ceiling any parallel runner here can reach.

    .venv/bin/python benchmarks/scale.py --model model/classifier.pt --n 1 4 10 \
        [--collection ../shared/data/dev] [--json-out scale.json] [--no-baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
# Each sample reads every process's /proc stat and the tree's smaps_rollup: every 0.5 s that took
# about 12 % of a core (session 17), charged to the run it measures, and more to WebSeg's twenty
# processes than to the loop's one, which leaves the second core idle anyway.
SAMPLE_S = 2.0


def repeated_collection(source: Path, n: int, root: Path, first: int = 0) -> Path:
    """`source` (its first `first` rows; 0 = all) repeated n times, copy k > 0 with ids prefixed
    `r<k>_` (copy 0 keeps the source's ids, so its labels score against the source's gt/); media
    referenced by absolute uri, not copied."""
    lines = (source / "manifest.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()][: first or None]
    root.mkdir(parents=True, exist_ok=True)
    with (root / "manifest.jsonl").open("w") as out:
        for copy in range(n):
            for row in rows:
                uri = row["uri"] if "://" in row["uri"] else str((source / row["uri"]).resolve())
                item_id = f"r{copy}_{row['id']}" if copy else row["id"]
                out.write(json.dumps({**row, "id": item_id, "uri": uri}) + "\n")
    if (source / "classes.json").exists():
        (root / "classes.json").write_text((source / "classes.json").read_text())
    return root


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def pss_bytes(pid: int) -> int:
    """Proportional set size of one process (shared pages divided among their mappers); 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def process_name(pid: int) -> str:
    """A process's title: Ray workers set theirs (ray::MapWorker(MapBatches(CamStage)), ...),
    so the run's CPU can be split by role; other processes by their program's name."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    first = args[0].decode(errors="replace") if args else ""
    if first.startswith("ray::"):
        return first.split(" ")[0][:60]
    program = Path(first).name
    if program.startswith("python"):
        rest = [a.decode(errors="replace") for a in args[1:] if a]
        while rest and rest[0].startswith("-") and rest[0] != "-m":
            rest = rest[1:]
        if rest:
            script = rest[1] if rest[0] == "-m" and len(rest) > 1 else Path(rest[0]).name
            return f"{program} {script}".splitlines()[0][:60]
    return program or "?"


def _specific(name: str) -> bool:
    """A Ray worker's role title (ray::MapWorker(...), ray::RayTrainWorker), not its start-up
    name (python setup_worker.py / default_worker.py) or ray::IDLE."""
    return name.startswith("ray::") and name != "ray::IDLE"


def tree_usage(root_pid: int) -> tuple[int, dict[int, float]]:
    """(summed resident bytes, {pid: CPU seconds so far}) of root_pid and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            pid = int(entry.name)
            rss[pid] = int((entry / "statm").read_text().split()[1]) * PAGE
            # utime + stime only: a child's time also moves into its parent's cutime when it is
            # reaped (the driver reaps Ray's processes at shutdown), which would count it twice
            cpu[pid] = sum(int(v) for v in fields[11:13]) / TICKS
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(int(fields[1]), []).append(pid)
    total, tree, todo = 0, {}, [root_pid]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        tree[pid] = cpu.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total, tree


class Sampler:
    """Peak tree RSS and CPU seconds of a pid's process tree, sampled in a thread, and machine CPU
    use between start and stop. The tree's CPU seconds are each process's last sample (a process
    that lives under SAMPLE_S may be missed), so they are a lower bound of the run's own CPU use;
    the machine's share also counts other work on the machine."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.peak_pss, self._stop = pid, 0, 0, threading.Event()
        self._cpu_seen: dict[int, float] = {}
        self._names: dict[int, str] = {}
        self.peak_pss_by_process: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._cpu = cpu_times()
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            rss, cpu = tree_usage(self.pid)
            self.peak = max(self.peak, rss)
            by_role: dict[str, int] = {}
            for pid, seconds in cpu.items():
                self._cpu_seen[pid] = max(seconds, self._cpu_seen.get(pid, 0.0))
                if not _specific(self._names.get(pid, "")):
                    self._names[pid] = process_name(pid)  # a Ray worker titles itself late
                role = self._names[pid]
                by_role[role] = by_role.get(role, 0) + pss_bytes(pid)
            self.peak_pss = max(self.peak_pss, sum(by_role.values()))
            for role, pss in by_role.items():
                self.peak_pss_by_process[role] = max(pss, self.peak_pss_by_process.get(role, 0))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        busy, total = cpu_times()
        self.cpu_busy = (busy - self._cpu[0]) / max(1, total - self._cpu[1])
        wall = time.perf_counter() - self._started
        self.tree_cpu_s = sum(self._cpu_seen.values())
        self.cpu_by_process: dict[str, float] = {}
        for pid, seconds in self._cpu_seen.items():
            name = self._names.get(pid, "?")
            self.cpu_by_process[name] = round(self.cpu_by_process.get(name, 0.0) + seconds, 1)
        self.tree_busy = self.tree_cpu_s / max(1e-9, wall * (os.cpu_count() or 1))


def _timed(command: list[str], what: str, env: dict | None = None) -> tuple[float, str, Sampler]:
    """Run command, sampling its process tree; (wall seconds, stdout, sampler). Exit on failure."""
    started = time.perf_counter()
    job = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    with Sampler(job.pid) as sampler:
        stdout, err = job.communicate()
    wall = time.perf_counter() - started
    if job.returncode != 0:
        raise SystemExit(f"{what} failed ({job.returncode}): {err.decode()[-2000:]}")
    return wall, stdout.decode(), sampler


def run_webseg(collection: Path, model: str, out: Path, config: str | None) -> dict:
    command = [sys.executable, "-m", "pipeline.cli", "--quiet", "pseudo-label",
               "--collection", str(collection), "--model", model, "--out", str(out)]  # fmt: skip
    if config:
        command += ["--config", config]
    wall, _, sampler = _timed(command, "webseg pseudo-label")
    info = json.loads((out / "run.json").read_text())
    rows = info["counts"]["rows"]
    return _figures(wall, info["items"], rows, sampler) | {"stage_seconds": info["stage_seconds"]}


def run_baseline(
    collection: Path, model: str, out: Path, config: str | None, threads: int, part: str = "all"
) -> dict:
    """The loop over the collection's items, or over one half of them (part "first"/"second")."""
    command = [sys.executable, __file__, "--baseline-worker", str(collection), model, str(out),
               config or "", str(threads), part]  # fmt: skip
    # the malloc settings webseg gives its Ray workers, so that both ways allocate alike; imported
    # here, in the parent: the loop's process runs this file and must not pay for loading Ray
    sys.path.insert(0, str(REPO))
    from pipeline.cluster.runtime import WORKER_MALLOC_ENV

    env = {
        **WORKER_MALLOC_ENV,
        **os.environ,
        **({"OMP_NUM_THREADS": str(threads)} if threads else {}),
    }
    wall, stdout, sampler = _timed(command, "baseline", env)
    counts = json.loads(stdout.strip().splitlines()[-1])
    figures = _figures(wall, counts["items"], counts["rows"], sampler)
    return figures | {"stage_seconds": counts["stage_seconds"]}


def run_two_loops(collection: Path, model: str, out: Path, config: str | None) -> dict:
    """Two one-core loops at once, one per half of the items, no Ray: what the machine gives two
    plain processes, the ceiling of any parallel runner here (shared caches and memory bandwidth,
    and a CPU that may clock lower with both cores busy). Wall is until both have finished."""
    results: dict[str, dict] = {}

    def one(part: str) -> None:
        results[part] = run_baseline(collection, model, out, config, 1, part)

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(part,)) for part in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if len(results) != 2:
        raise SystemExit("one of the two loops failed")
    return merged(results["first"], results["second"], wall)


def _figures(wall: float, items: int, rows: int, sampler: Sampler) -> dict:
    return {
        "wall_s": round(wall, 1),
        "items": items,
        "rows": rows,
        "items_per_s": round(items / wall, 3),
        "frames_per_s": round(rows / wall, 3),
        "cpu_busy_pct": round(100 * sampler.cpu_busy, 1),
        "own_cpu_s": round(sampler.tree_cpu_s, 1),
        "own_cpu_busy_pct": round(100 * sampler.tree_busy, 1),
        "peak_rss_mib": round(sampler.peak / 2**20, 1),
        "peak_pss_mib": round(sampler.peak_pss / 2**20, 1),
        "cpu_s_by_process": dict(sorted(sampler.cpu_by_process.items(), key=lambda kv: -kv[1])),
        # each role's own peak (its processes summed per sample): the peaks need not coincide
        "peak_pss_mib_by_process": {
            name: round(pss / 2**20, 1)
            for name, pss in sorted(sampler.peak_pss_by_process.items(), key=lambda kv: -kv[1])
        },
    }


def merged(first: dict, second: dict, wall: float | None = None) -> dict:
    """Figures of two runs of the loop over the two halves of the items -> figures of the whole:
    items, CPU seconds and stage times summed, busy shares weighted by each run's wall, peaks the
    larger. wall: the whole's wall seconds, the two walls summed unless given (runs at once)."""
    wall = first["wall_s"] + second["wall_s"] if wall is None else wall
    out = {
        "wall_s": round(wall, 1),
        "items": first["items"] + second["items"],
        "rows": first["rows"] + second["rows"],
        "own_cpu_s": round(first["own_cpu_s"] + second["own_cpu_s"], 1),
        "peak_rss_mib": max(first["peak_rss_mib"], second["peak_rss_mib"]),
        "peak_pss_mib": max(first["peak_pss_mib"], second["peak_pss_mib"]),
        "halves_wall_s": [first["wall_s"], second["wall_s"]],
    }
    out["items_per_s"] = round(out["items"] / wall, 3)
    out["frames_per_s"] = round(out["rows"] / wall, 3)
    runs_wall = first["wall_s"] + second["wall_s"]
    for key in ("cpu_busy_pct", "own_cpu_busy_pct"):
        share = first[key] * first["wall_s"] + second[key] * second["wall_s"]
        out[key] = round(share / runs_wall, 1)
    for key in ("cpu_s_by_process", "stage_seconds", "peak_pss_mib_by_process"):
        names = {*first[key], *second[key]}
        pick = max if key.startswith("peak") else lambda a, b: round(a + b, 2)
        out[key] = {n: pick(first[key].get(n, 0), second[key].get(n, 0)) for n in names}
    return out


def half(items: list, part: str) -> list:
    """All items, or the first / second half of them (the loop's two runs around webseg)."""
    middle = len(items) // 2
    return {"all": items, "first": items[:middle], "second": items[middle:]}[part]


def baseline_worker(
    collection: str, model: str, out: str, config: str, threads: str, part: str = "all"
) -> None:
    """The research-code loop: every item through decode -> CAM -> refine -> write, one by one,
    on `threads` torch / OpenCV threads (0 = their defaults: every core for torch's convolutions);
    part: all items, or the "first" / "second" half of them."""
    sys.path.insert(0, str(REPO))
    if int(threads):
        import cv2
        import torch

        torch.set_num_threads(int(threads))
        cv2.setNumThreads(int(threads))
    from pipeline.cluster.io_stages import decode_batch, item_row, write_batch
    from pipeline.cluster.stages import CamStage, RefineStage
    from pipeline.collection import read_collection
    from pipeline.rows import to_batch
    from pipeline.settings import load_settings

    cfg = load_settings(config or None).pseudo_label
    cam_stage = CamStage(None if model == "none" else model, cfg.cam)
    refine_stage = RefineStage(cfg)
    items, rows = half(read_collection(collection, cfg.collection).items, part), 0
    seconds = dict.fromkeys(("decode", "cam", "refine", "write"), 0.0)
    for item in items:
        started = time.perf_counter()
        decoded = decode_batch(to_batch([item_row(item)]), cfg.decode)
        seconds["decode"] += time.perf_counter() - started
        started = time.perf_counter()
        with_cams = cam_stage(decoded)
        seconds["cam"] += time.perf_counter() - started
        started = time.perf_counter()
        batch = refine_stage(with_cams)
        seconds["refine"] += time.perf_counter() - started
        started = time.perf_counter()
        rows += len(write_batch(batch, out, cfg.output.save_cams)["id"])
        seconds["write"] += time.perf_counter() - started
    stage_seconds = {k: round(v, 2) for k, v in seconds.items()}
    Path(out, f"baseline_stage_seconds_{part}.json").write_text(json.dumps(stage_seconds))
    print(json.dumps({"items": len(items), "rows": rows, "stage_seconds": stage_seconds}))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default = os.environ.get("WSSS_SAMPLE_DIR", str(REPO.parent / "shared" / "data" / "dev"))
    ap.add_argument("--collection", default=default)
    ap.add_argument("--model", required=True, help="classifier checkpoint, or 'none'")
    ap.add_argument("--n", type=int, nargs="+", default=[1, 4, 10], help="repetitions")
    ap.add_argument("--config", help="a webseg config YAML for both ways")
    ap.add_argument("--items", type=int, default=0, help="only the first K manifest rows (0 = all)")
    ap.add_argument("--no-baseline", action="store_true", help="webseg only")
    ap.add_argument(
        "--baseline-threads", type=int, default=1,
        help="torch/OpenCV threads of the loop: 1 = one core, the plain loop (default); "
        "0 = torch's default (its convolutions on every core)",
    )  # fmt: skip
    ap.add_argument(
        "--order", choices=("split", "webseg-first"), default="split",
        help="split: the loop's first half of the items before webseg, its second half after "
        "(a drifting machine weighs on both ways alike); webseg-first: the whole loop after",
    )  # fmt: skip
    ap.add_argument(
        "--two-loops", action="store_true",
        help="also run two one-core loops at once, one per half of the items (no Ray): the "
        "machine's own ceiling for two processes, against which webseg's ratio is read",
    )  # fmt: skip
    ap.add_argument("--json-out", default="scale.json")
    ap.add_argument("--work-dir", help="keep collections and label sets here (default: a temp dir)")
    args = ap.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="webseg-scale-") as scratch:
        tmp = args.work_dir or scratch
        for n in args.n:
            collection = repeated_collection(
                Path(args.collection), n, Path(tmp, f"n{n}"), args.items
            )
            loop = partial(run_baseline, collection, args.model, Path(tmp, f"b{n}"), args.config,
                           args.baseline_threads)  # fmt: skip
            split = not args.no_baseline and args.order == "split"
            before = loop("first") if split else None
            row = {"n": n, "webseg": run_webseg(collection, args.model, Path(tmp, f"w{n}"),
                                                args.config)}  # fmt: skip
            if not args.no_baseline:
                row["baseline"] = merged(before, loop("second")) if split else loop("all")
                row["ratio"] = round(row["baseline"]["wall_s"] / row["webseg"]["wall_s"], 2)
            if args.two_loops:
                pair = run_two_loops(collection, args.model, Path(tmp, f"p{n}"), args.config)
                row["two_loops"] = pair
                if "baseline" in row:
                    row["two_loops_ratio"] = round(row["baseline"]["wall_s"] / pair["wall_s"], 2)
            results.append(row)
            print(json.dumps(row), flush=True)
    summary = {"cpus": os.cpu_count(), "model": args.model, "order": args.order,
               "baseline_threads": args.baseline_threads, "runs": results}  # fmt: skip
    Path(args.json_out).write_text(json.dumps(summary, indent=2))
    print("| N | items | webseg items/s | baseline items/s | ratio | CPU busy % (machine / "
          "webseg's own) | peak RSS / PSS MiB |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for r in results:
        w, b = r["webseg"], r.get("baseline", {})
        print(f"| {r['n']} | {w['items']} | {w['items_per_s']} | {b.get('items_per_s', '-')} "
              f"| {r.get('ratio', '-')} | {w['cpu_busy_pct']} / {w['own_cpu_busy_pct']} "
              f"| {w['peak_rss_mib']} / {w['peak_pss_mib']} |")  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline-worker":
        baseline_worker(*sys.argv[2:8])
    else:
        main()
