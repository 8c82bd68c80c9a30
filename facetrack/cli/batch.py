"""Many inputs at once: ``facetrack VIDEO... --out-dir DIR [--jobs N] [--shard I/N]``.

A folder of recordings (videos and no images) stands for its videos (:func:`expand_folders`); a
folder of images is one input, fitted again whole unless its CSV is complete (images take no
``--resume``), and never over a CSV made with another model or options.

Each input is tracked into ``DIR/<its name>.csv`` by its own worker process, at most ``--jobs``
at a time: ``python -m facetrack.cli.track --job JSON``, the batch's
:class:`~facetrack.cli.job.TrackJob` for that input (its ``--out``, ``--resume`` but for
images, one runtime thread each when ``--jobs`` is above 1), run by the same code as a user's
``facetrack INPUT``. This module does not import :mod:`facetrack.cli.track`: the records it
compares come from the ``record_of`` the track job passes in. A separate process per input means a crash in one (a decoder
segfault) costs that input only; the others go on. Inputs whose CSV is complete for the same
input, model and options (the record beside it, :class:`~facetrack.io.output.RunRecord`)
are skipped; a partial one is resumed. Each input ends with one line; the exit code is 0 when
every input succeeded, 1 when any failed, 130 when interrupted.

``--shard I/N`` keeps every N-th input of the name-sorted list, starting at the I-th (1-based),
so that the tasks of a scheduler's job array (Slurm ``--array=1-N``) split a corpus without a
coordinator: the same command line on every task, a different ``I``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from facetrack.cli.job import CliError, TrackJob, covers, shard_arg, to_frame  # noqa: F401 - shard_arg: its old home

#: ``(job, input, start, end, images) -> RunRecord``: the record an input's run would write
RecordOf = Callable[[TrackJob, str, int, "int | None", bool], Any]


def shard(inputs: list[str], i: int, n: int) -> list[str]:
    """The ``i``-th (1-based) of ``n`` shares of ``inputs``: sorted by name (bytes), every
    ``n``-th from position ``i - 1``. The shares of ``1..n`` are disjoint and cover ``inputs``."""
    ordered = sorted(dict.fromkeys(inputs), key=os.fsencode)
    return ordered[i - 1::n]


def expand_folders(inputs: list[str]) -> list[str]:
    """A folder of recordings (no images, at least one video: :func:`facetrack.io.video.videos_in`)
    becomes its videos, each tracked into its own CSV; any other input (a folder of images
    included) stays as it is."""
    from facetrack.io.images import images_in
    from facetrack.io.video import videos_in

    out: list[str] = []
    for i in inputs:
        videos = videos_in(i)
        if videos and not images_in(i):
            out += [str(v) for v in videos]
        else:
            out.append(i)
    return out


def output_for(input_path: str, out_dir: Path, ext: str) -> Path:
    """``DIR/<name>.csv``: the file name without its suffix (a folder: its name)."""
    p = Path(input_path)
    stem = p.resolve().name if p.is_dir() else p.stem
    return out_dir / (stem + ext)


@dataclass(frozen=True)
class Job:
    """One input, its output and the worker's result (``rc``: exit code; ``line``: its last line)."""

    input: str
    out: Path
    rc: int | None = None
    line: str = ""


def _records(args: TrackJob, job: Job, record_of: RecordOf) -> tuple[Any, Any]:
    """``(record of job.out or None, record this run would write)``; ``(None, None)`` when
    either cannot be made (the worker says what is wrong)."""
    from facetrack.io.images import is_image_input
    from facetrack.io.output import OutputFileError, read_record
    from facetrack.io.video import VideoError, VideoFile

    try:
        old = read_record(job.out)
        if old is None or not job.out.exists():
            return None, None
        fps = 30.0
        if any(v is not None and not v.endswith("f") for v in (args.start, args.end)):  # seconds need the video's rate
            with VideoFile(job.input) as v:
                fps = v.fps
        start, end = to_frame(args.start, fps) or 0, to_frame(args.end, fps)
        images = is_image_input(job.input)
        return old, record_of(args, job.input, start, end, images)
    except (OutputFileError, VideoError, OSError):
        return None, None


def _existing(args: TrackJob, job: Job, record_of: RecordOf) -> tuple[bool, str | None]:
    """What ``job.out`` already holds: ``(complete for this input, model and options, why it
    must not be overwritten)``. The second is for image inputs (fitted again whole, never
    resumed) whose output was made with another model or options; a video's worker refuses the
    same itself (``--resume``)."""
    from facetrack.io.images import is_image_input

    old, new = _records(args, job, record_of)
    if old is None or new is None:
        return False, None
    diffs = old.differences(new)
    if old.complete and not diffs and covers(old, new.end) and old.mismatch(job.out) is None:
        return True, None  # marked complete and still the file its record describes
    if diffs and is_image_input(job.input):
        return False, f"made from another run ({'; '.join(diffs)}); not overwriting: remove it or choose another --out-dir"
    return False, None


def worker_command(args: TrackJob, job: Job, threads: int | None) -> list[str]:
    """The command of one input's worker: the batch's job for that input as JSON (its ``out``,
    ``--resume`` but for images, which are fitted again whole when not complete: ``_existing``)."""
    from facetrack.io.images import is_image_input

    one = args.for_input(job.input, job.out, threads, resume=not is_image_input(job.input))
    return [sys.executable, "-m", "facetrack.cli.track", "--job", one.to_json()]


def run_batch(args: TrackJob, record_of: RecordOf, check_models: Callable[[TrackJob], Any]) -> int:
    """Track every input of ``args.video`` into ``args.out_dir``; the exit code. ``record_of``:
    the record an input's run would write; ``check_models``: raises :class:`CliError` for a
    missing model (once, not once per input)."""
    from facetrack.io.video import display_name

    inputs = list(args.video or [])
    if args.camera is not None:
        raise CliError("usage: --camera takes no other inputs and no --out-dir")
    if args.out_dir is None:
        raise CliError("usage: several inputs write one CSV each: give --out-dir DIR (not --out)")
    if args.out:
        raise CliError("usage: give --out-dir DIR or --out FILE, not both")
    if args.overlay:
        raise CliError("usage: --overlay takes one input (not --out-dir)")
    if not inputs:
        raise CliError("usage: give the inputs to track into --out-dir")
    inputs = expand_folders(inputs)
    if args.shard is not None:
        inputs = shard(inputs, *args.shard)
    out_dir = Path(args.out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"{display_name(out_dir)}: cannot be created ({e.strerror or e})") from None
    ext = ".csv" if args.format == "csv" else ".jsonl"
    jobs = [Job(i, output_for(i, out_dir, ext)) for i in dict.fromkeys(inputs)]
    seen: dict[Path, str] = {}
    for j in jobs:
        if j.out in seen:
            raise CliError(f"{display_name(j.input)}: same output name as {display_name(seen[j.out])} "
                           f"({display_name(j.out)}); rename one of them")
        seen[j.out] = j.input
    check_models(args)  # a missing model fails once, here, not once per input
    threads = 1 if args.jobs > 1 else args.threads
    n = len(jobs)
    todo: list[tuple[int, Job]] = []
    refused: list[tuple[int, Job, str]] = []
    skipped = 0
    for k, j in enumerate(jobs, 1):
        complete, why = _existing(args, j, record_of)
        if complete:
            skipped += 1
            if not args.quiet:
                print(f"facetrack: [{k}/{n}] {display_name(j.input)}: already complete -> {display_name(j.out)}", file=sys.stderr)
        elif why is not None:
            refused.append((k, j, why))
        else:
            todo.append((k, j))
    failed = tracked = 0
    for k, j, why in refused:
        failed += 1
        print(f"facetrack: [{k}/{n}] {display_name(j.input)}: FAILED: {display_name(j.out)}: {why}", file=sys.stderr)
    stopped_by: int | None = None
    # worker output goes to temporary files, read at its end: a pipe nobody reads while the
    # worker runs would block it once full (hours of progress lines or warnings)
    running: dict[int, tuple[subprocess.Popen, Job, float, Any, Any]] = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if threads == 1 else dict(os.environ)
    queue = list(todo)
    t0 = time.perf_counter()
    # SIGINT and SIGTERM stop the batch: the parent passes them on to its workers (each in its
    # own session, so Ctrl-C reaches them once, through it) and waits for them to keep their rows
    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while queue or running:
            while queue and len(running) < args.jobs:
                k, j = queue.pop(0)
                out_f, err_f = tempfile.TemporaryFile(), tempfile.TemporaryFile()
                proc = subprocess.Popen(worker_command(args, j, threads), env=env, stdin=subprocess.DEVNULL, stdout=out_f, stderr=err_f,
                                        start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))
                running[k] = (proc, j, time.perf_counter(), out_f, err_f)
            done = [k for k, (p, *_) in running.items() if p.poll() is not None]
            if not done:
                time.sleep(0.05)
                continue
            for k in done:
                proc, j, t, out_f, err_f = running.pop(k)
                summary, error = _last_line(_read(out_f)), _last_line(_read(err_f))
                line = summary if proc.returncode == 0 else error
                if proc.returncode == 0:
                    tracked += 1
                    if not args.quiet:
                        print(f"facetrack: [{k}/{n}] {display_name(j.input)}: {line or 'done'} "
                              f"({time.perf_counter() - t:.1f} s)", file=sys.stderr)
                else:
                    failed += 1
                    why = line or _signal_text(proc.returncode)
                    print(f"facetrack: [{k}/{n}] {display_name(j.input)}: FAILED (exit {proc.returncode}): {why}", file=sys.stderr)
    except (KeyboardInterrupt, _Stopped) as e:
        stopped_by = e.signum if isinstance(e, _Stopped) else signal.SIGINT
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave orphans
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for proc, *_ in running.values():
            if proc.poll() is None:
                proc.send_signal(stopped_by)
        for proc, *_ in running.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:  # a worker that does not stop: its rows stay whole lines
                proc.kill()
                proc.wait()
    finally:
        for s_, h in previous.items():
            signal.signal(s_, h)
    if stopped_by is not None:
        what = "interrupted" if stopped_by == signal.SIGINT else f"stopped by {signal.Signals(stopped_by).name}"
        print(f"facetrack: {what}; rerun the same command to continue ({len(queue) + len(running)} inputs left)",
              file=sys.stderr)
        return 130 if stopped_by == signal.SIGINT else 128 + int(stopped_by)
    if args.quiet < 2 or failed:
        print(f"facetrack: {n} inputs: {tracked} tracked, {skipped} already complete, {failed} failed "
              f"({time.perf_counter() - t0:.1f} s) -> {display_name(out_dir)}", file=sys.stderr)
    return 1 if failed else 0


class _Stopped(BaseException):  # as KeyboardInterrupt: not swallowed by an ``except Exception``
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: Any) -> None:
    raise _Stopped(signum)


def _die_with_parent(parent: int) -> Any:
    """A ``preexec_fn`` asking Linux to send the worker SIGTERM when the batch parent dies
    (even by SIGKILL), so no orphan goes on writing a file that a rerun resumes."""
    def set_death_signal() -> None:
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # not Linux: the output lock still keeps a rerun out
            return
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return set_death_signal


def _read(f: Any) -> str:
    """What a worker wrote into the temporary file ``f`` (then closed, so deleted)."""
    with f:
        f.seek(0)
        return f.read().decode("utf-8", "replace")


def _last_line(err: str) -> str:
    """The worker's own one-line message, without its ``facetrack: `` prefix."""
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()]
    own = [ln for ln in lines if ln.startswith("facetrack")] or lines
    return own[-1].removeprefix("facetrack: ") if own else ""


def _signal_text(rc: int) -> str:
    if rc < 0:
        import signal

        try:
            return f"worker killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"worker killed by signal {-rc}"
    return "worker failed without a message"
