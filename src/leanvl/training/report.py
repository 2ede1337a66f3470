"""The demo's report: ``report.md`` (what ran, the numbers against chance, what they mean) and
PNG plots (loss curves; per-type QA accuracy ordered / shuffled / without rolling)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leanvl.checkpoint import atomic_write_text

__all__ = ["write_plots", "write_report"]

TARGETS = {
    "t2v_r1": 0.40,
    "qa": 0.70,
    "shuffle_drop": 0.15,
    "roll_drop": 0.10,
}
"""The issue's targets for the full demo (fractions), checked in the report."""

_TARGET_NAMES = {
    "t2v_r1": "text→video R@1",
    "qa": "QA accuracy",
    "shuffle_drop": "shuffled-frame drop",
    "roll_drop": "rolling-off drop",
}


def _smooth(values: list[float], k: int = 10) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= k:
            acc -= values[i - k]
        out.append(acc / min(i + 1, k))
    return out


def write_plots(out: Path, metrics: dict[str, Any]) -> list[str]:
    """Write ``loss.png`` and ``qa_by_type.png`` into ``out``; returns their names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    for run, losses in metrics["losses"].items():
        steps = [s for s, _ in losses]
        ax.plot(
            steps,
            _smooth([v for _, v in losses]),
            label=f"{run} (temporal roll {'on' if run == 'main' else 'off'})",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (sum of terms, 10-step mean)")
    ax.set_title("Training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss.png")
    plt.close(fig)
    names.append("loss.png")

    qa, abl = metrics["qa"], metrics["ablation"]["no_roll"]
    types = sorted(qa["by_type"])
    bars = {
        "rolling on, ordered frames": [qa["by_type"][t] for t in types],
        "rolling on, shuffled frames": [qa["shuffled"]["by_type"][t] for t in types],
        "rolling off, ordered frames": [abl["qa"]["by_type"][t] for t in types],
    }
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    width = 0.8 / len(bars)
    for i, (label, values) in enumerate(bars.items()):
        xs = [j + (i - 1) * width for j in range(len(types))]
        ax.bar(xs, values, width, label=label)
    chance = metrics["chance"]["qa_blind_by_type"]
    for j, t in enumerate(types):
        if t in chance and chance[t] is not None:
            ax.hlines(chance[t], j - 0.45, j + 0.45, colors="k", linestyles="dashed")
    ax.set_xticks(range(len(types)), types)
    ax.set_ylim(0, 1)
    ax.set_ylabel("QA accuracy (test)")
    ax.set_title("QA accuracy by question type (dashed: blind baseline)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "qa_by_type.png")
    plt.close(fig)
    names.append("qa_by_type.png")
    return names


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _row(name: str, value: float | None, chance: float | None, target: str = "") -> str:
    return f"| {name} | {_pct(value)} | {_pct(chance)} | {target} |"


def _by_kind_table(qa: dict[str, Any], no_roll: dict[str, Any]) -> list[str]:
    """Markdown lines: QA accuracy per question kind, ordered / shuffled / rolling off."""
    kinds = qa.get("by_kind")
    if not kinds:
        return [""]
    shuffled = qa.get("shuffled", {}).get("by_kind", {})
    off = no_roll.get("by_kind", {})
    lines = [
        "",
        "QA accuracy per question kind:",
        "",
        "| kind | ordered | shuffled frames | rolling off |",
        "|---|---|---|---|",
    ]
    for kind in sorted(kinds):
        row = (kinds[kind], shuffled.get(kind), off.get(kind))
        lines.append(f"| {kind} | " + " | ".join(_pct(v) for v in row) + " |")
    return [*lines, ""]


def write_report(
    out: Path, m: dict[str, Any], plots: list[str], quick: bool, data_dir: Path
) -> None:
    """Write ``out/report.md`` from the demo metrics."""
    r, qa, mc, ch = m["retrieval"], m["qa"], m["mc"], m["chance"]
    abl = m["ablation"]["no_roll"]
    temporal = qa["by_type"].get("temporal")
    shuffled = qa.get("temporal_shuffled")
    no_roll = abl["qa"]["by_type"].get("temporal")
    shuffle_drop = None if temporal is None or shuffled is None else temporal - shuffled
    roll_drop = None if temporal is None or no_roll is None else temporal - no_roll
    plan = m["plan"]

    values = {
        "t2v_r1": r["t2v_r1"],
        "qa": qa["accuracy"],
        "shuffle_drop": shuffle_drop,
        "roll_drop": roll_drop,
    }

    def met(key: str) -> str:
        if quick or values[key] is None:
            return ""
        return "met" if values[key] >= TARGETS[key] else "**not met**"

    def need(key: str) -> str:
        return f"{100 * TARGETS[key]:.0f}"

    missed = [_TARGET_NAMES[k] for k in TARGETS if met(k) == "**not met**"]

    lines = [
        f"# leanvl demo report{' (quick)' if quick else ''}",
        "",
        f"Total time: **{m['seconds']:.0f} s** on {plan['synth']['train']} training clips "
        f"(benchmark in `{data_dir}`).",
        "",
        "## What ran",
        "",
        f"1. Synthetic temporal benchmark (leanvl.data.synth): {plan['synth']['train']} / "
        f"{plan['synth']['val']} / {plan['synth']['test']} clips, {plan['synth']['frames']} "
        f"frames at {plan['synth']['size']} px, real H.264 mp4 files.",
        f"2. `allinone_tiny` ({plan['model']}) trained from scratch for {plan['steps']} steps of "
        f"{plan['batch_size']} clips ({plan['num_frames']} frames, 64 px), AdamW lr {plan['lr']}: "
        "VTC + ITM (half of the ITM negatives are the clip played backwards), co-trained "
        "with open-ended QA (MLM is off in the demo to fit the CPU budget). One model serves "
        "every task below (`model/`).",
        "3. The same recipe with temporal token rolling switched off (the ablation).",
        "4. Evaluation on the test split, with ordered frames and with shuffled frames "
        "(a random non-identity permutation per clip).",
        "",
        "## Results (test split)",
        "",
        "| metric | value | chance / blind baseline | target |",
        "|---|---|---|---|",
        _row("text→video R@1", r["t2v_r1"], ch["t2v_r1"], f"≥ {need('t2v_r1')}% {met('t2v_r1')}"),
        _row("text→video R@5", r["t2v_r5"], ch["t2v_r5"]),
        _row("video→text R@1", r["v2t_r1"], ch["v2t_r1"]),
    ]
    if "itm_rerank" in r:
        lines.append(
            _row(
                f"text→video R@1, ITM re-rank of top {r['itm_rerank']['k']}",
                r["itm_rerank"]["t2v_r1"],
                ch["t2v_r1"],
            )
        )
    lines += [
        _row(
            "QA accuracy (out-of-vocabulary counted wrong)",
            qa["accuracy"],
            ch["qa"],
            f"≥ {need('qa')}% {met('qa')}",
        ),
        _row("QA accuracy vs the blind (question-only) baseline", qa["accuracy"], ch["qa_blind"]),
        _row(
            "QA accuracy, static questions",
            qa["by_type"].get("static"),
            ch["qa_by_type"].get("static"),
        ),
        _row("QA accuracy, temporal questions", temporal, ch["qa_by_type"].get("temporal")),
        _row(
            "QA temporal, shuffled frames",
            shuffled,
            ch["qa_by_type"].get("temporal"),
            f"≥ {need('shuffle_drop')} points below ordered: {_pct(shuffle_drop)} "
            f"{met('shuffle_drop')}",
        ),
        _row(
            "QA temporal, rolling off",
            no_roll,
            ch["qa_by_type"].get("temporal"),
            f"≥ {need('roll_drop')} points below rolling on: {_pct(roll_drop)} {met('roll_drop')}",
        ),
        _row("multiple choice accuracy", mc["accuracy"], ch["mc"]),
        _row("multiple choice, shuffled frames", mc["shuffled"]["accuracy"], ch["mc"]),
        "",
        f"QA has {qa['n']} test questions, {qa['n_out_of_vocab']} with an answer outside the "
        f"vocabulary; the official-style accuracy that leaves those out is "
        f"{_pct(qa['accuracy_in_vocab'])}. QA chance is {ch['qa_note']}; the blind baseline is "
        f"{ch['qa_blind_note']}.",
        *_by_kind_table(qa, abl["qa"]),
        "## What the numbers mean",
        "",
        "- **Static vs temporal.** Static questions (colour, shape, count) can be answered from "
        "any single frame; temporal ones (direction, growth, order, appear/disappear) cannot: "
        "playing the clip backwards flips their answer.",
        "- **Shuffled frames** keep every frame but destroy their order. A model that reads order "
        "loses accuracy on temporal questions and keeps it on static ones; a model that does not "
        "use order shows no drop.",
        "- **Rolling off** removes the only path by which All-in-one's frames exchange "
        "information inside the network; what is left is the temporal position embedding and "
        "the average over frames at the end.",
        *(
            []
            if not missed
            else [
                f"- **Targets not met** ({', '.join(missed)}). What the measurements say "
                "(docs/training.md, 'What the demo reaches today, and why'): a tiny ViT trained "
                "from scratch learns the static facts slowly (static QA about 0.4 at 1000 steps, "
                "0.6 at 2-4x), and at every budget and variant measured (up to 4x the steps, "
                "temporal questions alone, more rolled tokens) it never learned to use frame "
                "order, so shuffling and switching rolling off have nothing to remove. The "
                "paper's setting starts from an ImageNet-pretrained ViT, which this demo cannot "
                "download."
            ]
        ),
        "",
        "## Plots",
        "",
        *[f"![{p}]({p})" for p in plots],
        "",
        "## Time",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.0f} |" for k, v in m["timing"].items()],
        "",
        "Re-run a stage: `leanvl train configs/main.yaml` (recipes resolved by the demo are in "
        "`configs/`); evaluate: `leanvl eval configs/main.yaml ckpt=model task.name=qa "
        "data.test_file=annotations/qa_test.json`.",
        "",
    ]
    atomic_write_text(out / "report.md", "\n".join(lines))
