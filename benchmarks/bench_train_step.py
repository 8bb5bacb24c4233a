"""Speed of one adversarial training step (TRADES-10, PGD-AT-10): our step vs a reference step.

The reference is written the way the authors' code does it: eager fp32 NCHW, parameters frozen
by a Python loop during the attack, TRADES' KL recomputing the clean softmax at every attack step.
Ours is `make_objective(...)` under `torch.autocast` (bf16 variants), optionally channels_last
and torch.compile.
Same network, batch and optimizer; variants timed in interleaved repeats, medians reported.

    PYTHONPATH=src python benchmarks/bench_train_step.py --repeats 3 --batch 64
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _authors import authors_version
from _kernels import add_conv_share_flag, conv_table
from _machine import describe, prepare
from _results import add_write_flag, command_line, record, run_heading
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from robustresnet.arch.network import build_model
from robustresnet.arch.spec import ArchSpec, StageSpec
from robustresnet.train.objectives import make_objective
from robustresnet.train.optim import build_optimizer

EPS, STEP, STEPS = 8 / 255, 2 / 255, 10
SECTION = "## Training step speed (issue 5)"
# (name, precision, channels_last, compile)
VARIANTS = [
    ("ours fp32", "fp32", False, False),
    ("ours fp32 channels_last", "fp32", True, False),
    ("ours bf16", "bf16", False, False),
    ("ours bf16 channels_last", "bf16", True, False),
    ("ours bf16 channels_last compile", "bf16", True, True),
]


def network(block: str, depths: tuple[int, ...], widening: tuple[int, ...]) -> nn.Module:
    stages = tuple(
        StageSpec(depth=d, widening=w, stride=1 if i == 0 else 2, block=block)
        for i, (d, w) in enumerate(zip(depths, widening, strict=True))
    )
    return build_model(ArchSpec(stages=stages))


def reference_step(model, optimizer, x, y, objective: str) -> None:
    """The authors' style: freeze by loop, eval-mode attack, KL with the clean softmax re-run."""
    model.eval()
    for param in model.parameters():
        param.requires_grad = False
    kl = nn.KLDivLoss(reduction="sum")
    if objective == "trades":
        x_adv = x.detach() + 0.001 * torch.randn_like(x)
    else:
        x_adv = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0.0, 1.0)
    for _ in range(STEPS):
        x_adv.requires_grad_()
        if objective == "trades":
            loss = kl(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1))
        else:
            loss = F.cross_entropy(model(x_adv), y)
        grad = torch.autograd.grad(loss, [x_adv])[0]
        x_adv = x_adv.detach() + STEP * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - EPS), x + EPS).clamp(0.0, 1.0)
    for param in model.parameters():
        param.requires_grad = True
    model.train()
    optimizer.zero_grad()
    if objective == "trades":
        logits = model(x)
        robust = kl(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1)) / len(x)
        loss = F.cross_entropy(logits, y) + 6.0 * robust
    else:
        loss = F.cross_entropy(model(x_adv), y)
    loss.backward()
    optimizer.step()


def our_step(model, optimizer, x, y, objective, precision: str) -> None:
    optimizer.zero_grad(set_to_none=True)
    bf16 = precision == "bf16"
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss, _ = objective(model, x, y)
    loss.backward()
    optimizer.step()


def make_steps(
    template: nn.Module, objective_name: str, x, y, variants: list[str]
) -> dict[str, Callable[[], None]]:
    """One closure per variant, each with its own copy of the network and optimizer."""

    def optimizer_for(model):
        return build_optimizer(model, lr=0.01, weight_decay=2e-4)

    reference = authors_version(_copy(template))
    ref_opt = optimizer_for(reference)
    steps = {"reference": lambda: reference_step(reference, ref_opt, x, y, objective_name)}
    objective = make_objective(objective_name)
    for name, precision, channels_last, compiled in VARIANTS:
        if name not in variants:
            continue
        model = _copy(template)
        xs = x
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            xs = x.contiguous(memory_format=torch.channels_last)
        opt = optimizer_for(model)
        run = torch.compile(model) if compiled else model
        steps[name] = _bind(our_step, run, opt, xs, y, objective, precision)
    return steps


def _bind(fn, *args):
    return lambda: fn(*args)


def _copy(template: nn.Module) -> nn.Module:
    model = type(template)(template.spec)
    model.load_state_dict(template.state_dict())
    return model.train()


def _timed(step: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds): on a shared machine CPU time is the steadier measure."""
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    return time.perf_counter() - wall, time.process_time() - cpu


def _flops(fn: Callable[[], None]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def step_flops(model: nn.Module, x, y, objective_name: str) -> dict[str, int]:
    """FLOPs of one step, from its parts (FlopCounterMode cannot enter `autograd.grad`).

    attack: forward + input-only backward; clean: a no-grad forward; train: forward + backward.
    """
    model = _copy(model)
    with torch.no_grad():
        clean = _flops(lambda: model.eval()(x))
    model.requires_grad_(False)
    x_in = x.clone().requires_grad_()
    attack = _flops(lambda: model(x_in).sum().backward(inputs=[x_in]))
    model.requires_grad_(True)
    train = _flops(lambda: F.cross_entropy(model.train()(x), y).backward())
    if objective_name == "trades":
        return {
            "reference": STEPS * (attack + clean) + 2 * train,
            "ours": STEPS * attack + clean + 2 * train,
        }
    return {"reference": STEPS * attack + train, "ours": STEPS * attack + clean + train}


def batch_data(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed random CIFAR-shaped batch every variant steps on."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=generator)
    return x, torch.randint(0, 10, (batch,), generator=generator)


def measure(template, objective_name, batch, repeats, variants) -> list[dict]:
    """Warm up every variant (compile time recorded), then interleaved timed repeats."""
    x, y = batch_data(batch)
    steps = make_steps(template, objective_name, x, y, variants)
    flops = step_flops(template, x, y, objective_name)
    first = {name: _timed(step) for name, step in steps.items()}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(_timed(step))
    base_wall, base_cpu = (statistics.median(t) for t in zip(*times["reference"], strict=True))
    rows = []
    for name, values in times.items():
        wall, cpu = (statistics.median(t) for t in zip(*values, strict=True))
        work = flops["reference" if name == "reference" else "ours"]
        rows.append(
            {
                "variant": name,
                "cpu_s": cpu,
                "images_per_cpu_s": batch / cpu,
                "gflop_per_cpu_s": work / 1e9 / cpu,
                "speedup_cpu": base_cpu / cpu,
                "speedup_wall": base_wall / wall,
                "first_step_wall_s": first[name][0],
                "first_step_cpu_s": first[name][1],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--objectives", default="trades,pgd_at")
    parser.add_argument("--nets", default="robust-small,wrn-small,wrn-mid")
    parser.add_argument("--variants", default=",".join(v[0] for v in VARIANTS))
    add_conv_share_flag(parser, "each variant's step")
    add_write_flag(parser)
    args = parser.parse_args()
    prepare(args.threads)
    nets = {
        "robust-small": ("robust_res_block", (2, 2, 1), (2, 2, 1)),
        "wrn-small": ("basic_block", (2, 2, 1), (2, 2, 1)),
        "robust-mid": ("robust_res_block", (3, 3, 2), (4, 4, 2)),
        "wrn-mid": ("basic_block", (3, 3, 2), (4, 4, 2)),
    }
    lines = [
        f"Machine: {describe(args.threads)}; batch {args.batch}, {args.repeats} interleaved "
        "repeats, median.",
        "",
        "| network | objective | variant | images/CPU-s | GFLOP/CPU-s | speed-up (CPU) "
        "| speed-up (wall) | first step s (CPU / wall) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for net in args.nets.split(","):
        block, depths, widening = nets[net]
        template = network(block, depths, widening)
        for objective_name in args.objectives.split(","):
            rows = measure(
                template, objective_name, args.batch, args.repeats, args.variants.split(",")
            )
            for row in rows:
                lines.append(
                    f"| {net} {depths}/{widening} | {objective_name} | {row['variant']} | "
                    f"{row['images_per_cpu_s']:.1f} | {row['gflop_per_cpu_s']:.1f} | "
                    f"{row['speedup_cpu']:.2f}x | {row['speedup_wall']:.2f}x | "
                    f"{row['first_step_cpu_s']:.1f} / {row['first_step_wall_s']:.1f} |"
                )
                print(lines[-1], flush=True)
    if args.conv_share:
        shares = conv_shares(nets, args)
        print("\n".join(shares), flush=True)
        lines += shares
    lines += ["", f"Command: `{command_line()}`"]
    if args.write:
        record(SECTION, "\n".join([run_heading(), "", *lines]))


def conv_shares(nets: dict, args) -> list[str]:
    """One profiled step per network, objective and variant: its convolution kernels' time."""
    lines = []
    x, y = batch_data(args.batch)
    for net in args.nets.split(","):
        template = network(*nets[net])
        for objective_name in args.objectives.split(","):
            steps = make_steps(template, objective_name, x, y, args.variants.split(","))
            lines += ["", f"{net}, {objective_name}: one step, profiled", ""]
            lines += conv_table(steps, baseline="reference")
    return lines


if __name__ == "__main__":
    main()
