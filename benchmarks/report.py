"""Turn raw runs into medians, ratios, the loss check, a table, results.json and a chart."""

from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import median

from benchmarks.measure import finite

REFERENCE = "llama_lora"
BASELINES = ("hf_trainer", "trl_sft")
LABELS = {
    "llama_lora": "llama_lora",
    "hf_trainer": "HF Trainer+PEFT",
    "trl_sft": "TRL SFT (packing)",
}
MEDIAN_KEYS = (
    "real_tokens_per_second",
    "seconds_per_step",
    "real_tokens_per_step",
    "padding_fraction",
    "peak_rss_bytes",
    "cuda_max_allocated_bytes",
    "cuda_max_reserved_bytes",
    "first_loss",
    "final_loss",
    "recomputed_blocks",
)
GB = 1024**3


def medians(runs: list[dict]) -> dict:
    """Median of each ``MEDIAN_KEYS`` value over the successful runs (None when none)."""
    good = [run for run in runs if run.get("ok")]
    out = {}
    for key in MEDIAN_KEYS:
        values = [run[key] for run in good if finite(run.get(key))]
        out[key] = median(values) if values else None
    out["successful_runs"] = len(good)
    return out


def loss_check(summary: dict[str, dict], tolerance: float) -> dict:
    """Whether every system's median final loss is within ``tolerance`` (relative) of the
    reference's (llama_lora's, else the first system's)."""
    names = list(summary)
    reference = REFERENCE if REFERENCE in summary else names[0]
    ref_loss = summary[reference]["final_loss"]
    deviations = {}
    for name in names:
        loss = summary[name]["final_loss"]
        ok = finite(loss) and finite(ref_loss) and ref_loss != 0
        deviations[name] = abs(loss - ref_loss) / abs(ref_loss) if ok else None
    agree = all(d is not None and d <= tolerance for d in deviations.values())
    return {
        "reference": reference,
        "tolerance": tolerance,
        "relative_deviation": deviations,
        "agree": agree,
    }


def ratios(summary: dict[str, dict]) -> dict:
    """llama_lora over each baseline: real tokens/s and peak memory (None when missing)."""
    out = {}
    if REFERENCE not in summary:
        return out
    ours = summary[REFERENCE]
    for name in BASELINES:
        if name not in summary:
            continue
        theirs = summary[name]
        for key, label in (
            ("real_tokens_per_second", "tokens_per_second"),
            ("peak_rss_bytes", "peak_rss"),
            ("cuda_max_allocated_bytes", "cuda_max_allocated"),
        ):
            a, b = ours.get(key), theirs.get(key)
            if finite(a) and finite(b) and b:
                out[f"{label}_{REFERENCE}_over_{name}"] = a / b
    return out


def ceiling_fraction(summary: dict[str, dict], flops: dict, ceiling: dict) -> dict:
    """Each system's model FLOP/s as a fraction of the measured matmul ceiling."""
    out = {}
    for name, values in summary.items():
        rate = values.get("real_tokens_per_second")
        if finite(rate):
            out[name] = rate * flops["model_flops_per_token"] / (ceiling["gflops"] * 1e9)
    return out


def _gb(value) -> str:
    return f"{value / GB:.2f}" if finite(value) else "-"


def _num(value, spec: str) -> str:
    return format(value, spec) if finite(value) else "-"


def format_table(results: dict) -> str:
    """The per-system table (medians), then ceiling, FLOPs and the loss check."""
    summary, cuda = results["summary"], results["config"]["device"] == "cuda"
    header = f"{'system':<19}{'real tok/s':>11}{'s/step':>9}{'tok/step':>10}{'pad %':>7}"
    header += f"{'peak RSS GB':>12}" + (f"{'CUDA alloc':>11}{'reserved':>9}" if cuda else "")
    header += f"{'loss@1st':>10}{'final loss':>11}{'% ceil':>8}"
    lines = [header, "-" * len(header)]
    for name, m in summary.items():
        row = f"{LABELS.get(name, name):<19}{_num(m['real_tokens_per_second'], '.1f'):>11}"
        row += (
            f"{_num(m['seconds_per_step'], '.3f'):>9}{_num(m['real_tokens_per_step'], '.0f'):>10}"
        )
        pad = m["padding_fraction"]
        row += f"{_num(pad * 100 if finite(pad) else None, '.1f'):>7}{_gb(m['peak_rss_bytes']):>12}"
        if cuda:
            row += f"{_gb(m['cuda_max_allocated_bytes']):>11}{_gb(m['cuda_max_reserved_bytes']):>9}"
        fraction = results["ceiling_fraction"].get(name)
        row += f"{_num(m['first_loss'], '.4f'):>10}{_num(m['final_loss'], '.4f'):>11}"
        row += f"{_num(fraction * 100 if finite(fraction) else None, '.1f'):>8}"
        lines.append(row)
    ceiling, flops, check = results["ceiling"], results["flops"], results["loss_check"]
    ideal = ceiling["gflops"] * 1e9 / flops["model_flops_per_token"]
    recompute = flops["hardware_flops_per_token"] - flops["model_flops_per_token"]
    with_recompute = (
        f", {flops['hardware_flops_per_token'] / 1e6:.1f} M with recompute" if recompute else ""
    )
    lines += [
        "",
        f"bf16 {ceiling['size']}^3 matmul ceiling ({ceiling['device']}): "
        f"{ceiling['gflops']:.1f} GFLOP/s (best of {ceiling['repeats']})",
        f"training FLOPs per token: {flops['model_flops_per_token'] / 1e6:.1f} M model"
        f"{with_recompute} ({flops['formula']}); ceiling = {ideal:.0f} real tokens/s",
        _recompute_line(results),
        "loss check (final loss = mean over the last "
        f"{results['config']['log_every']} steps, step {results['config']['total_steps']}): "
        + ("AGREE" if check["agree"] else "DISAGREE")
        + f" within {check['tolerance']:.1%} of {check['reference']} ("
        + ", ".join(
            f"{n}: {_num(d * 100 if finite(d) else None, '.2f')}%"
            for n, d in check["relative_deviation"].items()
        )
        + ")",
    ]
    return "\n".join(lines)


def _recompute_line(results: dict) -> str:
    """Which blocks each system recomputed (``--gradient-checkpointing``)."""
    mode = results["config"]["gradient_checkpointing"]
    parts = []
    for name, m in results["summary"].items():
        blocks = m.get("recomputed_blocks")
        if blocks is not None:
            parts.append(f"{LABELS.get(name, name)} {blocks:.0f} blocks")
        else:
            parts.append(f"{LABELS.get(name, name)} {'no' if mode == 'off' else 'every'} block")
    return f"activation recompute ({mode}): " + ", ".join(parts)


def format_ratios(results: dict) -> str:
    """The llama_lora/baseline ratios, printed last."""
    found = results["ratios"]
    if not found:
        return "ratios: need llama_lora and at least one baseline"
    return "\n".join(
        f"ratio {key.replace('_over_', ' / ')}: {value:.2f}x" for key, value in found.items()
    )


def write_json(results: dict, path: Path) -> None:
    """results.json, with NaN/inf written as null."""

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    Path(path).write_text(json.dumps(clean(results), indent=1))


def write_chart(results: dict, path: Path) -> None:
    """Bar chart of median real tokens/s and peak memory per system (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results["summary"]
    names = [LABELS.get(n, n) for n in summary]
    memory_key = (
        "cuda_max_allocated_bytes" if results["config"]["device"] == "cuda" else "peak_rss_bytes"
    )
    panels = [
        (
            "real tokens / s (higher is better)",
            [m["real_tokens_per_second"] or 0 for m in summary.values()],
        ),
        (
            f"peak memory GB, {memory_key.split('_bytes')[0]} (lower is better)",
            [(m[memory_key] or 0) / GB for m in summary.values()],
        ),
    ]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, (title, values) in zip(axes, panels, strict=True):
        bars = axis.bar(names, values, color=["#2a7", "#57c", "#c75"][: len(names)])
        axis.bar_label(bars, fmt="%.2f" if max(values, default=0) < 10 else "%.0f")
        axis.margins(y=0.12)  # room for the labels
        axis.set_title(title, fontsize=10)
        axis.tick_params(axis="x", labelsize=8)
    figure.suptitle(
        f"{results['workload']['name']}: {results['machine']['cpu_model']}"
        + (f" + {results['machine']['gpu']['name']}" if results["machine"]["gpu"] else ""),
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
