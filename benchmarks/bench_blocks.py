"""Speed of RobustResBlock networks against same-size basic-block networks (issue 2, section 7).

Three passes: forward (eval, no grad), attack step (eval, parameters frozen, forward + gradient
of the loss with respect to the input) and training step (train mode, forward + backward + SGD).
Achieved GFLOP/s counts nominal FLOPs from the MACs of one image (`robustresnet.profile`, the
paper's counting rules): forward 2·MACs, attack step 2·2·MACs (forward, and a backward pass of
about the same size for input gradients), training step 3·2·MACs (forward, input and weight
gradients). Both networks are counted the same way, so the ratio is the ratio of work per second.

Variants timed interleaved (basic, straightforward RobustResBlock, ours; repeat; median):
`straightforward` is the authors' computation (`_authors.py`): every block's `reference_forward`
and native BatchNorm2d.

    PYTHONPATH=src python benchmarks/bench_blocks.py --sizes tiny,mid --write
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _authors import authors_version
from _free_convs import with_chunk_convs_free
from _kernels import add_conv_share_flag, conv_time
from _machine import allocator, describe, load_average, prepare
from _results import add_write_flag, command_line, record, run_heading
from torch import nn

from robustresnet.arch import ArchSpec, StageSpec, build_model
from robustresnet.arch.profile import profile

# name: (depths, widening, batch)
SIZES = {
    "tiny": ((2, 2, 1), (2, 2, 1), 64),
    "mid": ((4, 4, 2), (3, 3, 2), 32),
    "a1": ((14, 14, 7), (5, 7, 3), 8),
}
PASS_FLOPS = {"forward": 2, "attack": 4, "train": 6}  # FLOPs per MAC of one image
HEADING = "## Block speed (issue 2)"
FREE = "ours, chunk convs free"
CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
CLOCK_NAMES = {"wall": "wall time", "process": "CPU time of the process"}


def spec_for(block: str, size: str) -> ArchSpec:
    depths, widening, _ = SIZES[size]
    stages = tuple(
        StageSpec(depth=d, widening=w, stride=1 if i == 0 else 2, block=block)
        for i, (d, w) in enumerate(zip(depths, widening, strict=True))
    )
    return ArchSpec(stages=stages)


def make_step(model: nn.Module, kind: str, batch: int, channels_last: bool, bf16: bool) -> Callable:
    """A closure running one pass of `kind` on a fixed random batch."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (batch,), generator=generator)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    model.requires_grad_(kind == "train").train(kind == "train")
    if kind == "forward":

        def step():
            with torch.no_grad(), autocast:
                model(x)

    elif kind == "attack":

        def step():
            x_adv = x.clone().requires_grad_(True)
            with autocast:
                loss = F.cross_entropy(model(x_adv), y)
            torch.autograd.grad(loss, x_adv)

    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step():
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()

    return step


def interleaved(steps: dict[str, Callable], repeats: int, min_time: float, clock) -> dict:
    """Seconds per call of each step in each of `repeats` rounds (the steps timed in turn)."""
    counts = {}
    for name, step in steps.items():  # warm-up, and enough calls for `min_time`
        start = clock()
        step()
        counts[name] = max(1, round(min_time / max(clock() - start, 1e-6)))
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = clock()
            for _ in range(counts[name]):
                step()
            times[name].append((clock() - start) / counts[name])
    return times


def measure(size: str, kinds, formats, dtypes, args: argparse.Namespace) -> list[dict]:
    """Rows of images/s and GFLOP/s per variant for one network size."""
    batch = SIZES[size][2]
    specs = {"basic": spec_for("basic_block", size), "robust": spec_for("robust_res_block", size)}
    macs = {name: profile(spec).macs for name, spec in specs.items()}
    rows = []
    for channels_last in formats:
        for bf16 in dtypes:
            for kind in kinds:
                torch.manual_seed(0)
                models = {
                    "basic": build_model(specs["basic"]),
                    "straightforward": authors_version(build_model(specs["robust"])),
                    "ours": build_model(specs["robust"]),
                }
                steps = {
                    name: make_step(model, kind, batch, channels_last, bf16)
                    for name, model in models.items()
                }
                if args.free_chunk_convs:
                    free = build_model(specs["robust"])
                    steps[FREE] = with_chunk_convs_free(
                        free, make_step(free, kind, batch, channels_last, bf16)
                    )
                times = interleaved(steps, args.repeats, args.min_time, CLOCKS[args.clock])
                row = {"size": size, "pass": kind, "channels_last": channels_last, "bf16": bf16}
                for name, t in times.items():
                    net_macs = macs["basic" if name == "basic" else "robust"]
                    s = statistics.median(t)
                    row[name] = (batch / s, net_macs * PASS_FLOPS[kind] * batch / s / 1e9)
                # ours ÷ basic within each round: the spread shows how much the machine moved
                row["paired"] = per_round(times, "ours", macs)
                if args.free_chunk_convs:
                    row["free paired"] = per_round(times, FREE, macs)
                if args.conv_share:
                    row["conv"] = conv_bound(steps, macs)
                rows.append(row)
                print(table_line(row), flush=True)
    return rows


def per_round(times: dict[str, list[float]], name: str, macs: dict[str, int]) -> tuple:
    """The lowest and highest ratio of `name` to basic among rounds timed together."""
    ratios = [
        macs["robust"] / t / (macs["basic"] / basic)
        for t, basic in zip(times[name], times["basic"], strict=True)
    ]
    return min(ratios), max(ratios)


def conv_bound(steps: dict[str, Callable], macs: dict[str, int]) -> tuple[float, float]:
    """(Share of our op time in convolution kernels, the ratio ours would reach if everything but
    those kernels took no time), from one profiled call of ours and of the basic network."""
    basic_total, _ = conv_time(steps["basic"])
    ours_total, ours_conv = conv_time(steps["ours"])
    return ours_conv / ours_total, macs["robust"] / ours_conv / (macs["basic"] / basic_total)


def conv_lines(rows: list[dict]) -> list[str]:
    """The --conv-share table: per pass, our convolution share and the ratio it bounds."""
    lines = [
        "| size | pass | ours: time in conv kernels | ratio with everything else free |",
        "|---|---|---:|---:|",
    ]
    for row in rows:
        share, bound = row["conv"]
        lines.append(f"| {row['size']} | {row['pass']} | {share:.0%} | {bound:.2f} |")
    return lines


def free_lines(rows: list[dict]) -> list[str]:
    """The --free-chunk-convs table: our ratio, and the ratio with the chunk convs free."""
    lines = [
        "| size | layout | dtype | pass | ratio ours | ratio with chunk convs free "
        "| free, per round | speed-up |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        base, ours, free = row["basic"][1], row["ours"][1], row[FREE][1]
        cells = [
            *setting(row),
            f"{ours / base:.2f}",
            f"**{free / base:.2f}**",
            "{:.2f}–{:.2f}".format(*row["free paired"]),
            f"{free / ours:.2f}x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def setting(row: dict) -> list[str]:
    """A row's size, layout, dtype and pass, as table cells."""
    return [
        row["size"],
        "channels_last" if row["channels_last"] else "NCHW",
        "bf16" if row["bf16"] else "fp32",
        row["pass"],
    ]


def table_line(row: dict) -> str:
    base = row["basic"][1]
    cells = [
        *setting(row),
        f"{row['basic'][0]:,.0f} / {base:.1f}",
        f"{row['straightforward'][0]:,.0f} / {row['straightforward'][1]:.1f}",
        f"{row['ours'][0]:,.0f} / {row['ours'][1]:.1f}",
        f"{row['straightforward'][1] / base:.2f}",
        f"**{row['ours'][1] / base:.2f}**",
        "{:.2f}–{:.2f}".format(*row["paired"]),
    ]
    return "| " + " | ".join(cells) + " |"


TABLE_HEAD = (
    "| size | layout | dtype | pass | basic img/s / GFLOP/s | straightforward img/s / GFLOP/s "
    "| ours img/s / GFLOP/s | ratio straightforward | ratio ours | ours, per round |\n"
    "|---|---|---|---|---:|---:|---:|---:|---:|---:|"
)


def section(rows: list[dict], args: argparse.Namespace, loads: tuple[str, str]) -> str:
    sizes = ", ".join(
        f"{name} (depths {SIZES[name][0]}, widening {SIZES[name][1]}, batch {SIZES[name][2]})"
        for name in dict.fromkeys(r["size"] for r in rows)
    )
    return "\n".join(
        [
            run_heading(),
            "",
            f"Machine: {describe(args.threads)} at the start, {loads[1]} at the end (other work "
            "on the cores makes absolute figures noisy); each ratio comes from the same "
            "interleaved run "
            f"(basic, straightforward, ours; {args.repeats} repeats, median, about "
            f"{args.min_time} s each; clock: {CLOCK_NAMES[args.clock]}). "
            f"Allocator: {allocator()}.",
            f"Networks: {sizes}. FLOPs: MACs of one image from `robustresnet.profile` (paper's "
            "rules) × 2 for the forward pass, × 4 for the attack step (forward + input gradient), "
            "× 6 for the training step (forward + input and weight gradients, SGD); the same count "
            "for both networks. Ratio = RobustResBlock GFLOP/s ÷ basic-block GFLOP/s (medians); "
            "per round: the lowest and highest ratio of ours to basic timed in the same round.",
            "",
            TABLE_HEAD,
            *(table_line(r) for r in rows),
            "",
            f"Command: `{command_line()}`",
            "",
            *(
                [
                    "One profiled call of each pass (torch profiler, self time of aten ops):",
                    "",
                    *conv_lines(rows),
                    "",
                ]
                if "conv" in rows[0]
                else []
            ),
            *(
                [
                    "Timed in the same rounds: ours with every grouped 3x3 chunk conv replaced by "
                    "a strided copy of its input (`_free_convs.py`: one memory pass, the same "
                    "autograd graph), the most any faster kernel for those convs could give:",
                    "",
                    *free_lines(rows),
                    "",
                ]
                if FREE in rows[0]
                else []
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,mid,a1")
    parser.add_argument("--passes", default="forward,attack,train")
    parser.add_argument("--layouts", default="nchw,channels_last")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds per timing")
    parser.add_argument(
        "--clock",
        choices=CLOCKS,
        default="wall",
        help="wall time, or this process's CPU time (steadier on a shared machine; 1 thread)",
    )
    add_conv_share_flag(parser, "each pass of the basic network and ours")
    parser.add_argument(
        "--free-chunk-convs",
        action="store_true",
        help="also time ours with its grouped 3x3 chunk convs replaced by copies: the ceiling "
        "of a faster kernel for them",
    )
    add_write_flag(parser)
    args = parser.parse_args()
    prepare(args.threads)
    formats = [name == "channels_last" for name in args.layouts.split(",")]
    dtypes = [name == "bf16" for name in args.dtypes.split(",")]
    loads = [load_average()]
    print(TABLE_HEAD)
    rows = []
    for size in args.sizes.split(","):
        rows += measure(size, args.passes.split(","), formats, dtypes, args)
    loads.append(load_average())
    text = section(rows, args, tuple(loads))
    print()
    print(text)
    if args.write:
        record(HEADING, text)


if __name__ == "__main__":
    main()
