"""Peak process memory of `load_pipeline` on a full-size SD1.5 single-file checkpoint (random weights, CPU).

    python benchmarks/bench_loading.py [--workdir /tmp/musedance_bench] [--cases fp32:fp32,fp32:fp16,fp16:fp16]
                                       [--repeat 5] [--stages] [--timeline] [--remake]
                                       [--output benchmarks/results/loading.json]

Step 1 (`make`, skipped when the files exist): a diffusers `UNet2DConditionModel`, `AutoencoderKL`
and transformers `CLIPTextModel` of `MuseDanceConfig.sd15()` get random weights (built on the meta
device, then filled with N(0, 0.02)), are renamed to the ORIGINAL LDM layout by tests/ldm_layout.py
(`model.diffusion_model.`, `first_stage_model.`, `cond_stage_model.transformer.`) and written as one
fp32 `.safetensors` file (4.27 GB, 1131 tensors) and an fp16 copy, in a subprocess of their own.

Step 2 (`measure`): every run of every case FILE_DTYPE:LOAD_DTYPE is a fresh subprocess that imports
torch, diffusers, transformers and musedance_core, reads its resident memory (VmRSS in
/proc/self/status) as the baseline, resets the peak counter (`5` into /proc/self/clear_refs) and calls
`load_pipeline(base=FILE, config=MuseDanceConfig.sd15(), dtype=LOAD_DTYPE, device="cpu")`. Then:

    weights_bytes  = sum of tensor_bytes(module) over pipe.modules() (UNet with its temporal modules,
                     ReferenceNet, mask encoder, VAE, text encoder): one copy of the loaded weights
    peak_increase  = VmHWM after loading - baseline
    ratio          = peak_increase / weights_bytes      (the target: <= 1.10 in every run)

The ratio can vary from run to run (glibc's heap may keep a varying part of the memory a loader frees), so
each case runs --repeat times and the table gives min/median/max. After the peak has been read, each run
also records glibc's mallinfo2() (bytes free but kept in the heap) and VmRSS after malloc_trim(0), which
separate memory the allocator kept from memory still in use. MALLOC_* variables in the environment
(e.g. MALLOC_MMAP_THRESHOLD_) reach the measuring processes and are recorded. --stages records
VmRSS/VmHWM after each loader stage by wrapping the loader's functions in the child process;
--timeline samples VmRSS every 0.25 s from a thread. Prints a table and writes it, with the machine, to
a JSON file; exits with status 1 if any run is above 1.10. Needs about 15 GB of free memory for the fp32
case; run nothing else heavy at the same time.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_WORKDIR = Path("/tmp/musedance_bench")
FILES = {"fp32": "sd15_random_fp32.safetensors", "fp16": "sd15_random_fp16.safetensors"}
DEFAULT_CASES = "fp32:fp32,fp32:fp16,fp16:fp16"
LIMIT = 1.10
GB = 1e9


def proc_status() -> dict[str, int]:
    """VmRSS, VmHWM and the other Vm* lines of /proc/self/status, in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Vm") or line.startswith("Rss"):
            key, value = line.split(":", 1)
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB":
                out[key] = int(parts[0]) * 1024
    return out


def reset_peak() -> bool:
    """Set VmHWM back to the current VmRSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    status = proc_status()
    return status["VmHWM"] <= status["VmRSS"] + 4 * 1024 * 1024


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def malloc_stats() -> dict[str, int] | None:
    """glibc's mallinfo2(), all arenas: heap bytes obtained with brk/mmap'd heaps ("arena"), in use
    ("uordblks"), free but kept by the allocator ("fordblks"), and bytes in chunks mmap'd one by one ("hblkhd")."""
    try:
        function = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _Mallinfo2
    info = function()
    return {name: int(getattr(info, name)) for name in ("arena", "uordblks", "fordblks", "hblkhd", "hblks")}


def anon_huge_pages() -> int | None:
    """Bytes of transparent huge pages in this process (from /proc/self/smaps_rollup)."""
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def malloc_trim() -> int | None:
    """VmRSS after glibc's malloc_trim(0), which hands freed heap memory back to the system (None without glibc).

    Called only after the peak has been read: it tells memory the allocator kept from memory still in use.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return None
    return proc_status()["VmRSS"]


# --------------------------------------------------------------------------------------------- make


def make_files(workdir: Path, fp16: bool) -> None:
    """Write the random SD1.5 single-file checkpoints (run in a subprocess of its own)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    sys.path.insert(0, str(REPO / "tests"))
    import ldm_layout as L
    from musedance_core.config import MuseDanceConfig

    cfg = MuseDanceConfig.sd15()
    started = time.perf_counter()
    with torch.device("meta"):
        unet = UNet2DConditionModel(**cfg.unet.diffusers_kwargs())
        vae = AutoencoderKL(**cfg.vae.diffusers_kwargs())
        clip = CLIPTextModel(CLIPTextConfig(**cfg.text_encoder.transformers_kwargs()))
    torch.manual_seed(0)
    state_dicts = []
    with torch.no_grad():
        for model in (unet, vae, clip):
            model.to_empty(device="cpu")
            sd = model.state_dict()
            for name, tensor in sd.items():
                if tensor.is_floating_point():
                    tensor.normal_(0.0, 0.02)  # random values; only sizes matter here
                elif name.endswith("position_ids"):
                    tensor.copy_(torch.arange(tensor.shape[-1]).expand_as(tensor))
                else:
                    raise RuntimeError(f"make: unexpected non-float tensor {name} {tensor.dtype}")
            state_dicts.append(sd)
    sd = L.sd15_single_file(*state_dicts, layers_per_block=cfg.unet.layers_per_block,
                            num_blocks=len(cfg.unet.block_out_channels), add_position_ids=True)
    del state_dicts, unet, vae, clip
    print(f"make: random SD1.5 models built and converted to the LDM layout in {time.perf_counter() - started:.1f} s "
          f"({len(sd)} tensors)", flush=True)
    for kind in ("fp32", "fp16") if fp16 else ("fp32",):
        path = workdir / FILES[kind]
        if path.exists():
            continue
        tensors = sd if kind == "fp32" else {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
        partial = path.with_suffix(".partial.safetensors")
        started = time.perf_counter()
        L.write_safetensors(partial, tensors)
        partial.rename(path)  # only a complete file is ever reused
        del tensors
        gc.collect()
        print(f"make: wrote {path} ({path.stat().st_size / GB:.2f} GB) in {time.perf_counter() - started:.1f} s", flush=True)


# ------------------------------------------------------------------------------------------ measure


class Sampler:
    """VmRSS every `interval` seconds in a background thread (a coarse timeline; the peak is VmHWM)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval, self.samples, self._stop = interval, [], threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((round(time.perf_counter() - self._t0, 2), proc_status()["VmRSS"]))
            self._stop.wait(self.interval)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def wrap_stages(stages: list[dict], t0: float) -> None:
    """Record VmRSS/VmHWM after each loader stage, by wrapping the loader's functions (child process only)."""
    from musedance_core.loading import loader as loading

    def record(label: str) -> None:
        status = proc_status()
        stages.append({"stage": label, "t_s": round(time.perf_counter() - t0, 2),
                       "rss": status["VmRSS"], "hwm": status["VmHWM"]})

    def wrap(owner, name: str, label) -> None:
        original = getattr(owner, name)

        def wrapped(*args, **kwargs):
            result = original(*args, **kwargs)
            record(label(args, kwargs))
            return result

        setattr(owner, name, wrapped)

    wrap(loading._SD15Source, "load", lambda a, k: f"convert {a[1]}")
    wrap(loading, "assign_weights", lambda a, k: f"assign {a[2]}")
    wrap(loading, "initialise_missing", lambda a, k: f"initialise missing in {type(a[0]).__name__}")
    wrap(loading._SD15Source, "release", lambda a, k: "release converted UNet dict")


def measure_case(path: Path, dtype: str, stages_wanted: bool, timeline: bool) -> dict:
    """One load in this (fresh) process; returns the figures."""
    import diffusers  # noqa: F401  (imported before the baseline, as load_pipeline needs them)
    import torch
    import transformers  # noqa: F401

    from musedance_core.config import MuseDanceConfig
    from musedance_core.loading.loader import load_pipeline
    from musedance_core.loading.weights import tensor_bytes

    gc.collect()
    before = proc_status()
    baseline = before["VmRSS"]
    peak_reset = reset_peak()
    stages: list[dict] = []
    t0 = time.perf_counter()
    if stages_wanted:
        wrap_stages(stages, t0)
    sampler = Sampler()
    with sampler if timeline else contextlib.nullcontext():
        started = time.perf_counter()
        pipe = load_pipeline(base=path, config=MuseDanceConfig.sd15(), dtype=dtype, device="cpu")
        seconds = time.perf_counter() - started
    after = proc_status()
    gc.collect()
    after_gc = proc_status()
    heap = malloc_stats()
    huge = anon_huge_pages()
    trimmed = malloc_trim()

    modules = pipe.modules()
    per_module = {name: tensor_bytes(m) for name, m in modules.items()}
    weights_bytes = sum(per_module.values())
    storages = {}
    for m in modules.values():
        for t in list(m.parameters()) + list(m.buffers()):
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
    dtypes = sorted({str(p.dtype) for m in modules.values() for p in m.parameters()})
    peak = after["VmHWM"] if peak_reset else max(after["VmHWM"], before["VmHWM"])
    increase = peak - baseline
    return {
        "file": path.name,
        "load_dtype": dtype,
        "parameter_dtypes": dtypes,
        "torch_threads": torch.get_num_threads(),
        "baseline_rss": baseline,
        "hwm_before_load": before["VmHWM"],
        "peak_counter_reset": peak_reset,
        "peak_hwm": peak,
        "rss_after_load": after["VmRSS"],
        "rss_after_gc": after_gc["VmRSS"],
        "malloc_after_load": heap,
        "anon_huge_pages_after_load": huge,
        "rss_after_malloc_trim": trimmed,
        "weights_bytes": weights_bytes,
        "weights_bytes_by_module": per_module,
        "storage_bytes": sum(storages.values()),
        "peak_increase": increase,
        "resident_increase": after_gc["VmRSS"] - baseline,
        "ratio": round(increase / weights_bytes, 4),
        "resident_ratio": round((after_gc["VmRSS"] - baseline) / weights_bytes, 4),
        "within_limit": increase / weights_bytes <= LIMIT,
        "seconds": round(seconds, 1),
        "load_report": pipe.load_report.summary().splitlines(),
        **({"stages": stages} if stages_wanted else {}),
        **({"rss_timeline_s_bytes": sampler.samples[:: max(1, len(sampler.samples) // 200)]} if timeline else {}),
    }


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where the checkpoints are written")
    parser.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated FILE_DTYPE:LOAD_DTYPE (fp32/fp16)")
    parser.add_argument("--repeat", type=int, default=5, help="fresh-process runs per case (default 5)")
    parser.add_argument("--stages", action="store_true", help="also record memory after each loader stage")
    parser.add_argument("--timeline", action="store_true",
                        help="also sample VmRSS every 0.25 s from a thread (diagnostic; the peak is VmHWM either way)")
    parser.add_argument("--remake", action="store_true", help="write the checkpoints again even if they exist")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "loading.json")
    parser.add_argument("--child", choices=("make", "measure"), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    parser.add_argument("--fp16-file", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cases = []
    for item in args.cases.split(","):
        file_dtype, _, load_dtype = item.strip().partition(":")
        if file_dtype not in FILES or load_dtype not in ("fp32", "fp16", "bf16"):
            parser.error(f"--cases: {item!r} is not FILE_DTYPE:LOAD_DTYPE with FILE_DTYPE in fp32/fp16")
        cases.append((file_dtype, load_dtype))
    args.case_list = cases
    if args.repeat < 1:
        parser.error("--repeat must be at least 1.")
    return args


def run_child(args: list[str], capture: bool = True) -> str:
    command = [sys.executable, str(Path(__file__).resolve()), *args]
    done = subprocess.run(command, stdout=subprocess.PIPE if capture else None, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit status {done.returncode}")
    return done.stdout or ""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child == "make":
        make_files(args.workdir, args.fp16_file)
        return 0
    if args.child == "measure":
        print("RESULT " + json.dumps(measure_case(args.file, args.dtype, args.stages, args.timeline)), flush=True)
        return 0

    from machine_info import machine  # benchmarks/ is on sys.path when a script here runs

    args.workdir.mkdir(parents=True, exist_ok=True)
    needed = sorted({f for f, _ in args.case_list})
    if args.remake:
        for kind in needed:
            (args.workdir / FILES[kind]).unlink(missing_ok=True)
    if any(not (args.workdir / FILES[k]).exists() for k in needed):
        started = time.perf_counter()
        run_child(["--child", "make", "--workdir", str(args.workdir)] + (["--fp16-file"] if "fp16" in needed else []),
                  capture=False)
        print(f"make: {time.perf_counter() - started:.1f} s in all", flush=True)

    info = machine("torch", "diffusers", "transformers", "safetensors")
    info["memory_total_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    info["glibc"] = os.confstr("CS_GNU_LIBC_VERSION") if "CS_GNU_LIBC_VERSION" in os.confstr_names else None
    info["malloc_environment"] = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_total_bytes'] / 2**30:.1f} GiB, torch "
          f"{info['torch']}, diffusers {info['diffusers']}, transformers {info['transformers']}", flush=True)

    results = []
    for file_dtype, load_dtype in args.case_list:
        path = args.workdir / FILES[file_dtype]
        runs = []
        for repeat in range(args.repeat):
            print(f"measure: {path.name} as {load_dtype}, run {repeat + 1} of {args.repeat} (fresh process) ...", flush=True)
            out = run_child(["--child", "measure", "--file", str(path), "--dtype", load_dtype]
                            + (["--stages"] if args.stages else []) + (["--timeline"] if args.timeline else []))
            run = json.loads(next(l for l in out.splitlines() if l.startswith("RESULT "))[7:])
            runs.append(run)
            base = run["baseline_rss"]
            trim = run["rss_after_malloc_trim"]
            print(f"  peak +{run['peak_increase'] / GB:.3f} GB over a {base / GB:.2f} GB baseline, weights "
                  f"{run['weights_bytes'] / GB:.3f} GB, ratio {run['ratio']:.3f}, {run['seconds']:.0f} s; resident after "
                  f"malloc_trim +{(trim - base) / GB if trim else float('nan'):.3f} GB", flush=True)
            for stage in run.get("stages", []):
                print(f"    {stage['t_s']:7.1f} s  {stage['stage']:<42} RSS +{(stage['rss'] - base) / GB:6.3f} GB"
                      f"  peak +{(stage['hwm'] - base) / GB:6.3f} GB", flush=True)
        ratios = [r["ratio"] for r in runs]
        results.append({
            "case": f"{file_dtype} file -> {load_dtype}",
            "file": path.name,
            "file_bytes": path.stat().st_size,
            "load_dtype": load_dtype,
            "weights_bytes": runs[0]["weights_bytes"],
            "weights_bytes_by_module": runs[0]["weights_bytes_by_module"],
            "baseline_rss_median": int(statistics.median(r["baseline_rss"] for r in runs)),
            "peak_increase_median": int(statistics.median(r["peak_increase"] for r in runs)),
            "peak_increase_max": max(r["peak_increase"] for r in runs),
            "ratio_min": min(ratios),
            "ratio_median": statistics.median(ratios),
            "ratio_max": max(ratios),
            "seconds_median": statistics.median(r["seconds"] for r in runs),
            "runs_within_limit": sum(r["within_limit"] for r in runs),
            "runs": len(runs),
            "within_limit": all(r["within_limit"] for r in runs),
            "per_run": runs,
        })

    files = {kind: (args.workdir / name).stat().st_size for kind, name in FILES.items() if (args.workdir / name).exists()}
    result = {
        "benchmark": "peak resident memory of load_pipeline(base=SD1.5 single file), full-size random weights, CPU",
        "machine": info,
        "command": " ".join(["python benchmarks/bench_loading.py", *(sys.argv[1:] if argv is None else argv)]),
        "definition": "ratio = (VmHWM after load_pipeline - VmRSS before it) / sum(tensor_bytes(m) for m in pipe.modules()); "
                      f"target ratio <= {LIMIT}; every run in a fresh process",
        "file_bytes": files,
        "cases": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    print()
    print(f"{'case':<19}{'file GB':>8}{'weights GB':>11}{'baseline GB':>12}{'peak +GB med/max':>18}"
          f"{'ratio min/med/max':>20}{'time s':>8}  runs <= {LIMIT}")
    for c in results:
        print(f"{c['case']:<19}{c['file_bytes'] / GB:>8.2f}{c['weights_bytes'] / GB:>11.2f}{c['baseline_rss_median'] / GB:>12.2f}"
              f"{c['peak_increase_median'] / GB:>11.2f} /{c['peak_increase_max'] / GB:>5.2f}"
              f"{c['ratio_min']:>8.3f}/{c['ratio_median']:.3f}/{c['ratio_max']:.3f}{c['seconds_median']:>8.0f}"
              f"  {c['runs_within_limit']} of {c['runs']}")
    print(f"wrote {args.output}")
    return 0 if all(c["within_limit"] for c in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
