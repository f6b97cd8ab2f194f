"""Encoding a capture's npz files while the source steps (issue #16).

A sample is complete only at the last tick, but its ``map`` member (94 % of the bytes in the
town) is row-major over ticks, and the recorder keeps it agent-major, so agent ``i``'s rows of
ticks ``t0 … t1`` are one contiguous piece of memory. :class:`SampleEncoder` hooks into the
capture loop (``capture_rollout(on_recorded=…)``): every :data:`CHUNK_TICKS` ticks it hands the
finished map rows of every agent to its writer threads, which feed them to one
:class:`~townlet.policy.replay.npz_stream.MemberStream` per agent (deflate and CRC release the
GIL, so they run on the second core while the world steps). When the capture ends,
:meth:`SampleEncoder.save` only has to close the streams, encode the six small members, and
write each file in one go, through the same staged commit as
:func:`~townlet.policy.rollout.save.save_rollout`.

Given the output directory (``out``), the encoder also takes its lock and makes the commit's
staging directory at the first tick, and one more thread creates every sample's two (empty)
files there while the world steps; ``save`` then only fills them. Creating 4,096 files is
metadata work the file system serialises per directory: on our development VM's ext4 (no
journal: each new inode skips the recently deleted ones, which it reads from disk) it took
0.5–0.8 s on one thread, twice that from two, right after a capture was deleted there.

Only the map is streamed: the features (5 % of the bytes) deflate twice as fast with zlib's
default window and hash size (measured on the town, 186 against 82 MB/s), which cost ~256 KiB
of state per open stream; encoded once the sample is complete, they need no open stream.

Memory: each map's pieces are deflated on their own (``chunked``, see
:mod:`~townlet.policy.replay.npz_stream`), so no compressor stays open between chunks; a
sample holds only its deflated output so far (the stored case keeps references to the
recording, no copy). At most :data:`QUEUE_PER_LANE` chunk jobs per writer thread are queued (a
job holds no data, only row ranges), and the stepping waits when they are all taken. The
files decode to exactly the arrays ``save_rollout`` writes; their deflate bytes differ (the
chunks, and the codec: :mod:`~townlet.policy.replay.deflate`). Sources whose agents come and
go (PettingZoo) are not streamed: :meth:`SampleEncoder.save` then writes with
``save_rollout``.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from townlet.errors import RolloutError
from townlet.policy.replay import NPZ_KEYS, ReplaySample, sidecar_texts
from townlet.policy.replay.deflate import ZLIB, codec_for
from townlet.policy.replay.npz_stream import (
    MemberStream,
    array_member,
    npy_header,
    write_archive,
)
from townlet.policy.rollout.buffer import RolloutBuffer
from townlet.policy.rollout.commit import drop_staging
from townlet.policy.rollout.frames import FrameRecorder
from townlet.policy.rollout.save import (
    capture_target,
    check_prefix,
    commit_capture,
    prepare_staging,
    sample_stem,
    save_rollout,
    write_error,
)
from townlet.policy.rollout.writer_pool import (
    create_empty_files,
    default_workers,
    fill_file,
    sync_files,
    write_new_file,
)

CHUNK_TICKS = 50  # ~97 KB of map rows per agent and job: few calls, little waiting at the end
QUEUE_PER_LANE = 4
# ``workers=None``: threads only for captures that record at least this much per tick. Below
# it the threads' turns at the GIL cost more than they take off the stepping (measured, whole
# command, 2 vCPUs: 8 and 128 town agents 7-15 % faster without threads, 256 level, 512-2048
# 12-35 % faster with them; docs/capture.md).
THREADS_FROM_BYTES_PER_TICK = 256 * 2068  # 256 town agents' map and features


class SampleEncoder:
    """Streams the ``map`` member of every sample of one capture while it runs (module
    docstring). ``level``: deflate level 0–9, or None for stored members; ``workers``: writer
    threads (0: encode in the capturing thread; None: :func:`default_workers` for captures
    that record :data:`THREADS_FROM_BYTES_PER_TICK` or more per tick, else 0); ``out`` and
    ``prefix``: where :meth:`save` will write, to prepare its files while the capture runs
    (with threads); ``deflate``:
    the codec (:mod:`~townlet.policy.replay.deflate`: ``auto``, ``zlib`` or ``isal``; default
    ``$TOWNLET_DEFLATE``, else ``auto``). Use as a context manager around the capture and
    :meth:`save`, so the threads end, and an unsaved capture's staging directory goes, on any
    error."""

    def __init__(
        self,
        *,
        level: int | None,
        workers: int | None = None,
        chunk_ticks: int = CHUNK_TICKS,
        out: str | os.PathLike[str] | None = None,
        prefix: str = "rollout_sample",
        deflate: str | None = None,
    ) -> None:
        self.level = level
        self.codec = codec_for(level, deflate)
        self.workers = workers
        self.chunk_ticks = max(1, chunk_ticks)
        self.out = out
        self.prefix = check_prefix(prefix)
        self._held = contextlib.ExitStack()
        self._files: ThreadPoolExecutor | None = None
        self._created: Future[None] | None = None
        self._staging: Path | None = None
        self._stems: list[str] = []
        self._target: Path | None = None  # the --out lock is held (the resolved directory)
        self._lanes: list[ThreadPoolExecutor] = []
        self._pending: list[deque[Future[None]]] = []
        if workers is not None:
            self._open_lanes(workers)
        self._recorder: FrameRecorder | None = None
        self._maps: list[MemberStream] = []  # one per agent, when the source has maps
        self._flat = memoryview(b"")  # the recording's maps as bytes
        self._fed = 0
        self._off = False

    def _open_lanes(self, count: int) -> None:
        self._lanes = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="capture-encoder")
            for _ in range(count)
        ]
        self._pending = [deque() for _ in range(count)]

    @property
    def lanes(self) -> int:
        """Writer threads in use (known once the capture's first tick is recorded when
        ``workers`` is None)."""
        return len(self._lanes)

    def __enter__(self) -> SampleEncoder:
        if self.out is not None:
            self._target = self._held.enter_context(capture_target(self.out))  # fails early
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for queue in self._pending:
            for future in queue:
                future.cancel()
        for lane in self._lanes:
            lane.shutdown(wait=True)
        if self._files is not None:
            self._files.shutdown(wait=True)
        if self._staging is not None:
            drop_staging(self._staging)  # not saved (or already moved into place: a no-op)
        self._held.close()
        self._target = None
        self._maps, self._flat = [], memoryview(b"")

    def on_recorded(self, recorder: FrameRecorder) -> None:
        """The capture hook: hand out the rows finished since the last chunk."""
        if self._off:
            return
        if self._recorder is None:
            self._start(recorder)
        if recorder is not self._recorder or recorder.live is not None:
            self._off = True  # agents come and go: samples pick live ticks, save_rollout writes
            self._drain()
            self._maps, self._flat = [], memoryview(b"")
            return
        self._check_files()
        done, left = recorder.recorded, recorder.ticks - recorder.recorded
        # The rows of the last ticks are encoded after the stepping, while everything waits:
        # the chunk before them ends early, so that only a fifth of a chunk is left then.
        last = left == max(1, self.chunk_ticks // 5) and done > self._fed
        if done - self._fed >= self.chunk_ticks or left == 0 or last:
            self._hand_out(self._encode_rows, self._fed, done)
            self._fed = done

    def _start(self, recorder: FrameRecorder) -> None:
        self._recorder = recorder
        n = len(recorder.info.agent_ids)
        if self.workers is None:
            blocks = [b for b in (recorder.maps, recorder.features) if b is not None]
            per_tick = sum(b.nbytes for b in blocks) // max(1, recorder.ticks)
            self._open_lanes(default_workers() if per_tick >= THREADS_FROM_BYTES_PER_TICK else 0)
        if recorder.maps is not None:
            header = npy_header(recorder.maps[0])
            self._maps = [MemberStream("map", self.level, codec=self.codec) for _ in range(n)]
            for stream in self._maps:
                stream.feed(header)
            self._flat = memoryview(recorder.maps.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
        if (
            self._target is not None and self._lanes
        ):  # under the lock: outside it, staging is a leftover
            self._prepare_files(recorder)

    def _check_files(self) -> None:
        """Stop the capture as soon as creating its files failed (a full disk), not after
        the last tick."""
        created = self._created
        if created is None or not created.done() or created.exception() is None:
            return
        error = created.exception()
        assert self._target is not None
        if isinstance(error, OSError):
            raise write_error(self._target, error) from error
        raise error  # type: ignore[misc]

    def _prepare_files(self, recorder: FrameRecorder) -> None:
        ids = recorder.info.agent_ids
        self._stems = [sample_stem(self.prefix, agent, n + 1) for n, agent in enumerate(ids)]
        assert self.out is not None
        try:
            self._staging = prepare_staging(self.out, self.prefix)
        except (OSError, RolloutError):
            return  # save() makes its own staging directory and reports the location's error
        names = [f"{s}.{ext}" for s in self._stems for ext in ("npz", "json")]
        self._files = ThreadPoolExecutor(max_workers=1, thread_name_prefix="capture-files")
        self._created = self._files.submit(create_empty_files, self._staging, names)

    def _hand_out(
        self, job: Callable[[int, int, int, int], None], t0: int, t1: int, lanes: int = 0
    ) -> None:
        """Run ``job(first agent, end agent, t0, t1)`` over every agent, split between the
        first ``lanes`` lanes (0: all); each lane's jobs run in order, so a stream gets its
        pieces in order."""
        assert self._recorder is not None
        n = len(self._recorder.info.agent_ids)
        if not self._lanes:
            job(0, n, t0, t1)
            return
        used = min(lanes or len(self._lanes), len(self._lanes))
        bounds = np.linspace(0, n, used + 1).astype(int).tolist()
        for lane, queue in enumerate(self._pending[:used]):
            while len(queue) >= QUEUE_PER_LANE:
                try:
                    queue.popleft().result()
                except BaseException:
                    self._drain()  # let the other lanes stop before the error goes up
                    raise
            first, end = bounds[lane], bounds[lane + 1]
            queue.append(self._lanes[lane].submit(job, first, end, t0, t1))

    def _drain(self) -> None:
        # Every lane finishes before the first error is raised: a lane still writing into the
        # staging directory while the commit removes it would leave that directory behind.
        error: BaseException | None = None
        for queue in self._pending:
            while queue:
                try:
                    queue.popleft().result()
                except BaseException as exc:  # re-raised below, once every lane has stopped
                    error = error or exc
        if error is not None:
            raise error

    def _encode_rows(self, first: int, end: int, t0: int, t1: int) -> None:
        assert self._recorder is not None
        ticks = self._recorder.ticks
        if not self._maps:
            return
        row = self._flat.nbytes // (len(self._maps) * ticks)
        for i in range(first, end):
            start = (i * ticks + t0) * row
            self._maps[i].feed(self._flat[start : start + (t1 - t0) * row])

    def save(
        self,
        buffer: RolloutBuffer,
        directory: str | os.PathLike[str] | None = None,
        *,
        prefix: str | None = None,
    ) -> Path:
        """Write ``buffer`` (the capture this encoder watched) as a capture directory, as
        :func:`~townlet.policy.rollout.save.save_rollout` does, with the same errors and
        guarantees; the streamed members are only closed and written. ``directory`` and
        ``prefix`` default to the encoder's ``out`` and ``prefix``."""
        if directory is None:
            if self.out is None:
                raise TypeError("save() needs a directory: this encoder was given no out")
            directory = self.out
        prefix = self.prefix if prefix is None else check_prefix(prefix)
        if not self._complete(buffer):
            return save_rollout(
                buffer,
                directory,
                prefix=prefix,
                compress=self.level is not None,
                compress_level=self.level,
                workers=len(self._lanes) if self._recorder is not None else self.workers,
            )
        self._drain()
        samples = buffer.samples

        def writer(folder: Path, stems: list[str]) -> None:
            texts = sidecar_texts([s.metadata for s in samples])
            made = folder == self._staging and stems == self._stems
            if made and self._created is not None:
                self._created.result()  # the empty files are there

            def write(first: int, end: int, _t0: int, _t1: int) -> None:
                for i in range(first, end):
                    self._write_sample(folder, stems[i], i, samples[i], texts[i], made=made)

            self._hand_out(write, 0, 0, self._tail_lanes())
            self._drain()
            sync_files(folder, [f"{s}.{ext}" for s in stems for ext in ("npz", "json")])

        return commit_capture(buffer, directory, prefix, writer, staging=self._staging)

    def _tail_lanes(self) -> int:
        # With ISA-L a sample's files are mostly Python work under the GIL (the deflate is
        # ~45 µs of ~175), and two threads taking turns at the GIL wrote 2048 samples in
        # 0.55 s where one took 0.36 s; zlib's slower deflate runs without the GIL, where two
        # threads took as long as one (0.65 s) and more cores can share it.
        return 1 if self.codec is not ZLIB and self.level is not None else 0

    def _complete(self, buffer: RolloutBuffer) -> bool:
        recorder = self._recorder
        if self._off or recorder is None or self._fed != recorder.ticks:
            return False
        return len(buffer.samples) == len(recorder.info.agent_ids)

    def _write_sample(
        self, folder: Path, stem: str, index: int, sample: ReplaySample, sidecar: str, *, made: bool
    ) -> None:
        members = []
        for key in NPZ_KEYS:
            array: Any = getattr(sample, key)
            if key != "map" or not self._maps:
                members.append(array_member(key, array, self.level, codec=self.codec))
                continue
            member = self._maps[index]
            if member.size != len(npy_header(array)) + array.nbytes:
                raise RuntimeError(f"{stem}: the streamed {key} rows are not the sample's")
            member.finish()
            members.append(member)
        text = sidecar.encode("utf-8")
        if made:  # created empty while the capture ran
            fill_file(folder / f"{stem}.npz", lambda fh: write_archive(fh, members))
            fill_file(folder / f"{stem}.json", lambda fh: fh.write(text))
        else:
            write_new_file(
                folder / f"{stem}.npz", lambda fh: write_archive(fh, members), sync=False
            )
            write_new_file(folder / f"{stem}.json", lambda fh: fh.write(text), sync=False)
        if self._maps:
            self._maps[index].release()  # its deflated output is on disk now
