"""The recipe of the flow default: DabFusion's flow family trained with trainer/ on the synthetic dataset.

    python -m trainer.flow_default_model [--work runs/default] [--models models]
                                         [--stage1-steps N] [--stage2-steps N]

The same data as the MuseDance default (trainer.default_model's steps 1 and 2, shared and skipped when
done: the synthetic dataset, its music encoder, both splits prepared at 64x64 and 12 fps), then the
two stages through `python -m trainer.train`, the commands a user runs:
1. stage 1 (trainer/configs/default_flow_stage1.yaml): the latent flow auto-encoder on frame pairs,
   from random weights (the model's structure is in the config);
2. stage 2 (default_flow_stage2.yaml): the flow denoiser on clips, the auto-encoder frozen; its export
   is models/musedance/musedance_flow_default.safetensors.
Each stage is skipped when its export reached the step budget and resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from musedance_core.config import DEFAULT_FLOW_CHECKPOINT_NAME

from .config import load_config
from .default_model import CONFIGS, log, prepare_data, run_stage, trained_to


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.flow_default_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/default"), help="data and runs (default runs/default)")
    parser.add_argument("--models", type=Path, default=Path("models"),
                        help="where the model and the music encoder go (default models/, what the pack ships)")
    parser.add_argument("--stage1-steps", type=int, help="override train.steps of stage 1")
    parser.add_argument("--stage2-steps", type=int, help="override train.steps of stage 2")
    args = parser.parse_args(argv)
    work, models = args.work.resolve(), args.models.resolve()
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    prepare_data(work, models)
    data = work / "prepared_train"
    stages = [(CONFIGS / "default_flow_stage1.yaml", args.stage1_steps), (CONFIGS / "default_flow_stage2.yaml", args.stage2_steps)]
    budgets = [steps or load_config(config, {} if stage == 1 else {"model.base": "-"}).train.steps
               for stage, (config, steps) in enumerate(stages, 1)]
    stage1 = work / "flow_stage1" / "export" / "musedance_flow_default_stage1.safetensors"
    final = models / "musedance" / DEFAULT_FLOW_CHECKPOINT_NAME
    if not trained_to(stage1, budgets[0]):
        run_stage(stages[0][0], data, work / "flow_stage1", {"train.steps": budgets[0]})
    if not trained_to(final, budgets[1]):
        run_stage(stages[1][0], data, work / "flow_stage2",
                  {"model.base": str(stage1), "train.steps": budgets[1], "export.dir": str(final.parent),
                   "export.name": final.name})
    log(f"done: {final} ({final.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
