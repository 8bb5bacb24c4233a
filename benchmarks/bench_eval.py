"""Evaluation speed (issue 4): PGD-20 throughput and AutoAttack (apgd-ce + apgd-t) time, ours vs a
straightforward loop, with identical robust accuracy.

Model: a WRN with one basic block per stage, widening 1 (16/32/64 channels), adversarially
trained here (PGD-2, 8 epochs, Adam, fixed seed) on the digits training split. Data: the digits
test split as 3x32x32 images. Baseline: the reference code's PGD loop (per batch, eval mode, fp32,
NCHW, every sample attacked, `loss.backward()` with parameters requiring grad) and pyautoattack
called on the plain model. Ours: `evaluate` with a channels_last model (frozen parameters, input
gradients only, misclassified samples skipped). PGD runs without random start here so both sides
are deterministic and their accuracies can be asserted equal.

    PYTHONPATH=src python benchmarks/bench_eval.py --repeats 3 --write
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _authors import authors_version
from _kernels import add_conv_share_flag, conv_table
from _machine import describe, prepare
from _results import add_write_flag, command_line, record, run_heading

from robustresnet import ArchSpec, StageSpec, build_model, evaluate, pgd
from robustresnet.attacks import predict
from robustresnet.data import load_dataset

EPS, STEP, STEPS = 8 / 255, 0.8 / 255, 20
HEADING = "## Evaluation speed (issue 4)"


def trained_model(epochs: int) -> torch.nn.Module:
    """WRN-10-1 adversarially trained (PGD-2 at 8/255, Adam) on the digits training split."""
    torch.manual_seed(0)
    spec = ArchSpec(stages=tuple(StageSpec(depth=1, widening=1, stride=s) for s in (1, 2, 2)))
    model = build_model(spec)
    train = load_dataset("digits", split="train")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(train.labels)).split(128):
            x, y = train.images[idx].float() / 255, train.labels[idx]
            x_adv = pgd(model, x, y, eps=EPS, step_size=EPS / 2, steps=2)
            model.train()
            loss = F.cross_entropy(model(x_adv), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def baseline_pgd(model, images, labels, batch_size: int) -> float:
    """The straightforward loop: every sample, NCHW, parameter gradients computed each step."""
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        x = images[start : start + batch_size].float() / 255
        y = labels[start : start + batch_size]
        x_adv = x.clone()
        for _ in range(STEPS):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y)
            model.zero_grad()
            loss.backward()
            x_adv = x_adv.detach() + STEP * x_adv.grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - EPS), x + EPS).clamp(0, 1)
        with torch.no_grad():
            correct += int((model(x_adv).argmax(1) == y).sum())
    return correct / len(labels)


def pgd_every_sample(model, images, labels, batch_size: int) -> float:
    """Our `pgd` in the same plain loop (every sample attacked): the attack's own speed-up."""
    correct = 0
    for start in range(0, len(labels), batch_size):
        x = images[start : start + batch_size].float() / 255
        y = labels[start : start + batch_size]
        x_adv = pgd(model, x, y, eps=EPS, step_size=STEP, steps=STEPS, random_start=False)
        correct += int((predict(model, x_adv).argmax(1) == y).sum())
    return correct / len(labels)


def baseline_autoattack(model, images, labels, batch_size: int) -> float:
    """pyautoattack's standard settings, apgd-ce + apgd-t, on the plain model (NCHW, grads on)."""
    from pyautoattack import AutoAttack

    adversary = AutoAttack(model, eps=EPS, norm="Linf", seed=0, version="standard")
    adversary.attacks_to_run = ["apgd-ce", "apgd-t"]
    adversary.logger.setLevel("ERROR")
    _, y_adv = adversary.run_standard_evaluation(
        images.float() / 255, labels, batch_size=batch_size
    )
    return int((y_adv == labels).sum()) / len(labels)


def ours(model, images, labels, batch_size: int, attack: str, amp_dtype=None) -> float:
    report = evaluate(
        model, images, labels, attacks=["clean", attack], eps=EPS, batch_size=batch_size,
        sanity_checks=False, amp_dtype=amp_dtype,
    )  # fmt: skip
    return report["accuracy"][attack]


def timed(fn, *args, **kwargs) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - start, value


def run_interleaved(variants: dict, repeats: int) -> dict[str, tuple[list[float], float]]:
    """Each variant once per round, rounds repeated: (seconds per round, robust accuracy)."""
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    accuracy: dict[str, float] = {}
    for _ in range(repeats):
        for name, call in variants.items():
            elapsed, accuracy[name] = timed(call)
            seconds[name].append(elapsed)
    return {name: (seconds[name], accuracy[name]) for name in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=256, help="test images for PGD-20 (at most 355)")
    parser.add_argument("--aa-n", type=int, default=24, help="test images for AutoAttack")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=8, help="adversarial training epochs")
    parser.add_argument("--bf16", action="store_true", help="also time ours under bf16 autocast")
    add_conv_share_flag(parser, "each fp32 variant (PGD-20 and AutoAttack)")
    add_write_flag(parser)
    args = parser.parse_args()
    prepare(args.threads)
    model = trained_model(args.epochs)
    fast = build_model(model.spec).eval()
    fast.load_state_dict(model.state_dict())
    fast.to(memory_format=torch.channels_last)
    test = load_dataset("digits", split="test")
    images, labels = test.images[: args.n], test.labels[: args.n]
    attack = "pgd20:random_start=0"
    authors = authors_version(model)
    variants = {
        "baseline loop": lambda: baseline_pgd(authors, images, labels, args.batch_size),
        "pgd(), every sample, channels_last": lambda: pgd_every_sample(
            fast, images, labels, args.batch_size
        ),
        "ours, NCHW": lambda: ours(model, images, labels, args.batch_size, attack),
        "ours, channels_last": lambda: ours(fast, images, labels, args.batch_size, attack),
    }
    if args.bf16:
        variants["ours, channels_last, bf16"] = lambda: ours(
            fast, images, labels, args.batch_size, attack, torch.bfloat16
        )
    pgd_results = run_interleaved(variants, args.repeats)
    aa_images, aa_labels = images[: args.aa_n], labels[: args.aa_n]
    aa = "aa:attacks=apgd-ce+apgd-t"
    aa_variants = {
        "pyautoattack on the plain model": lambda: baseline_autoattack(
            authors, aa_images, aa_labels, args.batch_size
        ),
        "ours (adapter, frozen, channels_last)": lambda: ours(
            fast, aa_images, aa_labels, args.batch_size, aa
        ),
    }
    aa_results = run_interleaved(aa_variants, max(1, args.repeats - 1))
    clean = evaluate(model, images, labels, attacks=["clean"], sanity_checks=False)["accuracy"]
    text = report(args, pgd_results, aa_results, clean_accuracy=clean["clean"], count=len(labels))
    if args.conv_share:
        fp32 = {name: call for name, call in variants.items() if "bf16" not in name}
        text += "\nPGD-20, one run of each, profiled:\n\n"
        text += "\n".join(conv_table(fp32, baseline="baseline loop")) + "\n"
        text += "\nAutoAttack, one run of each, profiled:\n\n"
        text += "\n".join(conv_table(aa_variants, baseline="pyautoattack on the plain model"))
        text += "\n"
    text += f"\nCommand: `{command_line()}`\n"
    print(text)
    check_equal(pgd_results, aa_results)
    if args.write:
        record(HEADING, text)


def check_equal(pgd_results, aa_results) -> None:
    """fp32 variants must agree exactly; bf16 is reported, not asserted."""
    fp32 = {n: a for n, (_, a) in pgd_results.items() if "bf16" not in n}
    assert len(set(fp32.values())) == 1, f"PGD-20 robust accuracy differs: {fp32}"
    aa = {n: a for n, (_, a) in aa_results.items()}
    assert len(set(aa.values())) == 1, f"AutoAttack robust accuracy differs: {aa}"


def report(args, pgd_results, aa_results, *, clean_accuracy: float, count: int) -> str:
    """The tables; `count` images were attacked (the digits test split has 355)."""
    lines = [
        run_heading(),
        "",
        f"Machine: {describe(torch.get_num_threads())} (other work on the cores makes absolute "
        "figures noisy); ratios come from the same interleaved run.",
        f"Model: WRN-10-1 (one basic block per stage, 16/32/64 channels), trained here with "
        f"PGD-2 for {args.epochs} epochs on digits (clean accuracy {clean_accuracy:.1%} on the "
        f"first {count} test "
        f"images). eps 8/255, PGD-20 step 0.8/255 without random start (deterministic, so both "
        f"sides are asserted equal), batch {args.batch_size}, {args.repeats} interleaved rounds, "
        "median.",
        "",
        f"| PGD-20 on {count} images | images/s (median) | seconds per round | robust acc. |"
        " speed-up |",
        "|---|---:|---|---:|---:|",
    ]
    base = statistics.median(pgd_results["baseline loop"][0])
    for name, (seconds, accuracy) in pgd_results.items():
        median = statistics.median(seconds)
        runs = ", ".join(f"{s:.1f}" for s in seconds)
        lines.append(
            f"| {name} | {count / median:.1f} | {runs} | {accuracy:.2%} | {base / median:.2f}x |"
        )
    lines += [
        "",
        f"| AutoAttack apgd-ce + apgd-t on {args.aa_n} images | seconds (median) | "
        "seconds per round | robust acc. | speed-up |",
        "|---|---:|---|---:|---:|",
    ]
    base = statistics.median(next(iter(aa_results.values()))[0])
    for name, (seconds, accuracy) in aa_results.items():
        median = statistics.median(seconds)
        runs = ", ".join(f"{s:.1f}" for s in seconds)
        lines.append(f"| {name} | {median:.1f} | {runs} | {accuracy:.2%} | {base / median:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
